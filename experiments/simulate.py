"""Evaluate the reference policies on a scenario preset: ``aif simulate``.

Prints a metrics table (mean and 95% bootstrap interval over episodes) and optionally writes an
xarray Dataset to netCDF.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from rich.console import Console
from rich.table import Table

from baselines import Policy, make_policy, policy_names
from environments import CloudEdgeOffloadEnv, EpisodeMetrics, ScenarioConfig, episode_metrics
from experiments.atomic import write_atomic
from experiments.progress import ProgressReporter
from experiments.stats import Interval, mean_interval

__all__ = ["METRICS", "SimulationResult", "evaluate_policy", "main", "results_to_dataset"]

#: Metrics reported per episode, in table order.
METRICS: tuple[str, ...] = (
    "completion_rate",
    "mean_latency",
    "mean_pass_at_100",
    "total_reward",
    "cloud_share",
    "n_rejected",
)


@dataclass(frozen=True)
class SimulationResult:
    """Per-episode metrics of one policy on one scenario.

    Attributes
    ----------
    policy : str
    scenario : str
    t_max : float
    seeds : list of int, length n_episodes
        Seed of each episode (``seed + k``).
    episodes : list of EpisodeMetrics, length n_episodes
    """

    policy: str
    scenario: str
    t_max: float
    seeds: list[int]
    episodes: list[EpisodeMetrics] = field(default_factory=list)

    def values(self, metric: str) -> np.ndarray:
        """One metric over episodes, shape (n_episodes,)."""
        if metric not in EpisodeMetrics._fields:
            raise ValueError(f"unknown metric {metric!r}; expected one of {EpisodeMetrics._fields}")
        return np.asarray([float(getattr(m, metric)) for m in self.episodes])

    def mean(self, metric: str) -> float:
        """Mean over episodes, ignoring NaN (episodes with no completed task)."""
        v = self.values(metric)
        return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan

    def interval(self, metric: str) -> Interval:
        """Mean and 95% bootstrap interval over episodes, ignoring NaN."""
        return mean_interval(self.values(metric))


def run_episode(
    env: CloudEdgeOffloadEnv, policy: str | Policy, seed: int
) -> tuple[EpisodeMetrics, list[dict[str, object]]]:
    """Run one episode of ``policy`` (a name or a policy object) on ``env`` with ``seed``."""
    if isinstance(policy, str):
        policy = make_policy(policy)
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    infos: list[dict[str, object]] = []
    done = False
    while not done:
        obs, _, done, _, info = env.step(policy.act(env, obs))
        infos.append(info)
    return episode_metrics(infos), infos


def evaluate_policy(
    policy: str | Policy,
    config: ScenarioConfig | str = "paper",
    episodes: int = 5,
    seed: int = 0,
    t_max: float | None = None,
    progress: ProgressReporter | None = None,
) -> SimulationResult:
    """Evaluate one reference policy over ``episodes`` episodes (seeds ``seed .. seed+episodes-1``).

    Parameters
    ----------
    policy : str or Policy
        A name of ``baselines.policy_names()``, or a policy object (``reset(seed)`` and
        ``act(env, obs)``); an object is reset with each episode's seed.
    config : ScenarioConfig or str
        A configuration or a preset name.
    episodes : int
        Number of episodes (>= 1).
    seed : int
        Seed of the first episode.
    t_max : float, optional
        Overrides the configuration's ``t_max``.
    progress : experiments.progress.ProgressReporter, optional
        Counts each finished episode on it when given (the policy's name as its status).
    """
    if episodes < 1:
        raise ValueError(f"episodes={episodes}, expected >= 1")
    cfg = ScenarioConfig.preset(config) if isinstance(config, str) else config
    if t_max is not None:
        cfg = cfg.with_overrides(t_max=t_max)
    env = CloudEdgeOffloadEnv(cfg)
    seeds = [seed + k for k in range(episodes)]
    name = (
        policy if isinstance(policy, str) else str(getattr(policy, "name", type(policy).__name__))
    )
    metrics = []
    for s in seeds:
        metrics.append(run_episode(env, policy, s)[0])
        if progress is not None:
            progress.advance(1, postfix=name)
    return SimulationResult(name, cfg.name, cfg.t_max, seeds, metrics)


def results_to_dataset(results: list[SimulationResult]) -> xr.Dataset:
    """Stack results into a Dataset with dims ``(policy, episode)``, one variable per metric."""
    if not results:
        raise ValueError("results is empty")
    n_ep = len(results[0].episodes)
    if any(len(r.episodes) != n_ep for r in results):
        raise ValueError("every result must hold the same number of episodes")
    data = {
        m: (("policy", "episode"), np.stack([r.values(m) for r in results]))
        for m in (*METRICS, "n_completed", "n_tasks")
    }
    ds = xr.Dataset(
        data,
        coords={
            "policy": [r.policy for r in results],
            "episode": np.arange(n_ep),
            "seed": ("episode", np.asarray(results[0].seeds)),
        },
        attrs={"scenario": results[0].scenario, "t_max_s": results[0].t_max},
    )
    ds["mean_latency"].attrs["units"] = "s"
    ds["mean_latency"].attrs["description"] = "mean latency of completed tasks"
    ds["completion_rate"].attrs["description"] = "completed tasks / tasks"
    ds["mean_pass_at_100"].attrs["description"] = "mean pass@100 of completed tasks"
    ds["total_reward"].attrs["description"] = "sum of r = 1/L + P over the episode"
    return ds


def _netcdf_engine() -> Literal["h5netcdf", "scipy"]:
    """h5netcdf (NETCDF4) when h5py is importable, else scipy (NETCDF3, no extra dependency)."""
    import importlib.util

    return "h5netcdf" if importlib.util.find_spec("h5py") is not None else "scipy"


def write_netcdf_atomic(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine=_netcdf_engine()))


def _fmt(r: SimulationResult, metric: str, digits: int) -> str:
    return r.interval(metric).format(digits)


def main(
    policy: str | list[str],
    scenario: str | ScenarioConfig,
    tmax: float,
    episodes: int,
    seed: int,
    out: Path | None,
    show_progress: bool = True,
) -> None:
    """Evaluate ``policy`` (or ``"all"``) on a preset and print the metrics table.

    Parameters
    ----------
    policy : str or list of str
        A name from ``baselines.POLICY_NAMES``, a list of them, or ``"all"``.
    scenario : str or ScenarioConfig
        A preset name (``environments.PRESETS``) or a whole configuration.
    tmax : float
        ``t_max`` in seconds.
    episodes : int
        Episodes per policy.
    seed : int
        Seed of the first episode; episode ``k`` uses ``seed + k``.
    out : pathlib.Path or None
        When given, the per-episode metrics are written there as netCDF (atomically).
    show_progress : bool
        Count the episodes on stderr: a rich bar on a terminal, plain lines otherwise.
    """
    if isinstance(policy, str):
        names = policy_names() if policy == "all" else [policy]
    else:
        names = list(policy)
    for name in names:
        if name not in policy_names():
            raise ValueError(f"unknown policy {name!r}; expected 'all' or one of {policy_names()}")
    cfg = (
        ScenarioConfig.preset(scenario, t_max=tmax)
        if isinstance(scenario, str)
        else scenario.with_overrides(t_max=tmax)
    )
    scenario = cfg.name
    # A fixed width keeps the table readable when the output is captured (no terminal).
    console = Console(width=None if sys.stdout.isatty() else 200)
    results = []
    with ProgressReporter(len(names) * episodes, "episodes", enabled=show_progress) as progress:
        for name in names:
            results.append(evaluate_policy(name, cfg, episodes, seed, progress=progress))
    table = Table(
        title=(
            f"scenario={scenario}  t_max={tmax:g} s  episodes={episodes}  seeds={seed}..{seed + episodes - 1}"
            "  (mean [95% bootstrap interval over episodes])"
        )
    )
    table.add_column("policy", no_wrap=True)
    for header in ("completion rate", "mean latency [s]", "mean pass@100", "total reward"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("cloud share", justify="right", no_wrap=True)
    for r in results:
        table.add_row(
            r.policy,
            _fmt(r, "completion_rate", 3),
            _fmt(r, "mean_latency", 2),
            _fmt(r, "mean_pass_at_100", 3),
            _fmt(r, "total_reward", 2),
            _fmt(r, "cloud_share", 2),
        )
    console.print(table)
    if out is not None:
        write_netcdf_atomic(results_to_dataset(results), Path(out))
        console.print(f"wrote {out}")
