"""Deep-RL baselines on the offloading world: Rainbow DQN, PPO and SAC from tianshou and sb3-contrib.

One file per algorithm (typed configuration with sourced hyperparameters, and a runner that trains
round by round, evaluates deterministically and saves its whole state), and the learners that
put them behind the learner protocol (:mod:`baselines.drl.learner`); the libraries load only
when a runner is built.
"""

from baselines.drl.common import EpisodeLog, LibraryEnv
from baselines.drl.ppo import PPOConfig, PPORunner
from baselines.drl.rainbow import RainbowConfig, RainbowRunner
from baselines.drl.sac import SACConfig, SACRunner

__all__ = [
    "EpisodeLog",
    "LibraryEnv",
    "PPOConfig",
    "PPORunner",
    "RainbowConfig",
    "RainbowRunner",
    "SACConfig",
    "SACRunner",
]
