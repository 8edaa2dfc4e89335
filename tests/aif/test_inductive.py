"""Inductive inference: the reachability matrices, the inductive cost, its place in the EFE and
in the agent's ``q(pi)``, by hand and against pymdp 1.0.4's ``generate_I_matrix``,
``calc_inductive_value_t``, ``compute_neg_efe_policy_inductive`` and
``update_posterior_policies_inductive``.

pymdp's inductive value is our inductive cost with the sign flipped, and its ``neg_efe`` is
our ``efe + inductive_cost`` with the sign flipped. Its utility scores outcomes with the raw
``C`` where this engine uses ``log_softmax(C)``: the random models here give ``C`` already
normalised, so the two agree term by term. pymdp's calls run in 64-bit JAX, inside
``jax.enable_x64(True)`` (restored afterwards).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import pytest
import torch

from aif.discrete_agent import DiscreteAgent
from aif.planning import construct_policies
from aif.sophisticated import (
    SearchSettings,
    efe_inductive,
    inductive_cost,
    inductive_matrices,
    sophisticated_search,
)
from generative_models.categorical import CategoricalPOMDP

TOL = 1e-6


# --------------------------------------------------------------------------------------------
# Models and pymdp
# --------------------------------------------------------------------------------------------


def _cat(rng: np.random.Generator, shape: tuple[int, ...], sharp: float) -> np.ndarray:
    x = rng.random(shape) ** sharp + 1e-3
    return x / x.sum(0, keepdims=True)


def _random_B(seed: int, ns: list[int], nu: list[int], sharp: float = 6.0) -> list[np.ndarray]:
    """Sharp random transitions: many entries fall under the threshold, so paths are sparse."""
    rng = np.random.default_rng(seed)
    return [_cat(rng, (n, n, u), sharp) for n, u in zip(ns, nu, strict=True)]


def _random_H(seed: int, ns: list[int], empty: int | None = None) -> list[np.ndarray]:
    """One or two goal states per factor; factor ``empty`` has none."""
    rng = np.random.default_rng(seed + 1000)
    H = []
    for f, n in enumerate(ns):
        h = np.zeros(n)
        if f != empty:
            h[rng.choice(n, size=int(rng.integers(1, 3)), replace=False)] = 1.0
        H.append(h)
    return H


def _random_model(
    seed: int, ns: list[int], no: list[int], nu: list[int]
) -> dict[str, list[np.ndarray]]:
    """A random model with normalised log-preferences (raw ``C`` = ``log_softmax(C)``)."""
    rng = np.random.default_rng(seed)
    C = []
    for o in no:
        c = 2.0 * rng.standard_normal(o)
        C.append(c - np.log(np.exp(c).sum()))
    return {
        "A": [_cat(rng, (o, *ns), 3.0) for o in no],
        "B": _random_B(seed + 1, ns, nu),
        "C": C,
        "qs": [_cat(rng, (n,), 3.0) for n in ns],
    }


def _t(xs: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.tensor(x, dtype=torch.float64) for x in xs]


@contextmanager
def _pymdp() -> Iterator[tuple[Any, Any]]:
    """pymdp's control module and ``jax.numpy``, in 64-bit JAX."""
    pytest.importorskip("pymdp")
    import jax
    import jax.numpy as jnp
    from pymdp import control

    with jax.enable_x64(True):
        yield control, jnp


def _j(jnp: Any, xs: list[np.ndarray] | list[torch.Tensor]) -> list[Any]:
    return [jnp.asarray(np.asarray(x), dtype=jnp.float64) for x in xs]


def _deps(num_modalities: int, num_factors: int) -> tuple[list[list[int]], list[list[int]]]:
    return [list(range(num_factors))] * num_modalities, [[f] for f in range(num_factors)]


# --------------------------------------------------------------------------------------------
# By hand: a chain with a trap
# --------------------------------------------------------------------------------------------


def _chain() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """States 0 -> 1 -> 2 (the goal) and 3, an absorbing trap; actions stay, forward, fall.

    "forward" moves 0 to 1 and 1 to 2 and leaves 2 and 3 where they are; "fall" moves every
    state to 3. The goal is reachable from 0 in exactly two steps, from 1 in one, never from 3.
    """
    n = 4
    stay = torch.eye(n, dtype=torch.float64)
    forward = torch.zeros(n, n, dtype=torch.float64)
    for prev, nxt in ((0, 1), (1, 2), (2, 2), (3, 3)):
        forward[nxt, prev] = 1.0
    fall = torch.zeros(n, n, dtype=torch.float64)
    fall[3, :] = 1.0
    B = [torch.stack([stay, forward, fall], dim=-1)]
    H = [torch.tensor([0.0, 0.0, 1.0, 0.0], dtype=torch.float64)]
    return H, B


CHAIN_I = torch.tensor(
    [
        [0.0, 0.0, 1.0, 0.0],  # the goal
        [0.0, 1.0, 1.0, 0.0],  # one step from it
        [1.0, 1.0, 1.0, 0.0],  # two steps: state 0 joins
        [1.0, 1.0, 1.0, 0.0],  # nothing new; the trap never does
    ],
    dtype=torch.float64,
)


def test_chain_reachability_rows_by_hand() -> None:
    H, B = _chain()
    (reach,) = inductive_matrices(H, B, threshold=0.1, depth=4)
    assert torch.equal(reach, CHAIN_I)
    # Depth 1 is H itself; a threshold of 1 keeps no transition, so nothing but H is reachable.
    assert torch.equal(inductive_matrices(H, B, depth=1)[0], H[0][None])
    (none,) = inductive_matrices(H, B, threshold=1.0, depth=3)
    assert torch.equal(none, torch.stack([H[0], torch.zeros(4), torch.zeros(4)]).double())


def _onehot(i: int, n: int = 4) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(i), n).double()


@pytest.mark.parametrize(
    ("anchor", "expected"),
    [
        # From 0 (two steps away) only states one step from the goal are allowed: 1 and 2.
        (0, [1.0, 0.0, 1.0]),
        # From 1 (one step away) only the goal is allowed.
        (1, [1.0, 0.0, 1.0]),
        # At the goal, only the goal is allowed (row 0): staying or "forward" keep it there.
        (2, [0.0, 0.0, 1.0]),
        # From the trap there is no path: no cost at all.
        (3, [0.0, 0.0, 0.0]),
    ],
)
def test_chain_inductive_cost_by_hand(anchor: int, expected: list[float]) -> None:
    """Cost of (stay, forward, fall), in units of -log(epsilon), from each anchor state."""
    H, B = _chain()
    reach = inductive_matrices(H, B, threshold=0.1, depth=4)
    qs = [_onehot(anchor)]
    q_next = [B[0][:, anchor, :].T]  # (3 actions, 4 states)
    eps = 0.05
    cost = inductive_cost(qs, q_next, reach, epsilon=eps)
    ref = -math.log(eps) * torch.tensor(expected, dtype=torch.float64)
    assert torch.allclose(cost, ref, atol=1e-12), (cost, ref)
    # A mixed prediction costs its forbidden mass.
    mixed = [torch.tensor([[0.2, 0.5, 0.1, 0.2]], dtype=torch.float64)]
    if anchor == 0:
        assert torch.allclose(inductive_cost(qs, mixed, reach, eps), ref.new_tensor([0.4 * ref[0]]))


def test_chain_two_step_policies_by_hand() -> None:
    """Anchored at the start (state 0), every step's prediction must be within one step of it."""
    H, B = _chain()
    reach = inductive_matrices(H, B, threshold=0.1, depth=3)
    A = [torch.eye(4, dtype=torch.float64)]
    C = [torch.zeros(4, dtype=torch.float64)]
    policies = construct_policies([3], 2)  # (stay|forward|fall) x (stay|forward|fall)
    out = efe_inductive([_onehot(0)], A, B, C, policies, reach, epsilon=0.5)
    c = math.log(2.0)
    # States visited: stay -> 0, forward -> 1, then 2 only by forward, 3 by fall from anywhere.
    expected = {
        (0, 0): 2 * c, (0, 1): c, (0, 2): 2 * c,  # 0, then 0 / 1 / 3
        (1, 0): 0.0, (1, 1): 0.0, (1, 2): c,  # 1, then 1 / 2 / 3
        (2, 0): 2 * c, (2, 1): 2 * c, (2, 2): 2 * c,  # 3, then 3
    }  # fmt: skip
    got = {
        tuple(int(a) for a in p[:, 0]): float(v)
        for p, v in zip(policies, out.inductive_cost, strict=True)
    }
    for key, value in expected.items():
        assert abs(got[key] - value) < 1e-12, (key, got[key], value)


def test_chain_agent_prefers_the_path_to_the_goal() -> None:
    """Flat preferences and a known state: q(pi) is the softmax of the inductive cost alone."""
    H, B = _chain()
    A = [torch.eye(4, dtype=torch.float64)]
    pomdp = CategoricalPOMDP(A=A, B=B, policy_len=1)
    # costs (c, 0, c) with c = log 2 and gamma = 1: q = (1/2, 1, 1/2) / 2.
    expected = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    for search in ("policies", "sophisticated"):
        agent = DiscreteAgent(
            pomdp, gamma=1.0, use_inductive=True, H=H, inductive_depth=3,
            inductive_epsilon=0.5, inference="exact", policy_search=search,  # type: ignore[arg-type]
        )  # fmt: skip
        agent.infer_states([0])
        out = agent.infer_policies()
        assert out.inductive_cost is not None
        assert torch.allclose(out.q_pi[0], expected, atol=1e-9), (search, out.q_pi)
        # Without the inductive term the three actions tie.
        plain = DiscreteAgent(pomdp, gamma=1.0, inference="exact", policy_search=search)  # type: ignore[arg-type]
        plain.infer_states([0])
        assert torch.allclose(plain.infer_policies().q_pi[0], torch.full((3,), 1 / 3).double())


# --------------------------------------------------------------------------------------------
# Against pymdp 1.0.4
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed", "ns", "nu", "threshold", "depth"),
    [
        (0, [5], [2], 0.1, 4),
        (1, [4, 3], [3, 2], 0.1, 3),
        (2, [6, 2, 3], [2, 1, 3], 0.25, 5),
        (3, [7], [1], 0.05, 6),
        (4, [5, 4], [2, 2], 0.5, 2),
    ],
)
def test_reachability_matches_generate_I_matrix(
    seed: int, ns: list[int], nu: list[int], threshold: float, depth: int
) -> None:
    B = _random_B(seed, ns, nu)
    H = _random_H(seed, ns, empty=1 if len(ns) > 2 else None)
    ours = inductive_matrices(_t(H), _t(B), threshold=threshold, depth=depth)
    with _pymdp() as (control, jnp):
        ref = control.generate_I_matrix(_j(jnp, H), _j(jnp, B), threshold, depth)
    grew = False
    for f, (mine, theirs) in enumerate(zip(ours, ref, strict=True)):
        theirs = np.asarray(theirs)
        assert mine.shape == theirs.shape == (depth, ns[f])
        np.testing.assert_array_equal(mine.numpy(), theirs, err_msg=f"factor {f}")
        grew = grew or bool((mine[-1] > mine[0]).any())
    # The cases are not trivial: the backward induction adds states somewhere.
    assert grew


def test_batched_reachability_matches_generate_I_matrix_per_element() -> None:
    ns, nu, depth = [5, 3], [2, 3], 4
    Bs = [_random_B(s, ns, nu) for s in (10, 11, 12)]
    Hs = [_random_H(s, ns) for s in (10, 11, 12)]
    batched = inductive_matrices(
        [torch.stack([_t(H)[f] for H in Hs]) for f in range(2)],
        [torch.stack([_t(B)[f] for B in Bs]) for f in range(2)],
        threshold=0.1,
        depth=depth,
    )
    with _pymdp() as (control, jnp):
        for b, (H, B) in enumerate(zip(Hs, Bs, strict=True)):
            ref = control.generate_I_matrix(_j(jnp, H), _j(jnp, B), 0.1, depth)
            for f in range(2):
                np.testing.assert_array_equal(batched[f][b].numpy(), np.asarray(ref[f]))


@pytest.mark.parametrize("epsilon", [1e-3, 0.2, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inductive_cost_is_minus_calc_inductive_value_t(seed: int, epsilon: float) -> None:
    ns, nu, depth = [6, 4, 3], [3, 2, 2], 4
    rng = np.random.default_rng(seed + 50)
    B = _random_B(seed, ns, nu)
    H = _random_H(seed, ns, empty=2)
    reach = inductive_matrices(_t(H), _t(B), threshold=0.1, depth=depth)
    n_pred = 8
    qs = [_cat(rng, (n,), 4.0) for n in ns]
    q_next = [_cat(rng, (n, n_pred), 1.0).T for n in ns]  # (n_pred, n)
    ours = inductive_cost(_t(qs), _t(q_next), reach, epsilon=epsilon)
    assert ours.shape == (n_pred,)
    with _pymdp() as (control, jnp):
        I_j = _j(jnp, reach)
        ref = np.array(
            [
                float(control.calc_inductive_value_t(
                    _j(jnp, qs), _j(jnp, [q[k] for q in q_next]), I_j, epsilon=epsilon
                ))
                for k in range(n_pred)
            ]
        )  # fmt: skip
    np.testing.assert_allclose(ours.numpy(), -ref, rtol=0, atol=TOL)
    if epsilon < 1.0:
        assert float(ours.max()) > 0.0  # some prediction leaves the allowed states
    else:
        assert float(ours.abs().max()) == 0.0  # -log(1) = 0


def test_batched_inductive_cost_matches_per_element() -> None:
    ns, depth = [5, 4], 3
    rng = np.random.default_rng(7)
    Is, qss, nexts = [], [], []
    for s in range(3):
        Is.append(
            inductive_matrices(_t(_random_H(s, ns)), _t(_random_B(s, ns, [2, 2])), 0.1, depth)
        )
        qss.append(_t([_cat(rng, (n,), 4.0) for n in ns]))
        nexts.append(_t([_cat(rng, (n, 6), 1.0).T for n in ns]))
    batched = inductive_cost(
        [torch.stack([q[f] for q in qss]) for f in range(2)],
        [torch.stack([x[f] for x in nexts]) for f in range(2)],
        [torch.stack([i[f] for i in Is]) for f in range(2)],
        epsilon=1e-3,
    )
    assert batched.shape == (3, 6)
    with _pymdp() as (control, jnp):
        for b in range(3):
            for k in range(6):
                ref = control.calc_inductive_value_t(
                    _j(jnp, qss[b]), _j(jnp, [x[k] for x in nexts[b]]), _j(jnp, Is[b]), 1e-3
                )
                assert abs(float(batched[b, k]) + float(ref)) < TOL, (b, k)


@pytest.mark.parametrize(
    ("seed", "ns", "no", "nu", "policy_len", "depth", "epsilon"),
    [
        (0, [4, 3], [3, 2], [3, 2], 2, 3, 1e-3),
        (1, [5], [4, 3], [3], 3, 4, 0.05),
        (2, [3, 3, 2], [3, 2], [2, 2, 1], 2, 2, 1e-3),
    ],
)
def test_efe_inductive_matches_compute_neg_efe_policy_inductive(
    seed: int, ns: list[int], no: list[int], nu: list[int], policy_len: int, depth: int,
    epsilon: float,
) -> None:  # fmt: skip
    m = _random_model(seed, ns, no, nu)
    H = _random_H(seed, ns)
    t = {k: _t(v) for k, v in m.items()}
    reach = inductive_matrices(_t(H), t["B"], threshold=0.1, depth=depth)
    policies = construct_policies(nu, policy_len)
    ours = efe_inductive(
        t["qs"], t["A"], t["B"], t["C"], policies, reach, epsilon=epsilon, info_gain="per_modality"
    )
    A_deps, B_deps = _deps(len(no), len(ns))
    with _pymdp() as (control, jnp):
        import jax

        args = (_j(jnp, m["qs"]), _j(jnp, m["A"]), _j(jnp, m["B"]), _j(jnp, m["C"]), None, None)
        I_j = _j(jnp, reach)

        def neg_efe(use_inductive: bool) -> np.ndarray:
            # One policy at a time, vmapped over the policies (as pymdp's own posterior does).
            one = partial(
                control.compute_neg_efe_policy_inductive, *args, A_deps, B_deps, I_j,
                inductive_epsilon=epsilon, use_inductive=use_inductive,
            )  # fmt: skip
            return np.asarray(jax.vmap(one)(jnp.asarray(policies.numpy())))

        with_ind, without = neg_efe(True), neg_efe(False)
    np.testing.assert_allclose(ours.total.numpy(), -with_ind, rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.efe.efe.numpy(), -without, rtol=0, atol=TOL)
    np.testing.assert_allclose(ours.inductive_cost.numpy(), without - with_ind, rtol=0, atol=TOL)
    # The inductive term is present and tells policies apart.
    assert float(ours.inductive_cost.max() - ours.inductive_cost.min()) > 0.01


@pytest.mark.parametrize("inference", ["exact", "fpi"])
def test_agent_q_pi_matches_update_posterior_policies_inductive(inference: str) -> None:
    ns, no, nu, policy_len, depth = [4, 3], [3, 2], [3, 2], 2, 3
    m = _random_model(5, ns, no, nu)
    H = _random_H(5, ns)
    t = {k: _t(v) for k, v in m.items()}
    n_pol = math.prod(nu) ** policy_len
    E = torch.softmax(torch.randn(n_pol, generator=torch.Generator().manual_seed(0)), 0).double()
    pomdp = CategoricalPOMDP(A=t["A"], B=t["B"], C=t["C"], policy_len=policy_len, E=E)
    gamma, epsilon, threshold = 2.0, 1e-2, 0.1
    agent = DiscreteAgent(
        pomdp, batch_size=3, inference=inference, gamma=gamma, info_gain="per_modality",  # type: ignore[arg-type]
        use_inductive=True, H=_t(H), inductive_depth=depth, inductive_threshold=threshold,
        inductive_epsilon=epsilon,
    )  # fmt: skip
    agent.infer_states(torch.tensor([[0, 1], [2, 0], [1, 1]]))
    out = agent.infer_policies()
    assert agent.qs is not None and agent.reachability is not None
    assert out.inductive_cost is not None
    A_deps, B_deps = _deps(len(no), len(ns))
    policies = agent.policies
    spread = 0.0
    with _pymdp() as (control, jnp):
        I_j = control.generate_I_matrix(_j(jnp, H), _j(jnp, m["B"]), threshold, depth)
        for b in range(3):
            for f in range(len(ns)):
                np.testing.assert_array_equal(agent.reachability[f][b].numpy(), np.asarray(I_j[f]))
            q_pi, neg_efe = control.update_posterior_policies_inductive(
                jnp.asarray(policies.numpy()), _j(jnp, [q[b] for q in agent.qs]),
                _j(jnp, m["A"]), _j(jnp, m["B"]), _j(jnp, m["C"]), jnp.asarray(E.numpy()),
                None, None, A_deps, B_deps, I_j, gamma=gamma, inductive_epsilon=epsilon,
            )  # fmt: skip
            total = out.efe.efe[b] + out.inductive_cost[b]
            np.testing.assert_allclose(total.numpy(), -np.asarray(neg_efe), rtol=0, atol=TOL)
            np.testing.assert_allclose(out.q_pi[b].numpy(), np.asarray(q_pi), rtol=0, atol=TOL)
            spread = max(spread, float(out.inductive_cost[b].max() - out.inductive_cost[b].min()))
    assert spread > 0.01


def test_search_horizon_one_inductive_cost_is_the_policy_cost() -> None:
    """One step of the tree costs what one-step policies cost (same anchor, the root)."""
    m = _random_model(6, [4, 3], [3, 2], [3, 2])
    t = {k: _t(v) for k, v in m.items()}
    reach = inductive_matrices(_t(_random_H(6, [4, 3])), t["B"], threshold=0.1, depth=3)
    tree = sophisticated_search(
        t["qs"], t["A"], t["B"], t["C"], SearchSettings(horizon=1), reachability=reach,
        inductive_epsilon=1e-2, info_gain="per_modality",
    )  # fmt: skip
    flat = efe_inductive(
        t["qs"], t["A"], t["B"], t["C"], construct_policies([3, 2], 1), reach, epsilon=1e-2,
        info_gain="per_modality",
    )  # fmt: skip
    assert torch.allclose(tree.inductive_cost, flat.inductive_cost, atol=1e-12)
    assert float(flat.inductive_cost.max()) > 0.0
    assert torch.allclose(tree.q_action, torch.softmax(-16.0 * flat.total, 0), atol=1e-12)
