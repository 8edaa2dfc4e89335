"""The discrete-agent page runs, in order, and its example runs as a program."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "discrete_agent.md"
EXAMPLE = ROOT / "examples" / "discrete_agent_tmaze.py"


def python_blocks(text: str) -> list[str]:
    import re

    return re.findall(r"^```python[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_discrete_agent_page_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    monkeypatch.chdir(ROOT)  # the page imports the example from ./examples
    monkeypatch.setattr(sys, "path", list(sys.path))  # the page prepends to sys.path
    namespace: dict[str, object] = {"__name__": "discrete_agent_page"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name}[block {i}]", "exec"), namespace)  # noqa: S102
    record = namespace["record"]
    assert float(record.learnt_p_reward[-1]) > float(record.learnt_p_reward[0])  # type: ignore[attr-defined]
    sys.modules.pop("discrete_agent_tmaze", None)


def test_example_runs_as_a_program_and_is_seeded() -> None:
    command = [sys.executable, str(EXAMPLE), "--agents", "4", "--trials", "3", "--seed", "5"]
    first = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    again = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    assert "4 agents, 3 trials" in first.stdout
    assert len(first.stdout.strip().splitlines()) == 2 + 3
    assert first.stdout == again.stdout
