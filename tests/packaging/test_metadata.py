"""Package metadata: one version everywhere, honest dependency bounds, the torch source in make."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import aif

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
CITATION = (REPO / "CITATION.cff").read_text(encoding="utf-8")


def cff_field(name: str) -> str:
    """The value of a top-level ``name:`` line of CITATION.cff, unquoted."""
    match = re.search(rf"^{re.escape(name)}:\s*(.+?)\s*$", CITATION, flags=re.MULTILINE)
    assert match, f"CITATION.cff has no top-level {name!r}"
    return match.group(1).strip("\"'")


def test_version_is_single_sourced() -> None:
    version = PROJECT["version"]
    assert Version(version)  # a valid PEP 440 version
    assert aif.__version__ == version, "reinstall (make) after changing pyproject's version"
    assert importlib.metadata.version("aif-offload") == version
    assert cff_field("version") == version, "CITATION.cff and pyproject.toml disagree"


def test_cli_prints_the_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"aif-offload {PROJECT['version']}"


def test_citation_describes_the_toolkit_and_its_papers() -> None:
    assert cff_field("cff-version") == "1.2.0"
    assert cff_field("type") == "software"
    assert cff_field("license") == PROJECT["license"] == "MIT"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cff_field("date-released"))
    assert cff_field("title").startswith("aif-offload")
    references = CITATION.split("\nreferences:", 1)[1]
    for doi in ("10.1109/JIOT.2025.3588832", "10.1109/TMC.2024.3415661"):
        assert re.search(rf"^\s+doi:\s*{re.escape(doi)}\s*$", references, flags=re.MULTILINE), doi


def test_python_classifiers_match_requires_python() -> None:
    minimum = Version(re.fullmatch(r">=\s*(\S+)", PROJECT["requires-python"]).group(1))
    versions = sorted(
        Version(c.rsplit("::", 1)[1].strip())
        for c in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert versions, "no 'Programming Language :: Python :: 3.x' classifier"
    assert versions[0] == minimum
    assert [v.minor for v in versions] == list(range(versions[0].minor, versions[-1].minor + 1))
    assert (
        f"Programming Language :: Python :: {sys.version_info.major}.{sys.version_info.minor}"
        in (PROJECT["classifiers"])
    ), "the Python running the tests is not among the classifiers"


def all_requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in PROJECT["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("aif-offload")]
    return reqs


def test_pre_1_0_dependencies_have_an_upper_bound() -> None:
    # Before 1.0 any release may break the API, so such a range must say where it stops.
    unbounded = []
    for req in all_requirements():
        lower = [Version(s.version) for s in req.specifier if s.operator in (">=", ">", "~=")]
        pinned = any(s.operator in ("==", "===") for s in req.specifier)
        upper = any(s.operator in ("<", "<=", "~=") for s in req.specifier)
        if lower and max(lower).major == 0 and not (pinned or upper):
            unbounded.append(str(req))
    assert not unbounded, f"pre-1.0 requirements without an upper bound: {unbounded}"


def test_graphviz_and_pymdp_are_extras() -> None:
    extras = PROJECT["optional-dependencies"]
    assert {Requirement(r).name for r in extras["graphviz"]} == {"graphviz"}
    # pymdp, and numpyro for fitting agents through pymdp (benchmarks/fit_vs_numpyro.py).
    assert {Requirement(r).name for r in extras["pymdp"]} == {"inferactively-pymdp", "numpyro"}
    assert "mkdocs" in {Requirement(r).name for r in extras["docs"]}
    # make installs only the dev extra; make docs and the docs tests need the docs tools in it.
    dev = {str(Requirement(r)) for r in extras["dev"]}
    assert any(r.startswith("aif-offload[") and "docs" in r and "test" in r for r in dev), dev


def make_dry_run(*variables: str) -> str:
    done = subprocess.run(
        ["make", "--dry-run", "--always-make", "-C", str(REPO), *variables, ".venv/.installed"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_takes_the_torch_source_as_variables() -> None:
    default = make_dry_run()
    torch_lines = [line for line in default.splitlines() if '"torch==2.13.0"' in line]
    assert torch_lines, default
    # By default nothing names an index: pip's configured one serves the CPU build here.
    assert "--index-url" not in default and "download.pytorch.org" not in default

    cpu = "https://download.pytorch.org/whl/cpu"
    switched = make_dry_run(f"TORCH_INDEX={cpu}", "TORCH=torch==2.13.0")
    first = next(line for line in switched.splitlines() if "torch==2.13.0" in line)
    assert f"--index-url {cpu}" in first
    # Only the torch step uses that index; the toolkit and its dependencies come from the default.
    assert switched.count("--index-url") == 1
