"""Scenario configuration: presets, validation errors naming field and range, immutability."""

from __future__ import annotations

import pydantic
import pytest

from environments import ScenarioConfig


def test_paper_preset_matches_the_paper() -> None:
    cfg = ScenarioConfig.preset("paper")
    kinds = [s.kind for s in cfg.servers]
    assert kinds.count("cloud") == 1 and kinds.count("edge") == 4
    assert cfg.tasks_per_episode == 100 and cfg.t_max == 15.0
    assert not cfg.partial_observability.enabled
    assert set(cfg.terminals) == {"phone", "vehicle", "uav", "pc"}


def test_large_preset_is_large() -> None:
    cfg = ScenarioConfig.preset("large")
    assert cfg.n_servers >= 40 and cfg.n_terminals >= 5000


def test_overrides_apply_and_validate() -> None:
    cfg = ScenarioConfig.preset("paper", t_max=4.0, partial_observability={"noise_std": 0.1})
    assert cfg.t_max == 4.0 and cfg.partial_observability.noise_std == 0.1
    assert cfg.with_overrides(tasks_per_episode=7).tasks_per_episode == 7


@pytest.mark.parametrize(
    "override,field,bounds",
    [
        ({"t_max": -1.0}, "t_max", "(0.0, 3600.0]"),
        ({"t_max": 0.0}, "t_max", "(0.0, 3600.0]"),
        ({"episode_window_s": 0.0}, "episode_window_s", "(0.0, 10000000.0]"),
        ({"tasks_per_episode": 0}, "tasks_per_episode", "[1, 1000000]"),
        ({"partial_observability": {"noise_std": 2.0}}, "noise_std", "[0.0, 1.0]"),
        ({"radio": {"shadowing_std_db": 50.0}}, "shadowing_std_db", "[0.0, 20.0]"),
    ],
)
def test_invalid_value_names_field_and_range(override: dict, field: str, bounds: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        ScenarioConfig.preset("paper", **override)
    msg = str(err.value)
    assert field in msg and bounds in msg


def test_wrong_type_names_field() -> None:
    with pytest.raises(pydantic.ValidationError, match="t_max"):
        ScenarioConfig.preset("paper", t_max="soon")


def test_unknown_field_and_preset_are_rejected() -> None:
    with pytest.raises(ValueError, match="tmax"):
        ScenarioConfig.preset("paper", tmax=3.0)
    with pytest.raises(ValueError, match="huge"):
        ScenarioConfig.preset("huge")


def test_frozen() -> None:
    cfg = ScenarioConfig.preset("paper")
    with pytest.raises(pydantic.ValidationError):
        cfg.t_max = 3.0  # type: ignore[misc]
