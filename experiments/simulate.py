"""Evaluate the reference policies on a scenario preset: ``aif simulate``.

Prints a metrics table (mean and 95% bootstrap interval over episodes) and optionally writes an
xarray Dataset to netCDF.
"""

from __future__ import annotations

import math
import shutil
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from baselines import Policy, make_policy, policy_names
from environments import CloudEdgeOffloadEnv, EpisodeMetrics, ScenarioConfig, episode_metrics
from experiments.atomic import write_atomic
from experiments.progress import ProgressReporter
from experiments.stats import Interval, mean_interval

__all__ = [
    "LOOK_AHEADS",
    "METRICS",
    "POLICY_LEGEND",
    "SimulationResult",
    "evaluate_policy",
    "main",
    "results_to_dataset",
]

#: Metrics reported per episode, in table order.
METRICS: tuple[str, ...] = (
    "completion_rate",
    "mean_latency",
    "mean_pass_at_100",
    "total_reward",
    "cloud_share",
    "n_rejected",
)

#: One line on each built-in reference policy, for the legend under the table.
POLICY_LEGEND: dict[str, str] = {
    "cloud": "every task to the least busy cloud, all of its resources",
    "edge_nearest": "every task to the nearest edge server, all of its resources",
    "edge_least_loaded": "every task to the least busy edge server, all of its resources",
    "random": "a random server and random shares",
    "greedy": "the lowest predicted latency for the task, from the true state",
    "frugal": "the smallest grant that completes the task, edges before clouds",
    "edge_first": "an edge server if it answers within the cloud's time, else the cloud",
    "lookahead": "look-ahead knowing the true state and the next tasks: most completions",
    "lookahead_guidance": "the same look-ahead, most reward r first",
}
#: The clairvoyant look-aheads: references with full knowledge, not bounds (a policy may beat
#: them), and by far the slowest policies to evaluate.
LOOK_AHEADS: tuple[str, ...] = ("lookahead", "lookahead_guidance")
#: The table's columns: (metric, header, digits, meaning), in order.
_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("completion_rate", "completion", 3, "completion rate: the share of the tasks done by t_max"),
    ("mean_latency", "latency (s)", 2, "mean latency of the completed tasks"),
    ("mean_pass_at_100", "pass@100", 3, "mean pass@100 of the completed tasks (accuracy)"),
    ("total_reward", "reward", 2, "reward of the episode, the sum of r = 1/L + P over its tasks"),
    ("cloud_share", "cloud share", 2, "share of the completed tasks that ran on a cloud"),
)
#: Widest output of ``aif simulate`` (table and legend), for logs and narrow terminals.
WIDTH = 100


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
    seeds = range(seed, seed + episodes)  # no list up front: --episodes may be huge
    name = (
        policy if isinstance(policy, str) else str(getattr(policy, "name", type(policy).__name__))
    )
    metrics = []
    for s in seeds:
        metrics.append(run_episode(env, policy, s)[0])
        if progress is not None:
            progress.advance(1, postfix=name)
    return SimulationResult(name, cfg.name, cfg.t_max, list(seeds), metrics)


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


def _legend(names: Sequence[str]) -> list[str]:
    """One line per policy (the built-in ones from :data:`POLICY_LEGEND`, others from their
    docstring) and one per column."""
    width = max(len(n) for n in names)
    lines = ["policies:"]
    for name in names:
        text = POLICY_LEGEND.get(name)
        if text is None:
            doc = (type(make_policy(name)).__doc__ or "").strip()
            text = doc.split(".")[0].split("\n")[0] or "a registered policy"
        lines.append(f"  {name:<{width}}  {text}"[:WIDTH])
    lines.append("columns (mean over episodes [95% bootstrap interval over episodes]):")
    header = max(len(c[1]) for c in _COLUMNS)
    lines += [f"  {h:<{header}}  {meaning}" for _, h, _, meaning in _COLUMNS]
    return lines


def _table(results: Sequence[SimulationResult], title: str) -> Table:
    """The metrics table: a policy per row, the mean above its interval in every cell."""
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        title_justify="left",
    )
    table.add_column("policy", no_wrap=True)
    for _, header, _, _ in _COLUMNS:
        table.add_column(header, justify="right", no_wrap=True)
    for r in results:
        cells = []
        for metric, _, digits, _ in _COLUMNS:
            mean, _, interval = r.interval(metric).format(digits).partition(" ")
            cell = Text(mean)
            if interval:
                cell.append(f"\n{interval}", style="dim")
            cells.append(cell)
        table.add_row(r.policy, *cells)
    return table


def main(
    policy: str | list[str],
    scenario: str | ScenarioConfig,
    tmax: float,
    episodes: int,
    seed: int,
    out: Path | None,
    show_progress: bool = True,
) -> None:
    """Evaluate ``policy`` (or ``"all"``) on a preset and print the metrics table and its legend.

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
        When given, the per-episode metrics are written there as netCDF (atomically, after the
        last episode; missing folders are created).
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
    tty = sys.stdout.isatty()
    console = Console(width=min(shutil.get_terminal_size().columns, WIDTH) if tty else WIDTH)
    slow = [n for n in names if n in LOOK_AHEADS]
    if slow and show_progress:
        what = (
            "look-aheads with full knowledge, not bounds) take"
            if len(slow) > 1
            else "a look-ahead with full knowledge, not a bound) takes"
        )
        # wrapped to the same width as the table
        note = f"note: {' and '.join(slow)} ({what} most of the time"
        print(textwrap.fill(note, WIDTH, subsequent_indent="  "), file=sys.stderr, flush=True)
    results = []
    seconds: dict[str, float] = {}
    with ProgressReporter(len(names) * episodes, "episodes", enabled=show_progress) as progress:
        for name in names:
            start = time.perf_counter()
            results.append(evaluate_policy(name, cfg, episodes, seed, progress=progress))
            seconds[name] = time.perf_counter() - start
    title = (
        f"scenario={scenario}  t_max={tmax:g} s  episodes={episodes}  "
        f"seeds={seed}..{seed + episodes - 1}"
    )
    console.print(_table(results, title))
    for line in _legend(names):
        console.print(Text(line), no_wrap=True, overflow="ellipsis")
    if slow:
        total = sum(seconds.values())
        took = sum(seconds[n] for n in slow)
        many = len(slow) > 1
        console.print(
            Text(
                f"{' and '.join(slow)}: "
                + ("look-aheads" if many else "a look-ahead")
                + " with full knowledge, not "
                + ("bounds" if many else "a bound")
                + " (see aif bound);"
            )
        )
        console.print(
            Text(f"{'they' if many else 'it'} took {took:.0f} s of this run's {total:.0f} s.")
        )
    if out is not None:
        write_netcdf_atomic(results_to_dataset(results), Path(out))
        console.print(Text(f"wrote {out}"))
