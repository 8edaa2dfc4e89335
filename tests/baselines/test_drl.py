"""Deep-RL runners: the mask is obeyed, the library sees no outcome, state round-trips, bad configs fail."""

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from baselines.drl.common import MASKED_LOGIT, LibraryEnv
from environments import CloudEdgeOffloadEnv
from environments.learner import EpisodeSpec
from environments.scheduler import ACTION_LEVELS, SchedulerView

TASKS = 30


def _env() -> SchedulerView:
    # The congested preset fills servers, so many decisions have infeasible actions.
    return SchedulerView(CloudEdgeOffloadEnv(preset="congested", tasks_per_episode=TASKS))


def _eps(*seeds: int) -> list[EpisodeSpec]:
    return [EpisodeSpec(s) for s in seeds]


def _runner(name: str, seed: int = 0) -> Any:
    if name == "rainbow":
        from baselines.drl.rainbow import RainbowConfig, RainbowRunner

        cfg = RainbowConfig(n_envs=2, step_per_collect=2, learning_starts=16, batch_size=16)
        return RainbowRunner(cfg, _env, seed)
    if name == "sac":
        from baselines.drl.sac import SACConfig, SACRunner

        cfg = SACConfig(n_envs=2, step_per_collect=2, learning_starts=16, batch_size=16)
        return SACRunner(cfg, _env, seed)
    from baselines.drl.ppo import PPOConfig, PPORunner

    return PPORunner(PPOConfig(n_envs=2, n_steps=10, batch_size=20, n_epochs=2), _env, seed)


class _MaskAudit:
    """Records, for every step of every library env, whether the action was feasible."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chosen_feasible: list[bool] = []
        self.had_infeasible: list[bool] = []
        original: Callable[..., Any] = LibraryEnv.step
        audit = self

        def step(view: LibraryEnv, action: Any) -> Any:
            a = int(np.asarray(action))
            audit.chosen_feasible.append(bool(view.mask[a]))
            audit.had_infeasible.append(not bool(view.mask.all()))
            return original(view, action)

        monkeypatch.setattr(LibraryEnv, "step", step)


@pytest.mark.parametrize("name", ["rainbow", "ppo", "sac"])
def test_masked_policy_never_picks_an_infeasible_action(name: str, monkeypatch):
    audit = _MaskAudit(monkeypatch)
    runner = _runner(name)
    # Round 1: untrained networks (a random policy); round 2: after updates; then greedy play.
    for k in range(2):
        runner.train_round(_eps(10 * k, 10 * k + 1))
    for s in (101, 102):
        runner.evaluate(EpisodeSpec(s))
    n = 2 * 2 * TASKS + 2 * TASKS
    assert len(audit.chosen_feasible) == n
    # The check has teeth: a good share of decisions offered infeasible actions.
    assert sum(audit.had_infeasible) > n // 4
    assert all(audit.chosen_feasible)


def test_the_library_sees_no_outcome_and_the_records_keep_the_infos():
    view = LibraryEnv(_env(), dict_obs=True)
    obs, info = view.reset(seed=3)
    assert info == {} and set(obs) == {"obs", "mask"}
    assert view.observation_space.contains(obs)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = view.step(view.n_actions - 1)  # reject
        assert info == {} and reward == 0.0
        done = terminated or truncated
    (episode,) = view.take_finished()
    assert len(episode) == TASKS and all(i["failure"] == "rejected" for i in episode)
    assert view.take_finished() == []


def test_masked_logit_gives_zero_probability_and_finite_entropy():
    logits = torch.tensor([[0.3, MASKED_LOGIT, -1.0, MASKED_LOGIT]])
    dist = torch.distributions.Categorical(logits=logits)
    assert dist.probs[0, 1].item() == 0.0 and dist.probs[0, 3].item() == 0.0
    assert torch.isfinite(dist.entropy()).all()
    # What discrete SAC's actor loss multiplies: probs * log-probs stays finite.
    assert torch.isfinite((dist.probs * dist.logits).sum())


@pytest.mark.parametrize("name", ["rainbow", "ppo", pytest.param("sac", marks=pytest.mark.slow)])
def test_state_round_trip_continues_identically(name: str):
    a = _runner(name)
    a.train_round(_eps(1, 2))
    # Through bytes, as a checkpoint file goes (a state in memory shares tensors with `a`).
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = _runner(name)
    b.load_state_dict(torch.load(buf, weights_only=False))
    la, lb = a.train_round(_eps(3, 4)), b.train_round(_eps(3, 4))
    for x, y in zip(la, lb, strict=True):
        assert [i["server"] for i in x.outcomes] == [i["server"] for i in y.outcomes]
        assert [i["shares"].tolist() for i in x.outcomes] == [
            i["shares"].tolist() for i in y.outcomes
        ]
        assert x.learn_stat == y.learn_stat or (np.isnan(x.learn_stat) and np.isnan(y.learn_stat))
    ea, eb = a.evaluate(EpisodeSpec(9)), b.evaluate(EpisodeSpec(9))
    assert [i["server"] for i in ea.outcomes] == [i["server"] for i in eb.outcomes]


def test_evaluation_leaves_the_runner_unchanged():
    a, b = _runner("ppo"), _runner("ppo")
    a.train_round(_eps(1, 2))
    b.train_round(_eps(1, 2))
    a.evaluate(EpisodeSpec(5))
    la, lb = a.train_round(_eps(3, 4)), b.train_round(_eps(3, 4))
    assert [i["server"] for i in la[0].outcomes] == [i["server"] for i in lb[0].outcomes]


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: _runner_with("ppo", n_steps=7), "must divide the episode length"),
        (lambda: _runner_with("rainbow", step_per_collect=3), "multiple of n_envs"),
        (lambda: _runner_with("sac", gamma=1.5), "gamma"),
    ],
)
def test_bad_configurations_name_the_offending_value(make: Callable[[], Any], needle: str):
    with pytest.raises(ValueError, match=needle):
        make()


def _runner_with(name: str, **kw: Any) -> Any:
    import importlib

    module = importlib.import_module(f"baselines.drl.{name}")
    cls = {"rainbow": "Rainbow", "sac": "SAC", "ppo": "PPO"}[name]
    cfg = getattr(module, f"{cls}Config")(n_envs=2, **kw)
    return getattr(module, f"{cls}Runner")(cfg, _env, 0)


def test_train_round_needs_one_seed_per_env():
    runner = _runner("ppo")
    with pytest.raises(ValueError, match="2 envs per round"):
        runner.train_round(_eps(1, 2, 3))


def test_the_shared_action_set_is_the_discrete_wrapper_s():
    view = SchedulerView(CloudEdgeOffloadEnv())
    # Per server: the capped levels and a queued full grant; then "reject".
    assert view.action_space.n == 5 * (len(ACTION_LEVELS) + 1) + 1
