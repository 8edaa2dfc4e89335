"""`aif reproduce`: the quick profile end to end, a worker killed mid-sweep, reruns, bad options, figures."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from experiments.reproduce import (
    Budget,
    Cell,
    Profile,
    ReproductionError,
    compare_results,
    local_cluster,
    make_plan,
    profile_by_name,
    run_reproduction,
)

# A profile small enough for a test: 20 tasks per episode, 2 training episodes, tiny refits.
TINY = Profile(
    name="tiny",
    seeds=(0, 1),
    budgets=(("default", Budget(episodes=2, eval_every=2, settings=(("fit_steps", 20),))),),
    t_max_points=(3.0,),
    load_points=(40,),
    references=("cloud", "greedy"),
    methods=("aif",),
    tasks=20,
    eval_episodes=1,
    sweep_episodes=1,
)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def _cells_done(out: Path) -> int:
    return sum(1 for _ in (out / "cells").rglob("*.nc")) if (out / "cells").exists() else 0


# ------------------------------------------------------------------------------ end to end
@pytest.mark.slow  # about 5 minutes; the quick suite (test_suite.py) runs the same machinery
def test_quick_profile_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "quick"
    proc = subprocess.run(
        _cli("reproduce", "--profile", "quick", "--out", str(out), "--workers", "2"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dask dashboard: http" in proc.stdout
    plan = make_plan(profile_by_name("quick"))
    total = len(plan.cells())
    # Progress: cells done / total with an ETA, as plain lines off a terminal.
    assert re.search(rf"cells: {total}/{total}\s+elapsed \d+ s\s+eta", proc.stderr)
    assert f"cells: {total} computed, 0 reused" in proc.stdout

    tree = xr.open_datatree(out / "results.nc", engine="h5netcdf")
    assert tree.attrs["kind"] == "reproduction"
    assert {"training", "evaluation", "heldout", "tmax_sweep", "load_sweep", "summary"} <= set(
        tree.children
    )
    training = tree["training"].to_dataset()
    assert list(training["method"].values) == list(plan.methods)
    # Each family trains its own budget; the episode axis is the longest and shorter ones end in NaN.
    longest = max(budget.episodes for _, budget in plan.profile.budgets)
    assert training.sizes["seed"] == 2 and training.sizes["episode"] == longest
    aif_rg = training["total_reward"].sel({"method": "aif"})  # not sel(method=): a keyword of sel
    assert bool(aif_rg.isel(episode=slice(0, 3)).notnull().all())
    assert bool(aif_rg.isel(episode=slice(3, None)).isnull().all())
    sweep = tree["tmax_sweep"].to_dataset()
    assert list(sweep["t_max"].values) == [2.0, 5.0, 10.0, 15.0]
    assert set(sweep["method"].values) == {*plan.methods, *plan.profile.references}
    completion = sweep["completion_rate"]
    assert float(completion.sel(t_max=2.0).max()) == 0.0  # nothing completes in 2 s
    assert list(tree["load_sweep"]["tasks"].values) == [100, 150, 200]
    summary = tree["summary/heldout"].to_dataset()
    assert (summary["completion_rate"].sel(stat="low") <= summary["completion_rate"].sel(
        stat="mean"
    )).all()  # fmt: skip

    report = (out / "report.md").read_text()
    for figure in ("fig3.png", "fig4.png", "fig5.png"):
        assert f"]({figure})" in report
        assert (out / figure).stat().st_size > 20_000
    assert "95% bootstrap interval" in report and "| `aif` |" in report
    # Learners at equal budget: each family's budget is a row group (3 for aif, 10 for deep RL).
    assert "| 3 | `aif` | 2 |" in report and "| 10 | `ppo` | 2 |" in report
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", report)

    # A second call finds every cell finished and computes nothing.
    again = subprocess.run(
        _cli("reproduce", "--profile", "quick", "--out", str(out), "--workers", "1",
             "--no-progress"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"cells: 0 computed, {total} reused" in again.stdout
    # `aif plot` renders Fig. 3 of a reproduction result too.
    fig = tmp_path / "fig3.png"
    proc = subprocess.run(
        _cli("plot", str(out / "results.nc"), "--out", str(fig)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert fig.stat().st_size > 20_000


# ------------------------------------------------------------------------------ Dask, properly
def test_killed_worker_loses_no_cell_and_changes_no_number(tmp_path: Path) -> None:
    from dask.distributed import Client

    total = len(make_plan(TINY).cells())
    with local_cluster(2, silence=logging.CRITICAL) as cluster, Client(cluster) as client:
        address = cluster.scheduler_address
        kw = {"scheduler": address, "progress": False, "render": False, "log": None}
        reference = run_reproduction(TINY, tmp_path / "ref", **kw)
        assert reference.computed == total

        box: list = []
        out = tmp_path / "killed"
        runner = threading.Thread(
            target=lambda: box.append(run_reproduction(TINY, out, **kw)), daemon=True
        )
        runner.start()
        deadline = time.time() + 300
        while _cells_done(out) < 1 and time.time() < deadline:
            time.sleep(0.05)
        busy = [w for w, keys in client.processing().items() if keys]
        assert busy, "no worker was running a cell"
        pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
        done_at_kill = _cells_done(out)
        os.kill(pid, signal.SIGKILL)
        runner.join(timeout=600)
        assert not runner.is_alive()
    assert 1 <= done_at_kill < total, "the worker was not killed mid-sweep"
    killed = box[0]
    assert killed.computed == total and _cells_done(out) == total
    assert compare_results(reference.tree, killed.tree) == []

    # A killed run (here: two lost cells and no results file) finishes where it stopped.
    lost = [Cell("reference", "greedy", 1, 3.0, 20), Cell("eval", "aif", 0, 15.0, 40)]
    for cell in lost:
        cell.path(out).unlink()
    (out / "results.nc").unlink()
    rerun = run_reproduction(TINY, out, workers=1, progress=False, render=False, log=None)
    assert (rerun.computed, rerun.reused) == (2, total - 2)
    assert compare_results(reference.tree, rerun.tree) == []
    on_disk = xr.open_datatree(out / "results.nc", engine="h5netcdf")
    assert compare_results(reference.tree, on_disk) == []


def test_a_folder_of_another_profile_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "profile.json").write_text('{"name": "tiny", "seeds": [0]}')
    with pytest.raises(ReproductionError, match="other settings"):
        run_reproduction(TINY, out, workers=1, progress=False, log=None)


# ------------------------------------------------------------------------------ the plan
def test_default_methods_skip_unregistered_learners_with_a_note() -> None:
    from learners import learner_names

    plan = make_plan(profile_by_name("quick"))
    assert plan.methods == tuple(
        m for m in ("aif", "rainbow", "ppo", "sac") if m in learner_names()
    )
    assert set(plan.skipped) == {"aif", "rainbow", "ppo", "sac"} - set(learner_names())
    with pytest.raises(ValueError, match="not registered"):
        make_plan(profile_by_name("quick"), methods=["aif", "no-such-learner"])
    with pytest.raises(ValueError, match="figures"):
        make_plan(profile_by_name("quick"), figures=[6])


def test_every_cell_once_and_evaluation_after_its_training() -> None:
    plan = make_plan(profile_by_name("quick"), methods=["aif", "aif-paper"])
    cells = plan.cells()
    names = [c.name for c in cells]
    assert len(names) == len(set(names))
    settings = plan.settings()
    # the training setting is shared by Figs. 3, 4 and 5: played once per (method, seed)
    assert len(settings) == len(set(settings)) == 4 + 3 - 1
    p = plan.profile
    n_eval = len(plan.methods) * len(p.seeds) * len(settings)
    assert len(cells) == len(plan.methods) * len(p.seeds) + n_eval + len(p.references) * len(
        p.seeds
    ) * len(settings)
    trains = {c.name for c in cells if c.kind == "train"}
    assert all(c.train_name in trains for c in cells if c.kind == "eval")
    only3 = make_plan(profile_by_name("quick"), figures=[3], methods=["aif"])
    assert only3.settings() == [only3.training_setting]


def test_profiles_document_their_budgets() -> None:
    paper = profile_by_name("paper")
    assert len(paper.seeds) >= 5
    assert paper.budget("active-inference").episodes >= 100
    assert paper.budget("deep-rl").episodes == 300
    assert paper.t_max_points == tuple(float(t) for t in range(1, 16))
    assert min(paper.load_points) == 100 and max(paper.load_points) == 200
    quick = profile_by_name("quick")
    assert len(quick.seeds) == 2 and quick.budget("deep-rl").episodes % 10 == 0
    with pytest.raises(ValueError, match="seeds"):
        replace(quick, seeds=(0, 0))
    with pytest.raises(ValueError, match="references"):
        replace(quick, references=("nobody",))


# ------------------------------------------------------------------------------ the command line
@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--figure", "7"], "--figure"),
        (["--profile", "huge"], "--profile"),
        (["--workers", "0"], "--workers"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--scheduler"),
        (["--methods", "aif,nobody"], "--methods"),
        (["--docs", "no-such-page.md"], "--docs"),
        (["--scheduler", "tcp://127.0.0.1:9"], "--scheduler"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(tmp_path: Path, args: list[str], names: str) -> None:
    proc = subprocess.run(
        _cli("reproduce", "--out", str(tmp_path / "run"), "--no-progress", *args),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aif: error:") and names in lines[0], lines
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "cells").exists()


def test_out_pointing_at_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    proc = subprocess.run(
        _cli("reproduce", "--out", str(target)), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"aif: error: --out {target} is a file; give a folder"
    assert target.read_text() == "x"


# ------------------------------------------------------------------------------ figures
def _curves(seeds: int, episodes: int, level: float) -> xr.Dataset:
    rng = np.random.default_rng(0)
    shape = (seeds, episodes)
    return xr.Dataset(
        {
            "completion_rate": (("seed", "episode"), np.clip(level + 0.02 * rng.standard_normal(shape), 0, 1)),
            "mean_latency": (("seed", "episode"), 8 + rng.standard_normal(shape)),
            "mean_pass_at_100": (("seed", "episode"), 0.15 + 0.01 * rng.standard_normal(shape)),
            "total_reward": (("seed", "episode"), 30 + rng.standard_normal(shape)),
        },
        coords={"seed": np.arange(seeds), "episode": np.arange(episodes)},
    )  # fmt: skip


def test_training_figure_reads_without_explanation() -> None:
    from matplotlib.figure import Figure

    from experiments.plot import seed_band, training_curves_figure
    from experiments.stats import mean_interval

    refs = {"cloud": _curves(3, 4, 0.9).isel(episode=slice(0, 2))}
    fig = training_curves_figure(
        {"aif": _curves(3, 12, 0.95), "ppo": _curves(5, 12, 0.8)}, refs, title="t"
    )
    assert isinstance(fig, Figure)  # returned, not saved: notebooks show it
    axes = fig.axes
    labels = [ax.get_ylabel() for ax in axes]
    assert "mean latency of completed tasks (s)" in labels
    assert all(ax.get_xlabel() == "training episode" for ax in axes)
    ticks = axes[0].get_xticks()
    assert np.allclose(ticks, np.round(ticks))  # integer episode ticks
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "aif (3 seeds)" in legend and "ppo (5 seeds)" in legend
    assert "cloud (reference)" in legend
    assert "95% bootstrap interval over seeds" in fig.get_suptitle()
    data = _curves(4, 3, 0.5)["total_reward"].values
    mean, low, high = seed_band(data)
    expect = mean_interval(data[:, 1])
    assert (mean[1], low[1], high[1]) == (expect.mean, expect.low, expect.high)


@pytest.mark.slow
def test_killed_run_finishes_where_it_stopped_with_the_same_numbers(tmp_path: Path) -> None:
    args = ["reproduce", "--profile", "quick", "--workers", "2", "--no-progress"]
    reference = subprocess.run(
        _cli(*args, "--out", str(tmp_path / "ref")), capture_output=True, text=True, timeout=900
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    out = tmp_path / "killed"
    child = subprocess.Popen(
        _cli(*args, "--out", str(out)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the run, its cluster and its workers: one process group
    )
    deadline = time.time() + 600
    while _cells_done(out) < 10 and time.time() < deadline and child.poll() is None:
        time.sleep(0.1)
    assert child.poll() is None, "the run ended before it could be killed"
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    done = _cells_done(out)
    total = len(make_plan(profile_by_name("quick")).cells())
    assert 10 <= done < total and not (out / "results.nc").exists()
    again = subprocess.run(
        _cli(*args, "--out", str(out)), capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"cells: {total - done} computed, {done} reused" in again.stdout
    a = xr.open_datatree(tmp_path / "ref" / "results.nc", engine="h5netcdf")
    b = xr.open_datatree(out / "results.nc", engine="h5netcdf")
    assert compare_results(a, b) == []
