"""Reproduce the paper's Figs. 3-5 in one command: a typed profile, one Dask task per cell, one result.

A *cell* is one (method, seed, setting): training a learner on one seed, or playing held-out
episodes of a trained learner or of a reference policy at one (t_max, load) setting. Each cell is
one task on a ``distributed`` cluster and writes its own result atomically under ``OUT/cells/``,
so a rerun skips finished cells and a killed worker or run loses nothing finished. The cells are
assembled into one DataTree (``OUT/results.nc``); the figures and ``OUT/report.md`` are rendered
from that file alone.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from baselines import HEURISTIC_NAMES
from experiments.atomic import write_atomic
from experiments.runconfig import TrainConfig, eval_seed
from experiments.stats import Interval, mean_interval
from experiments.train import METRICS

__all__ = [
    "DEFAULT_METHODS",
    "FIGURES",
    "PAPER_RESULTS",
    "PROFILES",
    "Budget",
    "Cell",
    "Plan",
    "Profile",
    "ReproductionError",
    "ReproductionResult",
    "Setting",
    "assemble",
    "attr_list",
    "compare_results",
    "comparison_table",
    "local_cluster",
    "make_plan",
    "profile_by_name",
    "render_report",
    "run_cell",
    "run_reproduction",
    "summary_table",
    "sweep_table",
    "trend_table",
    "update_docs_page",
    "budget_table",
]

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


# ====================================================================================== profiles
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

    def train_config(self, method: str, seed: int) -> TrainConfig:
        """The training run of one learner and seed (budget of its family)."""
        from experiments.learners import learner_spec

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
        """What a run folder's cells depend on: everything but the default method list."""
        d = json.loads(json.dumps(asdict(self), default=str))
        d.pop("methods")
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
        references=(*HEURISTIC_NAMES, "oracle"),
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


# ====================================================================================== cells
class Setting(NamedTuple):
    """Where held-out episodes are played: deadline (s) and tasks per episode."""

    t_max: float
    tasks: int


@dataclass(frozen=True)
class Cell:
    """One task of the sweep.

    Attributes
    ----------
    kind : str
        ``"train"`` (a learner's training run of one seed), ``"eval"`` (held-out episodes of a
        trained learner at one setting) or ``"reference"`` (a reference policy at one setting).
    method : str
        Learner or reference policy name.
    seed : int
    t_max : float
        Deadline of the setting (s).
    tasks : int
        Tasks per episode of the setting.
    """

    kind: str
    method: str
    seed: int
    t_max: float
    tasks: int

    @property
    def name(self) -> str:
        """A readable unique name, e.g. ``eval/aif/seed0/tmax5-tasks100``."""
        if self.kind == "train":
            return f"train/{self.method}/seed{self.seed}"
        return f"{self.kind}/{self.method}/seed{self.seed}/tmax{self.t_max:g}-tasks{self.tasks}"

    def path(self, out: Path) -> Path:
        """The cell's result file under ``out/cells``."""
        return Path(out) / "cells" / f"{self.name}.nc"

    @property
    def train_name(self) -> str:
        """Name of the training cell an evaluation cell depends on."""
        return f"train/{self.method}/seed{self.seed}"


def _checkpoint_dir(out: Path, method: str) -> Path:
    return Path(out) / "checkpoints" / method


def _write_dataset(ds: xr.Dataset | xr.DataTree, path: Path) -> None:
    write_atomic(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))


def _train_cell(profile: Profile, cell: Cell, out: Path) -> None:
    from experiments.train import records_to_datatree, train_seed

    config = profile.train_config(cell.method, cell.seed)
    start = time.perf_counter()
    result = train_seed(config, cell.seed, checkpoint_dir=_checkpoint_dir(out, cell.method))
    tree = records_to_datatree(config, {cell.seed: result})
    tree.attrs.update(cell=cell.name, wall_s=time.perf_counter() - start)
    _write_dataset(tree, cell.path(out))


def _episodes_dataset(records: list[dict[str, Any]], cell: Cell, wall_s: float) -> xr.Dataset:
    ds = xr.Dataset(
        {k: ("eval_episode", [r["metrics"][k] for r in records]) for k in METRICS},
        coords={"eval_episode": np.arange(len(records))},
    )
    ds["env_seed"] = ("eval_episode", np.asarray([r["env_seed"] for r in records], np.int64))
    ds.attrs.update(cell=cell.name, wall_s=wall_s)
    return ds


def _eval_cell(profile: Profile, cell: Cell, out: Path) -> None:
    import torch

    from experiments.learners import build_learner
    from experiments.train import episode_record, load_checkpoint

    start = time.perf_counter()
    train = profile.train_config(cell.method, cell.seed)
    ckpt = _checkpoint_dir(out, cell.method) / f"seed{cell.seed}.pt"
    if not ckpt.exists():
        raise ReproductionError(
            f"{cell.name} needs the checkpoint {ckpt}, which is missing; delete "
            f"{Path(out) / 'cells' / cell.train_name}.nc to train that seed again"
        )
    state = load_checkpoint(ckpt)
    if state["digest"] != train.digest(cell.seed) or len(state["records"]) != train.episodes:
        raise ReproductionError(
            f"checkpoint {ckpt} is not the finished training run of {cell.train_name}; delete it "
            "and its cell to train again"
        )
    torch.set_num_threads(train.threads)
    # The learner is built for the setting's load (its env) and given the trained state.
    learner = build_learner(replace(train, tasks_per_episode=cell.tasks), cell.seed)
    learner.load_state_dict(state["learner"])
    seeds = [eval_seed(cell.seed, k) for k in range(profile.sweep_episodes)]
    records = [episode_record(learner.evaluate(s, t_max=cell.t_max), s) for s in seeds]
    _write_dataset(_episodes_dataset(records, cell, time.perf_counter() - start), cell.path(out))


def _reference_cell(profile: Profile, cell: Cell, out: Path) -> None:
    from experiments.train import evaluate_references

    start = time.perf_counter()
    config = TrainConfig(
        scenario=profile.scenario,
        t_max=cell.t_max,
        seeds=(cell.seed,),
        tasks_per_episode=cell.tasks,
    )
    seeds = [eval_seed(cell.seed, k) for k in range(profile.sweep_episodes)]
    ref = evaluate_references(config, [cell.method], {cell.seed: seeds}, "eval_episode")
    ds = ref.isel(policy=0, seed=0, drop=True)[list(METRICS)]
    ds["env_seed"] = ("eval_episode", np.asarray(seeds, np.int64))
    ds.attrs.update(cell=cell.name, wall_s=time.perf_counter() - start)
    _write_dataset(ds, cell.path(out))


def run_cell(profile: Profile, cell: Cell, out: str | Path, *after: Any) -> str:
    """Compute one cell and write its result atomically (nothing when it is already there).

    This is the function every Dask task runs. It is a deterministic function of the profile
    and the cell: running it again, on any worker, gives the same file contents (up to the
    wall-clock ``wall_s`` attribute).

    Parameters
    ----------
    profile : Profile
    cell : Cell
    out : str or Path
        The run folder (shared by every worker: a local disk or a shared file system).
    *after : object
        Results of the cells this one depends on (passed by Dask so that it runs after them).

    Returns
    -------
    str
        The cell's name.
    """
    path = cell.path(Path(out))
    if path.exists():
        return cell.name
    if cell.kind == "train":
        _train_cell(profile, cell, Path(out))
    elif cell.kind == "eval":
        _eval_cell(profile, cell, Path(out))
    elif cell.kind == "reference":
        _reference_cell(profile, cell, Path(out))
    else:
        raise ValueError(f"cell kind {cell.kind!r} is unknown")
    return cell.name


# ====================================================================================== plan
@dataclass(frozen=True)
class Plan:
    """The cells of one ``aif reproduce`` call.

    Attributes
    ----------
    profile : Profile
    figures : tuple of int
        Figures asked for (3, 4, 5).
    methods : tuple of str
        Learners that run (registered names).
    skipped : tuple of str
        Default methods left out because they are not registered here.
    """

    profile: Profile
    figures: tuple[int, ...]
    methods: tuple[str, ...]
    skipped: tuple[str, ...] = field(default=())

    @property
    def training_setting(self) -> Setting:
        """The setting of training (Fig. 3 references and the summary table)."""
        return Setting(float(self.profile.t_max), int(self.profile.tasks))

    def tmax_settings(self) -> list[Setting]:
        """Fig. 4 settings: every t_max point at the training load (with the training t_max)."""
        p = self.profile
        points = sorted({float(t) for t in p.t_max_points} | {float(p.t_max)})
        return [Setting(t, int(p.tasks)) for t in points]

    def load_settings(self) -> list[Setting]:
        """Fig. 5 settings: every load point at the training t_max (with the training load)."""
        p = self.profile
        points = sorted({int(n) for n in p.load_points} | {int(p.tasks)})
        return [Setting(float(p.t_max), n) for n in points]

    def settings(self) -> list[Setting]:
        """Every setting held-out episodes are played at, each once."""
        out = [self.training_setting]
        if 4 in self.figures:
            out += self.tmax_settings()
        if 5 in self.figures:
            out += self.load_settings()
        return list(dict.fromkeys(out))

    def cells(self) -> list[Cell]:
        """Training cells first, then evaluation cells, then reference cells."""
        p = self.profile
        cells = [Cell("train", m, s, p.t_max, p.tasks) for m in self.methods for s in p.seeds]
        for kind, names in (("eval", self.methods), ("reference", p.references)):
            cells += [
                Cell(kind, m, s, st.t_max, st.tasks)
                for m in names
                for s in p.seeds
                for st in self.settings()
            ]
        return cells


def make_plan(
    profile: Profile, figures: Iterable[int] = FIGURES, methods: Sequence[str] | None = None
) -> Plan:
    """Resolve the methods of a reproduction through the learner registry.

    Parameters
    ----------
    profile : Profile
    figures : iterable of int
        Subset of :data:`FIGURES`.
    methods : sequence of str, optional
        Learners asked for by name; every name must be registered. Default: the profile's
        methods that are registered (the others are listed in ``Plan.skipped``).
    """
    from experiments.learners import learner_names, learner_spec

    figs = tuple(sorted(set(figures)))
    bad = [f for f in figs if f not in FIGURES]
    if bad or not figs:
        raise ValueError(f"figures {list(figures)} must be taken from {list(FIGURES)}")
    known = learner_names()
    if methods is None:
        chosen = tuple(m for m in profile.methods if m in known)
        skipped = tuple(m for m in profile.methods if m not in known)
    else:
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ValueError(f"methods {unknown} are not registered learners; known: {known}")
        if len(set(methods)) != len(methods):
            raise ValueError(f"methods {list(methods)} repeat a name")
        chosen, skipped = tuple(methods), ()
    if not chosen:
        raise ValueError(
            f"none of the methods {list(profile.methods)} is a registered learner; known: {known}"
        )
    for m in chosen:  # a family without a budget fails here, before any work
        profile.budget(learner_spec(m).family)
    return Plan(profile, figs, chosen, skipped)


# ====================================================================================== running
class ReproductionResult(NamedTuple):
    """What :func:`run_reproduction` did.

    Attributes
    ----------
    tree : xarray.DataTree
        The assembled results (also in ``results``).
    results : Path
        ``OUT/results.nc``.
    report : Path
        ``OUT/report.md`` (beside the figures).
    figures : list of Path
    computed : int
        Cells computed in this call.
    reused : int
        Cells found finished and skipped.
    wall_s : float
        Seconds the cells took in this call (wall clock, cluster start excluded).
    """

    tree: xr.DataTree
    results: Path
    report: Path
    figures: list[Path]
    computed: int
    reused: int
    wall_s: float


def _check_out(profile: Profile, out: Path) -> None:
    """Refuse a run folder that holds cells of another profile."""
    if out.exists() and not out.is_dir():
        raise ReproductionError(f"--out {out} is a file; give a folder for the reproduction")
    meta = out / "profile.json"
    if not meta.exists():
        return
    try:
        old = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        raise ReproductionError(f"{meta} cannot be read; delete it or use another --out") from None
    new = profile.identity()
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        raise ReproductionError(
            f"--out {out} holds a reproduction of profile {old.get('name')!r} with other "
            f"settings ({', '.join(differ)}); use another --out folder"
        )


def local_cluster(workers: int, silence: int = logging.ERROR) -> Any:
    """A ``distributed.LocalCluster`` of single-threaded worker processes, as cells want them.

    Parameters
    ----------
    workers : int
        Worker processes (one cell at a time each; torch runs on one thread in a cell).
    silence : int
        Logging level below which the cluster's messages are dropped (a killed worker's
        shutdown chatter is not the user's business).
    """
    from dask.distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: 8787 may be taken
        silence_logs=silence,
    )


def _connect(workers: int, scheduler: str | None) -> tuple[Any, Any]:
    """A Dask client: on a running scheduler, or on a new LocalCluster of single-threaded workers."""
    from dask.distributed import Client

    if scheduler is not None:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, TimeoutError, ValueError) as err:
            raise ReproductionError(
                f"--scheduler {scheduler}: no Dask scheduler answers there "
                f"({type(err).__name__}); start one with `dask scheduler` or drop --scheduler"
            ) from None
    cluster = local_cluster(workers)
    return Client(cluster), cluster


def _dashboard_line(client: Any) -> str:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return (
            f"dask dashboard: {client.dashboard_link} (needs bokeh: "
            "pip install 'aif-offload[dashboard]')"
        )
    return f"dask dashboard: {client.dashboard_link}"


def _execute(
    client: Any,
    profile: Profile,
    cells: Sequence[Cell],
    out: Path,
    progress: bool,
) -> int:
    """Submit the unfinished cells (evaluation after its training) and wait for all of them."""
    from dask.distributed import as_completed

    from experiments.progress import ProgressReporter

    todo = [c for c in cells if not c.path(out).exists()]
    token = uuid.uuid4().hex[:8]  # task keys unique to this call; the results do not depend on it
    futures: dict[Any, Cell] = {}
    trains: dict[str, Any] = {}
    priority = {"train": 2, "eval": 1, "reference": 0}  # long training cells start first
    for c in todo:
        deps = [trains[c.train_name]] if c.kind == "eval" and c.train_name in trains else []
        fut = client.submit(
            run_cell,
            profile,
            c,
            str(out),
            *deps,
            key=f"{c.name.replace('/', '-')}-{token}",
            priority=priority[c.kind],
            pure=False,
        )
        futures[fut] = c
        if c.kind == "train":
            trains[c.name] = fut
    reused = len(cells) - len(todo)
    with ProgressReporter(len(cells), "cells", enabled=progress, initial=reused) as bar:
        bar.update(reused, f"{reused} reused" if reused else "")
        for fut in as_completed(list(futures)):
            cell = futures[fut]
            try:
                fut.result()
            except Exception as err:
                for other in futures:
                    other.cancel()
                message = str(err).splitlines()[0] if str(err) else ""
                raise ReproductionError(
                    f"cell {cell.name} failed: {type(err).__name__}: {message}"
                ) from err
            bar.advance(1, cell.name)
    return len(todo)


def run_reproduction(
    profile: Profile | str = "quick",
    out: Path | str | None = None,
    figures: Iterable[int] = FIGURES,
    methods: Sequence[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    render: bool = True,
    log: Callable[[str], None] | None = print,
) -> ReproductionResult:
    """Run (or finish) a reproduction on Dask, assemble ``OUT/results.nc`` and render the report.

    Parameters
    ----------
    profile : Profile or str
        A :class:`Profile` or the name of a built-in one (:data:`PROFILES`).
    out : Path or str, optional
        Run folder (default ``runs/reproduce-<profile>``): ``profile.json``, ``cells/``,
        ``checkpoints/``, ``results.nc``, ``report.md`` and the figures. A folder of another
        profile is refused; cells already in it are reused.
    figures : iterable of int
        Which of Figs. 3, 4, 5 to produce (the summary table always comes).
    methods : sequence of str, optional
        Learners by registered name; default the profile's registered ones.
    workers : int, optional
        Worker processes of the ``LocalCluster`` (default: the CPU count).
    scheduler : str, optional
        Address of a running Dask scheduler to use instead (workers share ``out``).
    progress : bool
        Show cells done / total with an ETA, and the dashboard address.
    render : bool
        Render the figures and ``report.md`` after assembling.
    log : callable, optional
        Where notes go (skipped methods, the dashboard address); ``None`` silences them.

    Returns
    -------
    ReproductionResult
    """
    prof = profile_by_name(profile) if isinstance(profile, str) else profile
    plan = make_plan(prof, figures, methods)
    out = Path("runs") / f"reproduce-{prof.name}" if out is None else Path(out)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if workers is not None and scheduler is not None:
        raise ValueError("give --workers or --scheduler, not both")
    _check_out(prof, out)
    say = log if log is not None else (lambda _msg: None)
    if plan.skipped:
        say(
            f"note: {', '.join(plan.skipped)} not registered here; running "
            f"{', '.join(plan.methods)} (`aif agents` lists the registered learners)"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(
        out / "profile.json",
        lambda tmp: Path(tmp).write_text(json.dumps(prof.identity(), indent=1)),
    )
    cells = plan.cells()
    client, cluster = _connect(workers or os.cpu_count() or 1, scheduler)
    try:
        if progress:
            say(_dashboard_line(client))
        start = time.perf_counter()
        computed = _execute(client, prof, cells, out, progress)
        wall = time.perf_counter() - start
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    tree = assemble(plan, out)
    results = out / "results.nc"
    _write_dataset(tree, results)
    figs: list[Path] = []
    report = out / "report.md"
    if render:
        report, figs = render_report(results, out)
    return ReproductionResult(tree, results, report, figs, computed, len(cells) - computed, wall)


# ====================================================================================== assembly
def _open(path: Path) -> xr.DataTree:
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load()


def _sweep_group(
    plan: Plan, out: Path, settings: list[Setting], dim: str, coord: list[Any]
) -> tuple[xr.Dataset, dict[str, float]]:
    """(method, seed, ``dim``, eval_episode) metrics of learners and references at settings."""
    p = plan.profile
    names = [*plan.methods, *p.references]
    shape = (len(names), len(p.seeds), len(settings), p.sweep_episodes)
    data = {k: np.full(shape, np.nan) for k in METRICS}
    env = np.zeros(shape[1:3] + shape[3:], dtype=np.int64)
    walls: dict[str, float] = {}
    for i, m in enumerate(names):
        kind = "eval" if i < len(plan.methods) else "reference"
        for j, s in enumerate(p.seeds):
            for q, st in enumerate(settings):
                cell = Cell(kind, m, s, st.t_max, st.tasks)
                ds = _open(cell.path(out)).to_dataset()
                for k in METRICS:
                    data[k][i, j, q] = ds[k].values
                env[j, q] = ds["env_seed"].values
                walls[cell.name] = float(ds.attrs["wall_s"])
    families = _families(plan)
    result = xr.Dataset(
        {k: (("method", "seed", dim, "eval_episode"), v) for k, v in data.items()},
        coords={
            "method": names,
            "family": ("method", families),
            "seed": list(p.seeds),
            dim: coord,
            "eval_episode": np.arange(p.sweep_episodes),
        },
    )
    result["env_seed"] = (("seed", dim, "eval_episode"), env)
    _describe(result)
    return result, walls


def _families(plan: Plan) -> list[str]:
    from experiments.learners import learner_spec

    return [learner_spec(m).family for m in plan.methods] + ["reference"] * len(
        plan.profile.references
    )


def _describe(ds: xr.Dataset) -> None:
    units = {
        "completion_rate": ("1", "fraction of the episode's tasks done by t_max"),
        "mean_latency": ("s", "mean latency of the episode's completed tasks"),
        "mean_pass_at_100": ("1", "mean pass@100 of the episode's completed tasks"),
        "total_reward": ("1", "sum over the episode of r = 1/L + P (0 for a failed task)"),
        "cloud_share": ("1", "fraction of the episode's tasks sent to a cloud server"),
    }
    for k, (u, d) in units.items():
        if k in ds:
            ds[k].attrs.update(units=u, description=d)
    for name, text in (
        ("t_max", "deadline of every task (s)"),
        ("tasks", "tasks per episode, arriving in the preset's fixed time window"),
    ):
        if name in ds.coords:
            ds[name].attrs["description"] = text


def _summary(ds: xr.Dataset, dims: Sequence[str]) -> xr.Dataset:
    """Mean and 95% bootstrap interval over seeds of the per-seed mean over held-out episodes."""
    per_seed = ds[[k for k, _, _ in TABLE_METRICS]].mean("eval_episode", skipna=True)
    rest = [d for d in dims if d not in ("method", "seed")]
    coords = {"method": ds["method"].values, **{d: ds[d].values for d in rest}}
    shape = [len(v) for v in coords.values()]
    out = {}
    for k, _, _ in TABLE_METRICS:
        arr = np.full([*shape, 4], np.nan)
        values = per_seed[k].transpose("method", *rest, "seed").values
        for idx in np.ndindex(*shape):
            iv = mean_interval(values[idx])
            arr[idx] = [iv.mean, iv.low, iv.high, iv.n]
        out[k] = ((*coords, "stat"), arr)
    summary = xr.Dataset(out, coords={**coords, "stat": ["mean", "low", "high", "n_seeds"]})
    summary["family"] = ("method", ds["family"].values)
    summary.attrs["description"] = (
        "per seed, the mean over held-out episodes; mean over seeds with its 95% bootstrap "
        "interval (scipy.stats.bootstrap, BCa, 4999 resamples, seed 0)"
    )
    return summary


def assemble(plan: Plan, out: Path | str) -> xr.DataTree:
    """Assemble every finished cell of a plan into one DataTree.

    Groups
    ------
    ``training``
        (method, seed, episode): per-episode training metrics of the learners and the learner's
        ``learn_stat`` (methods with a smaller budget are NaN beyond it).
    ``evaluation``
        (method, seed, after_episode, eval_episode): held-out evaluations during training.
    ``heldout``
        (method, seed, eval_episode): learners and references at the training setting.
    ``tmax_sweep``, ``load_sweep``
        (method, seed, t_max | tasks, eval_episode): Figs. 4 and 5 (when asked for).
    ``summary/heldout``, ``summary/tmax_sweep``, ``summary/load_sweep``
        (method, [t_max | tasks,] stat): the tables' means and 95% bootstrap intervals.
    ``timing``
        Wall-clock quantities, the only numbers that differ between identical runs:
        ``median_decision_ms`` (method, seed, episode) and ``cell_wall_s`` (cell).

    Per-decision records of the training episodes stay in the training cells' files
    (``OUT/cells/train/<method>/seed<seed>.nc``, groups ``decisions`` etc.).
    """
    out = Path(out)
    p = plan.profile
    missing = [c.name for c in plan.cells() if not c.path(out).exists()]
    if missing:
        raise ReproductionError(
            f"{len(missing)} cells are not finished (first: {missing[0]}); run the reproduction"
        )
    walls: dict[str, float] = {}
    train_parts: list[xr.Dataset] = []
    timing_parts: list[xr.DataArray] = []
    eval_parts: list[xr.Dataset | None] = []
    for m in plan.methods:
        per_seed, per_seed_eval, per_seed_ms = [], [], []
        for s in p.seeds:
            cell = Cell("train", m, s, p.t_max, p.tasks)
            tree = _open(cell.path(out))
            walls[cell.name] = float(tree.attrs["wall_s"])
            ep = tree["episodes"].to_dataset()
            per_seed.append(ep[[*METRICS, "learn_stat"]])
            per_seed_ms.append(ep["median_decision_ms"])
            if "evaluation" in tree.children:
                per_seed_eval.append(tree["evaluation"].to_dataset()[list(METRICS)])
        train_parts.append(xr.concat(per_seed, "seed"))
        timing_parts.append(xr.concat(per_seed_ms, "seed"))
        if per_seed_eval:
            eval_parts.append(xr.concat(per_seed_eval, "seed", join="inner"))
        else:
            eval_parts.append(None)
    names = list(plan.methods)
    families = _families(plan)[: len(names)]
    training = xr.concat(train_parts, xr.DataArray(names, dims="method"), join="outer")
    training = training.assign_coords(family=("method", families))
    _describe(training)
    training["learn_stat"].attrs["description"] = (
        "the learner's number after each episode (free energy after refitting, or a loss)"
    )
    children: dict[str, xr.DataTree] = {"training": xr.DataTree(training)}
    with_eval = [(n, e) for n, e in zip(names, eval_parts, strict=True) if e is not None]
    if with_eval:
        evaluation = xr.concat(
            [e for _, e in with_eval],
            xr.DataArray([n for n, _ in with_eval], dims="method"),
            join="outer",
        )
        _describe(evaluation)
        children["evaluation"] = xr.DataTree(evaluation)
    held, w = _sweep_group(plan, out, [plan.training_setting], "setting", [0])
    walls.update(w)
    heldout = held.isel(setting=0, drop=True)
    children["heldout"] = xr.DataTree(heldout)
    summaries = {"heldout": xr.DataTree(_summary(heldout, ("method", "seed")))}
    sweeps = (
        (4, "tmax_sweep", plan.tmax_settings, "t_max"),
        (5, "load_sweep", plan.load_settings, "tasks"),
    )
    for figure, group, settings_of, dim in sweeps:
        if figure in plan.figures:
            st = settings_of()
            ds, w = _sweep_group(plan, out, st, dim, [getattr(x, dim) for x in st])
            walls.update(w)
            children[group] = xr.DataTree(ds)
            summaries[group] = xr.DataTree(_summary(ds, ("method", "seed", dim)))
    children["summary"] = xr.DataTree(children=summaries)
    timing = xr.Dataset(
        {
            "median_decision_ms": xr.concat(
                timing_parts, xr.DataArray(names, dims="method"), join="outer"
            ),
            "cell_wall_s": ("cell", [walls[k] for k in sorted(walls)]),
        },
        coords={"cell": sorted(walls)},
    )
    timing["median_decision_ms"].attrs["units"] = "ms"
    timing["cell_wall_s"].attrs.update(units="s", description="wall-clock seconds of each cell")
    children["timing"] = xr.DataTree(timing)
    from environments import ScenarioConfig

    window = ScenarioConfig.preset(p.scenario).episode_window_s
    budgets = {m: p.train_config(m, p.seeds[0]).episodes for m in plan.methods}
    attrs = {
        "kind": "reproduction",
        "profile": p.name,
        "profile_json": p.to_json(),
        # Lists as JSON: a netCDF attribute of one element would read back as a scalar.
        "figures": json.dumps(list(plan.figures)),
        "methods": json.dumps(list(plan.methods)),
        "skipped_methods": json.dumps(list(plan.skipped)),
        "references": json.dumps(list(p.references)),
        "seeds": json.dumps(list(p.seeds)),
        "n_seeds": len(p.seeds),
        "scenario": p.scenario,
        "t_max": float(p.t_max),
        "tasks": int(p.tasks),
        "window_s": float(window),
        "episodes": json.dumps(budgets),
        "sweep_episodes": int(p.sweep_episodes),
        "smooth": int(p.smooth),
        "interval": "95% bootstrap interval of the mean over seeds (experiments.stats)",
    }
    return xr.DataTree(xr.Dataset(attrs=attrs), children=children)


def compare_results(a: xr.DataTree, b: xr.DataTree) -> list[str]:
    """Where two reproduction results differ, wall-clock timings (group ``timing``) left out.

    Parameters
    ----------
    a, b : xarray.DataTree
        Results of :func:`assemble` (or read from ``results.nc``).

    Returns
    -------
    list of str
        Paths of groups (or ``"/ attrs"``) whose data, coordinates or attributes differ; empty
        when the results are identical (NaN equals NaN).
    """
    paths_a = {node.path for node in a.subtree if not node.path.startswith("/timing")}
    paths_b = {node.path for node in b.subtree if not node.path.startswith("/timing")}
    differ = sorted(paths_a ^ paths_b)
    for path in sorted(paths_a & paths_b):
        node_a, node_b = a[path], b[path]
        assert isinstance(node_a, xr.DataTree) and isinstance(node_b, xr.DataTree)
        da, db = node_a.to_dataset(inherit=False), node_b.to_dataset(inherit=False)
        if not da.identical(db):
            differ.append(path)
    return differ


# ====================================================================================== report
#: The paper's reported operating points (He et al., IEEE IoT-J 2025, text and Fig. 3; values read
#: from the text, approximate): completion, mean latency (s), mean pass@100.
PAPER_RESULTS: dict[str, tuple[str, float, float, float]] = {
    "aif": ("active inference with rewardless guidance", 0.99, 8.0, 0.175),
    "aif-paper": ("active inference with rewardless guidance", 0.99, 8.0, 0.175),
    "rainbow": ("Rainbow DQN", 0.85, 8.0, 0.15),
    "ppo": ("PPO", 0.90, 8.0, 0.15),
    "sac": ("SAC", 0.80, 10.0, 0.14),
}
#: How far a measured mean may sit from a number read off the paper's text and still "agree".
PAPER_TOLERANCE: dict[str, float] = {
    "completion_rate": 0.03,
    "mean_latency": 1.0,
    "mean_pass_at_100": 0.02,
}


def attr_list(tree: xr.DataTree, key: str) -> list[Any]:
    """A list attribute of a reproduction result (stored as JSON).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result.
    key : str
        ``figures``, ``methods``, ``skipped_methods``, ``references`` or ``seeds``.
    """
    return list(json.loads(tree.attrs.get(key, "[]")))


def _interval(summary: xr.Dataset, var: str, where: dict[str, Any]) -> Interval:
    # .sel takes a dict here: its keyword ``method`` is the nearest-neighbour option.
    v = summary[var].sel(where).values
    return Interval(float(v[0]), float(v[1]), float(v[2]), int(np.nan_to_num(v[3])))


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _budget_text(tree: xr.DataTree, method: str) -> str:
    episodes = json.loads(tree.attrs["episodes"])
    return str(episodes.get(method, "-"))


def summary_table(tree: xr.DataTree) -> str:
    """Markdown table of every method at the training setting (95% bootstrap intervals).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result (its ``summary/heldout`` group).

    Returns
    -------
    str
        One row per learner and reference policy: completion, mean latency, mean pass@100,
        total reward and cloud share, each ``mean [low, high]``.
    """
    s = tree["summary/heldout"].to_dataset()
    rows = []
    for m, fam in zip(s["method"].values.tolist(), s["family"].values.tolist(), strict=True):
        n = int(np.nan_to_num(s["completion_rate"].sel({"method": m, "stat": "n_seeds"}).values))
        kind = "reference" if fam == "reference" else f"{fam}, {_budget_text(tree, str(m))} ep."
        cells = [_interval(s, k, {"method": m}).format(d) for k, _, d in TABLE_METRICS]
        rows.append([f"`{m}`", kind, str(n), *cells])
    return _md_table(
        ["method", "kind (training episodes)", "seeds", *(h for _, h, _ in TABLE_METRICS)], rows
    )


def budget_table(tree: xr.DataTree) -> str:
    """Markdown table of the learners at equal training budgets (95% bootstrap intervals).

    Every learner is evaluated on the held-out episodes of the training setting during its
    training (group ``evaluation``). This table takes each family's budget (e.g. 100 episodes for
    active inference, 300 for deep RL) as a common point and shows every learner that reached it,
    so that methods are compared after the same number of training episodes. The reference
    policies play the same held-out episodes (the summary table).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result with an ``evaluation`` group.

    Returns
    -------
    str
        One row per (budget, learner); empty when the result has no evaluation during training.
    """
    if "evaluation" not in tree.children:
        return ""
    from experiments.report import METRICS
    from experiments.stats import mean_interval

    ev = tree["evaluation"].to_dataset()
    budgets = sorted(set(json.loads(tree.attrs["episodes"]).values()))
    points = [b for b in budgets if b in ev["after_episode"].values.tolist()]
    digits = {k: d for k, _, d in TABLE_METRICS}
    heads = {k: h for k, h, _ in TABLE_METRICS}
    rows = []
    for point in points:
        at = ev.sel(after_episode=point).mean("eval_episode")
        for m in at["method"].values.tolist():
            per_seed = at.sel({"method": m})
            values = per_seed["completion_rate"].values
            if np.isnan(values).all():
                continue  # trained for fewer episodes than this point
            cells = [mean_interval(per_seed[k].values).format(digits[k]) for k in METRICS]
            rows.append([str(point), f"`{m}`", str(int(np.isfinite(values).sum())), *cells])
    if not rows:
        return ""
    return _md_table(["training episodes", "method", "seeds", *(heads[k] for k in METRICS)], rows)


def sweep_table(tree: xr.DataTree, group: str, var: str, digits: int) -> str:
    """Markdown table of one metric over a sweep: methods as rows, sweep points as columns.

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result.
    group : str
        ``tmax_sweep`` or ``load_sweep``.
    var : str
        A metric of the summary (``completion_rate``, ``total_reward``, ...).
    digits : int
        Decimals shown.
    """
    s = tree[f"summary/{group}"].to_dataset()
    dim = "t_max" if group == "tmax_sweep" else "tasks"
    points = s[dim].values.tolist()
    head = [f"{'t_max' if dim == 't_max' else 'tasks'} = {x:g}" for x in points]
    rows = []
    for m in s["method"].values.tolist():
        rows.append(
            [f"`{m}`"] + [_interval(s, var, {"method": m, dim: x}).format(digits) for x in points]
        )
    return _md_table(["method", *head], rows)


def _comparison_rows(tree: xr.DataTree) -> list[list[str]]:
    s = tree["summary/heldout"].to_dataset()
    rows = []
    for m in s["method"].values.tolist():
        if str(m) not in PAPER_RESULTS:
            continue
        label, *paper = PAPER_RESULTS[str(m)]
        for (k, header, d), value in zip(TABLE_METRICS[:3], paper, strict=True):
            iv = _interval(s, k, {"method": m})
            rows.append(
                [f"`{m}` ({label})", header, f"~{value:g}", iv.format(d), _verdict(iv, value, k)]
            )
    return rows


def _verdict(iv: Interval, paper: float, var: str) -> str:
    if iv.n == 0 or math.isnan(iv.mean):
        return "not measured"
    tol = PAPER_TOLERANCE[var]
    low = iv.low if math.isfinite(iv.low) else iv.mean
    high = iv.high if math.isfinite(iv.high) else iv.mean
    if low - tol <= paper <= high + tol:
        return "agrees"
    return "higher here" if iv.mean > paper else "lower here"


def comparison_table(tree: xr.DataTree) -> str:
    """The paper's operating points beside the measured ones (markdown).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result; its learners named in :data:`PAPER_RESULTS` get a row per metric
        with a verdict (``agrees`` when the paper's number lies within the measured interval
        widened by :data:`PAPER_TOLERANCE`).
    """
    rows = _comparison_rows(tree)
    if not rows:
        return "No method of this run has a number in the paper."
    return _md_table(["method (paper's name)", "metric", "paper", "measured", "verdict"], rows)


def _per_method_means(tree: xr.DataTree, group: str, var: str) -> xr.DataArray:
    return tree[f"summary/{group}"].to_dataset()[var].sel(stat="mean")


def _names(values: Iterable[str]) -> str:
    names = [f"`{v}`" for v in values]
    return ", ".join(names) if names else "none"


def trend_table(tree: xr.DataTree) -> str:
    """The paper's Fig. 4 and 5 statements, each beside what this run measured (markdown).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result with its sweep summaries.

    Notes
    -----
    The paper's statements are about its four methods; a verdict compares the learners of this
    run that map to them (``aif`` or ``aif-paper`` for active inference), and the measured
    column also names the reference policies that meet the same condition.
    """
    rows = []
    learners = [str(m) for m in attr_list(tree, "methods")]
    refs = [str(m) for m in attr_list(tree, "references")]
    aif = [m for m in learners if m in ("aif", "aif-paper")]
    summary = tree["summary"].children
    if "tmax_sweep" in summary:
        c = _per_method_means(tree, "tmax_sweep", "completion_rate")
        t = c["t_max"].values

        def meeting(mask: np.ndarray, level: float, names: list[str]) -> list[str]:
            sub = c.sel(t_max=t[mask])
            return [m for m in names if bool((sub.sel({"method": m}) > level).all())]

        if (t <= 2).any():
            top = float(c.sel(t_max=t[t <= 2]).max())
            rows.append(
                [
                    "t_max <= 2 s: no method completes a task",
                    f"highest completion of any method at t_max <= 2 s: {top:.3f}",
                    "agrees" if top < 0.01 else "differs",
                ]
            )
        mid = (t >= 3) & (t <= 9)
        if mid.any():
            above = meeting(mid, 0.2, learners)
            expect = {m for m in learners if m in ("aif", "aif-paper", "rainbow")}
            verdict = set(above) == expect
            text = (
                f"above 20% at every t_max in 3-9 s: learners {_names(above)}; "
                f"references {_names(meeting(mid, 0.2, refs))}"
            )
            if "cloud" in refs:
                cloud = c.sel({"method": "cloud", "t_max": t[mid]}).values
                lo, hi = f"{np.nanmin(cloud):.2f}", f"{np.nanmax(cloud):.2f}"
                text += f"; `cloud` alone completes {lo if lo == hi else f'{lo}-{hi}'}"
            rows.append(
                [
                    "t_max 3-9 s: only active inference and Rainbow stay above 20% "
                    "(the cloud's share)",
                    text,
                    "agrees" if verdict else "differs",
                ]
            )
        high = t >= 10
        if high.any():
            full = meeting(high, 0.985, learners)
            rows.append(
                [
                    "t_max >= 10 s: only active inference reaches ~100%",
                    f"above 98.5% at every t_max >= 10 s: learners {_names(full)}; "
                    f"references {_names(meeting(high, 0.985, refs))}",
                    "agrees" if aif and set(full) == set(aif) else "differs",
                ]
            )
    if "load_sweep" in summary and learners:
        r = _per_method_means(tree, "load_sweep", "total_reward")
        best, best_all = [], []
        for n in r["tasks"].values.tolist():
            col = r.sel(tasks=n)
            lc = col.sel({"method": learners})
            best.append(str(lc["method"].values[int(np.nanargmax(lc.values))]))
            best_all.append(str(col["method"].values[int(np.nanargmax(col.values))]))
        loads = [int(n) for n in r["tasks"].values]
        rows.append(
            [
                "load 100-200 tasks: active inference keeps the highest total reward",
                "highest mean total reward per load among learners: "
                + ", ".join(f"{n}: `{b}`" for n, b in zip(loads, best, strict=True))
                + "; among all methods: "
                + ", ".join(f"{n}: `{b}`" for n, b in zip(loads, best_all, strict=True)),
                "agrees" if aif and all(b in aif for b in best) else "differs",
            ]
        )
    if not rows:
        return "Figs. 4 and 5 were not part of this run."
    missing = [m for m in ("rainbow", "ppo", "sac") if m not in learners]
    if missing:  # a statement about four methods, checked on fewer
        note = f" (among the learners run; {_names(missing)} not run)"
        rows = [
            [a, b, v + note if v == "agrees" and not a.startswith("t_max <= 2") else v]
            for a, b, v in rows
        ]
    return _md_table(["the paper (He et al. 2025)", "this run (means over seeds)", "verdict"], rows)


def _profile_text(tree: xr.DataTree) -> str:
    prof = json.loads(tree.attrs["profile_json"])
    budgets = ", ".join(
        f"{fam}: {b['episodes']} episodes (held-out evaluation every {b['eval_every']})"
        for fam, b in prof["budgets"]
        if fam != "default"
    )
    seeds = ", ".join(str(s) for s in attr_list(tree, "seeds"))
    lines = [
        f"- profile `{tree.attrs['profile']}`: seeds {seeds}; {budgets}",
        f"- training setting: preset `{tree.attrs['scenario']}`, t_max = "
        f"{tree.attrs['t_max']:g} s, {tree.attrs['tasks']} tasks per episode in "
        f"{tree.attrs['window_s']:g} s",
        f"- held-out episodes per (method, seed, setting): {tree.attrs['sweep_episodes']} "
        "(env seeds never used in training, the same for every method)",
        f"- learners: {', '.join(f'`{m}`' for m in attr_list(tree, 'methods'))}; references: "
        f"{', '.join(f'`{m}`' for m in attr_list(tree, 'references'))}",
    ]
    skipped = attr_list(tree, "skipped_methods")
    if skipped:
        lines.append(
            f"- not run (not registered in this installation): {', '.join(f'`{m}`' for m in skipped)}"
        )
    return "\n".join(lines)


def _budget_section(tree: xr.DataTree) -> list[str]:
    table = budget_table(tree)
    if not table:
        return []
    return [
        "### Learners at equal budget (held-out episodes during training)",
        "",
        "The same held-out episodes as the summary above, played by each learner after the given "
        "number of training episodes (a longer run passes through the shorter budget with the "
        "same state: no schedule of any learner depends on the total budget).",
        "",
        table,
        "",
    ]


def _report_body(tree: xr.DataTree, figure_dir: str) -> str:
    """The report's sections; figures are referenced under ``figure_dir``."""
    prefix = f"{figure_dir}/" if figure_dir else ""
    figs = attr_list(tree, "figures")
    parts = [
        _profile_text(tree),
        "",
        "Every interval is a 95% bootstrap interval of the mean over seeds (per seed: the mean "
        "over its held-out episodes); the number of seeds is given with each method.",
        "",
        "### Summary at the training setting (held-out episodes)",
        "",
        summary_table(tree),
        "",
        *_budget_section(tree),
        "### Paper vs this run",
        "",
        comparison_table(tree),
        "",
        trend_table(tree),
    ]
    if 3 in figs:
        parts += ["", "### Fig. 3: training curves", "", f"![Fig. 3]({prefix}fig3.png)"]
    if 4 in figs:
        parts += [
            "",
            "### Fig. 4: deadline sweep",
            "",
            f"![Fig. 4]({prefix}fig4.png)",
            "",
            "Completion rate:",
            "",
            sweep_table(tree, "tmax_sweep", "completion_rate", 3),
            "",
            "Total reward per episode:",
            "",
            sweep_table(tree, "tmax_sweep", "total_reward", 1),
        ]
    if 5 in figs:
        parts += [
            "",
            "### Fig. 5: load sweep",
            "",
            f"![Fig. 5]({prefix}fig5.png)",
            "",
            "Total reward per episode:",
            "",
            sweep_table(tree, "load_sweep", "total_reward", 1),
            "",
            "Completion rate:",
            "",
            sweep_table(tree, "load_sweep", "completion_rate", 3),
        ]
    return "\n".join(parts) + "\n"


def _render_figures(tree: xr.DataTree, folder: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from experiments.plot import load_figure, save_figure, tmax_figure, training_figure

    makers = {3: training_figure, 4: tmax_figure, 5: load_figure}
    paths = []
    for f in set(FIGURES) - set(attr_list(tree, "figures")):
        (folder / f"fig{f}.png").unlink(missing_ok=True)  # of an earlier call: not this result's
    for f in attr_list(tree, "figures"):
        fig = makers[f](tree)
        paths.append(save_figure(fig, folder / f"fig{f}.png"))
        plt.close(fig)
    return paths


def render_report(results: Path | str, folder: Path | str | None = None) -> tuple[Path, list[Path]]:
    """Render the figures and ``report.md`` from a reproduction result file alone.

    Parameters
    ----------
    results : Path or str
        ``results.nc`` of :func:`run_reproduction`.
    folder : Path or str, optional
        Where ``report.md`` and ``fig3.png`` ... go (default: beside ``results``).

    Returns
    -------
    report : Path
    figures : list of Path
    """
    results = Path(results)
    folder = results.parent if folder is None else Path(folder)
    tree = _open(results)
    figs = _render_figures(tree, folder)
    text = (
        f"# Reproduction of He et al. 2025, profile `{tree.attrs['profile']}`\n\n"
        "Generated by `aif reproduce` from `results.nc` (every number below is in that file).\n\n"
        + _report_body(tree, "")
    )
    report = write_atomic(folder / "report.md", lambda tmp: Path(tmp).write_text(text))
    return report, figs


_MARK = "reproduction"


def update_docs_page(results: Path | str, page: Path | str, command: str) -> list[Path]:
    """Replace the generated section of a documentation page with a reproduction's results.

    The page holds ``<!-- generated:reproduction -->`` and ``<!-- /generated:reproduction -->``
    markers; what lies between them is replaced, and the figures go to a folder named after the
    page (``docs/reproduction.md`` -> ``docs/reproduction/``).

    Parameters
    ----------
    results : Path or str
        ``results.nc`` of :func:`run_reproduction`.
    page : Path or str
        The markdown page.
    command : str
        The command that produced the results, quoted in the section.

    Returns
    -------
    list of Path
        The page and the figures written.
    """
    page = Path(page)
    text = page.read_text()
    begin, end = f"<!-- generated:{_MARK} -->", f"<!-- /generated:{_MARK} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ReproductionError(f"{page} has no {begin} ... {end} section to replace")
    tree = _open(Path(results))
    folder = page.parent / page.stem
    if folder.exists():
        shutil.rmtree(folder)
    figs = _render_figures(tree, folder)
    body = (
        f"{begin}\n"
        f"Measured with `{command}` (profile `{tree.attrs['profile']}`).\n\n"
        + _report_body(tree, page.stem)
        + end
    )
    write_atomic(page, lambda tmp: Path(tmp).write_text(pattern.sub(lambda _m: body, text)))
    return [page, *figs]
