"""The paper preset against the paper's published facts, with reference policies only.

He et al. (IoT-J 2025; TMC 2024): no task completes at t_max <= 2 s; from 3 to 9 s only cloud
placements complete; from 10 s the best method completes about 99% with about 8 s mean latency,
0.175 mean pass@100 and about a fifth of the tasks on the cloud, and placement matters (neither
the cloud alone nor the edges alone get there); a heavier load (100..200 tasks) costs
completion. Every fact is checked on seeds used nowhere else (docs/environment.md, Calibration).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from baselines import HEURISTIC_NAMES, make_policy
from environments import CloudEdgeOffloadEnv, ScenarioConfig

SEEDS = tuple(range(1000, 1020))
ORACLE_SEEDS = SEEDS[:10]
SWEEP_SEEDS = SEEDS[:3]
EVERY_POLICY = (*HEURISTIC_NAMES, "lookahead")


@functools.cache
def measure(policy: str, t_max: float, seeds: tuple[int, ...], tasks: int = 100) -> dict:
    """Completion, cloud share, mean latency and pass@100 of completed tasks, over ``seeds``."""
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", t_max=t_max, tasks_per_episode=tasks))
    infos = []
    for seed in seeds:
        pol = make_policy(policy)
        pol.reset(seed)
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            obs, _, done, _, info = env.step(pol.act(env, obs))
            infos.append(info)
    done_ = [i for i in infos if i["completed"]]
    return {
        "completion": len(done_) / len(infos),
        "cloud_done": sum(i["server_kind"] == "cloud" for i in done_),
        "edge_done": sum(i["server_kind"] == "edge" for i in done_),
        "cloud_share": np.mean([i["server_kind"] == "cloud" for i in done_]) if done_ else 0.0,
        "latency": np.mean([i["latency"] for i in done_]) if done_ else np.nan,
        "pass_at_100": np.mean([i["pass_at_100"] for i in done_]) if done_ else np.nan,
    }


@pytest.mark.parametrize("t_max", [1.0, 2.0])
def test_nothing_completes_at_two_seconds_or_less(t_max: float) -> None:
    for policy in EVERY_POLICY:
        assert measure(policy, t_max, SWEEP_SEEDS)["completion"] == 0.0, policy


@pytest.mark.parametrize("t_max", [3.0, 5.0, 7.0, 9.0])
def test_only_cloud_placements_complete_from_three_to_nine_seconds(t_max: float) -> None:
    cloud_done = 0
    for policy in EVERY_POLICY:
        m = measure(policy, t_max, SWEEP_SEEDS)
        assert m["edge_done"] == 0, policy
        cloud_done += m["cloud_done"]
    assert cloud_done > 0


@pytest.mark.parametrize("t_max", [pytest.param(10.0, marks=pytest.mark.slow), 15.0])
def test_the_papers_operating_point_is_reached_and_placement_matters(t_max: float) -> None:
    lookahead = measure("lookahead", t_max, ORACLE_SEEDS)["completion"]
    assert lookahead >= 0.99
    # A rule that knows nothing of future tasks completes as the paper's best method does, and
    # at the paper's t_max (15 s) with its latency, accuracy and division of labour.
    best = measure("edge_first", t_max, SEEDS)
    assert best["completion"] >= 0.97
    if t_max == 15.0:
        assert 7.0 <= best["latency"] <= 10.0
        assert 0.16 <= best["pass_at_100"] <= 0.19
        assert 0.15 <= best["cloud_share"] <= 0.35
    # Neither the cloud alone nor the edges alone get there.
    for policy in ("cloud", "edge_nearest", "edge_least_loaded"):
        assert measure(policy, t_max, SEEDS)["completion"] <= lookahead - 0.05, policy


@pytest.mark.slow
def test_a_heavier_load_in_the_same_window_costs_completion() -> None:
    rules = [p for p in HEURISTIC_NAMES if p != "random"]
    best = [
        max(measure(p, 15.0, SEEDS, tasks)["completion"] for p in rules)
        for tasks in (100, 150, 200)
    ]
    assert best[0] > best[1] > best[2], best
