"""`aif train` with the deep-RL baselines: smoke runs, determinism, resumption after SIGKILL, bad options."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from experiments.runconfig import TrainConfig
from experiments.train import train_seed
from learners import learner_spec

DRL = ("rainbow", "ppo", "sac")
#: Two envs per round, and a PPO rollout that divides the 10-task episodes.
TINY_SETTINGS = {"rainbow": {"n_envs": 2}, "sac": {"n_envs": 2}, "ppo": {"n_envs": 2, "n_steps": 5}}


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def _tiny_args(agent: str) -> list[str]:
    sets = [a for k, v in TINY_SETTINGS[agent].items() for a in ("--set", f"{k}={v}")]
    return ["--agent", agent, "--tasks", "10", "--eval-episodes", "1", "--no-progress", *sets]


def _subprocess_env() -> dict[str, str]:
    # tianshou JIT-compiles its n-step and replay helpers with numba in every new process
    # (seconds of CPU, no disk cache); the tiny subprocess runs use the same functions in
    # Python. The compiled path runs in this process's tests and in every real run.
    return {**os.environ, "NUMBA_DISABLE_JIT": "1"}


@pytest.mark.parametrize("agent", DRL)
def test_tiny_training_run_writes_results_with_references(agent: str, tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.run(
        _cli("train", "--episodes", "2", "--seeds", "0", "--eval-every", "2",
             "--references", "random,cloud", "--out", str(out), *_tiny_args(agent)),
        capture_output=True, text=True, timeout=300, env=_subprocess_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Held-out" in proc.stdout and agent in proc.stdout
    tree = xr.open_datatree(out / "results.nc", engine="h5netcdf")
    assert tree.attrs["family"] == "deep-rl" and tree.attrs["agent"] == agent
    ep = tree["episodes"].to_dataset()
    assert dict(ep.sizes) == {"seed": 1, "episode": 2}
    assert ((ep["completion_rate"] >= 0) & (ep["completion_rate"] <= 1)).all()
    assert (ep["median_decision_ms"] > 0).all()
    assert list(tree["evaluation"]["after_episode"].values) == [0, 2]
    servers = tree["decisions"]["server"].values
    assert servers.shape == (1, 2, 10) and ((servers >= 0) & (servers < 5)).all()
    assert list(tree["references_eval"]["policy"].values) == ["random", "cloud"]


def _config(agent: str, **kw) -> TrainConfig:
    return TrainConfig(
        agent=agent,
        episodes=4,
        seeds=(0,),
        tasks_per_episode=10,
        eval_every=2,
        eval_episodes=1,
        settings=tuple(TINY_SETTINGS[agent].items()),
        **kw,
    )


def _numbers(result: dict) -> tuple:
    records = result["records"]
    evals = {p: [(e["metrics"], e["server"]) for e in v] for p, v in result["evals"].items()}
    return (
        [r["metrics"] for r in records],
        [(r["server"], r["shares"], r["learn_stat"]) for r in records],
        evals,
    )


@pytest.mark.parametrize("agent", DRL)
def test_same_seed_same_numbers(agent: str):
    torch.manual_seed(123)  # global state must not matter
    a = train_seed(_config(agent), 0)
    torch.manual_seed(456)
    np.random.seed(7)  # noqa: NPY002 (the libraries' global generator must not matter either)
    b = train_seed(_config(agent), 0)
    # repr compares NaN (an episode without a completed task) equal to NaN.
    assert repr(_numbers(a)) == repr(_numbers(b))
    c = train_seed(_config(agent), 1)
    assert repr(_numbers(c)) != repr(_numbers(a))


def test_sigkill_mid_run_then_resume_gives_identical_results(assert_sigkill_resume_identical):
    args = ["train", "--agent", "ppo", "--episodes", "10", "--seeds", "0", "--tasks", "40",
            "--eval-every", "2", "--eval-episodes", "1", "--references", "", "--no-progress",
            "--set", "n_envs=1", "--set", "n_steps=10"]  # fmt: skip
    assert_sigkill_resume_identical(args, 10, ["server", "completed", "shares", "reward"])


@pytest.mark.parametrize(
    "extra,needle",
    [
        (("--set", "n_envs=3"), "n_envs=3"),
        (("--set", "warp_speed=9"), "warp_speed"),
        (("--set", "learning_rate=fast"), "learning_rate"),
        (("--set", "n_steps=3"), "episode length 10"),
    ],
)
def test_bad_settings_are_one_line_errors_before_any_work(
    tmp_path: Path, extra: tuple[str, ...], needle: str
):
    proc = subprocess.run(
        _cli("train", "--episodes", "2", "--seeds", "0", "--eval-every", "2", "--references", "",
             "--out", str(tmp_path / "run"), *_tiny_args("ppo"), *extra),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_registered_as_deep_rl_and_libraries_load_only_when_built():
    code = (
        "import sys, experiments.cli, learners as l; "
        "print(sorted(n for n in l.learner_names() if l.learner_spec(n).family == 'deep-rl')); "
        "print(any(m.split('.')[0] in ('tianshou', 'stable_baselines3', 'sb3_contrib') "
        "for m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = sorted([*DRL, *(f"{a}-informed" for a in DRL)])
    assert proc.stdout.split("\n")[:2] == [str(expected), "False"]
    assert all(learner_spec(a).family == "deep-rl" for a in DRL)
