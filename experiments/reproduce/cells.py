"""Cells of a reproduction: one (method, seed, setting) each, computed by one Dask task.

Every cell writes its own result atomically under ``OUT/cells/``, so a rerun skips finished cells
and a killed worker or run loses nothing finished.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from environments.learner import EpisodeSpec
from experiments.atomic import write_atomic
from experiments.reproduce.profiles import Profile, ReproductionError
from experiments.runconfig import TrainConfig, eval_seed
from experiments.train import METRICS


class Setting(NamedTuple):
    """Where held-out episodes are played: deadline (s) and tasks per episode."""

    t_max: float
    tasks: int


@dataclass(frozen=True)
class Cell:
    """One task of the sweep.

    Attributes
    ----------
    kind : str
        ``"train"`` (a learner's training run of one seed), ``"eval"`` (held-out episodes of a
        trained learner at one setting), ``"reference"`` (a reference policy at one setting) or
        ``"bound"`` (the upper bound on any policy of those held-out episodes).
    method : str
        Learner or reference policy name.
    seed : int
    t_max : float
        Deadline of the setting (s).
    tasks : int
        Tasks per episode of the setting.
    """

    kind: str
    method: str
    seed: int
    t_max: float
    tasks: int

    @property
    def name(self) -> str:
        """A readable unique name, e.g. ``eval/aif/seed0/tmax5-tasks100``."""
        if self.kind == "train":
            return f"train/{self.method}/seed{self.seed}"
        return f"{self.kind}/{self.method}/seed{self.seed}/tmax{self.t_max:g}-tasks{self.tasks}"

    def path(self, out: Path) -> Path:
        """The cell's result file under ``out/cells``."""
        return Path(out) / "cells" / f"{self.name}.nc"

    @property
    def train_name(self) -> str:
        """Name of the training cell an evaluation cell depends on."""
        return f"train/{self.method}/seed{self.seed}"


def _checkpoint_dir(out: Path, method: str) -> Path:
    return Path(out) / "checkpoints" / method


def write_dataset(ds: xr.Dataset | xr.DataTree, path: Path) -> None:
    write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))


def _train_cell(profile: Profile, cell: Cell, out: Path) -> None:
    from experiments.train import records_to_datatree, train_seed

    config = profile.train_config(cell.method, cell.seed)
    start = time.perf_counter()
    result = train_seed(config, cell.seed, checkpoint_dir=_checkpoint_dir(out, cell.method))
    tree = records_to_datatree(config, {cell.seed: result})
    tree.attrs.update(cell=cell.name, wall_s=time.perf_counter() - start)
    write_dataset(tree, cell.path(out))


def _episodes_dataset(records: list[dict[str, Any]], cell: Cell, wall_s: float) -> xr.Dataset:
    ds = xr.Dataset(
        {k: ("eval_episode", [r["metrics"][k] for r in records]) for k in METRICS},
        coords={"eval_episode": np.arange(len(records))},
    )
    ds["env_seed"] = ("eval_episode", np.asarray([r["env_seed"] for r in records], np.int64))
    ds.attrs.update(cell=cell.name, wall_s=wall_s)
    return ds


def _eval_cell(profile: Profile, cell: Cell, out: Path) -> None:
    import torch

    from experiments.train import episode_record, load_checkpoint
    from learners import build_learner

    start = time.perf_counter()
    train = profile.train_config(cell.method, cell.seed)
    ckpt = _checkpoint_dir(out, cell.method) / f"seed{cell.seed}.pt"
    if not ckpt.exists():
        raise ReproductionError(
            f"{cell.name} needs the checkpoint {ckpt}, which is missing; delete "
            f"{Path(out) / 'cells' / cell.train_name}.nc to train that seed again"
        )
    state = load_checkpoint(ckpt)
    if state["digest"] != train.digest(cell.seed) or len(state["records"]) != train.episodes:
        raise ReproductionError(
            f"checkpoint {ckpt} is not the finished training run of {cell.train_name}; delete it "
            "and its cell to train again"
        )
    torch.set_num_threads(train.threads)
    # The learner is built for the setting's load (its env) and given the trained state.
    learner = build_learner(replace(train, tasks_per_episode=cell.tasks).context(), cell.seed)
    learner.load_state_dict(state["learner"])
    seeds = [eval_seed(cell.seed, k) for k in range(profile.sweep_episodes)]
    records = [
        episode_record(learner.evaluate(EpisodeSpec(s, train.episodes), t_max=cell.t_max), s)
        for s in seeds
    ]
    write_dataset(_episodes_dataset(records, cell, time.perf_counter() - start), cell.path(out))


def _reference_cell(profile: Profile, cell: Cell, out: Path) -> None:
    from experiments.train import evaluate_references

    start = time.perf_counter()
    config = TrainConfig(
        scenario=profile.scenario,
        t_max=cell.t_max,
        seeds=(cell.seed,),
        tasks_per_episode=cell.tasks,
    )
    seeds = [eval_seed(cell.seed, k) for k in range(profile.sweep_episodes)]
    specs = [EpisodeSpec(s, profile.final_phase) for s in seeds]
    ref = evaluate_references(config, [cell.method], {cell.seed: specs}, "eval_episode")
    ds = ref.isel(policy=0, seed=0, drop=True)[list(METRICS)]
    ds["env_seed"] = ("eval_episode", np.asarray(seeds, np.int64))
    ds.attrs.update(cell=cell.name, wall_s=time.perf_counter() - start)
    write_dataset(ds, cell.path(out))


def _bound_cell(profile: Profile, cell: Cell, out: Path) -> None:
    from baselines.bound import episode_bound

    start = time.perf_counter()
    config = TrainConfig(
        scenario=profile.scenario,
        t_max=cell.t_max,
        seeds=(cell.seed,),
        tasks_per_episode=cell.tasks,
    )
    env = config.world.make()
    seeds = [eval_seed(cell.seed, k) for k in range(profile.sweep_episodes)]
    bounds = [
        episode_bound(env, s, options=EpisodeSpec(s, profile.final_phase).options) for s in seeds
    ]
    ds = xr.Dataset(
        {
            "bound_rg": ("eval_episode", [b.rg for b in bounds]),
            "bound_completion": ("eval_episode", [b.completion for b in bounds]),
            "no_contention_rg": ("eval_episode", [b.no_contention_rg for b in bounds]),
            "env_seed": ("eval_episode", np.asarray(seeds, np.int64)),
        },
        coords={"eval_episode": np.arange(len(seeds))},
    )
    ds.attrs.update(cell=cell.name, wall_s=time.perf_counter() - start)
    write_dataset(ds, cell.path(out))


def run_cell(profile: Profile, cell: Cell, out: str | Path, *after: Any) -> str:
    """Compute one cell and write its result atomically (nothing when it is already there).

    This is the function every Dask task runs. It is a deterministic function of the profile
    and the cell: running it again, on any worker, gives the same file contents (up to the
    wall-clock ``wall_s`` attribute).

    Parameters
    ----------
    profile : Profile
    cell : Cell
    out : str or Path
        The run folder (shared by every worker: a local disk or a shared file system).
    *after : object
        Results of the cells this one depends on (passed by Dask so that it runs after them).

    Returns
    -------
    str
        The cell's name.
    """
    path = cell.path(Path(out))
    if path.exists():
        return cell.name
    if cell.kind == "train":
        _train_cell(profile, cell, Path(out))
    elif cell.kind == "eval":
        _eval_cell(profile, cell, Path(out))
    elif cell.kind == "reference":
        _reference_cell(profile, cell, Path(out))
    elif cell.kind == "bound":
        _bound_cell(profile, cell, Path(out))
    else:
        raise ValueError(f"cell kind {cell.kind!r} is unknown")
    return cell.name
