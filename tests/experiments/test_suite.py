"""The quick suite end to end: every world, every method under the bound, a report, resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from experiments.reproduce.suite import SUITES, Suite, World, run_suite, suite_by_name
from experiments.reproduce.suite_report import render_suite_report, score_arrays


def test_unknown_suite_and_repeated_world_names_are_refused() -> None:
    with pytest.raises(ValueError, match="fair-quick"):
        suite_by_name("huge")
    quick = SUITES["fair-quick"]
    with pytest.raises(ValueError, match="distinct"):
        Suite("x", (World("a", "paper"), World("a", "tight")), quick.methods, (0,), quick.budgets)


def test_every_family_gets_the_same_budget_in_every_suite() -> None:
    for suite in SUITES.values():
        budgets = {b.episodes for _, b in suite.budgets}
        assert len(budgets) == 1, suite.name


def test_quick_suite_scores_everyone_under_the_bound_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "suite"
    result = run_suite("fair-quick", out, workers=1, progress=False, log=None)
    assert result.computed > 0 and result.reused == 0
    tree = result.tree
    quick = SUITES["fair-quick"]
    for world in quick.worlds:
        scores = tree[world.name]["scores"].to_dataset()
        names = [str(m) for m in scores["method"].values]
        assert {*quick.methods, *quick.references} <= set(names)
        assert "aif (untrained)" in names
        rg = scores["rg_fraction"].values
        done = scores["completion_fraction"].values
        # The bound holds for every method, learner or reference, on every held-out episode mean.
        assert np.all(np.isfinite(rg)) and np.all(rg <= 1.0 + 1e-9), (world.name, rg)
        assert np.all(done <= 1.0 + 1e-9)
        assert np.all(rg[names.index("greedy")] > 0.2)
    # Pooled over worlds x seeds: one score per (seed, world) for each method.
    pooled = score_arrays(tree)
    assert pooled["aif"].shape == (len(quick.seeds), len(quick.worlds))
    report = render_suite_report(result.results).read_text()
    assert "interquartile mean" in report and "Probability of improvement" in report
    assert (out / "profiles.png").stat().st_size > 10_000
    again = run_suite("fair-quick", out, workers=1, progress=False, log=None)
    assert (again.computed, again.reused) == (0, result.computed)
