"""`aif bound` and `aif scenarios`: the upper bound of episodes, and the presets, as tables."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.progress import ProgressReporter
from experiments.stats import mean_interval

__all__ = ["SCENARIO_NOTES", "bound_table", "episode_bounds", "scenario_lines"]

#: One line per preset: why it exists (``docs/environment.md`` gives each in full).
SCENARIO_NOTES: dict[str, str] = {
    "paper": "the paper's operating point, calibrated",
    "congested": "the paper's servers under 1.56 times its load",
    "large": "40 servers and 5000 terminals",
    "heavy": "200 tasks in the paper's window",
    "tight": "the paper's world with t_max 6 s",
    "contention": "co-located tasks slow each other's decode (outside the agent's model)",
    "bursty": "Markov-modulated Poisson arrivals (calm and burst rates)",
    "diurnal": "an arrival rate that ramps up and down within the window",
    "drift": "changes across training episodes (slowdown, failure, link, problem mix)",
}


def _config(scenario: Any, t_max: float | None, tasks: int | None) -> Any:
    from environments import ScenarioConfig

    overrides: dict[str, Any] = {}
    if t_max is not None:
        overrides["t_max"] = float(t_max)
    if tasks is not None:
        overrides["tasks_per_episode"] = int(tasks)
    if isinstance(scenario, str):
        return ScenarioConfig.preset(scenario, **overrides)
    return scenario.with_overrides(**overrides) if overrides else scenario


def episode_bounds(
    scenario: Any,
    seeds: Sequence[int],
    t_max: float | None = None,
    tasks: int | None = None,
    dt: float = 0.5,
    progress: bool = False,
) -> list[Any]:
    """:func:`baselines.bound.episode_bound` of the episode of every env seed.

    Parameters
    ----------
    scenario : str or ScenarioConfig
        A preset name (``environments.PRESETS``) or a whole configuration.
    seeds : sequence of int
        Env seeds; one episode each.
    t_max, tasks : optional
        Override the preset's deadline (s) and tasks per episode.
    dt : float
        Slot length of the relaxation (s).
    progress : bool
        Count the episodes on stderr.

    Returns
    -------
    list of baselines.bound.EpisodeBound
    """
    from baselines.bound import episode_bound
    from environments import CloudEdgeOffloadEnv

    env = CloudEdgeOffloadEnv(_config(scenario, t_max, tasks))
    out = []
    with ProgressReporter(len(seeds), "bounded episodes", enabled=progress) as bar:
        for k, seed in enumerate(seeds):
            out.append(episode_bound(env, int(seed), dt=dt))
            bar.update(k + 1)
    return out


def bound_table(
    scenario: Any,
    seeds: Sequence[int],
    t_max: float | None = None,
    tasks: int | None = None,
    dt: float = 0.5,
    progress: bool = False,
) -> str:
    """The per-episode bounds of :func:`episode_bounds` as a text table with a mean row."""
    cfg = _config(scenario, t_max, tasks)
    bounds = episode_bounds(cfg, seeds, dt=dt, progress=progress)
    lines = [
        f"scenario={cfg.name}  t_max={cfg.t_max:g} s  tasks={cfg.tasks_per_episode}  dt={dt:g} s",
        f"{'seed':>6} {'bound rg':>10} {'bound completion':>17} {'no-contention rg':>17}",
    ]
    for seed, b in zip(seeds, bounds, strict=True):
        rg, done, nc = _up(b.rg, 2), _up(b.completion, 3), _up(b.no_contention_rg, 2)
        lines.append(f"{seed:>6} {rg:>10.2f} {done:>17.3f} {nc:>17.2f}")
    if len(bounds) > 1:
        mean_rg = mean_interval(np.array([b.rg for b in bounds])).format(2)
        mean_done = mean_interval(np.array([b.completion for b in bounds])).format(3)
        lines.append(f"{'mean':>6} rg {mean_rg}  completion {mean_done}  (95% intervals)")
    lines.append(
        "bound rg, bound completion (rounded up): no policy exceeds them in that episode (an LP "
        "relaxation of the realised episode, docs/bound.md); no-contention rg: every task at the "
        "best guidance an idle server could give it"
    )
    return "\n".join(lines)


def _up(value: float, digits: int) -> float:
    """``value`` rounded up at ``digits`` decimals, so that a printed bound stays a bound."""
    scale = 10.0**digits
    return math.ceil(value * scale - 1e-9) / scale


def scenario_lines() -> list[str]:
    """One line per preset: name, tasks per episode, t_max and why it exists."""
    from environments import PRESETS, ScenarioConfig

    out = []
    for name in PRESETS:
        cfg = ScenarioConfig.preset(name)
        note = SCENARIO_NOTES.get(name, "")
        out.append(f"{name:11s} {cfg.tasks_per_episode:>5d} tasks  t_max {cfg.t_max:>4g} s  {note}")
    return out
