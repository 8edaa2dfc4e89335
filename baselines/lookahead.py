"""A look-ahead policy with full knowledge of the episode, and a completion bound from idle servers.

The look-ahead knows the whole episode (tasks, channel samples) and plans against it; what it
achieves is a lower bound on the optimum. For upper bounds on any policy see ``baselines.bound``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from baselines.heuristics import candidate_grants, frugal_choice
from environments import CloudEdgeOffloadEnv

__all__ = ["LookaheadPolicy", "OraclePolicy", "completion_upper_bound"]


class LookaheadPolicy:
    """Look-ahead with full knowledge: a feasible policy, so a lower bound on the optimum.

    For the current task it enumerates every server with grants of ``levels`` (capped at what
    remains), keeps those that complete under the realised channel, and scores each by rolling
    the true simulator forward over the next ``horizon`` known tasks with a base rule (smallest
    grant that completes, edges before clouds). It picks the candidate with the most completions
    in the window, then the highest reward (``objective="completion"``), or the highest reward,
    then the most completions (``objective="guidance"``: its reward is the rewardless guidance).
    It reads the full true state and future tasks of the unwrapped env (``task_schedule``,
    ``get_state``/``set_state``), which no learner may.

    It is a heuristic with full knowledge, not an optimiser: what it achieves is a lower bound
    on the optimum of its objective, which a learner may exceed. Upper bounds on any policy:
    :func:`baselines.bound.episode_bound` (guidance and completion) and the looser
    :func:`completion_upper_bound`.

    Parameters
    ----------
    levels : tuple of float
        Grant levels tried on every server (the same level for compute, bandwidth and memory).
    horizon : int
        Known tasks rolled out after the current one.
    objective : {"completion", "guidance"}
        Which criterion ranks the candidates first.
    name : str, optional
        The policy's name in results; by default the registered names ``"lookahead"`` and
        ``"lookahead_guidance"`` of the two objectives.
    """

    name = "lookahead"

    def __init__(
        self,
        levels: tuple[float, ...] = (1.0, 0.5, 0.34, 0.25, 0.2),
        horizon: int = 8,
        objective: str = "completion",
        name: str | None = None,
    ) -> None:
        if objective not in ("completion", "guidance"):
            raise ValueError(
                f"LookaheadPolicy objective must be 'completion' or 'guidance', got {objective!r}"
            )
        if horizon < 0:
            raise ValueError(f"LookaheadPolicy horizon must be >= 0, got {horizon!r}")
        self.levels = np.asarray(levels, dtype=np.float64)
        self.horizon = horizon
        self.objective = objective
        if name is not None:
            self.name = name
        elif objective == "guidance":
            self.name = "lookahead_guidance"

    def reset(self, seed: int | None = None) -> None:
        """Stateless (the plan depends only on the episode)."""

    def _base_action(self, env: CloudEdgeOffloadEnv) -> tuple[int, np.ndarray]:
        return frugal_choice(env, self.levels, shadowing="realized")

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        servers, shares = candidate_grants(env, self.levels)
        out = env.evaluate_actions(servers, shares, shadowing="realized")
        ok = np.flatnonzero(out.completed)
        if ok.size == 0:
            # Nothing can complete: reject the task without holding anything.
            return {"server": 0, "shares": np.zeros(3, np.float32)}
        snapshot = env.get_state()
        best, best_score = int(ok[0]), (-np.inf, -np.inf)
        for k in ok:
            env.set_state(snapshot)
            info = env.simulate_step(int(servers[k]), shares[k])
            completed, reward = int(info["completed"]), float(info["reward"])
            for _ in range(self.horizon):
                if (
                    env.current_task["step"] >= env.config.tasks_per_episode
                    or not env._episode_ready
                ):
                    break
                j, sh = self._base_action(env)
                info = env.simulate_step(j, sh)
                completed += int(info["completed"])
                reward += float(info["reward"])
            score = (completed, reward) if self.objective == "completion" else (reward, completed)
            if score > best_score:
                best, best_score = int(k), score
        env.set_state(snapshot)
        return {"server": int(servers[best]), "shares": shares[best].astype(np.float32)}


#: The former name of :class:`LookaheadPolicy`, kept while results and scripts still use it.
OraclePolicy = LookaheadPolicy


def completion_upper_bound(env: CloudEdgeOffloadEnv) -> float:
    """Fraction of the episode's tasks that could complete even with every server idle.

    For each task, every server is evaluated with all its resources granted, no queue and the
    realised channel: the smallest latency any schedule can give that task. A task that misses
    ``t_max`` even then cannot complete under any policy, so this fraction bounds the completion
    rate from above (contention is ignored, so the bound is loose under heavy load; the bound of
    :func:`baselines.bound.episode_bound` accounts for it). Call right after ``reset``; the env
    is left at the start of the episode.
    """
    start = env.get_state()
    n_tasks = env.config.tasks_per_episode
    n = env.n_servers
    feasible = 0
    idle = start._replace(
        h_srv=start.h_srv[:0],
        h_start=start.h_start[:0],
        h_end=start.h_end[:0],
        h_grant=start.h_grant[:0],
        w_srv=start.w_srv[:0],
        w_leave=start.w_leave[:0],
        head=np.zeros_like(start.head),
    )
    for i in range(n_tasks):
        env.set_state(idle._replace(step=i, clock=float(env.arrivals[i])))
        out = env.evaluate_actions(np.arange(n), np.ones((n, 3)), shadowing="realized")
        feasible += bool(out.completed.any())
    env.set_state(start)
    return feasible / n_tasks
