"""Tests of inference over a window: the exact smoother and marginal message passing."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from aif.exact import filter_states
from aif.sequence import infer_states_mmp, joint_transition, smooth_states
from generative_models.categorical import CategoricalPOMDP

OBS = [[0, 1], [2, 0], [1, 1], [0, 0]]
ACTIONS = [[1, 0], [0, 1], [1, 1]]


def _pomdp() -> CategoricalPOMDP:
    return CategoricalPOMDP.random([3, 2], [3, 2], [2, 2], seed=3)


def _brute_force(pomdp: CategoricalPOMDP) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """Posterior of every step and of factor 0's transitions, summing over all paths."""
    assert pomdp.D is not None
    T = len(OBS)
    states = list(itertools.product(range(3), range(2)))
    post = [torch.zeros(3, 2, dtype=torch.float64) for _ in range(T)]
    pair = [torch.zeros(3, 3, dtype=torch.float64) for _ in range(T - 1)]
    total = 0.0
    for path in itertools.product(states, repeat=T):
        w = float(pomdp.D[0][path[0][0]] * pomdp.D[1][path[0][1]])
        for t, s in enumerate(path):
            if t > 0:
                for f in range(2):
                    w *= float(pomdp.B[f][s[f], path[t - 1][f], ACTIONS[t - 1][f]])
            for m in range(2):
                w *= float(pomdp.A[m][(OBS[t][m], *s)])
        total += w
        for t, s in enumerate(path):
            post[t][s] += w
        for t in range(T - 1):
            pair[t][path[t + 1][0], path[t][0]] += w
    return [p / total for p in post], [p / total for p in pair], math.log(total)


def test_smoother_is_the_exact_posterior_of_every_step() -> None:
    pomdp = _pomdp()
    assert pomdp.D is not None
    post, pair, log_evidence = _brute_force(pomdp)
    result = smooth_states(pomdp.A, pomdp.B, pomdp.D, OBS, ACTIONS)
    for t in range(len(OBS)):
        assert torch.allclose(result.joint[t], post[t], atol=1e-12)
        assert torch.allclose(result.qs[t][1], post[t].sum(0), atol=1e-12)
    for t in range(len(OBS) - 1):
        assert torch.allclose(result.pairwise[t][0], pair[t], atol=1e-12)
    assert float(result.log_evidence) == pytest.approx(log_evidence, abs=1e-12)
    # The forward pass is exact filtering; the last step's smoothed and filtered beliefs agree.
    filtered = filter_states(pomdp.A, pomdp.B, pomdp.D, OBS, ACTIONS)
    assert filtered.joint is not None
    for t in range(len(OBS)):
        assert torch.allclose(result.filtered[t], filtered.joint[t], atol=1e-12)
    assert torch.allclose(result.joint[-1], result.filtered[-1], atol=1e-12)


def test_batched_smoother_equals_one_window_per_element() -> None:
    pomdp = _pomdp()
    assert pomdp.D is not None
    other = [[2, 0], [0, 0], [1, 1], [2, 1]]
    obs = [torch.tensor([OBS[t], other[t]]) for t in range(4)]
    actions = torch.tensor(ACTIONS).unsqueeze(1).expand(-1, 2, -1)
    batch = smooth_states(pomdp.A, pomdp.B, [d.expand(2, -1) for d in pomdp.D], obs, actions)
    for b, seq in enumerate((OBS, other)):
        one = smooth_states(pomdp.A, pomdp.B, pomdp.D, seq, ACTIONS)
        assert torch.allclose(batch.log_evidence[b], one.log_evidence)
        for t in range(4):
            assert torch.allclose(batch.joint[t][b], one.joint[t])


def test_joint_transition_is_the_product_of_factor_transitions() -> None:
    pomdp = _pomdp()
    M = joint_transition(pomdp.B, torch.tensor([[1, 0]]))[0]
    for (s0, s1), (r0, r1) in itertools.product(itertools.product(range(3), range(2)), repeat=2):
        expected = pomdp.B[0][r0, s0, 1] * pomdp.B[1][r1, s1, 0]
        assert float(M[r0 * 2 + r1, s0 * 2 + s1]) == pytest.approx(float(expected))


def test_mmp_matches_pymdp_run_mmp() -> None:
    pytest.importorskip("pymdp")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from pymdp.algos import run_mmp

    pomdp = _pomdp()
    assert pomdp.D is not None
    T = len(OBS)
    B_seq = [
        jnp.stack([jnp.asarray(pomdp.B[f][:, :, ACTIONS[t][f]].numpy()) for t in range(T - 1)])
        for f in range(2)
    ]
    obs = [
        jnp.stack(
            [jax.nn.one_hot(OBS[t][m], pomdp.num_obs[m], dtype=jnp.float64) for t in range(T)]
        )
        for m in range(2)
    ]
    ref = run_mmp(
        [jnp.asarray(a.numpy()) for a in pomdp.A],
        B_seq,
        obs,
        [jnp.asarray(d.numpy()) for d in pomdp.D],
        [[0, 1], [0, 1]],
        [[0], [1]],
        num_iter=16,
    )
    mine = infer_states_mmp(pomdp.A, pomdp.B, pomdp.D, OBS, ACTIONS, num_iter=16)
    for t in range(T):
        for f in range(2):
            assert np.allclose(mine[t][f].numpy(), np.asarray(ref[f][t]), atol=1e-10)


def test_mmp_batch_and_errors() -> None:
    pomdp = _pomdp()
    assert pomdp.D is not None
    obs = [torch.tensor([o, o]) for o in OBS]
    actions = torch.tensor(ACTIONS).unsqueeze(1).expand(-1, 2, -1)
    batch = infer_states_mmp(pomdp.A, pomdp.B, [d.expand(2, -1) for d in pomdp.D], obs, actions)
    one = infer_states_mmp(pomdp.A, pomdp.B, pomdp.D, OBS, ACTIONS)
    assert torch.allclose(batch[2][0][1], one[2][0])
    with pytest.raises(ValueError, match=r"actions have shape \(1, 2\); expected \(3, 2\)"):
        infer_states_mmp(pomdp.A, pomdp.B, pomdp.D, OBS, [[0, 0]])
    with pytest.raises(ValueError, match="num_iter=0"):
        infer_states_mmp(pomdp.A, pomdp.B, pomdp.D, OBS, ACTIONS, num_iter=0)
