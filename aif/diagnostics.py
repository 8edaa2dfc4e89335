"""Free-energy diagnostics: beliefs, VFE traces and EFE parts as labelled ArviZ DataTrees, and figures.

Every tree is built with ``arviz_base.from_dict`` (groups ``posterior``, ``observed_data``, ...),
so ``arviz_stats`` works on it; figures are drawn on the Agg canvas and saved to files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import arviz_base
import numpy as np
import torch
import xarray as xr
from torch import Tensor

from aif.discrete_agent import AgentStep
from aif.free_energy import VFEResult
from aif.inference import BeliefResult, FilterBeliefsResult, trace_converged
from aif.planning import EFEResult

__all__ = [
    "EFE_TERMS",
    "agent_datatree",
    "VFE_TERMS",
    "ConvergenceReport",
    "belief_datatree",
    "efe_decomposition",
    "filter_datatree",
    "plot_efe_decomposition",
    "plot_vfe_decomposition",
    "plot_vfe_trace",
    "policy_labels",
    "vfe_convergence",
    "vfe_decomposition",
]

#: Coordinates of the ``term`` dim of VFE decompositions (``vfe = complexity - accuracy``).
VFE_TERMS = ("vfe", "accuracy", "complexity")
#: Coordinates of the ``term`` dim of EFE decompositions (fields of :class:`EFEResult`).
EFE_TERMS = ("efe", "risk", "ambiguity", "pragmatic_value", "state_info_gain", "novelty")


def _np(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _group(
    name: str,
    data: Mapping[str, Any],
    dims: Mapping[str, Sequence[str]],
    coords: Mapping[str, Any],
    sampled: bool,
) -> xr.Dataset:
    """One ArviZ group as a Dataset; ``sampled`` groups carry (chain, draw) sample dims."""
    tree = arviz_base.from_dict(
        {name: {k: _np(v) for k, v in data.items()}},
        dims={k: list(v) for k, v in dims.items()},
        coords=dict(coords),
        sample_dims=None if sampled else [],
    )
    return tree[name].to_dataset()


def _tree(groups: Mapping[str, xr.Dataset], attrs: Mapping[str, Any] | None = None) -> xr.DataTree:
    tree = xr.DataTree.from_dict(dict(groups))
    if attrs:
        tree.attrs.update({k: v for k, v in attrs.items() if v is not None})
    return tree


# --------------------------------------------------------------------------------------------
# Convergence
# --------------------------------------------------------------------------------------------


class ConvergenceReport(NamedTuple):
    """Convergence of a free-energy trace.

    Attributes
    ----------
    converged : bool
        Whether the last two windows agree within ``tol`` (relative) or two standard errors.
    final_vfe : float
        Mean of the last window.
    relative_change : float
        ``|mean(last window) - mean(previous window)| / max(1, |mean(last window)|)``.
    first_converged_step : int or None
        First step at which the test passes, ``None`` if it never does.
    num_steps : int
    """

    converged: bool
    final_vfe: float
    relative_change: float
    first_converged_step: int | None
    num_steps: int


def vfe_convergence(
    trace: Tensor | Sequence[float], window: int = 50, tol: float = 1e-4
) -> ConvergenceReport:
    """Test whether a VFE trace has settled, and from which step.

    Parameters
    ----------
    trace : Tensor or sequence of float, shape (n_steps,)
        Free energy per optimisation step (``BeliefResult.vfe_trace``).
    window : int, default 50
        Window length; 1 compares consecutive values (deterministic losses).
    tol : float, default 1e-4
        Relative tolerance.

    Returns
    -------
    ConvergenceReport
    """
    values = [float(v) for v in _np(trace).reshape(-1)]
    if len(values) == 0:
        raise ValueError("vfe_convergence: empty trace; expected at least one value")
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(
            f"vfe_convergence: trace value at step {bad} is {values[bad]}; expected finite values"
        )
    if window < 1:
        raise ValueError(f"vfe_convergence: window={window}; expected >= 1")
    w = min(window, max(1, len(values) // 2))
    first = None
    patience = 5
    for end in range(2, len(values) + 1):
        if trace_converged(values[:end], tol, w, patience):
            first = end - 1
            break
    last = np.asarray(values[-w:])
    prev = np.asarray(values[-2 * w : -w]) if len(values) >= 2 * w else np.asarray(values[:1])
    final = float(last.mean())
    change = abs(final - float(prev.mean())) / max(1.0, abs(final))
    return ConvergenceReport(
        trace_converged(values, tol, w, patience), final, change, first, len(values)
    )


# --------------------------------------------------------------------------------------------
# DataTrees
# --------------------------------------------------------------------------------------------


def belief_datatree(
    result: BeliefResult,
    observed: Mapping[str, Any] | None = None,
    name: str = "beliefs",
    *,
    state_labels: Mapping[str, Sequence[Any]] | None = None,
) -> xr.DataTree:
    """One fitted belief as a DataTree: the posterior itself, its free energy, its data.

    Groups
    ------
    ``beliefs``
        The fitted posterior ``q`` itself when the guide exposes it: one variable per
        categorical site holding its probabilities, dim ``<site>_state`` with the state labels
        as coordinates (``state_labels`` or ``0..n-1``).
    ``posterior``
        Draws of every latent site, dims ``(chain, draw, ...)`` (one chain of
        ``num_samples`` draws), only when the fit kept samples (``num_samples > 0``); use it
        for continuous sites, whose posterior is not a table.
    ``observed_data``
        The observations, when given.
    ``free_energy``
        ``vfe_trace`` (dim ``step``) and ``vfe_terms`` (dim ``term`` = vfe, accuracy,
        complexity) at the optimum; attributes ``converged`` and ``num_steps``.

    Parameters
    ----------
    result : BeliefResult
    observed : mapping of str to array-like, optional
        Observed values by site name.
    name : str, default "beliefs"
    state_labels : mapping of str to sequence, optional
        Names of the states of a site (e.g. ``{"s_0_0": ["idle", "congested"]}``).

    Returns
    -------
    xarray.DataTree
    """
    groups: dict[str, xr.Dataset] = {}
    beliefs = getattr(result, "beliefs", None)
    if beliefs:
        groups["beliefs"] = _belief_group(beliefs, state_labels or {})
    if result.samples:
        groups["posterior"] = _group(
            "posterior",
            {k: _np(v)[None] for k, v in result.samples.items()},
            {},
            {},
            sampled=True,
        )
    if observed:
        groups["observed_data"] = _group(
            "observed_data", {k: _np(v) for k, v in observed.items()}, {}, {}, sampled=False
        )
    groups["free_energy"] = _group(
        "free_energy",
        {
            "vfe_trace": result.vfe_trace,
            "vfe_terms": torch.stack([x.double() for x in result.final]),
        },
        {"vfe_trace": ["step"], "vfe_terms": ["term"]},
        {"term": list(VFE_TERMS), "step": np.arange(len(result.vfe_trace))},
        sampled=False,
    )
    groups["free_energy"].attrs.update(
        {"converged": int(result.converged), "num_steps": int(result.num_steps)}
    )
    return _tree(groups, {"name": name})


def _belief_group(
    beliefs: Mapping[str, Any], state_labels: Mapping[str, Sequence[Any]]
) -> xr.Dataset:
    """Probabilities per site with a labelled state dim each."""
    data: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {}
    for site, q in beliefs.items():
        values = _np(q).astype(float)
        if values.ndim != 1:
            raise ValueError(
                f"belief_datatree: belief of site {site!r} has shape {values.shape}; expected "
                "one probability vector (n,) per site"
            )
        dim = f"{site}_state"
        labels = list(state_labels.get(site, range(values.shape[0])))
        if len(labels) != values.shape[0]:
            raise ValueError(
                f"belief_datatree: state_labels[{site!r}] has {len(labels)} entries; expected "
                f"{values.shape[0]} (one per state)"
            )
        data[site] = values
        dims[site] = [dim]
        coords[dim] = labels
    return _group("beliefs", data, dims, coords, sampled=False)


def vfe_decomposition(result: FilterBeliefsResult) -> xr.Dataset:
    """Per-step VFE decomposition of a filtering run.

    Parameters
    ----------
    result : FilterBeliefsResult

    Returns
    -------
    xarray.Dataset
        ``vfe_terms`` with dims ``(step, term)`` (term = vfe, accuracy, complexity) and
        ``converged`` with dim ``step``.
    """
    table = torch.stack([result.vfe, result.accuracy, result.complexity], dim=-1)
    return _group(
        "free_energy",
        {"vfe_terms": table, "converged": result.converged.to(torch.int8)},
        {"vfe_terms": ["step", "term"], "converged": ["step"]},
        {"term": list(VFE_TERMS), "step": np.arange(table.shape[0])},
        sampled=False,
    )


def _belief_arrays(
    beliefs: Sequence[Any], label: str
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Stack per-step beliefs: factor vectors (list, or dict in factor order) or (mean, var)."""
    data: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    first = beliefs[0]
    if isinstance(first, tuple) and len(first) == 2 and all(_np(x).ndim == 0 for x in first):
        data[f"{label}_mean"] = np.stack([_np(b[0]) for b in beliefs])
        data[f"{label}_var"] = np.stack([_np(b[1]) for b in beliefs])
        dims[f"{label}_mean"] = ["step"]
        dims[f"{label}_var"] = ["step"]
        return data, dims
    rows = [list(b.values()) if isinstance(b, Mapping) else list(b) for b in beliefs]
    for f in range(len(rows[0])):
        data[f"{label}_f{f}"] = np.stack([_np(row[f]) for row in rows])
        dims[f"{label}_f{f}"] = ["step", f"state_f{f}"]
    return data, dims


def filter_datatree(
    result: FilterBeliefsResult,
    observations: Sequence[Any] | None = None,
    name: str = "filter",
    *,
    state_labels: Sequence[Sequence[Any]] | None = None,
) -> xr.DataTree:
    """A filtering run as a DataTree.

    Groups
    ------
    ``beliefs``
        Prior and posterior of every factor per step: ``prior_f{f}``/``posterior_f{f}`` with
        dims ``(step, state_f{f})`` for categorical beliefs (coordinates ``state_labels[f]`` or
        ``0..n-1``), or ``*_mean``/``*_var`` (dim ``step``) for Gaussian ones.
    ``free_energy``
        ``vfe_terms`` (dims ``step, term``) and ``converged`` (dim ``step``), see
        :func:`vfe_decomposition`.
    ``observed_data``
        ``obs`` with dims ``(step, modality)``, when given.

    Returns
    -------
    xarray.DataTree
    """
    prior_data, prior_dims = _belief_arrays(result.priors, "prior")
    post_data, post_dims = _belief_arrays(result.posteriors, "posterior")
    steps = np.arange(len(result.posteriors))
    coords: dict[str, Any] = {"step": steps}
    for key, value in post_data.items():
        if value.ndim == 2:
            f = int(key.rsplit("_f", 1)[1])
            labels = (
                list(state_labels[f]) if state_labels is not None else list(range(value.shape[1]))
            )
            if len(labels) != value.shape[1]:
                raise ValueError(
                    f"filter_datatree: state_labels[{f}] has {len(labels)} entries; expected "
                    f"{value.shape[1]} (one per state of factor {f})"
                )
            coords[f"state_f{f}"] = labels
    groups = {
        "beliefs": _group(
            "beliefs",
            {**prior_data, **post_data},
            {**prior_dims, **post_dims},
            coords,
            sampled=False,
        ),
        "free_energy": vfe_decomposition(result),
    }
    if observations is not None:
        obs = np.stack([np.asarray(_np(o), dtype=float).reshape(-1) for o in observations])
        groups["observed_data"] = _group(
            "observed_data",
            {"obs": obs},
            {"obs": ["step", "modality"]},
            {"step": steps},
            sampled=False,
        )
    return _tree(groups, {"name": name})


def efe_decomposition(
    efe: EFEResult,
    policies: Tensor | None = None,
    q_pi: Tensor | None = None,
) -> xr.Dataset:
    """EFE decomposition per policy as a labelled Dataset.

    Parameters
    ----------
    efe : EFEResult
        Fields of shape (n_policies,).
    policies : Tensor of int, shape (n_policies, policy_len, F), optional
    q_pi : Tensor, shape (n_policies,), optional
        Policy posterior.

    Returns
    -------
    xarray.Dataset
        ``efe_terms`` with dims ``(policy, term)`` (term = efe, risk, ambiguity,
        pragmatic_value, state_info_gain, novelty); ``policies`` with dims
        ``(policy, horizon, factor)`` and ``q_pi`` with dim ``policy`` when given.
    """
    table = torch.stack([torch.as_tensor(getattr(efe, k)).double() for k in EFE_TERMS], dim=-1)
    data: dict[str, Any] = {"efe_terms": table}
    dims: dict[str, list[str]] = {"efe_terms": ["policy", "term"]}
    if policies is not None:
        pol = torch.as_tensor(policies)
        if pol.shape[0] != table.shape[0]:
            raise ValueError(
                f"efe_decomposition: policies have shape {tuple(pol.shape)}; expected "
                f"({table.shape[0]}, policy_len, F) to match the EFE"
            )
        data["policies"] = pol
        dims["policies"] = ["policy", "horizon", "factor"]
    if q_pi is not None:
        data["q_pi"] = torch.as_tensor(q_pi).double()
        dims["q_pi"] = ["policy"]
    return _group(
        "expected_free_energy",
        data,
        dims,
        {"term": list(EFE_TERMS), "policy": np.arange(table.shape[0])},
        sampled=False,
    )


def agent_datatree(
    history: Sequence[AgentStep],
    name: str = "agent",
    *,
    state_labels: Sequence[Sequence[Any]] | None = None,
    policies: Tensor | None = None,
) -> xr.DataTree:
    """An episode of :class:`aif.discrete_agent.DiscreteAgent` (its ``history``) as a DataTree.

    Groups
    ------
    ``beliefs``
        ``prior_f{f}`` and ``posterior_f{f}`` with dims ``(step, agent, state_f{f})``.
    ``policies``
        ``q_pi`` (dims ``step, agent, policy``), ``efe_terms`` (``step, agent, policy, term``)
        and ``action`` (``step, agent, factor``); ``policies`` (``policy, horizon, factor``)
        when given.
    ``observed_data``
        ``obs`` with dims ``(step, agent, modality)`` (outcome indices; the most probable
        outcome for probability-vector observations).

    Parameters
    ----------
    history : sequence of AgentStep
        ``DiscreteAgent.history`` (before :meth:`~aif.discrete_agent.DiscreteAgent.end_episode`).
    name : str, default "agent"
    state_labels : sequence of sequence, optional
        Names of the states of each factor.
    policies : Tensor of int, shape (n_policies, policy_len, F), optional

    Returns
    -------
    xarray.DataTree
    """
    if not history:
        raise ValueError("agent_datatree: the history is empty; expected at least one step")
    steps = np.asarray([step.t for step in history])
    F = len(history[0].qs)
    data: dict[str, Any] = {}
    dims: dict[str, list[str]] = {}
    coords: dict[str, Any] = {"step": steps}
    for f in range(F):
        for label, key in (("prior", "prior"), ("posterior", "qs")):
            data[f"{label}_f{f}"] = np.stack([_np(getattr(step, key)[f]) for step in history])
            dims[f"{label}_f{f}"] = ["step", "agent", f"state_f{f}"]
        n = data[f"posterior_f{f}"].shape[-1]
        labels = list(state_labels[f]) if state_labels is not None else list(range(n))
        if len(labels) != n:
            raise ValueError(
                f"agent_datatree: state_labels[{f}] has {len(labels)} entries; expected {n}"
            )
        coords[f"state_f{f}"] = labels
    groups = {"beliefs": _group("beliefs", data, dims, coords, sampled=False)}
    pol_data: dict[str, Any] = {}
    pol_dims: dict[str, list[str]] = {}
    if all(step.q_pi is not None for step in history):
        pol_data["q_pi"] = np.stack([_np(step.q_pi) for step in history])
        pol_dims["q_pi"] = ["step", "agent", "policy"]
    if all(step.efe is not None for step in history):
        pol_data["efe_terms"] = np.stack(
            [np.stack([_np(getattr(step.efe, k)) for k in EFE_TERMS], -1) for step in history]
        )
        pol_dims["efe_terms"] = ["step", "agent", "policy", "term"]
    if all(step.action is not None for step in history):
        pol_data["action"] = np.stack([_np(step.action) for step in history])
        pol_dims["action"] = ["step", "agent", "factor"]
    if policies is not None:
        pol_data["policies"] = _np(policies)
        pol_dims["policies"] = ["policy", "horizon", "factor"]
    if pol_data:
        groups["policies"] = _group(
            "policies", pol_data, pol_dims, {"step": steps, "term": list(EFE_TERMS)}, sampled=False
        )
    obs = np.stack(
        [
            np.stack([_np(o) if o.dim() == 1 else _np(o.argmax(-1)) for o in step.obs], -1)
            for step in history
        ]
    )
    groups["observed_data"] = _group(
        "observed_data",
        {"obs": obs},
        {"obs": ["step", "agent", "modality"]},
        {"step": steps},
        sampled=False,
    )
    return _tree(groups, {"name": name})


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _figure(width: float = 6.0, height: float = 3.5) -> Any:
    # The object-oriented Agg canvas: no pyplot state and no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_vfe_trace(
    traces: Tensor | Sequence[Tensor] | Mapping[str, Tensor],
    path: Path | str,
    reference: float | None = None,
    converged: Sequence[bool] | Tensor | None = None,
) -> Path:
    """Plot VFE against optimisation step and save the figure.

    Parameters
    ----------
    traces : Tensor of shape (n_steps,), sequence of them, or mapping label -> trace
    path : path-like
        Output file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).
    reference : float, optional
        A horizontal line, e.g. ``-log p(o)`` (the VFE minimum when the guide can be exact).
    converged : sequence of bool or Tensor of bool, optional
        One flag per trace (e.g. ``FilterBeliefsResult.converged``). A trace that stopped at its
        budget without converging is drawn dashed, ends in a cross and says so in the legend
        and title.

    Returns
    -------
    pathlib.Path
    """
    return _save(_vfe_trace_figure(traces, reference, converged), path)


def _vfe_trace_figure(
    traces: Tensor | Sequence[Tensor] | Mapping[str, Tensor],
    reference: float | None,
    converged: Sequence[bool] | Tensor | None,
) -> Any:
    items: list[tuple[str, Any]]
    if isinstance(traces, Mapping):
        items = list(traces.items())
    elif isinstance(traces, Tensor) or (len(traces) and np.ndim(_np(traces[0])) == 0):
        items = [("vfe", traces)]
    else:
        items = [(f"step {i}", t) for i, t in enumerate(traces)]
    flags = (
        [True] * len(items) if converged is None else [bool(c) for c in _np(converged).reshape(-1)]
    )
    if len(flags) != len(items):
        raise ValueError(
            f"plot_vfe_trace: converged has {len(flags)} flags for {len(items)} traces; expected "
            "one per trace"
        )
    fig = _figure()
    ax = fig.add_subplot()
    for (label, trace), ok in zip(items, flags, strict=True):
        values = _np(trace)
        steps = np.arange(len(values))
        if ok:
            ax.plot(steps, values, label=str(label), lw=1)
        else:
            (line,) = ax.plot(steps, values, label=f"{label} (NOT converged)", lw=1, ls="--")
            ax.plot(steps[-1:], values[-1:], "x", color=line.get_color(), ms=8, mew=2)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label="-log p(o)")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("variational free energy (nats)")
    failed = [str(label) for (label, _), ok in zip(items, flags, strict=True) if not ok]
    if failed:
        ax.set_title(f"not converged: {', '.join(failed)}", color="tab:red", fontsize="small")
    if len(items) <= 10:
        ax.legend(fontsize="small")
    return fig


def plot_vfe_decomposition(decomposition: xr.Dataset | VFEResult, path: Path | str) -> Path:
    """Plot VFE, accuracy and complexity per step (or one bar group) and save the figure.

    Steps whose belief update did not converge (``converged`` of :func:`vfe_decomposition`)
    are hatched and named in the title: their numbers are those of an unfinished fit.

    Parameters
    ----------
    decomposition : xarray.Dataset from :func:`vfe_decomposition`, or one VFEResult
    path : path-like

    Returns
    -------
    pathlib.Path
    """
    return _save(_vfe_decomposition_figure(decomposition), path)


def _vfe_decomposition_figure(decomposition: xr.Dataset | VFEResult) -> Any:
    converged: np.ndarray | None = None
    if isinstance(decomposition, VFEResult):
        values = np.asarray([[float(x) for x in decomposition]])
    else:
        values = np.asarray(decomposition["vfe_terms"].values).reshape(-1, len(VFE_TERMS))
        if "converged" in decomposition:
            converged = np.asarray(decomposition["converged"].values).astype(bool).reshape(-1)
    steps = np.arange(values.shape[0])
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.27
    for i, term in enumerate(VFE_TERMS):
        bars = ax.bar(steps + (i - 1) * width, values[:, i], width, label=term)
        if converged is not None:
            for bar, ok in zip(bars, converged, strict=True):
                if not ok:
                    bar.set_hatch("//")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("nats")
    ax.set_xticks(steps)
    title = "F = complexity - accuracy"
    if converged is not None and not converged.all():
        bad = ", ".join(str(int(t)) for t in steps[~converged])
        title += f"\nhatched: not converged (step {bad})"
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def policy_labels(
    policies: Tensor | np.ndarray,
    action_names: Sequence[Sequence[str]] | None = None,
) -> list[str]:
    """Readable names of policies: their actions, step by step.

    Parameters
    ----------
    policies : Tensor or array of int, shape (n_policies, policy_len, F)
    action_names : sequence of sequence of str, optional
        ``action_names[f][u]`` names control ``u`` of factor ``f``; factors with one control
        are left out of the label.

    Returns
    -------
    list of str
        E.g. ``"offload>keep"`` for a two-step, one-factor policy; factors of one step are
        joined by ``","``, steps by ``">"``.
    """
    pol = np.asarray(_np(policies)).astype(int)
    if pol.ndim != 3:
        raise ValueError(
            f"policy_labels: policies have shape {pol.shape}; expected (n_policies, policy_len, F)"
        )
    n_controls = pol.max(axis=(0, 1)) + 1
    shown = [f for f in range(pol.shape[2]) if n_controls[f] > 1] or [0]
    if action_names is not None and len(action_names) != pol.shape[2]:
        raise ValueError(
            f"policy_labels: action_names has {len(action_names)} entries; expected "
            f"{pol.shape[2]} (one list of names per factor)"
        )

    def name(f: int, u: int) -> str:
        if action_names is None:
            return f"u{f}={u}" if len(shown) > 1 else str(u)
        return str(action_names[f][u])

    return [
        ">".join(",".join(name(f, int(row[t, f])) for f in shown) for t in range(pol.shape[1]))
        for row in pol
    ]


def plot_efe_decomposition(
    decomposition: xr.Dataset | EFEResult,
    path: Path | str,
    max_policies: int = 32,
    *,
    action_names: Sequence[Sequence[str]] | None = None,
    show_q_pi: bool = True,
) -> Path:
    """Plot each policy's EFE parts (both decompositions) with the EFE marked, and save it.

    Policies are named by their actions when the decomposition holds them (``policies`` of
    :func:`efe_decomposition`), and ``q(pi)`` is drawn on a second axis when it holds that.

    Parameters
    ----------
    decomposition : xarray.Dataset from :func:`efe_decomposition`, or an EFEResult
    path : path-like
    max_policies : int, default 32
        Show only the best (lowest-EFE) policies beyond this many.
    action_names : sequence of sequence of str, optional
        Names of the controls of each factor, for the policy labels (see :func:`policy_labels`).
    show_q_pi : bool, default True
        Draw the policy posterior when the decomposition has ``q_pi``.

    Returns
    -------
    pathlib.Path
    """
    return _save(_efe_figure(decomposition, max_policies, action_names, show_q_pi), path)


def _efe_figure(
    decomposition: xr.Dataset | EFEResult,
    max_policies: int,
    action_names: Sequence[Sequence[str]] | None,
    show_q_pi: bool,
) -> Any:
    ds = (
        decomposition if isinstance(decomposition, xr.Dataset) else efe_decomposition(decomposition)
    )
    terms = ds["efe_terms"]
    efe = terms.sel(term="efe").values
    order = np.argsort(efe, kind="stable")[:max_policies]
    fig = _figure(max(6.0, 0.45 * len(order) + 2), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(order))
    # Both decompositions side by side: risk + ambiguity = -pragmatic - info gain (- novelty).
    parts = [
        ("risk", 1.0),
        ("ambiguity", 1.0),
        ("pragmatic_value", -1.0),
        ("state_info_gain", -1.0),
        ("novelty", -1.0),
    ]
    shown = [(k, sign) for k, sign in parts if k != "novelty" or np.any(terms.sel(term=k).values)]
    width = 0.8 / len(shown)
    for i, (key, sign) in enumerate(shown):
        label = key.replace("_", " ") if sign > 0 else "-" + key.replace("_", " ")
        offset = (i - (len(shown) - 1) / 2) * width
        ax.bar(x + offset, sign * terms.sel(term=key).values[order], width, label=label)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.plot(x, efe[order], "k_", ms=14, mew=2, label="efe")
    if "policies" in ds:
        labels = policy_labels(ds["policies"].values, action_names)
        ticks = [labels[int(i)] for i in order]
        xlabel = "policy (its actions; sorted by EFE)"
    else:
        ticks = [str(int(i)) for i in ds["policy"].values[order]]
        xlabel = "policy index (sorted by EFE)"
    ax.set_xticks(
        x,
        ticks,
        fontsize="small",
        rotation=45 if len(order) > 6 else 0,
        ha="right" if len(order) > 6 else "center",
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("nats")
    handles, names = ax.get_legend_handles_labels()
    if show_q_pi and "q_pi" in ds:
        ax2 = ax.twinx()
        (dots,) = ax2.plot(x, ds["q_pi"].values[order], "o", color="tab:gray", label="q(pi)")
        ax2.set_ylim(0.0, 1.05)
        ax2.set_ylabel("q(pi)")
        handles.append(dots)
        names.append("q(pi)")
    fig.legend(handles, names, fontsize="small", loc="outside right upper")
    return fig
