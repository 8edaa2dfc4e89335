"""Scenario settings of the offloading world: one validated, frozen pydantic model and its presets.

Values the paper does not publish are marked ``assumed`` in the field descriptions and docs.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "N_PROBLEMS",
    "PRESETS",
    "ArrivalConfig",
    "ChangePoint",
    "ContentionConfig",
    "DriftConfig",
    "DriftEvent",
    "NetworkConfig",
    "PartialObservabilityConfig",
    "RadioConfig",
    "ScenarioConfig",
    "ServerConfig",
    "TERMINAL_KINDS",
    "TerminalKindConfig",
    "drift_schedule",
]

#: Terminal kinds of the paper (mobile: phone, vehicle, UAV; fixed: PC), in observation order.
TERMINAL_KINDS: tuple[str, ...] = ("phone", "vehicle", "uav", "pc")
#: Problems in HumanEval (Chen et al. 2021), in file order; tasks are drawn from them.
N_PROBLEMS = 164


class _Checked(BaseModel):
    """Base model: frozen, no unknown keys, numeric ranges checked with a message naming both."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    #: field -> (low, high, low_inclusive, high_inclusive)
    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {}

    @model_validator(mode="after")
    def _check_ranges(self) -> Any:
        for field, (lo, hi, lo_inc, hi_inc) in self._RANGES.items():
            value = getattr(self, field)
            if value is None:  # an optional setting left unset
                continue
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


class ArrivalConfig(_Checked):
    """How an episode's ``tasks_per_episode`` arrivals fall in its window (assumed processes).

    ``poisson`` (the paper preset): a homogeneous Poisson process conditioned on the count, i.e.
    sorted uniform times. ``mmpp``: a two-state Markov-modulated Poisson process, a calm state
    and a burst state whose rate is ``burst_rate_ratio`` times the calm one, with exponential
    sojourns of means ``mean_calm_s`` and ``mean_burst_s``. ``diurnal``: a rate
    ``lambda(t) = lambda_mean (1 - diurnal_amplitude cos(2 pi t / window))``, one day compressed
    into the window (trough at both ends, peak in the middle). The count is fixed in every case,
    so the arrivals are ``tasks_per_episode`` points placed with density proportional to the
    rate (``environments.arrivals``).
    """

    process: Literal["poisson", "mmpp", "diurnal"] = Field(
        default="poisson", description="arrival process in the episode's window, assumed"
    )
    burst_rate_ratio: float = Field(
        default=5.0, description="mmpp: burst-state rate over calm-state rate, assumed"
    )
    mean_calm_s: float = Field(default=60.0, description="mmpp: mean calm sojourn (s), assumed")
    mean_burst_s: float = Field(default=20.0, description="mmpp: mean burst sojourn (s), assumed")
    diurnal_amplitude: float = Field(
        default=0.8, description="diurnal: relative swing a of the rate around its mean, assumed"
    )

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "burst_rate_ratio": (1.0, 1000.0, True, True),
        "mean_calm_s": (0.0, 1e7, False, True),
        "mean_burst_s": (0.0, 1e7, False, True),
        "diurnal_amplitude": (0.0, 1.0, True, True),
    }


class ContentionConfig(_Checked):
    """Co-located tasks slow each other, a law outside the share law (off in the paper preset).

    A task that starts while ``n`` other tasks hold grants on the same server computes for
    ``(1 + scale * gamma_j * n)`` times its share-law time, fixed at its start; ``gamma_j`` is
    derived from server ``j``'s profile (``environments.contention``). The multiplier is never
    below 1: contention only slows.
    """

    enabled: bool = Field(default=False, description="co-located tasks slow each other")
    scale: float = Field(
        default=1.0, description="multiplies the measured per-task slowdown of every server"
    )

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "scale": (0.0, 100.0, True, True),
    }


class ChangePoint(NamedTuple):
    """One change of a drift schedule, for marking figures.

    ``episode`` is the first training episode the change applies to; ``kind`` a
    :class:`DriftEvent` kind, with ``"_end"`` appended where an event ends (a server recovers,
    a link or the problem mix returns to normal); ``description`` a short label.
    """

    episode: int
    kind: str
    description: str


class DriftEvent(_Checked):
    """One change of the world across training episodes, active in ``[start_episode, end_episode)``.

    Kinds: ``server_slowdown`` (server ``server`` computes ``factor`` times slower);
    ``server_failure`` (server ``server`` is unavailable: every task sent there is rejected at
    once); ``uav_link_loss`` (every radio link of a UAV terminal, up and down, loses
    ``extra_loss_db`` more); ``problem_shift`` (tasks are drawn only from ``problems``, HumanEval
    indices in file order, which outside the event are never drawn). ``end_episode=None``: the
    change lasts.
    """

    kind: Literal["server_slowdown", "server_failure", "uav_link_loss", "problem_shift"]
    start_episode: int = Field(description="first training episode the change applies to")
    end_episode: int | None = Field(
        default=None, description="first episode it no longer applies to (None: it lasts)"
    )
    server: int | None = Field(default=None, description="server index (server_* kinds)")
    factor: float = Field(default=1.0, description="server_slowdown: compute time multiplier")
    extra_loss_db: float = Field(default=0.0, description="uav_link_loss: extra path loss (dB)")
    problems: tuple[int, ...] = Field(
        default=(), description="problem_shift: the held-out problem indices drawn from"
    )

    _RANGES: ClassVar[dict[str, tuple[float, float, bool, bool]]] = {
        "start_episode": (0, 1_000_000_000, True, True),
        "end_episode": (1, 1_000_000_000, True, True),
        "server": (0, 10_000, True, True),
        "factor": (1.0, 100.0, True, True),
        "extra_loss_db": (0.0, 100.0, True, True),
        "problems": (0, N_PROBLEMS - 1, True, True),
    }

    @model_validator(mode="after")
    def _check_kind(self) -> DriftEvent:
        name = f"DriftEvent(kind={self.kind!r})"
        if self.end_episode is not None and self.end_episode <= self.start_episode:
            raise ValueError(
                f"{name}.end_episode = {self.end_episode} must be after start_episode = "
                f"{self.start_episode}"
            )
        if self.kind.startswith("server_") and self.server is None:
            raise ValueError(f"{name}.server is required (a server index)")
        if self.kind == "server_slowdown" and self.factor == 1.0:
            raise ValueError(f"{name}.factor = 1.0 changes nothing; expected a value in (1, 100]")
        if self.kind == "uav_link_loss" and self.extra_loss_db == 0.0:
            raise ValueError(f"{name}.extra_loss_db = 0.0 changes nothing; expected (0, 100] dB")
        if self.kind == "problem_shift":
            if not self.problems:
                raise ValueError(f"{name}.problems is empty; expected held-out problem indices")
            if len(set(self.problems)) != len(self.problems):
                raise ValueError(f"{name}.problems has repeated indices: {list(self.problems)}")
            if len(self.problems) == N_PROBLEMS:
                raise ValueError(
                    f"{name}.problems holds all {N_PROBLEMS} problems; nothing would be left "
                    "for the episodes outside the shift"
                )
        return self

    def active(self, episode: int) -> bool:
        """Whether the change applies to training episode ``episode``."""
        return self.start_episode <= episode and (
            self.end_episode is None or episode < self.end_episode
        )

    def label(self) -> str:
        """A short description, e.g. ``"server 1 computes 1.5x slower"``."""
        if self.kind == "server_slowdown":
            return f"server {self.server} computes {self.factor:g}x slower"
        if self.kind == "server_failure":
            return f"server {self.server} fails"
        if self.kind == "uav_link_loss":
            return f"UAV links lose {self.extra_loss_db:g} dB more"
        return f"tasks drawn from {len(self.problems)} held-out problems"

    def end_label(self) -> str:
        """A short description of the change's end, e.g. ``"server 4 recovers"``."""
        if self.kind == "server_slowdown":
            return f"server {self.server} back to full speed"
        if self.kind == "server_failure":
            return f"server {self.server} recovers"
        if self.kind == "uav_link_loss":
            return "UAV links back to normal"
        return "tasks drawn from the other problems again"


class DriftConfig(_Checked):
    """A schedule of changes across training episodes (empty in every preset but ``drift``).

    The env applies it at ``reset(seed=..., options={"episode": k})``, ``k`` the training
    episode index (episode 0 without the option). :meth:`change_points` lists the episodes at
    which something changes, for figures.
    """

    events: tuple[DriftEvent, ...] = Field(default=(), description="the scheduled changes")

    @model_validator(mode="after")
    def _check_events(self) -> DriftConfig:
        shifts = [e for e in self.events if e.kind == "problem_shift"]
        if len(shifts) > 1:
            raise ValueError(
                f"DriftConfig.events has {len(shifts)} problem_shift events; at most one is "
                "allowed (its problems are held out of every other episode)"
            )
        return self

    @property
    def enabled(self) -> bool:
        """True when the schedule holds at least one change."""
        return bool(self.events)

    def active(self, episode: int) -> tuple[DriftEvent, ...]:
        """The events that apply to training episode ``episode``."""
        if episode < 0:
            raise ValueError(f"episode = {episode} must be >= 0 (a training episode index)")
        return tuple(e for e in self.events if e.active(episode))

    def change_points(self) -> tuple[ChangePoint, ...]:
        """Every episode at which something starts or ends, sorted by episode."""
        points = [ChangePoint(e.start_episode, e.kind, e.label()) for e in self.events]
        points += [
            ChangePoint(e.end_episode, e.kind + "_end", e.end_label())
            for e in self.events
            if e.end_episode is not None
        ]
        return tuple(sorted(points, key=lambda p: p.episode))


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
    arrivals: ArrivalConfig = ArrivalConfig()
    contention: ContentionConfig = ContentionConfig()
    drift: DriftConfig = DriftConfig()

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
        for i, event in enumerate(self.drift.events):
            if event.server is not None and event.server >= len(self.servers):
                raise ValueError(
                    f"ScenarioConfig.drift.events[{i}].server = {event.server} is outside the "
                    f"allowed range [0, {len(self.servers) - 1}] (the scenario's servers)"
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
        name : str
            One of :data:`PRESETS`. ``paper``: the paper's operating point (calibrated, see
            ``docs/environment.md``); ``congested``: the paper's servers under 1.56 times its
            load; ``large``: 40 servers and 5000 terminals. Worlds where schedulers differ (each
            documented in ``docs/environment.md``, "Scenarios"): ``heavy`` (200 tasks in the
            paper's window), ``tight`` (t_max 6 s), ``contention`` (co-located tasks slow each
            other), ``bursty`` (Markov-modulated arrivals), ``diurnal`` (a rate that ramps up
            and down within the window) and ``drift`` (a schedule of changes across training
            episodes, :func:`drift_schedule`).
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


# ------------------------------------------------------------------ scenarios where schedulers differ
# Each was chosen with the reference policies only (docs/environment.md, "Scenarios"); every value
# below is assumed.

#: ``heavy``: the top of the paper's load sweep (TMC: 100..200 tasks), in the paper's window.
HEAVY_TASKS = 200
#: ``tight``: a deadline inside the paper's 3..9 s band, where only cloud placements complete.
TIGHT_T_MAX_S = 6.0
#: ``contention``: tasks in the paper's 240 s window.
CONTENTION_TASKS = 150
#: ``bursty``: calm/burst rates 1 : BURSTY_RATE_RATIO, mean sojourns (s).
BURSTY_RATE_RATIO = 5.0
BURSTY_MEAN_CALM_S = 60.0
BURSTY_MEAN_BURST_S = 20.0
#: ``bursty``: tasks in the paper's window (1.25 times the paper preset's mean rate).
BURSTY_TASKS = 125
#: ``diurnal``: the rate swings by this fraction around its mean over the window.
DIURNAL_AMPLITUDE = 0.8
DIURNAL_TASKS = 125
#: ``drift``: the default change episode (of a 100-episode training run) and the changes.
DRIFT_CHANGE_EPISODE = 50
DRIFT_RECOVER_AFTER = 25
DRIFT_SLOW_SERVER = 1
DRIFT_SLOW_FACTOR = 1.5
DRIFT_FAILED_SERVER = 4
DRIFT_UAV_EXTRA_LOSS_DB = 40.0
#: ``drift``: the held-out problems, the last fifth of HumanEval in file order
#: (HumanEval/131..163), never drawn before the shift.
DRIFT_HELDOUT_PROBLEMS: tuple[int, ...] = tuple(range(131, N_PROBLEMS))


def drift_schedule(
    change_episode: int = DRIFT_CHANGE_EPISODE,
    recover_after: int = DRIFT_RECOVER_AFTER,
    *,
    slow_server: int = DRIFT_SLOW_SERVER,
    slow_factor: float = DRIFT_SLOW_FACTOR,
    failed_server: int = DRIFT_FAILED_SERVER,
    uav_extra_loss_db: float = DRIFT_UAV_EXTRA_LOSS_DB,
    heldout_problems: tuple[int, ...] = DRIFT_HELDOUT_PROBLEMS,
) -> DriftConfig:
    """The ``drift`` preset's schedule: four changes from ``change_episode``, one recovery later.

    From training episode ``change_episode`` on, edge ``slow_server`` computes ``slow_factor``
    times slower, edge ``failed_server`` is unavailable (until ``change_episode +
    recover_after``), every UAV terminal's links lose ``uav_extra_loss_db`` dB more and tasks
    are drawn only from ``heldout_problems`` (drawn from the other problems before). Server
    indices are those of the paper preset (0: the cloud, 1..4: the edges).

    Parameters
    ----------
    change_episode : int
        First training episode of the changes (default 50, the middle of 100 episodes).
    recover_after : int
        Episodes after which the failed server is back.

    Returns
    -------
    DriftConfig
        Validated; pass it as ``ScenarioConfig.preset("drift", drift=drift_schedule(30))``.
    """
    k0 = change_episode
    return DriftConfig(
        events=(
            DriftEvent(
                kind="server_slowdown", start_episode=k0, server=slow_server, factor=slow_factor
            ),
            DriftEvent(
                kind="server_failure",
                start_episode=k0,
                end_episode=k0 + recover_after,
                server=failed_server,
            ),
            DriftEvent(kind="uav_link_loss", start_episode=k0, extra_loss_db=uav_extra_loss_db),
            DriftEvent(kind="problem_shift", start_episode=k0, problems=heldout_problems),
        )
    )


def _variant(name: str, **fields: Any) -> dict[str, Any]:
    data = _paper_dict()
    data["name"] = name
    data.update(fields)
    return data


def _heavy_dict() -> dict[str, Any]:
    return _variant("heavy", tasks_per_episode=HEAVY_TASKS)


def _tight_dict() -> dict[str, Any]:
    return _variant("tight", t_max=TIGHT_T_MAX_S)


def _contention_dict() -> dict[str, Any]:
    return _variant("contention", tasks_per_episode=CONTENTION_TASKS, contention={"enabled": True})


def _bursty_dict() -> dict[str, Any]:
    arrivals = {
        "process": "mmpp",
        "burst_rate_ratio": BURSTY_RATE_RATIO,
        "mean_calm_s": BURSTY_MEAN_CALM_S,
        "mean_burst_s": BURSTY_MEAN_BURST_S,
    }
    return _variant("bursty", tasks_per_episode=BURSTY_TASKS, arrivals=arrivals)


def _diurnal_dict() -> dict[str, Any]:
    arrivals = {"process": "diurnal", "diurnal_amplitude": DIURNAL_AMPLITUDE}
    return _variant("diurnal", tasks_per_episode=DIURNAL_TASKS, arrivals=arrivals)


def _drift_dict() -> dict[str, Any]:
    return _variant("drift", drift=drift_schedule().model_dump())


_BUILDERS = {
    "paper": _paper_dict,
    "congested": _congested_dict,
    "large": _large_dict,
    "heavy": _heavy_dict,
    "tight": _tight_dict,
    "contention": _contention_dict,
    "bursty": _bursty_dict,
    "diurnal": _diurnal_dict,
    "drift": _drift_dict,
}
#: Names accepted by :meth:`ScenarioConfig.preset`.
PRESETS: tuple[str, ...] = tuple(_BUILDERS)
