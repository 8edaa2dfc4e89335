"""Reference policies for the offloading world: heuristics and an offline oracle.

``make_policy(name)`` builds any of ``POLICY_NAMES``; deep-RL baselines live elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable

from baselines.heuristics import (
    CloudOnlyPolicy,
    EdgeFirstPolicy,
    EdgeLeastLoadedPolicy,
    EdgeNearestPolicy,
    FrugalPolicy,
    GreedyPolicy,
    Policy,
    RandomPolicy,
)
from baselines.oracle import OraclePolicy, completion_upper_bound

__all__ = [
    "HEURISTIC_NAMES",
    "POLICY_NAMES",
    "CloudOnlyPolicy",
    "EdgeFirstPolicy",
    "EdgeLeastLoadedPolicy",
    "EdgeNearestPolicy",
    "FrugalPolicy",
    "GreedyPolicy",
    "OraclePolicy",
    "Policy",
    "RandomPolicy",
    "completion_upper_bound",
    "make_policy",
]

_FACTORIES: dict[str, Callable[..., Policy]] = {
    "cloud": CloudOnlyPolicy,
    "edge_nearest": EdgeNearestPolicy,
    "edge_least_loaded": EdgeLeastLoadedPolicy,
    "random": RandomPolicy,
    "greedy": GreedyPolicy,
    "frugal": FrugalPolicy,
    "edge_first": EdgeFirstPolicy,
    "oracle": OraclePolicy,
    "oracle_guidance": lambda **kw: OraclePolicy(objective="guidance", **kw),
}

#: Reference heuristics (no future knowledge).
HEURISTIC_NAMES: tuple[str, ...] = (
    "cloud",
    "edge_nearest",
    "edge_least_loaded",
    "random",
    "greedy",
    "frugal",
    "edge_first",
)
#: Every policy ``make_policy`` knows, heuristics first, then the clairvoyant oracles: ``oracle``
#: maximises completion, ``oracle_guidance`` rewardless guidance (the agent's objective).
POLICY_NAMES: tuple[str, ...] = (*HEURISTIC_NAMES, "oracle", "oracle_guidance")


def make_policy(name: str, **kwargs: object) -> Policy:
    """Build a reference policy by name (one of :data:`POLICY_NAMES`)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; expected one of {list(POLICY_NAMES)}") from None
    return factory(**kwargs)
