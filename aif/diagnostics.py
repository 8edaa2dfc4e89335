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

from aif.free_energy import VFEResult
from aif.inference import BeliefResult, FilterBeliefsResult, trace_converged
from aif.planning import EFEResult

__all__ = [
    "EFE_TERMS",
    "VFE_TERMS",
    "ConvergenceReport",
    "belief_datatree",
    "efe_decomposition",
    "filter_datatree",
    "plot_efe_decomposition",
    "plot_vfe_decomposition",
    "plot_vfe_trace",
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
) -> xr.DataTree:
    """One fitted belief as a DataTree.

    Groups
    ------
    ``posterior``
        Draws of every latent site, dims ``(chain, draw, ...)`` (one chain of
        ``num_samples`` draws), when the fit kept samples.
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

    Returns
    -------
    xarray.DataTree
    """
    groups: dict[str, xr.Dataset] = {}
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
) -> xr.DataTree:
    """A filtering run as a DataTree.

    Groups
    ------
    ``beliefs``
        Prior and posterior of every factor per step: ``prior_f{f}``/``posterior_f{f}`` with
        dims ``(step, state_*)`` for categorical beliefs, or ``*_mean``/``*_var`` (dim ``step``)
        for Gaussian ones.
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
    groups = {
        "beliefs": _group(
            "beliefs",
            {**prior_data, **post_data},
            {**prior_dims, **post_dims},
            {"step": steps},
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
) -> Path:
    """Plot VFE against optimisation step and save the figure.

    Parameters
    ----------
    traces : Tensor of shape (n_steps,), sequence of them, or mapping label -> trace
    path : path-like
        Output file; the format follows the suffix (``.png``, ``.pdf``, ``.svg``).
    reference : float, optional
        A horizontal line, e.g. ``-log p(o)`` (the VFE minimum when the guide can be exact).

    Returns
    -------
    pathlib.Path
    """
    items: list[tuple[str, Any]]
    if isinstance(traces, Mapping):
        items = list(traces.items())
    elif isinstance(traces, Tensor) or (len(traces) and np.ndim(_np(traces[0])) == 0):
        items = [("vfe", traces)]
    else:
        items = [(f"step {i}", t) for i, t in enumerate(traces)]
    fig = _figure()
    ax = fig.add_subplot()
    for label, trace in items:
        ax.plot(np.arange(len(_np(trace))), _np(trace), label=str(label), lw=1)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label="-log p(o)")
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("variational free energy (nats)")
    if len(items) <= 10:
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_vfe_decomposition(decomposition: xr.Dataset | VFEResult, path: Path | str) -> Path:
    """Plot VFE, accuracy and complexity per step (or one bar group) and save the figure.

    Parameters
    ----------
    decomposition : xarray.Dataset from :func:`vfe_decomposition`, or one VFEResult
    path : path-like

    Returns
    -------
    pathlib.Path
    """
    if isinstance(decomposition, VFEResult):
        values = np.asarray([[float(x) for x in decomposition]])
    else:
        values = np.asarray(decomposition["vfe_terms"].values).reshape(-1, len(VFE_TERMS))
    steps = np.arange(values.shape[0])
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.27
    for i, term in enumerate(VFE_TERMS):
        ax.bar(steps + (i - 1) * width, values[:, i], width, label=term)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("time step")
    ax.set_ylabel("nats")
    ax.set_xticks(steps)
    ax.set_title("F = complexity - accuracy")
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_efe_decomposition(
    decomposition: xr.Dataset | EFEResult, path: Path | str, max_policies: int = 32
) -> Path:
    """Plot each policy's EFE parts (both decompositions) with the EFE marked, and save it.

    Parameters
    ----------
    decomposition : xarray.Dataset from :func:`efe_decomposition`, or an EFEResult
    path : path-like
    max_policies : int, default 32
        Show only the best (lowest-EFE) policies beyond this many.

    Returns
    -------
    pathlib.Path
    """
    ds = (
        decomposition if isinstance(decomposition, xr.Dataset) else efe_decomposition(decomposition)
    )
    terms = ds["efe_terms"]
    efe = terms.sel(term="efe").values
    order = np.argsort(efe)[:max_policies]
    fig = _figure(max(6.0, 0.35 * len(order) + 2), 4.0)
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
    ax.set_xticks(x, [str(int(i)) for i in ds["policy"].values[order]], fontsize="small")
    ax.set_xlabel("policy (sorted by EFE)")
    ax.set_ylabel("nats")
    ax.legend(fontsize="small")
    return _save(fig, path)
