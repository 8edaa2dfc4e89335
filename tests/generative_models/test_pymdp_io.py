"""Round trips between ``CategoricalPOMDP`` and pymdp agents (1.x and legacy) and plain arrays."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("pymdp")

from generative_models.categorical import CategoricalPOMDP  # noqa: E402
from generative_models.pymdp_io import from_pymdp, to_pymdp  # noqa: E402


def _model() -> CategoricalPOMDP:
    base = CategoricalPOMDP.random([3, 2], [4, 3], [2, 3], policy_len=2, seed=11, dirichlet=True)
    g = torch.Generator().manual_seed(0)
    # Time-indexed preferences exercise the (n_o, T) <-> (T, n_o) layouts.
    C = [
        torch.randn(4, 2, generator=g, dtype=torch.float64),
        torch.randn(3, generator=g, dtype=torch.float64),
    ]
    E = torch.softmax(torch.randn(36, generator=g, dtype=torch.float64), 0)
    return CategoricalPOMDP(
        A=base.A, B=base.B, C=C, D=base.D, E=E, policy_len=2, pA=base.pA, pB=base.pB
    )


def _same(a: CategoricalPOMDP, b: CategoricalPOMDP, atol: float) -> None:
    for name in ("A", "B", "C", "D", "pA", "pB"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            assert x.shape == y.shape, name
            assert torch.allclose(x, y, atol=atol), name
    assert torch.allclose(a.E, b.E, atol=atol)
    assert torch.equal(a.policies, b.policies)
    assert a.policy_len == b.policy_len


@pytest.mark.parametrize("api", ["1.x", "legacy"])
def test_round_trip_through_a_pymdp_agent(api: str) -> None:
    pomdp = _model()
    agent = to_pymdp(pomdp, api)
    back = from_pymdp(agent)
    # pymdp 1.x holds float32 arrays.
    _same(pomdp, back, atol=1e-6 if api == "1.x" else 1e-12)
    if api == "1.x":
        assert np.asarray(agent.C[0]).shape == (1, 2, 4)


def test_from_mapping_broadcasts_sparse_likelihoods() -> None:
    g = np.random.default_rng(0)
    A0 = g.random((4, 2))
    A0 /= A0.sum(0)
    B = [np.stack([np.eye(3)] * 2, -1), np.stack([np.eye(2)] * 2, -1)]
    pomdp = from_pymdp({"A": [A0], "B": B, "A_dependencies": [[1]]})
    assert pomdp.A[0].shape == (4, 3, 2)
    for s0 in range(3):
        assert torch.allclose(pomdp.A[0][:, s0, :], torch.as_tensor(A0))
    with pytest.raises(ValueError, match=r"A\[0\] has shape \(4, 2\); expected \(4, 3\)"):
        from_pymdp({"A": [A0], "B": B, "A_dependencies": [[0]]})
    with pytest.raises(ValueError, match=r"B_dependencies=\[\[0, 1\], \[1\]\]"):
        from_pymdp({"A": [A0], "B": B, "A_dependencies": [[1]], "B_dependencies": [[0, 1], [1]]})


def test_unknown_api_is_rejected() -> None:
    with pytest.raises(ValueError, match="api='2.0'"):
        to_pymdp(_model(), "2.0")  # type: ignore[arg-type]


@pytest.mark.parametrize("missing,api", [("jax", "1.x"), ("pymdp", "legacy")])
def test_missing_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, missing: str, api: str
) -> None:
    # A module set to None in sys.modules cannot be imported, as on a machine without it.
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ImportError, match=r"pip install 'aif-offload\[pymdp\]'"):
        to_pymdp(_model(), api)  # type: ignore[arg-type]
