"""The structured generative model: it recovers known causes, from censored outcomes too."""

from __future__ import annotations

import math

import numpy as np
import pytest

from generative_models.structured import (
    OutcomeBeliefs,
    ServerSpec,
    StructuredConfig,
    StructuredWorldModel,
    expected_guidance,
)

SPECS = [ServerSpec(True, 100, 276.0), ServerSpec(False, 100, 50.7)]
TRUE_TAU = np.array([2.3, 9.5])
TRUE_K = np.array([0.53, 0.43])


def simulate(model: StructuredWorldModel, n: int, t_max: float, seed: int) -> int:
    """Tasks on both servers at random shares; returns how many were censored."""
    rng = np.random.default_rng(seed)
    censored = 0
    for _ in range(n):
        j = int(rng.integers(2))
        c = float(rng.choice([0.25, 0.5, 1.0]))
        m = 1.0
        k = TRUE_K[j]
        compute = TRUE_TAU[j] * ((1 - k) + k / c) * math.exp(rng.normal(0, 0.03))
        done = compute <= t_max
        censored += not done
        problem = int(rng.integers(10))
        model.observe(
            j, c, m, problem, True, done,
            compute if done else math.nan,
            t_max if not done else math.nan,
            0.01 if done else math.nan,
            (0.1 * problem / 9) * (1 + j) if done else math.nan,
        )  # fmt: skip
    for _ in range(50):
        model.observe_arrival(float(rng.exponential(1 / 0.4)), 0, int(rng.integers(10)))
    return censored


def test_svi_recovers_server_speed_share_scaling_and_arrival_rate() -> None:
    model = StructuredWorldModel(SPECS, 10, 4, StructuredConfig(fit_steps=800), seed=0)
    simulate(model, 300, t_max=60.0, seed=0)
    trace = model.fit()
    assert trace[-1] < trace[0]  # the free energy fell
    post = model.posterior()
    np.testing.assert_allclose(np.exp(post["log_tau"][0]), TRUE_TAU, rtol=0.05)
    k = 1 / (1 + np.exp(-post["share_logit"][0]))
    np.testing.assert_allclose(k, TRUE_K, atol=0.05)
    assert model.arrival_rate(post) == pytest.approx(0.4, rel=0.25)


def test_censored_likelihood_undoes_survivorship_bias() -> None:
    # Compute times scatter around 12 s and the deadline is 13 s: about a third of the tasks
    # fail. A model that drops failures learns from the fast survivors and thinks the server
    # faster than it is; the censored likelihood ("not done by t_max") recovers its speed.
    rng = np.random.default_rng(5)
    cfg = StructuredConfig(fit_steps=800, noise_prior=0.2)
    censored = StructuredWorldModel(SPECS, 10, 4, cfg, seed=0)
    blind = StructuredWorldModel(SPECS, 10, 4, cfg, seed=0)
    failed = 0
    for _ in range(300):
        compute = 12.0 * math.exp(rng.normal(0.0, 0.2))
        done = compute <= 13.0
        failed += not done
        args = (1, 1.0, 1.0, 0, True, done, compute if done else math.nan)
        censored.observe(*args, math.nan if done else 13.0, 0.01, 0.1)
        if done:
            blind.observe(*args, math.nan, 0.01, 0.1)
    assert 60 < failed < 150
    censored.fit()
    blind.fit()
    speed = {
        name: float(np.exp(m.posterior()["log_tau"][0][1])) for name, m in
        (("censored", censored), ("blind", blind))
    }  # fmt: skip
    assert speed["censored"] == pytest.approx(12.0, rel=0.04)
    assert speed["blind"] < 11.0  # the survivors alone understate the compute time


def test_pass_at_100_is_learned_per_problem_and_server() -> None:
    model = StructuredWorldModel(SPECS, 10, 4, StructuredConfig(fit_steps=800), seed=0)
    simulate(model, 400, t_max=60.0, seed=2)
    model.fit()
    post = model.posterior()
    problems = np.arange(10)
    for j in (0, 1):
        b = model.outcome_beliefs(post, np.full(10, j), np.ones(10), np.ones(10), problems)
        truth = 0.1 * problems / 9 * (1 + j)
        assert np.abs(b.pass_mean - truth).max() < 0.04
        assert np.corrcoef(b.pass_mean, truth)[0, 1] > 0.95


def test_expected_guidance_matches_monte_carlo() -> None:
    beliefs = OutcomeBeliefs(
        log_compute_mean=np.array([np.log(2.3), np.log(9.5), np.log(14.0)]),
        log_compute_sd=np.array([0.05, 0.1, 0.2]),
        param_var=np.zeros(3),
        noise_var=np.zeros(3),
        net_s=np.array([0.04, 0.01, 0.01]),
        pass_mean=np.array([0.1, 0.2, 0.3]),
        pass_param_var=np.zeros(3),
    )
    wait = np.array([0.0, 1.0, 0.5])
    p_done, guidance, _ = expected_guidance(beliefs, wait, t_max=15.0)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((400_000, 3))
    latency = wait + beliefs.net_s + np.exp(beliefs.log_compute_mean + beliefs.log_compute_sd * z)
    done = latency <= 15.0
    np.testing.assert_allclose(p_done, done.mean(axis=0), atol=0.02)
    mc = np.where(done, 1 / latency + beliefs.pass_mean, 0.0).mean(axis=0)
    np.testing.assert_allclose(guidance, mc, atol=0.01)


def test_posterior_datatree_has_arviz_groups_and_summary() -> None:
    import arviz_stats

    model = StructuredWorldModel(SPECS, 10, 4, StructuredConfig(fit_steps=50), seed=0)
    simulate(model, 50, t_max=60.0, seed=3)
    model.fit()
    tree = model.posterior_datatree(num_samples=100, server_names=["cloud", "edge"])
    post = tree["posterior"].to_dataset()
    assert post["compute_s"].dims == ("chain", "draw", "server")
    assert list(post["server"].values) == ["cloud", "edge"]
    assert post["ease"].sizes["problem"] == 10
    assert tree["free_energy"]["vfe"].sizes["step"] == 50
    table = arviz_stats.summary(tree, var_names=["compute_s"])
    assert len(table) == 2


def test_same_seed_same_fit() -> None:
    fits = []
    for _ in range(2):
        model = StructuredWorldModel(SPECS, 10, 4, StructuredConfig(fit_steps=30), seed=7)
        simulate(model, 40, t_max=60.0, seed=4)
        fits.append(model.fit())
    assert fits[0] == fits[1]
