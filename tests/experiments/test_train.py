"""`aif train` end to end: smoke run, determinism, resumption after SIGKILL, the plot from the file."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from experiments.runconfig import TrainConfig
from experiments.train import train_seed
from learners import learner_names, learner_spec

TINY_SETTINGS = {
    "candidates": 16, "elites": 4, "iterations": 1, "horizon": 2, "ensemble_size": 2,
    "fit_steps": 5,
}  # fmt: skip
TINY = [
    "--agent", "aif-paper", "--tasks", "12", "--eval-every", "2", "--eval-episodes", "2",
    "--no-progress", *(a for k, v in TINY_SETTINGS.items() for a in ("--set", f"{k}={v}")),
]  # fmt: skip


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def _tiny_config(**kw) -> TrainConfig:
    return TrainConfig(
        agent="aif-paper",
        episodes=2,
        seeds=(0,),
        tasks_per_episode=10,
        eval_every=1,
        eval_episodes=1,
        settings=tuple(TINY_SETTINGS.items()),
        **kw,
    )


def test_train_smoke_writes_a_datatree(tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.run(
        _cli("train", "--episodes", "2", "--seeds", "0,1", "--references", "cloud,greedy",
             "--out", str(out), *TINY),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "completion rate" in proc.stdout and "Held-out" in proc.stdout
    tree = xr.open_datatree(out / "results.nc", engine="h5netcdf")
    ep = tree["episodes"].to_dataset()
    assert dict(ep.sizes) == {"seed": 2, "episode": 2}
    ev = tree["evaluation"].to_dataset()
    assert list(ev["after_episode"].values) == [0, 2] and ev.sizes["eval_episode"] == 2
    assert list(tree["references_eval"]["policy"].values) == ["cloud", "greedy"]
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


def test_same_seed_same_numbers():
    torch.manual_seed(123)  # global state must not matter
    a = train_seed(_tiny_config(), 0, progress=False)
    torch.manual_seed(456)
    b = train_seed(_tiny_config(), 0, progress=False)
    for ra, rb in zip(a["records"], b["records"], strict=True):
        np.testing.assert_equal(ra["metrics"], rb["metrics"])
        assert ra["extras"] == rb["extras"]
        assert ra["shares"] == rb["shares"]
        assert ra["learn_stat"] == rb["learn_stat"]
    for point in a["evals"]:
        for ea, eb in zip(a["evals"][point], b["evals"][point], strict=True):
            np.testing.assert_equal(ea["metrics"], eb["metrics"])
            assert ea["server"] == eb["server"] and ea["extras"] == eb["extras"]


def test_resume_after_stop_matches_uninterrupted(tmp_path: Path):
    cfg = _tiny_config()
    full = train_seed(cfg, 0, progress=False)
    first = train_seed(cfg, 0, checkpoint_dir=tmp_path, progress=False, stop_after=1)
    assert len(first["records"]) == 1
    resumed = train_seed(cfg, 0, checkpoint_dir=tmp_path, progress=False)
    # assert_equal treats NaN (mean latency of an episode with no completion) as equal to NaN
    np.testing.assert_equal(
        [r["metrics"] for r in resumed["records"]], [r["metrics"] for r in full["records"]]
    )
    assert [r["extras"] for r in resumed["records"]] == [r["extras"] for r in full["records"]]
    for point in full["evals"]:
        np.testing.assert_equal(
            [e["metrics"] for e in resumed["evals"][point]],
            [e["metrics"] for e in full["evals"][point]],
        )


def test_checkpoint_of_another_config_is_refused(tmp_path: Path):
    train_seed(_tiny_config(), 0, checkpoint_dir=tmp_path, progress=False, stop_after=1)
    with pytest.raises(ValueError, match="different configuration"):
        train_seed(_tiny_config(t_max=9.0), 0, checkpoint_dir=tmp_path, progress=False)


def test_sigkill_mid_run_then_resume_gives_identical_results(assert_sigkill_resume_identical):
    args = ["train", "--episodes", "6", "--seeds", "0", "--references", "", *TINY]
    assert_sigkill_resume_identical(args, 6, ["server", "completed", "shares", "efe_parts"])


def test_training_under_noisy_readings_runs_and_is_seeded():
    cfg = replace(_tiny_config(), obs_noise=0.05)
    a = train_seed(cfg, 0, progress=False)["records"]
    b = train_seed(cfg, 0, progress=False)["records"]
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


# Tiny settings of each active-inference builder (the structured agent has no CEM planner).
TINY_BY_FACTORY = {
    "learners.paper:build": (
        ("candidates", 8), ("elites", 2), ("iterations", 1), ("fit_steps", 3),
    ),
    "learners.structured:build": (("fit_steps", 3), ("futures", 2)),
}  # fmt: skip


@pytest.mark.parametrize(
    "agent", [a for a in learner_names() if learner_spec(a).family == "active-inference"]
)
def test_every_active_inference_variant_trains(agent: str):
    structured = learner_spec(agent).factory == "learners.structured:build"
    settings = TINY_BY_FACTORY[learner_spec(agent).factory]
    cfg = TrainConfig(
        agent=agent, episodes=1, seeds=(0,), tasks_per_episode=8, eval_every=0, settings=settings
    )
    recs = train_seed(cfg, 0, progress=False)["records"]
    assert len(recs) == 1 and np.isfinite(recs[0]["learn_stat"])
    parts = np.asarray(recs[0]["extras"]["efe_parts"])
    assert parts.shape == (8, 5) and np.isfinite(parts).all()
    if dict(learner_spec(agent).preset).get("info_gain_weight") == 0:
        if structured:  # efe = -pragmatic - discount * future, no information gain
            assert np.all(parts[:, 2] == 0.0)
            np.testing.assert_allclose(parts[:, 0], -parts[:, 1] - 0.5 * parts[:, 3], rtol=1e-9)
        else:
            np.testing.assert_allclose(parts[:, 0], -parts[:, 1], rtol=1e-6)  # efe = -pragmatic


def _train(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _cli("train", "--episodes", "1", "--seeds", "0", "--references", "", "--out", str(out),
             *TINY, *extra),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize(
    "extra,needle",
    [
        (("--agent", "nope"), "--agent"),
        (("--scenario", "mars"), "scenario"),
        (("--references", "cloud,psychic"), "--references"),
        (("--set", "warp_speed=9"), "warp_speed"),
        (("--set", "candidates=lots"), "candidates"),
        (("--episodes", "0"), "--episodes"),
        (("--tmax", "-1"), "t_max"),
        (("--seeds", "0,x"), "seed"),
        (("--device", "tpu"), "device"),
    ],
)
def test_bad_options_are_one_line_errors_before_any_work(
    tmp_path: Path, extra: tuple[str, ...], needle: str
):
    proc = _train(tmp_path / "run", *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_run_folder_guards(tmp_path: Path):
    out = tmp_path / "run"
    assert _train(out).returncode == 0
    # Other settings into the same folder: refused, nothing lost.
    proc = _train(out, "--tmax", "9")
    assert proc.returncode == 2 and "t_max" in proc.stderr and "Traceback" not in proc.stderr
    # More episodes continue the run; fewer than it holds are refused.
    proc = subprocess.run(
        _cli("train", "--episodes", "2", "--seeds", "0", "--references", "", "--out", str(out),
             *TINY),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    tree = xr.open_datatree(out / "results.nc", engine="h5netcdf")
    assert tree.attrs["episodes"] == 2 and tree["episodes"].sizes["episode"] == 2
    assert '"episodes": 2' in tree.attrs["config"]
    proc = _train(out)
    assert proc.returncode == 2 and "holds 2 episodes" in proc.stderr
    # A file as --out, a truncated checkpoint: one line each, exit 2.
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    proc = _train(afile)
    assert proc.returncode == 2 and "is a file" in proc.stderr
    ckpt = out / "checkpoints" / "seed0.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    proc = _train(out, "--episodes", "3")
    assert proc.returncode == 2 and "cannot be read" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
