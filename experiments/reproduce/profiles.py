"""Reproduction profiles: what a reproduction depends on (seeds, budgets, sweeps, references).

A profile is a typed, validated configuration; ``quick`` runs in the tests, ``paper`` is the
paper's whole experiment.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from baselines import HEURISTIC_NAMES
from experiments.runconfig import TrainConfig

#: Figures ``aif reproduce --figure`` knows.
FIGURES: tuple[int, ...] = (3, 4, 5)
#: The methods of the paper's comparison: the active-inference agent and the deep-RL baselines.
DEFAULT_METHODS: tuple[str, ...] = ("aif", "rainbow", "ppo", "sac")
#: Metrics of the summary tables, with their headers.
TABLE_METRICS: tuple[tuple[str, str, int], ...] = (
    ("completion_rate", "completion", 3),
    ("mean_latency", "mean latency (s)", 2),
    ("mean_pass_at_100", "mean pass@100", 3),
    ("total_reward", "total reward", 1),
    ("cloud_share", "cloud share", 2),
)


class ReproductionError(ValueError):
    """A reproduction cannot run as asked (a folder of another profile, a failed cell, ...)."""


@dataclass(frozen=True)
class Budget:
    """Training budget of one method family.

    Parameters
    ----------
    episodes : int
        Training episodes per seed.
    eval_every : int
        Held-out evaluation after every ``eval_every`` training episodes (and after the last).
    settings : tuple of (str, value) pairs
        Learner settings applied to every method of the family (``aif train --set``).
    """

    episodes: int
    eval_every: int
    settings: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.eval_every < 0:
            raise ValueError(
                f"a budget needs episodes >= 1 and eval_every >= 0, got {self.episodes!r}, "
                f"{self.eval_every!r}"
            )


@dataclass(frozen=True)
class Profile:
    """Everything a reproduction depends on, except which methods run.

    Parameters
    ----------
    name : str
        ``quick``, ``paper`` or a user's own.
    seeds : tuple of int
        Independent runs per method; every interval is a 95% bootstrap interval over them.
    budgets : tuple of (str, Budget) pairs
        Method family (``LearnerSpec.family``: ``active-inference``, ``deep-rl``) -> its
        training budget; ``default`` serves families not named.
    t_max_points : tuple of float
        Deadlines of the Fig. 4 sweep (s); the training ``t_max`` is always added.
    load_points : tuple of int
        Tasks per episode of the Fig. 5 sweep, in the preset's fixed time window; the training
        load is always added.
    references : tuple of str
        Reference policies (``baselines.POLICY_NAMES``) played on the same held-out episodes.
    methods : tuple of str
        Default learners (names resolved through the learner registry at run time; a default
        name that is not registered is skipped with a note).
    scenario : str
        Scenario preset.
    t_max : float
        Training deadline (s).
    tasks : int
        Training tasks per episode.
    eval_episodes : int
        Held-out episodes per evaluation point during training (Fig. 3 markers).
    sweep_episodes : int
        Held-out episodes per sweep cell (Figs. 4, 5 and the summary table).
    smooth : int
        Moving-average width of the Fig. 3 curves.
    bound : bool
        Also compute the upper bound on any policy (:func:`baselines.bound.episode_bound`) of
        every held-out episode at the training setting.
    """

    name: str
    seeds: tuple[int, ...]
    budgets: tuple[tuple[str, Budget], ...]
    t_max_points: tuple[float, ...]
    load_points: tuple[int, ...]
    references: tuple[str, ...]
    methods: tuple[str, ...] = DEFAULT_METHODS
    scenario: str = "paper"
    t_max: float = 15.0
    tasks: int = 100
    eval_episodes: int = 5
    sweep_episodes: int = 5
    smooth: int = 1
    bound: bool = False

    def __post_init__(self) -> None:
        from baselines import POLICY_NAMES
        from environments import PRESETS

        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"profile {self.name!r}: seeds {list(self.seeds)} must be distinct")
        if self.scenario not in PRESETS:
            raise ValueError(f"profile {self.name!r}: scenario {self.scenario!r} is unknown")
        if not 0 < self.t_max <= 3600 or any(not 0 < t <= 3600 for t in self.t_max_points):
            raise ValueError(f"profile {self.name!r}: every t_max must lie in (0, 3600] s")
        if self.tasks < 1 or any(n < 1 for n in self.load_points):
            raise ValueError(f"profile {self.name!r}: tasks per episode must be >= 1")
        unknown = [r for r in self.references if r not in POLICY_NAMES]
        if unknown:
            raise ValueError(
                f"profile {self.name!r}: references {unknown} unknown; expected names from "
                f"{list(POLICY_NAMES)}"
            )
        if self.eval_episodes < 1 or self.sweep_episodes < 1 or self.smooth < 1:
            raise ValueError(
                f"profile {self.name!r}: eval_episodes, sweep_episodes and smooth must be >= 1"
            )
        if not self.budgets:
            raise ValueError(f"profile {self.name!r} has no training budget")

    def budget(self, family: str) -> Budget:
        """The training budget of a method family (``default`` when it has none of its own)."""
        budgets = dict(self.budgets)
        if family in budgets:
            return budgets[family]
        if "default" in budgets:
            return budgets["default"]
        raise ReproductionError(
            f"profile {self.name!r} has no budget for the {family!r} family and no 'default'"
        )

    @property
    def final_phase(self) -> int:
        """The world's phase of the held-out episodes after training: the largest budget.

        It matters only in worlds that change across training episodes (``drift``), where every
        budget of a profile should be equal so that learners and references meet one world.
        """
        return max(b.episodes for _, b in self.budgets)

    def train_config(self, method: str, seed: int) -> TrainConfig:
        """The training run of one learner and seed (budget of its family)."""
        from learners import learner_spec

        b = self.budget(learner_spec(method).family)
        return TrainConfig(
            agent=method,
            scenario=self.scenario,
            t_max=self.t_max,
            episodes=b.episodes,
            seeds=(int(seed),),
            tasks_per_episode=self.tasks,
            eval_every=b.eval_every,
            eval_episodes=self.eval_episodes,
            settings=b.settings,
        )

    def identity(self) -> dict[str, Any]:
        """What a run folder's cells depend on: everything but the lists of methods and references.

        A cell is named by its method, so a longer list of methods or references only adds cells.
        """
        d = json.loads(json.dumps(asdict(self), default=str))
        d.pop("methods")
        d.pop("references")
        return d

    def to_json(self) -> str:
        """Canonical JSON of the profile."""
        return json.dumps(asdict(self), sort_keys=True, default=str)


#: Built-in profiles. ``quick`` is what the test suite runs (minutes on 2 cores); ``paper`` is the
#: full experiment of the paper's setting (5 seeds, 100 episodes per active-inference learner,
#: 300 per deep-RL learner, t_max 1..15 s, 100..200 tasks).
PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        seeds=(0, 1),
        budgets=(
            ("active-inference", Budget(episodes=3, eval_every=3)),
            # The deep-RL learners play 10 vectorised episodes per round (n_envs = 10).
            ("deep-rl", Budget(episodes=10, eval_every=10)),
            ("default", Budget(episodes=3, eval_every=3)),
        ),
        t_max_points=(2.0, 5.0, 10.0, 15.0),
        load_points=(100, 150, 200),
        references=("cloud", "edge_least_loaded", "greedy", "edge_first"),
        eval_episodes=1,
        sweep_episodes=2,
    ),
    "paper": Profile(
        name="paper",
        seeds=(0, 1, 2, 3, 4),
        budgets=(
            ("active-inference", Budget(episodes=100, eval_every=10)),
            ("deep-rl", Budget(episodes=300, eval_every=10)),
            ("default", Budget(episodes=100, eval_every=10)),
        ),
        t_max_points=tuple(float(t) for t in range(1, 16)),
        # Multiples of 25: PPO's rollout of 25 steps per env must divide an episode.
        load_points=(100, 125, 150, 175, 200),
        references=(*HEURISTIC_NAMES, "lookahead"),
        eval_episodes=5,
        sweep_episodes=5,
        smooth=5,
    ),
}


def profile_by_name(name: str) -> Profile:
    """A built-in profile (a ValueError naming the known ones otherwise)."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"profile {name!r} is unknown; expected one of {list(PROFILES)}") from None
