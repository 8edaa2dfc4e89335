"""The generic outcome model: a log-log regression that learns a latency law it was not given."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from generative_models.generic import TERMS, GenericConfig, GenericWorldModel, features
from generative_models.structured import ServerSpec

SPECS = [ServerSpec(True, 100, 276.0), ServerSpec(False, 100, 50.7)]
# A power law per server: T = A * c**a * m**b (log-linear, so the "linear" family holds it).
TRUE_A = np.array([2.0, 8.0])
TRUE_ELASTICITY = np.array([-0.8, -0.3])  # in the compute share
TRUE_MEMORY = np.array([-0.2, 0.0])


def simulate(model: GenericWorldModel, n: int, t_max: float, seed: int) -> int:
    """Tasks on both servers at random shares from the power law; returns how many were censored."""
    rng = np.random.default_rng(seed)
    censored = 0
    for _ in range(n):
        j = int(rng.integers(2))
        c = float(rng.choice([0.2, 0.4, 0.7, 1.0]))
        m = float(rng.choice([0.5, 1.0]))
        compute = (
            TRUE_A[j]
            * c ** TRUE_ELASTICITY[j]
            * m ** TRUE_MEMORY[j]
            * math.exp(rng.normal(0, 0.05))
        )
        done = compute <= t_max
        censored += not done
        model.observe(
            j, c, m, int(rng.integers(5)), True, done,
            compute if done else math.nan, t_max if not done else math.nan,
            0.01 if done else math.nan, 0.5 if done else math.nan,
        )  # fmt: skip
    return censored


@pytest.mark.parametrize(
    ("field", "value"),
    [("terms", "cubic"), ("slope_prior_sd", 0.0), ("lr", math.inf), ("fit_steps", 0)],
)
def test_config_rejects_bad_settings_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        GenericConfig(**{field: value})  # type: ignore[arg-type]


def test_model_needs_a_server() -> None:
    with pytest.raises(ValueError, match="server"):
        GenericWorldModel([], 5, 2)


@pytest.mark.parametrize("terms", sorted(TERMS))
def test_features_agree_between_numpy_and_torch(terms: str) -> None:
    c = np.array([[0.1, 0.5, 1.0]])
    m = np.array([[0.25], [1.0]])
    phi = features(terms, c, m)
    assert phi.shape == (2, 3, len(TERMS[terms]))
    phi_t = features(terms, torch.as_tensor(c), torch.as_tensor(m))
    np.testing.assert_allclose(phi_t.numpy(), phi, rtol=1e-12)
    np.testing.assert_allclose(phi[..., 0], 1.0)
    np.testing.assert_allclose(phi[..., 1], np.log(np.broadcast_to(c, (2, 3))))


def test_svi_recovers_the_power_law_it_was_not_given() -> None:
    model = GenericWorldModel(SPECS, 5, 2, GenericConfig(terms="linear", fit_steps=1500), seed=0)
    simulate(model, 400, t_max=100.0, seed=0)
    trace = model.fit()
    assert trace[-1] < trace[0] - 100  # the free energy fell
    coef = model.posterior()["coef"][0]
    np.testing.assert_allclose(np.exp(coef[:, 0]), TRUE_A, rtol=0.08)
    np.testing.assert_allclose(coef[:, 1], TRUE_ELASTICITY, atol=0.06)
    np.testing.assert_allclose(coef[:, 2], TRUE_MEMORY, atol=0.08)


def test_censoring_corrects_the_survivors_optimism() -> None:
    # Server 1 at share 0.2 takes about 8 * 0.2**-0.3 = 12.3 s; a deadline of 12.5 s cuts off
    # about a third of those tasks. The censored likelihood keeps the slow server slow.
    cfg = GenericConfig(terms="linear", fit_steps=700, lr=0.08)
    full = GenericWorldModel(SPECS, 5, 2, cfg, seed=0)
    simulate(full, 400, t_max=12.5, seed=1)
    blind = GenericWorldModel(SPECS, 5, 2, cfg, seed=0)
    d = full.data
    for i in range(len(d.server)):
        if d.completed[i]:
            blind.observe(
                d.server[i], d.compute_share[i], d.memory_share[i], d.problem[i], True, True,
                d.compute_s[i], math.nan, d.net_s[i], d.pass_at_100[i],
            )  # fmt: skip
    assert sum(not x for x in d.completed) > 20
    full.fit()
    blind.fit()
    at = (np.array([1]), np.array([0.2]), np.array([1.0]), np.array([0]))
    truth = math.log(8.0 * 0.2**-0.3)
    full_mean = full.outcome_beliefs(full.posterior(), *at).log_compute_mean[0]
    blind_mean = blind.outcome_beliefs(blind.posterior(), *at).log_compute_mean[0]
    assert abs(full_mean - truth) < 0.05
    assert blind_mean < truth - 0.02  # dropping failures makes the server look faster


def test_parameter_variance_shrinks_where_data_are() -> None:
    model = GenericWorldModel(SPECS, 5, 2, GenericConfig(fit_steps=600), seed=0)
    post0 = model.posterior()
    args = (np.array([0, 0]), np.array([1.0, 0.2]), np.array([1.0, 1.0]), np.array([0, 0]))
    before = model.outcome_beliefs(post0, *args).param_var
    for _ in range(60):
        model.observe(0, 1.0, 1.0, 0, True, True, 2.0, math.nan, 0.01, 0.5)
    model.fit()
    after = model.outcome_beliefs(model.posterior(), *args).param_var
    assert after[0] < 0.05 * before[0]  # learned where it was granted
    assert after[1] > 5 * after[0]  # still uncertain where it never was


def test_same_seed_same_fit_and_datatree() -> None:
    def fitted() -> GenericWorldModel:
        model = GenericWorldModel(SPECS, 5, 2, GenericConfig(fit_steps=50), seed=3)
        simulate(model, 40, t_max=100.0, seed=3)
        model.fit()
        return model

    a, b = fitted(), fitted()
    assert a.vfe_trace == b.vfe_trace
    tree = a.posterior_datatree(num_samples=20, server_names=["edge", "cloud"])
    coef = tree["posterior"]["coef"]
    assert coef.dims == ("chain", "draw", "server", "term")
    assert list(coef["term"].values) == list(TERMS["interaction"])
    assert tree["free_energy"]["vfe"].size == 50
