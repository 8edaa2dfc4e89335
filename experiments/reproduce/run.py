"""Running a reproduction on Dask: connect, submit the unfinished cells, assemble and render.

A local cluster by default, any ``distributed`` scheduler address when the user has one.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import xarray as xr

from experiments.atomic import write_atomic
from experiments.reproduce.assemble import assemble
from experiments.reproduce.cells import Cell, run_cell, write_dataset
from experiments.reproduce.plan import make_plan
from experiments.reproduce.profiles import FIGURES, Profile, ReproductionError, profile_by_name
from experiments.reproduce.report import render_report


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


def check_out(profile: Profile, out: Path) -> None:
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


def connect(workers: int, scheduler: str | None) -> tuple[Any, Any]:
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


def dashboard_line(client: Any) -> str:
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return (
            f"dask dashboard: {client.dashboard_link} (needs bokeh: "
            "pip install 'aif-offload[dashboard]')"
        )
    return f"dask dashboard: {client.dashboard_link}"


class Job(NamedTuple):
    """One cell to compute: the profile it belongs to, the cell and its run folder."""

    profile: Profile
    cell: Cell
    out: Path

    @property
    def label(self) -> str:
        """The cell's name, prefixed with its profile's when several profiles run at once."""
        return f"{self.profile.name}/{self.cell.name}"


def execute(client: Any, jobs: Sequence[Job], progress: bool) -> int:
    """Submit the unfinished cells (evaluation after its training) and wait for all of them.

    Returns
    -------
    int
        Cells computed (the others were found finished).
    """
    from dask.distributed import as_completed

    from experiments.progress import ProgressReporter

    todo = [j for j in jobs if not j.cell.path(j.out).exists()]
    token = uuid.uuid4().hex[:8]  # task keys unique to this call; the results do not depend on it
    futures: dict[Any, Job] = {}
    trains: dict[tuple[Path, str], Any] = {}
    priority = {"train": 2, "eval": 1, "reference": 0, "bound": 0}  # long training cells first
    for j in todo:
        c = j.cell
        dep = trains.get((j.out, c.train_name)) if c.kind == "eval" else None
        fut = client.submit(
            run_cell,
            j.profile,
            c,
            str(j.out),
            *([] if dep is None else [dep]),
            key=f"{j.label.replace('/', '-')}-{token}",
            priority=priority[c.kind],
            pure=False,
        )
        futures[fut] = j
        if c.kind == "train":
            trains[(j.out, c.name)] = fut
    reused = len(jobs) - len(todo)
    with ProgressReporter(len(jobs), "cells", enabled=progress, initial=reused) as bar:
        bar.update(reused, f"{reused} reused" if reused else "")
        for fut in as_completed(list(futures)):
            job = futures[fut]
            try:
                fut.result()
            except Exception as err:
                for other in futures:
                    other.cancel()
                message = str(err).splitlines()[0] if str(err) else ""
                raise ReproductionError(
                    f"cell {job.label} failed: {type(err).__name__}: {message}"
                ) from err
            bar.advance(1, job.label)
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
    check_out(prof, out)
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
    client, cluster = connect(workers or os.cpu_count() or 1, scheduler)
    try:
        if progress:
            say(dashboard_line(client))
        start = time.perf_counter()
        computed = execute(client, [Job(prof, c, out) for c in cells], progress)
        wall = time.perf_counter() - start
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    tree = assemble(plan, out)
    results = out / "results.nc"
    write_dataset(tree, results)
    figs: list[Path] = []
    report = out / "report.md"
    if render:
        report, figs = render_report(results, out)
    return ReproductionResult(tree, results, report, figs, computed, len(cells) - computed, wall)
