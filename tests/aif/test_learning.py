"""Tests of the Dirichlet updates of pA, pB and pD: closed forms, batches, pymdp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aif.learning import dirichlet_mean, update_pA, update_pB, update_pD
from generative_models.categorical import CategoricalPOMDP


def _beliefs(seed: int, sizes: list[int], batch: int | None = None) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (batch,) if batch is not None else ()
    return [
        torch.softmax(torch.randn(*shape, n, generator=g, dtype=torch.float64), -1) for n in sizes
    ]


def test_pA_adds_the_observation_times_the_beliefs() -> None:
    pomdp = CategoricalPOMDP.random([3, 2], [4, 2], [2, 2], seed=0, dirichlet=True)
    assert pomdp.pA is not None
    qs = _beliefs(1, [3, 2])
    new = update_pA(pomdp.pA, [2, 1], qs, lr=0.5)
    outer = qs[0][:, None] * qs[1][None, :]
    assert torch.allclose(new[0][2] - pomdp.pA[0][2], 0.5 * outer)
    assert torch.equal(new[0][[0, 1, 3]], pomdp.pA[0][[0, 1, 3]])
    assert torch.allclose(new[1][1] - pomdp.pA[1][1], 0.5 * outer)
    # A probability-vector observation spreads the count; a joint replaces the outer product.
    joint = torch.rand(3, 2, dtype=torch.float64)
    joint = joint / joint.sum()
    soft = update_pA(
        pomdp.pA, [torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=torch.float64), 0], qs, joint=joint
    )
    assert torch.allclose(soft[0][1] - pomdp.pA[0][1], 0.5 * joint)
    with pytest.raises(ValueError, match="is a float"):
        update_pA(pomdp.pA, [1.5, 0], qs)


def test_pB_adds_next_times_previous_at_the_action_taken() -> None:
    pomdp = CategoricalPOMDP.random([3, 2], [2], [2, 3], seed=1, dirichlet=True)
    assert pomdp.pB is not None
    nxt, prev = _beliefs(2, [3, 2]), _beliefs(3, [3, 2])
    new = update_pB(pomdp.pB, nxt, prev, [1, 2], lr=2.0)
    assert torch.allclose(
        new[0][:, :, 1] - pomdp.pB[0][:, :, 1], 2.0 * torch.outer(nxt[0], prev[0])
    )
    assert torch.equal(new[0][:, :, 0], pomdp.pB[0][:, :, 0])
    assert torch.allclose(
        new[1][:, :, 2] - pomdp.pB[1][:, :, 2], 2.0 * torch.outer(nxt[1], prev[1])
    )
    with pytest.raises(ValueError, match=r"action\[1\] = 3; expected a control in 0..2"):
        update_pB(pomdp.pB, nxt, prev, [1, 3])


def test_pD_counts_only_states_the_prior_allows() -> None:
    pD = [torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)]
    q = [torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)]
    assert torch.allclose(
        update_pD(pD, q, lr=2.0)[0], torch.tensor([1.4, 0.0, 3.0], dtype=torch.float64)
    )
    mean = dirichlet_mean(torch.tensor([[0.0, 2.0], [0.0, 6.0]], dtype=torch.float64), dim=0)
    assert torch.allclose(mean, torch.tensor([[0.5, 0.25], [0.5, 0.75]], dtype=torch.float64))


def test_batched_updates_equal_one_update_per_element() -> None:
    pomdp = CategoricalPOMDP.random([3, 2], [4, 2], [2, 3], seed=4, dirichlet=True)
    assert pomdp.pA is not None and pomdp.pB is not None
    qs, prev = _beliefs(5, [3, 2], batch=3), _beliefs(6, [3, 2], batch=3)
    obs = torch.tensor([[0, 1], [3, 0], [2, 1]])
    action = torch.tensor([[1, 0], [0, 2], [1, 1]])
    pA = update_pA(pomdp.pA, obs, qs)
    pB = update_pB(pomdp.pB, qs, prev, action)
    for b in range(3):
        one_A = update_pA(pomdp.pA, obs[b].tolist(), [q[b] for q in qs])
        one_B = update_pB(pomdp.pB, [q[b] for q in qs], [q[b] for q in prev], action[b])
        for m in range(2):
            assert torch.allclose(pA[m][b], one_A[m])
        for f in range(2):
            assert torch.allclose(pB[f][b], one_B[f])


def test_updates_match_pymdp() -> None:
    pytest.importorskip("pymdp")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from pymdp import learning
    from pymdp.legacy import learning as legacy_learning
    from pymdp.legacy import utils as legacy_utils

    pomdp = CategoricalPOMDP.random([3, 2], [4, 2], [2, 3], seed=7, dirichlet=True)
    assert pomdp.pA is not None and pomdp.pB is not None
    qs, prev = _beliefs(8, [3, 2]), _beliefs(9, [3, 2])
    j = [jnp.asarray(x.numpy()) for x in pomdp.pA]
    ref_A, _ = learning.update_obs_likelihood_dirichlet(
        j,
        [jnp.asarray(a.numpy()) for a in pomdp.A],
        [jnp.array([3]), jnp.array([1])],
        [jnp.asarray(q.numpy())[None] for q in qs],
        A_dependencies=[[0, 1], [0, 1]],
        categorical_obs=False,
        num_obs=[4, 2],
        lr=0.7,
    )
    mine_A = update_pA(pomdp.pA, [3, 1], qs, lr=0.7)
    for m in range(2):
        assert np.allclose(mine_A[m].numpy(), np.asarray(ref_A[m]), atol=1e-12)
    joints = [
        [jnp.asarray(qs[f].numpy())[None], jnp.asarray(prev[f].numpy())[None]] for f in range(2)
    ]
    ref_B, _ = learning.update_state_transition_dirichlet(
        [jnp.asarray(x.numpy()) for x in pomdp.pB],
        [jnp.asarray(b.numpy()) for b in pomdp.B],
        joints,
        jnp.array([[1, 2]]),
        num_controls=[2, 3],
        lr=1.3,
    )
    mine_B = update_pB(pomdp.pB, qs, prev, [1, 2], lr=1.3)
    for f in range(2):
        assert np.allclose(mine_B[f].numpy(), np.asarray(ref_B[f]), atol=1e-12)
    pD = [torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64), torch.ones(2, dtype=torch.float64)]
    ref_D = legacy_learning.update_state_prior_dirichlet(
        legacy_utils.obj_array_from_list([p.numpy() for p in pD]),
        legacy_utils.obj_array_from_list([q.numpy() for q in qs]),
        lr=0.4,
    )
    for f, mine in enumerate(update_pD(pD, qs, lr=0.4)):
        assert np.allclose(mine.numpy(), ref_D[f], atol=1e-12)
