"""What `aif train` trains: one protocol for active-inference agents and deep-RL baselines alike.

A learner plays training episodes on env seeds it is given (learning as its algorithm does),
plays held-out episodes without learning, and saves and restores its whole state, so every
method gets the same seeds, budget, checkpoints and results. New learners register by name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

if TYPE_CHECKING:
    from experiments.runconfig import TrainConfig

__all__ = [
    "Episode",
    "Learner",
    "LearnerSpec",
    "build_learner",
    "learner_names",
    "learner_spec",
    "register_learner",
]


class Episode(NamedTuple):
    """One played episode.

    Attributes
    ----------
    infos : list of dict
        The env's ``info`` of every decision (what a scheduler observes).
    decision_s : list of float
        Wall-clock seconds each decision took.
    extras : dict of str to list
        Per-decision extra values of the learner, each a list of equal-length rows (for example
        the EFE parts of the chosen policy), labelled by :attr:`Learner.extra_labels`.
    learn_stat : float
        A number the learner reports after the episode (its free energy after refitting, or a
        training loss); NaN when it has none.
    """

    infos: list[dict[str, Any]]
    decision_s: list[float]
    extras: dict[str, list[list[float]]]
    learn_stat: float


class Learner(Protocol):
    """What the training loop needs from a method.

    Attributes
    ----------
    episodes_per_round : int
        Training episodes played at once (vectorised envs); checkpoints follow rounds.
    extra_labels : dict of str to (str, list of str)
        For each per-decision extra: the name of its last dimension and its labels.
    """

    episodes_per_round: int
    extra_labels: dict[str, tuple[str, list[str]]]

    def train_round(self, env_seeds: Sequence[int]) -> list[Episode]:
        """Play (and learn from) one training episode per env seed, in order."""
        ...

    def evaluate(self, env_seed: int, t_max: float | None = None) -> Episode:
        """Play one episode without learning, leaving the learner's state unchanged."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-identically (model, optimiser, data, generators)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        ...


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
        ``"module:function"`` building the learner as ``function(config, seed)``; imported only
        when the learner is built, so heavy libraries load only when used.
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


def register_learner(
    name: str,
    factory: str | Callable[[TrainConfig, int], Learner],
    description: str,
    preset: dict[str, Any] | None = None,
    family: str = "active-inference",
) -> None:
    """Register a learner under ``name`` (an error if the name is taken).

    Parameters
    ----------
    name : str
    factory : str or callable
        ``"module:function"`` or the function itself, called as ``factory(config, seed)``.
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


_CALLABLES: dict[str, Callable[..., Learner]] = {}


def learner_names() -> list[str]:
    """Names of the registered learners, in registration order."""
    return list(_REGISTRY)


def learner_spec(name: str) -> LearnerSpec:
    """The spec of a registered learner (a ValueError naming the known ones otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"agent {name!r} is unknown; expected one of {learner_names()}") from None


def build_learner(config: TrainConfig, seed: int) -> Learner:
    """Build the learner of ``config.agent`` for one seed, with its preset under the run's settings."""
    from dataclasses import replace

    spec = learner_spec(config.agent)
    if spec.preset:
        config = replace(config, settings=(*spec.preset, *config.settings))
    if spec.name in _CALLABLES:
        return _CALLABLES[spec.name](config, seed)
    module, _, function = spec.factory.partition(":")
    return getattr(importlib.import_module(module), function)(config, seed)


# ------------------------------------------------------------------------------ built-ins
register_learner(
    "aif",
    "experiments.agents:build_structured_agent",
    "structured Pyro model (server speeds, share scalings, links, problem eases, arrivals), "
    "EFE over the discrete action set with an imagined next task and parameter information gain",
)
register_learner(
    "aif-no-info-gain",
    "experiments.agents:build_structured_agent",
    "aif without parameter information gain (ablation)",
    {"info_gain_weight": 0.0},
)
register_learner(
    "aif-myopic",
    "experiments.agents:build_structured_agent",
    "aif planning the current task alone, no imagined next task (ablation)",
    {"horizon": 1},
)
register_learner(
    "aif-paper",
    "experiments.agents:build_paper_agent",
    "the paper's agent (Algorithm 1): ensemble world model, CEM over EFE with rewardless guidance",
)
register_learner(
    "aif-paper-no-info-gain",
    "experiments.agents:build_paper_agent",
    "aif-paper without parameter information gain (ablation)",
    {"info_gain_weight": 0.0},
)
register_learner(
    "aif-paper-single-member",
    "experiments.agents:build_paper_agent",
    "aif-paper with an ensemble of one member (ablation)",
    {"ensemble_size": 1},
)
register_learner(
    "aif-paper-env-reward",
    "experiments.agents:build_paper_agent",
    "aif-paper learning the env reward instead of rewardless guidance (ablation)",
    {"guidance": "reward"},
)
register_learner(
    "aif-paper-proportional",
    "experiments.agents:build_paper_agent",
    "aif-paper reading rg as the preferred outcome density itself",
    {"form": "proportional"},
)
register_learner(
    "rainbow",
    "experiments.drl:build_rainbow",
    "Rainbow DQN (tianshou): C51, dueling noisy nets, n-step, prioritised replay, double Q; masked",
    family="deep-rl",
)
register_learner(
    "ppo",
    "experiments.drl:build_ppo",
    "PPO with invalid-action masking (sb3-contrib MaskablePPO), normalised observations",
    family="deep-rl",
)
register_learner(
    "sac",
    "experiments.drl:build_sac",
    "discrete SAC (tianshou) with a masked actor, normalised observations",
    family="deep-rl",
)
