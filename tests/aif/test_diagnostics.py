"""Tests of the diagnostics: convergence checks, labelled DataTrees and saved figures."""

from __future__ import annotations

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


def test_belief_datatree_keeps_q_itself_with_labelled_states(pomdp: CategoricalPOMDP) -> None:
    guide = MeanFieldCategorical({"s_0_0": 3, "s_0_1": 2})
    result = fit_beliefs(
        categorical_step_model(pomdp.A), guide, [1, 0], pomdp.D, num_steps=400, lr=0.1, tol=1e-6
    )
    assert result.beliefs is not None and not result.samples
    tree = belief_datatree(
        result, state_labels={"s_0_0": ["idle", "busy", "down"], "s_0_1": ["near", "far"]}
    )
    q = tree["beliefs"]["s_0_0"]
    assert q.dims == ("s_0_0_state",)
    assert list(q["s_0_0_state"].values) == ["idle", "busy", "down"]
    assert q.values == pytest.approx(guide.beliefs()["s_0_0"].numpy())
    assert float(q.sel(s_0_0_state="busy")) == pytest.approx(float(guide.beliefs()["s_0_0"][1]))
    assert "posterior" not in tree.children  # no draws were asked for, none are stored
    with pytest.raises(ValueError, match=r"state_labels\['s_0_1'\] has 1 entries; expected 2"):
        belief_datatree(result, state_labels={"s_0_1": ["only"]})


def test_filter_datatree_labels_states(filtered) -> None:
    obs, result = filtered
    tree = filter_datatree(result, obs, state_labels=[["a", "b", "c"], ["x", "y"]])
    post = tree["beliefs"]["posterior_f1"]
    assert post.dims == ("step", "state_f1") and list(post["state_f1"].values) == ["x", "y"]


def test_figures_flag_unconverged_fits() -> None:
    from aif.diagnostics import _vfe_decomposition_figure, _vfe_trace_figure

    traces = {"t=0": torch.linspace(3.0, 1.0, 20), "t=1": torch.linspace(4.0, 2.0, 20)}
    fig = _vfe_trace_figure(traces, None, torch.tensor([True, False]))
    ax = fig.axes[0]
    assert "not converged: t=1" in ax.get_title()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "t=1 (NOT converged)" in labels and "t=0" in labels
    with pytest.raises(ValueError, match="converged has 1 flags for 2 traces"):
        _vfe_trace_figure(traces, None, [True])
    ds = xr.Dataset(
        {
            "vfe_terms": (("step", "term"), torch.ones(2, 3).numpy()),
            "converged": (("step",), [1, 0]),
        },
        coords={"term": list(VFE_TERMS)},
    )
    fig = _vfe_decomposition_figure(ds)
    ax = fig.axes[0]
    assert "not converged (step 1)" in ax.get_title()
    hatched = [bar.get_hatch() for bar in ax.patches]
    assert hatched.count("//") == 3 and hatched.count(None) == 3


def test_efe_figure_names_policies_by_their_actions_and_shows_q_pi(pomdp: CategoricalPOMDP) -> None:
    from aif.diagnostics import _efe_figure, policy_labels

    assert pomdp.policies is not None
    labels = policy_labels(pomdp.policies, [["left", "right"], ["stay"]])
    assert labels[:3] == ["left>left", "left>right", "right>left"]
    assert policy_labels(torch.tensor([[[0, 1], [1, 2]]]))[0] == "u0=0,u1=1>u0=1,u1=2"
    qs = [
        torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64),
        torch.tensor([0.5, 0.5], dtype=torch.float64),
    ]
    efe = pomdp.efe(qs)
    ds = efe_decomposition(efe, pomdp.policies, pomdp.policy_posterior(efe.efe))
    fig = _efe_figure(ds, 32, [["left", "right"], ["stay"]], True)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    order = efe.efe.argsort(stable=True).tolist()
    assert ticks == [labels[i] for i in order]
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "q(pi)"
    assert "q(pi)" in [t.get_text() for t in fig.legends[0].get_texts()]
