"""The how-to page's code runs, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "howto.md"


def test_howto_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(
        r"^```python[^\n]*\n(.*?)^```", PAGE.read_text(encoding="utf-8"), flags=re.M | re.S
    )
    assert len(blocks) == 5
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "howto"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name}[block {i}]", "exec"), namespace)  # noqa: S102
    env = namespace["env"]
    assert env.profiles[1].compute_time(110, 1, 1) > 1.2 * env.profiles[2].compute_time(110, 1, 1)  # type: ignore[attr-defined]
    assert namespace["fit"].converged  # type: ignore[attr-defined]
    tree = namespace["tree"]
    assert tree["episodes"].sizes == {"seed": 2, "episode": 4}  # type: ignore[index]
    assert "edge_first" in tree["references"]["policy"].values  # type: ignore[index]
