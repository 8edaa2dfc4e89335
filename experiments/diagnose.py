"""Free-energy diagnostics of a built-in generative model: beliefs, VFE traces, EFE parts, figures.

``main`` simulates observations, filters them by SVI, checks the result against the closed form,
and writes one DataTree (netCDF, written atomically) plus figures rendered from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
import xarray as xr
from pyro import poutine
from rich.console import Console
from rich.table import Table

from aif.diagnostics import (
    belief_datatree,
    efe_decomposition,
    filter_datatree,
    plot_efe_decomposition,
    plot_vfe_decomposition,
    plot_vfe_trace,
    vfe_convergence,
)
from aif.expected_free_energy import efe_mc
from aif.free_energy import seeded
from aif.inference import (
    MeanFieldCategorical,
    categorical_predict,
    categorical_step_model,
    filter_beliefs,
    fit_beliefs,
)
from aif.maths import log_softmax
from aif.planning import policy_posterior
from experiments.atomic import write_atomic
from experiments.progress import ProgressReporter
from generative_models.categorical import CategoricalPOMDP
from generative_models.gaussian_ssm import GaussianBelief, GaussianSSM
from generative_models.server_states import ServerStateSpec, build_server_state_model

__all__ = ["MODELS", "DiagnosticsRun", "main", "run"]

#: Built-in models ``main`` accepts.
MODELS = ("server-states", "random", "gaussian")
#: Time steps of the simulated observation sequence.
NUM_TIME_STEPS = 4
#: Monte Carlo particles of the sampled EFE.
EFE_PARTICLES = 2000


class DiagnosticsRun(NamedTuple):
    """What :func:`run` produced.

    Attributes
    ----------
    tree : xarray.DataTree
        Groups ``beliefs``, ``free_energy``, ``observed_data``, ``posterior``,
        ``expected_free_energy`` (closed form) and ``expected_free_energy_mc`` (sampled).
    vfe_traces : list of Tensor
        SVI traces per time step.
    max_belief_error : float
        Largest absolute difference between SVI posteriors and the closed-form filter.
    max_efe_error : float
        Largest absolute difference between sampled and closed-form EFE.
    """

    tree: xr.DataTree
    vfe_traces: list[torch.Tensor]
    max_belief_error: float
    max_efe_error: float


def _simulate_categorical(
    pomdp: CategoricalPOMDP, policies: torch.Tensor, T: int, seed: int
) -> tuple[list[list[int]], torch.Tensor]:
    """Sample a sequence of outcomes under random first-step controls of the policies."""
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, policies.shape[0], (T - 1,), generator=gen)
    actions = policies[rows, 0, :]
    with seeded(seed):
        trace = poutine.trace(pomdp.model).get_trace(None, actions, None, T)
    nodes: dict[str, Any] = trace.nodes
    obs = [
        [int(nodes[f"o_{t}_{m}"]["value"]) for m in range(pomdp.num_modalities)] for t in range(T)
    ]
    return obs, actions


def _categorical_run(
    pomdp: CategoricalPOMDP, seed: int, steps: int, tick: Callable[[str], None]
) -> DiagnosticsRun:
    assert pomdp.policies is not None and pomdp.D is not None and pomdp.C is not None
    policies = pomdp.policies
    obs, actions = _simulate_categorical(pomdp, policies, NUM_TIME_STEPS, seed)
    sites = {f"s_0_{f}": n for f, n in enumerate(pomdp.num_states)}

    def make_guide(prior: list[torch.Tensor]) -> MeanFieldCategorical:
        return MeanFieldCategorical(sites, init={f"s_0_{f}": p for f, p in enumerate(prior)})

    step_model = categorical_step_model(pomdp.A)
    filtered = filter_beliefs(
        step_model,
        make_guide,
        obs,
        list(pomdp.D),
        _counted(categorical_predict(pomdp.B), tick),
        list(actions),
        num_steps=steps,
        lr=0.1,
        seed=seed,
        tol=1e-7,
    )
    tick("filtered by SVI")
    exact = pomdp.filter(obs, actions, method="fpi")
    belief_error = max(
        float((q_svi - q_exact).abs().max())
        for post, exact_q in zip(filtered.posteriors, exact.qs, strict=True)
        for q_svi, q_exact in zip(post.values(), exact_q, strict=True)
    )
    # Samples of the last step's posterior make ``posterior`` an ArviZ group with draws.
    last = fit_beliefs(
        step_model,
        make_guide(filtered.priors[-1]),
        obs[-1],
        filtered.priors[-1],
        num_steps=steps,
        lr=0.1,
        seed=seed,
        tol=1e-7,
        num_samples=200,
    )
    tick("posterior samples")
    qs = list(filtered.posteriors[-1].values())
    efe_exact = pomdp.efe(qs)
    efe_sampled = efe_mc(
        pomdp.model,
        policies,
        obs=None,
        prior=qs,
        T=pomdp.policy_len + 1,
        observe_initial=False,
        log_C=[log_softmax(c, dim=0) for c in pomdp.C],
        num_particles=EFE_PARTICLES,
        seed=seed,
    )
    q_pi = pomdp.policy_posterior(efe_exact.efe)
    tree = _assemble(
        filter_datatree(filtered, obs),
        belief_datatree(last),
        efe_decomposition(efe_exact, policies, q_pi),
        efe_decomposition(
            efe_sampled, policies, policy_posterior(efe_sampled.efe, 16.0, pomdp.log_E)
        ),
    )
    efe_error = float((efe_sampled.efe - efe_exact.efe).abs().max())
    tick("expected free energy")
    return DiagnosticsRun(tree, filtered.vfe_traces, belief_error, efe_error)


def _gaussian_run(seed: int, steps: int, tick: Callable[[str], None]) -> DiagnosticsRun:
    model = GaussianSSM()
    gen = torch.Generator().manual_seed(seed)
    actions = torch.randint(0, model.num_controls, (NUM_TIME_STEPS - 1,), generator=gen)
    with seeded(seed):
        trace = poutine.trace(model.model).get_trace(None, actions, NUM_TIME_STEPS)
    nodes: dict[str, Any] = trace.nodes
    obs = torch.stack([nodes[f"o_{t}_0"]["value"] for t in range(NUM_TIME_STEPS)])
    prior = (
        torch.tensor(model.prior_mean, dtype=torch.float64),
        torch.tensor(model.prior_sd**2, dtype=torch.float64),
    )
    fit_kwargs: dict[str, Any] = dict(
        num_steps=steps, lr=0.02, method="mc", num_particles=16, tol=1e-5, lr_decay=0.05
    )
    filtered = filter_beliefs(
        model.step_model,
        GaussianBelief,
        list(obs),
        prior,
        _counted(model.predict, tick),
        list(actions),
        seed=seed,
        **fit_kwargs,
    )
    tick("filtered by SVI")
    kalman = model.kalman_filter(obs, actions)
    means = torch.stack([p[0] for p in filtered.posteriors])
    belief_error = float((means - kalman.means).abs().max())
    last = fit_beliefs(
        model.step_model,
        GaussianBelief(filtered.priors[-1]),
        obs[-1],
        filtered.priors[-1],
        seed=seed,
        num_samples=200,
        **fit_kwargs,
    )
    tick("posterior samples")
    belief = filtered.posteriors[-1]
    policies = torch.arange(model.num_controls).reshape(-1, 1, 1).expand(-1, model.horizon, 1)
    target, scale = model.level * 0.7, 0.2
    efe_exact = model.efe_closed_form(belief, policies, target, scale)
    efe_sampled = efe_mc(
        model.predictive,
        policies,
        belief,
        log_C=model.preference(target, scale),
        num_particles=EFE_PARTICLES,
        seed=seed,
    )
    tree = _assemble(
        filter_datatree(filtered, [o.reshape(1) for o in obs]),
        belief_datatree(last),
        efe_decomposition(efe_exact, policies, policy_posterior(efe_exact.efe, 16.0)),
        efe_decomposition(efe_sampled, policies, policy_posterior(efe_sampled.efe, 16.0)),
    )
    efe_error = float((efe_sampled.efe - efe_exact.efe).abs().max())
    tick("expected free energy")
    return DiagnosticsRun(tree, filtered.vfe_traces, belief_error, efe_error)


def _counted(predict: Callable[[Any, Any], Any], tick: Callable[[str], None]) -> Any:
    """``predict`` that counts one filtering step on ``tick`` per call (one call per time step)."""

    def counted(posterior: Any, action: Any) -> Any:
        tick("filtering")
        return predict(posterior, action)

    return counted


#: Units of progress of one diagnostics run: the filtering steps (one per time step), the
#: posterior samples and the expected free energy.
NUM_STAGES = NUM_TIME_STEPS + 2


def _assemble(
    filtered: xr.DataTree, last: xr.DataTree, efe_exact: xr.Dataset, efe_sampled: xr.Dataset
) -> xr.DataTree:
    groups = {path: node.to_dataset() for path, node in filtered.children.items()}
    if "posterior" in last.children:
        groups["posterior"] = last["posterior"].to_dataset()
    groups["expected_free_energy"] = efe_exact
    groups["expected_free_energy_mc"] = efe_sampled
    return xr.DataTree.from_dict(groups)


def run(
    model: str, seed: int, steps: int, tick: Callable[[str], None] | None = None
) -> DiagnosticsRun:
    """Run the diagnostics of a built-in model without writing anything.

    Parameters
    ----------
    model : {"server-states", "random", "gaussian"}
        ``server-states``: the offloading server-state POMDP (two servers, three load levels);
        ``random``: a seeded random POMDP with two factors, two modalities and two-step
        policies; ``gaussian``: the capacity state-space model.
    seed : int
    steps : int
        SVI steps per time step.
    tick : callable, optional
        Called with a short status after each of the :data:`NUM_STAGES` units of work.

    Returns
    -------
    DiagnosticsRun
    """
    if steps < 1:
        raise ValueError(f"diagnose: steps={steps}; expected >= 1")
    tick = tick if tick is not None else (lambda status: None)
    builders: dict[str, Callable[[], DiagnosticsRun]] = {
        "server-states": lambda: _categorical_run(
            build_server_state_model(ServerStateSpec()).pomdp, seed, steps, tick
        ),
        "random": lambda: _categorical_run(
            CategoricalPOMDP.random([3, 2], [3, 2], [2, 2], policy_len=2, seed=seed),
            seed,
            steps,
            tick,
        ),
        "gaussian": lambda: _gaussian_run(seed, steps, tick),
    }
    if model not in builders:
        raise ValueError(f"diagnose: model={model!r}; expected one of {list(MODELS)}")
    result = builders[model]()
    result.tree.attrs.update(
        {
            "model": model,
            "seed": int(seed),
            "svi_steps": int(steps),
            "max_belief_error": result.max_belief_error,
            "max_efe_error": result.max_efe_error,
        }
    )
    return result


def write_datatree_atomic(tree: xr.DataTree, path: Path) -> Path:
    """Write a DataTree to netCDF through a temporary file and ``os.replace`` (no partial files)."""
    return write_atomic(path, lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf"))


def main(model: str, out_dir: Path, seed: int, steps: int, progress: bool = True) -> None:
    """Run free-energy diagnostics on a built-in model and write the DataTree and figures.

    Writes ``diagnostics.nc`` (the DataTree of :class:`DiagnosticsRun`) and, rendered from that
    file, ``vfe_trace.png``, ``vfe_decomposition.png`` and ``efe_decomposition.png`` into
    ``out_dir``, then prints a summary.

    Parameters
    ----------
    model : {"server-states", "random", "gaussian"}
    out_dir : pathlib.Path
    seed : int
    steps : int
        SVI steps per time step.
    progress : bool
        Count the units of work on stderr (a rich bar on a terminal, plain lines otherwise).
    """
    out_dir = Path(out_dir)
    with ProgressReporter(NUM_STAGES, f"diagnose {model}", enabled=progress) as bar:
        result = run(model, seed, steps, tick=lambda status: bar.advance(1, postfix=status))
    nc = write_datatree_atomic(result.tree, out_dir / "diagnostics.nc")
    tree = xr.open_datatree(nc, engine="h5netcdf")
    traces = {f"t={t}": trace for t, trace in enumerate(result.vfe_traces)}
    plot_vfe_trace(traces, out_dir / "vfe_trace.png")
    plot_vfe_decomposition(tree["free_energy"].to_dataset(), out_dir / "vfe_decomposition.png")
    plot_efe_decomposition(
        tree["expected_free_energy"].to_dataset(), out_dir / "efe_decomposition.png"
    )
    tree.close()

    table = Table(title=f"free-energy diagnostics: {model} (seed {seed}, {steps} SVI steps)")
    # "converged": the fit's own stopping test; "settled at": the first step from which the VFE
    # changes by less than 1e-5 (relative), a looser reading of the same trace.
    for column in ("time step", "VFE", "accuracy", "complexity", "converged", "settled at step"):
        table.add_column(column, justify="right")
    free_energy = result.tree["free_energy"].to_dataset()
    terms = free_energy["vfe_terms"].to_numpy()
    converged = free_energy["converged"].to_numpy()
    for t in range(terms.shape[0]):
        # Monte Carlo traces (the Gaussian model) are noisy: judge them on window means.
        window = 50 if model == "gaussian" else 1
        report = vfe_convergence(result.vfe_traces[t], window=window, tol=1e-5)
        table.add_row(
            str(t),
            f"{terms[t, 0]:.4f}",
            f"{terms[t, 1]:.4f}",
            f"{terms[t, 2]:.4f}",
            str(bool(converged[t])),
            "-" if report.first_converged_step is None else str(report.first_converged_step),
        )
    console = Console()
    console.print(table)
    console.print(
        f"max |SVI - closed-form| posterior: {result.max_belief_error:.2e}; "
        f"max |MC - exact| EFE: {result.max_efe_error:.2e}"
    )
    console.print(f"wrote {nc} and figures to {out_dir}")
