"""`aif simulate` end to end (subprocess) and the evaluate_policy API."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from baselines import POLICY_NAMES
from experiments.simulate import evaluate_policy, results_to_dataset, write_netcdf_atomic


def aif_command() -> list[str]:
    exe = Path(sys.executable).with_name("aif")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("aif")
    return [found] if found else [sys.executable, "-m", "experiments.cli"]


@pytest.mark.slow
def test_simulate_cli_prints_table_and_writes_netcdf(tmp_path: Path) -> None:
    out = tmp_path / "sim.nc"
    cmd = [
        *aif_command(), "simulate", "--policy", "all", "--scenario", "paper", "--tmax", "15",
        "--episodes", "2", "--seed", "0", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("cloud", "edge_nearest", "greedy", "random", "lookahead", "completion rate"):
        assert name in proc.stdout
    ds = xr.open_dataset(out)
    assert ds.sizes["policy"] == len(POLICY_NAMES) and ds.sizes["episode"] == 2
    assert float(ds["completion_rate"].sel(policy="lookahead").mean()) > float(
        ds["completion_rate"].sel(policy="random").mean()
    )
    ds.close()


def test_evaluate_policy_is_deterministic_and_typed() -> None:
    a = evaluate_policy("greedy", "paper", episodes=2, seed=3)
    b = evaluate_policy("greedy", "paper", episodes=2, seed=3)
    assert a.seeds == [3, 4] and a.scenario == "paper"
    np.testing.assert_array_equal(a.values("total_reward"), b.values("total_reward"))
    assert 0.0 <= a.mean("completion_rate") <= 1.0
    short = evaluate_policy("cloud", "paper", episodes=1, seed=0, t_max=2.0)
    assert short.t_max == 2.0 and short.mean("completion_rate") == 0.0
    with pytest.raises(ValueError, match="episodes"):
        evaluate_policy("cloud", "paper", episodes=0)


def test_netcdf_write_is_atomic(tmp_path: Path) -> None:
    ds = results_to_dataset([evaluate_policy("cloud", "paper", episodes=1, seed=0)])
    path = tmp_path / "sub" / "r.nc"
    write_netcdf_atomic(ds, path)
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    back = xr.open_dataset(path)
    np.testing.assert_allclose(back["completion_rate"].values, ds["completion_rate"].values)
    back.close()
