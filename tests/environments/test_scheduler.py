"""The scheduler view: what it shows is what a scheduler could know at the clock, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from environments import CloudEdgeOffloadEnv
from environments.env import NOT_FOR_POLICIES
from environments.scheduler import FEEDBACK_KEYS, VIEW_API, SchedulerView


def _view(features: str = "plain", **kw) -> SchedulerView:
    world = CloudEdgeOffloadEnv(preset="congested", tasks_per_episode=60, **kw)
    return SchedulerView(world, features=features)  # type: ignore[arg-type]


def _play(view: SchedulerView, seed: int, check) -> None:
    rng = np.random.default_rng(seed)
    view.reset(seed=seed)
    done = False
    while not done:
        check(view)
        action = int(rng.choice(np.flatnonzero(view.mask)))
        _, _, terminated, truncated, info = view.step(action)
        assert set(info) == {"action_mask"}
        done = terminated or truncated


def test_grants_and_outcomes_hold_only_what_has_happened_by_the_clock():
    view = _view()
    seen_start = seen_wait = 0

    def check(v: SchedulerView) -> None:
        nonlocal seen_start, seen_wait
        now = v.clock
        for g in v.grants:
            assert g.decided_at <= now
            if g.start_time is None:
                seen_wait += 1
            else:
                seen_start += 1
                assert g.start_time <= now and g.elapsed == pytest.approx(now - g.start_time)
        for fb in v.outcomes():
            assert fb["outcome_time"] <= now
            for key in ("start_time", "release_time"):
                assert fb[key] is None or fb[key] <= now

    _play(view, 3, check)
    # The checks had teeth: grants both waiting and running were shown.
    assert seen_start > 20 and seen_wait > 5
    final = view.outcomes()
    assert len(final) == 60 and all(set(fb) == set(FEEDBACK_KEYS) for fb in final)
    for fb in final:
        assert NOT_FOR_POLICIES not in fb
        if not fb["completed"]:
            assert fb["latency"] is None and fb["pass_at_100"] is None
            assert fb["latency_parts"] is None


def test_the_running_readings_count_the_scheduler_s_own_started_grants():
    view = _view()
    checked = 0

    def check(v: SchedulerView) -> None:
        nonlocal checked
        running = np.zeros(v.n_servers)
        for g in v.grants:
            if g.start_time is not None:
                running[g.server] += 1
        np.testing.assert_array_equal(v.readings.running, running)
        checked += int(running.sum() > 0)

    _play(view, 5, check)
    assert checked > 10


def test_informed_features_stay_in_bounds_and_name_the_problem():
    view = _view("informed")
    n_obs = CloudEdgeOffloadEnv(preset="congested").observation_space.shape[0]

    def check(v: SchedulerView) -> None:
        x = v._features()
        assert v.observation_space.contains(x)
        np.testing.assert_array_equal(x[:n_obs], v.observation)
        onehot = x[n_obs : n_obs + v.n_problems]
        assert onehot.sum() == 1.0 and onehot[v.request.problem] == 1.0

    _play(view, 7, check)


@pytest.mark.parametrize("features", ["plain", "informed"])
def test_the_view_is_a_gymnasium_env(features: str):
    check_env(_view(features), skip_render_check=True)


def test_the_world_is_out_of_reach():
    view = _view()
    view.reset(seed=0)
    public = {name for name in dir(view) if not name.startswith("_")}
    # Nothing public holds the simulator, and the public names are the documented ones.
    for name in public:
        assert not isinstance(getattr(view, name, None), CloudEdgeOffloadEnv), name
    assert public <= VIEW_API | {"n_actions"}, sorted(public - VIEW_API)
    assert view.unwrapped is view


def test_native_and_discrete_actions_agree():
    a, b = _view(), _view()
    a.reset(seed=1)
    b.reset(seed=1)
    for _ in range(20):
        action = int(np.flatnonzero(a.mask)[0])
        native = a.native_action(action)
        a.step(action)
        b.step(native)
    assert [fb["server"] for fb in a.outcomes()] == [fb["server"] for fb in b.outcomes()]
