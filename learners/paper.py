"""The paper's active-inference agent (`aif-paper`): a CEM planner over a learned ensemble world model.

Algorithm 1 of He et al. (IEEE IoT-J 2025): perceive through the scheduler view, plan by
expected free energy with rewardless guidance (CEM over server and continuous shares), act,
store what a scheduler observes, and refit the ensemble after every episode.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from aif.agent import ModelBasedAgent
from aif.cem import CEMConfig
from environments.learner import Episode, EpisodeSpec, LearnerContext, apply_settings
from environments.scheduler import SchedulerView
from generative_models.offloading import (
    ModelConfig,
    ObservationLayout,
    OffloadingWorldModel,
    PolicyEFE,
    PreferenceConfig,
    ReadingFilter,
)

__all__ = ["EFE_TERMS", "PaperAgent", "build", "paper_agent_configs"]

EFE_TERMS = list(PolicyEFE._fields)


def paper_agent_configs(context: LearnerContext) -> dict[str, Any]:
    """The planner, model and preference configs of a run (defaults under its settings)."""
    return apply_settings(
        {"planner": CEMConfig(), "model": ModelConfig(), "preferences": PreferenceConfig()},
        context.settings,
        context.name,
    )


def build(context: LearnerContext, seed: int) -> PaperAgent:
    """The paper's agent for one seed."""
    return PaperAgent(context, seed)


class PaperAgent:
    """The paper's active-inference agent: a CEM planner over a learned ensemble world model.

    It observes what its :class:`~environments.SchedulerView` shows a scheduler: a failed task's
    latency and accuracy are censored (never observed), so the model learns latency and accuracy
    from completed tasks only.
    """

    episodes_per_round = 1

    def __init__(self, context: LearnerContext, seed: int) -> None:
        torch.set_num_threads(context.threads)
        cfg = paper_agent_configs(context)
        self.context = context
        self.view = context.view()
        n_servers = self.view.n_servers
        layout = ObservationLayout.from_mapping(self.view.obs_layout, n_servers)
        self.model = OffloadingWorldModel(layout, cfg["model"], cfg["preferences"], seed=seed)
        # A zero share is allowed: the world rejects such a task at once without holding anything.
        self.agent = ModelBasedAgent(
            self.model, n_servers, 3, cfg["planner"], seed=seed + 7919, low=0.0
        )
        self.extra_labels = {"efe_parts": ("term", EFE_TERMS)}

    # ------------------------------------------------------------------ playing
    def _play(self, view: SchedulerView, episode: EpisodeSpec, learn: bool) -> Episode:
        model = self.model
        obs, _ = view.reset(seed=int(episode.env_seed), options=episode.options)
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        noise = view.reading_noise_std
        perception = ReadingFilter(model, noise) if noise > 0 else None
        if perception is not None:
            obs_t = perception.reset(obs_t)
        steps: list[tuple[Any, ...]] = []
        decision_s: list[float] = []
        parts: list[list[float]] = []
        done = False
        while not done:
            t0 = time.perf_counter()
            decision = self.agent.act(obs_t)
            decision_s.append(time.perf_counter() - t0)
            shares = model.to_shares(obs_t, decision.choice, decision.vector)
            action = {"server": decision.choice, "shares": shares.numpy().astype("float32")}
            obs2, reward, terminated, truncated, _ = view.step(action)
            done = bool(terminated or truncated)
            obs2_t = torch.as_tensor(obs2, dtype=torch.float32)
            if perception is not None and not done:
                obs2_t = perception.step(obs_t, decision.choice, shares, obs2_t)
            steps.append((obs_t, decision.choice, shares, float(reward), None if done else obs2_t))
            parts.append([decision.parts[k] for k in EFE_TERMS])
            obs_t = obs2_t
        outcomes = view.outcomes()
        stat = math.nan
        if learn:
            for (o, choice, shares, reward, nxt), fb in zip(steps, outcomes, strict=True):
                completed = bool(fb["completed"])
                # A failed task is censored: its latency and accuracy are never observed.
                model.add(
                    o,
                    choice,
                    shares,
                    completed,
                    float(fb["latency"]) if completed else math.inf,
                    float(fb["pass_at_100"]) if completed else 0.0,
                    reward,
                    nxt,
                )
            trace = self.agent.learn()
            stat = float(trace[-1]) if trace else math.nan
        return Episode(outcomes, decision_s, {"efe_parts": parts}, stat)

    def train_round(self, episodes: Sequence[EpisodeSpec]) -> list[Episode]:
        """Play and learn from one episode per spec."""
        return [self._play(self.view, e, learn=True) for e in episodes]

    def evaluate(self, episode: EpisodeSpec, t_max: float | None = None) -> Episode:
        """Play without storing data or refitting, on a generator of its own."""
        view = self.view if t_max is None else self.context.view(t_max=t_max)
        saved = self.agent.generator.get_state()
        self.agent.generator.manual_seed(int(episode.env_seed))
        try:
            return self._play(view, episode, learn=False)
        finally:
            self.agent.generator.set_state(saved)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Model weights, stored data, generators and the free-energy trace."""
        model = self.model
        return {
            "model": model.state_dict(),
            "data": {k: list(v) for k, v in vars(model.data).items()},
            "model_rng": model.generator.get_state(),
            "agent_rng": self.agent.generator.get_state(),
            "vfe_trace": list(model.vfe_trace),
            "n_fits": model.n_fits,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        model = self.model
        model.load_state_dict(state["model"])
        for k, v in state["data"].items():
            setattr(model.data, k, list(v))
        model.generator.set_state(state["model_rng"])
        self.agent.generator.set_state(state["agent_rng"])
        model.vfe_trace = list(state["vfe_trace"])
        model.n_fits = int(state["n_fits"])
