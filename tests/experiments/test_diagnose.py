"""Smoke and determinism tests of ``aif diagnose`` (run as a subprocess, as a user would)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from experiments.diagnose import run

REPO = Path(__file__).resolve().parents[2]


def test_cli_diagnose_writes_the_datatree_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "diag"
    cmd = [
        sys.executable,
        "-m",
        "experiments.cli",
        "diagnose",
        "--model",
        "random",
        "--out-dir",
        str(out),
        "--seed",
        "0",
        "--steps",
        "30",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in (
        "diagnostics.nc",
        "vfe_trace.png",
        "vfe_decomposition.png",
        "efe_decomposition.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*.tmp"))  # the atomic write left no temporary file
    with xr.open_datatree(out / "diagnostics.nc") as tree:
        assert {
            "beliefs",
            "free_energy",
            "observed_data",
            "posterior",
            "expected_free_energy",
            "expected_free_energy_mc",
        } <= set(tree.children)
        assert tree.attrs["model"] == "random"
        terms = tree["free_energy"]["vfe_terms"]
        assert terms.dims == ("step", "term")
        vfe, acc, comp = (terms.sel(term=t).values for t in ("vfe", "accuracy", "complexity"))
        assert np.allclose(vfe, comp - acc)
    assert "free-energy diagnostics" in proc.stdout


@pytest.mark.filterwarnings("ignore::aif.inference.ConvergenceWarning")
def test_diagnostics_are_reproducible_for_a_seed() -> None:
    a, b = run("gaussian", seed=2, steps=40), run("gaussian", seed=2, steps=40)
    xr.testing.assert_equal(a.tree["free_energy"].to_dataset(), b.tree["free_energy"].to_dataset())
    xr.testing.assert_equal(
        a.tree["expected_free_energy_mc"].to_dataset(),
        b.tree["expected_free_energy_mc"].to_dataset(),
    )
    c = run("gaussian", seed=3, steps=40)
    assert not np.array_equal(
        a.tree["observed_data"]["obs"].values, c.tree["observed_data"]["obs"].values
    )


def test_unknown_models_are_refused() -> None:
    with pytest.raises(ValueError, match="model='nope'"):
        run("nope", seed=0, steps=10)
