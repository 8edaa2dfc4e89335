"""Action wrappers that give deep-RL libraries a flat action space over the native hybrid action.

Discrete: server x allocation level; continuous: a Box in [-1, 1]^4 mapped to server and shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["DiscreteActionWrapper", "FlatContinuousActionWrapper"]


class DiscreteActionWrapper(gym.ActionWrapper):
    """``Discrete(n_servers * len(levels))``: action ``a`` picks server ``a // len(levels)`` and
    grants ``levels[a % len(levels)]`` of its compute, bandwidth and memory alike.

    Parameters
    ----------
    env : gymnasium.Env
        A :class:`~environments.CloudEdgeOffloadEnv` (possibly wrapped).
    levels : sequence of float
        Allocation levels in (0, 1], e.g. ``(0.25, 0.5, 1.0)``.
    """

    def __init__(self, env: gym.Env, levels: Sequence[float] = (0.25, 0.5, 1.0)) -> None:
        super().__init__(env)
        lv = np.asarray(levels, dtype=np.float64)
        if lv.ndim != 1 or lv.size == 0 or np.any(lv <= 0) or np.any(lv > 1):
            raise ValueError(f"levels={list(levels)} must be a non-empty sequence in (0, 1]")
        self.levels = lv
        self.n_servers = int(env.unwrapped.n_servers)  # type: ignore[attr-defined]
        self.action_space = spaces.Discrete(self.n_servers * lv.size)

    def action(self, action: Any) -> dict[str, Any]:
        """Map a discrete index to the native action."""
        a = np.asarray(action)
        if a.shape not in ((), (1,)) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"discrete action {action!r} must be one integer")
        idx = int(a.reshape(()))
        n_actions = self.n_servers * self.levels.size
        if not 0 <= idx < n_actions:
            raise ValueError(f"discrete action {idx} outside 0..{n_actions - 1}")
        level = self.levels[idx % self.levels.size]
        return {
            "server": idx // self.levels.size,
            "shares": np.full(3, level, dtype=np.float32),
        }


class FlatContinuousActionWrapper(gym.ActionWrapper):
    """``Box(-1, 1, (4,))``: ``a[0]`` selects the server, ``a[1:]`` the three shares.

    Mapping: server ``= min(floor((a[0] + 1) / 2 * n_servers), n_servers - 1)`` (equal-width bins
    over [-1, 1]); shares ``= (a[1:] + 1) / 2`` (compute, bandwidth, memory in [0, 1]).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
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
