"""Tests of ``vfe`` (exact and Monte Carlo) and ``efe_mc`` against closed forms."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from aif.exact import infer_states_exact, vfe_categorical
from aif.expected_free_energy import efe_mc, efe_mc_detail
from aif.free_energy import vfe
from aif.handlers import add_preferences
from aif.inference import MeanFieldCategorical, categorical_step_model
from aif.maths import log_softmax
from aif.planning import efe_categorical
from generative_models.categorical import CategoricalPOMDP


@pytest.fixture(scope="module")
def pomdp() -> CategoricalPOMDP:
    return CategoricalPOMDP.random([3, 2], [3, 4], [2, 2], policy_len=2, seed=3)


def _random_beliefs(sizes: list[int], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.softmax(2 * torch.randn(n, generator=gen, dtype=torch.float64), 0) for n in sizes]


def test_exact_vfe_matches_the_closed_form_for_any_mean_field_belief(
    pomdp: CategoricalPOMDP,
) -> None:
    model = categorical_step_model(pomdp.A)
    obs = [2, 1]
    for seed in range(3):
        q = _random_beliefs(pomdp.num_states, seed)
        guide = MeanFieldCategorical(
            {f"s_0_{f}": n for f, n in enumerate(pomdp.num_states)},
            init={f"s_0_{f}": q[f] for f in range(2)},
        )
        got = vfe(model, guide, obs, pomdp.D)
        want = vfe_categorical(q, pomdp.D, pomdp.A, obs)
        assert torch.allclose(got.vfe, want.vfe, atol=1e-10)
        assert torch.allclose(got.accuracy, want.accuracy, atol=1e-10)
        assert torch.allclose(got.complexity, want.complexity, atol=1e-10)
        assert torch.allclose(got.vfe, got.complexity - got.accuracy, atol=1e-12)


def test_exact_vfe_at_the_posterior_is_minus_log_evidence() -> None:
    pomdp = CategoricalPOMDP.random([4], [3, 2], [1], seed=5)
    obs = [1, 0]
    post = infer_states_exact(pomdp.A, obs, pomdp.D)
    guide = MeanFieldCategorical({"s_0_0": 4}, init={"s_0_0": post.qs[0]})
    result = vfe(categorical_step_model(pomdp.A), guide, obs, pomdp.D)
    assert post.log_evidence is not None
    assert abs(float(result.vfe.detach() + post.log_evidence)) < 1e-10


def test_exact_vfe_sums_out_model_side_enumerated_sites() -> None:
    # With an empty guide and the state enumerated in the model, F = -log p(o).
    pomdp = CategoricalPOMDP.random([3, 2], [3], [1, 1], seed=2)
    model = categorical_step_model(pomdp.A)

    def enumerated(obs: list[int], prior: list[torch.Tensor]) -> None:
        pyro.infer.config_enumerate(model, "parallel")(obs, prior)

    def empty_guide(obs: list[int], prior: list[torch.Tensor]) -> None:
        return None

    got = vfe(enumerated, empty_guide, [2], pomdp.D)
    want = infer_states_exact(pomdp.A, [2], pomdp.D).log_evidence
    assert want is not None
    assert abs(float(got.vfe + want)) < 1e-10
    assert abs(float(got.complexity)) < 1e-12


def test_monte_carlo_vfe_converges_to_the_exact_value(pomdp: CategoricalPOMDP) -> None:
    model = categorical_step_model(pomdp.A)
    q = _random_beliefs(pomdp.num_states, 7)
    guide = MeanFieldCategorical(
        {f"s_0_{f}": n for f, n in enumerate(pomdp.num_states)},
        init={f"s_0_{f}": q[f] for f in range(2)},
    )
    exact = vfe(model, guide, [0, 3], pomdp.D)

    def mean_error(n: int) -> float:
        errs = [
            abs(
                float(
                    vfe(model, guide, [0, 3], pomdp.D, method="mc", num_particles=n, seed=s).vfe
                    - exact.vfe
                )
            )
            for s in range(8)
        ]
        return sum(errs) / len(errs)

    small, large = mean_error(20), mean_error(4000)
    # Error ~ 1/sqrt(n): 200 times the particles should cut it by about 14.
    assert large < small / 4
    assert large < 0.1
    mc = vfe(model, guide, [0, 3], pomdp.D, method="mc", num_particles=50, seed=1)
    assert torch.allclose(mc.vfe, mc.complexity - mc.accuracy, atol=1e-12)
    again = vfe(model, guide, [0, 3], pomdp.D, method="mc", num_particles=50, seed=1)
    assert torch.equal(mc.vfe, again.vfe)


def test_vfe_runs_on_the_pomdp_program_and_its_guide(pomdp: CategoricalPOMDP) -> None:
    obs = [[1, 2]]
    with pyro.settings.context(module_local_params=True):
        guide = pomdp.make_guide(T=1)
    got = vfe(pomdp.model, guide, obs)
    q = [torch.softmax(guide.logits(f)[0].detach(), -1) for f in range(2)]
    want = vfe_categorical(q, pomdp.D, pomdp.A, obs[0])
    assert torch.allclose(got.vfe, want.vfe, atol=1e-10)


def test_exact_vfe_refuses_continuous_guides() -> None:
    def model() -> None:
        x = pyro.sample("x", dist.Normal(0.0, 1.0))
        pyro.sample("y", dist.Normal(x, 1.0), obs=torch.tensor(0.3))

    def guide() -> None:
        pyro.sample("x", dist.Normal(0.1, 0.9))

    with pytest.raises(ValueError, match=r"x \(Normal\)"):
        vfe(model, guide)
    with pytest.raises(ValueError, match="method='bogus'"):
        vfe(model, guide, method="bogus")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Expected free energy
# --------------------------------------------------------------------------------------------


def _efe_mc(pomdp: CategoricalPOMDP, qs: list[torch.Tensor], n: int, seed: int = 0, **kw: object):
    assert pomdp.C is not None
    return efe_mc(
        pomdp.model,
        pomdp.policies,
        obs=None,
        prior=qs,
        T=pomdp.policy_len + 1,
        observe_initial=False,
        log_C=[log_softmax(c, dim=0) for c in pomdp.C],
        num_particles=n,
        seed=seed,
        **kw,
    )


def test_mc_efe_converges_to_the_exact_efe(pomdp: CategoricalPOMDP) -> None:
    qs = _random_beliefs(pomdp.num_states, 11)
    exact = pomdp.efe(qs)
    errors = {}
    for n in (50, 4000):
        mc = _efe_mc(pomdp, qs, n)
        errors[n] = float((mc.efe - exact.efe).abs().mean())
        # Both decompositions hold for every estimate, not only in the limit.
        assert torch.allclose(mc.risk + mc.ambiguity, mc.efe, atol=1e-10)
        assert torch.allclose(-mc.pragmatic_value - mc.state_info_gain, mc.efe, atol=1e-10)
    assert errors[4000] < errors[50]
    assert errors[4000] < 0.03
    mc = _efe_mc(pomdp, qs, 4000)
    for field in ("risk", "ambiguity", "pragmatic_value", "state_info_gain"):
        assert float((getattr(mc, field) - getattr(exact, field)).abs().max()) < 0.06, field


def test_mc_efe_per_modality_matches_the_per_modality_exact_form(pomdp: CategoricalPOMDP) -> None:
    qs = _random_beliefs(pomdp.num_states, 4)
    exact = pomdp.efe(qs, info_gain="per_modality")
    mc = _efe_mc(pomdp, qs, 4000, joint_outcomes=False)
    assert float((mc.efe - exact.efe).abs().max()) < 0.05
    # The joint score differs from the per-modality one, so the option matters.
    joint = pomdp.efe(qs)
    assert float((joint.state_info_gain - exact.state_info_gain).abs().max()) > 1e-3


def test_mc_efe_switches_terms_like_the_exact_planner(pomdp: CategoricalPOMDP) -> None:
    qs = _random_beliefs(pomdp.num_states, 5)
    full = _efe_mc(pomdp, qs, 500)
    no_ig = _efe_mc(pomdp, qs, 500, use_states_info_gain=False)
    no_util = _efe_mc(pomdp, qs, 500, use_utility=False)
    assert torch.allclose(no_ig.efe, -full.pragmatic_value)
    assert torch.allclose(no_util.efe, -full.state_info_gain)
    assert torch.allclose(no_ig.state_info_gain, full.state_info_gain)  # still reported
    exact = efe_categorical(
        qs, pomdp.A, pomdp.B, pomdp.C, pomdp.policies, use_states_info_gain=False
    )
    assert float((no_ig.efe - exact.efe).abs().max()) < 0.1


def test_mc_efe_is_reproducible_and_detail_sums_to_the_total(pomdp: CategoricalPOMDP) -> None:
    qs = _random_beliefs(pomdp.num_states, 6)
    a, b = _efe_mc(pomdp, qs, 300, seed=9), _efe_mc(pomdp, qs, 300, seed=9)
    assert torch.equal(a.efe, b.efe)
    c = _efe_mc(pomdp, qs, 300, seed=10)
    assert not torch.equal(a.efe, c.efe)
    assert pomdp.C is not None
    detail = efe_mc_detail(
        pomdp.model,
        pomdp.policies[0],
        obs=None,
        prior=qs,
        T=pomdp.policy_len + 1,
        observe_initial=False,
        log_C=[log_softmax(x, dim=0) for x in pomdp.C],
        num_particles=300,
        seed=9,
    )
    assert detail.groups == ["t=1", "t=2"]  # one group per future step
    assert torch.isclose(-(detail.pragmatic_value + detail.state_info_gain).sum(), a.efe[0])


def test_svi_information_gain_matches_the_exact_one_on_a_one_step_model() -> None:
    pomdp = CategoricalPOMDP.random([3], [4, 2], [2], policy_len=1, seed=1)
    qs = [torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)]
    exact = pomdp.efe(qs)
    mc = _efe_mc(pomdp, qs, 500, info_gain="svi", svi_steps=200, svi_lr=0.05)
    assert float((mc.state_info_gain - exact.state_info_gain).abs().max()) < 0.05
    assert torch.allclose(mc.risk + mc.ambiguity, mc.efe, atol=1e-10)


def test_efe_mc_needs_sampled_observation_sites(pomdp: CategoricalPOMDP) -> None:
    with pytest.raises(ValueError, match="no sample site"):
        efe_mc(
            pomdp.model,
            pomdp.policies,
            obs_sites="y_{t}",
            T=2,
            observe_initial=False,
            num_particles=10,
        )
    with pytest.raises(ValueError, match="is observed"):
        efe_mc(pomdp.model, None, obs=[[0, 1], [1, 1]], num_particles=10)


def test_mc_efe_scores_each_future_step_with_its_own_column_of_C() -> None:
    pomdp = CategoricalPOMDP.random([3], [3], [2], policy_len=2, seed=0)
    # Two very different columns: step 0 prefers outcome 0, step 1 prefers outcome 2.
    pomdp.C = [torch.tensor([[3.0, -2.0], [0.0, 0.0], [-2.0, 3.0]], dtype=torch.float64)]
    qs = [torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)]
    exact = pomdp.efe(qs)
    mc = _efe_mc(pomdp, qs, 4000)
    assert float((mc.pragmatic_value - exact.pragmatic_value).abs().max()) < 0.05
    assert float((mc.efe - exact.efe).abs().max()) < 0.05
    # The same table read one step late gives other numbers: the check can fail.
    late = efe_mc(
        pomdp.model,
        pomdp.policies,
        obs=None,
        prior=qs,
        T=3,
        observe_initial=False,
        log_C={
            "o_1_0": log_softmax(pomdp.C[0][:, 1], dim=0),
            "o_2_0": log_softmax(pomdp.C[0][:, 1], dim=0),
        },
        num_particles=4000,
    )
    assert float((late.pragmatic_value - exact.pragmatic_value).abs().max()) > 0.3


def test_add_preferences_counts_columns_from_the_first_future_step() -> None:
    log_c = torch.log_softmax(torch.tensor([[2.0, -1.0], [0.0, 3.0]], dtype=torch.float64), 0)
    handler = add_preferences([log_c], first_step=1)
    assert torch.allclose(handler._fn("o_1_0", torch.tensor(0)), log_c[0, 0])
    assert torch.allclose(handler._fn("o_2_0", torch.tensor(1)), log_c[1, 1])
    assert torch.allclose(handler._fn("o_7_0", torch.tensor(1)), log_c[1, 1])  # last repeats
    with pytest.raises(ValueError, match="before first_step=1"):
        handler._fn("o_0_0", torch.tensor(0))


@pytest.mark.filterwarnings("ignore::aif.inference.ConvergenceWarning")
def test_mixed_vfe_enumerates_states_and_samples_dirichlet_tables() -> None:
    pomdp = CategoricalPOMDP.random([3], [4], [2], seed=1, dirichlet=True)
    with pyro.settings.context(module_local_params=True):
        guide = pomdp.make_guide(T=1, learn_A=True)
    with pytest.raises(ValueError, match="without enumerable support: A_0"):
        vfe(pomdp.model, guide, [[2]], learn_A=True)
    a = vfe(pomdp.model, guide, [[2]], learn_A=True, method="mixed", num_particles=2000, seed=3)
    b = vfe(pomdp.model, guide, [[2]], learn_A=True, method="mixed", num_particles=2000, seed=3)
    assert torch.equal(a.vfe, b.vfe)
    assert float(a.vfe) == pytest.approx(float(a.complexity - a.accuracy), abs=1e-10)
    mc = vfe(pomdp.model, guide, [[2]], learn_A=True, method="mc", num_particles=20000, seed=4)
    assert float(a.vfe) == pytest.approx(float(mc.vfe), abs=0.05)
