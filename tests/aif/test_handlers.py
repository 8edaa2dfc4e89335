"""Tests of the effect handlers: policies as interventions, preferences as factors, horizons."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from aif.free_energy import hidden_sites
from aif.handlers import (
    PREFERENCE_PREFIX,
    add_preferences,
    condition_on_policy,
    horizon,
    parse_site,
    set_horizon,
)


def toy_model(T_default: int = 3) -> list[int]:
    """Two-state chain with one control and one binary observation per step."""
    B = torch.tensor([[[0.9, 0.2], [0.1, 0.8]], [[0.3, 0.1], [0.7, 0.9]]])  # (u, s', s)
    A = torch.tensor([[0.8, 0.3], [0.2, 0.7]])  # (o, s)
    s = pyro.sample("s_0_0", dist.Categorical(torch.tensor([0.5, 0.5])))
    out = []
    for t in range(horizon(T_default)):
        u = pyro.sample(f"u_{t}_0", dist.Categorical(torch.ones(2) / 2))
        s = pyro.sample(f"s_{t + 1}_0", dist.Categorical(B[u, :, s]))
        out.append(int(pyro.sample(f"o_{t + 1}_0", dist.Categorical(A[:, s]))))
    return out


def test_parse_site_reads_fields_and_rejects_other_names() -> None:
    assert parse_site("o_12_3", "o_{t}_{m}") == {"t": 12, "m": 3}
    assert parse_site("pref:o_1_0", "o_{t}_{m}") is None
    assert parse_site("s_1_0", "o_{t}_{m}") is None


def test_condition_on_policy_fixes_controls_and_masks_them() -> None:
    policy = torch.tensor([[1], [0], [1]])
    with condition_on_policy(policy):
        trace = poutine.trace(toy_model).get_trace()
    trace.compute_log_prob()
    for t in range(3):
        site = trace.nodes[f"u_{t}_0"]
        assert int(site["value"]) == int(policy[t, 0])
        assert site["is_observed"]
        assert float(site["log_prob_sum"]) == 0.0  # an intervention is not evidence


def test_condition_on_policy_leaves_later_steps_to_the_model() -> None:
    with condition_on_policy(torch.tensor([[1]])):
        trace = poutine.trace(toy_model).get_trace()
    assert trace.nodes["u_0_0"]["is_observed"]
    assert not trace.nodes["u_1_0"]["is_observed"]


def test_condition_on_policy_rejects_bad_policies() -> None:
    with pytest.raises(ValueError, match=r"shape \(1, 1, 1\)"):
        condition_on_policy(torch.zeros(1, 1, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="negative"):
        condition_on_policy(torch.tensor([[-1]]))
    with (
        pytest.raises(ValueError, match="takes values 0..1"),
        condition_on_policy(torch.tensor([[5]])),
    ):
        toy_model()


def test_add_preferences_adds_one_factor_per_observation() -> None:
    log_c = torch.log(torch.tensor([0.25, 0.75]))
    with add_preferences([log_c]):
        trace = poutine.trace(toy_model).get_trace()
    trace.compute_log_prob()
    for t in range(1, 4):
        obs = trace.nodes[f"o_{t}_0"]["value"]
        pref = trace.nodes[PREFERENCE_PREFIX + f"o_{t}_0"]
        assert pref["is_observed"]
        assert torch.isclose(pref["log_prob_sum"], log_c[obs])
    # States and controls get no preference.
    assert not any(name.startswith(PREFERENCE_PREFIX + "s_") for name in trace.nodes)


def test_add_preferences_time_dependent_and_callable_forms_agree() -> None:
    table = torch.log(torch.tensor([[0.1, 0.6], [0.9, 0.4]]))  # (n_o, T): column per step
    with add_preferences([table]), pyro.poutine.trace() as tr:
        pyro.sample("o_1_0", dist.Categorical(torch.tensor([0.0, 1.0])))
    tr.trace.compute_log_prob()
    assert torch.isclose(tr.trace.nodes["pref:o_1_0"]["log_prob_sum"], table[1, 1])

    def pref(name: str, value: torch.Tensor) -> torch.Tensor | None:
        return table[value, 1] if name == "o_1_0" else None

    with add_preferences(pref), pyro.poutine.trace() as tr2:
        pyro.sample("o_1_0", dist.Categorical(torch.tensor([0.0, 1.0])))
        pyro.sample("o_2_0", dist.Categorical(torch.tensor([0.0, 1.0])))
    tr2.trace.compute_log_prob()
    assert torch.isclose(tr2.trace.nodes["pref:o_1_0"]["log_prob_sum"], table[1, 1])
    assert "pref:o_2_0" not in tr2.trace.nodes


def test_add_preferences_rejects_non_finite_and_missing_modalities() -> None:
    with (
        pytest.raises(ValueError, match="not finite"),
        add_preferences([torch.log(torch.tensor([0.0, 1.0]))]),
    ):
        pyro.sample("o_0_0", dist.Categorical(torch.tensor([1.0, 0.0])))
    with pytest.raises(ValueError, match="modality 1"), add_preferences([torch.zeros(2)]):
        pyro.sample("o_0_1", dist.Categorical(torch.tensor([1.0, 0.0])))


def test_set_horizon_changes_the_unrolled_length_and_nests() -> None:
    assert len(toy_model()) == 3
    with set_horizon(5):
        assert len(toy_model()) == 5
        with set_horizon(2):
            assert len(toy_model()) == 2
    # Hiding sites from outer traces must not hide the horizon query.
    with set_horizon(4), hidden_sites():
        trace = poutine.trace(toy_model).get_trace()
    assert "o_4_0" in trace.nodes and "o_5_0" not in trace.nodes


def test_set_horizon_validates() -> None:
    with pytest.raises(ValueError, match="T=0"):
        set_horizon(0)
    with pytest.raises(ValueError, match="default=-1"):
        horizon(-1)
