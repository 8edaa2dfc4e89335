"""The wheel, installed outside the repository, runs the README's Python example."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
PACKAGES = ("aif", "generative_models", "environments", "baselines", "experiments")
# What a source tree holds that is not the project (built or installed things, caches).
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "site", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "runs"
)

# Runs the example, then reports where each package was imported from and the version it sees.
DRIVER = """
import sys
from pathlib import Path

code = Path(sys.argv[1]).read_text(encoding="utf-8")
exec(compile(code, "README.md (Python in five lines)", "exec"), {"__name__": "__main__"})

import importlib
import importlib.metadata

for name in PACKAGES:
    print("FROM", name, importlib.import_module(name).__file__)
import aif

print("VERSION", aif.__version__, importlib.metadata.version("aif-offload"))
"""


def readme_example(text: str) -> str:
    """The first ```python block under the README's "Python in five lines" heading."""
    _, found, section = text.partition("\n## Python in five lines\n")
    assert found, "README.md has no '## Python in five lines' section"
    section = section.split("\n## ", 1)[0]
    match = re.search(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)
    assert match, "no ```python block under 'Python in five lines'"
    return match.group(1)


def test_readme_example_is_extracted() -> None:
    text = "# t\n```python\nno = 1\n```\n## Python in five lines\n\ntext\n```python\nyes = 2\n```\n"
    assert readme_example(text) == "yes = 2\n"
    with pytest.raises(AssertionError):
        readme_example("## Elsewhere\n```python\nx = 1\n```\n")


@pytest.mark.slow
def test_wheel_runs_the_readme_example_outside_the_repository(tmp_path: Path) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    # Build from a copy, so that the build leaves nothing in the working tree.
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    dist, target, outside = tmp_path / "dist", tmp_path / "installed", tmp_path / "elsewhere"
    outside.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("aif_offload-*.whl")
    assert wheel.name.startswith(f"aif_offload-{version}-py3-none-any")
    # The dependencies (torch, pyro, ...) come from this interpreter's environment; the toolkit
    # itself only from the wheel.
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--no-compile", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    example = outside / "example.py"
    example.write_text(readme_example(README.read_text(encoding="utf-8")), encoding="utf-8")
    driver = outside / "driver.py"
    driver.write_text(DRIVER.replace("PACKAGES", repr(PACKAGES)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(target)  # ahead of site-packages, and of the editable install's finder
    ran = subprocess.run(
        [sys.executable, "-s", "-P", str(driver), str(example)],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    origins = dict(re.findall(r"^FROM (\S+) (.+)$", ran.stdout, flags=re.MULTILINE))
    assert set(origins) == set(PACKAGES), ran.stdout
    for name, origin in origins.items():
        assert Path(origin).resolve().is_relative_to(target.resolve()), f"{name} from {origin}"
    assert f"VERSION {version} {version}" in ran.stdout
    # The example prints the latency parts of one step and the EFE of every policy.
    assert "EFEResult(efe=tensor(" in ran.stdout
    # Data files and the console script ship in the wheel.
    assert list((target / "environments" / "profiles").glob("*.json"))
    assert (target / "bin" / "aif").exists()
