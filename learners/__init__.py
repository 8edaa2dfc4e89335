"""The learners compared on the offloading world, and the registry that names them.

Each learner is one readable file implementing :class:`environments.learner.Learner`: the
structured active-inference agent (:mod:`learners.structured`), the paper's ensemble agent
(:mod:`learners.paper`) and the deep-RL baselines (:mod:`baselines.drl.learner`). A learner
reads the world only through :class:`environments.SchedulerView`. New learners register by
name with :func:`register_learner` and are then trained like the built-ins (``aif train``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from environments.learner import Learner, LearnerContext

__all__ = [
    "LearnerSpec",
    "build_learner",
    "learner_names",
    "learner_spec",
    "register_learner",
]


@dataclass(frozen=True)
class LearnerSpec:
    """A registered learner.

    Attributes
    ----------
    name : str
        What ``aif train --agent`` takes.
    description : str
        One line for ``--help`` and the docs.
    factory : str
        ``"module:function"`` building the learner as ``function(context, seed)``; imported
        only when the learner is built, so heavy libraries load only when used.
    preset : tuple of (str, value)
        Settings this name applies before the user's (variants of one learner).
    family : str
        ``"active-inference"`` or ``"deep-rl"`` (or a user's own).
    """

    name: str
    description: str
    factory: str
    preset: tuple[tuple[str, Any], ...] = ()
    family: str = "active-inference"


_REGISTRY: dict[str, LearnerSpec] = {}
_CALLABLES: dict[str, Callable[[LearnerContext, int], Learner]] = {}


def register_learner(
    name: str,
    factory: str | Callable[[LearnerContext, int], Learner],
    description: str,
    preset: dict[str, Any] | None = None,
    family: str = "active-inference",
) -> None:
    """Register a learner under ``name`` (an error if the name is taken).

    Parameters
    ----------
    name : str
    factory : str or callable
        ``"module:function"`` or the function itself, called as ``factory(context, seed)`` with
        a :class:`~environments.learner.LearnerContext`.
    description : str
    preset : dict, optional
        Settings applied before the run's own.
    family : str
    """
    if name in _REGISTRY:
        raise ValueError(f"a learner named {name!r} is already registered")
    if callable(factory):
        _CALLABLES[name] = factory
        target = f"<callable {name}>"
    else:
        if ":" not in factory:
            raise ValueError(f"factory {factory!r} must look like 'package.module:function'")
        target = factory
    _REGISTRY[name] = LearnerSpec(name, description, target, tuple((preset or {}).items()), family)


def learner_names() -> list[str]:
    """Names of the registered learners, in registration order."""
    return list(_REGISTRY)


def learner_spec(name: str) -> LearnerSpec:
    """The spec of a registered learner (a ValueError naming the known ones otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"agent {name!r} is unknown; expected one of {learner_names()}") from None


def build_learner(context: LearnerContext, seed: int) -> Learner:
    """Build the learner named ``context.name`` for one seed, its preset under the run's settings."""
    spec = learner_spec(context.name)
    if spec.preset:
        context.settings = {**dict(spec.preset), **context.settings}
    if spec.name in _CALLABLES:
        return _CALLABLES[spec.name](context, seed)
    module, _, function = spec.factory.partition(":")
    return getattr(importlib.import_module(module), function)(context, seed)


# ------------------------------------------------------------------------------ built-ins
_AIF = "learners.structured:build"
_PAPER = "learners.paper:build"

register_learner(
    "aif",
    _AIF,
    "structured Pyro model (server speeds, share scalings, links, problem eases, arrivals), "
    "EFE over the discrete action set with an imagined next task and parameter information gain",
)
register_learner(
    "aif-generic",
    _AIF,
    "aif with a generic outcome model (log compute time linear in log shares, learned per "
    "server) instead of the world's latency law",
    {"outcome_model": "generic"},
)
register_learner(
    "aif-reward",
    _AIF,
    "aif planning by expected reward alone (no epistemic term): model-based RL on aif's model",
    {"info_gain_weight": 0.0},
)
register_learner(
    "aif-length-classes",
    _AIF,
    "aif telling tasks apart only by 8 prompt-length classes (what the plain deep-RL baselines "
    "see of a task), not by problem",
    {"task_classes": 8},
)
register_learner(
    "aif-no-info-gain",
    _AIF,
    "aif without parameter information gain (ablation; the same planner as aif-reward)",
    {"info_gain_weight": 0.0},
)
register_learner(
    "aif-myopic",
    _AIF,
    "aif planning the current task alone, no imagined next task (ablation)",
    {"horizon": 1},
)
register_learner(
    "aif-paper",
    _PAPER,
    "the paper's agent (Algorithm 1): ensemble world model, CEM over EFE with rewardless guidance",
)
register_learner(
    "aif-paper-no-info-gain",
    _PAPER,
    "aif-paper without parameter information gain (ablation)",
    {"info_gain_weight": 0.0},
)
register_learner(
    "aif-paper-single-member",
    _PAPER,
    "aif-paper with an ensemble of one member (ablation)",
    {"ensemble_size": 1},
)
register_learner(
    "aif-paper-env-reward",
    _PAPER,
    "aif-paper learning the env reward instead of rewardless guidance (ablation)",
    {"guidance": "reward"},
)
register_learner(
    "aif-paper-proportional",
    _PAPER,
    "aif-paper reading rg as the preferred outcome density itself",
    {"form": "proportional"},
)
_DRL = {
    "rainbow": "Rainbow DQN (tianshou): C51, dueling noisy nets, n-step, prioritised replay, "
    "double Q; masked",
    "ppo": "PPO with invalid-action masking (sb3-contrib MaskablePPO), normalised observations",
    "sac": "discrete SAC (tianshou) with a masked actor, normalised observations",
}
for _name, _text in _DRL.items():
    register_learner(_name, f"baselines.drl.learner:build_{_name}", _text, family="deep-rl")
#: Learning rates of the informed learners, kept by the same pre-registered tuning budget as the
#: plain ones (3 rates x validation seeds 100 and 101, 100 episodes; docs/baselines.md).
_INFORMED_RATES = {"rainbow": 3e-4, "ppo": 3e-4, "sac": 3e-4}
for _name, _text in _DRL.items():
    register_learner(
        f"{_name}-informed",
        f"baselines.drl.learner:build_{_name}",
        f"{_name} observing also the problem identity, its own grants in flight, the clock and "
        "the server configuration (what aif reads)",
        {"features": "informed", "learning_rate": _INFORMED_RATES[_name]},
        family="deep-rl",
    )
