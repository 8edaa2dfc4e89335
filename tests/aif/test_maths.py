"""Tests of the named numerical safety and the factor contractions in ``aif.maths``."""

from __future__ import annotations

import math

import pytest
import torch

from aif.maths import (
    EPS,
    contract_factors,
    contract_factors_batched,
    dirichlet_expected_log,
    entropy,
    kl_categorical,
    log_softmax,
    normalize,
    outer_product,
    softmax,
    stable_log,
    xlogx,
)


def _rand_simplex(g: torch.Generator, *shape: int) -> torch.Tensor:
    return normalize(torch.rand(*shape, generator=g, dtype=torch.float64), dim=-1)


def test_stable_log_is_finite_at_zero_and_exact_elsewhere() -> None:
    x = torch.tensor([0.0, 1e-300, 0.5, 2.0], dtype=torch.float64)
    out = stable_log(x)
    assert torch.isfinite(out).all()
    assert out[0] == pytest.approx(math.log(EPS))
    assert out[2] == pytest.approx(math.log(0.5))
    assert out[3] == pytest.approx(math.log(2.0))


def test_entropy_matches_torch_distributions_and_handles_zeros() -> None:
    g = torch.Generator().manual_seed(0)
    p = _rand_simplex(g, 7, 5)
    expected = torch.distributions.Categorical(probs=p).entropy()
    assert torch.allclose(entropy(p), expected, atol=1e-12)
    assert entropy(torch.tensor([0.0, 1.0])) == pytest.approx(0.0, abs=1e-12)
    assert entropy(torch.full((4,), 0.25, dtype=torch.float64)) == pytest.approx(math.log(4))
    assert torch.equal(xlogx(torch.zeros(3)), torch.zeros(3))


def test_kl_categorical_matches_torch_and_is_zero_on_equal() -> None:
    g = torch.Generator().manual_seed(1)
    q, p = _rand_simplex(g, 6, 4), _rand_simplex(g, 6, 4)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Categorical(probs=q), torch.distributions.Categorical(probs=p)
    )
    assert torch.allclose(kl_categorical(q, p), expected, atol=1e-12)
    assert torch.allclose(kl_categorical(q, q), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert (kl_categorical(q, p) > 0).all()


def test_kl_categorical_names_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"q has 3 outcomes.*\(3,\).*p has 4"):
        kl_categorical(torch.ones(3) / 3, torch.ones(4) / 4)


def test_softmax_and_log_softmax_agree_and_survive_large_logits() -> None:
    x = torch.tensor([1000.0, 999.0, -1000.0], dtype=torch.float64)
    s = softmax(x)
    assert torch.isfinite(s).all() and s.sum() == pytest.approx(1.0)
    assert torch.allclose(log_softmax(x).exp(), s)
    assert s[0] / s[1] == pytest.approx(math.e)


def test_normalize_columns_and_empty_columns() -> None:
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    out = normalize(x, dim=0)
    assert torch.allclose(out[:, 0], torch.tensor([0.25, 0.75], dtype=torch.float64))
    assert torch.allclose(out[:, 1], torch.tensor([0.5, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(2,\).*negative"):
        normalize(torch.tensor([1.0, -1.0]))


def test_dirichlet_expected_log_matches_monte_carlo() -> None:
    alpha = torch.tensor([[0.7, 3.0], [2.0, 1.0], [5.0, 0.5]], dtype=torch.float64)
    exact = dirichlet_expected_log(alpha, dim=0)
    torch.manual_seed(2)
    samples = torch.distributions.Dirichlet(alpha.T).sample((100_000,))  # (S, 2, 3)
    mc = samples.log().mean(0).T
    assert torch.allclose(exact, mc, atol=2e-2)


def test_outer_product_and_contractions_match_explicit_loops() -> None:
    g = torch.Generator().manual_seed(3)
    T = torch.rand(4, 3, 2, 5, generator=g, dtype=torch.float64)
    vs = [_rand_simplex(g, n) for n in (3, 2, 5)]
    joint = outer_product(vs)
    assert joint.shape == (3, 2, 5)
    assert joint.sum() == pytest.approx(1.0)
    expected = torch.zeros(4, dtype=torch.float64)
    for a in range(3):
        for b in range(2):
            for c in range(5):
                expected += T[:, a, b, c] * vs[0][a] * vs[1][b] * vs[2][c]
    assert torch.allclose(contract_factors(T, vs), expected)
    kept = contract_factors(T, vs, skip=1)
    assert kept.shape == (4, 2)
    assert torch.allclose(kept @ vs[1], expected)
    batch = [torch.stack([v, v.flip(0)]) for v in vs]
    out = contract_factors_batched(T, batch)
    assert out.shape == (2, 4)
    assert torch.allclose(out[0], expected)
    assert torch.allclose(out[1], contract_factors(T, [v.flip(0) for v in vs]))


def test_contractions_name_mismatched_shapes() -> None:
    T = torch.zeros(4, 3, 2)
    with pytest.raises(ValueError, match=r"vectors\[1\] has shape \(3,\); expected \(2,\)"):
        contract_factors(T, [torch.ones(3), torch.ones(3)])
    with pytest.raises(ValueError, match=r"vectors\[0\] has shape \(2, 2\); expected \(2, 3\)"):
        contract_factors_batched(T, [torch.ones(2, 2), torch.ones(2, 2)])
