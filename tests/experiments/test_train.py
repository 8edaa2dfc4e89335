"""`aif train` end to end: smoke run, determinism, resumption after SIGKILL, the plot from the file."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from aif.cem import CEMConfig
from experiments.train import AGENT_VARIANTS, TrainConfig, train_seed

TINY = [
    "--tasks", "12", "--candidates", "16", "--elites", "4", "--iterations", "1",
    "--horizon", "2", "--ensemble", "2", "--fit-steps", "5", "--no-progress",
]  # fmt: skip


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def _tiny_config(**kw) -> TrainConfig:
    cfg = TrainConfig.for_agent(
        "aif",
        episodes=2,
        seeds=(0,),
        tasks_per_episode=10,
        planner=CEMConfig(candidates=16, elites=4, iterations=1, horizon=2),
        **kw,
    )
    return replace(cfg, model=replace(cfg.model, ensemble_size=2, fit_steps=5))


def test_train_smoke_writes_a_datatree(tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.run(
        _cli("train", "--episodes", "2", "--seeds", "0,1", "--references", "cloud,greedy",
             "--out", str(out), *TINY),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "completion rate" in proc.stdout
    tree = xr.open_datatree(out / "results.nc", engine="h5netcdf")
    ep = tree["episodes"].to_dataset()
    assert dict(ep.sizes) == {"seed": 2, "episode": 2}
    assert ((ep["completion_rate"] >= 0) & (ep["completion_rate"] <= 1)).all()
    dec = tree["decisions"].to_dataset()
    assert set(dec["term"].values) >= {"efe", "pragmatic_value", "outcome_info_gain"}
    parts = dec["efe_parts"].values
    assert np.isfinite(parts).all()
    ref = tree["references"].to_dataset()
    assert list(ref["policy"].values) == ["cloud", "greedy"]
    fig = tmp_path / "fig3.png"
    proc = subprocess.run(
        _cli("plot", str(out / "results.nc"), "--out", str(fig)),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert fig.stat().st_size > 10_000
    proc = subprocess.run(
        _cli("report", str(out / "results.nc"), "--window", "1"),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "greedy" in proc.stdout and "episodes to 90%" in proc.stdout


def test_train_rejects_unknown_agent(tmp_path: Path):
    proc = subprocess.run(
        _cli("train", "--agent", "nope", "--out", str(tmp_path), *TINY),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "nope" in proc.stderr


def test_same_seed_same_numbers():
    torch.manual_seed(123)  # global state must not matter
    a = train_seed(_tiny_config(), 0, progress=False)
    torch.manual_seed(456)
    b = train_seed(_tiny_config(), 0, progress=False)
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_equal(ra["metrics"], rb["metrics"])
        assert ra["efe_parts"] == rb["efe_parts"]
        assert ra["shares"] == rb["shares"]
        assert ra["vfe"] == rb["vfe"]


def test_resume_after_stop_matches_uninterrupted(tmp_path: Path):
    cfg = _tiny_config()
    full = train_seed(cfg, 0, progress=False)
    first = train_seed(cfg, 0, checkpoint_dir=tmp_path, progress=False, stop_after=1)
    assert len(first) == 1
    resumed = train_seed(cfg, 0, checkpoint_dir=tmp_path, progress=False)
    # assert_equal treats NaN (mean latency of an episode with no completion) as equal to NaN
    np.testing.assert_equal([r["metrics"] for r in resumed], [r["metrics"] for r in full])
    assert [r["efe_parts"] for r in resumed] == [r["efe_parts"] for r in full]


def test_checkpoint_of_another_config_is_refused(tmp_path: Path):
    train_seed(_tiny_config(), 0, checkpoint_dir=tmp_path, progress=False, stop_after=1)
    with pytest.raises(ValueError, match="different configuration"):
        train_seed(_tiny_config(t_max=9.0), 0, checkpoint_dir=tmp_path, progress=False)


def test_sigkill_mid_run_then_resume_gives_identical_results(tmp_path: Path):
    args = ["train", "--episodes", "6", "--seeds", "0", "--references", "", *TINY]
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    proc = subprocess.run(
        _cli(*args, "--out", str(ref_dir)), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    child = subprocess.Popen(
        _cli(*args, "--out", str(run_dir)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    ckpt = run_dir / "checkpoints" / "seed0.pt"
    deadline = time.time() + 240
    while not ckpt.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, "the run ended before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    done = len(torch.load(ckpt, weights_only=False)["records"])
    assert 1 <= done < 6
    assert not (run_dir / "results.nc").exists()
    proc = subprocess.run(
        _cli(*args, "--out", str(run_dir)), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    a = xr.open_datatree(ref_dir / "results.nc", engine="h5netcdf")
    b = xr.open_datatree(run_dir / "results.nc", engine="h5netcdf")
    timing = ["median_decision_ms"]  # wall-clock, the one thing allowed to differ
    xr.testing.assert_identical(
        a["episodes"].to_dataset().drop_vars(timing), b["episodes"].to_dataset().drop_vars(timing)
    )
    for var in ("server", "completed", "shares", "efe_parts"):
        np.testing.assert_array_equal(a["decisions"][var].values, b["decisions"][var].values)


def test_training_under_noisy_readings_runs_and_is_seeded():
    cfg = replace(_tiny_config(), obs_noise=0.05)
    a = train_seed(cfg, 0, progress=False)
    b = train_seed(cfg, 0, progress=False)
    np.testing.assert_equal([r["metrics"] for r in a], [r["metrics"] for r in b])
    assert all(0 <= r["metrics"]["completion_rate"] <= 1 for r in a)


def test_dask_workers_give_the_same_numbers_as_one_process(tmp_path: Path):
    from experiments.train import run_training

    cfg = replace(_tiny_config(), seeds=(0, 1))
    one = run_training(cfg, tmp_path / "one", progress=False)
    two = run_training(cfg, tmp_path / "two", progress=False, workers=2)
    timing = ["median_decision_ms"]
    xr.testing.assert_identical(
        one["episodes"].to_dataset().drop_vars(timing),
        two["episodes"].to_dataset().drop_vars(timing),
    )


@pytest.mark.parametrize("agent", sorted(AGENT_VARIANTS))
def test_every_agent_variant_trains(agent: str):
    cfg = TrainConfig.for_agent(
        agent,
        episodes=1,
        seeds=(0,),
        tasks_per_episode=8,
        planner=CEMConfig(candidates=8, elites=2, iterations=1, horizon=2),
    )
    cfg = replace(cfg, model=replace(cfg.model, fit_steps=3))
    recs = train_seed(cfg, 0, progress=False)
    assert len(recs) == 1 and np.isfinite(recs[0]["vfe"])
    parts = np.asarray(recs[0]["efe_parts"])
    assert parts.shape == (8, 5) and np.isfinite(parts).all()
    if cfg.preferences.info_gain_weight == 0:
        np.testing.assert_allclose(parts[:, 0], -parts[:, 1], rtol=1e-6)  # efe = -pragmatic
