"""Tests of closed-form categorical inference and free energy against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import aif.exact
from aif.exact import (
    ExactStateInference,
    filter_states,
    infer_states,
    infer_states_exact,
    infer_states_fpi,
    log_evidence_sequence,
    log_likelihood,
    predict_states,
    vfe_categorical,
)
from aif.maths import normalize


def _model(seed: int, ns=(3, 2), no=(4, 3), nu=(2, 3)):
    g = torch.Generator().manual_seed(seed)
    A = [normalize(torch.rand(o, *ns, generator=g, dtype=torch.float64), 0) for o in no]
    B = [
        normalize(torch.rand(n, n, u, generator=g, dtype=torch.float64), 0)
        for n, u in zip(ns, nu, strict=True)
    ]
    D = [normalize(torch.rand(n, generator=g, dtype=torch.float64), 0) for n in ns]
    return A, B, D


def _brute_joint(A, obs, prior):
    ns = [p.shape[0] for p in prior]
    post = torch.zeros(*ns, dtype=torch.float64)
    for s in itertools.product(*[range(n) for n in ns]):
        w = math.prod(float(p[i]) for p, i in zip(prior, s, strict=True))
        for A_m, o in zip(A, obs, strict=True):
            w *= float(A_m[(o, *s)])
        post[s] = w
    return post


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_posterior_and_evidence_match_enumeration(seed: int) -> None:
    A, _, D = _model(seed)
    obs = [2, 1]
    unnorm = _brute_joint(A, obs, D)
    res = infer_states_exact(A, obs, D)
    assert res.joint is not None and res.log_evidence is not None
    assert torch.allclose(res.joint, unnorm / unnorm.sum(), atol=1e-12)
    assert float(res.log_evidence) == pytest.approx(math.log(float(unnorm.sum())), abs=1e-12)
    assert torch.allclose(res.qs[0], (unnorm / unnorm.sum()).sum(1), atol=1e-12)


def test_vfe_of_exact_posterior_is_negative_log_evidence_and_bounds_others() -> None:
    A, _, D = _model(2)
    obs = [0, 2]
    res = infer_states_exact(A, obs, D)
    assert res.joint is not None and res.log_evidence is not None
    parts = vfe_categorical(res.joint, D, A, obs)
    assert float(parts.vfe) == pytest.approx(-float(res.log_evidence), abs=1e-10)
    assert float(parts.vfe) == pytest.approx(float(parts.complexity - parts.accuracy), abs=1e-12)
    mean_field = vfe_categorical(res.qs, D, A, obs)
    assert float(mean_field.vfe) > float(parts.vfe)
    fpi = vfe_categorical(infer_states_fpi(A, obs, D, num_iter=64), D, A, obs)
    assert float(parts.vfe) <= float(fpi.vfe) <= float(mean_field.vfe) + 1e-12


def test_fpi_single_factor_is_exact_and_multi_factor_reaches_a_fixed_point() -> None:
    A, _, D = _model(3, ns=(4,), no=(3, 2), nu=(2,))
    exact = infer_states_exact(A, [1, 0], D).qs[0]
    assert torch.allclose(infer_states_fpi(A, [1, 0], D)[0], exact, atol=1e-12)
    A2, _, D2 = _model(4)
    qs = infer_states_fpi(A2, [3, 1], D2, num_iter=200)
    again = infer_states_fpi(A2, [3, 1], D2, num_iter=201)
    for a, b in zip(qs, again, strict=True):
        assert torch.allclose(a, b, atol=1e-9)
    # A fixed point of the mean-field update is a stationary point: no single-factor change helps.
    base = float(vfe_categorical(qs, D2, A2, [3, 1]).vfe)
    for f in range(2):
        for k in range(qs[f].shape[0]):
            nudged = [q.clone() for q in qs]
            nudged[f] = normalize(
                nudged[f] + 0.01 * torch.nn.functional.one_hot(torch.tensor(k), qs[f].shape[0]), 0
            )
            assert float(vfe_categorical(nudged, D2, A2, [3, 1]).vfe) >= base - 1e-9


def test_tolerance_stops_early_and_method_switch() -> None:
    A, _, D = _model(5)
    full = infer_states_fpi(A, [0, 0], D, num_iter=50)
    early = infer_states_fpi(A, [0, 0], D, num_iter=50, tol=1e-1)
    assert any(not torch.allclose(a, b, atol=1e-10) for a, b in zip(full, early, strict=True))
    assert infer_states(A, [0, 0], D, method="fpi").joint is None
    with pytest.raises(ValueError, match="method='bogus'"):
        infer_states(A, [0, 0], D, method="bogus")  # type: ignore[arg-type]


def test_probability_vector_observation_equals_index() -> None:
    A, _, D = _model(6)
    onehot = [torch.nn.functional.one_hot(torch.tensor(2), 4).double(), 1]
    assert torch.allclose(log_likelihood(A, onehot), log_likelihood(A, [2, 1]))
    with pytest.raises(ValueError, match=r"obs\[0\] = 9; expected an outcome index in 0..3"):
        log_likelihood(A, [9, 1])
    with pytest.raises(ValueError, match=r"prior\[1\] has shape \(3,\); expected \(2,\)"):
        infer_states_exact(A, [0, 0], [D[0], torch.ones(3) / 3])


def test_predict_states_applies_the_chosen_control() -> None:
    _, B, D = _model(7)
    out = predict_states(D, B, [1, 2])
    assert torch.allclose(out[0], B[0][:, :, 1] @ D[0])
    assert torch.allclose(out[1], B[1][:, :, 2] @ D[1])
    with pytest.raises(ValueError, match=r"action has shape \(1,\)"):
        predict_states(D, B, [1])


def test_sequence_log_evidence_matches_enumeration_over_paths() -> None:
    A, B, D = _model(8, ns=(2, 2), no=(3, 2), nu=(2, 2))
    obs = [[0, 1], [2, 0], [1, 1]]
    actions = [[1, 0], [0, 1]]
    total = 0.0
    states = list(itertools.product(range(2), range(2)))
    for path in itertools.product(states, repeat=3):
        w = float(D[0][path[0][0]] * D[1][path[0][1]])
        for t, s in enumerate(path):
            if t > 0:
                prev = path[t - 1]
                for f in range(2):
                    w *= float(B[f][s[f], prev[f], actions[t - 1][f]])
            for m in range(2):
                w *= float(A[m][(obs[t][m], *s)])
        total += w
    assert float(log_evidence_sequence(A, B, D, obs, actions)) == pytest.approx(
        math.log(total), abs=1e-10
    )
    res = filter_states(A, B, D, obs, actions, method="exact")
    assert res.log_evidence is not None
    # Exact filtering: each step's VFE is minus that step's conditional log evidence.
    assert torch.allclose(res.vfe, -res.log_evidence, atol=1e-10)


def test_fpi_filter_equals_exact_filter_with_one_factor() -> None:
    A, B, D = _model(9, ns=(4,), no=(3, 2), nu=(3,))
    obs = [[0, 1], [2, 0], [1, 1], [0, 0]]
    actions = [[2], [0], [1]]
    ex = filter_states(A, B, D, obs, actions, method="exact")
    mf = filter_states(A, B, D, obs, actions, method="fpi")
    for t in range(4):
        assert torch.allclose(ex.qs[t][0], mf.qs[t][0], atol=1e-12)
    assert torch.allclose(ex.vfe, mf.vfe, atol=1e-10)
    assert torch.allclose(mf.priors[1][0], B[0][:, :, 2] @ mf.qs[0][0])
    with pytest.raises(ValueError, match=r"actions have shape \(1, 1\); expected \(3, 1\)"):
        filter_states(A, B, D, obs, [[0]])


PARITY = 1e-10


def _assert_same_posterior(fast, slow) -> None:
    assert fast.joint is not None and slow.joint is not None
    assert torch.allclose(fast.joint, slow.joint, atol=PARITY, rtol=0)
    assert float(fast.log_evidence) == pytest.approx(float(slow.log_evidence), abs=PARITY)
    for a, b in zip(fast.qs, slow.qs, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=PARITY, rtol=0)


@pytest.mark.parametrize(
    "ns,no", [((3, 2), (4, 3)), ((4,), (3, 2)), ((2, 3, 2), (5,)), ((4, 3, 3), (5, 4))]
)
def test_precompiled_update_equals_infer_states_exact_for_every_observation(ns, no) -> None:
    A, _, D = _model(7, ns=ns, no=no, nu=[1] * len(ns))
    engine = ExactStateInference(A)
    for obs in itertools.product(*[range(n) for n in no]):
        _assert_same_posterior(engine.update(list(obs), D), infer_states_exact(A, obs, D))


def test_precompiled_update_floors_zeros_like_the_slow_path(monkeypatch) -> None:
    A, _, D = _model(8)
    A[0][:, 0, 1] = torch.tensor([0.0, 0.0, 0.5, 0.5], dtype=torch.float64)
    prior = [torch.tensor([0.0, 0.4, 0.6], dtype=torch.float64), D[1]]
    for obs in ([0, 1], [2, 2]):
        _assert_same_posterior(
            ExactStateInference(A).update(obs, prior), infer_states_exact(A, obs, prior)
        )
    # Models too large for the joint-outcome table gather one row per modality instead.
    monkeypatch.setattr(aif.exact, "_MAX_TABLE_ENTRIES", 0)
    engine = ExactStateInference(A)
    assert engine._table is None
    _assert_same_posterior(engine.update([2, 2], prior), infer_states_exact(A, [2, 2], prior))


def test_precompiled_update_validates_once_and_rejects_out_of_range_outcomes() -> None:
    A, _, D = _model(9)
    with pytest.raises(ValueError, match="outside"):
        ExactStateInference([A[0] * 2.0, A[1]])
    with pytest.raises(ValueError, match="dtype"):
        ExactStateInference([A[0], A[1].float()])
    with pytest.raises(IndexError, match="below 4"):
        ExactStateInference(A).update([4, 0], D)


@pytest.mark.parametrize(
    "bad,match",
    [
        (1.9, r"obs\[0\] = 1.9 is a float"),
        (torch.tensor(1.0), r"obs\[0\] = 1.0 is a torch.float32 scalar"),
        (torch.tensor([1.0]), r"obs\[0\] = 1.0 is a torch.float32 scalar of shape \(1,\)"),
        (True, r"obs\[0\] = True is a bool"),
        (torch.tensor([0.2, 0.2, 0.2, 0.2]), r"does not sum to one"),
    ],
)
def test_observations_are_never_rounded_to_an_index(bad, match) -> None:
    A, _, D = _model(10)
    with pytest.raises(ValueError, match=match):
        infer_states_exact(A, [bad, 1], D)
    with pytest.raises(ValueError, match=match):
        infer_states_fpi(A, [bad, 1], D)


def test_negative_outcome_indices_raise_as_documented() -> None:
    A, _, D = _model(11)
    doc = ExactStateInference.update.__doc__ or ""
    assert "negative index" in doc and "IndexError" in doc
    assert "counts from the end" not in doc
    engine = ExactStateInference(A)
    for obs in ([-1, 0], [0, 3], [True, 0], [1.0, 0]):
        with pytest.raises(IndexError, match=r"expected integer outcome indices below"):
            engine.update(obs, D)  # type: ignore[arg-type]


def _batch(seed: int, ns=(3, 2), no=(4, 3), batch: int = 5):
    g = torch.Generator().manual_seed(seed)
    obs = torch.stack([torch.randint(n, (batch,), generator=g) for n in no], 1)
    prior = [torch.softmax(torch.randn(batch, n, generator=g, dtype=torch.float64), -1) for n in ns]
    return obs, prior


@pytest.mark.parametrize("ns,no", [((3, 2), (4, 3)), ((4,), (3, 2)), ((4, 3, 3), (5, 4))])
def test_batched_updates_equal_one_update_per_element(ns, no) -> None:
    A, _, _ = _model(12, ns=ns, no=no, nu=[1] * len(ns))
    obs, prior = _batch(13, ns, no)
    engine = ExactStateInference(A)
    fast = engine.update(obs, prior)
    checked = infer_states_exact(A, obs, prior)
    fpi = infer_states_fpi(A, obs, prior)
    assert fast.joint is not None and fast.joint.shape == (5, *ns)
    for b in range(5):
        one = infer_states_exact(A, obs[b].tolist(), [p[b] for p in prior])
        one_fpi = infer_states_fpi(A, obs[b].tolist(), [p[b] for p in prior])
        assert one.log_evidence is not None and fast.log_evidence is not None
        assert checked.log_evidence is not None
        assert float(fast.log_evidence[b]) == pytest.approx(float(one.log_evidence), abs=PARITY)
        assert float(checked.log_evidence[b]) == pytest.approx(float(one.log_evidence), abs=PARITY)
        for f in range(len(ns)):
            assert torch.allclose(fast.qs[f][b], one.qs[f], atol=PARITY, rtol=0)
            assert torch.allclose(checked.qs[f][b], one.qs[f], atol=PARITY, rtol=0)
            assert torch.allclose(fpi[f][b], one_fpi[f], atol=PARITY, rtol=0)


def test_batched_models_and_probability_vector_observations() -> None:
    models = [_model(s) for s in range(4)]
    A = [torch.stack([m[0][k] for m in models]) for k in range(2)]
    D = [torch.stack([m[2][f] for m in models]) for f in range(2)]
    obs, _ = _batch(14, batch=4)
    fast = ExactStateInference(A, batched=True).update(obs, D)
    soft = [torch.nn.functional.one_hot(obs[:, 0], 4).double(), obs[:, 1]]
    checked = infer_states_exact(A, soft, D)
    for b, (A_b, _, D_b) in enumerate(models):
        one = infer_states_exact(A_b, obs[b].tolist(), D_b)
        for f in range(2):
            assert torch.allclose(fast.qs[f][b], one.qs[f], atol=PARITY, rtol=0)
            assert torch.allclose(checked.qs[f][b], one.qs[f], atol=PARITY, rtol=0)
    with pytest.raises(ValueError, match=r"expected an integer tensor of shape \(4, 2\)"):
        ExactStateInference(A, batched=True).update([0, 1], D)
    with pytest.raises(ValueError, match=r"obs\[1\] holds outcome 7; expected indices in 0..2"):
        infer_states_exact(A, torch.tensor([[0, 7]] * 4), D)


def test_batched_prediction_uses_each_elements_action() -> None:
    _, B, D = _model(15)
    qs = [d.expand(3, -1) for d in D]
    action = torch.tensor([[0, 1], [1, 2], [1, 0]])
    out = predict_states(qs, B, action)
    for b in range(3):
        one = predict_states(D, B, action[b])
        for f in range(2):
            assert torch.allclose(out[f][b], one[f])
