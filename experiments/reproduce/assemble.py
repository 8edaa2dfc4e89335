"""Assembling the finished cells of a reproduction into one labelled DataTree.

The tree holds every number of the reports and figures; ``compare_results`` checks two of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from experiments.reproduce.cells import Cell, Setting
from experiments.reproduce.plan import Plan
from experiments.reproduce.profiles import TABLE_METRICS, ReproductionError
from experiments.stats import mean_interval
from experiments.train import METRICS


def open_tree(path: Path) -> xr.DataTree:
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load()


def _sweep_group(
    plan: Plan, out: Path, settings: list[Setting], dim: str, coord: list[Any]
) -> tuple[xr.Dataset, dict[str, float]]:
    """(method, seed, ``dim``, eval_episode) metrics of learners and references at settings."""
    p = plan.profile
    names = [*plan.methods, *p.references]
    shape = (len(names), len(p.seeds), len(settings), p.sweep_episodes)
    data = {k: np.full(shape, np.nan) for k in METRICS}
    env = np.zeros(shape[1:3] + shape[3:], dtype=np.int64)
    walls: dict[str, float] = {}
    for i, m in enumerate(names):
        kind = "eval" if i < len(plan.methods) else "reference"
        for j, s in enumerate(p.seeds):
            for q, st in enumerate(settings):
                cell = Cell(kind, m, s, st.t_max, st.tasks)
                ds = open_tree(cell.path(out)).to_dataset()
                for k in METRICS:
                    data[k][i, j, q] = ds[k].values
                env[j, q] = ds["env_seed"].values
                walls[cell.name] = float(ds.attrs["wall_s"])
    families = _families(plan)
    result = xr.Dataset(
        {k: (("method", "seed", dim, "eval_episode"), v) for k, v in data.items()},
        coords={
            "method": names,
            "family": ("method", families),
            "seed": list(p.seeds),
            dim: coord,
            "eval_episode": np.arange(p.sweep_episodes),
        },
    )
    result["env_seed"] = (("seed", dim, "eval_episode"), env)
    _describe(result)
    return result, walls


def _families(plan: Plan) -> list[str]:
    from learners import learner_spec

    return [learner_spec(m).family for m in plan.methods] + ["reference"] * len(
        plan.profile.references
    )


def _describe(ds: xr.Dataset) -> None:
    units = {
        "completion_rate": ("1", "fraction of the episode's tasks done by t_max"),
        "mean_latency": ("s", "mean latency of the episode's completed tasks"),
        "mean_pass_at_100": ("1", "mean pass@100 of the episode's completed tasks"),
        "total_reward": ("1", "sum over the episode of r = 1/L + P (0 for a failed task)"),
        "cloud_share": ("1", "fraction of the episode's tasks sent to a cloud server"),
    }
    for k, (u, d) in units.items():
        if k in ds:
            ds[k].attrs.update(units=u, description=d)
    for name, text in (
        ("t_max", "deadline of every task (s)"),
        ("tasks", "tasks per episode, arriving in the preset's fixed time window"),
    ):
        if name in ds.coords:
            ds[name].attrs["description"] = text


def _summary(ds: xr.Dataset, dims: Sequence[str]) -> xr.Dataset:
    """Mean and 95% bootstrap interval over seeds of the per-seed mean over held-out episodes."""
    per_seed = ds[[k for k, _, _ in TABLE_METRICS]].mean("eval_episode", skipna=True)
    rest = [d for d in dims if d not in ("method", "seed")]
    coords = {"method": ds["method"].values, **{d: ds[d].values for d in rest}}
    shape = [len(v) for v in coords.values()]
    out = {}
    for k, _, _ in TABLE_METRICS:
        arr = np.full([*shape, 4], np.nan)
        values = per_seed[k].transpose("method", *rest, "seed").values
        for idx in np.ndindex(*shape):
            iv = mean_interval(values[idx])
            arr[idx] = [iv.mean, iv.low, iv.high, iv.n]
        out[k] = ((*coords, "stat"), arr)
    summary = xr.Dataset(out, coords={**coords, "stat": ["mean", "low", "high", "n_seeds"]})
    summary["family"] = ("method", ds["family"].values)
    summary.attrs["description"] = (
        "per seed, the mean over held-out episodes; mean over seeds with its 95% bootstrap "
        "interval (scipy.stats.bootstrap, BCa, 4999 resamples, seed 0)"
    )
    return summary


def assemble(plan: Plan, out: Path | str) -> xr.DataTree:
    """Assemble every finished cell of a plan into one DataTree.

    Groups
    ------
    ``training``
        (method, seed, episode): per-episode training metrics of the learners and the learner's
        ``learn_stat`` (methods with a smaller budget are NaN beyond it).
    ``evaluation``
        (method, seed, after_episode, eval_episode): held-out evaluations during training.
    ``heldout``
        (method, seed, eval_episode): learners and references at the training setting.
    ``bound``
        (seed, eval_episode): the upper bound on any policy of those held-out episodes (when
        the profile asks for it).
    ``tmax_sweep``, ``load_sweep``
        (method, seed, t_max | tasks, eval_episode): Figs. 4 and 5 (when asked for).
    ``summary/heldout``, ``summary/tmax_sweep``, ``summary/load_sweep``
        (method, [t_max | tasks,] stat): the tables' means and 95% bootstrap intervals.
    ``timing``
        Wall-clock quantities, the only numbers that differ between identical runs:
        ``median_decision_ms`` (method, seed, episode) and ``cell_wall_s`` (cell).

    Per-decision records of the training episodes stay in the training cells' files
    (``OUT/cells/train/<method>/seed<seed>.nc``, groups ``decisions`` etc.).
    """
    out = Path(out)
    p = plan.profile
    missing = [c.name for c in plan.cells() if not c.path(out).exists()]
    if missing:
        raise ReproductionError(
            f"{len(missing)} cells are not finished (first: {missing[0]}); run the reproduction"
        )
    walls: dict[str, float] = {}
    train_parts: list[xr.Dataset] = []
    timing_parts: list[xr.DataArray] = []
    eval_parts: list[xr.Dataset | None] = []
    for m in plan.methods:
        per_seed, per_seed_eval, per_seed_ms = [], [], []
        for s in p.seeds:
            cell = Cell("train", m, s, p.t_max, p.tasks)
            tree = open_tree(cell.path(out))
            walls[cell.name] = float(tree.attrs["wall_s"])
            ep = tree["episodes"].to_dataset()
            per_seed.append(ep[[*METRICS, "learn_stat"]])
            per_seed_ms.append(ep["median_decision_ms"])
            if "evaluation" in tree.children:
                per_seed_eval.append(tree["evaluation"].to_dataset()[list(METRICS)])
        train_parts.append(xr.concat(per_seed, "seed"))
        timing_parts.append(xr.concat(per_seed_ms, "seed"))
        if per_seed_eval:
            eval_parts.append(xr.concat(per_seed_eval, "seed", join="inner"))
        else:
            eval_parts.append(None)
    names = list(plan.methods)
    families = _families(plan)[: len(names)]
    training = xr.concat(train_parts, xr.DataArray(names, dims="method"), join="outer")
    training = training.assign_coords(family=("method", families))
    _describe(training)
    training["learn_stat"].attrs["description"] = (
        "the learner's number after each episode (free energy after refitting, or a loss)"
    )
    children: dict[str, xr.DataTree] = {"training": xr.DataTree(training)}
    with_eval = [(n, e) for n, e in zip(names, eval_parts, strict=True) if e is not None]
    if with_eval:
        evaluation = xr.concat(
            [e for _, e in with_eval],
            xr.DataArray([n for n, _ in with_eval], dims="method"),
            join="outer",
        )
        _describe(evaluation)
        children["evaluation"] = xr.DataTree(evaluation)
    held, w = _sweep_group(plan, out, [plan.training_setting], "setting", [0])
    walls.update(w)
    heldout = held.isel(setting=0, drop=True)
    children["heldout"] = xr.DataTree(heldout)
    summaries = {"heldout": xr.DataTree(_summary(heldout, ("method", "seed")))}
    if p.bound:
        at = plan.training_setting
        parts = []
        for s in p.seeds:
            cell = Cell("bound", "bound", s, at.t_max, at.tasks)
            ds = open_tree(cell.path(out)).to_dataset()
            walls[cell.name] = float(ds.attrs.pop("wall_s"))
            ds.attrs.clear()
            parts.append(ds)
        bound = xr.concat(parts, xr.DataArray(list(p.seeds), dims="seed"))
        if not np.array_equal(bound["env_seed"].values, heldout["env_seed"].values):
            raise ReproductionError("the bound cells hold other episodes than the held-out cells")
        bound = bound.drop_vars("env_seed")
        bound["bound_rg"].attrs["description"] = (
            "upper bound on the total rg any policy earns in the episode (baselines.bound)"
        )
        bound["bound_completion"].attrs["description"] = (
            "upper bound on the fraction of the episode's tasks any policy completes"
        )
        bound["no_contention_rg"].attrs["description"] = (
            "sum over tasks of the best rg an idle server gives (a looser bound)"
        )
        children["bound"] = xr.DataTree(bound)
    sweeps = (
        (4, "tmax_sweep", plan.tmax_settings, "t_max"),
        (5, "load_sweep", plan.load_settings, "tasks"),
    )
    for figure, group, settings_of, dim in sweeps:
        if figure in plan.figures:
            st = settings_of()
            ds, w = _sweep_group(plan, out, st, dim, [getattr(x, dim) for x in st])
            walls.update(w)
            children[group] = xr.DataTree(ds)
            summaries[group] = xr.DataTree(_summary(ds, ("method", "seed", dim)))
    children["summary"] = xr.DataTree(children=summaries)
    timing = xr.Dataset(
        {
            "median_decision_ms": xr.concat(
                timing_parts, xr.DataArray(names, dims="method"), join="outer"
            ),
            "cell_wall_s": ("cell", [walls[k] for k in sorted(walls)]),
        },
        coords={"cell": sorted(walls)},
    )
    timing["median_decision_ms"].attrs["units"] = "ms"
    timing["cell_wall_s"].attrs.update(units="s", description="wall-clock seconds of each cell")
    children["timing"] = xr.DataTree(timing)
    from environments import ScenarioConfig

    scenario = ScenarioConfig.preset(p.scenario)
    window = scenario.episode_window_s
    changes = scenario.drift.change_points()
    budgets = {m: p.train_config(m, p.seeds[0]).episodes for m in plan.methods}
    attrs = {
        "kind": "reproduction",
        "profile": p.name,
        "profile_json": p.to_json(),
        # Lists as JSON: a netCDF attribute of one element would read back as a scalar.
        "figures": json.dumps(list(plan.figures)),
        "methods": json.dumps(list(plan.methods)),
        "skipped_methods": json.dumps(list(plan.skipped)),
        "references": json.dumps(list(p.references)),
        "seeds": json.dumps(list(p.seeds)),
        "n_seeds": len(p.seeds),
        "scenario": p.scenario,
        "t_max": float(p.t_max),
        "tasks": int(p.tasks),
        "window_s": float(window),
        # Training episodes at which the world changes (worlds that drift), with labels.
        "change_points": json.dumps(sorted({c.episode for c in changes})),
        "change_labels": json.dumps([f"{c.episode}: {c.description}" for c in changes]),
        "episodes": json.dumps(budgets),
        "sweep_episodes": int(p.sweep_episodes),
        "smooth": int(p.smooth),
        "interval": "95% bootstrap interval of the mean over seeds (experiments.stats)",
    }
    return xr.DataTree(xr.Dataset(attrs=attrs), children=children)


def compare_results(a: xr.DataTree, b: xr.DataTree) -> list[str]:
    """Where two reproduction results differ, wall-clock timings (group ``timing``) left out.

    Parameters
    ----------
    a, b : xarray.DataTree
        Results of :func:`assemble` (or read from ``results.nc``).

    Returns
    -------
    list of str
        Paths of groups (or ``"/ attrs"``) whose data, coordinates or attributes differ; empty
        when the results are identical (NaN equals NaN).
    """
    paths_a = {node.path for node in a.subtree if not node.path.startswith("/timing")}
    paths_b = {node.path for node in b.subtree if not node.path.startswith("/timing")}
    differ = sorted(paths_a ^ paths_b)
    for path in sorted(paths_a & paths_b):
        node_a, node_b = a[path], b[path]
        assert isinstance(node_a, xr.DataTree) and isinstance(node_b, xr.DataTree)
        da, db = node_a.to_dataset(inherit=False), node_b.to_dataset(inherit=False)
        if not da.identical(db):
            differ.append(path)
    return differ
