"""Active-inference learners for `aif train`: the paper's ensemble agent behind the learner protocol.

Perceive, plan (CEM over expected free energy), act, store, and refit the ensemble after every
episode (Algorithm 1 of He et al. 2025).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from aif.agent import ModelBasedAgent
from aif.cem import CEMConfig
from experiments.learners import Episode
from experiments.runconfig import TrainConfig, apply_settings, make_env
from generative_models.offloading import (
    ModelConfig,
    ObservationLayout,
    OffloadingWorldModel,
    PolicyEFE,
    PreferenceConfig,
    ReadingFilter,
)

__all__ = ["EFE_TERMS", "PaperAgentLearner", "build_paper_agent", "paper_agent_configs"]

EFE_TERMS = list(PolicyEFE._fields)


def paper_agent_configs(config: TrainConfig) -> dict[str, Any]:
    """The planner, model and preference configs of ``config`` (defaults under its settings)."""
    return apply_settings(
        {"planner": CEMConfig(), "model": ModelConfig(), "preferences": PreferenceConfig()},
        config.settings_dict,
        config.agent,
    )


def build_paper_agent(config: TrainConfig, seed: int) -> PaperAgentLearner:
    """The learner of the paper's agent for one seed."""
    return PaperAgentLearner(config, seed)


class PaperAgentLearner:
    """The paper's active-inference agent: a CEM planner over a learned ensemble world model.

    It observes what the env's observation and ``info`` show a scheduler: a failed task's
    latency and accuracy are censored (never observed), so the model learns latency and accuracy
    from completed tasks only.
    """

    episodes_per_round = 1

    def __init__(self, config: TrainConfig, seed: int) -> None:
        torch.set_num_threads(config.threads)
        cfg = paper_agent_configs(config)
        self.config = config
        self.env = make_env(config)
        n_servers = int(self.env.action_space["server"].n)
        layout = ObservationLayout.from_mapping(self.env.obs_layout, n_servers)
        self.model = OffloadingWorldModel(layout, cfg["model"], cfg["preferences"], seed=seed)
        # A zero share is allowed: the env rejects such a task at once without holding anything.
        self.agent = ModelBasedAgent(
            self.model, n_servers, 3, cfg["planner"], seed=seed + 7919, low=0.0
        )
        self.extra_labels = {"efe_parts": ("term", EFE_TERMS)}

    # ------------------------------------------------------------------ playing
    def _play(self, env: Any, env_seed: int, learn: bool) -> Episode:
        model = self.model
        obs, _ = env.reset(seed=env_seed)
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        noise = self.config.obs_noise
        perception = ReadingFilter(model, noise) if noise > 0 else None
        if perception is not None:
            obs_t = perception.reset(obs_t)
        infos: list[dict[str, Any]] = []
        decision_s: list[float] = []
        parts: list[list[float]] = []
        done = False
        while not done:
            t0 = time.perf_counter()
            decision = self.agent.act(obs_t)
            decision_s.append(time.perf_counter() - t0)
            shares = model.to_shares(obs_t, decision.choice, decision.vector)
            action = {"server": decision.choice, "shares": shares.numpy().astype("float32")}
            obs2, reward, terminated, truncated, info = env.step(action)
            done = bool(terminated or truncated)
            obs2_t = torch.as_tensor(obs2, dtype=torch.float32)
            if perception is not None and not done:
                obs2_t = perception.step(obs_t, decision.choice, shares, obs2_t)
            if learn:
                completed = bool(info["completed"])
                # A failed task is censored: its latency and accuracy are never observed.
                model.add(
                    obs_t,
                    decision.choice,
                    shares,
                    completed,
                    float(info["latency"]) if completed else math.inf,
                    float(info["pass_at_100"]) if completed else 0.0,
                    float(reward),
                    None if done else obs2_t,
                )
            infos.append(info)
            parts.append([decision.parts[k] for k in EFE_TERMS])
            obs_t = obs2_t
        stat = math.nan
        if learn:
            trace = self.agent.learn()
            stat = float(trace[-1]) if trace else math.nan
        return Episode(infos, decision_s, {"efe_parts": parts}, stat)

    def train_round(self, env_seeds: Sequence[int]) -> list[Episode]:
        """Play and learn from one episode per seed."""
        return [self._play(self.env, s, learn=True) for s in env_seeds]

    def evaluate(self, env_seed: int, t_max: float | None = None) -> Episode:
        """Play without storing data or refitting, on a generator of its own."""
        env = self.env if t_max is None else make_env(self.config, t_max=t_max)
        saved = self.agent.generator.get_state()
        self.agent.generator.manual_seed(int(env_seed))
        try:
            return self._play(env, env_seed, learn=False)
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
