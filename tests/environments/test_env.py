"""The Gymnasium environment: API, determinism, queues, censored outcomes and observations."""

from __future__ import annotations

import math
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import environments
from baselines import make_policy
from environments import (
    CloudEdgeOffloadEnv,
    DiscreteActionWrapper,
    FlatContinuousActionWrapper,
    ScenarioConfig,
    ServerConfig,
    episode_metrics,
)
from environments.env import GRANT_TOLERANCE, NOT_FOR_POLICIES

REPO = Path(__file__).resolve().parents[2]
PUBLIC_INFO = {
    "completed", "failure", "latency", "latency_parts", "given_up_after", "pass_at_100",
    "reward", "rg", "server", "server_kind", "shares", "task_id", "terminal_kind",
    "arrival_time", "start_time", "release_time", "outcome_time",
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


def play(env: CloudEdgeOffloadEnv, policy: str, seed: int) -> tuple[list, list]:
    pol = make_policy(policy)
    pol.reset(seed)
    obs, _ = env.reset(seed=seed)
    observations, infos, done = [obs], [], False
    while not done:
        obs, _, done, _, info = env.step(pol.act(env, obs))
        observations.append(obs)
        infos.append(info)
    return observations, infos


def one_server_scenario(**server: object) -> ScenarioConfig:
    """The paper preset with its cloud replaced (servers kept, so ids stay valid)."""
    base = ScenarioConfig.preset("paper")
    cloud = base.servers[0].model_dump() | server
    return base.with_overrides(servers=[ServerConfig(**cloud), *base.servers[1:]])


# ---------------------------------------------------------------------------- API
@pytest.mark.parametrize("env_id", sorted(environments.ENV_IDS))
def test_check_env_on_registered_ids(env_id: str) -> None:
    check_env(gym.make(env_id).unwrapped)
    check_env(gym.make(env_id, render_mode="ansi").unwrapped)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
@pytest.mark.parametrize("wrapper", [DiscreteActionWrapper, FlatContinuousActionWrapper])
def test_wrappers_pass_check_env_through_make(wrapper: type) -> None:
    env = wrapper(gym.make("CloudEdgeOffload-v1"))
    check_env(env)
    # Re-creatable from its spec, wrapper and arguments included.
    again = env.spec.make()
    assert type(again) is wrapper


def test_make_accepts_t_max_and_config() -> None:
    env = gym.make("CloudEdgeOffload-v1", t_max=4.0)
    assert env.unwrapped.config.t_max == 4.0
    cfg = ScenarioConfig.preset("paper", tasks_per_episode=5)
    env = gym.make("CloudEdgeOffload-v1", config=cfg, t_max=6.0)
    assert env.unwrapped.config.tasks_per_episode == 5 and env.unwrapped.config.t_max == 6.0


def test_same_seed_same_episode() -> None:
    env = CloudEdgeOffloadEnv()
    acts = random_actions(env, 0, 100)
    o1, i1 = run(env, 7, acts)
    o2, i2 = run(CloudEdgeOffloadEnv(), 7, acts)
    np.testing.assert_array_equal(np.stack(o1), np.stack(o2))
    assert [i["outcome_time"] for i in i1] == [i["outcome_time"] for i in i2]
    o3, _ = run(env, 8, acts)
    assert not np.array_equal(np.stack(o1), np.stack(o3))


def test_more_tasks_in_the_same_window_mean_more_load() -> None:
    base = ScenarioConfig.preset("paper")
    busy = ScenarioConfig.preset("paper", tasks_per_episode=200)
    assert busy.episode_window_s == base.episode_window_s
    assert busy.arrival_rate == pytest.approx(2 * base.arrival_rate)
    env = CloudEdgeOffloadEnv(busy)
    env.reset(seed=0)
    assert env.arrivals.size == 200 and env.arrivals.max() <= busy.episode_window_s


# ---------------------------------------------------------------------------- censoring
def test_info_is_what_a_scheduler_observes() -> None:
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", t_max=10.0))
    _, infos = run(env, 0, random_actions(env, 0, 100) + [full(1)] * 0)
    _, infos_ef = play(env, "edge_first", 1)
    seen = {"completed": 0, "t_max": 0, "rejected": 0}
    for info in infos + infos_ef:
        assert set(info) == PUBLIC_INFO | {NOT_FOR_POLICIES}
        arrival = info["arrival_time"]
        assert info["outcome_time"] - arrival <= env.config.t_max + 1e-9
        if info["completed"]:
            seen["completed"] += 1
            assert info["failure"] is None and info["given_up_after"] is None
            assert info["latency"] <= env.config.t_max
            assert info["reward"] == pytest.approx(1 / info["latency"] + info["pass_at_100"])
            assert sum(info["latency_parts"].values()) == pytest.approx(info["latency"])
            assert info["outcome_time"] == pytest.approx(arrival + info["latency"])
        else:
            seen[info["failure"]] += 1
            # Censored: no latency, no accuracy, only when the task was given up.
            assert info["latency"] is None and info["latency_parts"] is None
            assert info["pass_at_100"] is None and info["reward"] == 0.0
            assert info["given_up_after"] == (0.0 if info["failure"] == "rejected" else 10.0)
            hidden = info[NOT_FOR_POLICIES]["latency"]
            assert hidden > env.config.t_max  # what the simulator knows and nobody else
        assert info["rg"] == info["reward"]
    assert min(seen.values()) > 0, seen


def test_nothing_outside_the_env_reads_the_uncensored_values() -> None:
    pattern = re.compile(r"not_for_policies|NOT_FOR_POLICIES")
    readers = [
        path.relative_to(REPO)
        for package in ("aif", "generative_models", "baselines", "experiments")
        for path in (REPO / package).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert readers == []


def test_latency_never_below_propagation_bound() -> None:
    env = CloudEdgeOffloadEnv()
    _, infos = run(env, 3, random_actions(env, 3, 100))
    _, more = play(env, "greedy", 3)
    done = [i for i in infos + more if i["completed"]]
    assert len(done) > 50
    for info in done:
        parts = info["latency_parts"]
        assert info["latency"] >= parts["propagation"] >= 0.0
        assert all(v >= 0 for v in parts.values())
        if info["server_kind"] == "cloud":
            # Two WAN crossings at least.
            assert parts["propagation"] >= 2 * env.config.network.wan_one_way_s


# ---------------------------------------------------------------------------- queues
def holdings(infos: list[dict]) -> list[tuple[int, float, float, np.ndarray]]:
    return [
        (i["server"], i["start_time"], i["release_time"], np.asarray(i["shares"], float))
        for i in infos
        if i["start_time"] is not None
    ]


@pytest.mark.parametrize("policy", ["random", "greedy", "edge_first", "cloud"])
def test_resources_are_conserved_at_every_event(policy: str) -> None:
    # Reconstruct every server's holdings from what the scheduler saw (start, release, grant)
    # and check capacity and slots at every start; check the env's own free reading against the
    # reconstruction at every decision. Nothing in the env clamps these quantities.
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("congested"))
    pol = make_policy(policy)
    pol.reset(0)
    obs, _ = env.reset(seed=0)
    infos: list[dict] = []
    done = False
    while not done:
        held = holdings(infos)
        for j in range(env.n_servers):
            used = sum((g for s, a, b, g in held if s == j and a <= env.clock < b), np.zeros(3))
            np.testing.assert_allclose(env.remaining[j] + used, 1.0, atol=1e-9)
        obs, _, done, _, info = env.step(pol.act(env, obs))
        infos.append(info)
    held = holdings(infos)
    assert len(held) > 50
    for j in range(env.n_servers):
        mine = [(a, b, g) for s, a, b, g in held if s == j]
        for t, _, _ in mine:
            active = [g for a, b, g in mine if a <= t < b]
            assert len(active) <= env.parallel_limit[j]
            assert np.all(np.sum(active, axis=0) <= 1.0 + GRANT_TOLERANCE * len(active))
        starts = [a for a, _, _ in mine]
        assert starts == sorted(starts)  # first come, first served: nobody overtakes


def test_queues_act_in_the_regime_reference_policies_use() -> None:
    env = CloudEdgeOffloadEnv()
    waited = completed = 0
    for policy in ("edge_first", "frugal"):
        for seed in range(3):
            _, infos = play(env, policy, seed)
            done = [i for i in infos if i["completed"]]
            completed += len(done)
            waited += sum(i["latency_parts"]["queueing"] > 0.1 for i in done)
    assert waited >= 0.05 * completed, (waited, completed)


def test_tmc_rule_wait_for_the_earliest_finishing_task_ahead() -> None:
    # Three tasks arrive together on a server with two slots; small grants never bind, so the
    # third waits exactly until the earlier of the first two releases its slot.
    cfg = one_server_scenario(parallel_limit=2).with_overrides(
        tasks_per_episode=3, episode_window_s=1e-3, t_max=60.0
    )
    env = CloudEdgeOffloadEnv(cfg)
    env.reset(seed=0)
    a = env.step(full(0, 0.3))[4]
    b = env.step(full(0, 0.2))[4]
    c = env.step(full(0, 0.1))[4]
    assert a["latency_parts"]["queueing"] < 0.01 and b["latency_parts"]["queueing"] < 0.01
    assert c["start_time"] == min(a["release_time"], b["release_time"])
    assert c["latency_parts"]["queueing"] > 2.0
    assert c["completed"]


def test_a_grant_waits_for_resources_and_nobody_overtakes() -> None:
    cfg = one_server_scenario().with_overrides(
        tasks_per_episode=3, episode_window_s=1e-3, t_max=60.0
    )
    env = CloudEdgeOffloadEnv(cfg)
    env.reset(seed=0)
    a = env.step(full(0, 0.7))[4]
    b = env.step(full(0, 0.5))[4]  # 0.5 > 0.3 free: waits for a's release
    c = env.step(full(0, 0.1))[4]  # would fit now, but b is ahead of it
    assert b["start_time"] == a["release_time"]
    assert c["start_time"] == b["start_time"]
    assert all(i["completed"] for i in (a, b, c))


def test_a_task_not_done_by_its_deadline_is_dropped_then() -> None:
    cfg = one_server_scenario(parallel_limit=1).with_overrides(
        tasks_per_episode=3, episode_window_s=1e-3, t_max=3.0
    )
    env = CloudEdgeOffloadEnv(cfg)
    env.reset(seed=0)
    a = env.step(full(0))[4]
    b = env.step(full(0))[4]
    assert a["completed"] and not b["completed"]
    # b waited for a, started, and was dropped at its deadline, holding the server until then.
    assert b["failure"] == "t_max" and b["given_up_after"] == 3.0
    assert b["start_time"] == a["release_time"]
    assert b["release_time"] == b["outcome_time"] == pytest.approx(b["arrival_time"] + 3.0)
    c = env.step(full(0))[4]
    assert c["start_time"] == b["release_time"]


def test_a_grant_that_cannot_run_is_rejected_at_once() -> None:
    env = CloudEdgeOffloadEnv()
    env.reset(seed=0)
    info = env.step({"server": 1, "shares": np.array([1.0, 1.0, 0.001], np.float32)})[4]
    assert info["failure"] == "rejected" and info["given_up_after"] == 0.0
    assert info["start_time"] is None
    np.testing.assert_allclose(env.remaining, 1.0)


def test_predict_outcome_matches_step_and_does_not_advance() -> None:
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("congested"))
    env.reset(seed=4)
    for a in random_actions(env, 4, 60):
        clock, rem = env.clock, env.remaining.copy()
        pred = env.predict_outcome(a, shadowing="realized")
        assert env.clock == clock and np.array_equal(env.remaining, rem)
        info = env.step(a)[4]
        assert pred.completed == info["completed"] and pred.failure == info["failure"]
        assert pred.latency == info[NOT_FOR_POLICIES]["latency"]


def test_vectorised_evaluation_matches_one_at_a_time() -> None:
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
                np.testing.assert_allclose(one.latency, out.latency[k], rtol=1e-12)
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


# ---------------------------------------------------------------------------- observations
def sampled_observations(env: CloudEdgeOffloadEnv) -> np.ndarray:
    obs = []
    for k, policy in enumerate(("random", "edge_first", "greedy", "cloud", "edge_least_loaded")):
        for seed in range(2):
            o, _ = play(env, policy, 10 * k + seed)
            obs += o
    return np.stack(obs)


@pytest.mark.parametrize("preset", ["paper", "congested"])
def test_observations_are_scaled_within_tight_bounds_and_never_constant(preset: str) -> None:
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset(preset))
    obs = sampled_observations(env)
    low, high = env.observation_space.low, env.observation_space.high
    assert np.all(obs >= low) and np.all(obs <= high)
    assert np.all(high - low <= 1.0 + 1e-6)  # O(1): no raw kilometres or counts
    seen = obs.max(axis=0) - obs.min(axis=0)
    assert np.all(seen > 0), np.flatnonzero(seen == 0)  # no feature is constant
    # Declared bounds are never looser than 10x the range episodes actually visit.
    assert np.all(high - low <= 10 * seen), (high - low) / seen


def test_observation_layout_and_reading_transforms() -> None:
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("large"))
    obs, _ = env.reset(seed=0)
    lay, n = env.obs_layout, env.n_servers
    assert obs.shape == env.observation_space.shape and obs.dtype == np.float32
    assert [lay[k].stop - lay[k].start for k in ("distance", "remaining", "queue")] == [
        n,
        3 * n,
        2 * n,
    ]
    # Edge sites: the terminal's distance over the area diagonal.
    edges = np.flatnonzero(~env.server_is_cloud)
    term = env.current_task["terminal"]
    np.testing.assert_allclose(
        obs[lay["distance"]][edges],
        env.distance_matrix()[term, edges] * 1000.0 / env.area_diagonal_m,
        rtol=1e-4,
    )
    assert obs[lay["task"]][1:].sum() == 1.0
    env.step(full(int(edges[0])))
    env.step(full(int(edges[0])))  # the second waits for the first
    queue = env._observation()[lay["queue"]].reshape(n, 2)
    limit = env.parallel_limit[edges[0]]
    assert queue[edges[0], 0] == pytest.approx(env.active_count[edges[0]] / limit)
    assert queue[edges[0], 1] == pytest.approx(1 / (1 + limit))


def test_partial_observability_delays_and_noises_readings() -> None:
    cfg = ScenarioConfig.preset(
        "paper", partial_observability={"delay_steps": 2}, episode_window_s=2.0, tasks_per_episode=4
    )
    env = CloudEdgeOffloadEnv(cfg)
    obs, _ = env.reset(seed=3)
    assert np.diff(env.arrivals).min() > 0.1  # every grant has started by the next arrival
    assert env.arrivals[-1] - env.arrivals[0] < 2.3  # and none has ended
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


# ---------------------------------------------------------------------------- wrappers
def test_discrete_wrapper_caps_levels_queues_full_grants_and_can_reject() -> None:
    cfg = ScenarioConfig.preset("paper", episode_window_s=2.0, tasks_per_episode=4)
    env = DiscreteActionWrapper(CloudEdgeOffloadEnv(cfg), levels=(0.5, 1.0))
    assert env.action_space.n == 16 and env.reject_action == 15
    env.reset(seed=3)
    assert np.diff(env.unwrapped.arrivals).min() > 0.1
    env.step(0)  # cloud, level 0.5
    a = env.action(1)  # cloud, level 1.0, but only 0.5 is free
    assert a["server"] == 0 and np.allclose(a["shares"], 0.5)
    q = env.action(2)  # cloud, queue for a full grant
    assert q["server"] == 0 and np.allclose(q["shares"], 1.0)
    assert env.action(9)["server"] == 3 and np.allclose(env.action(9)["shares"], 0.5)
    info = env.step(2)[4]
    assert info["start_time"] > info["arrival_time"] + 1.0  # waited for the first grant
    info = env.step(env.reject_action)[4]
    assert info["failure"] == "rejected"
    with pytest.raises(ValueError, match="16"):
        env.action(16)
    with pytest.raises(ValueError, match="levels"):
        DiscreteActionWrapper(CloudEdgeOffloadEnv(), levels=(0.0, 1.0))


def test_masked_random_policy_never_picks_an_infeasible_action() -> None:
    env = DiscreteActionWrapper(CloudEdgeOffloadEnv(ScenarioConfig.preset("congested")))
    rng = np.random.default_rng(0)
    masked_out = 0
    for seed in range(3):
        _, info = env.reset(seed=seed)
        done = False
        while not done:
            mask = info["action_mask"]
            assert mask[env.reject_action] and mask.dtype == bool
            np.testing.assert_array_equal(mask, env.action_masks())
            masked_out += int((~mask).sum())
            action = int(rng.choice(np.flatnonzero(mask[:-1]))) if mask[:-1].any() else -1
            if action < 0:
                action = env.reject_action
            free = env.unwrapped.remaining.copy()
            grant = env.action(action)["shares"]
            queued = bool(np.isnan(env.action_levels[action]))
            _, _, done, _, info = env.step(action)
            if action != env.reject_action:
                assert info["failure"] != "rejected"
                if not queued:  # a level action never waits for resources
                    assert np.all(grant <= np.maximum(free[info["server"]], 0) + 1e-7)
    assert masked_out > 0  # the mask does exclude something in this regime


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


# ---------------------------------------------------------------------------- metrics, render
def test_episode_metrics_from_infos() -> None:
    infos = [
        {"completed": True, "latency": 2.0, "pass_at_100": 0.5, "reward": 1.0,
         "server_kind": "cloud", "failure": None},
        {"completed": True, "latency": 4.0, "pass_at_100": 0.0, "reward": 0.25,
         "server_kind": "edge", "failure": None},
        {"completed": False, "latency": None, "pass_at_100": None, "reward": 0.0,
         "failure": "rejected", "server_kind": "edge"},
    ]  # fmt: skip
    m = episode_metrics(infos)
    assert m.completion_rate == pytest.approx(2 / 3)
    assert m.mean_latency == pytest.approx(3.0) and m.mean_pass_at_100 == pytest.approx(0.25)
    assert m.total_reward == pytest.approx(1.25) and m.n_tasks == 3 and m.n_rejected == 1
    assert m.cloud_share == pytest.approx(0.5)
    assert math.isnan(episode_metrics(infos[2:]).mean_latency)
    with pytest.raises(ValueError, match="empty"):
        episode_metrics([])


def test_render_ansi() -> None:
    env = CloudEdgeOffloadEnv(render_mode="ansi")
    env.reset(seed=0)
    env.step(full(0))
    text = env.render()
    assert isinstance(text, str) and "cloud" in text and "waiting" in text
