"""Action wrappers that give deep-RL libraries a flat action space over the native hybrid action.

Discrete: server x allocation level (capped at what is free) plus "reject", with a feasibility
mask; continuous: a Box in [-1, 1]^4 mapped to server and shares.
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
    """``Discrete(n_servers * len(levels) + 1)`` with a feasibility mask.

    Action ``a < n_servers * len(levels)`` sends the task to server ``a // len(levels)`` and
    grants ``min(level, free)`` of its compute, bandwidth and memory, with
    ``level = levels[a % len(levels)]``: never more than is free now, so a task waits only for
    a slot, never for resources. The last action rejects the task (it fails at once).

    ``info["action_mask"]`` (from ``reset`` and ``step``, for the decision the returned
    observation asks for) and :meth:`action_masks` give a bool array over the actions: an
    action is feasible when its capped grant can run the task (positive compute and bandwidth,
    memory for at least one sample); "reject" is always feasible. The mask is the paper's
    constraint that grants never exceed what remains (He et al. 2025, problem formulation), as
    a scheduler's admission control knows it; it says nothing about whether the task will
    complete.

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
        self.n_actions = self.n_servers * lv.size + 1
        self.reject_action = self.n_actions - 1
        self.action_space = spaces.Discrete(self.n_actions)
        self._servers = np.repeat(np.arange(self.n_servers), lv.size)
        self._levels = np.tile(lv, self.n_servers)

    def _grants(self) -> np.ndarray:
        """Capped grants of every server-level action now, shape (n_servers * len(levels), 3)."""
        free = np.maximum(self.env.unwrapped.remaining, 0.0)  # type: ignore[attr-defined]
        return np.minimum(self._levels[:, None], free[self._servers])

    def action_masks(self) -> np.ndarray:
        """Feasible actions for the current task, shape (n_actions,), bool."""
        base = self.env.unwrapped
        mask = np.ones(self.n_actions, dtype=bool)
        mask[:-1] = base.can_run(self._servers, self._grants())  # type: ignore[attr-defined]
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
            "server": int(self._servers[idx]),
            "shares": self._grants()[idx].astype(np.float32),
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
