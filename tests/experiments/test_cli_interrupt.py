"""Ctrl-C during long commands: one line, exit code 130, no traceback, nothing finished lost; and
huge budgets that start at once instead of building their schedule up front."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

#: Learner settings that make a training round take well under a second.
TINY_AIF = ["--agent", "aif-no-info-gain", "--set", "fit_steps=3", "--set", "futures=2"]


class Run:
    """`aif ARGS` in a session of its own, its stderr collected line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "experiments.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a process group, as a terminal's Ctrl-C reaches it
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, ready: Callable[[], bool], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, "".join(self.lines)
            time.sleep(0.05)

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def ctrl_c(self) -> tuple[int, float, str]:
        """Send SIGINT to the whole group; the exit code, seconds to exit, and all of stderr."""
        start = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=120)
        seconds = time.monotonic() - start
        self._reader.join(10)
        assert self.proc.stdout is not None
        return self.proc.returncode, seconds, "".join(self.lines) + self.proc.stdout.read()


def _assert_one_line(output: str, *needles: str) -> None:
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    said = [line for line in output.splitlines() if line.startswith("aif: interrupted")]
    assert len(said) == 1, output
    for needle in needles:
        assert needle in said[0], said[0]


def test_simulate_with_a_huge_budget_starts_at_once_and_stops_on_ctrl_c() -> None:
    run = Run("simulate", "--policy", "cloud", "--episodes", "1000000000")
    run.wait_for(lambda: any("episodes: " in line for line in run.lines), timeout=120)
    assert run.rss_mib() < 1500  # no list of a billion seeds
    code, seconds, output = run.ctrl_c()
    assert code == 130, output
    _assert_one_line(output, "nothing was written")
    assert seconds < 20


def test_train_with_a_huge_budget_keeps_its_checkpoint_on_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run = Run(
        "train", *TINY_AIF, "--episodes", "1000000000", "--seeds", "0", "--tasks", "5",
        "--eval-every", "10", "--eval-episodes", "1", "--references", "", "--out", str(out),
    )  # fmt: skip
    ckpt = out / "checkpoints" / "seed0.pt"
    run.wait_for(ckpt.exists)
    run.wait_for(lambda: any("seed 0: " in line for line in run.lines), timeout=60)
    assert run.rss_mib() < 3000  # no list of a hundred million evaluation points
    code, seconds, output = run.ctrl_c()
    assert code == 130, output
    _assert_one_line(output, "checkpoints", "run the same command again")
    assert seconds < 20
    state = torch.load(ckpt, weights_only=False)
    assert len(state["records"]) >= 1 and 0 in state["evals"]
    assert not (out / "results.nc").exists()


def test_train_shows_the_progress_of_the_reference_policies(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "train", *TINY_AIF, "--episodes", "1"]
        + ["--seeds", "0", "--tasks", "5", "--eval-every", "1", "--eval-episodes", "1"]
        + ["--references", "cloud,random", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    # 2 policies x 1 seed x (1 training episode + 1 held-out episode)
    assert "reference policies: 4/4" in proc.stderr


@pytest.mark.slow
def test_train_on_a_local_cluster_stops_on_ctrl_c_without_worker_tracebacks(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    run = Run(
        "train", *TINY_AIF, "--episodes", "1000", "--seeds", "0,1", "--workers", "2",
        "--tasks", "5", "--eval-every", "0", "--references", "", "--out", str(out),
    )  # fmt: skip
    run.wait_for((out / "checkpoints" / "seed0.pt").exists)
    code, seconds, output = run.ctrl_c()
    assert code == 130, output
    _assert_one_line(output, "checkpoints")
    assert seconds < 30


@pytest.mark.slow
def test_diagnose_stops_on_ctrl_c(tmp_path: Path) -> None:
    run = Run("diagnose", "--model", "gaussian", "--steps", "100000", "--out-dir", str(tmp_path))
    run.wait_for(lambda: any("diagnose gaussian: 1/" in line for line in run.lines))
    code, seconds, output = run.ctrl_c()
    assert code == 130, output
    _assert_one_line(output, "written atomically")
    assert seconds < 20


@pytest.mark.slow
def test_reproduce_keeps_finished_cells_on_ctrl_c(tmp_path: Path) -> None:
    out = tmp_path / "repro"
    run = Run(
        "reproduce", "--profile", "quick", "--figure", "3", "--methods", "aif",
        "--workers", "1", "--out", str(out),
    )  # fmt: skip
    cells = out / "cells"
    run.wait_for(lambda: cells.is_dir() and any(cells.rglob("*.nc")), timeout=600)
    finished = sorted(p.relative_to(cells) for p in cells.rglob("*.nc"))
    code, seconds, output = run.ctrl_c()
    assert code == 130, output
    _assert_one_line(output, "finished cells", "run the same command again")
    assert seconds < 30
    assert set(finished) <= {p.relative_to(cells) for p in cells.rglob("*.nc")}
