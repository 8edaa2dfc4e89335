"""The tutorial's Python code blocks run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"


def python_blocks(text: str) -> list[str]:
    """The bodies of the ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_extractor_finds_only_python_blocks() -> None:
    text = '```python\na = 1\n```\n```bash\nexit 1\n```\n```python exec="on"\nb = a + 1\n```\n'
    assert python_blocks(text) == ["a = 1\n", "b = a + 1\n"]


@pytest.mark.filterwarnings("ignore::aif.inference.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")
def test_tutorial_code_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = python_blocks(TUTORIAL.read_text(encoding="utf-8"))
    assert len(blocks) >= 12
    monkeypatch.chdir(tmp_path)  # nothing the tutorial writes may land in the repository
    namespace: dict[str, object] = {"__name__": "tutorial"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{TUTORIAL.name}[block {i}]", "exec")
        exec(code, namespace)  # noqa: S102 - running the documentation is the point
    figures = sorted(p.name for p in Path(namespace["out"]).iterdir())  # type: ignore[arg-type]
    assert figures == [
        "efe_decomposition.png",
        "vfe_decomposition.png",
        "vfe_trace.png",
        "vfe_trace_starved.png",
    ]
    # Every fit the tutorial reports converged; the starved run is flagged as not converged.
    for name in ("result", "window_fit"):
        assert namespace[name].converged, name  # type: ignore[attr-defined]
    assert bool(namespace["filtered"].converged.all())  # type: ignore[attr-defined]
    assert not bool(namespace["starved"].converged.any())  # type: ignore[attr-defined]


def test_tutorial_two_factor_model_is_exact_bayes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tutorial's two-factor program gives the closed-form posterior under enumeration."""
    from aif.exact import infer_states_exact
    from aif.inference import JointCategorical, fit_beliefs

    blocks = python_blocks(TUTORIAL.read_text(encoding="utf-8"))
    namespace: dict[str, object] = {"__name__": "tutorial"}
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, TUTORIAL.name, "exec"), namespace)  # noqa: S102
        if "server_link_model" in namespace:
            break
    model = namespace["server_link_model"]
    A2, D, D_link = namespace["A2"], namespace["D"], namespace["D_link"]
    for outcome in (0, 1):
        guide = JointCategorical([{"s_0_0": 2, "s_0_1": 2}])
        fit = fit_beliefs(
            model, guide, torch.tensor(outcome), num_steps=800, lr=0.2, lr_decay=1.0, tol=1e-8
        )  # type: ignore[arg-type]
        bayes = infer_states_exact([A2], [outcome], [D, D_link])  # type: ignore[list-item]
        assert bayes.joint is not None and bayes.log_evidence is not None
        assert float((guide.joint(0) - bayes.joint).abs().max()) < 1e-3
        assert abs(float(fit.final.vfe + bayes.log_evidence)) < 1e-3
