"""Tests of belief updating by SVI: exactness, filtering, failure reports, no global state."""

from __future__ import annotations

import warnings

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints

from aif.exact import filter_states, infer_states_exact
from aif.handlers import OBS_SITE, parse_site
from aif.inference import (
    ConvergenceWarning,
    JointCategorical,
    MeanFieldCategorical,
    NonFiniteFreeEnergyError,
    amortised_info_gain,
    categorical_predict,
    categorical_step_model,
    filter_beliefs,
    fit_beliefs,
)
from aif.sequence import smooth_states
from generative_models.categorical import CategoricalPOMDP


def _sites(pomdp: CategoricalPOMDP) -> dict[str, int]:
    return {f"s_0_{f}": n for f, n in enumerate(pomdp.num_states)}


@pytest.mark.parametrize("seed", [0, 1])
def test_svi_posterior_matches_exact_bayes_and_vfe_matches_log_evidence(seed: int) -> None:
    pomdp = CategoricalPOMDP.random([4], [3, 2], [1], seed=seed)
    obs = [seed % 3, 1]
    guide = MeanFieldCategorical(_sites(pomdp))
    result = fit_beliefs(
        categorical_step_model(pomdp.A),
        guide,
        obs,
        pomdp.D,
        num_steps=1500,
        lr=0.1,
        tol=1e-10,
        lr_decay=0.01,
        early_stop=False,
    )
    exact = infer_states_exact(pomdp.A, obs, pomdp.D)
    assert exact.log_evidence is not None
    q = guide.beliefs()["s_0_0"]
    assert float((q - exact.qs[0]).abs().max()) <= 1e-3
    assert abs(float(result.final.vfe + exact.log_evidence)) <= 1e-3
    # The trace is a free energy, so it never drops below -log p(o).
    assert float(result.vfe_trace.min()) >= float(-exact.log_evidence) - 1e-9
    assert result.vfe_trace[0] > result.vfe_trace[-1]


def test_svi_on_the_pomdp_program_with_its_own_guide() -> None:
    pomdp = CategoricalPOMDP.random([3], [4, 2], [2], seed=4)
    with pyro.settings.context(module_local_params=True):
        guide = pomdp.make_guide(T=1)
    obs = [[1, 0]]
    result = fit_beliefs(pomdp.model, guide, obs, num_steps=800, lr=0.1, tol=1e-8, lr_decay=0.01)
    exact = infer_states_exact(pomdp.A, obs[0], pomdp.D)
    assert exact.log_evidence is not None
    assert float((guide.marginals()[0][0] - exact.qs[0]).abs().max()) <= 1e-3
    assert abs(float(result.final.vfe + exact.log_evidence)) <= 1e-3


def test_filtering_by_svi_matches_the_exact_filter() -> None:
    pomdp = CategoricalPOMDP.random([3], [3, 2], [2], seed=8)
    obs = [[0, 1], [2, 0], [1, 1]]
    actions = [[1], [0]]
    sites = _sites(pomdp)
    result = filter_beliefs(
        categorical_step_model(pomdp.A),
        lambda prior: MeanFieldCategorical(sites, init={"s_0_0": prior[0]}),
        obs,
        list(pomdp.D),
        categorical_predict(pomdp.B),
        actions,
        num_steps=1000,
        lr=0.1,
        tol=1e-7,
        lr_decay=0.01,
    )
    exact = filter_states(pomdp.A, pomdp.B, pomdp.D, obs, actions)
    assert exact.log_evidence is not None
    for t in range(3):
        assert float((result.posteriors[t]["s_0_0"] - exact.qs[t][0]).abs().max()) <= 1e-3
        assert float((result.priors[t][0] - exact.priors[t][0]).abs().max()) <= 1e-3
    assert torch.allclose(result.vfe, -exact.log_evidence, atol=1e-3)
    assert torch.allclose(result.vfe, result.complexity - result.accuracy, atol=1e-10)
    assert result.converged.dtype == torch.bool and result.vfe.shape == (3,)


def test_categorical_predict_is_b_times_q() -> None:
    pomdp = CategoricalPOMDP.random([3, 2], [2], [2, 3], seed=1)
    q = [
        torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64),
        torch.tensor([0.6, 0.4], dtype=torch.float64),
    ]
    pred = categorical_predict(pomdp.B)(q, [1, 2])
    for f, a in enumerate([1, 2]):
        assert torch.allclose(pred[f], pomdp.B[f][:, :, a] @ q[f])
        assert torch.isclose(pred[f].sum(), torch.tensor(1.0, dtype=torch.float64))


def _normal_model(obs: torch.Tensor) -> None:
    x = pyro.sample("x", dist.Normal(torch.tensor(0.0), 1.0))
    pyro.sample("y", dist.Normal(x, 0.5), obs=obs)


def _normal_guide(obs: torch.Tensor) -> None:
    loc = pyro.param("loc", torch.tensor(0.0))
    scale = pyro.param("scale", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("x", dist.Normal(loc, scale))


def test_monte_carlo_fit_is_reproducible_and_leaves_the_global_param_store_alone() -> None:
    store = pyro.get_param_store()
    store.clear()
    kw = dict(num_steps=300, lr=0.05, method="mc", num_particles=8, early_stop=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = fit_beliefs(_normal_model, _normal_guide, torch.tensor(1.2), seed=3, **kw)
        b = fit_beliefs(_normal_model, _normal_guide, torch.tensor(1.2), seed=3, **kw)
        c = fit_beliefs(_normal_model, _normal_guide, torch.tensor(1.2), seed=4, **kw)
    assert torch.equal(a.vfe_trace, b.vfe_trace)
    assert not torch.equal(a.vfe_trace, c.vfe_trace)
    assert len(store) == 0
    # Conjugate posterior N(0.96, 0.2): mean 1.2 / (1 + 0.25), variance 0.25 / 1.25.
    assert abs(float(a.params["loc"]) - 0.96) < 0.05
    assert abs(float(a.params["scale"]) - 0.2**0.5) < 0.05
    with store.scope(a.param_state):
        assert torch.isclose(pyro.param("loc"), a.params["loc"])


def test_non_convergence_is_flagged_and_warned() -> None:
    with pytest.warns(ConvergenceWarning, match="no convergence in 3 steps"):
        result = fit_beliefs(
            _normal_model, _normal_guide, torch.tensor(1.2), num_steps=3, method="mc"
        )
    assert not result.converged and result.num_steps == 3


def test_nan_is_reported_with_its_step_and_site() -> None:
    def model(obs: torch.Tensor) -> None:
        x = pyro.sample("x", dist.Normal(torch.tensor(0.0), 1.0))
        pyro.sample("y", dist.Normal(x, 0.1), obs=obs)

    def guide(obs: torch.Tensor) -> None:
        loc = pyro.param("loc", torch.tensor(0.0))
        # A cliff the optimiser walks off as the likelihood pulls loc upwards.
        pyro.factor(
            "cliff",
            torch.where(loc > 1.0, torch.tensor(float("nan")), torch.tensor(0.0)),
            has_rsample=True,
        )
        pyro.sample("x", dist.Normal(loc, 0.1))

    with pytest.raises(NonFiniteFreeEnergyError, match="cliff") as info:
        fit_beliefs(model, guide, torch.tensor(5.0), num_steps=500, lr=0.1, method="mc")
    assert info.value.step > 0
    assert info.value.site is not None and "cliff" in info.value.site
    assert f"step {info.value.step}" in str(info.value)


def test_fit_beliefs_validates_arguments() -> None:
    with pytest.raises(ValueError, match="num_steps=0"):
        fit_beliefs(_normal_model, _normal_guide, torch.tensor(0.0), num_steps=0)
    with pytest.raises(ValueError, match="method='sgd'"):
        fit_beliefs(_normal_model, _normal_guide, torch.tensor(0.0), method="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no parameters"):
        fit_beliefs(
            _normal_model,
            lambda obs: pyro.sample("x", dist.Normal(0.0, 1.0)),
            torch.tensor(0.0),
            method="mc",
        )


def test_samples_are_drawn_from_the_fitted_guide() -> None:
    pomdp = CategoricalPOMDP.random([3], [3], [1], seed=2)
    guide = MeanFieldCategorical(_sites(pomdp))
    result = fit_beliefs(
        categorical_step_model(pomdp.A),
        guide,
        [0],
        pomdp.D,
        num_steps=400,
        lr=0.1,
        num_samples=4000,
        tol=1e-9,
    )
    draws = result.samples["s_0_0"]
    assert draws.shape == (4000,)
    freq = torch.bincount(draws, minlength=3).double() / 4000
    assert float((freq - guide.beliefs()["s_0_0"]).abs().max()) < 0.03


def test_amortised_information_gain_recovers_the_mutual_information() -> None:
    # One state with prior p, one observation with likelihood A: I(s; o) in closed form.
    p = torch.tensor([0.3, 0.7], dtype=torch.float64)
    A = torch.tensor([[0.9, 0.2], [0.1, 0.8]], dtype=torch.float64)  # (o, s)

    def model() -> None:
        s = pyro.sample("s_0_0", dist.Categorical(p))
        pyro.sample("o_0_0", dist.Categorical(A.T[s]))

    joint = A * p
    q_o = joint.sum(1)
    mutual_info = float((joint * (joint / (q_o[:, None] * p[None, :])).log()).sum())
    result = amortised_info_gain(
        model,
        None,
        obs_sites=lambda n: parse_site(n, OBS_SITE) is not None,
        num_particles=400,
        num_steps=150,
        lr=0.05,
        seed=0,
    )
    assert abs(float(result.info_gain) - mutual_info) < 0.02
    assert result.vfe_trace.shape == (150,)


def _vb_optimum(pomdp: CategoricalPOMDP, o: int) -> float:
    """Variational-Bayes fixed point of q(s) q(A) for one observation (coordinate ascent)."""
    from torch.distributions import Dirichlet, kl_divergence

    assert pomdp.pA is not None and pomdp.D is not None
    pA, D = pomdp.pA[0], pomdp.D[0]
    q = D.clone()
    for _ in range(200):
        alpha = pA.clone()
        alpha[o] += q
        e_log_a = torch.digamma(alpha[o]) - torch.digamma(alpha.sum(0))
        q = torch.softmax(torch.log(D) + e_log_a, 0)
    alpha = pA.clone()
    alpha[o] += q
    e_log_a = torch.digamma(alpha[o]) - torch.digamma(alpha.sum(0))
    kl_A = sum(
        kl_divergence(Dirichlet(alpha[:, s]), Dirichlet(pA[:, s])) for s in range(pA.shape[1])
    )
    return float((q * (q.log() - D.log())).sum() + kl_A - (q * e_log_a).sum())


@pytest.mark.filterwarnings("ignore::aif.inference.ConvergenceWarning")
@pytest.mark.parametrize(
    "method,particles,steps", [("exact", 1, 500), ("mc", 8, 500), ("mc", 1, 100)]
)
def test_fit_beliefs_learns_a_dirichlet_likelihood_in_every_mode(
    method: str, particles: int, steps: int
) -> None:
    pomdp = CategoricalPOMDP.random([3], [4], [2], seed=0, dirichlet=True)
    with pyro.settings.context(module_local_params=True):
        guide = pomdp.make_guide(T=1, learn_A=True)
    result = fit_beliefs(
        pomdp.model,
        guide,
        [[1]],
        learn_A=True,
        method=method,  # type: ignore[arg-type]
        num_particles=particles,
        num_steps=steps,
        lr=0.05,
        early_stop=False,
        final_particles=4000,
    )
    best = _vb_optimum(pomdp, 1)
    assert torch.isfinite(result.final.vfe)
    # A free energy of this family never goes below its optimum (up to Monte Carlo error) ...
    assert float(result.final.vfe) >= best - 0.02
    if steps >= 500:
        # ... and the fit gets close to it.
        assert float(result.final.vfe) <= best + 0.06
    assert result.params and any("conc_A_0" in name for name in result.params)


def test_joint_guide_reaches_exact_bayes_on_two_factors_where_mean_field_cannot() -> None:
    pomdp = CategoricalPOMDP.random([3, 2], [3, 2], [2, 2], seed=5)
    obs = [[0, 1]]
    exact = infer_states_exact(pomdp.A, obs[0], pomdp.D)
    assert exact.log_evidence is not None and exact.joint is not None
    sites = {"s_0_0": 3, "s_0_1": 2}
    joint, mean_field = JointCategorical([sites]), MeanFieldCategorical(sites)
    fits = {}
    for guide in (joint, mean_field):
        fits[type(guide).__name__] = fit_beliefs(
            pomdp.model, guide, obs, num_steps=1500, lr=0.2, lr_decay=1.0, tol=1e-8
        )
    assert abs(float(fits["JointCategorical"].final.vfe + exact.log_evidence)) <= 1e-3
    assert float((joint.joint(0) - exact.joint).abs().max()) <= 1e-3
    beliefs = fits["JointCategorical"].beliefs
    assert beliefs is not None
    assert float((beliefs["s_0_1"] - exact.qs[1]).abs().max()) <= 1e-3
    # The mean-field family cannot hold the correlated posterior: its optimum stays above.
    assert float(fits["MeanFieldCategorical"].final.vfe + exact.log_evidence) > 1e-2


def test_joint_guide_over_a_window_reaches_the_smoother_and_the_sequence_evidence() -> None:
    pomdp = CategoricalPOMDP.random([3, 2], [3, 2], [2, 2], seed=5)
    obs = [[0, 1], [2, 0], [1, 1]]
    actions = [[1, 0], [0, 1]]
    steps = [{f"s_{t}_{f}": n for f, n in enumerate(pomdp.num_states)} for t in range(3)]
    guide = JointCategorical(steps)
    result = fit_beliefs(
        pomdp.model, guide, obs, actions, num_steps=1500, lr=0.2, lr_decay=1.0, tol=1e-8
    )
    ref = smooth_states(pomdp.A, pomdp.B, pomdp.D, obs, actions)
    assert abs(float(result.final.vfe + ref.log_evidence)) <= 1e-3
    beliefs = guide.beliefs()
    for t in range(3):
        for f in range(2):
            assert float((beliefs[f"s_{t}_{f}"] - ref.qs[t][f]).abs().max()) <= 1e-3
    # The pairwise structure is held too, not only the marginals.
    assert float((guide.joint(2) - ref.joint[2]).abs().max()) <= 1e-3


def test_joint_guide_validates_its_sites() -> None:
    with pytest.raises(ValueError, match="expected at least one step"):
        JointCategorical([])
    with pytest.raises(ValueError, match="appears twice"):
        JointCategorical([{"s_0_0": 2}, {"s_0_0": 2}])
