"""Fixtures shared by the experiment tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


@pytest.fixture
def assert_sigkill_resume_identical(tmp_path: Path) -> Callable[[list[str], int, list[str]], None]:
    """Check that `aif train ARGS` killed by SIGKILL after its first checkpoint, then run again
    into the same folder, ends with the results of an uninterrupted run.

    Call it with the command's arguments (without ``--out``), the run's episodes, and the
    per-decision variables that must match exactly.
    """

    def check(args: list[str], episodes: int, decision_vars: list[str]) -> None:
        ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
        proc = subprocess.run(
            _cli(*args, "--out", str(ref_dir)), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        child = subprocess.Popen(
            _cli(*args, "--out", str(run_dir)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ckpt = run_dir / "checkpoints" / "seed0.pt"
        deadline = time.time() + 240
        while not ckpt.exists() and time.time() < deadline and child.poll() is None:
            time.sleep(0.02)
        assert child.poll() is None, "the run ended before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        done = len(torch.load(ckpt, weights_only=False)["records"])
        assert 1 <= done < episodes
        assert not (run_dir / "results.nc").exists()
        proc = subprocess.run(
            _cli(*args, "--out", str(run_dir)), capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stderr
        a = xr.open_datatree(ref_dir / "results.nc", engine="h5netcdf")
        b = xr.open_datatree(run_dir / "results.nc", engine="h5netcdf")
        timing = ["median_decision_ms"]  # wall-clock, the one thing allowed to differ
        xr.testing.assert_identical(
            a["episodes"].to_dataset().drop_vars(timing),
            b["episodes"].to_dataset().drop_vars(timing),
        )
        xr.testing.assert_identical(a["evaluation"].to_dataset(), b["evaluation"].to_dataset())
        for var in decision_vars:
            np.testing.assert_array_equal(a["decisions"][var].values, b["decisions"][var].values)

    return check
