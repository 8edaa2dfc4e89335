"""The 6G cloud-edge LLM-offloading world as a Gymnasium environment (one step = one task).

Physics lives in ``radio``, ``latency``, ``mobility`` and ``llm_profiles``; this module keeps state.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from environments import radio
from environments.arrivals import diurnal_arrivals, mmpp_arrivals, poisson_arrivals
from environments.config import TERMINAL_KINDS, ChangePoint, DriftEvent, ScenarioConfig
from environments.contention import per_task_slowdown
from environments.latency import queue_start
from environments.llm_profiles import ProfileTable, compute_time_vec, load_profile
from environments.mobility import initial_state, positions_at
from environments.tasks import task_arrays

__all__ = ["GRANT_TOLERANCE", "NOT_FOR_POLICIES", "CloudEdgeOffloadEnv", "Outcome", "Outcomes"]

#: Slack on a server's capacity of 1 when grants are added up (float32 actions against float64
#: bookkeeping): a grant that exceeds what is free by less than this starts anyway.
GRANT_TOLERANCE = 1e-6
#: Key of ``info`` holding what only the simulator knows (a failed task's would-be latency and
#: accuracy). For analysis and tests; no policy, learner or model may read it.
NOT_FOR_POLICIES = "not_for_policies"
_LINK_G2G, _LINK_G2A, _LINK_A2A = 0, 1, 2
_TASK_FEATURES = ("prompt_tokens", *TERMINAL_KINDS)
_PARTS = ("transmission", "propagation", "queueing", "compute")


class Outcome(NamedTuple):
    """Predicted outcome of one action for the current task, as the simulator computes it.

    ``latency`` is the would-be latency in seconds, larger than ``t_max`` for a task that misses
    its deadline (then ``completed`` is False and ``failure == "t_max"``) and ``inf`` for a
    rejected task (a zero share, or less memory than one sample needs). ``parts`` holds
    ``transmission``, ``propagation``, ``queueing`` and ``compute`` (seconds, summing to
    ``latency``; NaN when rejected). Simulator knowledge: for reference policies and analysis.
    """

    latency: float
    parts: dict[str, float]
    completed: bool
    pass_at_100: float
    failure: str | None


class Outcomes(NamedTuple):
    """Vectorised outcomes of K candidate actions; every field has shape (K,).

    ``start`` is when the task would start computing (``inf`` when rejected) and ``release``
    when its grant would be given back (its result delivered, or its deadline); a task that
    would not start before its deadline holds nothing (``release`` NaN).
    """

    latency: np.ndarray
    transmission: np.ndarray
    propagation: np.ndarray
    queueing: np.ndarray
    compute: np.ndarray
    completed: np.ndarray
    rejected: np.ndarray
    pass_at_100: np.ndarray
    reward: np.ndarray
    start: np.ndarray
    release: np.ndarray
    joins: np.ndarray


class _State(NamedTuple):
    clock: float
    step: int
    h_srv: np.ndarray
    h_start: np.ndarray
    h_end: np.ndarray
    h_grant: np.ndarray
    w_srv: np.ndarray
    w_leave: np.ndarray
    head: np.ndarray


class CloudEdgeOffloadEnv(gym.Env[np.ndarray, dict[str, Any]]):
    """Offloading GPT-J-6B HumanEval tasks from IoT terminals to cloud and edge servers.

    ## Description
    Terminals (phones, vehicles, UAVs, fixed PCs) move in an area and issue LLM inference tasks
    (HumanEval problems, 100 samples each for pass@100) at random times. Each step the agent
    places the current task on one server and grants it fractions of that server's compute,
    bandwidth and GPU memory (He et al., IEEE IoT-J 2025; TMC 2024). Each server serves its queue
    first come, first served: a task starts when it is at the head of the queue, one of the
    server's ``parallel_limit`` slots is free and its whole grant is free; it holds the grant
    until its result is delivered or its deadline passes. Latency = transmission + propagation +
    queueing + compute. A task fails when it is not done ``t_max`` seconds after it arrived, or at
    once when its grant cannot run it (a zero share, or less memory than one sample needs). After
    the decision the clock advances to the next arrival. Models and sources:
    ``docs/environment.md``.

    ## Action Space
    ``Dict(server=Discrete(n_servers), shares=Box(0, 1, (3,), float32))``: the server index and
    the fractions of its TOTAL compute, bandwidth and GPU memory to grant. A value outside the
    space raises ``ValueError``. A grant larger than what is free now waits in the queue.

    ## Observation Space
    ``Box(float32)`` of length ``6 n_servers + 6`` laid out as ``obs_layout``, every entry
    O(1) and inside tight bounds:

    - ``distance`` (n_servers): radio distance from the current terminal to the site it would use
      for each server (its own site; for a cloud, the nearest ground edge site), over the area's
      diagonal;
    - ``remaining`` (n_servers * 3): free compute, bandwidth and memory fractions now,
      server-major, ``[0, 1]``;
    - ``queue`` (n_servers * 2): per server, running tasks / parallel limit in ``[0, 1]`` and
      waiting tasks ``w`` as ``w / (w + parallel limit)`` in ``[0, 1)``;
    - ``task`` (5): prompt tokens over the longest HumanEval prompt, terminal kind one-hot
      (phone, vehicle, uav, pc);
    - ``progress`` (1): tasks decided / tasks_per_episode.

    With ``partial_observability`` the ``remaining`` and ``queue`` readings are delayed and noisy.

    ## Rewards
    ``r = 1/L + P`` for a completed task (``L`` latency in s, ``P`` its pass@100), else 0: the DRL
    reward of He et al. (TMC 2024). ``info["rg"]`` is the rewardless guidance
    ``tc * (1/L + P)`` (``tc = 1`` if completed), numerically the same value.

    ## Episode End
    Terminated after ``tasks_per_episode`` decisions; never truncated by the env itself.
    ``reset(seed=..., options={"episode": k})`` passes the training episode index ``k`` (0
    without it), at which a scenario's drift schedule applies (:meth:`change_points`).

    ## Arguments
    ``config``: a :class:`~environments.ScenarioConfig` (default: the paper preset);
    ``render_mode``: ``None``, ``"ansi"`` or ``"human"``; ``preset``: preset name used when
    ``config`` is None; further keyword arguments override top-level config fields, e.g.
    ``gymnasium.make("CloudEdgeOffload-v1", t_max=5.0)``. The scenario decides the arrival
    process (``config.arrivals``), whether co-located tasks slow each other
    (``config.contention``) and the changes across training episodes (``config.drift``); all are
    off in the paper preset.

    ## Info
    What a scheduler observes about the task just decided: ``completed``, ``failure`` (None,
    ``"t_max"``: not done by its deadline, or ``"rejected"``: the grant cannot run it),
    ``latency`` and ``latency_parts`` (None unless completed), ``given_up_after`` (seconds after
    arrival at which a failed task was given up: ``t_max``, or 0 when rejected; None when
    completed), ``pass_at_100`` (None unless completed), ``reward``, ``rg``, ``server``,
    ``server_kind``, ``shares``, ``task_id``, ``terminal_kind``, ``arrival_time``, and the times
    ``start_time`` (None if it never started), ``release_time`` (its grant given back; None if
    it never held one) and ``outcome_time`` (when the outcome is known); ``next_task`` is the
    request the returned observation asks about (``task_id``, ``terminal_kind``,
    ``arrival_time``; None at the episode's end), as ``reset``'s info is for the first one. The
    env returns them at the decision; a learner that wants strict timing waits until
    ``outcome_time``. A task sent to a server that the drift schedule has failed is rejected at
    once (``failure="rejected"``).
    ``info["not_for_policies"]`` holds the simulator's uncensored values (would-be latency,
    parts and pass@100 of every task) for analysis only.

    ## Version History
    * v1: first-come first-served queues on slots and resources, censored outcomes, scaled
      observations, a time window per episode, profiles that decode what they reserve. Later
      additions, off by default so the paper preset is unchanged: arrival processes (MMPP,
      diurnal), contention between co-located tasks, drift across training episodes.
    * v0: grants reserved at the decision; an allocation above what remains failed the task
      (removed).
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        config: ScenarioConfig | None = None,
        render_mode: str | None = None,
        *,
        preset: str = "paper",
        **overrides: Any,
    ) -> None:
        if config is None:
            config = ScenarioConfig.preset(preset, **overrides)
        elif overrides:
            config = config.with_overrides(**overrides)
        if not isinstance(config, ScenarioConfig):
            raise TypeError(f"config must be a ScenarioConfig, got {type(config).__name__}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode={render_mode!r}; expected None or one of {self.metadata['render_modes']}"
            )
        self.config = config
        self.render_mode = render_mode
        self._build_static()
        self.action_space = spaces.Dict(
            {
                "server": spaces.Discrete(self.n_servers),
                "shares": spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32),
            }
        )
        self._build_observation_space()
        self._episode_ready = False

    # ------------------------------------------------------------------ static setup
    def _build_static(self) -> None:
        cfg = self.config
        n = self.n_servers = cfg.n_servers
        self.server_is_cloud = np.asarray([s.kind == "cloud" for s in cfg.servers])
        self.server_kinds = tuple(s.kind for s in cfg.servers)
        self.server_pos = np.asarray([[s.x_m, s.y_m, s.height_m] for s in cfg.servers], float)
        self.server_aerial = np.asarray([s.aerial for s in cfg.servers])
        self.up_hz = np.asarray([s.uplink_hz for s in cfg.servers], float)
        self.down_hz = np.asarray([s.downlink_hz for s in cfg.servers], float)
        self.parallel_limit = np.asarray([s.parallel_limit for s in cfg.servers], np.int64)
        self.profiles = [load_profile(s.profile) for s in cfg.servers]
        self.table = ProfileTable.from_profiles(self.profiles)
        #: Smallest memory share that holds one sample on each server, shape (n_servers,).
        self.min_memory_share = np.asarray([p.min_memory_share for p in self.profiles])
        self.pass_table = np.stack([p.pass_at_k for p in self.profiles])  # (n, n_problems)
        self.prompt_tokens, request_bytes = task_arrays()
        self.request_bits = 8.0 * (request_bytes + cfg.network.request_header_bytes)
        self.result_bits = (
            8.0
            * self.table.samples
            * self.table.max_new_tokens
            * cfg.network.result_bytes_per_token
        )
        # Clouds are reached over the radio hop to the nearest ground edge site, then fibre.
        ground_edges = np.flatnonzero(~self.server_is_cloud & ~self.server_aerial)
        self.access_pos = self.server_pos[ground_edges] if ground_edges.size else self.server_pos
        self.wan_s = np.where(self.server_is_cloud, cfg.network.wan_one_way_s, 0.0)
        # Fibre length from the access site nearest each cloud (fixed, a regional backbone).
        fibre = np.zeros(n)
        for j in np.flatnonzero(self.server_is_cloud):
            fibre[j] = np.min(np.linalg.norm(self.access_pos - self.server_pos[j], axis=1)) / 1000.0
        self.fibre_km = fibre
        self.backhaul_s = self.wan_s + fibre * cfg.network.fibre_s_per_km
        # Terminals.
        kinds, speeds, heights, power, nf = [], [], [], [], []
        for k_idx, kind in enumerate(TERMINAL_KINDS):
            tk = cfg.terminals.get(kind)
            if tk is None:
                continue
            kinds += [k_idx] * tk.count
            speeds += [tk.speed_mps] * tk.count
            heights += [tk.height_m] * tk.count
            power += [tk.tx_power_dbm] * tk.count
            nf += [tk.noise_figure_db] * tk.count
        self.term_kind = np.asarray(kinds, np.int64)
        self.term_speed = np.asarray(speeds, float)
        self.term_height = np.asarray(heights, float)
        self.term_power = np.asarray(power, float)
        self.term_nf = np.asarray(nf, float)
        self.n_terminals = self.term_kind.size
        self.area = np.asarray(cfg.area_m, float)
        self.area_diagonal_m = float(np.hypot(*self.area))
        self._deadline = float(cfg.t_max)
        # Contention: slowdown per co-running task of each server, shape (n,); off: all zero.
        cont = cfg.contention
        gamma = np.asarray([per_task_slowdown(p) for p in self.profiles]) * cont.scale
        self.contention_gamma = gamma if cont.enabled else np.zeros(n)
        self._contention = bool(np.any(self.contention_gamma > 0.0))
        # Drift: the held-out problems of a problem shift and the problems drawn outside it.
        self._heldout_problems: np.ndarray | None = None
        self._seen_problems: np.ndarray | None = None
        shifts = [e for e in cfg.drift.events if e.kind == "problem_shift"]
        if shifts:
            held = np.zeros(self.prompt_tokens.size, bool)
            held[list(shifts[0].problems)] = True
            self._heldout_problems = np.flatnonzero(held)
            self._seen_problems = np.flatnonzero(~held)
        self._set_episode(0)

    def _set_episode(self, episode: int) -> None:
        """Apply the drift schedule's changes for training episode ``episode``."""
        n = self.n_servers
        events = self.config.drift.active(episode) if self.config.drift.enabled else ()
        self.episode = episode
        self._active_events: tuple[DriftEvent, ...] = events
        self._server_scale = np.ones(n)
        self._server_down = np.zeros(n, bool)
        self._uav_extra_db = 0.0
        # Outside a problem shift, its held-out problems are never drawn.
        self._problem_pool = self._seen_problems
        for e in events:
            if e.kind == "server_slowdown":
                assert e.server is not None  # checked by DriftEvent
                self._server_scale[e.server] *= e.factor
            elif e.kind == "server_failure":
                assert e.server is not None
                self._server_down[e.server] = True
            elif e.kind == "uav_link_loss":
                self._uav_extra_db += e.extra_loss_db
            else:
                self._problem_pool = self._heldout_problems
        self._scaled = bool(np.any(self._server_scale != 1.0))
        self._down_any = bool(self._server_down.any())

    def _link_distance_bound(self) -> np.ndarray:
        """Largest radio distance to each server's link site over the area, over the diagonal."""
        h_max = float(self.term_height.max()) if self.term_height.size else 0.0
        corners = np.asarray(
            [[x, y, h] for x in (0, self.area[0]) for y in (0, self.area[1]) for h in (0, h_max)]
        )

        def farthest(sites: np.ndarray) -> np.ndarray:
            return np.max(np.linalg.norm(corners[:, None, :] - sites[None], axis=-1), axis=0)

        bound = farthest(self.server_pos)
        if self.server_is_cloud.any():
            # A cloud's link goes to the access site nearest the terminal, never farther than the
            # farthest any access site can be.
            bound[self.server_is_cloud] = farthest(self.access_pos).max()
        return bound / self.area_diagonal_m

    def _build_observation_space(self) -> None:
        n = self.n_servers
        layout: dict[str, slice] = {}
        pos = 0
        for name, size in (
            ("distance", n),
            ("remaining", 3 * n),
            ("queue", 2 * n),
            ("task", len(_TASK_FEATURES)),
            ("progress", 1),
        ):
            layout[name] = slice(pos, pos + size)
            pos += size
        self.obs_layout = layout
        self.task_feature_names = _TASK_FEATURES
        low = np.zeros(pos, np.float32)
        high = np.ones(pos, np.float32)
        high[layout["distance"]] = self._link_distance_bound() * 1.001
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self._obs_low, self._obs_high = low, high
        self._max_prompt = float(self.prompt_tokens.max())

    # ------------------------------------------------------------------ episode
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: draw arrivals, terminals, problems, shadowing and mobility.

        ``options={"episode": k}`` sets the training episode index ``k >= 0`` (0 without it),
        at which the scenario's drift schedule is applied (:meth:`change_points`).
        """
        super().reset(seed=seed)
        self._set_episode(_episode_option(options))
        cfg = self.config
        rng = self.np_random
        n, t_count = self.n_servers, cfg.tasks_per_episode
        arr, window = cfg.arrivals, cfg.episode_window_s
        self.arrival_rate_path = None
        if arr.process == "poisson":
            # A Poisson process conditioned on t_count arrivals in the window.
            self.arrivals = poisson_arrivals(rng, t_count, window)
        elif arr.process == "mmpp":
            self.arrivals, self.arrival_rate_path = mmpp_arrivals(
                rng, t_count, window, arr.burst_rate_ratio, arr.mean_calm_s, arr.mean_burst_s
            )
        else:
            self.arrivals = diurnal_arrivals(rng, t_count, window, arr.diurnal_amplitude)
        self.task_terminal = rng.integers(0, self.n_terminals, size=t_count)
        if self._problem_pool is None:
            self.task_problem = rng.integers(0, self.prompt_tokens.size, size=t_count)
        else:
            pool = self._problem_pool
            self.task_problem = pool[rng.integers(0, pool.size, size=t_count)]
        self.shadow_db = rng.normal(0.0, cfg.radio.shadowing_std_db, size=(t_count, 2, n))
        self.p0, self.vel = initial_state(rng, self.term_speed, self.term_height, self.area)
        self._precompute_uplinks()
        cap = 16
        self._h_srv = np.zeros(cap, np.int64)
        self._h_start = np.zeros(cap)
        self._h_end = np.zeros(cap)
        self._h_grant = np.zeros((cap, 3))
        self._n_h = 0
        self._w_srv = np.zeros(cap, np.int64)
        self._w_leave = np.zeros(cap)
        self._n_w = 0
        self._head = np.zeros(n)
        self._step = 0
        self._clock = float(self.arrivals[0])
        self._history: deque[np.ndarray] = deque(maxlen=cfg.partial_observability.delay_steps + 1)
        self._last_info: dict[str, Any] = {}
        self._episode_ready = True
        self._prepare_task()
        return self._observation(), self._task_info()

    def step(self, action: dict[str, Any]) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Place the current task, then advance the clock to the next arrival."""
        if not self._episode_ready:
            raise RuntimeError("call reset() before step()")
        server, shares = self._validate_action(action)
        info = self._commit(server, shares, self._evaluate_one(server, shares, realized=True))
        terminated = self._step >= self.config.tasks_per_episode
        if terminated:
            self._episode_ready = False
            info["next_task"] = None
        else:
            self._prepare_task()
            info["next_task"] = self._task_info()
        obs = self._observation()
        self._last_info = info
        if self.render_mode == "human":
            print(self._render_text())
        return obs, info["reward"], terminated, False, info

    # ------------------------------------------------------------------ validation
    def _validate_action(self, action: Any) -> tuple[int, np.ndarray]:
        if not isinstance(action, dict) or "server" not in action or "shares" not in action:
            raise ValueError(
                f"action must be a dict with keys 'server' and 'shares', got {action!r}"
            )
        server = action["server"]
        if isinstance(server, int | np.integer) and not isinstance(server, bool):
            srv = int(server)
        else:
            s_arr = np.asarray(server)
            if s_arr.shape not in ((), (1,)) or not np.issubdtype(s_arr.dtype, np.integer):
                raise ValueError(
                    f"action['server']={server!r} (shape {s_arr.shape}) must be one integer in "
                    f"[0, {self.n_servers - 1}]"
                )
            srv = int(s_arr.reshape(()))
        if not 0 <= srv < self.n_servers:
            raise ValueError(
                f"action['server']={srv} is outside Discrete({self.n_servers}): "
                f"expected 0..{self.n_servers - 1}"
            )
        shares = np.asarray(action["shares"], dtype=np.float64)
        if shares.shape != (3,):
            raise ValueError(
                f"action['shares'] has shape {shares.shape}, expected (3,) "
                "(compute, bandwidth, memory fractions)"
            )
        # NaN fails both comparisons, so this also rejects non-finite values.
        if not (shares.min() >= 0.0 and shares.max() <= 1.0):
            raise ValueError(f"action['shares']={shares.tolist()} must lie in [0, 1]^3")
        return srv, shares

    # ------------------------------------------------------------------ physics
    def _path_loss(self, kind: Any, d3: Any, d2: Any, h_site: Any, h_term: Any) -> Any:
        """Path loss (dB) by link kind; arrays of one shape.

        Ground-to-ground: the configured model; ground-to-air: Al-Hourani; air-to-air: free space.
        """
        rc = self.config.radio
        out = np.empty(np.shape(kind))
        for code in (_LINK_G2G, _LINK_G2A, _LINK_A2A):
            mask = kind == code
            if not mask.any():
                continue
            if code == _LINK_G2G:
                out[mask] = radio.ground_to_ground_path_loss(
                    rc.g2g_model, d3[mask], d2[mask], rc.carrier_ghz, h_site[mask], h_term[mask]
                )
            elif code == _LINK_G2A:
                elevation = np.degrees(
                    np.arctan2(np.abs(h_site[mask] - h_term[mask]), np.maximum(d2[mask], 1e-9))
                )
                out[mask] = radio.air_to_ground_path_loss(
                    d3[mask], elevation, rc.carrier_ghz, rc.a2g_environment
                )
            else:
                out[mask] = radio.air_to_air_path_loss(d3[mask], rc.carrier_ghz, rc.a2a_alpha)
        return out

    def _path_loss_one(
        self, kind: int, d3: float, d2: float, h_site: float, h_term: float
    ) -> float:
        """Scalar :meth:`_path_loss` for one link (the same formulas)."""
        one = self._path_loss(
            np.asarray([kind]),
            np.asarray([d3]),
            np.asarray([d2]),
            np.asarray([h_site]),
            np.asarray([h_term]),
        )
        return float(one[0])

    def _precompute_uplinks(self) -> None:
        """Per-episode arrays of every task's link to every server, shapes (T, n)."""
        rc = self.config.radio
        term = self.task_terminal
        pos = positions_at(self.p0[term], self.vel[term], self.arrivals, self.area)  # (T, 3)
        t_count, n = term.size, self.n_servers
        site = np.broadcast_to(self.server_pos, (t_count, n, 3)).copy()
        site_aerial = np.broadcast_to(self.server_aerial, (t_count, n)).copy()
        clouds = np.flatnonzero(self.server_is_cloud)
        if clouds.size:
            # A cloud is reached through the access site nearest the terminal at upload time.
            acc = self.access_pos[None, :, :] - pos[:, None, :]
            nearest = np.argmin(np.einsum("tai,tai->ta", acc, acc), axis=1)
            site[:, clouds, :] = self.access_pos[nearest][:, None, :]
            site_aerial[:, clouds] = False
        aerial_term = (self.term_kind[term] == TERMINAL_KINDS.index("uav"))[:, None]
        kind = np.where(
            aerial_term,
            np.where(site_aerial, _LINK_A2A, _LINK_G2A),
            np.where(site_aerial, _LINK_G2A, _LINK_G2G),
        )
        diff = site - pos[:, None, :]
        d3 = np.sqrt(np.einsum("tsi,tsi->ts", diff, diff))
        d2 = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2)
        h_term = np.broadcast_to(pos[:, None, 2], (t_count, n))
        pl = self._path_loss(kind, d3, d2, site[..., 2], h_term)
        if self._uav_extra_db > 0.0:
            # Drift: every radio link of a UAV terminal loses more (up here, down in dn_base).
            pl = pl + np.where(aerial_term, self._uav_extra_db, 0.0)
        self.link_site = site
        self.link_kind = kind
        self.link_radio_d = d3
        self.task_distance = d3 / self.area_diagonal_m
        base = (
            self.term_power[term][:, None] + rc.antenna_gain_db - pl
            - rc.noise_psd_dbm_hz - rc.bs_noise_figure_db
        )  # fmt: skip
        # Uplink received power over the noise density (linear, per Hz), without / with shadowing.
        self.snr_up_exp = 10.0 ** (base / 10.0)
        self.snr_up_real = 10.0 ** ((base - self.shadow_db[:, 0, :]) / 10.0)
        # Downlink constant part: BS power + gain - noise density - terminal noise figure.
        self.dn_base = (
            rc.bs_tx_power_dbm + rc.antenna_gain_db - rc.noise_psd_dbm_hz - self.term_nf[term]
        )
        if self._uav_extra_db > 0.0:
            self.dn_base = self.dn_base - np.where(aerial_term[:, 0], self._uav_extra_db, 0.0)
        feats = np.zeros((t_count, len(_TASK_FEATURES)))
        feats[:, 0] = self.prompt_tokens[self.task_problem] / float(self.prompt_tokens.max())
        feats[np.arange(t_count), 1 + self.term_kind[term]] = 1.0
        self.task_features = feats

    def _prepare_task(self) -> None:
        """Cache the current task's indices."""
        i = self._step
        self._term = int(self.task_terminal[i])
        self._t0 = float(self.arrivals[i])
        self._prob = int(self.task_problem[i])
        self._l_tok = float(self.prompt_tokens[self._prob])
        self._req_bits = float(self.request_bits[self._prob])

    def _start_times(self, rows: np.ndarray, shares: np.ndarray, ready: np.ndarray) -> np.ndarray:
        """When each candidate would start on its server's first-come first-served queue."""
        start = ready.copy()
        k = self._n_h
        for j in np.unique(rows):
            cand = rows == j
            held = self._h_srv[:k] == j
            start[cand] = queue_start(
                self._h_end[:k][held],
                self._h_grant[:k][held],
                int(self.parallel_limit[j]),
                ready[cand],
                shares[cand],
                GRANT_TOLERANCE,
            )
        return start

    def _evaluate(self, rows: np.ndarray, shares: np.ndarray, realized: bool) -> Outcomes:
        """Outcomes of K candidate actions (rows (K,), shares (K, 3)) on the true current state."""
        i, t0 = self._step, self._t0
        deadline = t0 + self._deadline
        c, w, m = shares[:, 0], shares[:, 1], shares[:, 2]
        snr_up = (self.snr_up_real if realized else self.snr_up_exp)[i, rows]
        b_up = w * self.up_hz[rows]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rate_up = np.where(b_up > 0, b_up * np.log2(1.0 + snr_up / b_up), 0.0)
            t_up = np.where(rate_up > 0, self._req_bits / rate_up, np.inf)
        prop_up = self.link_radio_d[i, rows] / radio.SPEED_OF_LIGHT + self.backhaul_s[rows]
        t_srv = t0 + t_up + prop_up
        comp = compute_time_vec(self.table, rows, self._l_tok, c, m)
        if self._scaled:
            comp = comp * self._server_scale[rows]
        if self._down_any:
            # A failed server runs nothing: every task sent there is rejected at once.
            comp = np.where(self._server_down[rows], np.inf, comp)
        rejected = ~np.isfinite(comp) | ~np.isfinite(t_up)
        joins = ~rejected & (t_srv < deadline)
        ready = np.where(joins, np.maximum(t_srv, self._head[rows]), t0)
        start = self._start_times(rows, shares, ready) if joins.any() else ready
        if self._contention:
            comp = comp * self._contention_factor(rows, start)
        done = np.where(rejected, t0, start + np.where(rejected, 0.0, comp))
        pos2 = positions_at(self.p0[self._term], self.vel[self._term], done, self.area)
        site = self.link_site[i, rows]
        diff = site - pos2
        d2 = np.sqrt(diff[:, 0] ** 2 + diff[:, 1] ** 2)
        d3 = np.sqrt(d2 * d2 + diff[:, 2] ** 2)
        pl2 = self._path_loss(self.link_kind[i, rows], d3, d2, site[:, 2], pos2[:, 2])
        shadow = self.shadow_db[i, 1, rows] if realized else 0.0
        snr_dn = 10.0 ** ((self.dn_base[i] - pl2 - shadow) / 10.0)
        b_dn = w * self.down_hz[rows]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rate_dn = np.where(b_dn > 0, b_dn * np.log2(1.0 + snr_dn / b_dn), 0.0)
            t_dn = np.where(rate_dn > 0, self.result_bits[rows] / rate_dn, np.inf)
        prop_dn = d3 / radio.SPEED_OF_LIGHT + self.backhaul_s[rows]
        with np.errstate(invalid="ignore"):
            queue = start - t_srv
            tx = t_up + t_dn
            prop = prop_up + prop_dn
            latency = np.where(rejected, np.inf, tx + prop + queue + comp)
        in_time = joins & (start < deadline)
        completed = in_time & (latency <= self._deadline)
        p = self.pass_table[rows, self._prob]
        with np.errstate(divide="ignore"):
            reward = np.where(completed, 1.0 / latency + p, 0.0)
        nan = np.full(len(rows), np.nan)
        return Outcomes(
            latency=latency,
            transmission=np.where(rejected, nan, tx),
            propagation=np.where(rejected, nan, prop),
            queueing=np.where(rejected, nan, queue),
            compute=np.where(rejected, nan, comp),
            completed=completed,
            rejected=rejected,
            pass_at_100=p,
            reward=reward,
            start=np.where(rejected, np.inf, start),
            release=np.where(in_time, np.minimum(t0 + latency, deadline), np.nan),
            joins=joins,
        )

    def _evaluate_one(self, j: int, shares: np.ndarray, realized: bool) -> Outcomes:
        """:meth:`_evaluate` for one action in plain floats (the step's hot path; same formulas)."""
        i, t0 = self._step, self._t0
        deadline = t0 + self._deadline
        c, w, m = float(shares[0]), float(shares[1]), float(shares[2])
        snr_up = float((self.snr_up_real if realized else self.snr_up_exp)[i, j])
        b_up = w * float(self.up_hz[j])
        rate_up = b_up * math.log2(1.0 + snr_up / b_up) if b_up > 0.0 else 0.0
        t_up = self._req_bits / rate_up if rate_up > 0.0 else math.inf
        backhaul = float(self.backhaul_s[j])
        prop_up = float(self.link_radio_d[i, j]) / radio.SPEED_OF_LIGHT + backhaul
        t_srv = t0 + t_up + prop_up
        comp = self.profiles[j].compute_time(self._l_tok, c, m)
        if self._scaled:
            comp *= float(self._server_scale[j])
        if self._down_any and self._server_down[j]:
            comp = math.inf
        rejected = not (math.isfinite(comp) and math.isfinite(t_up))
        joins = (not rejected) and t_srv < deadline
        start = t0
        if joins:
            ready = max(t_srv, float(self._head[j]))
            start = self._start_one(j, shares, ready)
            if self._contention:
                comp *= float(self._contention_factor(np.asarray([j]), np.asarray([start]))[0])
        done = t0 if rejected else start + comp
        pos2 = positions_at(self.p0[self._term], self.vel[self._term], done, self.area)
        site = self.link_site[i, j]
        dx, dy, dz = site[0] - pos2[0], site[1] - pos2[1], site[2] - pos2[2]
        d2 = math.sqrt(dx * dx + dy * dy)
        d3 = math.sqrt(d2 * d2 + dz * dz)
        pl2 = self._path_loss_one(int(self.link_kind[i, j]), d3, d2, float(site[2]), float(pos2[2]))
        shadow = float(self.shadow_db[i, 1, j]) if realized else 0.0
        snr_dn = 10.0 ** ((float(self.dn_base[i]) - pl2 - shadow) / 10.0)
        b_dn = w * float(self.down_hz[j])
        rate_dn = b_dn * math.log2(1.0 + snr_dn / b_dn) if b_dn > 0.0 else 0.0
        t_dn = float(self.result_bits[j]) / rate_dn if rate_dn > 0.0 else math.inf
        prop_dn = d3 / radio.SPEED_OF_LIGHT + backhaul
        nan = math.nan
        if rejected:
            latency, tx, prop, queue = math.inf, nan, nan, nan
            comp_out = nan
        else:
            queue = start - t_srv
            tx = t_up + t_dn
            prop = prop_up + prop_dn
            latency = tx + prop + queue + comp
            comp_out = comp
        in_time = joins and start < deadline
        completed = in_time and latency <= self._deadline
        p = float(self.pass_table[j, self._prob])
        reward = 1.0 / latency + p if completed else 0.0

        def one(value: float | bool) -> np.ndarray:
            return np.asarray([value])

        return Outcomes(
            latency=one(latency),
            transmission=one(tx),
            propagation=one(prop),
            queueing=one(queue),
            compute=one(comp_out),
            completed=one(completed),
            rejected=one(rejected),
            pass_at_100=one(p),
            reward=one(reward),
            start=one(math.inf if rejected else start),
            release=one(min(t0 + latency, deadline) if in_time else nan),
            joins=one(joins),
        )

    def _contention_factor(self, rows: np.ndarray, start: np.ndarray) -> np.ndarray:
        """``1 + gamma_j n`` per candidate, ``n`` the other tasks holding grants on its server at
        its start (``environments.contention``); shape (K,)."""
        k = self._n_h
        on = (
            (self._h_srv[:k][None, :] == rows[:, None])
            & (self._h_start[:k][None, :] <= start[:, None])
            & (self._h_end[:k][None, :] > start[:, None])
        )
        return 1.0 + self.contention_gamma[rows] * on.sum(axis=1)

    def _start_one(self, j: int, shares: np.ndarray, ready: float) -> float:
        """:func:`~environments.latency.queue_start` for one candidate, in plain floats."""
        k = self._n_h
        held = self._h_srv[:k] == j
        ends = self._h_end[:k][held]
        if ends.size == 0:
            return ready
        order = np.argsort(ends, kind="stable")
        ends_l = ends[order].tolist()
        grants = self._h_grant[:k][held][order].tolist()
        m = len(ends_l)
        need = [float(x) - 1.0 - GRANT_TOLERANCE for x in shares]
        # Still held after r releases: suffix sums of the grants, in order of release.
        still = [0.0, 0.0, 0.0]
        suffix = [still.copy()]
        for g in reversed(grants):
            still = [still[0] + g[0], still[1] + g[1], still[2] + g[2]]
            suffix.append(still)
        suffix.reverse()  # suffix[r] = held by the tasks after the first r releases
        released = sum(1 for e in ends_l if e <= ready)
        r = max(released, m - int(self.parallel_limit[j]) + 1)
        while any(suffix[r][q] + need[q] > 0.0 for q in range(3)):
            r += 1
        return ready if r <= released else ends_l[r - 1]

    def evaluate_actions(
        self,
        servers: np.ndarray,
        shares: np.ndarray,
        shadowing: Literal["expected", "realized"] = "expected",
    ) -> Outcomes:
        """Vectorised outcomes of K candidate actions for the current task (state unchanged).

        Simulator knowledge (true server state, profiles, channel model), for reference policies
        and analysis; learners do not call it.

        Parameters
        ----------
        servers : numpy.ndarray of int, shape (K,)
        shares : numpy.ndarray, shape (K, 3)
            Compute, bandwidth, memory fractions in [0, 1].
        shadowing : {"expected", "realized"}
            ``"expected"`` uses the deterministic part of the channel (no shadowing sample);
            ``"realized"`` uses the sample ``step`` will use (full knowledge, for look-aheads and bounds).

        Returns
        -------
        Outcomes
            Every field of shape (K,).
        """
        if not self._episode_ready:
            raise RuntimeError("call reset() before evaluate_actions()")
        rows = np.asarray(servers, dtype=np.int64).reshape(-1)
        sh = np.asarray(shares, dtype=np.float64).reshape(-1, 3)
        if rows.size != sh.shape[0]:
            raise ValueError(f"servers has {rows.size} entries but shares has shape {sh.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_servers):
            raise ValueError(f"servers {rows.tolist()} outside 0..{self.n_servers - 1}")
        if sh.size and not (sh.min() >= 0.0 and sh.max() <= 1.0):
            raise ValueError("shares must lie in [0, 1]")
        return self._evaluate(rows, sh, realized=shadowing == "realized")

    def predict_outcome(
        self, action: dict[str, Any], shadowing: Literal["expected", "realized"] = "expected"
    ) -> Outcome:
        """Outcome of ``action`` for the current task on the true state, without advancing.

        Uses the expected channel (the deterministic part, no shadowing sample) unless
        ``shadowing="realized"`` (the sample ``step`` will draw on; full knowledge). Simulator
        knowledge, for reference policies and analysis.
        """
        if not self._episode_ready:
            raise RuntimeError("call reset() before predict_outcome()")
        server, shares = self._validate_action(action)
        out = self._evaluate_one(server, shares, shadowing == "realized")
        parts = {name: float(getattr(out, name)[0]) for name in _PARTS}
        return Outcome(
            float(out.latency[0]),
            parts,
            bool(out.completed[0]),
            float(out.pass_at_100[0]),
            _failure(out, 0),
        )

    def can_run(self, servers: np.ndarray, shares: np.ndarray) -> np.ndarray:
        """Whether each grant can run the current kind of task at all, shape (K,).

        False for a zero compute or bandwidth share, or less memory than one sample of the
        server's profile needs; such a task is rejected at once. This is what a scheduler
        knows from its servers' profiles, not a prediction of the outcome.
        """
        rows = np.asarray(servers, dtype=np.int64).reshape(-1)
        sh = np.asarray(shares, dtype=np.float64).reshape(-1, 3)
        per_wave = np.floor(sh[:, 2] * self.table.pool_gib[rows] / self.table.slot_gib[rows])
        return (sh[:, 0] > 0.0) & (sh[:, 1] > 0.0) & (per_wave >= 1.0)

    # ------------------------------------------------------------------ bookkeeping
    def _commit(self, server: int, shares: np.ndarray, out: Outcomes) -> dict[str, Any]:
        t_max, t0 = self._deadline, self._t0
        deadline = t0 + t_max
        completed = bool(out.completed[0])
        rejected = bool(out.rejected[0])
        start = float(out.start[0])
        release = float(out.release[0])
        if bool(out.joins[0]):
            if start < deadline:
                self._hold(server, start, release, shares)
                self._head[server] = start
                leave = start
            else:
                # Still waiting at its deadline: it leaves the queue then, holding nothing.
                self._head[server] = max(self._head[server], deadline)
                leave = deadline
            if leave > t0:
                self._wait(server, leave)
        latency = float(out.latency[0])
        parts = None if rejected else {name: float(getattr(out, name)[0]) for name in _PARTS}
        started = bool(out.joins[0]) and start < deadline
        if completed:
            outcome_time = t0 + latency
        elif rejected:
            outcome_time = t0
        else:
            outcome_time = deadline
        p = float(out.pass_at_100[0])
        reward = float(out.reward[0])
        info = {
            "completed": completed,
            "failure": _failure(out, 0),
            "latency": latency if completed else None,
            "latency_parts": parts if completed else None,
            "given_up_after": None if completed else (0.0 if rejected else t_max),
            "pass_at_100": p if completed else None,
            "reward": reward,
            "rg": reward,
            "server": server,
            "server_kind": self.server_kinds[server],
            "shares": shares,
            "task_id": self._prob,
            "terminal_kind": TERMINAL_KINDS[int(self.term_kind[self._term])],
            "arrival_time": t0,
            "start_time": start if started else None,
            "release_time": release if started else None,
            "outcome_time": outcome_time,
            NOT_FOR_POLICIES: {"latency": latency, "latency_parts": parts, "pass_at_100": p},
        }
        self._step += 1
        if self._step < self.config.tasks_per_episode:
            self._advance(float(self.arrivals[self._step]))
        return info

    def _hold(self, server: int, start: float, end: float, grant: np.ndarray) -> None:
        if self._n_h == self._h_srv.size:
            self._h_srv = np.concatenate([self._h_srv, np.zeros_like(self._h_srv)])
            self._h_start = np.concatenate([self._h_start, np.zeros_like(self._h_start)])
            self._h_end = np.concatenate([self._h_end, np.zeros_like(self._h_end)])
            self._h_grant = np.concatenate([self._h_grant, np.zeros_like(self._h_grant)])
        k = self._n_h
        self._h_srv[k], self._h_start[k], self._h_end[k] = server, start, end
        self._h_grant[k] = grant
        self._n_h += 1

    def _wait(self, server: int, leave: float) -> None:
        if self._n_w == self._w_srv.size:
            self._w_srv = np.concatenate([self._w_srv, np.zeros_like(self._w_srv)])
            self._w_leave = np.concatenate([self._w_leave, np.zeros_like(self._w_leave)])
        self._w_srv[self._n_w], self._w_leave[self._n_w] = server, leave
        self._n_w += 1

    def _advance(self, clock: float) -> None:
        """Move the clock and forget grants released and waits ended by then."""
        self._clock = clock
        k = self._n_h
        keep = self._h_end[:k] > clock
        if not keep.all():
            n_keep = int(keep.sum())
            self._h_srv[:n_keep] = self._h_srv[:k][keep]
            self._h_start[:n_keep] = self._h_start[:k][keep]
            self._h_end[:n_keep] = self._h_end[:k][keep]
            self._h_grant[:n_keep] = self._h_grant[:k][keep]
            self._n_h = n_keep
        k = self._n_w
        keep = self._w_leave[:k] > clock
        if not keep.all():
            n_keep = int(keep.sum())
            self._w_srv[:n_keep] = self._w_srv[:k][keep]
            self._w_leave[:n_keep] = self._w_leave[:k][keep]
            self._n_w = n_keep

    # ------------------------------------------------------------------ observation
    def _server_readings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Free fractions (n, 3), running and waiting counts (n,) at the current clock."""
        n, k, clock = self.n_servers, self._n_h, self._clock
        active = (self._h_start[:k] <= clock) & (self._h_end[:k] > clock)
        srv = self._h_srv[:k][active]
        used = np.zeros((n, 3))
        np.add.at(used, srv, self._h_grant[:k][active])
        running = np.bincount(srv, minlength=n)
        waiting = np.bincount(self._w_srv[: self._n_w], minlength=n)
        return 1.0 - used, running, waiting

    def _observation(self) -> np.ndarray:
        n = self.n_servers
        free, running, waiting = self._server_readings()
        limit = self.parallel_limit
        # A grant may exceed what is free by GRANT_TOLERANCE; the reading shows that as 0.
        rem = np.maximum(free, 0.0)
        queue = np.stack([running / limit, waiting / (waiting + limit)], axis=1)
        i = min(self._step, self.config.tasks_per_episode - 1)
        po = self.config.partial_observability
        if po.enabled:
            reading = np.concatenate([rem.ravel(), queue.ravel()])
            self._history.append(reading)
            reading = self._history[0].copy()
            if po.noise_std > 0:
                reading = reading + self.np_random.normal(0.0, po.noise_std, size=reading.shape)
                np.clip(reading, 0.0, 1.0, out=reading)
            rem, queue = reading[: 3 * n], reading[3 * n :]
        return np.concatenate(
            (
                self.task_distance[i],
                rem.ravel(),
                queue.ravel(),
                self.task_features[i],
                (self._step / self.config.tasks_per_episode,),
            )
        ).astype(np.float32)

    def _task_info(self) -> dict[str, Any]:
        return {
            "task_id": self._prob,
            "terminal_kind": TERMINAL_KINDS[int(self.term_kind[self._term])],
            "arrival_time": self._t0,
        }

    # ------------------------------------------------------------------ helpers for users
    def change_points(self) -> tuple[ChangePoint, ...]:
        """The drift schedule's change points (training episodes), for marking figures.

        Empty unless the scenario has a drift schedule (``config.drift``).
        """
        return self.config.drift.change_points()

    @property
    def drift_state(self) -> dict[str, Any]:
        """What the drift schedule changed in this episode (simulator internals, for analysis).

        ``episode`` (the training episode index given to ``reset``), ``events`` (the active
        :class:`~environments.DriftEvent` objects), ``compute_scale`` (shape (n_servers,)),
        ``failed`` (bool, shape (n_servers,)), ``uav_extra_loss_db`` and ``problems`` (the
        problem indices tasks are drawn from; None: all).
        """
        pool = self._problem_pool
        return {
            "episode": self.episode,
            "events": self._active_events,
            "compute_scale": self._server_scale.copy(),
            "failed": self._server_down.copy(),
            "uav_extra_loss_db": self._uav_extra_db,
            "problems": None if pool is None else pool.copy(),
        }

    @property
    def clock(self) -> float:
        """Simulated time (s) of the current decision."""
        return self._clock

    @property
    def remaining(self) -> np.ndarray:
        """Free fractions now, shape (n_servers, 3): compute, bandwidth, memory.

        ``1 - `` the grants held by running tasks; never clamped (a grant may exceed what is
        free by :data:`GRANT_TOLERANCE`).
        """
        return self._server_readings()[0]

    @property
    def active_count(self) -> np.ndarray:
        """Tasks running on each server now, shape (n_servers,)."""
        return self._server_readings()[1]

    @property
    def waiting_count(self) -> np.ndarray:
        """Tasks waiting in each server's queue now, shape (n_servers,)."""
        return self._server_readings()[2]

    @property
    def current_task(self) -> dict[str, Any]:
        """The current task: problem index, prompt tokens, terminal, arrival time."""
        return {
            "problem": self._prob,
            "prompt_tokens": float(self.prompt_tokens[self._prob]),
            "terminal": self._term,
            "terminal_kind": TERMINAL_KINDS[int(self.term_kind[self._term])],
            "arrival_time": self._t0,
            "step": self._step,
        }

    def distance_matrix(self) -> np.ndarray:
        """Distances from every terminal to every server site at the current clock, km.

        Returns
        -------
        numpy.ndarray, shape (n_terminals, n_servers)
        """
        pos = positions_at(self.p0, self.vel, self._clock, self.area)
        diff = pos[:, None, :] - self.server_pos[None, :, :]
        return np.sqrt(np.einsum("tsi,tsi->ts", diff, diff)) / 1000.0

    def task_schedule(self) -> dict[str, np.ndarray]:
        """The whole episode's task sequence (offline knowledge, for look-aheads, bounds and analysis).

        Returns arrays of shape (tasks_per_episode,): ``arrival_time``, ``terminal``, ``problem``.
        """
        return {
            "arrival_time": self.arrivals.copy(),
            "terminal": self.task_terminal.copy(),
            "problem": self.task_problem.copy(),
        }

    def get_state(self) -> _State:
        """Snapshot of the mutable server state (for look-ahead planners); see :meth:`set_state`."""
        k, w = self._n_h, self._n_w
        return _State(
            self._clock,
            self._step,
            self._h_srv[:k].copy(),
            self._h_start[:k].copy(),
            self._h_end[:k].copy(),
            self._h_grant[:k].copy(),
            self._w_srv[:w].copy(),
            self._w_leave[:w].copy(),
            self._head.copy(),
        )

    def set_state(self, state: _State) -> None:
        """Restore a snapshot from :meth:`get_state` taken in the same episode."""
        self._clock, self._step = state.clock, state.step
        k, w = state.h_srv.size, state.w_srv.size
        cap = max(16, 2 * k)
        self._h_srv = np.zeros(cap, np.int64)
        self._h_start, self._h_end = np.zeros(cap), np.zeros(cap)
        self._h_grant = np.zeros((cap, 3))
        self._h_srv[:k], self._h_start[:k], self._h_end[:k] = (
            state.h_srv,
            state.h_start,
            state.h_end,
        )
        self._h_grant[:k] = state.h_grant
        self._n_h = k
        cap = max(16, 2 * w)
        self._w_srv, self._w_leave = np.zeros(cap, np.int64), np.zeros(cap)
        self._w_srv[:w], self._w_leave[:w] = state.w_srv, state.w_leave
        self._n_w = w
        self._head = state.head.copy()
        self._episode_ready = self._step < self.config.tasks_per_episode
        if self._episode_ready:
            self._prepare_task()

    def simulate_step(self, server: int, shares: np.ndarray) -> dict[str, Any]:
        """Apply one action with the realised channel and advance, without building an observation.

        For look-ahead planners working between :meth:`get_state` and :meth:`set_state`.
        """
        sh = np.asarray(shares, dtype=np.float64)
        info = self._commit(int(server), sh, self._evaluate_one(int(server), sh, realized=True))
        self._episode_ready = self._step < self.config.tasks_per_episode
        if self._episode_ready:
            self._prepare_task()
        return info

    # ------------------------------------------------------------------ rendering
    def _render_text(self) -> str:
        info = self._last_info
        free, running, waiting = self._server_readings()
        lines = [f"t={self._clock:8.2f}s  task {self._step}/{self.config.tasks_per_episode}"]
        for j in range(self.n_servers):
            lines.append(
                f"  {j:2d} {self.server_kinds[j]:5s} free c={free[j, 0]:.2f} w={free[j, 1]:.2f} "
                f"m={free[j, 2]:.2f} running={int(running[j])} waiting={int(waiting[j])}"
            )
        if info:
            latency = "-" if info["latency"] is None else f"{info['latency']:.3f}s"
            lines.append(
                f"  last: server {info['server']} completed={info['completed']} "
                f"L={latency} failure={info['failure']}"
            )
        return "\n".join(lines)

    def render(self) -> str | None:  # type: ignore[override]
        """Text summary of the servers (``"ansi"`` returns it, ``"human"`` prints it)."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode")
            return None
        text = self._render_text()
        if self.render_mode == "ansi":
            return text
        print(text)
        return None


def _episode_option(options: dict[str, Any] | None) -> int:
    """The training episode index of ``reset``'s options (0 without it)."""
    if not options:
        return 0
    unknown = set(options) - {"episode"}
    if unknown:
        raise ValueError(f"reset options {sorted(unknown)} are unknown; expected only 'episode'")
    k = options.get("episode", 0)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
        raise ValueError(
            f"reset options['episode'] = {k!r} must be an integer >= 0 (the training episode index)"
        )
    return int(k)


def _failure(out: Outcomes, k: int) -> str | None:
    if bool(out.completed[k]):
        return None
    return "rejected" if bool(out.rejected[k]) else "t_max"
