"""Tests of policy enumeration, expected free energy parts, policy posterior and action selection."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from aif.maths import entropy, normalize
from aif.planning import (
    PolicyEvaluator,
    action_marginals,
    construct_policies,
    efe_categorical,
    novelty_weights,
    policy_posterior,
    preference_offset,
    select_action,
)


def _model(seed: int, ns=(3, 2), no=(4, 3), nu=(2, 3)):
    g = torch.Generator().manual_seed(seed)
    A = [normalize(torch.rand(o, *ns, generator=g, dtype=torch.float64), 0) for o in no]
    B = [
        normalize(torch.rand(n, n, u, generator=g, dtype=torch.float64), 0)
        for n, u in zip(ns, nu, strict=True)
    ]
    C = [torch.randn(o, generator=g, dtype=torch.float64) for o in no]
    qs = [normalize(torch.rand(n, generator=g, dtype=torch.float64), 0) for n in ns]
    return qs, A, B, C


def test_construct_policies_count_order_and_uncontrolled_factors() -> None:
    pol = construct_policies([2, 1, 3], policy_len=2)
    assert pol.shape == (36, 2, 3)
    assert (pol[:, :, 1] == 0).all()
    # The last factor of the last step varies fastest (pymdp's order).
    assert pol[0].tolist() == [[0, 0, 0], [0, 0, 0]]
    assert pol[1].tolist() == [[0, 0, 0], [0, 0, 1]]
    assert len({tuple(p.flatten().tolist()) for p in pol}) == 36
    assert construct_policies([2, 3], 1, control_factors=[1]).shape == (3, 1, 2)
    with pytest.raises(ValueError, match="policy_len=0"):
        construct_policies([2], 0)


def _brute_efe_one_policy(qs, A, B, C, policy):
    """Joint-outcome EFE of one policy by explicit enumeration of states and outcomes."""
    q = [x.clone() for x in qs]
    risk = amb = 0.0
    for t in range(policy.shape[0]):
        q = [B[f][:, :, int(policy[t, f])] @ q[f] for f in range(len(q))]
        log_pref = [torch.log_softmax(c, 0) for c in C]
        qo = {}
        for s in itertools.product(*[range(x.shape[0]) for x in q]):
            ps = math.prod(float(x[i]) for x, i in zip(q, s, strict=True))
            for o in itertools.product(*[range(a.shape[0]) for a in A]):
                po = math.prod(float(a[(oi, *s)]) for a, oi in zip(A, o, strict=True))
                qo[o] = qo.get(o, 0.0) + ps * po
                if po > 0:
                    amb -= ps * po * math.log(po)
        for o, p in qo.items():
            if p > 0:
                risk += p * (
                    math.log(p) - sum(float(lp[oi]) for lp, oi in zip(log_pref, o, strict=True))
                )
    return risk, amb


def test_joint_efe_matches_brute_force_and_both_decompositions_agree() -> None:
    qs, A, B, C = _model(0)
    pol = construct_policies([2, 3], 2)
    res = efe_categorical(qs, A, B, C, pol)
    for k in (0, 7, 35):
        risk, amb = _brute_efe_one_policy(qs, A, B, C, pol[k])
        assert float(res.risk[k]) == pytest.approx(risk, abs=1e-10)
        assert float(res.ambiguity[k]) == pytest.approx(amb, abs=1e-10)
    assert torch.allclose(res.efe, res.risk + res.ambiguity, atol=1e-10)
    assert torch.allclose(res.efe, -res.pragmatic_value - res.state_info_gain, atol=1e-10)
    assert torch.allclose(res.neg_efe, -res.efe)


def test_per_modality_info_gain_bounds_joint_and_agrees_for_one_modality() -> None:
    qs, A, B, C = _model(1)
    pol = construct_policies([2, 3], 1)
    joint = efe_categorical(qs, A, B, C, pol, info_gain="joint")
    per = efe_categorical(qs, A, B, C, pol, info_gain="per_modality")
    assert (per.state_info_gain >= joint.state_info_gain - 1e-12).all()
    assert (per.state_info_gain > joint.state_info_gain + 1e-6).any()
    assert torch.allclose(per.efe, per.risk + per.ambiguity, atol=1e-10)
    assert torch.allclose(joint.pragmatic_value, per.pragmatic_value)
    one_j = efe_categorical(qs, A[:1], B, C[:1], pol, info_gain="joint")
    one_p = efe_categorical(qs, A[:1], B, C[:1], pol, info_gain="per_modality")
    assert torch.allclose(one_j.efe, one_p.efe, atol=1e-12)


def test_switches_select_terms_and_preferences_are_shift_invariant() -> None:
    qs, A, B, C = _model(2)
    pol = construct_policies([2, 3], 2)
    full = efe_categorical(qs, A, B, C, pol)
    only_ig = efe_categorical(qs, A, B, C, pol, use_utility=False)
    only_util = efe_categorical(qs, A, B, C, pol, use_states_info_gain=False)
    assert torch.allclose(only_ig.efe, -full.state_info_gain)
    assert torch.allclose(only_util.efe, -full.pragmatic_value)
    shifted = efe_categorical(qs, A, B, [c + 3.0 for c in C], pol)
    assert torch.allclose(shifted.efe, full.efe, atol=1e-12)
    # The offset to raw-C scoring is logsumexp(C) per modality and step.
    expected = 2 * sum(float(torch.logsumexp(c, 0)) for c in C)
    assert float(preference_offset(C, 2)) == pytest.approx(expected)


def test_time_indexed_preferences_use_one_column_per_step() -> None:
    qs, A, B, C = _model(3)
    pol = construct_policies([2, 3], 2)
    C_t = [torch.stack([c, torch.zeros_like(c)], dim=1) for c in C]
    res = efe_categorical(qs, A, B, C_t, pol)
    first = efe_categorical(qs, A, B, C, pol[:, :1])
    step_two_uniform = efe_categorical(qs, A, B, [torch.zeros_like(c) for c in C], pol)
    # Pragmatic value = step-one value under C + step-two value under flat preferences.
    one_step_flat = efe_categorical(qs, A, B, [torch.zeros_like(c) for c in C], pol[:, :1])
    expected = (
        first.pragmatic_value + step_two_uniform.pragmatic_value - one_step_flat.pragmatic_value
    )
    assert torch.allclose(res.pragmatic_value, expected, atol=1e-12)


def test_novelty_weights_are_the_kl_of_a_one_count_update() -> None:
    a = torch.tensor([[2.0, 0.5], [1.0, 4.0], [0.3, 1.0]], dtype=torch.float64)
    w = novelty_weights(a, "exact")
    for i in range(3):
        for j in range(2):
            upd = a[:, j].clone()
            upd[i] += 1
            kl = torch.distributions.kl_divergence(
                torch.distributions.Dirichlet(upd), torch.distributions.Dirichlet(a[:, j])
            )
            assert float(w[i, j]) == pytest.approx(float(kl), abs=1e-10)
    spm = novelty_weights(a, "spm")
    assert torch.allclose(spm, 1 / a - 1 / a.sum(0, keepdim=True))
    assert novelty_weights(torch.tensor([0.0, 1.0]), "exact")[0] == 0


def test_novelty_is_larger_for_less_certain_parameters() -> None:
    qs, A, B, C = _model(4)
    pol = construct_policies([2, 3], 1)
    confident = efe_categorical(
        qs, A, B, C, pol, pA=[100 * a for a in A], pB=[100 * b for b in B], use_param_info_gain=True
    )
    naive = efe_categorical(
        qs, A, B, C, pol, pA=[2 * a for a in A], pB=[2 * b for b in B], use_param_info_gain=True
    )
    assert (naive.novelty > confident.novelty).all()
    assert torch.allclose(naive.efe, naive.risk + naive.ambiguity - naive.novelty, atol=1e-10)
    with pytest.raises(ValueError, match="needs pA, pB or both"):
        efe_categorical(qs, A, B, C, pol, use_param_info_gain=True)


def test_input_validation_names_the_tensor() -> None:
    qs, A, B, C = _model(5)
    pol = construct_policies([2, 3], 1)
    with pytest.raises(ValueError, match=r"qs\[0\] has shape \(2,\); expected \(3,\)"):
        efe_categorical([qs[1], qs[1]], A, B, C, pol)
    with pytest.raises(ValueError, match=r"C\[1\] has shape \(5,\); expected \(3,\)"):
        efe_categorical(qs, A, B, [C[0], torch.zeros(5)], pol)
    with pytest.raises(ValueError, match=r"policies use control 3 of factor 0"):
        efe_categorical(qs, A, B, C, construct_policies([4, 3], 1))


def test_policy_posterior_is_softmax_of_negative_efe_plus_log_prior() -> None:
    efe = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    q = policy_posterior(efe, gamma=2.0)
    assert q.sum() == pytest.approx(1.0)
    assert float(q[0] / q[1]) == pytest.approx(math.exp(2.0))
    log_E = torch.log(torch.tensor([0.2, 0.7, 0.1], dtype=torch.float64))
    q_e = policy_posterior(efe, gamma=2.0, log_E=log_E)
    assert float(q_e[1] / q_e[2]) == pytest.approx(math.exp(-3.0) * 7.0)
    assert int(policy_posterior(efe, gamma=1e3).argmax()) == 2
    with pytest.raises(ValueError, match=r"log_E has shape \(2,\); expected \(3,\)"):
        policy_posterior(efe, log_E=torch.zeros(2))


def test_select_action_deterministic_and_seeded_stochastic() -> None:
    pol = construct_policies([2, 3], 1)  # 6 policies
    q_pi = torch.tensor([0.05, 0.05, 0.3, 0.2, 0.3, 0.1], dtype=torch.float64)
    marg = action_marginals(q_pi, pol, [2, 3])
    assert torch.allclose(marg[0], torch.tensor([0.4, 0.6], dtype=torch.float64))
    assert torch.allclose(marg[1], torch.tensor([0.25, 0.35, 0.4], dtype=torch.float64))
    assert select_action(q_pi, pol).tolist() == [1, 2]
    # Ties go to the first maximum (policies 2 and 4 tie), as in torch.argmax and jnp.argmax.
    assert select_action(q_pi, pol, sampling="full").tolist() == [0, 2]
    draws = [
        tuple(
            select_action(
                q_pi, pol, "stochastic", torch.Generator().manual_seed(s), alpha=1.0
            ).tolist()
        )
        for s in range(400)
    ]
    again = [
        tuple(
            select_action(
                q_pi, pol, "stochastic", torch.Generator().manual_seed(s), alpha=1.0
            ).tolist()
        )
        for s in range(400)
    ]
    assert draws == again
    freq = sum(d[0] for d in draws) / len(draws)
    assert freq == pytest.approx(0.6, abs=0.08)
    with pytest.raises(ValueError, match="needs a torch.Generator"):
        select_action(q_pi, pol, "stochastic")


def test_entropy_of_uniform_predictions_bounds_info_gain() -> None:
    qs, A, B, C = _model(6)
    pol = construct_policies([2, 3], 1)
    res = efe_categorical(qs, A, B, C, pol, info_gain="per_modality")
    bound = sum(math.log(a.shape[0]) for a in A)
    assert (res.state_info_gain >= -1e-12).all() and (res.state_info_gain <= bound).all()
    assert float(entropy(torch.ones(4) / 4)) == pytest.approx(math.log(4))


PARITY = 1e-10


def _assert_same_evaluation(fast, slow, q_pi) -> None:
    for name in slow._fields:
        assert torch.allclose(getattr(fast.efe, name), getattr(slow, name), atol=PARITY, rtol=0), (
            name
        )
    assert torch.allclose(fast.q_pi, q_pi, atol=PARITY, rtol=0)


@pytest.mark.parametrize("info_gain", ["joint", "per_modality"])
@pytest.mark.parametrize("flags", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("policy_len", [1, 3])
def test_policy_evaluator_equals_efe_categorical_and_policy_posterior(
    info_gain, flags, policy_len
) -> None:
    qs, A, B, C = _model(10)
    policies = construct_policies([2, 3], policy_len)
    g = torch.Generator().manual_seed(11)
    log_E = torch.log_softmax(torch.randn(policies.shape[0], generator=g, dtype=torch.float64), 0)
    kwargs = dict(use_utility=flags[0], use_states_info_gain=flags[1], info_gain=info_gain)
    slow = efe_categorical(qs, A, B, C, policies, **kwargs)  # type: ignore[arg-type]
    evaluator = PolicyEvaluator(A, B, C, policies, 4.0, log_E, **kwargs)  # type: ignore[arg-type]
    _assert_same_evaluation(evaluator.evaluate(qs), slow, policy_posterior(slow.efe, 4.0, log_E))
    # The evaluator holds no beliefs: a second belief gives that belief's numbers.
    qs2 = [torch.softmax(torch.randn(q.shape[0], generator=g, dtype=torch.float64), 0) for q in qs]
    slow2 = efe_categorical(qs2, A, B, C, policies, **kwargs)  # type: ignore[arg-type]
    _assert_same_evaluation(evaluator.evaluate(qs2), slow2, policy_posterior(slow2.efe, 4.0, log_E))


@pytest.mark.parametrize(
    "ns,no,nu", [((3, 2), (4, 3), (2, 3)), ((4,), (3,), (3,)), ((4, 3, 3), (5, 4), (3, 2, 1))]
)
def test_policy_evaluator_with_time_indexed_preferences_and_uncontrolled_factors(
    ns, no, nu
) -> None:
    qs, A, B, _ = _model(12, ns=ns, no=no, nu=nu)
    g = torch.Generator().manual_seed(13)
    C = [torch.randn(o, 2, generator=g, dtype=torch.float64) for o in no]
    policies = construct_policies(nu, 3)
    for info_gain in ("joint", "per_modality"):
        slow = efe_categorical(qs, A, B, C, policies, info_gain=info_gain)  # type: ignore[arg-type]
        fast = PolicyEvaluator(A, B, C, policies, info_gain=info_gain).evaluate(qs)  # type: ignore[arg-type]
        _assert_same_evaluation(fast, slow, policy_posterior(slow.efe, 16.0))


def test_policy_evaluator_validates_at_construction() -> None:
    qs, A, B, C = _model(14)
    policies = construct_policies([2, 3], 2)
    with pytest.raises(ValueError, match="info_gain='both'"):
        PolicyEvaluator(A, B, C, policies, info_gain="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_E has shape"):
        PolicyEvaluator(A, B, C, policies, log_E=torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="controls 0..1"):
        PolicyEvaluator(A, B, C, policies + 1)


def _stack(xs):
    return [torch.stack(list(parts)) for parts in zip(*xs, strict=True)]


@pytest.mark.parametrize("info_gain", ["joint", "per_modality"])
def test_batched_efe_and_evaluator_equal_one_call_per_element(info_gain: str) -> None:
    models = [_model(seed) for seed in range(4)]
    for model in models:
        C_m = model[3]
        C_m[0] = torch.randn(C_m[0].shape[0], 2, dtype=torch.float64)  # time-indexed, per model
    policies = construct_policies([2, 3], policy_len=2)
    pA = [[4.0 * a + 0.1 for a in m[1]] for m in models]
    pB = [[3.0 * b + 0.2 for b in m[2]] for m in models]
    qs = [torch.stack([m[0][f] for m in models]) for f in range(2)]
    log_E = torch.log_softmax(torch.randn(4, policies.shape[0], dtype=torch.float64), -1)
    kwargs = dict(use_param_info_gain=True, info_gain=info_gain)
    # One model shared by the batch.
    _, A0, B0, C0 = models[0]
    shared = efe_categorical(qs, A0, B0, C0, policies, pA[0], pB[0], **kwargs)  # type: ignore[arg-type]
    evaluator = PolicyEvaluator(A0, B0, C0, policies, 8.0, log_E[0], info_gain=info_gain)  # type: ignore[arg-type]
    fast = evaluator.evaluate(qs)
    # One model per batch element.
    A, B, C = (
        _stack([m[1] for m in models]),
        _stack([m[2] for m in models]),
        _stack([m[3] for m in models]),
    )
    own = efe_categorical(qs, A, B, C, policies, _stack(pA), _stack(pB), **kwargs)  # type: ignore[arg-type]
    own_fast = PolicyEvaluator(
        A, B, C, policies, 8.0, log_E, info_gain=info_gain, batched=True
    ).evaluate(qs)  # type: ignore[arg-type]
    for b, (q_b, A_b, B_b, C_b) in enumerate(models):
        ref_shared = efe_categorical(q_b, A0, B0, C0, policies, pA[0], pB[0], **kwargs)  # type: ignore[arg-type]
        ref_own = efe_categorical(q_b, A_b, B_b, C_b, policies, pA[b], pB[b], **kwargs)  # type: ignore[arg-type]
        for name in ref_own._fields:
            assert torch.allclose(getattr(shared, name)[b], getattr(ref_shared, name), atol=1e-12)
            assert torch.allclose(getattr(own, name)[b], getattr(ref_own, name), atol=1e-12)
        plain = efe_categorical(q_b, A_b, B_b, C_b, policies, info_gain=info_gain)  # type: ignore[arg-type]
        plain0 = efe_categorical(q_b, A0, B0, C0, policies, info_gain=info_gain)  # type: ignore[arg-type]
        assert torch.allclose(own_fast.efe.efe[b], plain.efe, atol=1e-10)
        assert torch.allclose(fast.efe.risk[b], plain0.risk, atol=1e-10)
        assert torch.allclose(
            own_fast.q_pi[b], policy_posterior(plain.efe, 8.0, log_E[b]), atol=1e-10
        )
        assert torch.allclose(fast.q_pi[b], policy_posterior(plain0.efe, 8.0, log_E[0]), atol=1e-10)


@pytest.mark.parametrize(
    ("ns", "nu"),
    [((4, 3, 3), (3, 2, 1)), ((3, 2), (1, 3)), ((3, 2), (2, 3)), ((3, 4, 2), (2, 2, 2))],
)
@pytest.mark.parametrize("info_gain", ["joint", "per_modality"])
def test_batched_evaluator_factored_read_out_agrees_with_the_reference(
    ns: tuple[int, ...], nu: tuple[int, ...], info_gain: str
) -> None:
    # A batch is read out factor by factor (fewest distinct predictions first), whatever the
    # factors' controls; it must give the reference numbers, with time-indexed preferences.
    models = [_model(seed, ns=ns, no=(4, 3), nu=nu) for seed in range(3)]
    for model in models:
        model[3][1] = torch.randn(3, 3, dtype=torch.float64)
    policies = construct_policies(list(nu), policy_len=3)
    qs = [torch.stack([m[0][f] for m in models]) for f in range(len(ns))]
    A, B, C = (_stack([m[k] for m in models]) for k in (1, 2, 3))
    own = PolicyEvaluator(A, B, C, policies, 8.0, info_gain=info_gain, batched=True)  # type: ignore[arg-type]
    _, A0, B0, C0 = models[0]
    shared = PolicyEvaluator(A0, B0, C0, policies, 8.0, info_gain=info_gain)  # type: ignore[arg-type]
    out_own, out_shared = own.evaluate(qs), shared.evaluate(qs)
    for b, (q_b, A_b, B_b, C_b) in enumerate(models):
        ref = efe_categorical(q_b, A_b, B_b, C_b, policies, info_gain=info_gain)  # type: ignore[arg-type]
        ref0 = efe_categorical(q_b, A0, B0, C0, policies, info_gain=info_gain)  # type: ignore[arg-type]
        for name in ("efe", "risk", "ambiguity", "pragmatic_value", "state_info_gain"):
            assert torch.allclose(getattr(out_own.efe, name)[b], getattr(ref, name), atol=1e-10)
            assert torch.allclose(getattr(out_shared.efe, name)[b], getattr(ref0, name), atol=1e-10)


def test_batched_action_selection_equals_one_selection_per_element() -> None:
    policies = construct_policies([2, 3], policy_len=2)
    g = torch.Generator().manual_seed(0)
    q_pi = torch.softmax(torch.randn(6, policies.shape[0], generator=g, dtype=torch.float64), -1)
    for sampling in ("full", "marginal"):
        chosen = select_action(q_pi, policies, sampling=sampling)  # type: ignore[arg-type]
        assert chosen.shape == (6, 2)
        for b in range(6):
            one = select_action(q_pi[b], policies, sampling=sampling)  # type: ignore[arg-type]
            assert chosen[b].tolist() == one.tolist()
        first = select_action(
            q_pi, policies, "stochastic", torch.Generator().manual_seed(3), sampling=sampling
        )  # type: ignore[arg-type]
        again = select_action(
            q_pi, policies, "stochastic", torch.Generator().manual_seed(3), sampling=sampling
        )  # type: ignore[arg-type]
        assert torch.equal(first, again)
    marginals = action_marginals(q_pi, policies, [2, 3])
    assert marginals[1].shape == (6, 3)
    assert torch.allclose(marginals[1].sum(-1), torch.ones(6, dtype=torch.float64))
