"""Suites: several worlds, every learner and reference, scored against the upper bound, on Dask.

A suite is a set of worlds (scenario presets) and one list of learners, references and seeds
with an equal training budget for every family. Each world is a reproduction profile of its own
(training curves, held-out episodes after training, the upper bound of those episodes), and all
their cells run on one Dask cluster, resumable as a reproduction is. The suite's result holds one
child per world and the scores across worlds (``experiments.scores``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from baselines import HEURISTIC_NAMES
from experiments.atomic import write_atomic
from experiments.reproduce.assemble import assemble
from experiments.reproduce.cells import write_dataset
from experiments.reproduce.plan import make_plan
from experiments.reproduce.profiles import Budget, Profile
from experiments.reproduce.run import Job, check_out, connect, dashboard_line, execute

__all__ = [
    "FAIR_METHODS",
    "SUITES",
    "Suite",
    "SuiteResult",
    "World",
    "normalised_scores",
    "run_suite",
    "suite_by_name",
]

#: The learners of the fair test: the agent, its knowledge/inference/learning variants, and the
#: deep-RL baselines plain and with the agent's information.
FAIR_METHODS: tuple[str, ...] = (
    "aif",
    "aif-generic",
    "aif-reward",
    "aif-length-classes",
    "rainbow",
    "ppo",
    "sac",
    "rainbow-informed",
    "ppo-informed",
    "sac-informed",
)
#: References of every suite: the heuristics and the two look-aheads with full knowledge.
SUITE_REFERENCES: tuple[str, ...] = (*HEURISTIC_NAMES, "lookahead", "lookahead_guidance")


@dataclass(frozen=True)
class World:
    """One world of a suite.

    Parameters
    ----------
    name : str
        Label in the results (a folder name).
    scenario : str
        Scenario preset (``environments.PRESETS``).
    t_max : float or None
        Deadline (s); None: the preset's.
    tasks : int or None
        Tasks per episode; None: the preset's.
    episodes : int or None
        Training episodes of every learner in this world; None: the suite's budgets (a world
        whose changes come late in training needs its own).
    """

    name: str
    scenario: str
    t_max: float | None = None
    tasks: int | None = None
    episodes: int | None = None


@dataclass(frozen=True)
class Suite:
    """Worlds, learners, references, seeds and one budget per family.

    Parameters
    ----------
    name : str
    worlds : tuple of World
    methods : tuple of str
        Registered learner names.
    seeds : tuple of int
    budgets : tuple of (str, Budget) pairs
        Family -> training budget (every family the same, for a fair comparison).
    references : tuple of str
    eval_episodes : int
        Held-out episodes per evaluation point during training, and after it.
    """

    name: str
    worlds: tuple[World, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    budgets: tuple[tuple[str, Budget], ...]
    references: tuple[str, ...] = SUITE_REFERENCES
    eval_episodes: int = 5

    def __post_init__(self) -> None:
        names = [w.name for w in self.worlds]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"suite {self.name!r}: world names {names} must be distinct")

    def profile(self, world: World) -> Profile:
        """The reproduction profile of one world (Fig. 3 cells, the held-out setting, the bound)."""
        from environments import ScenarioConfig

        preset = ScenarioConfig.preset(world.scenario)
        budgets = self.budgets
        if world.episodes is not None:
            budgets = tuple((f, replace(b, episodes=world.episodes)) for f, b in budgets)
        return Profile(
            name=f"{self.name}-{world.name}",
            seeds=self.seeds,
            budgets=budgets,
            t_max_points=(),
            load_points=(),
            references=self.references,
            methods=self.methods,
            scenario=world.scenario,
            t_max=float(preset.t_max if world.t_max is None else world.t_max),
            tasks=int(preset.tasks_per_episode if world.tasks is None else world.tasks),
            eval_episodes=self.eval_episodes,
            sweep_episodes=self.eval_episodes,
            smooth=5,
            bound=True,
        )

    def to_json(self) -> str:
        """Canonical JSON of the suite."""
        return json.dumps(asdict(self), sort_keys=True, default=str)


def _equal(
    episodes: int, eval_every: int, **family_settings: Any
) -> tuple[tuple[str, Budget], ...]:
    return tuple(
        (family, Budget(episodes, eval_every, tuple(family_settings.get(family, ()))))
        for family in ("active-inference", "deep-rl", "default")
    )


#: Built-in suites. ``fair`` is the fair test (the paper's world and one the agent's model was not
#: written for, every learner at the same budget of 10 training episodes, 5 seeds, 2 held-out
#: episodes each: what fits in about an hour on 2 cores, see docs/benchmark.md); ``fair-quick``
#: exercises the same pipeline in minutes.
SUITES: dict[str, Suite] = {
    "fair-quick": Suite(
        name="fair-quick",
        worlds=(World("paper", "paper", tasks=10), World("contention", "contention", tasks=10)),
        methods=("aif", "aif-generic", "ppo-informed"),
        seeds=(0, 1),
        budgets=_equal(
            2,
            2,
            **{
                "deep-rl": (("n_envs", 2), ("n_steps", 10)),
                "active-inference": (("fit_steps", 40), ("futures", 2)),
            },
        ),
        references=("cloud", "greedy", "edge_first"),
        eval_episodes=1,
    ),
    "fair": Suite(
        name="fair",
        worlds=(World("paper", "paper"), World("contention", "contention")),
        methods=FAIR_METHODS,
        seeds=(0, 1, 2, 3, 4),
        budgets=_equal(10, 10),
        references=(*HEURISTIC_NAMES, "lookahead"),
        eval_episodes=2,
    ),
}


def suite_by_name(name: str) -> Suite:
    """A built-in suite (a ValueError naming the known ones otherwise)."""
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"suite {name!r} is unknown; expected one of {list(SUITES)}") from None


class SuiteResult(NamedTuple):
    """What :func:`run_suite` did: the tree (also in ``OUT/results.nc``), cells computed and
    reused, and the seconds the cells took."""

    tree: xr.DataTree
    results: Path
    computed: int
    reused: int
    wall_s: float


def normalised_scores(world: xr.DataTree) -> xr.Dataset:
    """Per (method, seed): mean over held-out episodes of rg and completion over their bounds.

    Learners after training, the references, and ``<learner> (untrained)`` from each learner's
    held-out evaluation before any training (the same episodes).
    """
    held = world["heldout"].to_dataset()
    bound = world["bound"].to_dataset()
    rows = {}
    for m in held["method"].values:
        ds = held.sel({"method": m})
        rows[str(m)] = (ds["total_reward"], ds["completion_rate"])
    if "evaluation" in world.children:
        ev = world["evaluation"].to_dataset()
        for m in ev["method"].values:
            ds = ev.sel({"method": m, "after_episode": 0})
            if ds.sizes.get("eval_episode", 0) == bound.sizes["eval_episode"]:
                rows[f"{m} (untrained)"] = (ds["total_reward"], ds["completion_rate"])
    names = list(rows)
    seeds = bound["seed"].values
    rg = np.stack([(rows[n][0] / bound["bound_rg"]).mean("eval_episode").values for n in names])
    done = np.stack(
        [(rows[n][1] / bound["bound_completion"]).mean("eval_episode").values for n in names]
    )
    return xr.Dataset(
        {
            "rg_fraction": (("method", "seed"), rg),
            "completion_fraction": (("method", "seed"), done),
        },
        coords={"method": names, "seed": seeds},
        attrs={
            "description": "per seed, the mean over held-out episodes of the episode's total rg "
            "(completion) over the upper bound of that episode (baselines.bound)"
        },
    )


def _write_text(tmp: Path, text: str) -> None:
    Path(tmp).write_text(text)


def run_suite(
    suite: Suite | str = "fair-quick",
    out: Path | str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
) -> SuiteResult:
    """Run (or finish) a suite on Dask and write ``OUT/results.nc`` (one child per world).

    Parameters
    ----------
    suite : Suite or str
        A :class:`Suite` or a built-in one's name (:data:`SUITES`).
    out : Path or str, optional
        Run folder (default ``runs/suite-<name>``), one subfolder per world as a reproduction's.
    workers : int, optional
        Worker processes of the ``LocalCluster`` (default: the CPU count).
    scheduler : str, optional
        Address of a running Dask scheduler instead.
    progress : bool
    log : callable, optional
        Where notes go; ``None`` silences them.
    """
    s = suite_by_name(suite) if isinstance(suite, str) else suite
    out = Path("runs") / f"suite-{s.name}" if out is None else Path(out)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if workers is not None and scheduler is not None:
        raise ValueError("give --workers or --scheduler, not both")
    say = log if log is not None else (lambda _msg: None)
    plans = {}
    for w in s.worlds:
        prof = s.profile(w)
        check_out(prof, out / w.name)
        plans[w.name] = make_plan(prof, (3,), s.methods)
    jobs = []
    for w in s.worlds:
        folder = out / w.name
        folder.mkdir(parents=True, exist_ok=True)
        prof = plans[w.name].profile
        identity = json.dumps(prof.identity(), indent=1)
        write_atomic(folder / "profile.json", partial(_write_text, text=identity))
        jobs += [Job(prof, c, folder) for c in plans[w.name].cells()]
    client, cluster = connect(workers or os.cpu_count() or 1, scheduler)
    try:
        if progress:
            say(dashboard_line(client))
        start = time.perf_counter()
        computed = execute(client, jobs, progress)
        wall = time.perf_counter() - start
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    children: dict[str, xr.DataTree] = {}
    for w in s.worlds:
        tree = assemble(plans[w.name], out / w.name)
        write_dataset(tree, out / w.name / "results.nc")
        tree["scores"] = xr.DataTree(normalised_scores(tree))
        children[w.name] = tree
    attrs = {
        "kind": "suite",
        "suite": s.name,
        "suite_json": s.to_json(),
        "worlds": json.dumps([w.name for w in s.worlds]),
        "methods": json.dumps(list(s.methods)),
        "references": json.dumps(list(s.references)),
        "seeds": json.dumps(list(s.seeds)),
        "interval": "95% bootstrap interval of the mean over seeds (experiments.stats); "
        "IQM and probability of improvement: 95% stratified bootstrap (experiments.scores)",
    }
    tree = xr.DataTree(xr.Dataset(attrs=attrs), children=children)
    results = out / "results.nc"
    write_dataset(tree, results)
    return SuiteResult(tree, results, computed, len(jobs) - computed, wall)
