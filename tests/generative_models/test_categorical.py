"""Tests of ``CategoricalPOMDP``: validation, seeding, the Pyro program and its guide."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, config_enumerate

from aif.exact import vfe_categorical
from aif.handlers import condition_on_policy, set_horizon
from generative_models.categorical import CategoricalPOMDP, categorical_guide


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny tensors: one thread is fastest, and two test workers share the cores.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _empty_guide(*args, **kwargs) -> None:
    return None


@pytest.fixture
def pomdp() -> CategoricalPOMDP:
    return CategoricalPOMDP.random([3, 2], [4, 3], [2, 3], policy_len=2, seed=1, dirichlet=True)


def test_random_is_seeded_and_defaults_are_filled() -> None:
    a = CategoricalPOMDP.random([3, 2], [4, 3], [2, 3], policy_len=2, seed=5)
    b = CategoricalPOMDP.random([3, 2], [4, 3], [2, 3], policy_len=2, seed=5)
    c = CategoricalPOMDP.random([3, 2], [4, 3], [2, 3], policy_len=2, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.A + a.B, b.A + b.B, strict=True))
    assert not torch.equal(a.A[0], c.A[0])
    assert a.num_states == [3, 2] and a.num_obs == [4, 3] and a.num_controls == [2, 3]
    assert a.num_policies == 36 and a.E is not None and float(a.E.sum()) == pytest.approx(1.0)
    plain = CategoricalPOMDP(A=a.A, B=a.B)
    assert plain.C is not None and all(float(c.abs().sum()) == 0 for c in plain.C)
    assert plain.D is not None and torch.allclose(
        plain.D[1], torch.full((2,), 0.5, dtype=torch.float64)
    )


def test_validation_names_tensor_shape_and_expectation(pomdp: CategoricalPOMDP) -> None:
    A, B = pomdp.A, pomdp.B
    with pytest.raises(ValueError, match=r"A\[1\] has shape \(3, 2, 2\); expected \(3, 3, 2\)"):
        CategoricalPOMDP(A=[A[0], A[1][:, :2]], B=B)
    bad_B = B[0].clone()
    bad_B[0, 0, 0] += 0.5
    with pytest.raises(ValueError, match=r"B\[0\] of shape \(3, 3, 2\) does not sum to one"):
        CategoricalPOMDP(A=A, B=[bad_B, B[1]])
    with pytest.raises(ValueError, match=r"C\[0\] has shape \(5,\); expected \(4,\) or \(4, T\)"):
        CategoricalPOMDP(A=A, B=B, C=[torch.zeros(5), torch.zeros(3)])
    with pytest.raises(ValueError, match=r"D\[1\] has shape \(3,\); expected \(2,\)"):
        CategoricalPOMDP(A=A, B=B, D=[torch.ones(3) / 3, torch.ones(3) / 3])
    with pytest.raises(ValueError, match=r"E has shape \(4,\); expected \(6,\)"):
        CategoricalPOMDP(A=A, B=B, E=torch.ones(4) / 4)
    with pytest.raises(ValueError, match=r"pA\[0\] has shape \(4, 3\); expected \(4, 3, 2\)"):
        CategoricalPOMDP(A=A, B=B, pA=[torch.ones(4, 3), torch.ones(3, 3, 2)])
    with pytest.raises(
        ValueError, match=r"B\[1\] has shape \(2, 3, 3\); expected \(n_s, n_s, n_u\)"
    ):
        CategoricalPOMDP(A=A, B=[B[0], torch.ones(2, 3, 3) / 2])


def test_from_dirichlet_uses_the_dirichlet_means(pomdp: CategoricalPOMDP) -> None:
    assert pomdp.pA is not None and pomdp.pB is not None
    pA = [
        p * torch.rand(p.shape, generator=torch.Generator().manual_seed(0), dtype=p.dtype) + 0.1
        for p in pomdp.pA
    ]
    m = CategoricalPOMDP.from_dirichlet(pA, pomdp.pB)
    assert torch.allclose(m.A[0], pA[0] / pA[0].sum(0, keepdim=True))
    with pytest.raises(
        ValueError, match=r"pA\[0\] of shape \(4, 3, 2\) has a column with no counts"
    ):
        CategoricalPOMDP.from_dirichlet([torch.zeros(4, 3, 2), pA[1]], pomdp.pB)


def test_model_sites_follow_the_documented_names(pomdp: CategoricalPOMDP) -> None:
    obs = [[1, 2], [0, 1], [3, 0]]
    tr = poutine.trace(pomdp.model).get_trace(obs, [[1, 2], [0, 1]])
    names = [n for n, s in tr.nodes.items() if s["type"] == "sample"]
    for t in range(3):
        for f in range(2):
            assert f"s_{t}_{f}" in names
        for m in range(2):
            assert tr.nodes[f"o_{t}_{m}"]["is_observed"]
            assert int(tr.nodes[f"o_{t}_{m}"]["value"]) == obs[t][m]
    assert int(tr.nodes["u_1_1"]["value"]) == 1
    assert "u_2_0" not in names
    planning = poutine.trace(pomdp.model).get_trace(
        actions=[[1, 0], [0, 2]], prior=pomdp.D, observe_initial=False
    )
    assert "o_0_0" not in planning.nodes and "o_2_1" in planning.nodes


def test_enumerated_model_gives_the_exact_log_evidence(pomdp: CategoricalPOMDP) -> None:
    obs = [[1, 2], [0, 1], [3, 0]]
    actions = [[1, 2], [0, 1]]
    elbo = TraceEnum_ELBO(max_plate_nesting=0)
    log_ev = -elbo.loss(config_enumerate(pomdp.model), _empty_guide, obs, actions)
    assert log_ev == pytest.approx(float(pomdp.log_evidence(obs, actions)), abs=1e-9)
    # Free controls are enumerated with a uniform prior: the evidence averages over them.
    free = -elbo.loss(config_enumerate(pomdp.model), _empty_guide, obs)
    per_action = [
        float(pomdp.log_evidence(obs, [list(u0), list(u1)]))
        for u0 in itertools.product(range(2), range(3))
        for u1 in itertools.product(range(2), range(3))
    ]
    expected = torch.logsumexp(torch.tensor(per_action, dtype=torch.float64), 0) - math.log(
        len(per_action)
    )
    assert free == pytest.approx(float(expected), abs=1e-9)


def test_enumerated_guide_gives_the_closed_form_vfe(pomdp: CategoricalPOMDP) -> None:
    g = torch.Generator().manual_seed(3)
    init = [torch.randn(1, n, generator=g, dtype=torch.float64) for n in pomdp.num_states]
    guide = categorical_guide(pomdp, T=1, init_logits=init, enum="parallel")
    loss = TraceEnum_ELBO(max_plate_nesting=0).loss(pomdp.model, guide, [[2, 1]])
    qs = guide.marginals()[0]
    closed = vfe_categorical(qs, pomdp.D, pomdp.A, [2, 1])
    assert loss == pytest.approx(float(closed.vfe), abs=1e-9)
    mc = Trace_ELBO(num_particles=400).loss
    pyro.set_rng_seed(0)
    assert mc(
        pomdp.model, categorical_guide(pomdp, T=1, init_logits=init), [[2, 1]]
    ) == pytest.approx(float(closed.vfe), abs=0.3)


def test_guides_do_not_share_parameters(pomdp: CategoricalPOMDP) -> None:
    g1 = pomdp.make_guide(T=1)
    g3 = pomdp.make_guide(T=3)
    assert g1.logits(0).shape == (1, 3) and g3.logits(0).shape == (3, 3)
    tr = poutine.trace(g3).get_trace([[0, 0], [1, 1], [2, 2]])
    assert {f"s_{t}_{f}" for t in range(3) for f in range(2)} <= set(tr.nodes)
    with pytest.raises(ValueError, match=r"init_logits\[0\] has shape \(2, 3\); expected \(1, 3\)"):
        pomdp.make_guide(T=1, init_logits=[torch.zeros(2, 3), torch.zeros(1, 2)])


def test_handlers_set_horizon_and_condition_on_policy(pomdp: CategoricalPOMDP) -> None:
    with set_horizon(4):
        tr = poutine.trace(pomdp.model).get_trace()
    assert "s_3_1" in tr.nodes and "s_4_0" not in tr.nodes
    policy = torch.tensor([[1, 2], [0, 1]])
    with condition_on_policy(policy):
        tr = poutine.trace(pomdp.model).get_trace()
    assert int(tr.nodes["u_0_1"]["value"]) == 2 and int(tr.nodes["u_1_0"]["value"]) == 0


def test_learnable_parameter_sites(pomdp: CategoricalPOMDP) -> None:
    tr = poutine.trace(pomdp.model).get_trace([[0, 1]], learn_A=True, learn_B=True)
    assert tr.nodes["A_0"]["value"].shape == (3, 2, 4)
    assert tr.nodes["B_1"]["value"].shape == (2, 3, 2)
    guide = pomdp.make_guide(T=1, learn_A=True, learn_B=True)
    loss = Trace_ELBO().loss(pomdp.model, guide, [[0, 1]], learn_A=True, learn_B=True)
    assert math.isfinite(loss)
    plain = CategoricalPOMDP(A=pomdp.A, B=pomdp.B)
    with pytest.raises(ValueError, match="learn_A=True needs pA"):
        poutine.trace(plain.model).get_trace([[0, 1]], learn_A=True)


def test_closed_form_shortcuts_match_the_engine(pomdp: CategoricalPOMDP) -> None:
    post = pomdp.infer_states([1, 1])
    res = pomdp.efe(post.qs)
    assert res.efe.shape == (36,)
    q = pomdp.policy_posterior(res.efe)
    assert float(q.sum()) == pytest.approx(1.0)
    filt = pomdp.filter([[1, 1], [0, 2]], [[0, 1]])
    assert float(filt.log_evidence.sum()) == pytest.approx(
        float(pomdp.log_evidence([[1, 1], [0, 2]], [[0, 1]]))
    )


def test_model_refuses_rounded_observations(pomdp: CategoricalPOMDP) -> None:
    with pytest.raises(ValueError, match=r"obs\[0\] = \[1.89.*\] has dtype torch.float32"):
        pyro.poutine.trace(pomdp.model).get_trace([[1.9, 0.0]])


def test_to_moves_and_casts_every_tensor(pomdp: CategoricalPOMDP) -> None:
    single = pomdp.to(dtype=torch.float32)
    assert single.dtype == torch.float32 and single.device == torch.device("cpu")
    for name in ("A", "B", "C", "D", "pA", "pB"):
        assert all(x.dtype == torch.float32 for x in getattr(single, name)), name
    assert single.E is not None and single.E.dtype == torch.float32
    assert torch.equal(single.policies, pomdp.policies)  # type: ignore[arg-type]
    assert torch.allclose(single.A[0].double(), pomdp.A[0], atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_on_cuda_keeps_every_tensor_there(pomdp: CategoricalPOMDP) -> None:
    gpu = CategoricalPOMDP.random(
        [3, 2], [4, 3], [2, 3], policy_len=2, seed=1, dirichlet=True, device="cuda"
    )
    for name in ("A", "B", "C", "D", "pA", "pB"):
        assert all(x.device.type == "cuda" for x in getattr(gpu, name)), name
    assert gpu.policies is not None and gpu.policies.device.type == "cuda"
    # The same seed gives the same model on every device.
    assert torch.allclose(gpu.A[1].cpu(), pomdp.A[1])
    qs = [d for d in gpu.D]  # type: ignore[union-attr]
    cpu_efe = pomdp.efe([d for d in pomdp.D])  # type: ignore[union-attr]
    gpu_efe = gpu.efe(qs)
    assert gpu_efe.efe.device.type == "cuda"
    assert torch.allclose(gpu_efe.efe.cpu(), cpu_efe.efe, atol=1e-10)


def test_initial_state_concentrations_are_validated() -> None:
    base = CategoricalPOMDP.random([3], [2], [2], seed=0)
    ok = CategoricalPOMDP(A=base.A, B=base.B, pD=[torch.tensor([1.0, 2.0, 0.0])])
    assert ok.pD is not None and ok.pD[0].dtype == torch.float64
    with pytest.raises(ValueError, match=r"pD\[0\] has shape \(2,\); expected \(3,\)"):
        CategoricalPOMDP(A=base.A, B=base.B, pD=[torch.ones(2)])


def test_joint_guide_and_smoother_of_the_model(pomdp: CategoricalPOMDP) -> None:
    from aif.inference import JointCategorical, fit_beliefs

    guide = pomdp.make_guide(T=2, structure="joint")
    assert isinstance(guide, JointCategorical)
    assert [name for name, _ in guide.steps[1]] == ["s_1_0", "s_1_1"]
    obs, actions = [[1, 0], [3, 2]], [[1, 2]]
    fit = fit_beliefs(
        pomdp.model, guide, obs, actions, num_steps=1500, lr=0.2, lr_decay=1.0, tol=1e-7
    )
    smoothed = pomdp.smooth(obs, actions)
    assert abs(float(fit.final.vfe + smoothed.log_evidence)) < 1e-3
    assert float((guide.joint(0) - smoothed.joint[0]).abs().max()) < 1e-3
    assert float(smoothed.log_evidence) == pytest.approx(float(pomdp.log_evidence(obs, actions)))
    with pytest.raises(ValueError, match="structure='bethe'"):
        pomdp.make_guide(T=1, structure="bethe")  # type: ignore[call-overload]
