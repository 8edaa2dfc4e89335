"""Active-inference learners for `aif train`: the structured agent and the paper's ensemble agent.

Both perceive, plan by expected free energy, act, store what a scheduler observes and refit
their beliefs after every episode (Algorithm 1 of He et al. 2025 for the ensemble).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from aif.agent import ModelBasedAgent
from aif.cem import CEMConfig
from experiments.learners import Episode
from experiments.runconfig import TrainConfig, apply_settings, make_env
from generative_models.offloading import (
    ModelConfig,
    ObservationLayout,
    OffloadingWorldModel,
    PolicyEFE,
    PreferenceConfig,
    ReadingFilter,
)

__all__ = [
    "EFE_TERMS",
    "PaperAgentLearner",
    "PlannerSettings",
    "StructuredAgentLearner",
    "build_paper_agent",
    "build_structured_agent",
    "paper_agent_configs",
]

EFE_TERMS = list(PolicyEFE._fields)


def paper_agent_configs(config: TrainConfig) -> dict[str, Any]:
    """The planner, model and preference configs of ``config`` (defaults under its settings)."""
    return apply_settings(
        {"planner": CEMConfig(), "model": ModelConfig(), "preferences": PreferenceConfig()},
        config.settings_dict,
        config.agent,
    )


def build_paper_agent(config: TrainConfig, seed: int) -> PaperAgentLearner:
    """The learner of the paper's agent for one seed."""
    return PaperAgentLearner(config, seed)


class PaperAgentLearner:
    """The paper's active-inference agent: a CEM planner over a learned ensemble world model.

    It observes what the env's observation and ``info`` show a scheduler: a failed task's
    latency and accuracy are censored (never observed), so the model learns latency and accuracy
    from completed tasks only.
    """

    episodes_per_round = 1

    def __init__(self, config: TrainConfig, seed: int) -> None:
        torch.set_num_threads(config.threads)
        cfg = paper_agent_configs(config)
        self.config = config
        self.env = make_env(config)
        n_servers = int(self.env.action_space["server"].n)
        layout = ObservationLayout.from_mapping(self.env.obs_layout, n_servers)
        self.model = OffloadingWorldModel(layout, cfg["model"], cfg["preferences"], seed=seed)
        # A zero share is allowed: the env rejects such a task at once without holding anything.
        self.agent = ModelBasedAgent(
            self.model, n_servers, 3, cfg["planner"], seed=seed + 7919, low=0.0
        )
        self.extra_labels = {"efe_parts": ("term", EFE_TERMS)}

    # ------------------------------------------------------------------ playing
    def _play(self, env: Any, env_seed: int, learn: bool) -> Episode:
        model = self.model
        obs, _ = env.reset(seed=env_seed)
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        noise = self.config.obs_noise
        perception = ReadingFilter(model, noise) if noise > 0 else None
        if perception is not None:
            obs_t = perception.reset(obs_t)
        infos: list[dict[str, Any]] = []
        decision_s: list[float] = []
        parts: list[list[float]] = []
        done = False
        while not done:
            t0 = time.perf_counter()
            decision = self.agent.act(obs_t)
            decision_s.append(time.perf_counter() - t0)
            shares = model.to_shares(obs_t, decision.choice, decision.vector)
            action = {"server": decision.choice, "shares": shares.numpy().astype("float32")}
            obs2, reward, terminated, truncated, info = env.step(action)
            done = bool(terminated or truncated)
            obs2_t = torch.as_tensor(obs2, dtype=torch.float32)
            if perception is not None and not done:
                obs2_t = perception.step(obs_t, decision.choice, shares, obs2_t)
            if learn:
                completed = bool(info["completed"])
                # A failed task is censored: its latency and accuracy are never observed.
                model.add(
                    obs_t,
                    decision.choice,
                    shares,
                    completed,
                    float(info["latency"]) if completed else math.inf,
                    float(info["pass_at_100"]) if completed else 0.0,
                    float(reward),
                    None if done else obs2_t,
                )
            infos.append(info)
            parts.append([decision.parts[k] for k in EFE_TERMS])
            obs_t = obs2_t
        stat = math.nan
        if learn:
            trace = self.agent.learn()
            stat = float(trace[-1]) if trace else math.nan
        return Episode(infos, decision_s, {"efe_parts": parts}, stat)

    def train_round(self, env_seeds: Sequence[int]) -> list[Episode]:
        """Play and learn from one episode per seed."""
        return [self._play(self.env, s, learn=True) for s in env_seeds]

    def evaluate(self, env_seed: int, t_max: float | None = None) -> Episode:
        """Play without storing data or refitting, on a generator of its own."""
        env = self.env if t_max is None else make_env(self.config, t_max=t_max)
        saved = self.agent.generator.get_state()
        self.agent.generator.manual_seed(int(env_seed))
        try:
            return self._play(env, env_seed, learn=False)
        finally:
            self.agent.generator.set_state(saved)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Model weights, stored data, generators and the free-energy trace."""
        model = self.model
        return {
            "model": model.state_dict(),
            "data": {k: list(v) for k, v in vars(model.data).items()},
            "model_rng": model.generator.get_state(),
            "agent_rng": self.agent.generator.get_state(),
            "vfe_trace": list(model.vfe_trace),
            "n_fits": model.n_fits,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        model = self.model
        model.load_state_dict(state["model"])
        for k, v in state["data"].items():
            setattr(model.data, k, list(v))
        model.generator.set_state(state["model_rng"])
        self.agent.generator.set_state(state["agent_rng"])
        model.vfe_trace = list(state["vfe_trace"])
        model.n_fits = int(state["n_fits"])


# ====================================================================================== structured


@dataclass(frozen=True)
class PlannerSettings:
    """How the structured agent turns beliefs into decisions (expected free energy).

    Parameters
    ----------
    levels : tuple of float
        Allocation levels of the discrete action set (the deep-RL baselines' set).
    guidance_weight : float
        lambda: log preference of an outcome is lambda * rg (rewardless guidance as a log
        preference, as in the paper; the pragmatic value is lambda E[rg]). The default 3 was
        chosen from 1, 3 and 10 on validation run seeds 100 and 101 (30 episodes, completion
        then rg), never on the seeds results are reported on: at 1 the information gain of a
        rarely used share outweighed the guidance of a task and the agent lost about one task
        in a hundred exploring it.
    info_gain_weight : float
        Weight of the parameter information gain (0: the "no information gain" ablation).
    horizon : int
        1 plans the current task alone; 2 adds one imagined next task, drawn from the learned
        arrival rate and problem frequencies.
    futures : int
        Imagined next tasks per decision (Monte Carlo samples) when ``horizon == 2``.
    discount : float
        Weight of the imagined task's value.
    precision : float
        gamma of q(pi) = softmax(-gamma * efe); 0 (default) acts deterministically (argmin).
    """

    levels: tuple[float, ...] = (0.25, 0.5, 1.0)
    guidance_weight: float = 3.0
    info_gain_weight: float = 1.0
    horizon: int = 2
    futures: int = 8
    discount: float = 0.5
    precision: float = 0.0

    def __post_init__(self) -> None:
        if self.horizon not in (1, 2):
            raise ValueError(f"horizon must be 1 or 2, got {self.horizon!r}")
        if self.futures < 1 or self.discount < 0 or self.precision < 0:
            raise ValueError(
                f"futures >= 1, discount >= 0 and precision >= 0 expected, got {self.futures!r}, "
                f"{self.discount!r}, {self.precision!r}"
            )
        if self.guidance_weight < 0 or self.info_gain_weight < 0:
            raise ValueError("guidance_weight and info_gain_weight must be >= 0")


STRUCTURED_TERMS = ["efe", "pragmatic_value", "info_gain", "future_value", "p_done"]


class _Holding(NamedTuple):
    server: int
    grant: np.ndarray
    start_pred: float
    release_pred: float
    start_true: float | None  # revealed by the env at once, used only once it has happened
    release_true: float | None


def build_structured_agent(config: TrainConfig, seed: int) -> StructuredAgentLearner:
    """The learner of the structured active-inference agent for one seed."""
    return StructuredAgentLearner(config, seed)


class StructuredAgentLearner:
    """Active inference with the structured Pyro model of ``generative_models.structured``.

    Per decision: beliefs over each server's speed and share scaling, link quality and each
    problem's pass@100 give, for every action of the discrete set, a predictive distribution of
    the task's outcome, including the wait behind the agent's own earlier grants (predicted
    from their start times and the predicted compute times); the expected free energy of an
    action is ``-lambda E[rg] - discount * (value of an imagined next task) - omega * info
    gain``, and the agent takes the action of least EFE. After every episode it refits its
    beliefs by SVI on every outcome it observed: latency and accuracy of completed tasks, only
    "not done by t_max" of failed ones.
    """

    episodes_per_round = 1

    def __init__(self, config: TrainConfig, seed: int) -> None:
        from environments import DiscreteActionWrapper
        from generative_models.structured import ServerSpec, StructuredConfig, StructuredWorldModel

        torch.set_num_threads(config.threads)
        cfg = apply_settings(
            {"model": StructuredConfig(), "planner": PlannerSettings()},
            config.settings_dict,
            config.agent,
        )
        self.config = config
        self.planner: PlannerSettings = cfg["planner"]
        self.env = DiscreteActionWrapper(make_env(config), levels=self.planner.levels)
        base: Any = self.env.unwrapped
        specs = [
            ServerSpec(
                bool(base.server_is_cloud[j]),
                int(p.samples_per_task),
                p.memory_pool_gib / p.slot_gib,
            )
            for j, p in enumerate(base.profiles)
        ]
        self.limits = np.asarray(base.parallel_limit, dtype=np.float64)
        self.n_problems = int(base.prompt_tokens.size)
        self.model = StructuredWorldModel(
            specs, self.n_problems, 4, cfg["model"], seed=seed, device=config.device
        )
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919]))
        self.extra_labels = {"efe_parts": ("term", STRUCTURED_TERMS)}
        self._post = self.model.posterior()
        self._kinds = {"phone": 0, "vehicle": 1, "uav": 2, "pc": 3}

    # ------------------------------------------------------------------ planning
    def _waits(
        self,
        now: float,
        holdings: list[_Holding],
        free: np.ndarray,
        running: np.ndarray,
        waiting: np.ndarray,
        servers: np.ndarray,
        queued: np.ndarray,
    ) -> np.ndarray:
        """Predicted wait of each candidate behind the agent's own earlier tasks."""
        n = free.shape[0]
        release = [
            sorted(h.release_pred for h in holdings if h.server == j and h.release_pred > now)
            for j in range(n)
        ]
        wait = np.zeros(servers.shape)
        for q, j in enumerate(servers):
            rel = release[j]
            if queued[q]:
                # A full grant waits until everything on the server is given back.
                wait[q] = max(0.0, rel[-1] - now) if rel else 0.0
            else:
                ahead = int(running[j] + waiting[j] - self.limits[j] + 1)
                if ahead > 0:
                    wait[q] = max(0.0, rel[min(ahead, len(rel)) - 1] - now) if rel else 0.0
        return wait

    def _score(
        self,
        servers: np.ndarray,
        grants: np.ndarray,
        wait: np.ndarray,
        problem: np.ndarray,
        t_max: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pragmatic value, information gain and completion probability of candidates."""
        from generative_models.structured import expected_guidance

        p = self.planner
        b = self.model.outcome_beliefs(self._post, servers, grants[..., 0], grants[..., 2], problem)
        p_done, guidance, _ = expected_guidance(b, wait, t_max)
        # Parameter information gain of the outcome a scheduler would see: compute time and
        # accuracy are observed when the task completes (a censored "not done by t_max" says
        # far less, and is left out), so each Gaussian gain is weighted by p_done.
        with np.errstate(invalid="ignore", divide="ignore"):
            ig = (
                p_done
                * 0.5
                * (
                    np.log1p(b.param_var / b.noise_var)
                    + np.log1p(b.pass_param_var / self.model.config.pass_noise**2)
                )
            )
        ig = np.where(np.isfinite(ig), ig, 0.0)
        return p.guidance_weight * guidance, p.info_gain_weight * ig, p_done

    def _future_value(
        self,
        now: float,
        holdings: list[_Holding],
        servers: np.ndarray,
        grants: np.ndarray,
        starts: np.ndarray,
        releases: np.ndarray,
        feasible: np.ndarray,
        t_max: float,
    ) -> np.ndarray:
        """Value of an imagined next task after each candidate (0 for infeasible ones)."""
        p = self.planner
        n = self.model.n_servers
        rate = self.model.arrival_rate(self._post)
        probs, _ = self.model.task_frequencies()
        m = p.futures
        gaps = self.rng.exponential(1.0 / rate, size=m)
        problems = self.rng.choice(self.n_problems, size=m, p=probs)
        t_next = now + gaps  # (M,)
        a = servers.size
        # Holdings: the agent's own plus each candidate's, as arrays (A, H + 1).
        h_srv = np.asarray([h.server for h in holdings], dtype=np.int64)
        h_grant = np.asarray([h.grant for h in holdings], dtype=np.float64).reshape(-1, 3)
        h_start = np.asarray([h.start_pred for h in holdings], dtype=np.float64)
        h_rel = np.asarray([h.release_pred for h in holdings], dtype=np.float64)
        srv = np.concatenate([np.broadcast_to(h_srv, (a, h_srv.size)), servers[:, None]], axis=1)
        grant = np.concatenate(
            [np.broadcast_to(h_grant, (a, *h_grant.shape)), grants[:, None, :]], axis=1
        )
        start = np.concatenate(
            [np.broadcast_to(h_start, (a, h_start.size)), starts[:, None]], axis=1
        )
        rel = np.concatenate([np.broadcast_to(h_rel, (a, h_rel.size)), releases[:, None]], axis=1)
        live = feasible[:, None] | (np.arange(srv.shape[1]) < h_srv.size)[None, :]
        active = (
            live[:, None, :]
            & (start[:, None, :] <= t_next[None, :, None])
            & (rel[:, None, :] > t_next[None, :, None])
        )  # (A, M, H+1)
        onehot = np.eye(n)[srv]  # (A, H+1, n)
        used = np.einsum("amh,ahn,ahr->amnr", active, onehot, grant)
        running = np.einsum("amh,ahn->amn", active, onehot)
        pending = live[:, None, :] & (rel[:, None, :] > t_next[None, :, None])
        last = np.max(
            np.where(pending[..., None] & (onehot[:, None] > 0), rel[:, None, :, None], -np.inf),
            axis=2,
        )  # (A, M, n)
        free = np.clip(1.0 - used, 0.0, 1.0)
        levels = np.asarray(p.levels)
        n_l = levels.size + 1
        next_srv = np.repeat(np.arange(n), n_l)  # (n * n_l,)
        lvl = np.tile(np.append(levels, np.nan), n)
        queued = np.isnan(lvl)
        g = np.where(
            queued[None, None, :, None],
            1.0,
            np.minimum(np.where(queued, 1.0, lvl)[None, None, :, None], free[:, :, next_srv, :]),
        )  # (A, M, K, 3)
        slot_full = running[:, :, next_srv] >= self.limits[next_srv]
        wait = np.where(
            queued[None, None, :],
            np.maximum(0.0, last[:, :, next_srv] - t_next[None, :, None]),
            np.where(slot_full, np.maximum(0.0, last[:, :, next_srv] - t_next[None, :, None]), 0.0),
        )
        wait = np.where(np.isfinite(wait), wait, 0.0)
        samples = np.asarray([s.samples_per_memory for s in self.model.servers])[next_srv]
        ok = queued[None, None, :] | (
            (g[..., 0] > 0) & (g[..., 1] > 0) & (np.floor(g[..., 2] * samples) >= 1)
        )
        prob = np.broadcast_to(problems[None, :, None], wait.shape)
        pragmatic, _, _ = self._score(
            np.broadcast_to(next_srv, wait.shape), np.maximum(g, 1e-9), wait, prob, t_max
        )
        # The imagined task is worth what it is expected to earn; its information gain is left
        # out (it would reward states that leave odd remnants of resources to explore with).
        value = np.where(ok, pragmatic, 0.0).max(axis=-1)  # (A, M)
        return value.mean(axis=1)

    def _decide(
        self, obs: np.ndarray, now: float, problem: int, holdings: list[_Holding], t_max: float
    ) -> tuple[int, dict[str, float], tuple[float, float, float]]:
        env = self.env
        base: Any = env.unwrapped
        lay = base.obs_layout
        n = base.n_servers
        free = np.asarray(obs[lay["remaining"]], dtype=np.float64).reshape(n, 3)
        queue = np.asarray(obs[lay["queue"]], dtype=np.float64).reshape(n, 2)
        running = np.rint(queue[:, 0] * self.limits)
        w = np.clip(queue[:, 1], 0.0, 0.999)
        waiting = np.rint(w / (1 - w) * self.limits)
        mask = env.action_masks()
        servers = env.action_servers
        queued = np.isnan(env.action_levels)
        grants = env.grants()
        wait = self._waits(now, holdings, free, running, waiting, servers, queued)
        prob = np.full(servers.shape, problem)
        pragmatic, ig, p_done = self._score(servers, np.maximum(grants, 1e-9), wait, prob, t_max)
        feasible = mask[:-1]
        future = np.zeros(servers.size + 1)
        b = self.model.outcome_beliefs(
            self._post, servers, np.maximum(grants[:, 0], 1e-9), grants[:, 2], prob
        )
        compute = np.exp(b.log_compute_mean)
        starts = now + wait
        releases = np.minimum(starts + compute + b.net_s, now + t_max)
        if self.planner.horizon == 2:
            all_srv = np.append(servers, 0)
            all_grants = np.vstack([grants, np.zeros((1, 3))])
            all_feasible = np.append(feasible, False)
            future = self._future_value(
                now,
                holdings,
                all_srv,
                all_grants,
                np.append(starts, np.inf),
                np.append(releases, np.inf),
                all_feasible,
                t_max,
            )
        efe = np.full(servers.size + 1, np.inf)
        efe[:-1] = np.where(feasible, -pragmatic - ig - self.planner.discount * future[:-1], np.inf)
        efe[-1] = -self.planner.discount * future[-1]  # reject: nothing now, the next task later
        if self.planner.precision > 0:
            logits = -self.planner.precision * (efe - efe[np.isfinite(efe)].min())
            q = np.exp(np.where(np.isfinite(logits), logits, -np.inf))
            action = int(self.rng.choice(efe.size, p=q / q.sum()))
        else:
            action = int(np.argmin(efe))
        if action == env.reject_action:
            parts = {"efe": float(efe[-1]), "pragmatic_value": 0.0, "info_gain": 0.0,
                     "future_value": float(future[-1]), "p_done": 0.0}  # fmt: skip
            return action, parts, (math.nan, math.nan, math.nan)
        parts = {
            "efe": float(efe[action]),
            "pragmatic_value": float(pragmatic[action]),
            "info_gain": float(ig[action]),
            "future_value": float(future[action]),
            "p_done": float(p_done[action]),
        }
        return action, parts, (float(starts[action]), float(releases[action]), float(wait[action]))

    # ------------------------------------------------------------------ playing
    def _play(self, env_seed: int, learn: bool, t_max: float | None = None) -> Episode:
        env = self.env
        base: Any = env.unwrapped
        if t_max is not None and t_max != base.config.t_max:
            from environments import DiscreteActionWrapper

            env = DiscreteActionWrapper(
                make_env(self.config, t_max=t_max), levels=self.planner.levels
            )
            base = env.unwrapped
        saved_env, self.env = self.env, env
        try:
            return self._run(env_seed, learn, float(base.config.t_max))
        finally:
            self.env = saved_env

    def _run(self, env_seed: int, learn: bool, t_max: float) -> Episode:
        env = self.env
        model = self.model
        obs, info = env.reset(seed=env_seed)
        task = {k: info[k] for k in ("task_id", "terminal_kind", "arrival_time")}
        holdings: list[_Holding] = []
        infos: list[dict[str, Any]] = []
        decision_s: list[float] = []
        parts_rows: list[list[float]] = []
        last_arrival: float | None = None
        done = False
        while not done:
            now = float(task["arrival_time"])
            problem = int(task["task_id"])
            if learn:
                model.observe_arrival(
                    None if last_arrival is None else now - last_arrival,
                    self._kinds[task["terminal_kind"]],
                    problem,
                )
            last_arrival = now
            # What the scheduler knows now of its earlier tasks: starts and releases that have
            # happened; the rest stays predicted.
            current = []
            for h in holdings:
                if h.release_true is not None and h.release_true <= now:
                    continue
                if (
                    h.start_true is not None
                    and h.start_true <= now
                    and h.start_true != h.start_pred
                ):
                    shift = h.start_true - h.start_pred
                    h = h._replace(start_pred=h.start_true, release_pred=h.release_pred + shift)
                if h.release_pred <= now:
                    h = h._replace(release_pred=now + 0.1)
                current.append(h)
            holdings = current
            t0 = time.perf_counter()
            action, parts, (start_pred, release_pred, _) = self._decide(
                obs, now, problem, holdings, t_max
            )
            decision_s.append(time.perf_counter() - t0)
            grant = env.action(action)["shares"].astype(np.float64)
            obs, _, terminated, truncated, info = env.step(action)
            done = bool(terminated or truncated)
            infos.append(info)
            parts_rows.append([parts[k] for k in STRUCTURED_TERMS])
            started = info["start_time"] is not None
            if started:
                holdings.append(
                    _Holding(
                        int(info["server"]),
                        grant,
                        start_pred,
                        release_pred,
                        info["start_time"],
                        info["release_time"],
                    )
                )
            if learn and action != env.reject_action and info["failure"] != "rejected":
                completed = bool(info["completed"])
                parts_obs = info["latency_parts"] or {}
                model.observe(
                    int(info["server"]),
                    float(grant[0]),
                    float(grant[2]),
                    problem,
                    started,
                    completed,
                    float(parts_obs.get("compute", math.nan)),
                    # Started but not done: compute exceeded the time left until the deadline.
                    (float(info["arrival_time"]) + t_max - float(info["start_time"]))
                    if started and not completed
                    else math.nan,
                    float(parts_obs["transmission"] + parts_obs["propagation"])
                    if completed
                    else math.nan,
                    float(info["pass_at_100"]) if completed else math.nan,
                )
            if not done:
                task = info["next_task"]
        stat = math.nan
        if learn:
            trace = model.fit()
            self._post = model.posterior()
            stat = float(np.mean(trace[-10:])) if trace else math.nan
        return Episode(infos, decision_s, {"efe_parts": parts_rows}, stat)

    def train_round(self, env_seeds: Sequence[int]) -> list[Episode]:
        """Play and learn from one episode per seed."""
        return [self._play(s, learn=True) for s in env_seeds]

    def evaluate(self, env_seed: int, t_max: float | None = None) -> Episode:
        """Play without learning, on a generator of its own."""
        saved = self.rng.bit_generator.state
        self.rng = np.random.default_rng(np.random.SeedSequence([int(env_seed), 104729]))
        try:
            return self._play(env_seed, learn=False, t_max=t_max)
        finally:
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = saved

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Guide parameters, optimiser, data, generators and the free-energy trace."""
        m = self.model
        return {
            "model": m.state_dict(),
            "optimizer": m.optimizer.state_dict(),
            "data": {k: list(v) for k, v in vars(m.data).items()},
            "model_rng": m.generator.get_state(),
            "rng": self.rng.bit_generator.state,
            "vfe_trace": list(m.vfe_trace),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        m = self.model
        m.load_state_dict(state["model"])
        m.optimizer.load_state_dict(state["optimizer"])
        for k, v in state["data"].items():
            setattr(m.data, k, list(v))
        m.generator.set_state(state["model_rng"])
        self.rng.bit_generator.state = state["rng"]
        m.vfe_trace = list(state["vfe_trace"])
        self._post = m.posterior()
