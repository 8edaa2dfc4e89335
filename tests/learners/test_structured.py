"""The structured active-inference agent: it learns, it is seeded, it resumes, it runs on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from environments.learner import EpisodeSpec
from experiments.runconfig import TrainConfig
from experiments.train import train_seed
from learners import build_learner


def _config(**kw) -> TrainConfig:
    base = {"agent": "aif", "episodes": 8, "seeds": (0,), "eval_every": 0,
            "settings": (("fit_steps", 120),)}  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_the_agent_learns_the_world() -> None:
    # Episode 0 plans with the prior alone (every server a 5 s guess); by the last episodes it
    # has learned the servers and the problems: more tasks done and more guidance earned.
    run = train_seed(_config(), 0)
    metrics = [r["metrics"] for r in run["records"]]
    first = metrics[0]
    late = {k: np.mean([m[k] for m in metrics[-3:]]) for k in first}
    assert late["completion_rate"] >= first["completion_rate"] + 0.05, (first, late)
    assert late["total_reward"] >= first["total_reward"] + 3.0, (first, late)
    assert late["completion_rate"] >= 0.97


def test_same_seed_same_decisions() -> None:
    cfg = _config(episodes=2, tasks_per_episode=30)
    a, b = train_seed(cfg, 3), train_seed(cfg, 3)
    for ra, rb in zip(a["records"], b["records"], strict=True):
        assert ra["server"] == rb["server"] and ra["shares"] == rb["shares"]
        assert ra["extras"] == rb["extras"] and ra["learn_stat"] == rb["learn_stat"]


def test_resume_after_stop_matches_uninterrupted(tmp_path) -> None:
    cfg = _config(episodes=3, tasks_per_episode=30, eval_every=2, eval_episodes=1)
    full = train_seed(cfg, 0)
    train_seed(cfg, 0, checkpoint_dir=tmp_path, stop_after=1)
    resumed = train_seed(cfg, 0, checkpoint_dir=tmp_path)
    assert [r["server"] for r in resumed["records"]] == [r["server"] for r in full["records"]]
    assert [r["extras"] for r in resumed["records"]] == [r["extras"] for r in full["records"]]
    for point, episodes in full["evals"].items():
        assert [e["server"] for e in resumed["evals"][point]] == [e["server"] for e in episodes]


def test_evaluation_at_another_t_max_leaves_the_learner_unchanged() -> None:
    learner = build_learner(_config(tasks_per_episode=30).context(), 0)
    learner.train_round([EpisodeSpec(11)])
    before = learner.state_dict()
    short = learner.evaluate(EpisodeSpec(5), t_max=2.0)
    assert not any(i["completed"] for i in short.outcomes)  # nothing completes within 2 s
    after = learner.state_dict()
    assert before["data"] == after["data"] and before["rng"] == after["rng"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_the_agent_learns_on_cuda() -> None:
    run = train_seed(_config(episodes=2, tasks_per_episode=30, device="cuda"), 0)
    assert len(run["records"]) == 2
