"""The episode bound: above an exhaustive search and every reference policy, below the simple bound."""

from __future__ import annotations

import numpy as np
import pytest

from baselines import (
    POLICY_ALIASES,
    POLICY_NAMES,
    LookaheadPolicy,
    OraclePolicy,
    make_policy,
    policy_names,
)
from baselines.bound import EpisodeBound, dual_feasible, episode_bound
from environments import CloudEdgeOffloadEnv, ScenarioConfig

Action = tuple[int, np.ndarray]


def tiny_env(n_tasks: int, window_s: float, n_edges: int = 1, **overrides: object):
    """The paper's cloud and its first ``n_edges`` edges, ``n_tasks`` tasks in ``window_s``."""
    data = ScenarioConfig.preset("paper").model_dump()
    data["servers"] = data["servers"][: 1 + n_edges]
    data.update(tasks_per_episode=n_tasks, episode_window_s=window_s, **overrides)
    return CloudEdgeOffloadEnv(ScenarioConfig.model_validate(data))


def play(env: CloudEdgeOffloadEnv, name: str, seed: int) -> tuple[float, int, list[Action]]:
    """Total rg, completions and actions of a reference policy on episode ``seed``."""
    policy = make_policy(name)
    policy.reset(seed)
    obs, _ = env.reset(seed=seed)
    done, rg, completed, actions = False, 0.0, 0, []
    while not done:
        action = policy.act(env, obs)
        actions.append((int(action["server"]), np.asarray(action["shares"], np.float64)))
        obs, _, done, _, info = env.step(action)
        rg += info["rg"]
        completed += int(info["completed"])
    return rg, completed, actions


def exhaustive(
    env: CloudEdgeOffloadEnv, seed: int, paths: list[list[Action]], levels=(0.5, 1.0)
) -> tuple[float, int]:
    """Best total rg and most completions over every sequence of a discrete action set.

    At every task: each server with a full grant (waiting in its queue) or each level capped at
    what is free (the grants of ``environments.DiscreteActionWrapper``), rejection, and the
    action each path in ``paths`` takes at that task, so each of those paths is searched too.
    """
    env.reset(seed=seed)
    n_tasks = env.config.tasks_per_episode
    best = {"rg": 0.0, "completed": 0}

    def actions(depth: int) -> list[Action]:
        free = np.maximum(env.remaining, 0.0)
        out: list[Action] = [(0, np.zeros(3))]
        for j in range(env.n_servers):
            out.append((j, np.ones(3)))
            out += [(j, np.minimum(level, free[j])) for level in levels]
        out += [path[depth] for path in paths]
        unique: dict[tuple[float, ...], Action] = {}
        for j, shares in out:
            unique.setdefault((j, *np.round(shares, 12)), (j, shares))
        return list(unique.values())

    def search(depth: int, rg: float, completed: int) -> None:
        if depth == n_tasks:
            best["rg"] = max(best["rg"], rg)
            best["completed"] = max(best["completed"], completed)
            return
        state = env.get_state()
        for j, shares in actions(depth):
            env.set_state(state)
            info = env.simulate_step(j, shares)
            search(depth + 1, rg + info["rg"], completed + int(info["completed"]))
        env.set_state(state)

    search(0, 0.0, 0)
    return best["rg"], best["completed"]


def check_chain(env: CloudEdgeOffloadEnv, seed: int) -> EpisodeBound:
    """bound >= exhaustive optimum >= every reference policy, for guidance and completion."""
    runs = {name: play(env, name, seed) for name in POLICY_NAMES}
    best_rg, best_completed = exhaustive(env, seed, [actions for _, _, actions in runs.values()])
    bound = episode_bound(env, seed)
    n = bound.n_tasks
    assert n == env.config.tasks_per_episode
    for name, (rg, completed, _) in runs.items():
        assert best_rg >= rg - 1e-12, name
        assert best_completed >= completed, name
    assert bound.rg >= best_rg - 1e-9
    assert bound.completion * n >= best_completed - 1e-9
    assert bound.rg <= bound.no_contention_rg + 1e-9
    assert 0.0 <= bound.completion <= 1.0
    return bound


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bound_is_above_search_and_references_when_tasks_meet(seed: int) -> None:
    # Four tasks in four seconds on a cloud that takes 2.3 s per task at full share.
    bound = check_chain(tiny_env(4, 4.0), seed)
    assert bound.rg < bound.no_contention_rg - 1e-3  # contention is counted


@pytest.mark.parametrize("seed", [0, 1])
def test_bound_holds_where_co_located_tasks_slow_each_other(seed: int) -> None:
    # The contention law (outside the relaxation) only lengthens what a task holds.
    check_chain(tiny_env(4, 4.0, contention={"enabled": True}), seed)


@pytest.mark.parametrize("seed", [3, 4])
def test_completion_bound_below_one_when_deadlines_bind(seed: int) -> None:
    # At t_max = 4 s only the cloud completes, one task at a time at full share.
    bound = check_chain(tiny_env(4, 3.0, t_max=4.0), seed)
    assert bound.completion < 1.0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 5])
def test_bound_is_above_a_larger_search(seed: int) -> None:
    check_chain(tiny_env(6, 8.0, n_edges=2, t_max=10.0), seed)


def test_bound_is_above_random_grants_of_the_continuous_space() -> None:
    env = tiny_env(6, 6.0, n_edges=2)
    rng = np.random.default_rng(0)
    bound = episode_bound(env, 7)
    for _ in range(150):
        env.reset(seed=7)
        done, rg, completed = False, 0.0, 0
        while not done:
            # Shares skewed towards 1 so that many of these grants complete.
            shares = rng.uniform(0.0, 1.0, 3) ** rng.uniform(0.05, 1.0)
            action = {"server": int(rng.integers(env.n_servers)), "shares": shares}
            _, _, done, _, info = env.step(action)
            rg += info["rg"]
            completed += int(info["completed"])
        assert rg <= bound.rg + 1e-9
        assert completed <= bound.completion * bound.n_tasks + 1e-9


def test_no_contention_bound_covers_each_task_on_an_idle_server() -> None:
    env = tiny_env(5, 30.0, n_edges=2)
    bound = episode_bound(env, 3)
    at_reset = env.get_state()
    best = 0.0
    n = env.n_servers
    for i in range(bound.n_tasks):
        env.set_state(at_reset._replace(step=i, clock=float(env.arrivals[i])))
        out = env.evaluate_actions(np.arange(n), np.ones((n, 3)), shadowing="realized")
        best += float(out.reward.max())
    env.set_state(at_reset)
    # The simple bound drops only the result's radio time (milliseconds) from the latency.
    assert best <= bound.no_contention_rg <= best * 1.001


def test_bound_is_the_simple_bound_when_tasks_never_meet() -> None:
    bound = episode_bound(tiny_env(3, 3000.0), 0)
    assert bound.rg == pytest.approx(bound.no_contention_rg, rel=1e-9)
    assert bound.completion == 1.0


def test_bound_is_zero_when_nothing_can_complete() -> None:
    bound = episode_bound(tiny_env(3, 3.0, t_max=1.0), 0)
    assert bound == EpisodeBound(0.0, 0.0, 0.0, 3)


def test_bound_is_deterministic_and_leaves_the_episode_at_its_start() -> None:
    env = tiny_env(4, 4.0)
    first = episode_bound(env, 11)
    assert env.current_task["step"] == 0
    assert env.clock == float(env.task_schedule()["arrival_time"][0])
    assert episode_bound(env, 11) == first
    with pytest.raises(ValueError, match="share_ratio"):
        episode_bound(env, 11, share_ratio=1.0)


def test_dual_feasible_functions_keep_sums_within_one() -> None:
    rng = np.random.default_rng(0)
    for k in (1, 2, 3):
        for _ in range(500):
            x = rng.dirichlet(np.ones(int(rng.integers(1, 6)))) * rng.uniform(0.5, 1.0)
            assert dual_feasible(x, k).sum() <= 1.0 + 1e-12
    np.testing.assert_allclose(
        dual_feasible(np.array([0.2, 0.5, 0.51, 1.0]), 1), [0.0, 0.5, 1.0, 1.0]
    )
    np.testing.assert_allclose(
        dual_feasible(np.array([0.3, 1 / 3, 0.4, 2 / 3, 0.7]), 2), [0.0, 1 / 3, 0.5, 2 / 3, 1.0]
    )


def test_lookahead_names() -> None:
    assert OraclePolicy is LookaheadPolicy
    assert make_policy("oracle").name == "oracle"
    assert make_policy("oracle_guidance").name == "oracle_guidance"
    assert make_policy("lookahead").name == "lookahead"
    guided = make_policy("lookahead_guidance")
    assert isinstance(guided, LookaheadPolicy) and guided.objective == "guidance"
    # Aliases are not listed, so that "all" runs every policy once.
    assert not set(POLICY_ALIASES) & set(policy_names())


@pytest.mark.slow
def test_bound_is_tighter_than_the_simple_bound_on_the_paper_preset() -> None:
    env = CloudEdgeOffloadEnv()
    bound = episode_bound(env, 0)
    assert bound.n_tasks == 100
    assert bound.rg < 0.95 * bound.no_contention_rg
    for name in ("greedy", "edge_first", "lookahead"):
        rg, _, _ = play(env, name, 0)
        assert rg <= bound.rg
