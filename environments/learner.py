"""The learner protocol: what every method compared on the world implements, defined once.

A learner (an active-inference agent, a deep-RL baseline) is built from a
:class:`LearnerContext`, which hands it scheduler views of the run's world and its settings and
nothing else; it plays training episodes, plays held-out episodes without learning, and saves
and restores its whole state, so every method gets the same episodes, budget and checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from environments.scheduler import ACTION_LEVELS, SchedulerView

__all__ = [
    "Episode",
    "EpisodeSpec",
    "Learner",
    "LearnerContext",
    "WorldSpec",
    "apply_settings",
]


class EpisodeSpec(NamedTuple):
    """Which episode to play.

    Attributes
    ----------
    env_seed : int
        Seed of the world's episode (arrivals, terminals, channels).
    episode : int
        Training episodes played before it, which sets the world's phase in scenarios that
        change across training (passed to ``reset`` as ``options={"episode": episode}``).
    """

    env_seed: int
    episode: int = 0

    @property
    def options(self) -> dict[str, Any]:
        """The ``reset`` options of this episode."""
        return {"episode": int(self.episode)}


class Episode(NamedTuple):
    """One played episode.

    Attributes
    ----------
    outcomes : list of dict
        The censored feedback of every decision (:data:`environments.scheduler.FEEDBACK_KEYS`),
        as :meth:`SchedulerView.outcomes` gives it after the episode.
    decision_s : list of float
        Wall-clock seconds each decision took.
    extras : dict of str to list
        Per-decision extra values of the learner, each a list of equal-length rows (for example
        the EFE parts of the chosen action), labelled by :attr:`Learner.extra_labels`.
    learn_stat : float
        A number the learner reports after the episode (its free energy after refitting, or a
        training loss); NaN when it has none.
    """

    outcomes: list[dict[str, Any]]
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

    def train_round(self, episodes: Sequence[EpisodeSpec]) -> list[Episode]:
        """Play (and learn from) one training episode per spec, in order."""
        ...

    def evaluate(self, episode: EpisodeSpec, t_max: float | None = None) -> Episode:
        """Play one episode without learning, leaving the learner's state unchanged."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-identically (model, optimiser, data, generators)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        ...


@dataclass(frozen=True)
class WorldSpec:
    """Which world a run plays: a preset or a whole scenario, with the run's overrides.

    Parameters
    ----------
    scenario : str
        Preset name (``environments.PRESETS``); only a label when ``scenario_json`` is given.
    t_max : float
        Task deadline (s).
    tasks_per_episode : int or None
        Override of the preset's tasks per episode (its time window is kept).
    obs_noise, obs_delay : float, int
        Partial observability of the server readings (noise std, delay in decisions).
    scenario_json : str or None
        A whole ``ScenarioConfig`` as JSON, used instead of the preset.
    """

    scenario: str = "paper"
    t_max: float = 15.0
    tasks_per_episode: int | None = None
    obs_noise: float = 0.0
    obs_delay: int = 0
    scenario_json: str | None = None

    def make(self, t_max: float | None = None) -> Any:
        """The simulator (an unwrapped :class:`~environments.CloudEdgeOffloadEnv`)."""
        from environments import CloudEdgeOffloadEnv, ScenarioConfig

        kwargs: dict[str, Any] = {"t_max": self.t_max if t_max is None else t_max}
        if self.tasks_per_episode is not None:
            kwargs["tasks_per_episode"] = self.tasks_per_episode
        if self.obs_noise > 0 or self.obs_delay > 0:
            kwargs["partial_observability"] = {
                "noise_std": self.obs_noise,
                "delay_steps": self.obs_delay,
            }
        if self.scenario_json is not None:
            return CloudEdgeOffloadEnv(
                ScenarioConfig.model_validate_json(self.scenario_json), **kwargs
            )
        return CloudEdgeOffloadEnv(preset=self.scenario, **kwargs)


class LearnerContext:
    """What a learner is built with: views of the run's world, its settings, device and threads.

    The world itself stays inside: a learner gets :class:`SchedulerView` objects from
    :meth:`view` and nothing else of the simulator.

    Parameters
    ----------
    name : str
        The learner's registered name (for messages).
    world : WorldSpec
    settings : mapping
        Learner settings (hyperparameters), validated by the learner with
        :func:`apply_settings`.
    device : str
        torch device of the learner.
    threads : int
        torch intra-op threads.
    """

    def __init__(
        self,
        name: str,
        world: WorldSpec,
        settings: Mapping[str, Any] | None = None,
        device: str = "cpu",
        threads: int = 1,
    ) -> None:
        self.name = name
        self.__world = world
        self.settings: dict[str, Any] = dict(settings or {})
        self.device = device
        self.threads = int(threads)

    def view(
        self,
        t_max: float | None = None,
        levels: Sequence[float] = ACTION_LEVELS,
        features: Literal["plain", "informed"] = "plain",
    ) -> SchedulerView:
        """A fresh scheduler view of the run's world (another deadline with ``t_max``)."""
        return SchedulerView(self.__world.make(t_max), levels=levels, features=features)


def apply_settings(
    defaults: Mapping[str, Any], settings: Mapping[str, Any], learner: str
) -> dict[str, Any]:
    """Override the dataclass instances in ``defaults`` (name -> config) with flat settings.

    Each key of ``settings`` must name a field of exactly one of the configs; its value is
    converted to that field's default type (int, float, bool, str, tuple) and the config
    revalidated.

    Returns
    -------
    dict
        name -> updated config.
    """
    owners: dict[str, str] = {}
    for name, cfg in defaults.items():
        for f in dataclasses.fields(cfg):
            owners.setdefault(f.name, name)
    updates: dict[str, dict[str, Any]] = {name: {} for name in defaults}
    for key, value in settings.items():
        if key not in owners:
            raise ValueError(
                f"setting {key!r} is unknown for agent {learner!r}; known: {sorted(owners)}"
            )
        name = owners[key]
        current = getattr(defaults[name], key)
        try:
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise TypeError
            elif isinstance(current, int) and not isinstance(current, bool):
                if isinstance(value, bool) or float(value) != int(value):
                    raise TypeError
                value = int(value)
            elif isinstance(current, float):
                if isinstance(value, bool):
                    raise TypeError
                value = float(value)
            elif isinstance(current, str):
                value = str(value)
            elif isinstance(current, tuple):
                value = tuple(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"setting {key}={value!r} for agent {learner!r} must be a "
                f"{type(current).__name__} like {current!r}"
            ) from None
        updates[name][key] = value
    # One replace per config, so fields checked against each other see all new values at once.
    return {name: dataclasses.replace(cfg, **updates[name]) for name, cfg in defaults.items()}
