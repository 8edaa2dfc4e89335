"""Parity with pymdp 1.0.4 (JAX) and ``pymdp.legacy`` on seeded random models.

Several factors and modalities, policy length 2. Compared: posterior beliefs, VFE, per-policy
EFE (after :func:`aif.planning.preference_offset` for pymdp 1.x's raw-C scoring), the policy
posterior and the selected action; tolerance 1e-4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("pymdp")

from aif.exact import (
    ExactStateInference,
    filter_states,
    infer_states_fpi,
    log_likelihood,
    vfe_categorical,
)  # noqa: E402
from aif.planning import PolicyEvaluator, policy_posterior, preference_offset, select_action  # noqa: E402
from generative_models.categorical import CategoricalPOMDP  # noqa: E402
from generative_models.pymdp_io import to_pymdp  # noqa: E402

TOL = 1e-4
SEEDS = [0, 1, 2]
GAMMA = 16.0


def _pomdp(seed: int) -> CategoricalPOMDP:
    return CategoricalPOMDP.random(
        [3, 2], [4, 3, 2], [2, 3], policy_len=2, seed=seed, dirichlet=True
    )


def _obs(seed: int, pomdp: CategoricalPOMDP) -> list[int]:
    g = torch.Generator().manual_seed(100 + seed)
    return [int(torch.randint(n, (1,), generator=g)) for n in pomdp.num_obs]


def _t(x) -> torch.Tensor:
    return torch.as_tensor(np.array(x, dtype=np.float64))


@pytest.mark.parametrize("seed", SEEDS)
def test_pymdp_1x_beliefs_vfe_efe_policy_posterior_and_action(seed: int) -> None:
    import jax.numpy as jnp

    pomdp = _pomdp(seed)
    obs = _obs(seed, pomdp)
    agent = to_pymdp(pomdp, "1.x", gamma=GAMMA, use_param_info_gain=True)
    qs_pm, info = agent.infer_states([jnp.array([o]) for o in obs], agent.D, return_info=True)
    qs_ref = [_t(q[0, -1]) for q in qs_pm]

    qs = infer_states_fpi(pomdp.A, obs, pomdp.D, num_iter=16)
    for a, b in zip(qs, qs_ref, strict=True):
        assert torch.allclose(a, b, atol=TOL)
    vfe = vfe_categorical(qs, pomdp.D, pomdp.A, obs)
    assert float(vfe.vfe) == pytest.approx(float(np.asarray(info["vfe"])[0]), abs=TOL)

    q_pi_pm, neg_efe_pm = agent.infer_policies(qs_pm)
    res = pomdp.efe(qs, info_gain="per_modality", use_param_info_gain=True)
    offset = preference_offset(pomdp.C, pomdp.policy_len)
    assert torch.allclose(offset - res.efe, _t(neg_efe_pm[0]), atol=TOL)
    q_pi = policy_posterior(res.efe, GAMMA, pomdp.log_E)
    assert torch.allclose(q_pi, _t(q_pi_pm[0]), atol=TOL)
    action_pm = np.asarray(agent.sample_action(q_pi_pm))[0]
    assert select_action(q_pi, pomdp.policies, sampling="full").tolist() == action_pm.tolist()

    # Without novelty, the offset alone separates the two scores.
    agent_plain = to_pymdp(pomdp, "1.x", gamma=GAMMA)
    _, neg_plain = agent_plain.infer_policies(qs_pm)
    plain = pomdp.efe(qs, info_gain="per_modality")
    assert torch.allclose(offset - plain.efe, _t(neg_plain[0]), atol=TOL)


def test_pymdp_1x_sequential_filtering() -> None:
    import jax.numpy as jnp

    pomdp = _pomdp(3)
    agent = to_pymdp(pomdp, "1.x", gamma=GAMMA)
    obs_seq = [[1, 0, 1], [3, 2, 0], [0, 1, 1]]
    actions = [[1, 2], [0, 1]]
    prior = agent.D
    ref = []
    for t, obs in enumerate(obs_seq):
        qs_pm = agent.infer_states([jnp.array([o]) for o in obs], prior)
        ref.append([_t(q[0, -1]) for q in qs_pm])
        if t < len(actions):
            prior = agent.update_empirical_prior(jnp.array([actions[t]]), qs_pm)
    mine = filter_states(pomdp.A, pomdp.B, pomdp.D, obs_seq, actions, method="fpi")
    for t in range(len(obs_seq)):
        for a, b in zip(mine.qs[t], ref[t], strict=True):
            assert torch.allclose(a, b, atol=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_pymdp_legacy_beliefs_vfe_efe_policy_posterior_and_action(seed: int) -> None:
    from pymdp.legacy import control as legacy_control
    from pymdp.legacy import maths as legacy_maths

    pomdp = _pomdp(seed)
    obs = _obs(seed, pomdp)
    agent = to_pymdp(pomdp, "legacy", gamma=GAMMA, use_param_info_gain=True)
    qs_ref = [_t(q) for q in agent.infer_states(obs)]
    # pymdp.legacy stops its fixed-point iteration once the VFE changes by < 0.001 (10 sweeps max).
    qs = infer_states_fpi(pomdp.A, obs, pomdp.D, num_iter=10, tol=1e-3)
    for a, b in zip(qs, qs_ref, strict=True):
        assert torch.allclose(a, b, atol=TOL)
    ll = log_likelihood(pomdp.A, obs).numpy()
    log_prior = legacy_maths.spm_log_obj_array(agent.D)
    vfe_ref = legacy_maths.calc_free_energy(agent.qs, log_prior, len(qs), likelihood=ll)
    assert float(vfe_categorical(qs, pomdp.D, pomdp.A, obs).vfe) == pytest.approx(
        float(np.squeeze(vfe_ref)), abs=TOL
    )

    q_pi_ref, neg_efe_ref = agent.infer_policies()
    res = pomdp.efe(qs, info_gain="per_modality", use_param_info_gain=True, novelty_form="spm")
    assert torch.allclose(-res.efe, _t(neg_efe_ref), atol=TOL)
    q_pi = policy_posterior(res.efe, GAMMA, pomdp.log_E)
    assert torch.allclose(q_pi, _t(q_pi_ref), atol=TOL)
    action_ref = np.asarray(agent.sample_action()).astype(int)
    assert select_action(q_pi, pomdp.policies).tolist() == action_ref.tolist()

    # The non-factorised legacy routine scores the joint outcome of all modalities (spm_MDP_G).
    q_pi_joint, neg_joint = legacy_control.update_posterior_policies(
        agent.qs, agent.A, agent.B, agent.C, agent.policies, gamma=GAMMA
    )
    joint = pomdp.efe(qs, info_gain="joint")
    assert torch.allclose(-joint.efe, _t(neg_joint), atol=TOL)
    assert torch.allclose(policy_posterior(joint.efe, GAMMA), _t(q_pi_joint), atol=TOL)


@pytest.mark.parametrize("seed", SEEDS)
def test_pymdp_1x_precompiled_fast_path(seed: int) -> None:
    import jax.numpy as jnp

    # Policy evaluation on the multi-factor model, from pymdp's own beliefs.
    pomdp = _pomdp(seed)
    obs = _obs(seed, pomdp)
    agent = to_pymdp(pomdp, "1.x", gamma=GAMMA)
    qs_pm = agent.infer_states([jnp.array([o]) for o in obs], agent.D)
    q_pi_pm, neg_efe_pm = agent.infer_policies(qs_pm)
    qs = [_t(q[0, -1]) for q in qs_pm]
    assert pomdp.policies is not None and pomdp.C is not None
    evaluator = PolicyEvaluator(
        pomdp.A, pomdp.B, pomdp.C, pomdp.policies, GAMMA, pomdp.log_E, info_gain="per_modality"
    )
    fast = evaluator.evaluate(qs)
    offset = preference_offset(pomdp.C, pomdp.policy_len)
    assert torch.allclose(offset - fast.efe.efe, _t(neg_efe_pm[0]), atol=TOL)
    assert torch.allclose(fast.q_pi, _t(q_pi_pm[0]), atol=TOL)

    # With one hidden-state factor, pymdp's fixed-point update is exact Bayes.
    single = CategoricalPOMDP.random([4], [3, 2], [3], policy_len=2, seed=seed)
    obs1 = _obs(seed, single)
    agent1 = to_pymdp(single, "1.x", gamma=GAMMA)
    ref = agent1.infer_states([jnp.array([o]) for o in obs1], agent1.D)
    assert single.D is not None
    post = ExactStateInference(single.A).update(obs1, single.D)
    assert torch.allclose(post.qs[0], _t(ref[0][0, -1]), atol=TOL)
