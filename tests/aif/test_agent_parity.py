"""Whole episodes of pymdp 1.0.4's own tasks: DiscreteAgent against pymdp's Agent and rollout.

pymdp runs its T-maze and grid world (``pymdp.envs``) with ``pymdp.envs.rollout.rollout``; the
recorded observations are replayed to :class:`aif.DiscreteAgent` built from the same matrices
(likelihoods that pymdp stores over a subset of factors are broadcast to all of them). At every
step the posterior beliefs, the expected free energy of every policy, ``q(pi)``, the action
and the learnt ``pA``/``pB`` must agree within 1e-4. A random policy prior ``E`` breaks the
exact ties between symmetric policies, which rounding would otherwise settle either way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("pymdp")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jax.random as jr  # noqa: E402
from pymdp.agent import Agent  # noqa: E402
from pymdp.envs.grid_world import GridWorld  # noqa: E402
from pymdp.envs.rollout import rollout  # noqa: E402
from pymdp.envs.tmaze import TMaze  # noqa: E402

from aif.discrete_agent import DiscreteAgent  # noqa: E402
from aif.planning import preference_offset  # noqa: E402
from generative_models.categorical import CategoricalPOMDP  # noqa: E402

TOL = 1e-4


def _full_A(env: Any) -> list[np.ndarray]:
    """The env's likelihoods with every modality spanning every factor."""
    ns = [int(b.shape[0]) for b in env.B]
    out = []
    for a, deps in zip(env.A, env.A_dependencies, strict=True):
        a = np.asarray(a, dtype=np.float64)
        order = np.argsort(deps)
        a = np.transpose(a, [0] + [1 + int(i) for i in order])
        kept = sorted(deps)
        shape = [a.shape[0]] + [ns[f] if f in kept else 1 for f in range(len(ns))]
        out.append(np.broadcast_to(a.reshape(shape), (a.shape[0], *ns)).copy())
    return out


def _episode(
    env: Any,
    steps: int,
    C: list[np.ndarray],
    D: list[np.ndarray],
    pymdp_kwargs: dict[str, Any],
    our_kwargs: dict[str, Any],
    pA: list[np.ndarray] | None = None,
    pB: list[np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Run pymdp's rollout, replay it through DiscreteAgent, return the largest differences."""
    A = _full_A(env)
    B = [np.asarray(b, dtype=np.float64) for b in env.B]

    def j(xs: list[np.ndarray] | None) -> list[Any] | None:
        return None if xs is None else [jnp.asarray(x) for x in xs]

    policy_len = int(pymdp_kwargs["policy_len"])
    n_pol = Agent(A=j(A), B=j(B), C=j(C), D=j(D), policy_len=policy_len).policies.num_policies
    rng = np.random.default_rng(seed)
    E = np.exp(0.05 * rng.standard_normal(n_pol))
    E /= E.sum()
    agent = Agent(
        A=j(A), B=j(B), C=j(C), D=j(D), E=jnp.asarray(E), pA=j(pA), pB=j(pB), **pymdp_kwargs
    )
    carry = {"action": -jnp.ones((1, len(B)), dtype=jnp.int64)}
    if agent.inference_algo == "mmp":
        window = int(agent.inference_horizon) - 1
        carry["action_hist"] = -jnp.ones((1, window, len(B)), dtype=jnp.int64)
    _, info = rollout(agent, env, steps, jr.PRNGKey(seed), initial_carry=carry)

    def t(xs: list[np.ndarray] | None) -> list[torch.Tensor] | None:
        return None if xs is None else [torch.tensor(np.array(x)) for x in xs]

    A_t, B_t = t(A), t(B)
    assert A_t is not None and B_t is not None
    pomdp = CategoricalPOMDP(
        A=A_t,
        B=B_t,
        C=t(C),
        D=t(D),
        E=torch.as_tensor(E),
        pA=t(pA),
        pB=t(pB),
        policy_len=policy_len,
        policies=torch.tensor(np.array(agent.policies.policy_arr)),
    )
    ours = DiscreteAgent(pomdp, info_gain="per_modality", **our_kwargs)
    offset = preference_offset(pomdp.C, policy_len)  # type: ignore[arg-type]
    worst = {"qs": 0.0, "q_pi": 0.0, "efe": 0.0, "pA": 0.0, "pB": 0.0}
    moved = {"pA": 0.0, "pB": 0.0}
    for step in range(steps + 1):
        obs = [int(np.asarray(o)[0, step, 0]) for o in info["observation"]]
        qs = ours.infer_states(obs)
        policy = ours.infer_policies()
        ours.learn()
        action = ours.sample_action()
        for f, q in enumerate(qs):
            ref = np.asarray(info["qs"][f][0, step])
            worst["qs"] = max(worst["qs"], float(np.abs(q[0].numpy() - ref).max()))
        ref_q_pi = np.asarray(info["qpi"][0, step])
        worst["q_pi"] = max(worst["q_pi"], float(np.abs(policy.q_pi[0].numpy() - ref_q_pi).max()))
        neg_efe = np.asarray(info["neg_efe"][0, step])
        efe = (offset - policy.efe.efe[0]).numpy()
        worst["efe"] = max(worst["efe"], float(np.abs(efe - neg_efe).max()))
        for key in ("pA", "pB"):
            if key in info:
                mine = getattr(ours, key)
                start = pA if key == "pA" else pB
                assert mine is not None and start is not None
                for k, p in enumerate(mine):
                    ref = np.asarray(info[key][k][0, step])
                    worst[key] = max(worst[key], float(np.abs(p[0].numpy() - ref).max()))
                    moved[key] = max(moved[key], float(np.abs(ref - start[k]).max()))
        expected = np.asarray(info["action"][0, step]).tolist()
        assert action[0].tolist() == expected, f"step {step}: {action[0].tolist()} vs {expected}"
    for key in ("pA", "pB"):
        if key in info:
            assert moved[key] > 0.5, f"{key} hardly moved ({moved[key]}): no learning to compare"
    return worst


def _tmaze() -> tuple[TMaze, list[np.ndarray], list[np.ndarray]]:
    env = TMaze(reward_condition=None)
    C = [np.zeros(5), np.array([0.0, 3.0, -3.0]), np.zeros(3)]
    D = [np.eye(5)[0], np.full(2, 0.5)]
    return env, C, D


def test_tmaze_episode_with_likelihood_learning_and_novelty() -> None:
    env, C, D = _tmaze()
    pA = [10.0 * a + 0.5 for a in _full_A(env)]
    worst = _episode(
        env,
        12,
        C,
        D,
        dict(policy_len=2, gamma=16.0, alpha=16.0, learn_A=True, use_param_info_gain=True),
        dict(inference="fpi", gamma=16.0, learn_A=True, use_param_info_gain=True),
        pA=pA,
    )
    assert max(worst.values()) < TOL, worst


def test_grid_world_episode_with_transition_learning() -> None:
    env = GridWorld(shape=(3, 3), initial_position=(0, 0), include_stay=True)
    C = [np.zeros(9)]
    C[0][8] = 4.0
    D = [np.eye(9)[0]]
    pB = [np.ones((9, 9, 5))]
    worst = _episode(
        env,
        15,
        C,
        D,
        dict(policy_len=2, gamma=16.0, learn_B=True, use_param_info_gain=True),
        dict(inference="fpi", gamma=16.0, learn_B=True, use_param_info_gain=True),
        pB=pB,
        seed=1,
    )
    assert max(worst.values()) < TOL, worst


def test_tmaze_episode_with_marginal_message_passing_over_a_window() -> None:
    env, C, D = _tmaze()
    worst = _episode(
        env,
        10,
        C,
        D,
        dict(policy_len=2, gamma=16.0, inference_algo="mmp", inference_horizon=3),
        dict(inference="mmp", inference_horizon=3, gamma=16.0),
        seed=2,
    )
    assert max(worst.values()) < TOL, worst


def test_grid_world_episode_with_exact_inference_and_likelihood_learning() -> None:
    env = GridWorld(shape=(3, 4), initial_position=(1, 1), include_stay=True, success_prob=0.8)
    A = _full_A(env)
    noisy = 0.8 * A[0] + 0.2 / 12
    C = [np.linspace(-1.0, 2.0, 12)]
    D = [np.full(12, 1.0 / 12)]
    worst = _episode(
        env,
        20,
        C,
        D,
        dict(policy_len=2, gamma=8.0, learn_A=True, num_iter=16),
        dict(inference="exact", gamma=8.0, learn_A=True),
        pA=[5.0 * noisy],
        seed=3,
    )
    assert max(worst.values()) < TOL, worst
