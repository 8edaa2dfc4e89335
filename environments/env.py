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
from environments.config import TERMINAL_KINDS, ScenarioConfig
from environments.llm_profiles import ProfileTable, compute_time_vec, load_profile
from environments.mobility import initial_state, positions_at
from environments.tasks import task_arrays

__all__ = ["CloudEdgeOffloadEnv", "Outcome", "Outcomes"]

# A grant may exceed what remains by this much (float32 actions vs float64 bookkeeping) and is
# then clipped to what remains instead of counted as an over-allocation.
GRANT_TOLERANCE = 1e-6
_LINK_G2G, _LINK_G2A, _LINK_A2A = 0, 1, 2
_TASK_FEATURES = ("prompt_tokens", "request_kbit", "result_kbit", *TERMINAL_KINDS, "t_max")


class Outcome(NamedTuple):
    """Predicted or realised result of one action for the current task.

    ``latency`` is the full latency in seconds even when it exceeds ``t_max`` (then
    ``completed`` is False and ``failure == "t_max"``); it is ``inf`` for an over-allocation (the
    task never runs) or a zero share. ``parts`` holds ``transmission``, ``propagation``,
    ``queueing`` and ``compute`` (seconds, summing to ``latency``; NaN for an over-allocation).
    """

    latency: float
    parts: dict[str, float]
    completed: bool
    pass_at_100: float
    failure: str | None


class Outcomes(NamedTuple):
    """Vectorised outcomes of K candidate actions; every field has shape (K,)."""

    latency: np.ndarray
    transmission: np.ndarray
    propagation: np.ndarray
    queueing: np.ndarray
    compute: np.ndarray
    completed: np.ndarray
    over_allocation: np.ndarray
    pass_at_100: np.ndarray
    reward: np.ndarray
    # Internal bookkeeping for committing the action.
    start: np.ndarray
    done: np.ndarray


class _State(NamedTuple):
    clock: float
    step: int
    used: np.ndarray
    slot_free: np.ndarray
    act_rel: np.ndarray
    act_srv: np.ndarray
    act_sh: np.ndarray
    n_act: int
    active_count: np.ndarray


class CloudEdgeOffloadEnv(gym.Env[np.ndarray, dict[str, Any]]):
    """Offloading GPT-J-6B HumanEval tasks from IoT terminals to cloud and edge servers.

    ## Description
    Terminals (phones, vehicles, UAVs, fixed PCs) move in an area and issue LLM inference tasks
    (HumanEval problems, 100 samples each for pass@100) as a Poisson process. Each step the agent
    places the current task on one server and grants it fractions of that server's compute,
    bandwidth and GPU memory (He et al., IEEE IoT-J 2025; TMC 2024). Grants are held until the
    task ends and then released; each server runs at most ``parallel_limit`` tasks and queues the
    rest. Latency = transmission + propagation + queueing + compute; a task fails when it exceeds
    ``t_max`` or when a grant exceeds what remains. After the decision the clock advances to the
    next arrival. Models and sources: ``docs/environment.md``.

    ## Action Space
    ``Dict(server=Discrete(n_servers), shares=Box(0, 1, (3,), float32))``: the server index and
    the fractions of its TOTAL compute, bandwidth and GPU memory to grant. A value outside the
    space raises ``ValueError``; a grant larger than what remains (beyond a 1e-6 tolerance) fails
    the task with ``failure="over_allocation"`` and reserves nothing.

    ## Observation Space
    ``Box(float32)`` of length ``4 n_servers + 3 n_servers + 9`` laid out as ``obs_layout``:

    - ``distance`` (n_servers): current terminal to each server site, km, ``[0, d_max]``;
    - ``remaining`` (n_servers * 3): remaining compute, bandwidth, memory fractions, server-major,
      ``[0, 1]``;
    - ``queue`` (n_servers): tasks holding the server (running or queued) / parallel limit,
      ``[0, tasks_per_episode]``;
    - ``task`` (8): prompt tokens / 2048, request size in 100 kbit, result size in 1000 kbit,
      terminal kind one-hot (phone, vehicle, uav, pc), ``t_max`` / 100 s;
    - ``progress`` (1): tasks decided / tasks_per_episode.

    With ``partial_observability`` the ``remaining`` and ``queue`` readings are delayed and noisy.
    The full terminal-to-server matrix is :meth:`distance_matrix`.

    ## Rewards
    ``r = 1/L + P`` for a completed task (``L`` latency in s, ``P`` its pass@100), else 0: the DRL
    reward of He et al. (TMC 2024). ``info["rg"]`` is the rewardless guidance
    ``tc * (1/L + P)`` (``tc = 1`` if completed), numerically the same value.

    ## Episode End
    Terminated after ``tasks_per_episode`` decisions; never truncated by the env itself.

    ## Arguments
    ``config``: a :class:`~environments.ScenarioConfig` (default: the paper preset);
    ``render_mode``: ``None``, ``"ansi"`` or ``"human"``; ``preset``: preset name used when
    ``config`` is None; further keyword arguments override top-level config fields, e.g.
    ``gymnasium.make("CloudEdgeOffload-v0", t_max=5.0)``.

    ## Info
    ``latency``, ``latency_parts``, ``pass_at_100``, ``completed``, ``server``, ``server_kind``,
    ``failure`` (None, "t_max" or "over_allocation"), ``rg``, ``reward``, plus ``task_id``,
    ``terminal_kind``, ``arrival_time`` and ``shares``.

    ## Version History
    * v0: initial version.
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
        self.up_hz_list = [float(v) for v in self.up_hz]
        self.down_hz_list = [float(v) for v in self.down_hz]
        self.profiles = [load_profile(s.profile) for s in cfg.servers]
        self.table = ProfileTable.from_profiles(self.profiles)
        self.pass_table = np.stack([p.pass_at_k for p in self.profiles])  # (n, n_problems)
        self.prompt_tokens, request_bytes = task_arrays()
        self.request_bits = 8.0 * (request_bytes + cfg.network.request_header_bytes)
        self.result_bits = (
            8.0 * self.table.samples * self.table.new_tokens * cfg.network.result_bytes_per_token
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
        self.backhaul_list = [float(v) for v in self.backhaul_s]
        self.result_bits_list = [float(v) for v in self.result_bits]
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
        self._slot_cols = int(self.parallel_limit.max())
        self._slot_pad = np.arange(self._slot_cols)[None, :] >= self.parallel_limit[:, None]
        self._active_cap = 64

    def _build_observation_space(self) -> None:
        n = self.n_servers
        cfg = self.config
        layout: dict[str, slice] = {}
        pos = 0
        for name, size in (
            ("distance", n),
            ("remaining", 3 * n),
            ("queue", n),
            ("task", len(_TASK_FEATURES)),
            ("progress", 1),
        ):
            layout[name] = slice(pos, pos + size)
            pos += size
        self.obs_layout = layout
        self.task_feature_names = _TASK_FEATURES
        corners = np.asarray(
            [[x, y, h] for x in (0, self.area[0]) for y in (0, self.area[1]) for h in (0, 10_000)]
        )
        d_max = np.max(np.linalg.norm(corners[:, None, :] - self.server_pos[None], axis=-1), axis=0)
        low = np.zeros(pos, np.float32)
        high = np.empty(pos, np.float32)
        high[layout["distance"]] = d_max / 1000.0 * 1.01 + 1.0
        high[layout["remaining"]] = 1.0
        high[layout["queue"]] = float(cfg.tasks_per_episode)
        high[layout["task"]] = (4.0, 100.0, 100.0, 1.0, 1.0, 1.0, 1.0, 36.0)
        high[layout["progress"]] = 1.0
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self._obs_low, self._obs_high = low, high

    # ------------------------------------------------------------------ episode
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: draw arrivals, terminals, problems, shadowing and mobility."""
        super().reset(seed=seed)
        cfg = self.config
        rng = self.np_random
        n, t_count = self.n_servers, cfg.tasks_per_episode
        self.arrivals = np.cumsum(rng.exponential(1.0 / cfg.arrival_rate, size=t_count))
        self.task_terminal = rng.integers(0, self.n_terminals, size=t_count)
        self.task_problem = rng.integers(0, self.prompt_tokens.size, size=t_count)
        self.shadow_db = rng.normal(0.0, cfg.radio.shadowing_std_db, size=(t_count, 2, n))
        self.p0, self.vel = initial_state(rng, self.term_speed, self.term_height, self.area)
        self._precompute_uplinks()
        self._used = np.zeros((n, 3))
        self._slot_free = np.where(self._slot_pad, np.inf, 0.0)
        self._act_rel = np.zeros(self._active_cap)
        self._act_srv = np.zeros(self._active_cap, np.int64)
        self._act_sh = np.zeros((self._active_cap, 3))
        self._n_act = 0
        self._active_count = np.zeros(n, np.int64)
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
        else:
            self._prepare_task()
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
        """Path loss (dB) by link kind; scalars or arrays of one shape.

        Ground-to-ground: the configured model; ground-to-air: Al-Hourani; air-to-air: free space.
        """
        rc = self.config.radio
        if np.ndim(kind) == 0:
            if kind == _LINK_G2G:
                return radio.ground_to_ground_path_loss(
                    rc.g2g_model, d3, d2, rc.carrier_ghz, h_site, h_term
                )
            if kind == _LINK_G2A:
                elevation = np.degrees(np.arctan2(np.abs(h_site - h_term), np.maximum(d2, 1e-9)))
                return radio.air_to_ground_path_loss(
                    d3, elevation, rc.carrier_ghz, rc.a2g_environment
                )
            return radio.air_to_air_path_loss(d3, rc.carrier_ghz, rc.a2a_alpha)
        out = np.empty(np.shape(kind))
        for code in (_LINK_G2G, _LINK_G2A, _LINK_A2A):
            mask = kind == code
            if mask.any():
                out[mask] = self._path_loss(code, d3[mask], d2[mask], h_site[mask], h_term[mask])
        return out

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
        geo = self.server_pos[None, :, :] - pos[:, None, :]
        self.task_distance_km = np.sqrt(np.einsum("tsi,tsi->ts", geo, geo)) / 1000.0
        self.link_site = site
        self.link_kind = kind
        self.link_radio_d = d3
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
        feats = np.zeros((t_count, len(_TASK_FEATURES)))
        prob = self.task_problem
        feats[:, 0] = self.prompt_tokens[prob] / 2048.0
        feats[:, 1] = self.request_bits[prob] / 1e5
        feats[:, 2] = float(self.result_bits.max()) / 1e6
        feats[np.arange(t_count), 3 + self.term_kind[term]] = 1.0
        feats[:, 7] = self.config.t_max / 100.0
        self.task_features = feats

    def _prepare_task(self) -> None:
        """Cache the current task's indices."""
        i = self._step
        self._term = int(self.task_terminal[i])
        self._t0 = float(self.arrivals[i])
        self._prob = int(self.task_problem[i])
        self._l_tok = float(self.prompt_tokens[self._prob])
        self._req_bits = float(self.request_bits[self._prob])

    def _evaluate_one(self, j: int, shares: np.ndarray, realized: bool) -> tuple[Any, ...]:
        """Scalar fast path of :meth:`_evaluate` for one action (same formulas, same order).

        Returns ``(latency, tx, prop, queue, comp, completed, over, p, reward, start, done)``.
        """
        i, t0 = self._step, self._t0
        c, w, m = float(shares[0]), float(shares[1]), float(shares[2])
        rem = 1.0 - self._used[j]
        tol = GRANT_TOLERANCE
        over = c > rem[0] + tol or w > rem[1] + tol or m > rem[2] + tol
        snr_up = float((self.snr_up_real if realized else self.snr_up_exp)[i, j])
        b_up = w * self.up_hz_list[j]
        rate_up = b_up * math.log2(1.0 + snr_up / b_up) if b_up > 0.0 else 0.0
        t_up = self._req_bits / rate_up if rate_up > 0.0 else math.inf
        backhaul = self.backhaul_list[j]
        prop_up = float(self.link_radio_d[i, j]) / radio.SPEED_OF_LIGHT + backhaul
        t_srv = t0 + t_up + prop_up
        start = max(t_srv, float(self._slot_free[j].min()))
        queue = start - t_srv
        comp = self.profiles[j].compute_time(self._l_tok, c, m)
        done = start + comp
        b_dn = w * self.down_hz_list[j]
        if math.isfinite(done) and b_dn > 0.0:
            pos2 = positions_at(self.p0[self._term], self.vel[self._term], done, self.area)
            site = self.link_site[i, j]
            dx, dy, dz = site[0] - pos2[0], site[1] - pos2[1], site[2] - pos2[2]
            d2 = math.sqrt(dx * dx + dy * dy)
            d3 = math.sqrt(d2 * d2 + dz * dz)
            pl2 = float(
                self._path_loss(int(self.link_kind[i, j]), d3, d2, float(site[2]), float(pos2[2]))
            )
            shadow = float(self.shadow_db[i, 1, j]) if realized else 0.0
            snr_dn = 10.0 ** ((float(self.dn_base[i]) - pl2 - shadow) / 10.0)
            rate_dn = b_dn * math.log2(1.0 + snr_dn / b_dn)
            t_dn = self.result_bits_list[j] / rate_dn if rate_dn > 0.0 else math.inf
            prop_dn = d3 / radio.SPEED_OF_LIGHT + backhaul
        else:
            t_dn, prop_dn = (
                math.inf,
                float(self.link_radio_d[i, j]) / radio.SPEED_OF_LIGHT + backhaul,
            )
        tx = t_up + t_dn
        prop = prop_up + prop_dn
        latency = tx + prop + queue + comp
        if math.isnan(latency):
            latency = math.inf
        completed = (not over) and latency <= self.config.t_max
        p = float(self.pass_table[j, self._prob])
        reward = 1.0 / latency + p if completed else 0.0
        if over:
            nan = math.nan
            return math.inf, nan, nan, nan, nan, False, True, p, 0.0, start, done
        return latency, tx, prop, queue, comp, completed, False, p, reward, start, done

    def _evaluate(self, rows: np.ndarray, shares: np.ndarray, realized: bool) -> Outcomes:
        """Outcomes of K candidate actions (rows (K,), shares (K, 3)) on the true current state."""
        i, t0 = self._step, self._t0
        c, w, m = shares[:, 0], shares[:, 1], shares[:, 2]
        over = np.any(shares > (1.0 - self._used[rows]) + GRANT_TOLERANCE, axis=1)
        snr_up = (self.snr_up_real if realized else self.snr_up_exp)[i, rows]
        b_up = w * self.up_hz[rows]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rate_up = np.where(b_up > 0, b_up * np.log2(1.0 + snr_up / b_up), 0.0)
            t_up = np.where(rate_up > 0, self._req_bits / rate_up, np.inf)
            prop_up = self.link_radio_d[i, rows] / radio.SPEED_OF_LIGHT + self.backhaul_s[rows]
            t_srv = t0 + t_up + prop_up
            start = np.maximum(t_srv, self._slot_free.min(axis=1)[rows])
            queue = start - t_srv
            comp = compute_time_vec(self.table, rows, self._l_tok, c, m)
            done = start + comp
            b_dn = w * self.down_hz[rows]
            ok = np.isfinite(done) & (b_dn > 0)
            pos2 = positions_at(
                self.p0[self._term], self.vel[self._term], np.where(ok, done, t0), self.area
            )
            site = self.link_site[i, rows]
            diff = site - pos2
            d2 = np.sqrt(diff[:, 0] ** 2 + diff[:, 1] ** 2)
            d3 = np.sqrt(d2 * d2 + diff[:, 2] ** 2)
            pl2 = self._path_loss(self.link_kind[i, rows], d3, d2, site[:, 2], pos2[:, 2])
            shadow = self.shadow_db[i, 1, rows] if realized else 0.0
            snr_dn = 10.0 ** ((self.dn_base[i] - pl2 - shadow) / 10.0)
            rate_dn = np.where(b_dn > 0, b_dn * np.log2(1.0 + snr_dn / b_dn), 0.0)
            t_dn = np.where(ok & (rate_dn > 0), self.result_bits[rows] / rate_dn, np.inf)
            prop_dn = (
                np.where(ok, d3, self.link_radio_d[i, rows]) / radio.SPEED_OF_LIGHT
                + self.backhaul_s[rows]
            )
            tx = t_up + t_dn
            prop = prop_up + prop_dn
            latency = tx + prop + queue + comp
        latency = np.where(np.isnan(latency), np.inf, latency)
        completed = ~over & (latency <= self.config.t_max)
        p = self.pass_table[rows, self._prob]
        with np.errstate(divide="ignore"):
            reward = np.where(completed, 1.0 / latency + p, 0.0)
        nan = np.full(len(rows), np.nan)
        return Outcomes(
            latency=np.where(over, np.inf, latency),
            transmission=np.where(over, nan, tx),
            propagation=np.where(over, nan, prop),
            queueing=np.where(over, nan, queue),
            compute=np.where(over, nan, comp),
            completed=completed,
            over_allocation=over,
            pass_at_100=p,
            reward=reward,
            start=start,
            done=done,
        )

    def evaluate_actions(
        self,
        servers: np.ndarray,
        shares: np.ndarray,
        shadowing: Literal["expected", "realized"] = "expected",
    ) -> Outcomes:
        """Vectorised outcomes of K candidate actions for the current task (state unchanged).

        Parameters
        ----------
        servers : numpy.ndarray of int, shape (K,)
        shares : numpy.ndarray, shape (K, 3)
            Compute, bandwidth, memory fractions in [0, 1].
        shadowing : {"expected", "realized"}
            ``"expected"`` uses the deterministic part of the channel (no shadowing sample);
            ``"realized"`` uses the sample ``step`` will use (full knowledge, for oracles).

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
        ``shadowing="realized"`` (the sample ``step`` will draw on; full knowledge).
        """
        if not self._episode_ready:
            raise RuntimeError("call reset() before predict_outcome()")
        server, shares = self._validate_action(action)
        return _outcome_from_tuple(self._evaluate_one(server, shares, shadowing == "realized"))

    # ------------------------------------------------------------------ bookkeeping
    def _commit(self, server: int, shares: np.ndarray, out: tuple[Any, ...]) -> dict[str, Any]:
        t_max, t0 = self.config.t_max, self._t0
        latency, tx, prop, queue, comp, completed, over, p, reward, start, done = out
        # A task that cannot run at all (a zero share, or memory for not even one sequence) is
        # rejected at once: it holds no grant and no slot.
        if not over and math.isfinite(latency):
            grant = np.minimum(shares, 1.0 - self._used[server])
            deadline = t0 + t_max
            if start < deadline:
                slot = int(np.argmin(self._slot_free[server]))
                self._slot_free[server, slot] = min(done, deadline)
            self._used[server] += grant
            if self._n_act == self._act_rel.size:
                self._act_rel = np.concatenate([self._act_rel, np.zeros_like(self._act_rel)])
                self._act_srv = np.concatenate([self._act_srv, np.zeros_like(self._act_srv)])
                self._act_sh = np.concatenate([self._act_sh, np.zeros_like(self._act_sh)])
            k = self._n_act
            self._act_rel[k] = t0 + min(latency, t_max)
            self._act_srv[k] = server
            self._act_sh[k] = grant
            self._n_act += 1
            self._active_count[server] += 1
        failure = "over_allocation" if over else (None if completed else "t_max")
        info = {
            "latency": latency,
            "latency_parts": {
                "transmission": tx,
                "propagation": prop,
                "queueing": queue,
                "compute": comp,
            },
            "pass_at_100": p,
            "completed": completed,
            "server": server,
            "server_kind": self.server_kinds[server],
            "failure": failure,
            "rg": reward,
            "reward": reward,
            "task_id": self._prob,
            "terminal_kind": TERMINAL_KINDS[int(self.term_kind[self._term])],
            "arrival_time": t0,
            "shares": shares,
        }
        self._step += 1
        if self._step < self.config.tasks_per_episode:
            self._advance(float(self.arrivals[self._step]))
        return info

    def _advance(self, clock: float) -> None:
        """Move the clock and release the grants of tasks that ended by then."""
        self._clock = clock
        k = self._n_act
        if k == 0:
            return
        rel = self._act_rel[:k]
        done = rel <= clock
        if not done.any():
            return
        srv = self._act_srv[:k][done]
        np.subtract.at(self._used, srv, self._act_sh[:k][done])
        np.subtract.at(self._active_count, srv, 1)
        keep = ~done
        n_keep = int(keep.sum())
        self._act_rel[:n_keep] = rel[keep]
        self._act_srv[:n_keep] = self._act_srv[:k][keep]
        self._act_sh[:n_keep] = self._act_sh[:k][keep]
        self._n_act = n_keep
        # Idle servers are reset exactly so rounding never accumulates.
        self._used[self._active_count == 0] = 0.0
        np.maximum(self._used, 0.0, out=self._used)

    # ------------------------------------------------------------------ observation
    def _observation(self) -> np.ndarray:
        n = self.n_servers
        rem = 1.0 - self._used
        queue = self._active_count / self.parallel_limit
        i = min(self._step, self.config.tasks_per_episode - 1)
        po = self.config.partial_observability
        if po.enabled:
            reading = np.concatenate([rem.ravel(), queue])
            self._history.append(reading)
            reading = self._history[0].copy()
            if po.noise_std > 0:
                reading = reading + self.np_random.normal(0.0, po.noise_std, size=reading.shape)
            rem, queue = reading[: 3 * n], reading[3 * n :]
        obs = np.concatenate(
            (
                self.task_distance_km[i],
                rem.ravel(),
                queue,
                self.task_features[i],
                (self._step / self.config.tasks_per_episode,),
            )
        ).astype(np.float32)
        if po.enabled:
            np.clip(obs, self._obs_low, self._obs_high, out=obs)
        return obs

    def _task_info(self) -> dict[str, Any]:
        return {
            "task_id": self._prob,
            "terminal_kind": TERMINAL_KINDS[int(self.term_kind[self._term])],
            "arrival_time": self._t0,
        }

    # ------------------------------------------------------------------ helpers for users
    @property
    def clock(self) -> float:
        """Simulated time (s) of the current decision."""
        return self._clock

    @property
    def remaining(self) -> np.ndarray:
        """True remaining fractions, shape (n_servers, 3): compute, bandwidth, memory."""
        return 1.0 - self._used

    @property
    def active_count(self) -> np.ndarray:
        """Tasks holding each server (running or queued), shape (n_servers,)."""
        return self._active_count.copy()

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
        """Distances from every terminal to every server at the current clock, km.

        Returns
        -------
        numpy.ndarray, shape (n_terminals, n_servers)
        """
        pos = positions_at(self.p0, self.vel, self._clock, self.area)
        diff = pos[:, None, :] - self.server_pos[None, :, :]
        return np.sqrt(np.einsum("tsi,tsi->ts", diff, diff)) / 1000.0

    def task_schedule(self) -> dict[str, np.ndarray]:
        """The whole episode's task sequence (offline knowledge, for oracles and analysis).

        Returns arrays of shape (tasks_per_episode,): ``arrival_time``, ``terminal``, ``problem``.
        """
        return {
            "arrival_time": self.arrivals.copy(),
            "terminal": self.task_terminal.copy(),
            "problem": self.task_problem.copy(),
        }

    def get_state(self) -> _State:
        """Snapshot of the mutable server state (for look-ahead planners); see :meth:`set_state`."""
        return _State(
            self._clock,
            self._step,
            self._used.copy(),
            self._slot_free.copy(),
            self._act_rel.copy(),
            self._act_srv.copy(),
            self._act_sh.copy(),
            self._n_act,
            self._active_count.copy(),
        )

    def set_state(self, state: _State) -> None:
        """Restore a snapshot from :meth:`get_state` taken in the same episode."""
        self._clock, self._step = state.clock, state.step
        self._used = state.used.copy()
        self._slot_free = state.slot_free.copy()
        self._act_rel, self._act_srv = state.act_rel.copy(), state.act_srv.copy()
        self._act_sh = state.act_sh.copy()
        self._n_act = state.n_act
        self._active_count = state.active_count.copy()
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
        rem = 1.0 - self._used
        lines = [f"t={self._clock:8.2f}s  task {self._step}/{self.config.tasks_per_episode}"]
        for j in range(self.n_servers):
            lines.append(
                f"  {j:2d} {self.server_kinds[j]:5s} remaining c={rem[j, 0]:.2f} w={rem[j, 1]:.2f} "
                f"m={rem[j, 2]:.2f} holding={int(self._active_count[j])}"
            )
        if info:
            lines.append(
                f"  last: server {info['server']} completed={info['completed']} "
                f"L={info['latency']:.3f}s failure={info['failure']}"
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


def _outcome_from_tuple(out: tuple[Any, ...]) -> Outcome:
    latency, tx, prop, queue, comp, completed, over, p, _, _, _ = out
    failure = "over_allocation" if over else (None if completed else "t_max")
    parts = {"transmission": tx, "propagation": prop, "queueing": queue, "compute": comp}
    return Outcome(latency, parts, completed, p, failure)
