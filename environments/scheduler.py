"""The scheduler view: everything a learner may read of the offloading world, defined once.

Every learner (active-inference agents, deep-RL baselines) reads the world only through a
:class:`SchedulerView`; the simulator behind it stays out of reach. Reference policies and
bounds that read the true state use :class:`~environments.CloudEdgeOffloadEnv` directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from environments.config import TERMINAL_KINDS
from environments.env import CloudEdgeOffloadEnv

__all__ = [
    "ACTION_LEVELS",
    "FEEDBACK_KEYS",
    "VIEW_API",
    "Grant",
    "Readings",
    "Request",
    "SchedulerView",
    "ServerInfo",
]

#: Allocation levels of the discrete action set (fractions of a server's total compute,
#: bandwidth and memory, capped at what is free; each server also has a queued full grant):
#: ``Discrete(5 servers x (3 levels + queue) + reject) = 21`` on the paper preset.
ACTION_LEVELS: tuple[float, ...] = (0.25, 0.5, 1.0)

#: What a scheduler learns of a decided task once its outcome is known (censored: latency,
#: its parts and pass@100 only for a completed task; a failed one is "not done by t_max").
FEEDBACK_KEYS: tuple[str, ...] = (
    "completed",
    "failure",
    "latency",
    "latency_parts",
    "given_up_after",
    "pass_at_100",
    "reward",
    "rg",
    "server",
    "server_kind",
    "shares",
    "task_id",
    "terminal_kind",
    "arrival_time",
    "start_time",
    "release_time",
    "outcome_time",
)

_INFORMED_PER_SERVER = 5
_CONFIG_PER_SERVER = 4


class ServerInfo(NamedTuple):
    """What an operator knows of one server from its configuration (not its speed).

    Attributes
    ----------
    kind : str
        ``"cloud"`` or ``"edge"``.
    aerial : bool
        A UAV-mounted edge server.
    parallel_limit : int
        Tasks it runs at once before queueing.
    samples_per_task : int
        Samples a task asks for (S = 100 for pass@100).
    batch_slots : float
        Samples its whole GPU memory pool batches at once (memory pool over one sample's slot),
        so a memory share ``m`` runs ``ceil(S / floor(m * batch_slots))`` waves.
    """

    kind: str
    aerial: bool
    parallel_limit: int
    samples_per_task: int
    batch_slots: float

    @property
    def is_cloud(self) -> bool:
        """True for a cloud server."""
        return self.kind == "cloud"


class Request(NamedTuple):
    """The task the scheduler must place now.

    Attributes
    ----------
    problem : int
        HumanEval problem index (the request says which prompt it carries).
    prompt_tokens : float
        Prompt length in tokens.
    terminal_kind : str
        ``"phone"``, ``"vehicle"``, ``"uav"`` or ``"pc"``.
    arrival_time : float
        When it arrived (s since the episode began): the clock of this decision.
    decision : int
        Decisions made before it in this episode (the index of its feedback and grant).
    """

    problem: int
    prompt_tokens: float
    terminal_kind: str
    arrival_time: float
    decision: int


class Grant(NamedTuple):
    """One of the scheduler's own grants still in flight, as known at the current clock.

    Attributes
    ----------
    task : int
        Index of the decision that made it.
    server : int
    shares : numpy.ndarray, shape (3,)
        Granted compute, bandwidth and memory fractions.
    decided_at : float
        Arrival time of its task (s).
    start_time : float or None
        When it started computing, once that has happened; None while it waits (or is still
        on its way to the server).
    elapsed : float
        Seconds since it started computing (0 while it waits).
    """

    task: int
    server: int
    shares: np.ndarray
    decided_at: float
    start_time: float | None
    elapsed: float


class Readings(NamedTuple):
    """The server readings of the observation, decoded (noisy and delayed when the world is).

    Attributes
    ----------
    free : numpy.ndarray, shape (n_servers, 3)
        Free compute, bandwidth and memory fractions.
    running : numpy.ndarray, shape (n_servers,)
        Tasks running.
    waiting : numpy.ndarray, shape (n_servers,)
        Tasks waiting.
    """

    free: np.ndarray
    running: np.ndarray
    waiting: np.ndarray


class SchedulerView(gym.Env[np.ndarray, Any]):
    """The offloading world as a scheduler sees it, and the only way a learner reads it.

    A Gymnasium env over a discrete action set (per server: ``levels`` capped at what is free,
    and a queued full grant; then "reject"), whose observation is ``features="plain"`` the
    world's observation vector, or ``"informed"`` that vector followed by what the view adds.
    Besides the gym API, typed accessors give every learner the same information:

    - :attr:`servers`, :attr:`t_max`, :attr:`window_s`, :attr:`tasks_per_episode`,
      :attr:`n_problems`, :attr:`prompt_tokens`, :attr:`terminal_kinds`,
      :attr:`reading_noise_std`, :attr:`obs_layout`: the configuration an operator knows;
    - :attr:`request`: the task to place (its problem identity, prompt length, terminal kind and
      arrival time, the clock); :attr:`readings`: the observation's server readings, decoded;
    - :attr:`mask`, :attr:`action_servers`, :attr:`action_levels`, :attr:`reject_action`,
      :meth:`grant_options`: the action set, its feasibility mask and the grant each action
      would make now;
    - :attr:`grants`: the scheduler's own grants in flight, with start times once they have
      happened;
    - :meth:`outcomes`: the censored feedback of decided tasks whose outcome is known by the
      clock (all of them once the episode has ended), each a dict of :data:`FEEDBACK_KEYS`.

    ``step`` returns the world's reward ``r = 1/L + P`` of the task just placed (0 for a failed
    one), the deep-RL convention of He et al. (IEEE TMC 2024), and an ``info`` holding only the
    next decision's feasibility mask. Nothing else of the simulator (its true state, future
    arrivals, uncensored outcomes) is reachable through the view. ``step`` also takes a native
    action ``{"server": j, "shares": (c, w, m)}`` for learners with continuous grants.

    Informed features (all in [0, 1]), after the observation: the problem as a one-hot
    (``n_problems``); per server, the scheduler's own grants running and waiting over the
    parallel limit, the mean and longest time its running grants have computed and the mean
    time its waiting grants have waited, over ``t_max``; the clock over the episode window;
    per server its configuration (cloud, aerial, parallel limit over the largest, batch slots
    over the samples per task, capped at 1).

    Parameters
    ----------
    world : CloudEdgeOffloadEnv
        The simulator (unwrapped); the view keeps it to itself.
    levels : sequence of float
        Allocation levels in (0, 1] of the discrete action set.
    features : {"plain", "informed"}
        What the observation vector holds.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        world: CloudEdgeOffloadEnv,
        levels: Sequence[float] = ACTION_LEVELS,
        features: Literal["plain", "informed"] = "plain",
    ) -> None:
        if not isinstance(world, CloudEdgeOffloadEnv):
            raise TypeError(
                f"SchedulerView needs an unwrapped CloudEdgeOffloadEnv, got {type(world).__name__}"
            )
        if features not in ("plain", "informed"):
            raise ValueError(f"features={features!r}; expected 'plain' or 'informed'")
        lv = np.asarray(levels, dtype=np.float64)
        if lv.ndim != 1 or lv.size == 0 or np.any(lv <= 0) or np.any(lv > 1):
            raise ValueError(f"levels={list(levels)} must be a non-empty sequence in (0, 1]")
        self.__world = world
        cfg = world.config
        n = world.n_servers
        self.n_servers = n
        self.features = features
        self.levels = tuple(float(x) for x in lv)
        self.servers: tuple[ServerInfo, ...] = tuple(
            ServerInfo(
                s.kind,
                bool(s.aerial),
                int(s.parallel_limit),
                int(p.samples_per_task),
                float(p.memory_pool_gib / p.slot_gib),
            )
            for s, p in zip(cfg.servers, world.profiles, strict=True)
        )
        self.t_max = float(cfg.t_max)
        self.window_s = float(cfg.episode_window_s)
        self.tasks_per_episode = int(cfg.tasks_per_episode)
        self.prompt_tokens = np.asarray(world.prompt_tokens, dtype=np.float64).copy()
        self.prompt_tokens.setflags(write=False)
        self.n_problems = int(self.prompt_tokens.size)
        self.reading_noise_std = float(cfg.partial_observability.noise_std)
        self.terminal_kinds: tuple[str, ...] = TERMINAL_KINDS
        self.obs_layout: dict[str, slice] = dict(world.obs_layout)
        per = lv.size + 1
        self.n_actions = n * per + 1
        self.reject_action = self.n_actions - 1
        #: Server of every non-reject action, shape (n_actions - 1,).
        self.action_servers = np.repeat(np.arange(n), per)
        #: Level of every non-reject action; NaN marks the queued full grants.
        self.action_levels = np.tile(np.append(lv, np.nan), n)
        self._queued = np.isnan(self.action_levels)
        self._limits = np.asarray([s.parallel_limit for s in self.servers], dtype=np.float64)
        self._config_features = np.concatenate(
            [
                [
                    float(s.is_cloud),
                    float(s.aerial),
                    s.parallel_limit / self._limits.max(),
                    min(1.0, s.batch_slots / s.samples_per_task),
                ]
                for s in self.servers
            ]
        )
        self.action_space = spaces.Discrete(self.n_actions)
        base = world.observation_space
        assert isinstance(base, spaces.Box)
        extra = self.n_problems + n * _INFORMED_PER_SERVER + 1 + n * _CONFIG_PER_SERVER
        if features == "plain":
            self.observation_space = base
        else:
            low = np.concatenate([base.low, np.zeros(extra, np.float32)])
            high = np.concatenate([base.high, np.ones(extra, np.float32)])
            self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.mask = np.ones(self.n_actions, dtype=bool)
        self._obs = np.zeros(base.shape, np.float32)
        self._request: Request | None = None
        # Feedback of every decided task, in order; each is revealed once its outcome is known.
        self._decided: list[dict[str, Any]] = []
        # Decision index -> (start time, when the grant is gone) of tasks not rejected at once.
        self._flight: dict[int, tuple[float | None, float]] = {}
        self._done = True

    # ------------------------------------------------------------------ gym API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode of the world; ``options`` go to the world (e.g. ``{"episode": k}``)."""
        super().reset(seed=seed)
        obs, info = self.__world.reset(seed=seed, options=options)
        self._decided, self._flight = [], {}
        self._done = False
        self._observe(obs, info, 0)
        return self._features(), {"action_mask": self.mask.copy()}

    def step(
        self, action: int | np.integer | Mapping[str, Any]
    ) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Place the current task (a discrete index or a native action) and move to the next."""
        if self._done or self._request is None:
            raise RuntimeError("call reset() before step()")
        native = self.native_action(action)
        index = self._request.decision
        obs, reward, terminated, truncated, info = self.__world.step(native)
        feedback = {k: info[k] for k in FEEDBACK_KEYS}
        feedback["shares"] = np.asarray(native["shares"], dtype=np.float64).copy()
        self._decided.append(feedback)
        if info["failure"] != "rejected":
            # Held until released when it starts, else waiting until it is given up.
            start = info["start_time"]
            gone = info["release_time"] if start is not None else info["outcome_time"]
            self._flight[index] = (start, float(gone))
        self._done = bool(terminated or truncated)
        if self._done:
            self._flight, self._request = {}, None
            self.mask = np.ones(self.n_actions, dtype=bool)
        else:
            self._observe(obs, info["next_task"], index + 1)
        return (
            self._features(),
            float(reward),
            bool(terminated),
            bool(truncated),
            {"action_mask": self.mask.copy()},
        )

    # ------------------------------------------------------------------ decisions
    def native_action(self, action: int | np.integer | Mapping[str, Any]) -> dict[str, Any]:
        """The world's action for a discrete index (or a native action, checked and passed on)."""
        if isinstance(action, Mapping):
            return {"server": action["server"], "shares": np.asarray(action["shares"])}
        a = np.asarray(action)
        if a.shape not in ((), (1,)) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"discrete action {action!r} must be one integer")
        idx = int(a.reshape(()))
        if not 0 <= idx < self.n_actions:
            raise ValueError(f"discrete action {idx} outside 0..{self.n_actions - 1}")
        if idx == self.reject_action:
            return {"server": 0, "shares": np.zeros(3, dtype=np.float32)}
        return {
            "server": int(self.action_servers[idx]),
            "shares": self.grant_options()[idx].astype(np.float32),
        }

    def grant_options(self) -> np.ndarray:
        """The grant each non-reject action would make now, shape (n_actions - 1, 3).

        A level grants ``min(level, free)`` of each resource (what the server accepts without
        queueing); a queued action grants the server's totals and waits for them.
        """
        free = np.maximum(self.__world.remaining, 0.0)
        level = np.where(self._queued, 1.0, self.action_levels)
        capped = np.minimum(level[:, None], free[self.action_servers])
        return np.where(self._queued[:, None], 1.0, capped)

    def action_masks(self) -> np.ndarray:
        """Feasible actions of the current decision, shape (n_actions,), bool (sb3-contrib's name)."""
        return self.mask.copy()

    @property
    def request(self) -> Request:
        """The task to place now."""
        if self._request is None:
            raise RuntimeError("no decision is pending: call reset() (or the episode has ended)")
        return self._request

    @property
    def clock(self) -> float:
        """Time of the current decision (s since the episode began)."""
        return self.request.arrival_time

    @property
    def observation(self) -> np.ndarray:
        """The world's observation vector of the current decision (a copy)."""
        return self._obs.copy()

    @property
    def readings(self) -> Readings:
        """The observation's server readings, decoded into fractions and counts."""
        n, lay = self.n_servers, self.obs_layout
        free = np.asarray(self._obs[lay["remaining"]], dtype=np.float64).reshape(n, 3)
        queue = np.asarray(self._obs[lay["queue"]], dtype=np.float64).reshape(n, 2)
        running = np.rint(queue[:, 0] * self._limits)
        w = np.clip(queue[:, 1], 0.0, 0.999)
        waiting = np.rint(w / (1 - w) * self._limits)
        return Readings(free, running, waiting)

    @property
    def grants(self) -> tuple[Grant, ...]:
        """The scheduler's own grants still held or waiting at the clock, oldest first."""
        if self._request is None:
            return ()
        now = self._request.arrival_time
        out = []
        for task, (start, gone) in self._flight.items():
            if gone <= now:
                continue
            fb = self._decided[task]
            started = start is not None and start <= now
            out.append(
                Grant(
                    task,
                    int(fb["server"]),
                    fb["shares"].copy(),
                    float(fb["arrival_time"]),
                    float(start) if started and start is not None else None,
                    now - float(start) if started and start is not None else 0.0,
                )
            )
        return tuple(out)

    def outcomes(self) -> list[dict[str, Any]]:
        """Censored feedback of every decided task whose outcome is known by now, in order.

        Mid-episode that is what has happened by the clock (a known outcome's start and release
        times are in the past); after the last decision, every task (the scheduler waits for
        the last results). Each a dict of :data:`FEEDBACK_KEYS` (copies).
        """
        if self._done or self._request is None:
            return [_copy(fb) for fb in self._decided]
        now = self._request.arrival_time
        return [_copy(fb) for fb in self._decided if fb["outcome_time"] <= now]

    # ------------------------------------------------------------------ internals
    def _observe(self, obs: np.ndarray, task: Mapping[str, Any], index: int) -> None:
        self._obs = np.asarray(obs, dtype=np.float32)
        now = float(task["arrival_time"])
        self._flight = {t: v for t, v in self._flight.items() if v[1] > now}
        problem = int(task["task_id"])
        self._request = Request(
            problem,
            float(self.prompt_tokens[problem]),
            str(task["terminal_kind"]),
            float(task["arrival_time"]),
            index,
        )
        free = np.maximum(self.__world.remaining, 0.0)
        level = np.where(self._queued, 1.0, self.action_levels)
        grants = np.where(
            self._queued[:, None], 1.0, np.minimum(level[:, None], free[self.action_servers])
        )
        self.mask = np.ones(self.n_actions, dtype=bool)
        self.mask[:-1] = self.__world.can_run(self.action_servers, grants)

    def _features(self) -> np.ndarray:
        if self.features == "plain":
            return self._obs.copy()
        n = self.n_servers
        onehot = np.zeros(self.n_problems, np.float64)
        own = np.zeros((n, _INFORMED_PER_SERVER))
        clock = 1.0
        if self._request is not None:
            onehot[self._request.problem] = 1.0
            clock = min(1.0, max(0.0, self._request.arrival_time / self.window_s))
            run_sum, run_max = np.zeros(n), np.zeros(n)
            wait_sum = np.zeros(n)
            n_run, n_wait = np.zeros(n), np.zeros(n)
            for g in self.grants:
                if g.start_time is not None:
                    n_run[g.server] += 1
                    run_sum[g.server] += g.elapsed
                    run_max[g.server] = max(run_max[g.server], g.elapsed)
                else:
                    n_wait[g.server] += 1
                    wait_sum[g.server] += self.clock - g.decided_at
            t = self.t_max
            with np.errstate(invalid="ignore", divide="ignore"):
                own[:, 0] = np.minimum(1.0, n_run / self._limits)
                own[:, 1] = np.minimum(1.0, n_wait / self._limits)
                own[:, 2] = np.where(n_run > 0, run_sum / np.maximum(n_run, 1) / t, 0.0)
                own[:, 3] = run_max / t
                own[:, 4] = np.where(n_wait > 0, wait_sum / np.maximum(n_wait, 1) / t, 0.0)
            own = np.clip(own, 0.0, 1.0)
        return np.concatenate(
            [self._obs, onehot, own.ravel(), [clock], self._config_features]
        ).astype(np.float32)

    def render(self) -> None:  # type: ignore[override]
        """The view renders nothing (the world's own render shows the true state)."""
        return None


def _copy(fb: dict[str, Any]) -> dict[str, Any]:
    out = dict(fb)
    out["shares"] = np.asarray(fb["shares"]).copy()
    if fb["latency_parts"] is not None:
        out["latency_parts"] = dict(fb["latency_parts"])
    return out


#: Every attribute a learner may use of a view (the gym API and the accessors above).
VIEW_API: frozenset[str] = frozenset(
    {
        # gym.Env
        "reset",
        "step",
        "close",
        "render",
        "observation_space",
        "action_space",
        "metadata",
        "render_mode",
        "spec",
        "np_random",
        "np_random_seed",
        "unwrapped",
        "get_wrapper_attr",
        "set_wrapper_attr",
        "has_wrapper_attr",
        # configuration an operator knows
        "servers",
        "n_servers",
        "t_max",
        "window_s",
        "tasks_per_episode",
        "n_problems",
        "prompt_tokens",
        "reading_noise_std",
        "terminal_kinds",
        "obs_layout",
        "features",
        "levels",
        # the decision
        "request",
        "clock",
        "observation",
        "readings",
        "mask",
        "action_masks",
        "n_actions",
        "reject_action",
        "action_servers",
        "action_levels",
        "grant_options",
        "native_action",
        # the scheduler's own grants and outcomes
        "grants",
        "outcomes",
    }
)
