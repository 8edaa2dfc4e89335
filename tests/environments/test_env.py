"""The Gymnasium environment: API, determinism, resources, queueing and latency properties."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import environments
from environments import (
    CloudEdgeOffloadEnv,
    DiscreteActionWrapper,
    FlatContinuousActionWrapper,
    ScenarioConfig,
    episode_metrics,
)

INFO_KEYS = {
    "latency", "latency_parts", "pass_at_100", "completed", "server", "server_kind", "failure",
    "rg", "reward",
}  # fmt: skip


def full(server: int, share: float = 1.0) -> dict:
    return {"server": server, "shares": np.full(3, share, np.float32)}


def random_actions(env: CloudEdgeOffloadEnv, seed: int, count: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "server": int(rng.integers(env.n_servers)),
            "shares": rng.uniform(0, 1, 3).astype(np.float32),
        }
        for _ in range(count)
    ]


@pytest.mark.parametrize("env_id", sorted(environments.ENV_IDS))
def test_check_env_on_registered_ids(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped)
    check_env(gym.make(env_id, render_mode="ansi").unwrapped)


def test_make_accepts_t_max_and_config() -> None:
    env = gym.make("CloudEdgeOffload-v0", t_max=4.0)
    assert env.unwrapped.config.t_max == 4.0
    cfg = ScenarioConfig.preset("paper", tasks_per_episode=5)
    env = gym.make("CloudEdgeOffload-v0", config=cfg, t_max=6.0)
    assert env.unwrapped.config.tasks_per_episode == 5 and env.unwrapped.config.t_max == 6.0


def run(env: CloudEdgeOffloadEnv, seed: int, actions: list[dict]) -> tuple[list, list]:
    obs, _ = env.reset(seed=seed)
    observations, infos = [obs], []
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        observations.append(obs)
        infos.append(info)
        if term:
            break
    return observations, infos


def test_same_seed_same_episode() -> None:
    env = CloudEdgeOffloadEnv()
    acts = random_actions(env, 0, 100)
    o1, i1 = run(env, 7, acts)
    o2, i2 = run(CloudEdgeOffloadEnv(), 7, acts)
    np.testing.assert_array_equal(np.stack(o1), np.stack(o2))
    assert [i["latency"] for i in i1] == [i["latency"] for i in i2]
    o3, _ = run(env, 8, acts)
    assert not np.array_equal(np.stack(o1), np.stack(o3))


def test_episode_length_info_keys_and_reward() -> None:
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", tasks_per_episode=30))
    _, infos = run(env, 0, [full(0, 0.3)] * 40)
    assert len(infos) == 30
    for info in infos:
        assert INFO_KEYS <= set(info)
        assert info["server_kind"] == "cloud"
        if info["completed"]:
            assert info["failure"] is None
            assert info["reward"] == pytest.approx(1 / info["latency"] + info["pass_at_100"])
            assert info["latency"] <= env.config.t_max
            assert sum(info["latency_parts"].values()) == pytest.approx(info["latency"], rel=1e-12)
        else:
            assert info["reward"] == 0.0 and info["failure"] in ("t_max", "over_allocation")
        assert info["rg"] == info["reward"]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(full(0))


def test_latency_never_below_propagation_bound() -> None:
    env = CloudEdgeOffloadEnv()
    _, infos = run(env, 3, random_actions(env, 3, 100))
    for info in infos:
        if math.isfinite(info["latency"]):
            parts = info["latency_parts"]
            assert info["latency"] >= parts["propagation"] >= 0.0
            assert all(v >= 0 for v in parts.values())
            if info["server_kind"] == "cloud":
                # Two WAN crossings at least.
                assert parts["propagation"] >= 2 * env.config.network.wan_one_way_s


def test_resources_never_negative_and_released_on_finish() -> None:
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", arrival_rate=3.0))
    env.reset(seed=1)
    for a in random_actions(env, 1, 100):
        _, _, term, _, _ = env.step(a)
        rem = env.remaining
        assert np.all(rem >= -1e-12) and np.all(rem <= 1 + 1e-12)
        if term:
            break
    # A single task on an idle server holds its grant until it ends, then gives it back.
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", arrival_rate=0.01))
    env.reset(seed=2)
    _, _, _, _, info = env.step(full(0, 0.6))
    assert info["completed"]
    # Next arrival is about 100 s later: the task has ended.
    assert env.clock > info["arrival_time"] + info["latency"]
    np.testing.assert_allclose(env.remaining[0], 1.0)


def test_grant_is_held_until_release() -> None:
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", arrival_rate=1000.0))
    env.reset(seed=0)
    env.step(full(0, 0.6))
    np.testing.assert_allclose(env.remaining[0], 0.4)
    _, _, _, _, info = env.step(full(0, 0.6))
    assert info["failure"] == "over_allocation" and not info["completed"]
    assert math.isinf(info["latency"])
    np.testing.assert_allclose(env.remaining[0], 0.4)


def test_queue_rule_waits_for_earliest_finishing_task() -> None:
    cfg = ScenarioConfig.preset("paper", arrival_rate=1000.0, t_max=60.0)
    env = CloudEdgeOffloadEnv(cfg)
    env.reset(seed=0)
    limit = int(env.parallel_limit[0])
    finishes = []
    for _ in range(limit):
        info = env.step(full(0, 0.1))[4]
        assert info["latency_parts"]["queueing"] == 0.0
        parts = info["latency_parts"]
        finishes.append(info["arrival_time"] + info["latency"] - parts["transmission"] / 2)
    out = env.predict_outcome(full(0, 0.1))
    assert out.parts["queueing"] > 0.0
    info = env.step(full(0, 0.1))[4]
    assert info["latency_parts"]["queueing"] == pytest.approx(out.parts["queueing"], rel=1e-6)
    # The wait ends when the earliest of the running tasks' compute ends.
    start = info["arrival_time"] + info["latency"] - info["latency_parts"]["compute"]
    assert start < min(finishes) + 0.5


def test_predict_outcome_matches_step_and_does_not_advance() -> None:
    env = CloudEdgeOffloadEnv()
    env.reset(seed=4)
    for a in random_actions(env, 4, 60):
        clock, rem = env.clock, env.remaining.copy()
        pred = env.predict_outcome(a, shadowing="realized")
        assert env.clock == clock and np.array_equal(env.remaining, rem)
        info = env.step(a)[4]
        assert pred.completed == info["completed"] and pred.failure == info["failure"]
        assert pred.latency == pytest.approx(info["latency"]) or math.isinf(info["latency"])


def test_vectorised_evaluation_matches_scalar_path() -> None:
    for preset in ("paper", "large"):
        env = CloudEdgeOffloadEnv(ScenarioConfig.preset(preset))
        env.reset(seed=5)
        rng = np.random.default_rng(5)
        for a in random_actions(env, 5, 20):
            rows = rng.integers(0, env.n_servers, 16)
            shares = rng.uniform(0, 1, (16, 3))
            shares[:4] = 1.0
            out = env.evaluate_actions(rows, shares, shadowing="realized")
            for k in range(16):
                one = env.predict_outcome({"server": int(rows[k]), "shares": shares[k]}, "realized")
                assert one.completed == out.completed[k]
                np.testing.assert_allclose(one.latency, out.latency[k], rtol=1e-9)
            env.step(a)


@pytest.mark.parametrize(
    "action,needle",
    [
        ({"server": 9, "shares": np.ones(3)}, "9"),
        ({"server": -1, "shares": np.ones(3)}, "-1"),
        ({"server": 1.5, "shares": np.ones(3)}, "1.5"),
        ({"server": 0, "shares": np.array([1.2, 0.1, 0.1])}, "1.2"),
        ({"server": 0, "shares": np.array([np.nan, 0.1, 0.1])}, "nan"),
        ({"server": 0, "shares": np.ones(4)}, "(4,)"),
        ({"shares": np.ones(3)}, "server"),
    ],
)
def test_action_outside_space_raises(action: dict, needle: str) -> None:
    env = CloudEdgeOffloadEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError) as err:
        env.step(action)
    assert needle in str(err.value)


def test_observation_layout_and_bounds() -> None:
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("large"))
    obs, _ = env.reset(seed=0)
    lay = env.obs_layout
    n = env.n_servers
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    assert lay["distance"].stop - lay["distance"].start == n
    assert lay["remaining"].stop - lay["remaining"].start == 3 * n
    assert obs.size < 300  # the full distance matrix is not in the observation
    np.testing.assert_allclose(
        obs[lay["distance"]], env.distance_matrix()[env.current_task["terminal"]], rtol=1e-4
    )
    assert env.distance_matrix().shape == (env.n_terminals, n)
    task = obs[lay["task"]]
    assert task[3:7].sum() == 1.0


def test_partial_observability_delays_and_noises_readings() -> None:
    cfg = ScenarioConfig.preset(
        "paper", partial_observability={"delay_steps": 2}, arrival_rate=1000.0
    )
    env = CloudEdgeOffloadEnv(cfg)
    obs, _ = env.reset(seed=0)
    lay = env.obs_layout
    o1 = env.step(full(0, 0.5))[0]
    assert o1[lay["remaining"]][0] == 1.0  # the grant is not visible yet
    env.step(full(1, 0.5))
    o3 = env.step(full(2, 0.5))[0]
    assert o3[lay["remaining"]][0] == pytest.approx(0.5)
    noisy = CloudEdgeOffloadEnv(
        ScenarioConfig.preset("paper", partial_observability={"noise_std": 0.2})
    )
    o, _ = noisy.reset(seed=0)
    assert not np.all(o[lay["remaining"]] == 1.0)
    assert noisy.observation_space.contains(o)


def test_discrete_wrapper_maps_index_to_server_and_level() -> None:
    env = DiscreteActionWrapper(CloudEdgeOffloadEnv(), levels=(0.5, 1.0))
    assert env.action_space.n == 10
    a = env.action(7)
    assert a["server"] == 3 and np.allclose(a["shares"], 1.0)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    with pytest.raises(ValueError, match="10"):
        env.action(10)
    with pytest.raises(ValueError, match="levels"):
        DiscreteActionWrapper(CloudEdgeOffloadEnv(), levels=(0.0, 1.0))


def test_flat_continuous_wrapper_mapping() -> None:
    env = FlatContinuousActionWrapper(CloudEdgeOffloadEnv())
    a = env.action(np.array([-1.0, -1.0, 0.0, 1.0]))
    assert a["server"] == 0 and np.allclose(a["shares"], [0.0, 0.5, 1.0])
    assert env.action(np.array([1.0, 0, 0, 0]))["server"] == 4
    assert env.action(np.array([0.1, 0, 0, 0]))["server"] == 2
    env.reset(seed=0)
    env.step(env.action_space.sample())
    with pytest.raises(ValueError, match="1.5"):
        env.action(np.array([1.5, 0, 0, 0]))


def test_episode_metrics_from_infos() -> None:
    infos = [
        {
            "completed": True,
            "latency": 2.0,
            "pass_at_100": 0.5,
            "reward": 1.0,
            "server_kind": "cloud",
        },
        {
            "completed": True,
            "latency": 4.0,
            "pass_at_100": 0.0,
            "reward": 0.25,
            "server_kind": "edge",
        },
        {
            "completed": False,
            "latency": np.inf,
            "pass_at_100": 0.9,
            "reward": 0.0,
            "failure": "over_allocation",
        },
    ]
    m = episode_metrics(infos)
    assert m.completion_rate == pytest.approx(2 / 3)
    assert m.mean_latency == pytest.approx(3.0) and m.mean_pass_at_100 == pytest.approx(0.25)
    assert m.total_reward == pytest.approx(1.25) and m.n_tasks == 3 and m.n_over_allocation == 1
    assert m.cloud_share == pytest.approx(0.5)
    assert math.isnan(episode_metrics(infos[2:]).mean_latency)
    with pytest.raises(ValueError, match="empty"):
        episode_metrics([])


def test_render_ansi() -> None:
    env = CloudEdgeOffloadEnv(render_mode="ansi")
    env.reset(seed=0)
    env.step(full(0))
    text = env.render()
    assert isinstance(text, str) and "cloud" in text
