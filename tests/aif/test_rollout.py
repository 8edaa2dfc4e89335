"""Rollouts of DiscreteAgent batches, the environment they run in and their precompiled steps.

A rollout must give what stepping the agent by hand gives with the same generators (actions
equal, beliefs and policy posteriors to rounding); the precompiled mean-field update must give
the sweeps of :func:`aif.exact.infer_states_fpi`, the joint update those of exact filtering.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

import aif.exact as exact
from aif.discrete_agent import DiscreteAgent
from aif.exact import (
    ExactStateInference,
    MeanFieldStateInference,
    infer_states_exact,
    infer_states_fpi,
    joint_from_marginals,
)
from aif.rollout import BatchedEnv, CategoricalEnv, Rollout, rollout
from generative_models.categorical import CategoricalPOMDP

PARITY = 1e-12
MEDIUM = dict(num_states=[4, 3, 3], num_obs=[5, 4], num_controls=[3, 2, 1], policy_len=2)
SMALL = dict(num_states=[3, 2], num_obs=[4, 3, 2], num_controls=[2, 3], policy_len=2)
SHAPES = [([3], [4, 2]), ([3, 2], [4, 3, 2]), ([4, 3, 3], [5, 4]), ([2, 3, 2, 2], [3, 2])]


def _model(ns: list[int], no: list[int], seed: int) -> CategoricalPOMDP:
    return CategoricalPOMDP.random(ns, no, [1] * len(ns), policy_len=1, seed=seed)


def _priors(ns: list[int], batch: int | None, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (lambda n: (n,)) if batch is None else (lambda n: (batch, n))
    return [torch.randn(*shape(n), generator=g, dtype=torch.float64).softmax(-1) for n in ns]


def _worst(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------------
# The precompiled updates
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ns, no", SHAPES)
def test_mean_field_update_equals_fixed_point_iteration_for_every_observation(ns, no) -> None:
    pomdp = _model(ns, no, seed=1)
    engine = MeanFieldStateInference(pomdp.A)
    prior = _priors(ns, None, seed=2)
    for obs in itertools.product(*[range(n) for n in no]):
        post = engine.update(list(obs), prior)
        assert post.joint is None and post.log_evidence is None
        assert _worst(post.qs, infer_states_fpi(pomdp.A, list(obs), prior)) < PARITY
    few = MeanFieldStateInference(pomdp.A, num_iter=3)
    ref = infer_states_fpi(pomdp.A, [0] * len(no), prior, num_iter=3)
    assert _worst(few.update([0] * len(no), prior).qs, ref) < PARITY


@pytest.mark.parametrize("ns, no", SHAPES)
def test_mean_field_batches_and_batched_models_equal_the_batched_iteration(ns, no) -> None:
    batch = 6
    g = torch.Generator().manual_seed(3)
    obs = torch.stack([torch.randint(n, (batch,), generator=g) for n in no], 1)
    prior = _priors(ns, batch, seed=4)
    shared = _model(ns, no, seed=1)
    post = MeanFieldStateInference(shared.A).update(obs, prior)
    assert [tuple(q.shape) for q in post.qs] == [(batch, n) for n in ns]
    ref = infer_states_fpi(shared.A, obs, prior)  # type: ignore[arg-type]
    assert _worst(post.qs, ref) < PARITY
    models = [_model(ns, no, seed=k) for k in range(batch)]
    A = [torch.stack(list(parts)) for parts in zip(*[m.A for m in models], strict=True)]
    own = MeanFieldStateInference(A, batched=True).update(obs, prior)
    assert _worst(own.qs, infer_states_fpi(A, obs, prior)) < PARITY  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected an integer tensor of shape"):
        MeanFieldStateInference(A, batched=True).update([0] * len(no), [p[0] for p in prior])


def test_mean_field_without_tables_or_outer_products(monkeypatch) -> None:
    """Models too large for the per-outcome tables take the slower paths, with the same result."""
    monkeypatch.setattr(exact, "_MAX_OUTER_ENTRIES", 10)
    monkeypatch.setattr(exact, "_MAX_TABLE_ENTRIES", 10)
    for ns, no in SHAPES[1:]:
        pomdp = _model(ns, no, seed=5)
        engine = MeanFieldStateInference(pomdp.A)
        prior = _priors(ns, None, seed=6)
        obs = [n - 1 for n in no]
        assert _worst(engine.update(obs, prior).qs, infer_states_fpi(pomdp.A, obs, prior)) < PARITY


def test_mean_field_floors_zero_priors_and_checks_its_inputs() -> None:
    pomdp = _model([3, 2], [4, 3], seed=7)
    prior = [torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), pomdp.D[1]]  # type: ignore[index]
    engine = MeanFieldStateInference(pomdp.A)
    assert (
        _worst(engine.update([1, 2], prior).qs, infer_states_fpi(pomdp.A, [1, 2], prior)) < PARITY
    )
    with pytest.raises(ValueError, match="num_iter=0"):
        MeanFieldStateInference(pomdp.A, num_iter=0)
    with pytest.raises(ValueError, match="outside"):
        MeanFieldStateInference([pomdp.A[0] * 2.0, pomdp.A[1]])
    with pytest.raises(IndexError, match="below 4"):
        engine.update([4, 0], prior)
    with pytest.raises(IndexError, match="below"):
        engine.update([-1, 0], prior)


@pytest.mark.slow
@pytest.mark.parametrize("ns, no", SHAPES[1:3])
def test_compiled_mean_field_sweeps_equal_the_eager_ones(ns, no) -> None:
    """AOTInductor-compiled sweeps (tens of seconds to compile the first time on a machine)."""
    pomdp = _model(ns, no, seed=13)
    compiled = MeanFieldStateInference(pomdp.A, compile=True)
    assert compiled.compile_seconds is not None
    prior = _priors(ns, None, seed=14)
    for obs in itertools.product(*[range(n) for n in no]):
        ref = infer_states_fpi(pomdp.A, list(obs), prior)
        assert _worst(compiled.update(list(obs), prior).qs, ref) < PARITY
    with pytest.raises(ValueError, match="compiled sweeps"):
        compiled.update([0] * len(no), [p.float() for p in prior])
    # Another model of the same layout reuses the compiled sweeps.
    other = MeanFieldStateInference(_model(ns, no, seed=15).A, compile=True)
    assert other.compile_seconds is not None and other.compile_seconds < 1.0


def test_joint_update_equals_exact_bayes_from_the_same_joint_prior() -> None:
    pomdp = _model([4, 3, 3], [5, 4], seed=8)
    batch = 5
    g = torch.Generator().manual_seed(9)
    obs = torch.stack([torch.randint(n, (batch,), generator=g) for n in pomdp.num_obs], 1)
    prior = _priors(pomdp.num_states, batch, seed=10)
    post = ExactStateInference(pomdp.A).update_joint(obs, joint_from_marginals(prior))
    ref = infer_states_exact(pomdp.A, obs, prior)  # type: ignore[arg-type]
    assert _worst(post.qs, ref.qs) < PARITY
    assert post.joint is not None and ref.joint is not None and ref.log_evidence is not None
    assert post.log_evidence is not None
    assert torch.allclose(post.joint, ref.joint, atol=PARITY, rtol=0)
    assert torch.allclose(post.log_evidence, ref.log_evidence, atol=1e-10, rtol=0)


# --------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------


def test_categorical_env_draws_from_d_a_and_b_and_never_an_impossible_outcome() -> None:
    pomdp = CategoricalPOMDP.random(**SMALL, seed=11)  # type: ignore[arg-type]
    A = [a.clone() for a in pomdp.A]
    A[0][2] = 0.0  # outcome 2 of modality 0 is impossible
    A[0] = A[0] / A[0].sum(0, keepdim=True)
    D = [torch.tensor([0.2, 0.8, 0.0], dtype=torch.float64), torch.tensor([0.5, 0.5])]
    env = CategoricalEnv(A, pomdp.B, D, batch_size=20_000, seed=0)
    assert isinstance(env, BatchedEnv)
    obs = env.reset()
    assert env.state is not None and obs.shape == (20_000, 3) and obs.dtype == torch.long
    freq = torch.bincount(env.state[:, 0], minlength=3).double() / 20_000
    assert torch.allclose(freq, D[0], atol=0.015)
    assert int((obs[:, 0] == 2).sum()) == 0
    # Outcomes given the state: modality 1 from A[1][:, s].
    joint = env.state[:, 0] * 2 + env.state[:, 1]
    for s in range(4):  # states 4 and 5 have s_0 = 2, of prior probability 0
        rows = obs[joint == s, 1]
        freq = torch.bincount(rows, minlength=3).double() / rows.numel()
        assert torch.allclose(freq, A[1].reshape(3, 6)[:, s], atol=0.04)
    before = env.state.clone()
    action = torch.tensor([[1, 2]]).expand(20_000, 2)
    env.step(action)
    for s in range(2):
        moved = env.state[before[:, 1] == s, 1]
        freq = torch.bincount(moved, minlength=2).double() / moved.numel()
        assert torch.allclose(freq, pomdp.B[1][:, s, 2], atol=0.03)


def test_categorical_env_is_seeded_and_checks_shapes() -> None:
    pomdp = CategoricalPOMDP.random(**SMALL, seed=12)  # type: ignore[arg-type]
    assert pomdp.D is not None
    env = CategoricalEnv(pomdp.A, pomdp.B, pomdp.D, batch_size=4)
    action = torch.zeros(4, 2, dtype=torch.long)
    first = [env.reset(seed=3), env.step(action), env.step(action)]
    again = [env.reset(seed=3), env.step(action), env.step(action)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    with pytest.raises(ValueError, match=r"action has shape \(4, 1\); expected \(4, 2\)"):
        env.step(action[:, :1])
    with pytest.raises(ValueError, match="call reset first"):
        CategoricalEnv(pomdp.A, pomdp.B, pomdp.D).step(action[:1])
    with pytest.raises(ValueError, match="one batch size"):
        CategoricalEnv(pomdp.A, pomdp.B, [d.expand(3, -1) for d in pomdp.D], batch_size=4)


# --------------------------------------------------------------------------------------------
# Rollouts against stepping the agent by hand
# --------------------------------------------------------------------------------------------


def _setting(own: bool, batch: int, sizes: dict[str, Any] = MEDIUM):
    models = [
        CategoricalPOMDP.random(**sizes, seed=k if own else 0, dirichlet=True) for k in range(batch)
    ]

    def stacked(attr: str) -> list[torch.Tensor]:
        return [torch.stack(list(p)) for p in zip(*[getattr(m, attr) for m in models], strict=True)]

    env = CategoricalEnv(stacked("A"), stacked("B"), stacked("D"), seed=1)
    return (models if own else models[0]), env


def _by_hand(agent: DiscreteAgent, env: CategoricalEnv, steps: int, seed: int) -> dict[str, Any]:
    agent.reset()
    obs = env.reset(seed=seed)
    out: dict[str, list[Any]] = {"action": [], "qs": [], "q_pi": [], "obs": []}
    for _ in range(steps):
        out["obs"].append(obs)
        action = agent.step(obs)
        assert agent.qs is not None
        out["qs"].append(agent.qs)
        out["q_pi"].append(agent.history[-1].q_pi)
        out["action"].append(action)
        obs = env.step(action)
    return out


@pytest.mark.parametrize("own", [False, True], ids=["one model", "own models"])
@pytest.mark.parametrize(
    "settings",
    [
        dict(),
        dict(inference="exact"),
        dict(action_selection="stochastic"),
        dict(action_selection="stochastic", sampling="marginal", inference="exact"),
        dict(info_gain="per_modality", use_states_info_gain=False),
        dict(learn_A=True, learn_B=True),
        dict(inference="mmp", inference_horizon=3),
    ],
    ids=["fpi", "exact", "stochastic", "marginal-exact", "utility", "learning", "mmp"],
)
def test_rollout_equals_stepping_the_agent_by_hand(own: bool, settings: dict[str, Any]) -> None:
    model, env = _setting(own, batch=6)
    steps = 5
    agent = DiscreteAgent(model, batch_size=6, seed=4, **settings)
    plan = Rollout(agent)
    fused = settings.get("inference", "fpi") in ("fpi", "exact") and "learn_A" not in settings
    assert plan.fused == fused and plan.shared == (fused and not own)
    result = plan.run(env, steps, seed=7, efe_parts=True)
    ref = _by_hand(DiscreteAgent(model, batch_size=6, seed=4, **settings), env, steps, seed=7)
    assert torch.equal(result.action, torch.stack(ref["action"]))
    assert torch.equal(result.obs, torch.stack(ref["obs"]))
    for f, q in enumerate(result.qs):
        assert torch.allclose(q, torch.stack([qs[f] for qs in ref["qs"]]), atol=1e-10, rtol=0)
    assert torch.allclose(result.q_pi, torch.stack(ref["q_pi"]), atol=1e-10, rtol=0)
    assert result.efe_parts is not None and torch.equal(result.efe, result.efe_parts.efe)
    assert result.q_pi.shape == (steps, 6, agent.policies.shape[0])
    # The episode ends reset; what was learnt stays.
    assert agent.t == 0 and agent.qs is None
    if "learn_A" in settings:
        assert agent.pA is not None and model is not None
        start = DiscreteAgent(model, batch_size=6, **settings).pA
        assert start is not None and not torch.allclose(agent.pA[0], start[0])


@pytest.mark.slow
@pytest.mark.parametrize("inference", ["fpi", "exact"])
def test_compiled_rollout_steps_equal_the_eager_ones(inference: str) -> None:
    """AOTInductor-compiled steps (about a minute to compile each)."""
    model, env = _setting(True, batch=4, sizes=SMALL)
    agent = DiscreteAgent(model, batch_size=4, inference=inference, seed=1)
    compiled = Rollout(agent, compile=True)
    assert compiled.compile_seconds is not None
    fast = compiled.run(env, 4, seed=2, efe_parts=True)
    slow = Rollout(agent).run(env, 4, seed=2, efe_parts=True)
    assert torch.equal(fast.action, slow.action)
    assert torch.allclose(fast.q_pi, slow.q_pi, atol=1e-10, rtol=0)
    assert fast.efe_parts is not None and slow.efe_parts is not None
    assert torch.allclose(fast.efe_parts.risk, slow.efe_parts.risk, atol=1e-10, rtol=0)


def test_rollout_repeats_with_the_same_seeds_and_runs_in_float32() -> None:
    model, env = _setting(False, batch=4, sizes=SMALL)
    runs = [
        rollout(
            DiscreteAgent(model, batch_size=4, seed=2, action_selection="stochastic"),
            env,
            6,
            seed=3,
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0].action, runs[1].action) and torch.equal(runs[0].q_pi, runs[1].q_pi)
    assert runs[0].efe_parts is None
    single = rollout(DiscreteAgent(model, batch_size=4, dtype=torch.float32), env, 6, seed=3)
    double = rollout(DiscreteAgent(model, batch_size=4), env, 6, seed=3)
    assert single.q_pi.dtype == torch.float32 and single.qs[0].dtype == torch.float32
    assert torch.equal(single.action, double.action)
    assert torch.allclose(single.qs[0].double(), double.qs[0], atol=1e-4)


class _BadEnv:
    batch_size = 2

    def __init__(self, obs: torch.Tensor) -> None:
        self.obs = obs

    def reset(self, seed: int | None = None) -> torch.Tensor:
        return self.obs

    def step(self, action: torch.Tensor) -> torch.Tensor:
        return self.obs


def test_rollout_checks_the_environment() -> None:
    model, _ = _setting(False, batch=2, sizes=SMALL)
    agent = DiscreteAgent(model, batch_size=2)
    with pytest.raises(
        ValueError, match=r"shape \(2, 2\); expected an integer tensor of shape \(2, 3\)"
    ):
        rollout(agent, _BadEnv(torch.zeros(2, 2, dtype=torch.long)), 3)
    with pytest.raises(ValueError, match="expected indices below"):
        rollout(agent, _BadEnv(torch.full((2, 3), 4)), 3)
    with pytest.raises(ValueError, match="float32 observations"):
        rollout(agent, _BadEnv(torch.zeros(2, 3)), 3)
    with pytest.raises(ValueError, match="one environment per agent"):
        rollout(DiscreteAgent(model, batch_size=3), _BadEnv(torch.zeros(2, 3, dtype=torch.long)), 3)
    with pytest.raises(ValueError, match="steps=0"):
        rollout(agent, _BadEnv(torch.zeros(2, 3, dtype=torch.long)), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("inference", ["fpi", "exact"])
def test_cuda_rollout_matches_the_cpu_rollout(inference: str) -> None:
    model, env = _setting(True, batch=8)
    assert isinstance(model, list)
    cpu = rollout(DiscreteAgent(model, batch_size=8, inference=inference), env, 5, seed=2)  # type: ignore[arg-type]
    gpu_models = [m.to("cuda") for m in model]
    gpu_env = CategoricalEnv(
        [a.cuda() for a in env_parts(gpu_models, "A")],
        [b.cuda() for b in env_parts(gpu_models, "B")],
        [d.cuda() for d in env_parts(gpu_models, "D")],
        seed=1,
    )
    agent = DiscreteAgent(gpu_models, batch_size=8, inference=inference)  # type: ignore[arg-type]
    gpu = rollout(agent, gpu_env, 5, seed=2)
    assert gpu.q_pi.device.type == "cuda" and gpu.action.device.type == "cuda"
    assert torch.equal(cpu.obs, gpu.obs.cpu()) and torch.equal(cpu.action, gpu.action.cpu())
    assert torch.allclose(cpu.q_pi, gpu.q_pi.cpu(), atol=1e-10)
    engine = MeanFieldStateInference([a.cuda() for a in model[0].A])
    post = engine.update([1, 2], [d.cuda() for d in model[0].D])  # type: ignore[union-attr]
    assert post.qs[0].device.type == "cuda"
    ref = infer_states_fpi(model[0].A, [1, 2], model[0].D)  # type: ignore[arg-type]
    assert _worst([q.cpu() for q in post.qs], ref) < PARITY


def env_parts(models: list[CategoricalPOMDP], attr: str) -> list[torch.Tensor]:
    return [torch.stack(list(p)) for p in zip(*[getattr(m, attr) for m in models], strict=True)]
