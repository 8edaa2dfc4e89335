"""One CLI style: every command answers bad input with one line, exit code 2 and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def aif(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def _files(tmp: Path) -> dict[str, str]:
    bad_json = tmp / "bad.json"
    bad_json.write_text("{not json")
    bad_value = tmp / "bad_value.json"
    from environments import ScenarioConfig

    data = json.loads(ScenarioConfig.preset("paper").model_dump_json())
    data["t_max"] = -1
    bad_value.write_text(json.dumps(data))
    not_results = tmp / "not_results.nc"
    not_results.write_text("plain text")
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return {
        "bad_json": str(bad_json),
        "bad_value": str(bad_value),
        "not_results": str(not_results),
        "a_file": str(a_file),
        "missing": str(tmp / "missing.nc"),
        "dir": str(tmp),
    }


BAD_INPUTS = [
    # (arguments, a word the one-line message must contain)
    (["nope"], "nope"),
    (["simulate", "--policy", "psychic"], "--policy"),
    (["simulate", "--scenario", "mars"], "--scenario"),
    (["simulate", "--tmax", "-1"], "--tmax"),
    (["simulate", "--tmax", "soon"], "--tmax"),
    (["simulate", "--episodes", "0"], "--episodes"),
    (["simulate", "--out", "{dir}"], "--out"),
    (["simulate", "--scenario-file", "{bad_json}"], "bad.json"),
    (["simulate", "--scenario-file", "{bad_value}"], "t_max"),
    (["simulate", "--scenario-file", "{missing}"], "missing.nc"),
    (["train", "--agent", "nope"], "--agent"),
    (["train", "--scenario", "mars"], "scenario"),
    (["train", "--references", "psychic"], "--references"),
    (["train", "--set", "warp=9"], "warp"),
    (["train", "--episodes", "zero"], "--episodes"),
    (["train", "--out", "{a_file}"], "--out"),
    (["train", "--device", "tpu"], "device"),
    (["train", "--scenario-file", "{bad_value}"], "t_max"),
    (["report", "{missing}"], "missing.nc"),
    (["report", "{not_results}"], "not_results.nc"),
    (["report"], "results"),
    (["plot", "{missing}"], "missing.nc"),
    (["diagnose", "--model", "nope"], "--model"),
    (["diagnose", "--run", "{dir}"], "--run"),
    (["diagnose", "--out-dir", "{a_file}"], "--out-dir"),
    (["diagnose", "--steps", "0"], "--steps"),
]


@pytest.mark.parametrize(("args", "needle"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_no_traceback(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    files = _files(tmp_path)
    filled = [a.format(**files) for a in args]
    proc = aif(*filled, cwd=tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("aif: error: ")
    assert needle.format(**files) in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_version_and_agents_list() -> None:
    from aif import __version__

    proc = aif("--version")
    assert proc.returncode == 0 and __version__ in proc.stdout
    proc = aif("agents")
    assert proc.returncode == 0
    names = [line.split()[0] for line in proc.stdout.strip().splitlines()]
    assert {"aif", "aif-paper", "aif-no-info-gain"} <= set(names)


def test_top_level_help_lists_every_command() -> None:
    proc = aif("--help")
    assert proc.returncode == 0
    for command in ("simulate", "train", "agents", "report", "plot", "diagnose"):
        assert command in proc.stdout, command


def test_report_never_truncates_names_when_piped(tmp_path: Path) -> None:
    from experiments.runconfig import TrainConfig
    from experiments.train import run_training

    cfg = TrainConfig(
        agent="aif-no-info-gain",
        episodes=1,
        seeds=(0,),
        tasks_per_episode=10,
        eval_every=0,
        settings=(("fit_steps", 3), ("futures", 2)),
    )
    run_training(cfg, tmp_path / "run", references=["edge_least_loaded"], progress=False)
    proc = aif("report", str(tmp_path / "run" / "results.nc"), "--window", "1")
    assert proc.returncode == 0, proc.stderr
    assert "aif-no-info-gain" in proc.stdout and "edge_least_loaded" in proc.stdout


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["simulate", "--policy", "cloud,random", "--episodes", "2"], "episodes: 4/4"),
        (
            ["diagnose", "--model", "random", "--steps", "5", "--out-dir", "{dir}"],
            "diagnose random: 6/6",
        ),
    ],
)
def test_progress_is_plain_lines_off_a_terminal(tmp_path: Path, args: list[str], line: str) -> None:
    proc = aif(*[a.format(dir=tmp_path / "out") for a in args])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert line in proc.stderr and "\x1b[" not in proc.stderr  # no redrawn bar, no escapes
    quiet = aif(*[a.format(dir=tmp_path / "quiet") for a in args], "--no-progress")
    assert quiet.returncode == 0 and line not in quiet.stderr
