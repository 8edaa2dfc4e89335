"""The tutorial's Python code blocks run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_extractor_finds_only_python_blocks() -> None:
    text = "```python\na = 1\n```\n```bash\nexit 1\n```\n```python\nb = a + 1\n```\n"
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]


@pytest.mark.filterwarnings("ignore::aif.inference.ConvergenceWarning")
def test_tutorial_code_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(TUTORIAL.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    monkeypatch.chdir(tmp_path)  # the tutorial writes its figures to ./diagnostics
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{TUTORIAL.name}[block {i}]", "exec")
        exec(code, namespace)  # noqa: S102 - running the documentation is the point
    figures = sorted(p.name for p in (tmp_path / "diagnostics").iterdir())
    assert figures == ["efe_decomposition.png", "vfe_decomposition.png", "vfe_trace.png"]
