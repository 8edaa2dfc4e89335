"""What a training run depends on: the typed run configuration, the env-seed schedule and the env.

Every method compared on the world (active-inference agents, deep-RL baselines) is trained and
evaluated on the same env seeds, derived here from the run seed and the episode index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from environments.learner import LearnerContext, WorldSpec

__all__ = [
    "TrainConfig",
    "load_scenario_file",
    "episode_seed",
    "eval_seed",
    "make_env",
    "parse_setting",
]

T = TypeVar("T")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; two runs with equal configs give equal numbers.

    Parameters
    ----------
    agent : str
        A learner name (``learners.learner_names()``): an active-inference agent or a deep-RL
        baseline.
    scenario : str
        Scenario preset of the world (``environments.PRESETS``).
    t_max : float
        Task deadline in seconds.
    episodes : int
        Training episodes per seed (one episode is ``tasks_per_episode`` decisions).
    seeds : tuple of int
        One independent run per seed.
    tasks_per_episode : int or None
        Override of the preset's tasks per episode (the preset's time window is kept).
    eval_every : int
        Evaluate the learner on held-out env seeds after every ``eval_every`` training episodes
        (and after the last one); 0 disables evaluation.
    eval_episodes : int
        Held-out episodes per evaluation.
    threads : int
        torch intra-op threads (1 keeps runs bit-reproducible and matches one-core targets).
    device : str
        torch device of the learner (``"cpu"`` or ``"cuda"``); results are bit-reproducible on
        the CPU only.
    obs_noise, obs_delay : float, int
        Partial observability of the server readings (noise std, delay in decisions).
    settings : tuple of (str, value) pairs
        Learner-specific settings (hyperparameters), validated by the learner.
    scenario_json : str or None
        A whole scenario (``ScenarioConfig`` as JSON, e.g. from ``--scenario-file``) used
        instead of the preset ``scenario`` names; ``scenario`` then only labels it.
    """

    agent: str = "aif"
    scenario: str = "paper"
    t_max: float = 15.0
    episodes: int = 100
    seeds: tuple[int, ...] = (0, 1, 2)
    tasks_per_episode: int | None = None
    eval_every: int = 10
    eval_episodes: int = 5
    threads: int = 1
    device: str = "cpu"
    obs_noise: float = 0.0
    obs_delay: int = 0
    settings: tuple[tuple[str, Any], ...] = field(default=())
    scenario_json: str | None = None

    def __post_init__(self) -> None:
        from environments import PRESETS

        if self.scenario_json is None and self.scenario not in PRESETS:
            raise ValueError(
                f"scenario {self.scenario!r} is unknown; expected one of {list(PRESETS)}"
            )
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes!r}")
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed, got an empty tuple")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {list(self.seeds)} repeat a seed")
        if not 0 < self.t_max <= 3600:
            raise ValueError(f"t_max must lie in (0, 3600] seconds, got {self.t_max!r}")
        if self.tasks_per_episode is not None and self.tasks_per_episode < 1:
            raise ValueError(f"tasks_per_episode must be >= 1, got {self.tasks_per_episode!r}")
        if self.eval_every < 0 or self.eval_episodes < 1:
            raise ValueError(
                f"eval_every must be >= 0 and eval_episodes >= 1, got {self.eval_every!r}, "
                f"{self.eval_episodes!r}"
            )
        if not 0 <= self.obs_noise <= 1:
            raise ValueError(f"obs_noise must lie in [0, 1], got {self.obs_noise!r}")
        if self.obs_delay < 0:
            raise ValueError(f"obs_delay must be >= 0, got {self.obs_delay!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads!r}")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {self.device!r}")

    @property
    def settings_dict(self) -> dict[str, Any]:
        """The learner settings as a dict."""
        return dict(self.settings)

    @property
    def world(self) -> WorldSpec:
        """The world the run plays (scenario, deadline, load, partial observability)."""
        return WorldSpec(
            self.scenario,
            self.t_max,
            self.tasks_per_episode,
            self.obs_noise,
            self.obs_delay,
            self.scenario_json,
        )

    def context(self) -> LearnerContext:
        """What the run's learner is built with: views of its world, its settings and device."""
        return LearnerContext(self.agent, self.world, self.settings_dict, self.device, self.threads)

    def to_json(self) -> str:
        """Canonical JSON of the config (stored with the results)."""
        return json.dumps(asdict(self), sort_keys=True, default=str)

    def digest(self, seed: int) -> str:
        """Hash of everything that determines the run of one seed.

        The seed list and the episode budget are left out: a run can be extended to more episodes
        or seeds, and the first episodes of a longer run equal those of a shorter one.
        """
        d = asdict(self)
        d.pop("seeds")
        d.pop("episodes")
        return hashlib.sha256(
            json.dumps([d, seed], sort_keys=True, default=str).encode()
        ).hexdigest()

    def eval_points(self) -> list[int]:
        """Training episodes after which the learner is evaluated (0 = before any training)."""
        if self.eval_every == 0:
            return []
        points = list(range(0, self.episodes + 1, self.eval_every))
        if points[-1] != self.episodes:
            points.append(self.episodes)
        return points


def episode_seed(seed: int, episode: int) -> int:
    """Env seed of training episode ``episode`` of run ``seed``; the same for every method."""
    return int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1)[0])


def eval_seed(seed: int, episode: int) -> int:
    """Env seed of held-out evaluation episode ``episode`` of run ``seed`` (never a training seed)."""
    return int(np.random.SeedSequence([int(seed), int(episode), 1]).generate_state(1)[0])


def make_env(config: TrainConfig, t_max: float | None = None) -> Any:
    """The simulator of the config's scenario (preset or file), with its t_max, unwrapped.

    For the reference policies and bounds, which read the true state; learners get
    :class:`~environments.SchedulerView` objects from :meth:`TrainConfig.context` instead.
    """
    return config.world.make(t_max)


def parse_setting(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value read as JSON when it parses, else kept as a string)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"setting {text!r} must look like key=value, e.g. learning_rate=3e-4")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw.strip()
    return key, value


def load_scenario_file(path: str | Path) -> Any:
    """A validated ``ScenarioConfig`` from a JSON or YAML file (``.yaml``/``.yml``).

    Raises
    ------
    ValueError
        One line naming the file and what is wrong (unreadable, not a mapping, or the first
        invalid field with its allowed range).
    """
    import math

    import pydantic

    from environments import ScenarioConfig

    file = Path(path)
    try:
        text = file.read_text()
    except OSError as err:
        raise ValueError(f"scenario file {file}: cannot be read ({err.strerror})") from None
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # the parsers raise their own error types
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(
            f"scenario file {file}: not valid {file.suffix or 'JSON'} ({first})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"scenario file {file}: expected a mapping of ScenarioConfig fields")

    def non_finite(value: Any, where: str) -> tuple[str, float] | None:
        # JSON's Infinity and NaN and YAML's .inf parse as floats that no field may hold.
        if isinstance(value, float) and not math.isfinite(value):
            return where, value
        if isinstance(value, dict):
            items: Any = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            return None
        for key, item in items:
            found = non_finite(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
        return None

    bad = non_finite(data, "")
    if bad is not None:
        raise ValueError(f"scenario file {file}: {bad[0]}: {bad[1]} is not a finite number")
    try:
        config = ScenarioConfig.model_validate(data)
    except pydantic.ValidationError as err:
        e = err.errors()[0]
        msg = str(e["msg"]).removeprefix("Value error, ")
        where = ".".join(str(x) for x in e["loc"])
        raise ValueError(f"scenario file {file}: {where + ': ' if where else ''}{msg}") from None
    from environments import load_profile

    for i, server in enumerate(config.servers):
        try:
            load_profile(server.profile)
        except Exception as err:  # an unknown name, or a profile file that does not parse
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ValueError(f"scenario file {file}: servers.{i}.profile: {first}") from None
    return config
