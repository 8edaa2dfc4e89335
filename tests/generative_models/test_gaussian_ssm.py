"""Tests of the Gaussian capacity model: Kalman closed forms against the generic SVI/MC engine."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from pyro import poutine

from aif.expected_free_energy import efe_mc
from aif.free_energy import vfe
from aif.handlers import condition_on_policy, set_horizon
from aif.inference import filter_beliefs, fit_beliefs
from aif.planning import construct_policies
from generative_models.gaussian_ssm import GaussianBelief, GaussianSSM


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


MODEL = GaussianSSM()
BELIEF = (torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.04, dtype=torch.float64))


def _joint_log_density(model: GaussianSSM, obs: torch.Tensor, actions: list[int]) -> float:
    """log p(o_{0:T-1}) from the joint Gaussian (means and covariances built directly)."""
    T = obs.shape[0]
    a, r2, q2 = model.decay, model.obs_sd**2, model.process_sd**2
    means, variances = [model.prior_mean], [model.prior_sd**2]
    for t in range(1, T):
        means.append(model.level + a * (means[-1] - model.level) - model.load[actions[t - 1]])
        variances.append(a * a * variances[-1] + q2)
    cov = torch.zeros(T, T, dtype=torch.float64)
    for i in range(T):
        for j in range(T):
            lo, hi = min(i, j), max(i, j)
            cov[i, j] = a ** (hi - lo) * variances[lo]
    cov = cov + r2 * torch.eye(T, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal(torch.tensor(means, dtype=torch.float64), cov)
    return float(mvn.log_prob(obs))


def test_kalman_evidence_equals_the_joint_gaussian_density() -> None:
    obs = torch.tensor([0.75, 0.55, 0.5, 0.8], dtype=torch.float64)
    actions = [1, 1, 0]
    kf = MODEL.kalman_filter(obs, actions)
    assert abs(float(kf.log_evidence.sum()) - _joint_log_density(MODEL, obs, actions)) < 1e-10
    assert bool((kf.variances < kf.prior_variances).all())


def test_svi_step_posterior_matches_the_kalman_update_and_vfe_matches_evidence() -> None:
    obs = torch.tensor(0.55, dtype=torch.float64)
    prior = (
        torch.tensor(MODEL.prior_mean, dtype=torch.float64),
        torch.tensor(MODEL.prior_sd**2, dtype=torch.float64),
    )
    guide = GaussianBelief(prior)
    result = fit_beliefs(
        MODEL.step_model,
        guide,
        obs,
        prior,
        num_steps=1500,
        lr=0.02,
        method="mc",
        num_particles=32,
        lr_decay=0.02,
        early_stop=False,
        final_particles=4000,
    )
    kf = MODEL.kalman_filter(obs.reshape(1))
    mean, var = guide.beliefs()
    assert abs(float(mean - kf.means[0])) < 0.01
    assert abs(float(var - kf.variances[0])) < 0.002
    assert abs(float(result.final.vfe + kf.log_evidence[0])) < 0.01


def test_filtering_the_capacity_by_svi_tracks_the_kalman_filter() -> None:
    obs = torch.tensor([0.75, 0.6, 0.5], dtype=torch.float64)
    actions = [1, 0]
    prior = (
        torch.tensor(MODEL.prior_mean, dtype=torch.float64),
        torch.tensor(MODEL.prior_sd**2, dtype=torch.float64),
    )
    result = filter_beliefs(
        MODEL.step_model,
        GaussianBelief,
        list(obs),
        prior,
        MODEL.predict,
        actions,
        num_steps=800,
        lr=0.02,
        method="mc",
        num_particles=32,
        lr_decay=0.02,
        early_stop=False,
        seed=1,
    )
    kf = MODEL.kalman_filter(obs, actions)
    means = torch.stack([p[0] for p in result.posteriors])
    prior_vars = torch.stack([p[1] for p in result.priors])
    assert float((means - kf.means).abs().max()) < 0.02
    assert float((prior_vars - kf.prior_variances).abs().max()) < 0.005
    assert float((result.vfe + kf.log_evidence).abs().max()) < 0.05


def test_mc_efe_converges_to_the_gaussian_closed_form() -> None:
    policies = construct_policies([2], 2)
    exact = MODEL.efe_closed_form(BELIEF, policies, target=0.6, scale=0.2)
    pref = MODEL.preference(0.6, 0.2)
    errors = {}
    for n in (30, 2000):
        mc = efe_mc(MODEL.predictive, policies, BELIEF, log_C=pref, num_particles=n, seed=0)
        errors[n] = float((mc.efe - exact.efe).abs().mean())
        assert torch.allclose(mc.ambiguity, exact.ambiguity, atol=1e-10)  # exact per sample
    assert errors[2000] < errors[30]
    assert errors[2000] < 0.06
    # The preference ranks policies: sending the task keeps capacity nearer the target here.
    assert int(exact.efe.argmin()) == int(mc.efe.argmin())


def test_svi_information_gain_matches_the_closed_form_for_one_step() -> None:
    policies = construct_policies([2], 1)
    exact = MODEL.efe_closed_form(BELIEF, policies, target=0.6, scale=0.2)
    with set_horizon(1):
        mc = efe_mc(
            MODEL.predictive,
            policies,
            BELIEF,
            log_C=MODEL.preference(0.6, 0.2),
            num_particles=500,
            info_gain="svi",
        )
    # Sampling noise of 500 predicted observations dominates the remaining error.
    assert float((mc.state_info_gain - exact.state_info_gain).abs().max()) < 0.08


def test_vfe_of_the_smoothing_model_with_the_exact_posterior_is_the_evidence() -> None:
    # One step: the exact posterior as a guide makes log p(o, c) - log q(c) constant.
    obs = torch.tensor([0.6], dtype=torch.float64)
    kf = MODEL.kalman_filter(obs)
    guide = GaussianBelief((kf.means[0], kf.variances[0]))
    result = vfe(MODEL.model, guide, obs, method="mc", num_particles=10)
    assert abs(float(result.vfe + kf.log_evidence[0])) < 1e-10


def test_policy_conditioning_and_horizon_shape_the_predictive_rollout() -> None:
    with set_horizon(3), condition_on_policy(torch.tensor([[1], [0], [1]])):
        trace = poutine.trace(MODEL.predictive).get_trace(BELIEF)
    assert [int(trace.nodes[f"u_{t}_0"]["value"]) for t in range(3)] == [1, 0, 1]
    assert "o_2_0" in trace.nodes and "o_3_0" not in trace.nodes


def test_predict_pushes_mean_and_variance() -> None:
    mean, var = MODEL.predict(BELIEF, 1)
    assert math.isclose(
        float(mean), MODEL.level + MODEL.decay * (0.7 - MODEL.level) - MODEL.load[1]
    )
    assert math.isclose(float(var), MODEL.decay**2 * 0.04 + MODEL.process_sd**2)


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="obs_sd=0"):
        GaussianSSM(obs_sd=0)
    with pytest.raises(ValueError, match="decay=1.5"):
        GaussianSSM(decay=1.5)
    with pytest.raises(ValueError, match="control 2 at step 0"):
        poutine.trace(MODEL.model).get_trace(torch.tensor([0.5, 0.5]), actions=[2])
