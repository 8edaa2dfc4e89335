"""The paper's t_max pattern with the reference policies (He et al., TMC 2024, Fig. t_max sweep).

Nothing completes at t_max <= 2 s; from 3 to 9 s only cloud placements complete; from 10 s edge
placements complete too.
"""

from __future__ import annotations

import pytest

from baselines import HEURISTIC_NAMES, make_policy
from environments import CloudEdgeOffloadEnv, ScenarioConfig

SEEDS = (0, 1)
N_TASKS = 40


def completions_by_kind(t_max: float) -> dict[str, int]:
    counts = {"cloud": 0, "edge": 0}
    cfg = ScenarioConfig.preset("paper", t_max=t_max, tasks_per_episode=N_TASKS)
    env = CloudEdgeOffloadEnv(cfg)
    for name in HEURISTIC_NAMES:
        for seed in SEEDS:
            policy = make_policy(name)
            policy.reset(seed)
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                obs, _, done, _, info = env.step(policy.act(env, obs))
                if info["completed"]:
                    counts[info["server_kind"]] += 1
    return counts


@pytest.mark.parametrize("t_max", [1.0, 2.0])
def test_nothing_completes_at_two_seconds_or_less(t_max: float) -> None:
    assert completions_by_kind(t_max) == {"cloud": 0, "edge": 0}


@pytest.mark.parametrize("t_max", [3.0, 5.0, 7.0, 9.0])
def test_only_cloud_completes_between_three_and_nine_seconds(t_max: float) -> None:
    counts = completions_by_kind(t_max)
    assert counts["cloud"] > 0
    assert counts["edge"] == 0


@pytest.mark.parametrize("t_max", [10.0, 12.0, 15.0])
def test_edge_completes_from_ten_seconds(t_max: float) -> None:
    counts = completions_by_kind(t_max)
    assert counts["cloud"] > 0 and counts["edge"] > 0


def test_oracle_nearly_completes_paper_preset_but_naive_policies_do_not() -> None:
    cfg = ScenarioConfig.preset("paper")
    env = CloudEdgeOffloadEnv(cfg)
    rates = {}
    for name in ("oracle", "greedy", "cloud", "edge_least_loaded", "random"):
        policy = make_policy(name)
        policy.reset(0)
        obs, _ = env.reset(seed=0)
        done, completed = False, 0
        while not done:
            obs, _, done, _, info = env.step(policy.act(env, obs))
            completed += info["completed"]
        rates[name] = completed / cfg.tasks_per_episode
    assert rates["oracle"] >= 0.93
    assert rates["cloud"] < 0.6 and rates["edge_least_loaded"] < 0.7 and rates["random"] < 0.3
    assert rates["greedy"] < rates["oracle"]
