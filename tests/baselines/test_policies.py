"""Reference policies: names, valid actions, what they read, and the look-ahead."""

from __future__ import annotations

import numpy as np
import pytest

from baselines import (
    HEURISTIC_NAMES,
    POLICY_NAMES,
    LookaheadPolicy,
    completion_upper_bound,
    make_policy,
)
from baselines.heuristics import capped_shares
from environments import CloudEdgeOffloadEnv, ScenarioConfig


def small_env(**overrides: object) -> CloudEdgeOffloadEnv:
    return CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", tasks_per_episode=25, **overrides))


def test_policy_names() -> None:
    assert set(HEURISTIC_NAMES) < set(POLICY_NAMES) and "lookahead" in POLICY_NAMES
    with pytest.raises(ValueError, match="nope"):
        make_policy("nope")


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_actions_are_in_the_native_space(name: str) -> None:
    env = small_env()
    policy = make_policy(name)
    policy.reset(0)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        action = policy.act(env, obs)
        assert env.action_space.contains(
            {
                "server": np.int64(action["server"]),
                "shares": np.asarray(action["shares"], np.float32),
            }
        )
        obs, _, done, _, _ = env.step(action)


def test_heuristics_place_where_they_say() -> None:
    env = small_env()
    obs, _ = env.reset(seed=0)
    cloud = make_policy("cloud").act(env, obs)
    assert env.server_kinds[cloud["server"]] == "cloud"
    near = make_policy("edge_nearest").act(env, obs)
    dist = obs[env.obs_layout["distance"]]
    edges = [j for j, k in enumerate(env.server_kinds) if k == "edge"]
    assert near["server"] == min(edges, key=lambda j: dist[j])
    env.step({"server": near["server"], "shares": np.ones(3, np.float32)})
    least = make_policy("edge_least_loaded").act(env, obs)
    assert least["server"] != near["server"]  # the nearest edge is now full


def test_full_grant_heuristics_queue_and_are_never_rejected() -> None:
    env = small_env(episode_window_s=5.0)
    for name in ("cloud", "edge_nearest", "edge_least_loaded", "greedy", "edge_first"):
        policy = make_policy(name)
        obs, _ = env.reset(seed=1)
        done, waited = False, 0
        while not done:
            obs, _, done, _, info = env.step(policy.act(env, obs))
            assert info["failure"] != "rejected" or name == "edge_first"
            waited += (
                info["start_time"] is not None and info["start_time"] > info["arrival_time"] + 0.5
            )
        assert waited > 0, name  # 25 tasks in 5 s: every rule has to queue some


def test_capped_shares_never_exceed_what_is_free() -> None:
    env = small_env(episode_window_s=5.0)
    obs, _ = env.reset(seed=1)
    for _ in range(10):
        for j in range(env.n_servers):
            assert np.all(capped_shares(env, j, 0.7) <= np.maximum(env.remaining[j], 0) + 1e-7)
        env.step({"server": 0, "shares": capped_shares(env, 0, 0.7)})


def test_edge_first_fills_idle_edges_then_overflows_to_the_cloud() -> None:
    env = small_env(episode_window_s=2.0)
    obs, _ = env.reset(seed=3)
    policy = make_policy("edge_first")
    kinds = []
    for _ in range(6):
        action = policy.act(env, obs)
        kinds.append(env.server_kinds[action["server"]])
        obs, *_ = env.step(action)
    # Four idle edges take the first four tasks; the next ones go to the cloud.
    assert kinds[:4] == ["edge"] * 4 and kinds[4] == "cloud"


def test_random_policy_is_seeded() -> None:
    env = small_env()
    obs, _ = env.reset(seed=0)
    a, b = make_policy("random"), make_policy("random")
    a.reset(3)
    b.reset(3)
    for _ in range(5):
        x, y = a.act(env, obs), b.act(env, obs)
        assert x["server"] == y["server"] and np.array_equal(x["shares"], y["shares"])


def test_greedy_picks_lowest_predicted_latency() -> None:
    env = small_env()
    obs, _ = env.reset(seed=0)
    action = make_policy("greedy").act(env, obs)
    chosen = env.predict_outcome(action).latency
    for j in range(env.n_servers):
        other = env.predict_outcome({"server": j, "shares": np.ones(3, np.float32)}).latency
        assert chosen <= other + 1e-12


def test_frugal_takes_the_smallest_grant_that_completes() -> None:
    env = small_env()
    obs, _ = env.reset(seed=0)
    policy = make_policy("frugal")

    def footprint(server: int, grant: np.ndarray) -> float:
        # compute + memory granted; any cloud counts as larger than any edge
        return float(grant[0] + grant[2]) + 10.0 * bool(env.server_is_cloud[server])

    used_edge = False
    for _ in range(15):
        action = policy.act(env, obs)
        assert env.predict_outcome(action).completed
        mine = footprint(action["server"], action["shares"])
        used_edge |= not env.server_is_cloud[action["server"]]
        for j in range(env.n_servers):
            for level in (0.2, 0.25, 0.34, 0.5, 1.0):
                grant = np.full(3, level, np.float32)
                if env.predict_outcome({"server": j, "shares": grant}).completed:
                    assert mine <= footprint(j, grant) + 1e-6
        obs, *_ = env.step(action)
    assert used_edge


def test_lookahead_restores_state_and_beats_bound_check() -> None:
    env = small_env(episode_window_s=25 / 1.5)
    obs, _ = env.reset(seed=2)
    bound = completion_upper_bound(env)
    assert env.current_task["step"] == 0
    lookahead = LookaheadPolicy(horizon=4)
    done, completed = False, 0
    while not done:
        snapshot = env.remaining.copy(), env.clock
        action = lookahead.act(env, obs)
        assert np.array_equal(env.remaining, snapshot[0]) and env.clock == snapshot[1]
        obs, _, done, _, info = env.step(action)
        completed += info["completed"]
    assert completed / 25 <= bound + 1e-12
    assert bound > 0.9


def test_upper_bound_is_zero_when_nothing_can_complete() -> None:
    env = small_env(t_max=1.0)
    env.reset(seed=0)
    assert completion_upper_bound(env) == 0.0


@pytest.mark.slow
def test_lookahead_objectives_each_win_on_their_own_criterion() -> None:
    """Completion-first and guidance-first clairvoyant planners trade completion for guidance."""
    with pytest.raises(ValueError, match="objective"):
        LookaheadPolicy(objective="latency")
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", tasks_per_episode=60))
    totals = {}
    for name in ("lookahead", "lookahead_guidance"):
        completed = guidance = 0.0
        for seed in range(3):
            policy = make_policy(name)
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                obs, _, done, _, info = env.step(policy.act(env, obs))
                completed += info["completed"]
                guidance += info["rg"]
        totals[name] = (completed, guidance)
    assert totals["lookahead"][0] >= totals["lookahead_guidance"][0]
    assert totals["lookahead_guidance"][1] >= totals["lookahead"][1]


def test_a_policy_of_ones_own_registers_and_is_evaluated() -> None:
    from baselines import policy_names, register_policy
    from experiments.simulate import evaluate_policy

    class EdgeZero:
        name = "edge_zero"

        def reset(self, seed: int | None = None) -> None:
            self.seen = 0

        def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict:
            self.seen += 1
            return {"server": 1, "shares": np.ones(3, np.float32)}

    assert "edge_zero" not in policy_names()
    register_policy("edge_zero", EdgeZero)
    assert "edge_zero" in policy_names()
    with pytest.raises(ValueError, match="already"):
        register_policy("edge_zero", EdgeZero)
    by_name = evaluate_policy("edge_zero", ScenarioConfig.preset("paper", tasks_per_episode=20))
    obj = EdgeZero()
    by_object = evaluate_policy(obj, ScenarioConfig.preset("paper", tasks_per_episode=20))
    assert by_name.policy == by_object.policy == "edge_zero"
    assert (
        by_name.values("completion_rate").tolist() == by_object.values("completion_rate").tolist()
    )
    assert obj.seen == 20
