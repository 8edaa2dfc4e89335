"""One CLI style: every command answers bad input with one line, exit code 2 and no traceback,
before any work; and the checks behind it (writable outputs, readable result files, progress)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.atomic import check_writable, write_atomic
from experiments.progress import ProgressReporter
from experiments.report import ResultsFileError, check_readable


def aif(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def small_results(path: Path) -> Path:
    """A small netCDF file shaped like a training result (an /episodes group, string labels)."""
    import numpy as np
    import xarray as xr

    ds = xr.Dataset(
        {"completion_rate": (("seed", "episode"), np.zeros((1, 3)))},
        coords={"seed": [0], "episode": np.arange(3), "policy": ["cloud", "edge_first"]},
    )
    tree = xr.DataTree(xr.Dataset(attrs={"agent": "x"}), children={"episodes": xr.DataTree(ds)})
    tree.to_netcdf(path, engine="h5netcdf")
    return path


def damaged_results(path: Path) -> Path:
    """:func:`small_results` with 16 zeroed bytes in its global heap (where its strings are): the
    first heap object's header. Opening it sends the HDF5 library into a loop that ignores Ctrl-C."""
    data = bytearray(small_results(path).read_bytes())
    heap = data.find(b"GCOL")
    assert heap > 0, "no global heap: the strings are stored differently"
    data[heap + 16 : heap + 32] = bytes(16)
    path.write_bytes(bytes(data))
    return path


def _files(tmp: Path) -> dict[str, str]:
    import numpy as np
    import xarray as xr

    bad_json = tmp / "bad.json"
    bad_json.write_text("{not json")
    bad_value = tmp / "bad_value.json"
    from environments import ScenarioConfig

    preset = ScenarioConfig.preset("paper").model_dump_json()
    data = json.loads(preset)
    data["t_max"] = -1
    bad_value.write_text(json.dumps(data))
    bad_profile = tmp / "bad_profile.json"
    data = json.loads(preset)
    data["servers"][1]["profile"] = "llama-h100"
    bad_profile.write_text(json.dumps(data))
    infinite = tmp / "infinite.json"
    data = json.loads(preset)
    data["servers"][2]["x_m"] = float("inf")
    infinite.write_text(json.dumps(data))  # json writes Infinity, as a hand-written file may
    not_results = tmp / "not_results.nc"
    not_results.write_text("plain text")
    not_training = tmp / "not_training.nc"
    xr.Dataset({"x": ("i", np.arange(3.0))}).to_netcdf(not_training, engine="h5netcdf")
    truncated = tmp / "truncated.nc"
    truncated.write_bytes(small_results(tmp / "whole.nc").read_bytes()[:3000])
    garbage = tmp / "garbage.nc"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return {
        "bad_json": str(bad_json),
        "bad_value": str(bad_value),
        "bad_profile": str(bad_profile),
        "infinite": str(infinite),
        "not_results": str(not_results),
        "not_training": str(not_training),
        "truncated": str(truncated),
        "garbage": str(garbage),
        "damaged": str(damaged_results(tmp / "damaged.nc")),
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
    (["simulate", "--seed", "-1"], "--seed"),
    (["simulate", "--scenario-file", "{bad_profile}"], "servers.1.profile"),
    (["simulate", "--scenario-file", "{infinite}"], "servers.2.x_m"),
    (["simulate", "--out", "/proc/x.nc"], "--out /proc/x.nc"),
    (["simulate", "--out", "{a_file}/metrics.nc"], "--out"),
    (["train", "--agent", "nope"], "--agent"),
    (["train", "--scenario", "mars"], "scenario"),
    (["train", "--references", "psychic"], "--references"),
    (["train", "--set", "warp=9"], "warp"),
    (["train", "--episodes", "zero"], "--episodes"),
    (["train", "--out", "{a_file}"], "--out"),
    (["train", "--device", "tpu"], "device"),
    (["train", "--scenario-file", "{bad_value}"], "t_max"),
    (["train", "--scenario-file", "{infinite}"], "x_m"),
    (["train", "--seeds", "-1"], "--seeds"),
    (["train", "--seeds", "0-99999999"], "--seeds"),
    (["train", "--seeds", "4-0"], "--seeds"),
    (["train", "--out", "/proc/foo"], "--out /proc/foo"),
    (["report", "{missing}"], "missing.nc"),
    (["report", "{not_results}"], "not_results.nc"),
    (["report"], "results"),
    (["report", "{dir}"], "is a folder"),
    (["report", "{truncated}"], "truncated.nc"),
    (["report", "{garbage}"], "garbage.nc"),
    pytest.param(["report", "{damaged}"], "damaged", marks=pytest.mark.slow),
    (["plot", "{missing}"], "missing.nc"),
    (["plot", "{garbage}"], "garbage.nc"),
    (["plot", "{truncated}"], "truncated.nc"),
    (["plot", "{not_training}"], "not_training.nc"),
    (["plot", "{not_results}"], "not_results.nc"),
    (["plot", "{dir}"], "is a folder"),
    (["plot", "{not_results}", "--out", "/proc/fig.png"], "--out /proc/fig.png"),
    (["plot", "{not_results}", "--out", "{dir}"], "is a folder"),
    (["plot", "{not_results}", "--out", "fig.xyz"], ".xyz"),
    (["plot", "{not_results}", "--out", "fig"], "--out fig"),
    (["diagnose", "--model", "nope"], "--model"),
    (["diagnose", "--run", "{dir}"], "--run"),
    (["diagnose", "--out-dir", "{a_file}"], "--out-dir"),
    (["diagnose", "--steps", "0"], "--steps"),
    (["diagnose", "--seed", "-1"], "--seed"),
    (["diagnose", "--out-dir", "/proc/diagnose"], "--out-dir"),
    (["reproduce", "--profile", "huge"], "--profile"),
    (["reproduce", "--figure", "7"], "--figure"),
    (["reproduce", "--workers", "0"], "--workers"),
    (["reproduce", "--out", "{a_file}"], "--out"),
    (["reproduce", "--out", "/proc/reproduce"], "--out"),
    (["reproduce", "--methods", "psychic"], "--methods"),
    (["reproduce", "--suite", "huge"], "--suite"),
    (["reproduce", "--suite", "fair-quick", "--out", "{a_file}"], "--out"),
    (["reproduce", "--suite", "fair-quick", "--docs", "{a_file}"], "--docs"),
    (["reproduce", "--suite", "fair-quick", "--workers", "0"], "--workers"),
    (["bound", "--seeds", "-1"], "--seeds"),
    (["bound", "--scenario", "mars"], "--scenario"),
    (["bound", "--tmax", "0"], "--tmax"),
    (["bound", "--tasks", "0"], "--tasks"),
    (["bound", "--dt", "0"], "--dt"),
    (["bound", "--scenario-file", "{bad_value}"], "t_max"),
]


def _case_id(case: object) -> str:
    args = case.values[0] if hasattr(case, "values") else case[0]  # type: ignore[index]
    return " ".join(args)


@pytest.mark.parametrize(("args", "needle"), BAD_INPUTS, ids=[_case_id(c) for c in BAD_INPUTS])
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
    for command in (
        "simulate",
        "train",
        "agents",
        "report",
        "plot",
        "diagnose",
        "bound",
        "scenarios",
    ):
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


#: Modules whose import takes seconds: a bad option is answered before any of them is loaded.
HEAVY = ("torch", "pyro", "distributed", "xarray", "matplotlib")

EARLY = [
    ["simulate", "--seed", "-1"],
    ["simulate", "--episodes", "0"],
    ["simulate", "--out", "/proc/x.nc"],
    ["train", "--seeds", "-1"],
    ["train", "--episodes", "0"],
    ["train", "--out", "/proc/foo"],
    ["diagnose", "--model", "nope"],
    ["diagnose", "--steps", "0"],
    ["diagnose", "--run", "/proc"],
    ["reproduce", "--profile", "huge"],
    ["reproduce", "--figure", "7"],
    ["reproduce", "--workers", "2", "--scheduler", "tcp://x:1"],
    ["reproduce", "--out", "/proc/reproduce"],
    ["reproduce", "--suite", "huge"],
    ["bound", "--seeds", "-1"],
    ["bound", "--tmax", "0"],
]


@pytest.mark.parametrize("args", EARLY, ids=[" ".join(a) for a in EARLY])
def test_bad_options_are_answered_before_heavy_imports(args: list[str]) -> None:
    script = (
        "import sys\n"
        "from experiments.cli import main\n"
        f"sys.argv = ['aif', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        f"    print(exit.code, sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["2", "[]"], (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("aif: error: --")


def test_option_lists_known_before_import_match_the_code() -> None:
    from experiments import cli
    from experiments.diagnose import MODELS
    from experiments.reproduce import FIGURES, PROFILES
    from experiments.reproduce.suite import SUITES

    assert cli.DIAGNOSE_MODELS == tuple(MODELS)
    assert cli.REPRODUCE_FIGURES == tuple(FIGURES)
    assert cli.REPRODUCE_PROFILES == tuple(PROFILES)
    assert cli.REPRODUCE_SUITES == tuple(SUITES)


def test_bound_prints_a_bound_per_seed_above_what_greedy_earns() -> None:
    from baselines import make_policy
    from environments import CloudEdgeOffloadEnv, ScenarioConfig

    proc = aif("bound", "--scenario", "paper", "--tasks", "8", "--seeds", "3,4", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    rows = {int(r.split()[0]): float(r.split()[1]) for r in proc.stdout.splitlines()
            if r.split() and r.split()[0].isdigit()}  # fmt: skip
    assert sorted(rows) == [3, 4] and "95% intervals" in proc.stdout
    env = CloudEdgeOffloadEnv(ScenarioConfig.preset("paper", tasks_per_episode=8))
    for seed, bound in rows.items():
        policy = make_policy("greedy")
        policy.reset(seed)
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, _, done, _, info = env.step(policy.act(env, obs))
            total += info["rg"]
        assert 0.0 < total <= bound + 1e-6


def test_scenarios_lists_every_preset() -> None:
    from environments import PRESETS

    proc = aif("scenarios")
    assert proc.returncode == 0, proc.stderr
    assert [line.split()[0] for line in proc.stdout.splitlines()] == list(PRESETS)


@pytest.mark.parametrize("command", [[], ["simulate"], ["train"], ["reproduce"]])
def test_help_shows_no_value_type_beside_flags(command: list[str]) -> None:
    proc = aif(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--help" in proc.stdout and "<bool>" not in proc.stdout
    if not command:
        assert "--version" in proc.stdout


def test_simulate_out_creates_missing_folders_as_its_help_says(tmp_path: Path) -> None:
    # The help is drawn in a box: read its words across the box's lines.
    help_text = " ".join(w for w in aif("simulate", "--help").stdout.split() if w != "│")
    assert "missing folders are created" in help_text
    target = tmp_path / "new" / "deeper" / "metrics.nc"
    proc = aif(
        "simulate", "--policy", "cloud", "--episodes", "1", "--no-progress", "--out", str(target)
    )
    assert proc.returncode == 0, proc.stderr
    import xarray as xr

    with xr.open_dataset(target, engine="h5netcdf") as ds:
        assert list(ds["policy"].values) == ["cloud"]


# ---------------------------------------------------------------------- the checks behind them
def test_check_writable_names_what_is_in_the_way(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    check_writable(tmp_path / "new" / "deeper" / "m.nc")  # folders to be created are fine
    check_writable(tmp_path / "run", folder=True)
    assert not (tmp_path / "new").exists() and not (tmp_path / "run").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]  # the probe is gone
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        check_writable(tmp_path)
    with pytest.raises(ValueError, match="is a file; give a folder"):
        check_writable(a_file, folder=True)
    with pytest.raises(ValueError, match=f": {a_file} is a file, not a folder"):
        check_writable(a_file / "m.nc")
    with pytest.raises(ValueError, match="cannot create a file in /proc"):
        check_writable(Path("/proc/x.nc"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is not a regular file"):
        check_writable(fifo)


def test_write_atomic_never_replaces_a_special_file_and_honours_the_umask(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        write_atomic(fifo, lambda tmp: Path(tmp).write_text("x"))
    out = write_atomic(tmp_path / "sub" / "f.txt", lambda tmp: Path(tmp).write_text("x"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.read_text() == "x"
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_check_readable_passes_a_whole_file_and_names_damage(tmp_path: Path) -> None:
    check_readable(small_results(tmp_path / "whole.nc"))
    garbage = tmp_path / "garbage.nc"
    garbage.write_bytes(b"\x89HDF" + bytes(2000))
    with pytest.raises(ResultsFileError, match="garbage.nc cannot be read as netCDF"):
        check_readable(garbage)
    damaged = damaged_results(tmp_path / "damaged.nc")
    start = time.monotonic()
    with pytest.raises(ResultsFileError, match="damaged.nc is damaged: .* made no progress"):
        check_readable(damaged, stall_s=1.0)
    assert time.monotonic() - start < 30


def test_progress_lines_come_at_least_every_interval() -> None:
    stream = io.StringIO()
    with ProgressReporter(1_000_000, "episodes", stream=stream, interval=0.0) as bar:
        for _ in range(3):
            bar.advance(1)
    assert stream.getvalue().splitlines()[-1].startswith("episodes: 3/1000000")
    assert len(stream.getvalue().splitlines()) == 3
    stream = io.StringIO()
    with ProgressReporter(1_000_000, "episodes", stream=stream, interval=3600.0) as bar:
        for _ in range(3):
            bar.advance(1)
    assert len(stream.getvalue().splitlines()) == 1  # the first unit, then a tenth of the work


def test_simulate_fits_100_columns_with_a_legend_of_policies_and_columns(tmp_path: Path) -> None:
    from baselines import policy_names
    from environments import ScenarioConfig

    data = json.loads(ScenarioConfig.preset("paper").model_dump_json())
    data["tasks_per_episode"] = 4  # the look-aheads in a second
    scenario = tmp_path / "tiny.json"
    scenario.write_text(json.dumps(data))
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "simulate", "--scenario-file", str(scenario)]
        + ["--episodes", "2", "--policy", "all"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    # the note on the look-aheads, printed before the run, fits the same width
    start = proc.stderr.index("note:")
    note = proc.stderr[start : proc.stderr.index("time", start) + 4].splitlines()
    assert max(len(line) for line in note) <= 100, note
    legend = lines[lines.index("policies:") + 1 :]
    for name in policy_names():
        assert any(line.split()[:1] == [name] and len(line.split()) > 3 for line in legend), name
    for header in ("completion", "latency (s)", "pass@100", "reward", "cloud share"):
        assert any(line.strip().startswith(header + " ") for line in legend), header
    assert "95% bootstrap interval over episodes" in proc.stdout
    assert (
        "lookahead and lookahead_guidance: look-aheads with full knowledge, not bounds"
        in proc.stdout
    )
    assert "not bounds (see aif bound);\nthey took" in proc.stdout  # unwrapped
    assert "lookahead and lookahead_guidance (look-aheads" in proc.stderr.splitlines()[0]
