"""The "From pymdp" page: its pymdp 1.0.4 script and its toolkit script give the same numbers.

Blocks titled ``pymdp 1.0.4`` run in one namespace with pymdp; the toolkit's blocks (executed at
build time) and the one that needs the pymdp extra run in another, in page order.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

PAGE = Path(__file__).resolve().parents[2] / "docs" / "from-pymdp.md"
PYMDP_TITLE = 'title="pymdp 1.0.4"'
EXTRA_TITLE = 'title="aif-offload, with the pymdp extra"'


def blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every ```python fenced block, in order."""
    return re.findall(r"^```python([^\n]*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def run(kinds: set[str]) -> tuple[dict[str, object], dict[str, object]]:
    """Run the page's blocks of the given kinds ("pymdp", "ours", "extra"); both namespaces."""
    pymdp_ns: dict[str, object] = {"__name__": "from_pymdp_pymdp"}
    ours: dict[str, object] = {"__name__": "from_pymdp_ours"}
    for i, (info, body) in enumerate(blocks(PAGE.read_text(encoding="utf-8"))):
        if PYMDP_TITLE in info:
            kind, namespace = "pymdp", pymdp_ns
        elif EXTRA_TITLE in info:
            kind, namespace = "extra", ours
        else:
            assert 'exec="on"' in info, f"block {i} is neither run at build time nor titled"
            kind, namespace = "ours", ours
        if kind in kinds:
            exec(compile(body, f"{PAGE.name}[block {i}]", "exec"), namespace)  # noqa: S102
    return pymdp_ns, ours


def test_page_has_both_scripts() -> None:
    infos = [info for info, _ in blocks(PAGE.read_text(encoding="utf-8"))]
    assert sum(PYMDP_TITLE in i for i in infos) == 2
    assert sum('exec="on"' in i for i in infos) >= 4
    assert sum(EXTRA_TITLE in i for i in infos) == 1


def test_toolkit_blocks_run_without_pymdp() -> None:
    _, ours = run({"ours"})
    assert ours["actions"] == [[1], [1], [1]]


def test_pymdp_script_and_toolkit_script_agree() -> None:
    pytest.importorskip("pymdp")
    pymdp_ns, ours = run({"pymdp", "ours", "extra"})
    assert pymdp_ns["actions"] == ours["actions"]
    # The last step's beliefs, policy posterior and EFE (up to pymdp's constant), and the counts
    # learnt over all three steps.
    qs_pymdp = np.asarray(pymdp_ns["qs"][0])[0, -1]  # type: ignore[index]
    qs_ours = ours["qs"][0][0].numpy()  # type: ignore[index]
    np.testing.assert_allclose(qs_ours, qs_pymdp, atol=1e-10)
    policy = ours["policy"]
    np.testing.assert_allclose(
        policy.q_pi[0].numpy(),  # type: ignore[attr-defined]
        np.asarray(pymdp_ns["q_pi"])[0],
        atol=1e-10,
    )
    np.testing.assert_allclose(
        ours["neg_efe_pymdp"][0].numpy(),  # type: ignore[index]
        np.asarray(pymdp_ns["neg_efe"])[0],
        atol=1e-10,
    )
    np.testing.assert_allclose(
        ours["agent"].pA[0][0].numpy(),  # type: ignore[attr-defined]
        np.asarray(pymdp_ns["agent"].pA[0])[0],  # type: ignore[attr-defined]
        atol=1e-10,
    )
    back = ours["back"]
    assert torch.allclose(back.A[0], ours["pomdp"].A[0])  # type: ignore[attr-defined]
