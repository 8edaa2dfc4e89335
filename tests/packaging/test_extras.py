"""The optional extras do what pyproject.toml says they are for."""

from __future__ import annotations

import re

import pyro


def test_graphviz_extra_renders_a_generative_model() -> None:
    # The `graphviz` extra exists for pyro.render_model; the `test` extra installs it.
    from generative_models.categorical import CategoricalPOMDP

    pomdp = CategoricalPOMDP.random([3, 2], [4, 3], [2, 2], policy_len=1, seed=0)
    graph = pyro.render_model(pomdp.model, model_args=([[0, 1]],))  # one step: outcomes 0, 1
    source = graph.source
    # One node per state, outcome and control site, and the likelihood's arrows s -> o.
    for site in ("s_0_0", "s_0_1", "o_0_0", "o_0_1"):
        assert re.search(rf"^\s*{site} \[", source, flags=re.MULTILINE), site
    assert re.search(r"^\s*s_0_0 -> o_0_0", source, flags=re.MULTILINE), source


def test_pymdp_extra_imports() -> None:
    import pymdp.agent

    assert hasattr(pymdp.agent, "Agent")
