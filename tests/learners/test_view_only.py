"""Every learner reads the world only through the scheduler view: a spy lists what each one touches."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gymnasium
import pytest

import environments.scheduler as scheduler
from environments.learner import EpisodeSpec, LearnerContext, WorldSpec
from environments.scheduler import VIEW_API, SchedulerView
from learners import build_learner, learner_names, learner_spec

ROOT = Path(__file__).resolve().parents[2]
#: Tiny settings per factory, so that every learner plays a few decisions in seconds.
TINY = {
    "learners.structured:build": {"fit_steps": 2, "futures": 2},
    "learners.paper:build": {"candidates": 8, "elites": 2, "iterations": 1, "fit_steps": 2},
    "baselines.drl.learner:build_rainbow": {
        "n_envs": 1,
        "step_per_collect": 2,
        "learning_starts": 4,
        "batch_size": 4,
    },
    "baselines.drl.learner:build_sac": {
        "n_envs": 1,
        "step_per_collect": 2,
        "learning_starts": 4,
        "batch_size": 4,
    },
    "baselines.drl.learner:build_ppo": {"n_envs": 1, "n_steps": 4, "batch_size": 4},
}
# The view's own code and its gymnasium base class read its private state; nobody else may.
_INSIDE = {scheduler.__file__, sys.modules[gymnasium.Env.__module__].__file__}


@contextmanager
def spy_on_views() -> Iterator[set[str]]:
    """Record every attribute of any SchedulerView read from outside the view itself."""
    touched: set[str] = set()
    original = SchedulerView.__getattribute__

    def spy(self: SchedulerView, name: str):  # type: ignore[no-untyped-def]
        caller = sys._getframe(1).f_code.co_filename
        if caller not in _INSIDE and not (name.startswith("__") and name.endswith("__")):
            touched.add(name)
        return original(self, name)

    SchedulerView.__getattribute__ = spy  # type: ignore[method-assign]
    try:
        yield touched
    finally:
        SchedulerView.__getattribute__ = original  # type: ignore[method-assign]


def _learners() -> list[str]:
    return [n for n in learner_names() if learner_spec(n).factory in TINY]


@pytest.mark.parametrize("name", _learners())
def test_a_learner_reads_only_the_documented_view(name: str):
    spec = learner_spec(name)
    world = WorldSpec("paper", t_max=15.0, tasks_per_episode=8)
    context = LearnerContext(name, world, TINY[spec.factory])
    with spy_on_views() as touched:
        learner = build_learner(context, 0)
        n = learner.episodes_per_round
        learner.train_round([EpisodeSpec(10 + k, k) for k in range(n)])
        episode = learner.evaluate(EpisodeSpec(99, n), t_max=10.0)
    assert len(episode.outcomes) == 8
    assert touched, "the spy saw nothing: the learner never read a view"
    private = sorted(t for t in touched if t.startswith("_"))
    assert not private, f"{name} read private state of the view: {private}"
    assert touched <= VIEW_API, f"{name} read undocumented view attributes {touched - VIEW_API}"


def test_the_spy_catches_a_reader_of_the_world():
    view = WorldSpec("paper", tasks_per_episode=4).make()
    with spy_on_views() as touched:
        v = SchedulerView(view)
        v.reset(seed=0)
        v._SchedulerView__world  # noqa: B018  (what a learner must never do)
    assert "_SchedulerView__world" in touched


#: What learner modules may import of the world's package: the view, the protocol and records.
_ALLOWED = {"environments.scheduler", "environments.learner"}


def _learner_modules() -> list[Path]:
    return sorted((ROOT / "learners").glob("*.py")) + [ROOT / "baselines" / "drl" / "learner.py"]


@pytest.mark.parametrize("path", _learner_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_learner_modules_import_nothing_of_the_simulator(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] == "environments":
                assert node.module in _ALLOWED, f"{path.name} imports {node.module}"
            assert node.module.split(".")[0] not in ("gymnasium", "gym"), path.name
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                assert top not in ("environments", "gymnasium", "gym"), (path.name, alias.name)
