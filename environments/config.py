"""Scenario settings of the offloading world: one validated, frozen pydantic model and its presets.

Values the paper does not publish are marked ``assumed`` in the field descriptions and docs.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "PRESETS",
    "NetworkConfig",
    "PartialObservabilityConfig",
    "RadioConfig",
    "ScenarioConfig",
    "ServerConfig",
    "TERMINAL_KINDS",
    "TerminalKindConfig",
]

#: Terminal kinds of the paper (mobile: phone, vehicle, UAV; fixed: PC), in observation order.
TERMINAL_KINDS: tuple[str, ...] = ("phone", "vehicle", "uav", "pc")


class _Checked(BaseModel):
    """Base model: frozen, no unknown keys, numeric ranges checked with a message naming both."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: field -> (low, high, low_inclusive, high_inclusive)
    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {}

    @model_validator(mode="after")
    def _check_ranges(self) -> Any:
        for field, (lo, hi, lo_inc, hi_inc) in self._RANGES.items():
            value = getattr(self, field)
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                ok = (
                    isinstance(v, int | float)
                    and math.isfinite(v)
                    and (v >= lo if lo_inc else v > lo)
                    and (v <= hi if hi_inc else v < hi)
                )
                if not ok:
                    left, right = ("[" if lo_inc else "("), ("]" if hi_inc else ")")
                    raise ValueError(
                        f"{type(self).__name__}.{field} = {value!r} is outside the allowed "
                        f"range {left}{lo}, {hi}{right}"
                    )
        return self


class ServerConfig(_Checked):
    """One cloud or edge server: site, radio resources, GPU profile and parallel limit."""

    kind: Literal["cloud", "edge"]
    x_m: float = Field(description="site x (m); clouds sit far outside the area")
    y_m: float = Field(description="site y (m)")
    height_m: float = Field(default=25.0, description="antenna / platform height (m), assumed")
    aerial: bool = Field(default=False, description="UAV-mounted edge server (air end of a link)")
    profile: str = Field(description="LLM cost profile name or JSON path")
    uplink_hz: float = Field(default=20e6, description="uplink bandwidth pool (Hz), assumed")
    downlink_hz: float = Field(default=20e6, description="downlink bandwidth pool (Hz), assumed")
    parallel_limit: int = Field(default=2, description="tasks run at once before queueing, assumed")

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "height_m": (0.0, 10_000.0, True, True),
        "uplink_hz": (0.0, 10e9, False, True),
        "downlink_hz": (0.0, 10e9, False, True),
        "parallel_limit": (1, 64, True, True),
    }


class TerminalKindConfig(_Checked):
    """Population of one terminal kind."""

    count: int = Field(description="terminals of this kind")
    speed_mps: float = Field(description="speed (m/s), assumed")
    height_m: float = Field(default=1.5, description="height (m); UAV altitude, assumed")
    tx_power_dbm: float = Field(default=23.0, description="uplink power, 3GPP power class 3")
    noise_figure_db: float = Field(
        default=7.0, description="receiver noise figure (dB), typical terminal 7-9 dB"
    )

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "count": (0, 1_000_000, True, True),
        "speed_mps": (0.0, 200.0, True, True),
        "height_m": (0.0, 10_000.0, True, True),
        "tx_power_dbm": (-30.0, 50.0, True, True),
        "noise_figure_db": (0.0, 30.0, True, True),
    }


class RadioConfig(_Checked):
    """Channel models and link budget."""

    carrier_ghz: float = Field(default=3.5, description="carrier frequency (GHz), assumed (NR n78)")
    g2g_model: Literal["paper", "uma", "umi"] = Field(
        default="paper", description="ground-to-ground"
    )
    a2g_environment: Literal["suburban", "urban", "dense_urban"] = Field(
        default="urban", description="Al-Hourani environment, assumed"
    )
    a2a_alpha: float = Field(default=2.0, description="air-to-air exponent, assumed (free space)")
    shadowing_std_db: float = Field(default=4.0, description="log-normal shadowing sigma, assumed")
    antenna_gain_db: float = Field(default=10.0, description="combined antenna gain g, assumed")
    bs_tx_power_dbm: float = Field(default=40.0, description="downlink power of a site, assumed")
    bs_noise_figure_db: float = Field(
        default=5.0, description="base-station noise figure (dB), typical"
    )
    noise_psd_dbm_hz: float = Field(default=-174.0, description="thermal noise density kT")

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "carrier_ghz": (0.1, 100.0, True, True),
        "a2a_alpha": (1.5, 6.0, True, True),
        "shadowing_std_db": (0.0, 20.0, True, True),
        "antenna_gain_db": (-20.0, 40.0, True, True),
        "bs_tx_power_dbm": (-10.0, 60.0, True, True),
        "bs_noise_figure_db": (0.0, 30.0, True, True),
        "noise_psd_dbm_hz": (-200.0, -100.0, True, True),
    }


class NetworkConfig(_Checked):
    """Wide-area network and packet sizes."""

    wan_one_way_s: float = Field(default=0.02, description="one-way WAN delay to a cloud, assumed")
    fibre_s_per_km: float = Field(
        default=5e-6, description="fibre delay per km (light in glass, about 5 us/km)"
    )
    request_header_bytes: float = Field(default=200.0, description="request overhead, assumed")
    result_bytes_per_token: float = Field(
        default=4.0, description="result bytes per token, assumed"
    )

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "wan_one_way_s": (0.0, 10.0, True, True),
        "fibre_s_per_km": (0.0, 1e-3, True, True),
        "request_header_bytes": (0.0, 1e6, True, True),
        "result_bytes_per_token": (0.0, 1e3, True, True),
    }


class PartialObservabilityConfig(_Checked):
    """Noisy and delayed server readings (off in the paper preset)."""

    noise_std: float = Field(
        default=0.0, description="std of Gaussian noise on remaining/queue readings"
    )
    delay_steps: int = Field(default=0, description="server readings lag this many decisions")

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "noise_std": (0.0, 1.0, True, True),
        "delay_steps": (0, 1000, True, True),
    }

    @property
    def enabled(self) -> bool:
        """True when readings are noisy or delayed."""
        return self.noise_std > 0.0 or self.delay_steps > 0


class ScenarioConfig(_Checked):
    """All settings of one offloading scenario (frozen, validated; seeds go to ``reset``).

    Build presets with :meth:`preset`; an invalid value raises ``pydantic.ValidationError``
    whose message names the field and its allowed range.
    """

    name: str = "custom"
    t_max: float = Field(default=15.0, description="maximum acceptable latency (s), paper: 1..15")
    tasks_per_episode: int = Field(default=100, description="tasks per episode, paper: 100")
    episode_window_s: float = Field(
        default=300.0,
        description=(
            "time window (s) the episode's arrivals fall in: a Poisson process conditioned on "
            "tasks_per_episode arrivals in the window, so more tasks mean a higher load (assumed)"
        ),
    )
    area_m: tuple[float, float] = Field(default=(2000.0, 2000.0), description="area (m), assumed")
    servers: tuple[ServerConfig, ...]
    terminals: dict[str, TerminalKindConfig]
    radio: RadioConfig = RadioConfig()
    network: NetworkConfig = NetworkConfig()
    partial_observability: PartialObservabilityConfig = PartialObservabilityConfig()

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "t_max": (0.0, 3600.0, False, True),
        "tasks_per_episode": (1, 1_000_000, True, True),
        "episode_window_s": (0.0, 1e7, False, True),
        "area_m": (1.0, 1e6, True, True),
    }

    @model_validator(mode="after")
    def _check_structure(self) -> ScenarioConfig:
        if len(self.servers) < 1:
            raise ValueError("ScenarioConfig.servers must hold at least one server, got 0")
        unknown = set(self.terminals) - set(TERMINAL_KINDS)
        if unknown:
            raise ValueError(
                f"ScenarioConfig.terminals has unknown kinds {sorted(unknown)}; "
                f"allowed: {list(TERMINAL_KINDS)}"
            )
        if sum(t.count for t in self.terminals.values()) < 1:
            raise ValueError("ScenarioConfig.terminals must hold at least one terminal, got 0")
        if not any(s.kind == "edge" and not s.aerial for s in self.servers) and any(
            s.kind == "cloud" for s in self.servers
        ):
            raise ValueError(
                "ScenarioConfig.servers: a cloud is reached through the nearest ground edge "
                "site, so at least one ground edge server is required"
            )
        return self

    @property
    def n_servers(self) -> int:
        """Number of servers."""
        return len(self.servers)

    @property
    def arrival_rate(self) -> float:
        """Mean arrivals per second, ``tasks_per_episode / episode_window_s``."""
        return self.tasks_per_episode / self.episode_window_s

    @property
    def n_terminals(self) -> int:
        """Number of terminals over all kinds."""
        return sum(t.count for t in self.terminals.values())

    @classmethod
    def preset(cls, name: str = "paper", **overrides: Any) -> ScenarioConfig:
        """A named preset (one of :data:`PRESETS`) with top-level fields overridden.

        Parameters
        ----------
        name : {"paper", "congested", "large"}
            ``paper``: the paper's operating point (calibrated, see ``docs/environment.md``);
            ``congested``: the paper's servers under about twice the load; ``large``: 40 servers
            and 5000 terminals.
        **overrides
            Top-level fields, e.g. ``t_max=5.0`` or
            ``partial_observability={"noise_std": 0.05}``. ``tasks_per_episode`` keeps the
            preset's time window, so it sets the load.
        """
        if name not in _BUILDERS:
            raise ValueError(f"unknown preset {name!r}; expected one of {list(PRESETS)}")
        data = _BUILDERS[name]()
        for key, value in overrides.items():
            if key not in cls.model_fields:
                raise ValueError(
                    f"unknown ScenarioConfig field {key!r}; fields: {sorted(cls.model_fields)}"
                )
            data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        return cls.model_validate(data)

    def with_overrides(self, **overrides: Any) -> ScenarioConfig:
        """A validated copy with top-level fields replaced."""
        data = self.model_dump()
        for key, value in overrides.items():
            if key not in type(self).model_fields:
                raise ValueError(
                    f"unknown ScenarioConfig field {key!r}; fields: {sorted(type(self).model_fields)}"
                )
            data[key] = value.model_dump() if isinstance(value, BaseModel) else value
        return type(self).model_validate(data)


#: Time window of the paper preset's 100 arrivals (s): 5/12 of a task per second on average.
PAPER_WINDOW_S = 240.0
#: Window of the ``congested`` preset: 100 tasks at 0.65 per second.
CONGESTED_WINDOW_S = 100.0 / 0.65

CLOUD_PROFILE = "gptj6b-a800-optimised"
EDGE_PROFILE = "gptj6b-rtx3090-eager"


def _paper_dict() -> dict[str, Any]:
    # He et al.: one cloud and four MEC servers (cloud : edge = 1 : 4); sites and pools assumed.
    edges = [
        {"kind": "edge", "x_m": x, "y_m": y, "profile": EDGE_PROFILE, "parallel_limit": 2}
        for x, y in ((500.0, 500.0), (1500.0, 500.0), (500.0, 1500.0), (1500.0, 1500.0))
    ]
    cloud = {
        "kind": "cloud",
        "x_m": 1000.0,
        "y_m": 301_000.0,  # a regional data centre 300 km away (assumed)
        "height_m": 25.0,
        "profile": CLOUD_PROFILE,
        "uplink_hz": 100e6,
        "downlink_hz": 100e6,
        "parallel_limit": 8,
    }
    return {
        "name": "paper",
        "t_max": 15.0,
        "tasks_per_episode": 100,
        # Calibrated with the reference policies (docs/environment.md, "Calibration").
        "episode_window_s": PAPER_WINDOW_S,
        "area_m": (2000.0, 2000.0),
        "servers": [cloud, *edges],
        "terminals": {
            "phone": {"count": 8, "speed_mps": 1.4, "height_m": 1.5},
            "vehicle": {"count": 4, "speed_mps": 13.9, "height_m": 1.5},
            "uav": {"count": 4, "speed_mps": 10.0, "height_m": 100.0},
            "pc": {"count": 4, "speed_mps": 0.0, "height_m": 1.5},
        },
    }


def _large_dict() -> dict[str, Any]:
    # 4 clouds + 36 edges (4 of them UAV-mounted) over 6 km x 6 km, 5000 terminals (assumed).
    servers: list[dict[str, Any]] = [
        {
            "kind": "cloud",
            "x_m": 3000.0 + dx,
            "y_m": 3000.0 + dy,
            "profile": CLOUD_PROFILE,
            "uplink_hz": 100e6,
            "downlink_hz": 100e6,
            "parallel_limit": 8,
        }
        for dx, dy in ((300_000.0, 0.0), (-300_000.0, 0.0), (0.0, 300_000.0), (0.0, -300_000.0))
    ]
    aerial_cells = {(1, 1), (1, 4), (4, 1), (4, 4)}
    for i in range(6):
        for j in range(6):
            aerial = (i, j) in aerial_cells
            servers.append(
                {
                    "kind": "edge",
                    "x_m": 500.0 + 1000.0 * i,
                    "y_m": 500.0 + 1000.0 * j,
                    "height_m": 120.0 if aerial else 25.0,
                    "aerial": aerial,
                    "profile": EDGE_PROFILE,
                    "parallel_limit": 2,
                }
            )
    return {
        "name": "large",
        "t_max": 15.0,
        "tasks_per_episode": 1000,
        "episode_window_s": 200.0,
        "area_m": (6000.0, 6000.0),
        "servers": servers,
        "terminals": {
            "phone": {"count": 2000, "speed_mps": 1.4, "height_m": 1.5},
            "vehicle": {"count": 1500, "speed_mps": 13.9, "height_m": 1.5},
            "uav": {"count": 500, "speed_mps": 10.0, "height_m": 100.0},
            "pc": {"count": 1000, "speed_mps": 0.0, "height_m": 1.5},
        },
    }


def _congested_dict() -> dict[str, Any]:
    # The paper's servers and terminals at 0.65 arrivals per second (assumed): a load at which no
    # schedule completes every task.
    data = _paper_dict()
    data["name"] = "congested"
    data["episode_window_s"] = CONGESTED_WINDOW_S
    return data


_BUILDERS = {"paper": _paper_dict, "congested": _congested_dict, "large": _large_dict}
#: Names accepted by :meth:`ScenarioConfig.preset`.
PRESETS: tuple[str, ...] = tuple(_BUILDERS)
