"""Action wrappers that give deep-RL libraries a flat action space over the native hybrid action.

Discrete: server x (allocation levels capped at what is free, or a queued full grant) plus
"reject", with a feasibility mask; continuous: a Box in [-1, 1]^4 mapped to server and shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

__all__ = ["DiscreteActionWrapper", "FlatContinuousActionWrapper"]


class DiscreteActionWrapper(gym.ActionWrapper, RecordConstructorArgs):
    """``Discrete(n_servers * (len(levels) + 1) + 1)`` with a feasibility mask.

    Per server ``j`` (server-major, ``len(levels) + 1`` actions each):

    - ``levels``: grant ``min(level, free)`` of the server's compute, bandwidth and memory: never
      more than is free now, so the task waits only for a slot, never for resources;
    - "queue": a full grant of the server's totals, waiting first come, first served until it is
      free (the same as level 1 on an idle server).

    The last action rejects the task (it fails at once). Without the "queue" actions a scheduler
    could not wait for a busy server, and every task arriving while all of them are busy would
    be lost.

    ``info["action_mask"]`` (from ``reset`` and ``step``, for the decision the returned
    observation asks for) and :meth:`action_masks` give a bool array over the actions: a level
    action is feasible when its capped grant can run the task (positive compute and bandwidth,
    memory for at least one sample), which is the paper's constraint that grants never exceed
    what remains (He et al. 2025, problem formulation); "queue" and "reject" are always
    feasible. The mask says nothing about whether the task will complete.

    Parameters
    ----------
    env : gymnasium.Env
        A :class:`~environments.CloudEdgeOffloadEnv`, possibly wrapped.
    levels : sequence of float
        Allocation levels in (0, 1], e.g. ``(0.25, 0.5, 1.0)``.
    """

    def __init__(self, env: gym.Env, levels: Sequence[float] = (0.25, 0.5, 1.0)) -> None:
        lv = np.asarray(levels, dtype=np.float64)
        if lv.ndim != 1 or lv.size == 0 or np.any(lv <= 0) or np.any(lv > 1):
            raise ValueError(f"levels={list(levels)} must be a non-empty sequence in (0, 1]")
        RecordConstructorArgs.__init__(self, levels=tuple(float(x) for x in lv))
        gym.ActionWrapper.__init__(self, env)
        self.levels = lv
        self.n_servers = int(env.unwrapped.n_servers)  # type: ignore[attr-defined]
        per = lv.size + 1
        self.n_actions = self.n_servers * per + 1
        self.reject_action = self.n_actions - 1
        self.action_space = spaces.Discrete(self.n_actions)
        #: Server of every non-reject action, shape (n_actions - 1,).
        self.action_servers = np.repeat(np.arange(self.n_servers), per)
        #: Level of every non-reject action; NaN marks the "queue" (full grant) actions.
        self.action_levels = np.tile(np.append(lv, np.nan), self.n_servers)
        self._queued = np.isnan(self.action_levels)

    def grants(self) -> np.ndarray:
        """Grants of every non-reject action now, shape (n_actions - 1, 3)."""
        free = np.maximum(self.env.unwrapped.remaining, 0.0)  # type: ignore[attr-defined]
        level = np.where(self._queued, 1.0, self.action_levels)
        capped = np.minimum(level[:, None], free[self.action_servers])
        return np.where(self._queued[:, None], 1.0, capped)

    def action_masks(self) -> np.ndarray:
        """Feasible actions for the current task, shape (n_actions,), bool."""
        base = self.env.unwrapped
        mask = np.ones(self.n_actions, dtype=bool)
        mask[:-1] = base.can_run(self.action_servers, self.grants())  # type: ignore[attr-defined]
        return mask

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the env and add ``info["action_mask"]``."""
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "action_mask": self.action_masks()}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step with the mapped action and add ``info["action_mask"]`` for the next task."""
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        mask = (
            np.ones(self.n_actions, dtype=bool) if terminated or truncated else self.action_masks()
        )
        return obs, reward, terminated, truncated, {**info, "action_mask": mask}

    def action(self, action: Any) -> dict[str, Any]:
        """Map a discrete index to the native action."""
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
            "shares": self.grants()[idx].astype(np.float32),
        }


class FlatContinuousActionWrapper(gym.ActionWrapper, RecordConstructorArgs):
    """``Box(-1, 1, (4,))``: ``a[0]`` selects the server, ``a[1:]`` the three shares.

    Mapping: server ``= min(floor((a[0] + 1) / 2 * n_servers), n_servers - 1)`` (equal-width bins
    over [-1, 1]); shares ``= (a[1:] + 1) / 2`` (fractions of the server's total compute,
    bandwidth and memory; a grant larger than what is free waits in the queue).
    """

    def __init__(self, env: gym.Env) -> None:
        RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        self.n_servers = int(env.unwrapped.n_servers)  # type: ignore[attr-defined]
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)

    def action(self, action: Any) -> dict[str, Any]:
        """Map a flat vector in [-1, 1]^4 to the native action."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (4,) or not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1.0):
            raise ValueError(
                f"continuous action {a.tolist()} (shape {a.shape}) must lie in [-1, 1]^4"
            )
        server = min(int(np.floor((a[0] + 1.0) / 2.0 * self.n_servers)), self.n_servers - 1)
        shares = np.clip((a[1:] + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
        return {"server": server, "shares": shares}
