"""Reference policies for the offloading world: heuristics, a look-ahead with full knowledge, bounds.

``make_policy(name)`` builds any name of ``policy_names()``: the built-in ``POLICY_NAMES`` and
whatever ``register_policy`` added, and the aliases of ``POLICY_ALIASES``; the deep-RL baselines
are learners (``baselines.drl``). ``baselines.bound.episode_bound`` bounds any policy from above
(imported from its module: it brings in scipy's optimiser).
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
from baselines.lookahead import LookaheadPolicy, OraclePolicy, completion_upper_bound

__all__ = [
    "HEURISTIC_NAMES",
    "POLICY_ALIASES",
    "POLICY_NAMES",
    "CloudOnlyPolicy",
    "EdgeFirstPolicy",
    "EdgeLeastLoadedPolicy",
    "EdgeNearestPolicy",
    "FrugalPolicy",
    "GreedyPolicy",
    "LookaheadPolicy",
    "OraclePolicy",
    "Policy",
    "RandomPolicy",
    "completion_upper_bound",
    "make_policy",
    "policy_names",
    "register_policy",
]

_FACTORIES: dict[str, Callable[..., Policy]] = {
    "cloud": CloudOnlyPolicy,
    "edge_nearest": EdgeNearestPolicy,
    "edge_least_loaded": EdgeLeastLoadedPolicy,
    "random": RandomPolicy,
    "greedy": GreedyPolicy,
    "frugal": FrugalPolicy,
    "edge_first": EdgeFirstPolicy,
    "lookahead": LookaheadPolicy,
    "lookahead_guidance": lambda **kw: LookaheadPolicy(objective="guidance", **kw),
}

#: Names ``make_policy`` also accepts: ``oracle`` and ``oracle_guidance``, the look-aheads' names
#: in results written before they were named for what they are (a look-ahead with full knowledge
#: is a lower bound on the optimum, not a bound on other policies). They are not in
#: ``policy_names()``, so that "all" does not run the same policy twice.
POLICY_ALIASES: dict[str, Callable[..., Policy]] = {
    "oracle": lambda **kw: LookaheadPolicy(name="oracle", **kw),
    "oracle_guidance": lambda **kw: LookaheadPolicy(
        objective="guidance", name="oracle_guidance", **kw
    ),
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
#: Every policy ``make_policy`` knows, heuristics first, then the look-ahead policies with full
#: knowledge: ``lookahead`` ranks by completion first, ``lookahead_guidance`` by rewardless
#: guidance (the agent's objective). Both are lower bounds on the optimum, not upper bounds.
POLICY_NAMES: tuple[str, ...] = (*HEURISTIC_NAMES, "lookahead", "lookahead_guidance")


def register_policy(name: str, factory: Callable[..., Policy]) -> None:
    """Make a policy of your own known by name to ``make_policy``, ``aif simulate --policy`` (in
    the same process) and every function that takes a policy name.

    Parameters
    ----------
    name : str
        A name not yet taken.
    factory : callable
        Called with keyword arguments (none by default) to build a fresh policy object with
        ``name``, ``reset(seed)`` and ``act(env, obs)`` (the :class:`Policy` protocol).
    """
    if name in _FACTORIES or name in POLICY_ALIASES:
        raise ValueError(f"a policy named {name!r} is already registered")
    if not callable(factory):
        raise TypeError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    _FACTORIES[name] = factory


def policy_names() -> list[str]:
    """Every name ``make_policy`` knows: the built-ins, then the registered ones."""
    return list(_FACTORIES)


def make_policy(name: str, **kwargs: object) -> Policy:
    """Build a reference policy by name (one of :func:`policy_names` or :data:`POLICY_ALIASES`)."""
    factory = _FACTORIES.get(name) or POLICY_ALIASES.get(name)
    if factory is None:
        raise ValueError(
            f"unknown policy {name!r}; expected one of {policy_names()} "
            f"(or an alias: {list(POLICY_ALIASES)})"
        )
    return factory(**kwargs)
