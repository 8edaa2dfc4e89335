"""Deep-RL baselines as learners: Rainbow DQN, PPO and SAC behind the learner protocol.

Each learner builds its algorithm's runner from a learner context and a seed, with the run's
settings validated against the algorithm's config dataclass. The plain learners observe the
world's observation vector; the informed ones (``features="informed"``) also the problem
identity, their own grants in flight, the clock and the server configuration, which is
everything the active-inference agent reads (:class:`~environments.SchedulerView`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch

from environments.learner import Episode, EpisodeSpec, LearnerContext, apply_settings

__all__ = [
    "ALGORITHMS",
    "DRLLearner",
    "ViewConfig",
    "build_ppo",
    "build_rainbow",
    "build_sac",
    "drl_config",
]


@dataclass(frozen=True)
class _Algorithm:
    module: str
    config: str
    runner: str


#: Algorithm name -> where its configuration and runner live.
ALGORITHMS: dict[str, _Algorithm] = {
    "rainbow": _Algorithm("baselines.drl.rainbow", "RainbowConfig", "RainbowRunner"),
    "ppo": _Algorithm("baselines.drl.ppo", "PPOConfig", "PPORunner"),
    "sac": _Algorithm("baselines.drl.sac", "SACConfig", "SACRunner"),
}


@dataclass(frozen=True)
class ViewConfig:
    """What a deep-RL learner observes.

    Parameters
    ----------
    features : {"plain", "informed"}
        ``"plain"``: the world's observation vector; ``"informed"``: that vector, the problem
        as a one-hot, the learner's own grants in flight per server, the clock within the
        episode window and the server configuration (:class:`~environments.SchedulerView`).
    """

    features: str = "plain"

    def __post_init__(self) -> None:
        if self.features not in ("plain", "informed"):
            raise ValueError(f"features must be 'plain' or 'informed', got {self.features!r}")


def drl_config(context: LearnerContext, algorithm: str) -> tuple[Any, ViewConfig]:
    """The algorithm's config dataclass and the view config, defaults under the run's settings.

    Parameters
    ----------
    context : LearnerContext
        The run; ``context.settings`` name fields of the algorithm's config or of
        :class:`ViewConfig`.
    algorithm : str
        A key of :data:`ALGORITHMS`.
    """
    spec = ALGORITHMS[algorithm]
    defaults = getattr(importlib.import_module(spec.module), spec.config)()
    cfg = apply_settings(
        {"algorithm": defaults, "view": ViewConfig()}, context.settings, context.name
    )
    return cfg["algorithm"], cfg["view"]


class DRLLearner:
    """A deep-RL baseline as a learner: rounds of ``n_envs`` vectorised training episodes.

    Parameters
    ----------
    context : LearnerContext
        The run's views, settings and device.
    seed : int
        Seeds the algorithm (networks, exploration, replay sampling).
    algorithm : str
        ``"rainbow"``, ``"ppo"`` or ``"sac"``.
    """

    def __init__(self, context: LearnerContext, seed: int, algorithm: str) -> None:
        torch.set_num_threads(context.threads)
        cfg, view_cfg = drl_config(context, algorithm)
        spec = ALGORITHMS[algorithm]
        runner_cls = getattr(importlib.import_module(spec.module), spec.runner)
        self.context = context
        self.features = cast(Literal["plain", "informed"], view_cfg.features)
        self.algorithm_config = cfg
        self.runner = runner_cls(
            cfg, lambda: context.view(features=self.features), seed, device=context.device
        )
        self.episodes_per_round = int(cfg.n_envs)
        self.extra_labels: dict[str, tuple[str, list[str]]] = {}

    def train_round(self, episodes: list[EpisodeSpec]) -> list[Episode]:
        """Play and learn from one episode per spec (``n_envs`` of them), in order."""
        return [
            Episode(log.outcomes, log.decision_s, {}, log.learn_stat)
            for log in self.runner.train_round(list(episodes))
        ]

    def evaluate(self, episode: EpisodeSpec, t_max: float | None = None) -> Episode:
        """Play one episode deterministically (most probable feasible action), without learning."""
        view = None if t_max is None else self.context.view(t_max=t_max, features=self.features)
        log = self.runner.evaluate(episode, view)
        return Episode(log.outcomes, log.decision_s, {}, log.learn_stat)

    def state_dict(self) -> dict[str, Any]:
        """The runner's whole state (networks, optimisers, buffers, statistics, generators)."""
        return self.runner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        self.runner.load_state_dict(state)


def build_rainbow(context: LearnerContext, seed: int) -> DRLLearner:
    """Rainbow DQN (tianshou) for one seed."""
    return DRLLearner(context, seed, "rainbow")


def build_ppo(context: LearnerContext, seed: int) -> DRLLearner:
    """MaskablePPO (sb3-contrib) for one seed."""
    return DRLLearner(context, seed, "ppo")


def build_sac(context: LearnerContext, seed: int) -> DRLLearner:
    """Discrete SAC (tianshou) for one seed."""
    return DRLLearner(context, seed, "sac")
