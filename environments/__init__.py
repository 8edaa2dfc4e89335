"""The 6G cloud-edge LLM-offloading world: a Gymnasium environment, its physics and LLM profiles.

Importing this package registers one versioned id per preset (``ENV_IDS``): ``CloudEdgeOffload-v1``
(the paper preset) and ``CloudEdgeOffload-<preset>-v1`` for every other one.
"""

from __future__ import annotations

import gymnasium as gym

from environments.config import (
    PRESETS,
    TERMINAL_KINDS,
    ArrivalConfig,
    ChangePoint,
    ContentionConfig,
    DriftConfig,
    DriftEvent,
    NetworkConfig,
    PartialObservabilityConfig,
    RadioConfig,
    ScenarioConfig,
    ServerConfig,
    TerminalKindConfig,
    drift_schedule,
)
from environments.env import CloudEdgeOffloadEnv, Outcome, Outcomes
from environments.learner import Episode, EpisodeSpec, Learner, LearnerContext, WorldSpec
from environments.llm_profiles import LLMProfile, available_profiles, load_profile
from environments.metrics import EpisodeMetrics, episode_metrics
from environments.scheduler import SchedulerView
from environments.tasks import load_humaneval, pass_at_k
from environments.wrappers import DiscreteActionWrapper, FlatContinuousActionWrapper

__all__ = [
    "ENV_IDS",
    "PRESETS",
    "TERMINAL_KINDS",
    "ArrivalConfig",
    "ChangePoint",
    "CloudEdgeOffloadEnv",
    "ContentionConfig",
    "DiscreteActionWrapper",
    "DriftConfig",
    "DriftEvent",
    "Episode",
    "EpisodeSpec",
    "EpisodeMetrics",
    "FlatContinuousActionWrapper",
    "LLMProfile",
    "Learner",
    "LearnerContext",
    "NetworkConfig",
    "Outcome",
    "Outcomes",
    "PartialObservabilityConfig",
    "RadioConfig",
    "ScenarioConfig",
    "SchedulerView",
    "ServerConfig",
    "TerminalKindConfig",
    "WorldSpec",
    "available_profiles",
    "drift_schedule",
    "episode_metrics",
    "load_humaneval",
    "load_profile",
    "pass_at_k",
]

#: Registered environment ids and their presets.
ENV_IDS: dict[str, str] = {
    "CloudEdgeOffload-v1": "paper",
    "CloudEdgeOffload-congested-v1": "congested",
    "CloudEdgeOffload-large-v1": "large",
    "CloudEdgeOffload-heavy-v1": "heavy",
    "CloudEdgeOffload-tight-v1": "tight",
    "CloudEdgeOffload-contention-v1": "contention",
    "CloudEdgeOffload-bursty-v1": "bursty",
    "CloudEdgeOffload-diurnal-v1": "diurnal",
    "CloudEdgeOffload-drift-v1": "drift",
}

for _env_id, _preset in ENV_IDS.items():
    if _env_id not in gym.registry:
        # Episodes end by termination after tasks_per_episode decisions, so no TimeLimit is set.
        gym.register(
            id=_env_id,
            entry_point="environments.env:CloudEdgeOffloadEnv",
            kwargs={"preset": _preset},
            max_episode_steps=None,
        )
