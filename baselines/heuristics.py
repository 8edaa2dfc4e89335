"""Reference heuristic policies for the offloading world: cloud-only, edge-only, random, greedy, frugal.

Each policy has ``reset(seed)`` and ``act(env, obs) -> native action``; docstrings say what they read.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np

from environments import CloudEdgeOffloadEnv

__all__ = [
    "CloudOnlyPolicy",
    "EdgeLeastLoadedPolicy",
    "EdgeNearestPolicy",
    "FrugalPolicy",
    "GreedyPolicy",
    "Policy",
    "RandomPolicy",
    "candidate_grants",
    "capped_shares",
    "frugal_choice",
]


class Policy(Protocol):
    """What every reference policy offers."""

    name: str

    def reset(self, seed: int | None = None) -> None:
        """Reset internal state and random generator."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        """Native action for the current task of ``env`` (the unwrapped env)."""
        ...


def capped_shares(env: CloudEdgeOffloadEnv, server: int, share: float) -> np.ndarray:
    """``min(share, remaining)`` per resource of ``server`` (never an over-allocation), shape (3,)."""
    return np.minimum(share, env.remaining[server]).astype(np.float32)


def candidate_grants(env: CloudEdgeOffloadEnv, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every server with each level granted to all three resources, capped at what remains.

    Returns
    -------
    servers : numpy.ndarray of int, shape (n_servers * len(levels),)
    shares : numpy.ndarray, shape (n_servers * len(levels), 3)
    """
    n = env.n_servers
    servers = np.repeat(np.arange(n), levels.size)
    return servers, np.minimum(np.tile(levels, n)[:, None], env.remaining[servers])


def _servers_of(env: CloudEdgeOffloadEnv, kind: str) -> np.ndarray:
    idx = np.flatnonzero(np.asarray(env.server_kinds) == kind)
    if idx.size == 0:
        raise ValueError(f"the scenario has no {kind} server; kinds: {env.server_kinds}")
    return idx


class CloudOnlyPolicy:
    """Every task to the cloud with the most remaining compute, granting ``share`` of each resource
    capped at what remains. Reads the true remaining resources (as the observation shows them
    when partial observability is off)."""

    name = "cloud"

    def __init__(self, share: float = 1.0) -> None:
        self.share = share

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        clouds = _servers_of(env, "cloud")
        j = int(clouds[np.argmax(env.remaining[clouds, 0])])
        return {"server": j, "shares": capped_shares(env, j, self.share)}


class EdgeNearestPolicy:
    """Every task to the nearest edge server (by the observed distance row), granting ``share``
    capped at what remains (reads the true remaining resources)."""

    name = "edge_nearest"

    def __init__(self, share: float = 1.0) -> None:
        self.share = share

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        edges = _servers_of(env, "edge")
        dist = np.asarray(obs)[env.obs_layout["distance"]]
        j = int(edges[np.argmin(dist[edges])])
        return {"server": j, "shares": capped_shares(env, j, self.share)}


class EdgeLeastLoadedPolicy:
    """Every task to the edge server with the most remaining compute (ties: fewest tasks held,
    then nearest), granting ``share`` capped at what remains (reads the true server state)."""

    name = "edge_least_loaded"

    def __init__(self, share: float = 1.0) -> None:
        self.share = share

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        edges = _servers_of(env, "edge")
        dist = np.asarray(obs)[env.obs_layout["distance"]][edges]
        rem = env.remaining[edges, 0]
        held = env.active_count[edges]
        order = np.lexsort((dist, held, -rem))
        j = int(edges[order[0]])
        return {"server": j, "shares": capped_shares(env, j, self.share)}


class RandomPolicy:
    """Uniformly random server and uniformly random shares in [0, 1]^3 (may over-allocate).
    Reads nothing."""

    name = "random"

    def __init__(self) -> None:
        self.rng = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        return {
            "server": int(self.rng.integers(env.n_servers)),
            "shares": self.rng.uniform(0.0, 1.0, size=3).astype(np.float32),
        }


class GreedyPolicy:
    """Lowest predicted latency for the current task given the true state.

    Candidates: every server with each level in ``levels`` granted to all three resources,
    capped at what remains; scored by ``env.evaluate_actions`` with the expected channel. Picks
    the lowest latency (completed candidates first), ignoring what later tasks will need.
    """

    name = "greedy"

    def __init__(self, levels: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)) -> None:
        self.levels = np.asarray(levels, dtype=np.float64)

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        servers, shares = candidate_grants(env, self.levels)
        out = env.evaluate_actions(servers, shares)
        score = np.where(out.completed, out.latency, out.latency + 1e9)
        k = int(np.argmin(score))
        return {"server": int(servers[k]), "shares": shares[k].astype(np.float32)}


def frugal_choice(
    env: CloudEdgeOffloadEnv,
    levels: np.ndarray,
    shadowing: Literal["expected", "realized"] = "expected",
) -> tuple[int, np.ndarray]:
    """The smallest grant that completes the current task, edges before clouds.

    Candidates are every server with each level in ``levels`` granted to all three resources
    (capped at what remains); among those whose predicted outcome completes, the one with the
    smallest compute plus memory grant wins, any edge before any cloud (edges answer more
    accurately and the cloud is the scarce fast resource).

    Returns
    -------
    server : int
    shares : numpy.ndarray, shape (3,), float64
        All zero (reject the task at once) when no candidate completes.
    """
    servers, shares = candidate_grants(env, levels)
    out = env.evaluate_actions(servers, shares, shadowing=shadowing)
    if not out.completed.any():
        return 0, np.zeros(3)
    footprint = shares[:, 0] + shares[:, 2] + env.server_is_cloud[servers] * 10.0
    k = int(np.argmin(np.where(out.completed, footprint, np.inf)))
    return int(servers[k]), shares[k]


class FrugalPolicy:
    """The smallest grant that completes the current task, edges first (:func:`frugal_choice`).

    Reads the true state and scores candidates with ``env.evaluate_actions`` on the expected
    channel, as :class:`GreedyPolicy` does, but keeps resources for later tasks instead of
    minimising this task's latency. It knows nothing of future tasks; with the realised channel it
    is the roll-out rule of the oracle.
    """

    name = "frugal"

    def __init__(self, levels: tuple[float, ...] = (1.0, 0.5, 0.34, 0.25, 0.2)) -> None:
        self.levels = np.asarray(levels, dtype=np.float64)

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        server, shares = frugal_choice(env, self.levels)
        return {"server": server, "shares": shares.astype(np.float32)}
