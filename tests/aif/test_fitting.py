"""Fitting agents to behaviour: the likelihood is the agent's own maths, fits recover and are seeded."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import arviz_stats
import numpy as np
import pytest
import torch

from aif.discrete_agent import DiscreteAgent
from aif.fitting import (
    AgentTemplate,
    FreeParameter,
    SubjectData,
    _action_log_prob,
    _FixedBeliefLikelihood,
    action_log_likelihood,
    agent_parameters,
    fit_agent,
    fit_choice_weights,
    stack_subjects,
)
from aif.planning import select_action
from generative_models.categorical import CategoricalPOMDP

ROOT = Path(__file__).resolve().parents[2]
F64 = torch.float64


def _model(learn: bool, seed: int = 0) -> CategoricalPOMDP:
    """Two factors (one controlled), two modalities, two-step policies."""
    base = CategoricalPOMDP.random([3, 2], [3, 2], [3, 1], policy_len=2, seed=seed)
    if not learn:
        return base
    g = torch.Generator().manual_seed(seed + 1)
    pA = [0.5 + 3.0 * torch.rand(a.shape, generator=g, dtype=F64) for a in base.A]
    pB = [0.5 + 3.0 * torch.rand(b.shape, generator=g, dtype=F64) for b in base.B]
    return CategoricalPOMDP.from_dirichlet(pA, pB, C=base.C, D=base.D, policy_len=2)


def _play(
    model: CategoricalPOMDP, n_trials: int, n_steps: int, seed: int, **settings: object
) -> tuple[SubjectData, torch.Tensor]:
    """A stochastic DiscreteAgent fed random observations; its q(pi) at every decision."""
    agent = DiscreteAgent(model, action_selection="stochastic", seed=seed, **settings)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed + 17)
    obs_all, act_all, q_pi = [], [], []
    for _ in range(n_trials):
        obs_k, act_k = [], []
        for t in range(n_steps):
            obs = torch.stack([torch.randint(n, (1,), generator=g) for n in model.num_obs], 1)
            obs_k.append(obs[0])
            agent.infer_states(obs)
            if t < n_steps - 1:
                q_pi.append(agent.infer_policies().q_pi[0])
                agent.learn()
                act_k.append(agent.sample_action()[0])
            else:
                agent.learn()
        agent.end_episode()
        obs_all.append(torch.stack(obs_k))
        act_all.append(torch.stack(act_k))
    return SubjectData(torch.stack(obs_all), torch.stack(act_all)), torch.stack(q_pi)


SETTINGS = [
    ("fpi", False, False),
    ("exact", False, False),
    ("fpi", True, False),
    ("exact", True, False),
    ("fpi", False, True),
    ("exact", True, True),
]


@pytest.mark.parametrize(("inference", "learn_A", "learn_B"), SETTINGS)
def test_likelihood_is_the_discrete_agents_policy_posterior(
    inference: str, learn_A: bool, learn_B: bool
) -> None:
    learn = learn_A or learn_B
    model = _model(learn)
    settings = dict(
        inference=inference,
        learn_A=learn_A,
        learn_B=learn_B,
        use_param_info_gain=learn,
        gamma=3.0,
        alpha=2.0,
        lr_pA=0.7,
        lr_pB=1.3,
    )
    data, q_agent = _play(model, n_trials=3, n_steps=3, seed=4, **settings)
    template = AgentTemplate.from_model(model, **settings)  # type: ignore[arg-type]
    batch = stack_subjects(data)
    params = agent_parameters(template, [], {}, 1)
    result = action_log_likelihood(template, params, batch, return_q_pi=True)
    assert result.q_pi is not None
    q_fit = result.q_pi[0][batch.mask[0]]
    torch.testing.assert_close(q_fit, q_agent, atol=1e-12, rtol=0)
    # Each decision's log-probability is that of the agent's own draw rule at its q(pi).
    acts = batch.actions[0][batch.mask[0]]
    expected = _action_log_prob(q_agent, acts, torch.full((len(acts),), 2.0, dtype=F64), template)
    torch.testing.assert_close(result.log_prob[0][batch.mask[0]], expected)
    assert float(result.log_prob[0][~batch.mask[0]].abs().max()) == 0.0


@pytest.mark.parametrize("sampling", ["full", "marginal"])
def test_action_probabilities_are_those_select_action_draws_from(sampling: str) -> None:
    model = CategoricalPOMDP.random([3, 2], [2], [3, 2], policy_len=2, seed=3)
    template = AgentTemplate.from_model(model, sampling=sampling)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    q_pi = torch.softmax(2.0 * torch.randn(model.num_policies, generator=g, dtype=F64), 0)
    alpha = 1.7
    n = 40_000
    draws = select_action(
        q_pi.expand(n, -1),
        template.policies,
        "stochastic",
        torch.Generator().manual_seed(1),
        sampling=sampling,  # type: ignore[arg-type]
        alpha=alpha,
        num_controls=template.num_controls,
    )
    actions = torch.tensor([[u, v] for u in range(3) for v in range(2)])
    probs = _action_log_prob(
        q_pi.expand(len(actions), -1),
        actions,
        torch.full((len(actions),), alpha, dtype=F64),
        template,
    ).exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    freq = torch.tensor([float(((draws == a).all(-1)).double().mean()) for a in actions], dtype=F64)
    # Binomial standard error at n draws: at most 0.0025.
    assert float((freq - probs).abs().max()) < 0.01


def _tmaze_like() -> tuple[CategoricalPOMDP, list[FreeParameter]]:
    model = CategoricalPOMDP.random([3, 2], [3, 2], [3, 1], policy_len=2, seed=5)
    assert model.policies is not None
    C_dir = [torch.tensor([0.0, 1.0, -1.0], dtype=F64), torch.zeros(2, dtype=F64)]
    E_dir = (model.policies[:, 0, 0] == 2).to(F64)
    params = [
        FreeParameter("gamma", "gamma", math.log(2.0), 0.5),
        FreeParameter("pref", "C", 1.0, 0.5, direction=C_dir),
        FreeParameter("habit", "E", 0.0, 1.0, direction=E_dir),
        FreeParameter("alpha", "alpha", 0.0, 0.3),
    ]
    return model, params


def test_cached_beliefs_give_the_same_likelihood_as_the_step_by_step_loop() -> None:
    model, params = _tmaze_like()
    template = AgentTemplate.from_model(model, inference="exact")
    subjects = [_play(model, 3 + i, 3, seed=i, inference="exact")[0] for i in range(3)]
    batch = stack_subjects(subjects)
    values = {
        "gamma": torch.tensor([0.5, 2.0, 7.0], dtype=F64),
        "pref": torch.tensor([-1.0, 0.3, 2.5], dtype=F64),
        "habit": torch.tensor([1.2, 0.0, -0.7], dtype=F64),
        "alpha": torch.tensor([0.8, 1.0, 3.0], dtype=F64),
    }
    agent_params = agent_parameters(template, params, values, 3)
    slow = action_log_likelihood(template, agent_params, batch).log_prob
    fast = _FixedBeliefLikelihood(template, params, batch)(agent_params, values).log_prob
    torch.testing.assert_close(fast, slow, atol=1e-10, rtol=0)


def test_padding_trials_changes_nothing() -> None:
    model, params = _tmaze_like()
    template = AgentTemplate.from_model(model, learn_A=False)
    short, _ = _play(model, 2, 3, seed=1)
    long, _ = _play(model, 5, 3, seed=2)
    batch = stack_subjects([replace(short, subject="a"), long])
    assert batch.mask.shape == (2, 5, 3) and not bool(batch.mask[0, 2:].any())
    alone = action_log_likelihood(
        template, agent_parameters(template, [], {}, 1), stack_subjects(short)
    ).log_prob.sum()
    both = action_log_likelihood(template, agent_parameters(template, [], {}, 2), batch).log_prob
    assert float(both[0].sum()) == pytest.approx(float(alone), abs=1e-12)
    assert batch.subjects == ["a", "1"]


def _population(n: int, seed: int) -> tuple[list[SubjectData], dict[str, torch.Tensor]]:
    model, _ = _tmaze_like()
    g = torch.Generator().manual_seed(seed)
    truth = {
        "gamma": torch.exp(math.log(2.0) + 0.5 * torch.randn(n, generator=g, dtype=F64)),
        "pref": 1.0 + 0.5 * torch.randn(n, generator=g, dtype=F64),
    }
    C_dir = [torch.tensor([0.0, 1.0, -1.0], dtype=F64), torch.zeros(2, dtype=F64)]
    assert model.C is not None
    subjects = []
    for i in range(n):
        C = [c + float(truth["pref"][i]) * d for c, d in zip(model.C, C_dir, strict=True)]
        m = CategoricalPOMDP(model.A, model.B, C=C, D=model.D, policy_len=2)
        data, _ = _play(m, 8, 3, seed=100 + i, gamma=float(truth["gamma"][i]), alpha=1.0)
        subjects.append(replace(data, subject=f"s{i}"))
    return subjects, truth


def test_nuts_fit_is_a_seeded_arviz_datatree() -> None:
    model, params = _tmaze_like()
    template = AgentTemplate.from_model(model, alpha=1.0)
    subjects, _ = _population(3, seed=0)
    kwargs = dict(
        method="nuts",
        num_samples=10,
        num_warmup=10,
        num_chains=2,
        max_tree_depth=4,
        log_likelihood=True,
    )
    first = fit_agent(template, params[:2], subjects, seed=3, **kwargs)  # type: ignore[arg-type]
    again = fit_agent(template, params[:2], subjects, seed=3, **kwargs)  # type: ignore[arg-type]
    tree = first.tree
    for group in ("posterior", "sample_stats", "observed_data", "constant_data", "log_likelihood"):
        assert group in tree.children, group
    post = tree["posterior"].to_dataset()
    assert post["gamma"].dims == ("chain", "draw", "subject")
    assert list(post["subject"].values) == ["s0", "s1", "s2"]
    assert post["gamma"].shape == (2, 10, 3) and bool((post["gamma"] > 0).all())
    assert set(tree["sample_stats"].data_vars) >= {"lp", "diverging", "step_size"}
    assert tree["log_likelihood"]["actions"].dims == ("chain", "draw", "subject", "trial", "step")
    summary = arviz_stats.summary(tree)
    assert {"mean", "ess_bulk", "r_hat"} <= set(summary.columns)
    assert len(summary) == 6  # two parameters x three subjects
    np.testing.assert_array_equal(post["gamma"].values, again.tree["posterior"]["gamma"].values)
    # The chains are seeded apart.
    assert not np.array_equal(post["gamma"].values[0], post["gamma"].values[1])


def test_hierarchical_svi_returns_population_and_subject_values() -> None:
    model, params = _tmaze_like()
    template = AgentTemplate.from_model(model, alpha=1.0)
    subjects, _ = _population(4, seed=1)
    fit = fit_agent(
        template,
        params[:2],
        subjects,
        method="svi",
        hierarchical=True,
        num_steps=60,
        num_samples=50,
        seed=0,
    )
    post = fit.tree["posterior"].to_dataset()
    assert post["gamma"].dims == ("chain", "draw", "subject")
    assert post["gamma_mu"].dims == ("chain", "draw")
    assert bool((post["gamma_sigma"] > 0).all())
    # Subject values are the population's non-centred transform of z.
    z = fit.samples["gamma_z"]
    expected = torch.exp(
        fit.samples["gamma_mu"].unsqueeze(-1) + fit.samples["gamma_sigma"].unsqueeze(-1) * z
    )
    np.testing.assert_allclose(post["gamma"].values, expected.numpy(), rtol=1e-12)
    assert fit.losses is not None and fit.tree["optimisation"]["loss"].shape == (60,)
    assert float(fit.losses[-10:].mean()) < float(fit.losses[:10].mean())


def test_learning_rate_and_prior_counts_are_fitted_through_learning() -> None:
    model = _model(learn=True, seed=2)
    assert model.pA is not None
    template = AgentTemplate.from_model(
        model, learn_A=True, use_param_info_gain=True, gamma=2.0, alpha=1.0
    )
    direction = [torch.ones_like(p) for p in model.pA]
    params = [
        FreeParameter("lr", "lr_pA", 0.0, 0.5),
        FreeParameter("counts", "pA", 0.0, 0.5, direction=direction),
    ]
    data, _ = _play(
        model, 4, 3, seed=0, learn_A=True, use_param_info_gain=True, gamma=2.0, alpha=1.0
    )
    batch = stack_subjects(data)
    # The likelihood moves with both, so both have gradients.
    values = {
        "lr": torch.tensor([0.8], dtype=F64, requires_grad=True),
        "counts": torch.tensor([0.5], dtype=F64, requires_grad=True),
    }
    lp = action_log_likelihood(template, agent_parameters(template, params, values, 1), batch)
    lp.log_prob.sum().backward()
    assert values["lr"].grad is not None and float(values["lr"].grad.abs()) > 0
    assert values["counts"].grad is not None and float(values["counts"].grad.abs()) > 0
    fit = fit_agent(template, params, data, method="svi", num_steps=15, num_samples=10, seed=0)
    assert fit.tree["posterior"]["lr"].shape == (1, 10, 1)


@pytest.mark.slow
def test_nuts_recovers_the_t_maze_subjects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    from fit_recovery import run_study

    rec = run_study(n_subjects=8, n_trials=40, num_samples=150, num_warmup=150, num_chains=1)
    # Central 90% width of each prior (the population): the data must narrow every interval.
    z = 1.6449
    prior_width = {
        "gamma": 3.0 * (math.exp(z * 0.5) - math.exp(-z * 0.5)),
        "reward_pref": 2 * z * 0.4,
        "cue_habit": 2 * z * 0.75,
    }
    for name, width in prior_width.items():
        assert rec.coverage(name) >= 0.6, (name, rec.coverage(name))
        assert float(np.mean(rec.upper[name] - rec.lower[name])) < 0.85 * width, name
    # Eight subjects pin down correlations only where the population is wide against the
    # posterior: gamma and the habit (the preference's population sd, 0.4, is not).
    for name in ("gamma", "cue_habit"):
        assert rec.correlation(name) > 0.6, (name, rec.correlation(name))
    for module in ("fit_recovery", "discrete_agent_tmaze"):
        sys.modules.pop(module, None)


def _logit_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, 4, 2, generator=g, dtype=F64)
    mask = torch.rand(n, 4, generator=g) > 0.25
    mask[:, 0] = True
    w = torch.tensor([1.5, -0.8], dtype=F64)
    logits = (features * w).sum(-1).masked_fill(~mask, -math.inf)
    choices = torch.multinomial(torch.softmax(logits, -1), 1, generator=g)[:, 0]
    features[~mask] = float("nan")  # infeasible candidates may carry anything
    return features, choices, mask, w


def test_choice_weights_are_recovered_by_nuts() -> None:
    features, choices, mask, w = _logit_data(600, seed=0)
    fit = fit_choice_weights(
        features,
        choices,
        mask,
        terms=["pragmatic", "info_gain"],
        num_samples=100,
        num_warmup=100,
        num_chains=1,
        max_tree_depth=5,
        seed=0,
    )
    post = fit.tree["posterior"]["w"]
    assert post.dims == ("chain", "draw", "term")
    assert list(post["term"].values) == ["pragmatic", "info_gain"]
    mean = post.mean(("chain", "draw")).values
    sd = post.std(("chain", "draw")).values
    assert np.all(np.abs(mean - w.numpy()) < 3 * sd + 0.05), (mean, sd)
    assert fit.tree["log_likelihood"]["choice"].shape == (1, 100, 600)
    assert fit.tree["observed_data"]["choice"].shape == (600,)


def test_choice_weights_with_a_precision_prior_by_svi() -> None:
    g = torch.Generator().manual_seed(2)
    n = 500
    features = torch.rand(n, 3, 2, generator=g, dtype=F64)
    w = torch.tensor([3.0, 1.0], dtype=F64)  # precision 4, relative weights (0.75, 0.25)
    choices = torch.multinomial(torch.softmax((features * w).sum(-1), -1), 1, generator=g)[:, 0]
    fit = fit_choice_weights(
        features,
        choices,
        prior="precision",
        method="svi",
        num_steps=300,
        lr=0.05,
        num_samples=200,
        precision_loc=math.log(3.0),
        seed=0,
    )
    post = fit.tree["posterior"].to_dataset()
    weights = post["weights"].mean(("chain", "draw")).values
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-9)
    assert weights[0] > weights[1]
    np.testing.assert_allclose(
        post["w"].values, (post["precision"].values[..., None] * post["weights"].values), rtol=1e-12
    )


def test_errors_name_the_offending_value() -> None:
    obs = torch.zeros(2, 3, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"actions has shape \(2, 1, 2\).*expected \(2, 2, F\)"):
        SubjectData(obs, torch.zeros(2, 1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="obs has shape"):
        SubjectData(obs.float(), torch.zeros(2, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="needs a direction"):
        FreeParameter("c", "C")
    model, params = _tmaze_like()
    template = AgentTemplate.from_model(model)
    bad = SubjectData(
        obs, torch.full((2, 2, 2), 0, dtype=torch.long).index_fill(2, torch.tensor([1]), 1)
    )
    with pytest.raises(ValueError, match=r"actions of factor 1 hold control 1; expected 0..0"):
        fit_agent(template, params[:1], bad, num_samples=1, num_warmup=0, num_chains=1)
    with pytest.raises(ValueError, match="direction\\[0\\] has shape \\(2,\\); expected \\(3,\\)"):
        fit_agent(
            template,
            [FreeParameter("c", "C", direction=[torch.zeros(2), torch.zeros(2)])],
            SubjectData(obs, torch.zeros(2, 2, 2, dtype=torch.long)),
        )
    features, choices, mask, _ = _logit_data(10, seed=1)
    mask[3, choices[3]] = False
    with pytest.raises(ValueError, match="decision 3 chose action"):
        fit_choice_weights(features, choices, mask)


def test_recovery_program_runs_and_is_seeded() -> None:
    command = [
        sys.executable,
        str(ROOT / "examples" / "fit_recovery.py"),
        "--subjects",
        "3",
        "--trials",
        "4",
        "--samples",
        "10",
        "--warmup",
        "10",
        "--chains",
        "1",
        "--seed",
        "2",
        "--max-tree-depth",
        "3",
    ]
    first = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    again = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    table = first.stdout.strip().splitlines()
    assert table[0].startswith("3 subjects x 4 T-maze trials")
    assert [line.split()[0] for line in table[2:5]] == ["gamma", "reward_pref", "cue_habit"]
    assert table[1:] == again.stdout.strip().splitlines()[1:]  # only the timing may differ


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fits_run_on_cuda() -> None:
    model, params = _tmaze_like()
    template = AgentTemplate.from_model(model, alpha=1.0)
    subjects, _ = _population(2, seed=0)
    fit = fit_agent(
        template, params[:2], subjects, num_samples=5, num_warmup=5, num_chains=1, device="cuda"
    )
    assert fit.samples["gamma"].device.type == "cuda"
    assert bool(np.isfinite(fit.tree["posterior"].to_dataset()["gamma"].values).all())
    features, choices, mask, _ = _logit_data(50, seed=0)
    out = fit_choice_weights(
        features, choices, mask, num_samples=5, num_warmup=5, num_chains=1, device="cuda"
    )
    assert out.samples["w"].device.type == "cuda"


@pytest.mark.slow
def test_learning_recovery_program_runs() -> None:
    command = [
        sys.executable,
        str(ROOT / "examples" / "fit_recovery.py"),
        "--learning",
        "--subjects",
        "2",
        "--trials",
        "3",
        "--steps",
        "3",
        "--samples",
        "5",
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("2 learning subjects x 3 T-maze trials, svi")
    assert lines[2].split()[0] == "lr_pA"


@pytest.mark.slow
def test_fitting_page_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    page = (ROOT / "docs" / "fitting.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python[^\n]*\n(.*?)^```", page, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 6
    monkeypatch.chdir(ROOT)  # the page imports the examples from ./examples
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict[str, object] = {"__name__": "fitting_page"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"fitting.md[block {i}]", "exec"), namespace)  # noqa: S102
    assert int(namespace["fit"].tree["sample_stats"]["diverging"].sum()) == 0  # type: ignore[attr-defined]
    for name in ("fit_recovery", "discrete_agent_tmaze"):
        sys.modules.pop(name, None)
