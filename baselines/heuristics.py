"""Reference heuristic policies for the offloading world: cloud-only, edge-only, random, greedy, frugal, edge-first.

Each policy has ``reset(seed)`` and ``act(env, obs) -> native action``; docstrings say what they read.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np

from environments import CloudEdgeOffloadEnv

__all__ = [
    "CloudOnlyPolicy",
    "EdgeFirstPolicy",
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
    """``min(share, free now)`` per resource of ``server`` (a grant that never waits), shape (3,)."""
    return np.minimum(share, np.maximum(env.remaining[server], 0.0)).astype(np.float32)


def candidate_grants(env: CloudEdgeOffloadEnv, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every server with each level granted to all three resources, as fractions of its total.

    A level larger than what is free waits in the server's queue until it is released.

    Returns
    -------
    servers : numpy.ndarray of int, shape (n_servers * len(levels),)
    shares : numpy.ndarray, shape (n_servers * len(levels), 3)
    """
    n = env.n_servers
    servers = np.repeat(np.arange(n), levels.size)
    return servers, np.repeat(np.tile(levels, n)[:, None], 3, axis=1)


def _servers_of(env: CloudEdgeOffloadEnv, kind: str) -> np.ndarray:
    idx = np.flatnonzero(np.asarray(env.server_kinds) == kind)
    if idx.size == 0:
        raise ValueError(f"the scenario has no {kind} server; kinds: {env.server_kinds}")
    return idx


_FULL = np.ones(3, np.float32)


class CloudOnlyPolicy:
    """Every task to the cloud with the fewest tasks running or waiting, granting all of its
    compute, bandwidth and memory (the task waits in the cloud's queue while it is busy). Reads
    the server occupancy (as the observation shows it when partial observability is off)."""

    name = "cloud"

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        clouds = _servers_of(env, "cloud")
        load = env.active_count[clouds] + env.waiting_count[clouds]
        return {"server": int(clouds[np.argmin(load)]), "shares": _FULL.copy()}


class EdgeNearestPolicy:
    """Every task to the nearest edge server (by the observed distance row) with a full grant,
    waiting in its queue while it is busy. Reads the observation only."""

    name = "edge_nearest"

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        edges = _servers_of(env, "edge")
        dist = np.asarray(obs)[env.obs_layout["distance"]]
        return {"server": int(edges[np.argmin(dist[edges])]), "shares": _FULL.copy()}


class EdgeLeastLoadedPolicy:
    """Every task to the edge server with the fewest tasks running or waiting (ties: the most
    free compute, then the nearest) with a full grant, waiting in its queue while it is busy.
    Reads the server occupancy and free resources (as the observation shows them)."""

    name = "edge_least_loaded"

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        edges = _servers_of(env, "edge")
        dist = np.asarray(obs)[env.obs_layout["distance"]][edges]
        load = env.active_count[edges] + env.waiting_count[edges]
        order = np.lexsort((dist, -env.remaining[edges, 0], load))
        return {"server": int(edges[order[0]]), "shares": _FULL.copy()}


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

    Candidates: every server with each level in ``levels`` granted to all three resources (a
    grant larger than what is free waits in the queue); scored by ``env.evaluate_actions`` on the
    true server state with the expected channel (no shadowing sample). Picks the lowest latency
    (completed candidates first), ignoring what later tasks will need.
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
    (a grant larger than what is free waits in the queue); among those whose predicted outcome
    completes, the one with the smallest compute plus memory grant wins, any edge before any
    cloud (edges answer more accurately and the cloud is the scarce fast resource).

    Returns
    -------
    server : int
    shares : numpy.ndarray, shape (3,), float64
        All zero (reject the task at once, holding nothing) when no candidate completes.
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
    is the roll-out rule of the look-ahead with full knowledge.
    """

    name = "frugal"

    def __init__(self, levels: tuple[float, ...] = (1.0, 0.5, 0.34, 0.25, 0.2)) -> None:
        self.levels = np.asarray(levels, dtype=np.float64)

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        server, shares = frugal_choice(env, self.levels)
        return {"server": server, "shares": shares.astype(np.float32)}


class EdgeFirstPolicy:
    """Edges first, the cloud for the overflow: the paper's division of labour as a rule.

    The edges answer more accurately and the cloud faster, so a task waits for an edge at most
    as long as the cloud would take to answer it: it goes to the edge (full grant) predicted to
    finish it soonest among those that complete it and whose queueing delay is no longer than
    the cloud's predicted latency; otherwise to the cloud grant among ``levels`` predicted to
    finish soonest; otherwise to any edge that completes it; a task nothing completes is
    rejected at once. Predictions come from ``env.evaluate_actions`` on the true server state
    with the expected channel, as for :class:`GreedyPolicy`; it knows nothing of future tasks.
    """

    name = "edge_first"

    def __init__(self, levels: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)) -> None:
        self.levels = np.asarray(levels, dtype=np.float64)

    def reset(self, seed: int | None = None) -> None:
        """Stateless."""

    def act(self, env: CloudEdgeOffloadEnv, obs: np.ndarray) -> dict[str, Any]:
        edges = np.flatnonzero(~env.server_is_cloud)
        edge = env.evaluate_actions(edges, np.ones((edges.size, 3)))
        servers, shares = candidate_grants(env, self.levels)
        clouds = env.server_is_cloud[servers]
        servers, shares = servers[clouds], shares[clouds]
        cloud = env.evaluate_actions(servers, shares)
        cloud_latency = np.min(np.where(cloud.completed, cloud.latency, np.inf), initial=np.inf)
        patient = edge.completed & (edge.queueing <= cloud_latency)
        if patient.any():
            k = int(np.argmin(np.where(patient, edge.latency, np.inf)))
            return {"server": int(edges[k]), "shares": _FULL.copy()}
        if cloud.completed.any():
            k = int(np.argmin(np.where(cloud.completed, cloud.latency, np.inf)))
            return {"server": int(servers[k]), "shares": shares[k].astype(np.float32)}
        if edge.completed.any():
            k = int(np.argmin(np.where(edge.completed, edge.latency, np.inf)))
            return {"server": int(edges[k]), "shares": _FULL.copy()}
        return {"server": 0, "shares": np.zeros(3, np.float32)}
