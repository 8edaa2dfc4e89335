"""Summaries of training results: final metrics beside the reference policies, and convergence speed.

Everything here reads a results DataTree (as written by ``aif train``) and nothing else. Every
interval is a 95% bootstrap interval over seeds (``experiments.stats``).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from experiments.stats import Interval, mean_interval

__all__ = [
    "METRICS",
    "ResultsFileError",
    "TrainingSummary",
    "check_readable",
    "episodes_to_fraction",
    "print_training_summary",
    "summarise",
]

METRICS = ("completion_rate", "mean_latency", "mean_pass_at_100", "total_reward")


class TrainingSummary(NamedTuple):
    """Final performance of a learner and of the references.

    Attributes
    ----------
    agent : str
        The learner's name.
    training : dict
        metric -> Interval over seeds of the mean over the last ``window`` training episodes.
    references : dict
        policy -> metric -> Interval over seeds, on the same env seeds as ``training``.
    evaluation : dict
        metric -> Interval over seeds at the last evaluation on held-out env seeds (empty if
        the run has none); ``evaluated_after`` says after how many episodes.
    references_eval : dict
        policy -> metric -> Interval over seeds on the held-out env seeds.
    episodes_to_90 : list of int
        Per seed, the first episode from which the ``window``-episode moving average of the
        completion rate reaches 90% of its final value.
    window : int
        Episodes averaged for "final".
    evaluated_after : int or None
    """

    agent: str
    training: dict[str, Interval]
    references: dict[str, dict[str, Interval]]
    evaluation: dict[str, Interval]
    references_eval: dict[str, dict[str, Interval]]
    episodes_to_90: list[int]
    window: int
    evaluated_after: int | None


def episodes_to_fraction(curve: np.ndarray, fraction: float = 0.9, window: int = 10) -> int:
    """First episode at which the moving average of ``curve`` reaches ``fraction`` of its final level.

    Parameters
    ----------
    curve : numpy.ndarray
        Shape ``(episodes,)``.
    fraction : float
        Target fraction of the final level (the mean of the last ``window`` episodes).
    window : int
        Moving-average width (trailing).

    Returns
    -------
    int
        Episode index (0-based) at the end of the first window that reaches the target.
    """
    curve = np.asarray(curve, dtype=float)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError(f"curve must be a non-empty 1-D array, got shape {curve.shape}")
    w = max(1, min(window, curve.size))
    final = float(np.nanmean(curve[-w:]))
    avg = np.convolve(curve, np.ones(w) / w, mode="valid")
    hit = np.nonzero(avg >= fraction * final)[0]
    return int(hit[0] + w - 1) if hit.size else int(curve.size - 1)


def _per_seed(ds: xr.Dataset, dim: str) -> dict[str, Interval]:
    per_seed = ds.mean(dim)
    return {m: mean_interval(per_seed[m].values) for m in METRICS}


def summarise(tree: xr.DataTree, window: int = 10) -> TrainingSummary:
    """Final metrics of the learner and of every reference policy, with intervals over seeds."""
    ep = tree["episodes"].to_dataset()
    w = max(1, min(window, ep.sizes["episode"]))
    training = _per_seed(ep.isel(episode=slice(-w, None)), "episode")
    refs: dict[str, dict[str, Interval]] = {}
    if "references" in tree.children:
        ref = tree["references"].to_dataset()
        for pol in ref["policy"].values:
            refs[str(pol)] = _per_seed(ref.sel(policy=pol), "episode")
    evaluation: dict[str, Interval] = {}
    after = None
    if "evaluation" in tree.children:
        ev = tree["evaluation"].to_dataset()
        after = int(ev["after_episode"].values[-1])
        evaluation = _per_seed(ev.sel(after_episode=after), "eval_episode")
    refs_eval: dict[str, dict[str, Interval]] = {}
    if "references_eval" in tree.children:
        ref = tree["references_eval"].to_dataset()
        for pol in ref["policy"].values:
            refs_eval[str(pol)] = _per_seed(ref.sel(policy=pol), "eval_episode")
    to90 = [
        episodes_to_fraction(ep["completion_rate"].sel(seed=s).values, 0.9, w)
        for s in ep["seed"].values
    ]
    agent = str(tree.attrs.get("agent", "agent"))
    return TrainingSummary(agent, training, refs, evaluation, refs_eval, to90, w, after)


def print_training_summary(tree: xr.DataTree, window: int = 10) -> TrainingSummary:
    """Print rich tables of :func:`summarise` (full names, never truncated) and return it."""
    from rich.console import Console
    from rich.table import Table

    s = summarise(tree, window)
    n_seeds = tree["episodes"].sizes["seed"]
    console = Console(width=200, soft_wrap=True)

    def table(title: str, rows: dict[str, dict[str, Interval]]) -> None:
        t = Table(title=title)
        t.add_column("policy", no_wrap=True, overflow="fold")
        for m in METRICS:
            t.add_column(m.replace("_", " "), justify="right", no_wrap=True)
        for name, vals in rows.items():
            digits = {"total_reward": 2, "mean_latency": 2}
            t.add_row(name, *(vals[m].format(digits.get(m, 3)) for m in METRICS))
        console.print(t)

    table(
        f"Training episodes, mean of the last {s.window} "
        f"[95% bootstrap interval over {n_seeds} seeds]",
        {s.agent: s.training, **s.references},
    )
    if s.evaluation:
        table(
            f"Held-out env seeds after {s.evaluated_after} episodes "
            f"[95% bootstrap interval over {n_seeds} seeds]",
            {s.agent: s.evaluation, **s.references_eval},
        )
    console.print(f"episodes to 90% of final completion, per seed: {s.episodes_to_90}")
    return s


# ---------------------------------------------------------------------- damaged files
class ResultsFileError(ValueError):
    """A results file that cannot be read whole: the message is one line naming the file."""


def _read_every_variable(path: str, conn: Any) -> None:
    """In a child process: read every variable of every group of ``path``, announcing each first."""
    # Ctrl-C belongs to the parent, which ends this process; no traceback from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with xr.open_datatree(path, engine="h5netcdf") as tree:
            for node in tree.subtree:
                group = node.path.rstrip("/")
                for name, var in node.to_dataset(inherit=False).variables.items():
                    conn.send(("reading", f"{group}/{name}", int(var.nbytes)))
                    var.load()
        conn.send(("ok", "", 0))
    except Exception as err:  # netCDF readers raise many kinds for a damaged file
        first = str(err).splitlines()[0] if str(err) else ""
        conn.send(("error", f"{type(err).__name__}{': ' + first if first else ''}", 0))
    finally:
        conn.close()


def check_readable(path: Path | str, stall_s: float = 10.0, bytes_per_s: float = 20e6) -> None:
    """Read a whole netCDF file once in a child process, and say in one line if that fails.

    Some damage (a few zeroed bytes in an HDF5 heap) sends the HDF5 library into a loop that holds
    the interpreter and ignores Ctrl-C, or crashes it. The child reads every variable of every group
    and announces each one before reading it; when a read makes no progress within ``stall_s``
    seconds (plus the variable's size at ``bytes_per_s``), the child is ended and the file called
    damaged. A file that reads whole here reads the same in the caller.

    Parameters
    ----------
    path : Path or str
        A netCDF4/HDF5 file.
    stall_s : float
        Seconds a read may take beyond its size allowance.
    bytes_per_s : float
        The slowest reading speed taken as progress.

    Raises
    ------
    ResultsFileError
        The file is unreadable (the reader's error type and first line), a read stalled
        (which variable, after how long) or the reader crashed (the signal).
    """
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    if method == "fork":
        import h5netcdf  # noqa: F401  (once here, not in every child and again by the caller)
    ctx: Any = multiprocessing.get_context(method)  # typeshed's BaseContext lacks Process
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_read_every_variable, args=(str(path), child), daemon=True)
    proc.start()
    child.close()
    what, allowance, started = "the file's structure", stall_s, time.monotonic()
    try:
        while True:
            left = started + allowance - time.monotonic()
            if left <= 0:
                raise ResultsFileError(
                    f"result file {path} is damaged: reading {what} made no progress in "
                    f"{time.monotonic() - started:.0f} s (the HDF5 library loops on it)"
                )
            if not parent.poll(min(left, 0.5)):
                continue
            try:
                kind, text, nbytes = parent.recv()
            except EOFError:
                proc.join(5)
                code = proc.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit {code}"
                raise ResultsFileError(
                    f"result file {path} is damaged: the netCDF reader crashed on {what} ({how})"
                ) from None
            if kind == "ok":
                return
            if kind == "error":
                raise ResultsFileError(f"result file {path} cannot be read as netCDF ({text})")
            what, allowance, started = text, stall_s + nbytes / bytes_per_s, time.monotonic()
    finally:
        parent.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
