"""Tests of the diagnostics: convergence checks, labelled DataTrees and saved figures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import arviz_stats
import pytest
import torch
import xarray as xr

from aif.diagnostics import (
    EFE_TERMS,
    VFE_TERMS,
    belief_datatree,
    efe_decomposition,
    filter_datatree,
    plot_efe_decomposition,
    plot_vfe_decomposition,
    plot_vfe_trace,
    vfe_convergence,
)
from aif.inference import (
    MeanFieldCategorical,
    categorical_predict,
    categorical_step_model,
    filter_beliefs,
    fit_beliefs,
)
from generative_models.categorical import CategoricalPOMDP


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pomdp() -> CategoricalPOMDP:
    return CategoricalPOMDP.random([3, 2], [3, 2], [2, 1], policy_len=2, seed=0)


@pytest.fixture(scope="module")
def filtered(pomdp: CategoricalPOMDP):
    sites = {f"s_0_{f}": n for f, n in enumerate(pomdp.num_states)}
    obs = [[0, 1], [2, 0]]
    return obs, filter_beliefs(
        categorical_step_model(pomdp.A),
        lambda prior: MeanFieldCategorical(
            sites, init={f"s_0_{f}": p for f, p in enumerate(prior)}
        ),
        obs,
        list(pomdp.D),
        categorical_predict(pomdp.B),
        [[1, 0]],
        num_steps=300,
        lr=0.1,
        tol=1e-7,
    )


def test_vfe_convergence_finds_where_a_trace_settles() -> None:
    settling = torch.cat([torch.linspace(5.0, 1.0, 40), torch.full((60,), 1.0)])
    report = vfe_convergence(settling, window=1, tol=1e-6)
    assert report.converged and report.first_converged_step is not None
    assert 40 <= report.first_converged_step <= 46
    assert report.final_vfe == pytest.approx(1.0)
    falling = torch.linspace(5.0, 1.0, 100)
    assert not vfe_convergence(falling, window=10, tol=1e-6).converged
    noisy = 1.0 + 0.05 * torch.randn(400, generator=torch.Generator().manual_seed(0))
    assert vfe_convergence(noisy, window=50, tol=1e-6).converged  # noise within two SE
    with pytest.raises(ValueError, match="step 3"):
        vfe_convergence([1.0, 2.0, 3.0, float("nan")])


def test_belief_datatree_has_arviz_groups_and_labelled_terms(pomdp: CategoricalPOMDP) -> None:
    guide = MeanFieldCategorical({"s_0_0": 3, "s_0_1": 2})
    result = fit_beliefs(
        categorical_step_model(pomdp.A),
        guide,
        [1, 0],
        pomdp.D,
        num_steps=400,
        lr=0.1,
        num_samples=100,
        tol=1e-6,
    )
    tree = belief_datatree(result, observed={"o_0_0": 1, "o_0_1": 0})
    assert {"posterior", "observed_data", "free_energy"} <= set(tree.children)
    post = tree["posterior"]
    assert post["s_0_0"].dims == ("chain", "draw") and post.sizes["draw"] == 100
    fe = tree["free_energy"]
    assert list(fe["term"].values) == list(VFE_TERMS)
    assert fe["vfe_trace"].dims == ("step",) and fe.sizes["step"] == result.num_steps
    assert float(fe["vfe_terms"].sel(term="vfe")) == pytest.approx(float(result.final.vfe))
    summary = arviz_stats.summary(tree, kind="stats")
    assert summary.loc["s_0_0", "mean"] == pytest.approx(
        float(result.samples["s_0_0"].double().mean())
    )


def test_filter_datatree_and_vfe_decomposition_per_step(filtered, pomdp: CategoricalPOMDP) -> None:
    obs, result = filtered
    tree = filter_datatree(result, obs)
    fe = tree["free_energy"]
    assert fe["vfe_terms"].dims == ("step", "term")
    assert fe["vfe_terms"].sel(term="complexity").values == pytest.approx(result.complexity.numpy())
    beliefs = tree["beliefs"]
    assert beliefs["posterior_f0"].dims[0] == "step" and beliefs.sizes["step"] == 2
    assert beliefs["prior_f0"].values[0] == pytest.approx(pomdp.D[0].numpy())
    assert tree["observed_data"]["obs"].values.tolist() == [[0.0, 1.0], [2.0, 0.0]]


def test_efe_decomposition_is_labelled_by_policy_and_term(pomdp: CategoricalPOMDP) -> None:
    qs = [
        torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64),
        torch.tensor([0.5, 0.5], dtype=torch.float64),
    ]
    efe = pomdp.efe(qs)
    assert pomdp.policies is not None
    ds = efe_decomposition(efe, pomdp.policies, pomdp.policy_posterior(efe.efe))
    assert ds["efe_terms"].dims == ("policy", "term")
    assert list(ds["term"].values) == list(EFE_TERMS)
    for term in EFE_TERMS:
        assert ds["efe_terms"].sel(term=term).values == pytest.approx(getattr(efe, term).numpy())
    assert ds["policies"].dims == ("policy", "horizon", "factor")
    assert float(ds["q_pi"].sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="policies have shape"):
        efe_decomposition(efe, pomdp.policies[:1])


def test_figures_are_written_to_files(tmp_path: Path, filtered, pomdp: CategoricalPOMDP) -> None:
    obs, result = filtered
    paths = [
        plot_vfe_trace(
            {f"t={t}": tr for t, tr in enumerate(result.vfe_traces)},
            tmp_path / "trace.png",
            reference=1.0,
        ),
        plot_vfe_decomposition(
            filter_datatree(result, obs)["free_energy"].to_dataset(), tmp_path / "vfe.png"
        ),
        plot_efe_decomposition(
            pomdp.efe([q for q in result.posteriors[-1].values()]), tmp_path / "sub" / "efe.svg"
        ),
    ]
    for path in paths:
        assert path.exists() and path.stat().st_size > 1000
    assert isinstance(filter_datatree(result), xr.DataTree)
