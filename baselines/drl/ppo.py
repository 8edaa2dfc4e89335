"""PPO on the offloading world: sb3-contrib's ``MaskablePPO`` with the feasibility mask.

PPO (Schulman et al. 2017) with invalid-action masking (Huang and Ontanon 2022) comes whole from
sb3-contrib: the policy reads the env's ``action_masks()`` at every step and gives infeasible
actions probability 0 in sampling, in the log-probabilities of the update and in the
deterministic choice. Observations (and rewards, for the value targets) are normalised by SB3's
``VecNormalize``. This file is configuration, construction and the round loop around ``learn``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.drl.common import (
    EpisodeLog,
    ForwardTimer,
    LibraryEnv,
    RandomState,
    check_round,
    check_seeds,
    episode_length,
    finished_episode,
    per_decision,
    play_greedy,
    validate,
)
from environments.learner import EpisodeSpec
from environments.scheduler import SchedulerView

__all__ = ["PPOConfig", "PPORunner"]


@dataclass(frozen=True)
class PPOConfig:
    """Hyperparameters of MaskablePPO, with their sources.

    "rl-zoo CartPole" is rl-baselines3-zoo's tuned PPO entry for CartPole-v1
    (``hyperparams/ppo.yml``, a small discrete problem); "SB3" is stable-baselines3's default.

    Attributes
    ----------
    learning_rate : float
        Adam step size, constant. 1e-3: rl-zoo CartPole's ``lin_0.001`` starts there (decaying
        linearly over the run), and the tuning budget over 3e-4, 1e-3 and 3e-3 kept it
        (docs/baselines.md). Constant because rounds call ``learn`` one at a time and SB3
        measures schedule progress within one call.
    n_steps : int
        Steps per env per rollout. 25: rl-zoo CartPole collects 8 envs x 32 = 256 steps per update;
        10 x 25 = 250 here, and 25 divides the 100-task episode so rounds end on an update.
    batch_size : int
        Minibatch. 250, the whole rollout (rl-zoo CartPole: 256 with a 256-step rollout).
    n_epochs : int
        Passes over each rollout. 20 (rl-zoo CartPole).
    gamma : float
        Discount. 0.98 (rl-zoo CartPole).
    gae_lambda : float
        GAE lambda. 0.8 (rl-zoo CartPole).
    clip_range : float
        PPO clip. 0.2 (rl-zoo CartPole: ``lin_0.2``; constant for the reason above).
    ent_coef : float
        Entropy bonus. 0.0 (rl-zoo CartPole; SB3).
    vf_coef : float
        Value-loss weight. 0.5 (SB3).
    max_grad_norm : float
        Gradient clipping. 0.5 (SB3).
    net_arch : tuple of int
        Hidden layers of the separate policy and value MLPs (tanh). (64, 64) (SB3 ``MlpPolicy``).
    norm_obs : bool
        Normalise observations with ``VecNormalize`` running statistics (clip 10). True (rl-zoo
        ``normalize: true``, standard practice).
    norm_reward : bool
        Scale rewards by a running std of the discounted return for the value targets (the
        policy still maximises r = 1/L + P). True (rl-zoo ``normalize: true``).
    n_envs : int
        Vectorised training envs, one episode each per round. 10 (rl-zoo CartPole: 8; 10 ends
        rounds on the evaluation points every 10 episodes).
    """

    learning_rate: float = 1e-3
    n_steps: int = 25
    batch_size: int = 250
    n_epochs: int = 20
    gamma: float = 0.98
    gae_lambda: float = 0.8
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)
    norm_obs: bool = True
    norm_reward: bool = True
    n_envs: int = 10

    def __post_init__(self) -> None:
        checks = [
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.n_steps >= 1 and self.batch_size >= 2, "need n_steps >= 1, batch_size >= 2"),
            (self.n_epochs >= 1, "n_epochs must be >= 1"),
            (0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "gamma, gae_lambda in [0, 1]"),
            (self.clip_range > 0, "clip_range must be > 0"),
            (self.n_envs >= 1, "n_envs must be >= 1"),
        ]
        validate(self, checks)


class PPORunner:
    """Owns sb3-contrib's MaskablePPO, its normalised vectorised envs; trains round by round.

    Parameters
    ----------
    config : PPOConfig
    make_view : callable
        Returns a fresh scheduler view of the world (its action set and features).
    seed : int
        Seeds the networks and action sampling.
    device : str
        torch device of the networks.
    """

    name = "ppo"

    def __init__(
        self,
        config: PPOConfig,
        make_view: Callable[[], SchedulerView],
        seed: int,
        device: str = "cpu",
    ) -> None:
        from sb3_contrib import MaskablePPO
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        self.config = c = config
        self.make_view = make_view
        self.views = [LibraryEnv(make_view()) for _ in range(c.n_envs)]
        self.episode_len = episode_length(self.views[0])
        check_round(self.name, c.n_envs, self.episode_len, c.n_steps)
        self.rng = RandomState(seed)
        self.dummy = DummyVecEnv([lambda v=v: v for v in self.views])  # type: ignore[misc]
        self.venv = VecNormalize(
            self.dummy,
            norm_obs=c.norm_obs,
            norm_reward=c.norm_reward,
            clip_obs=10.0,
            gamma=c.gamma,
        )
        with self.rng.active():
            self.model = MaskablePPO(
                "MlpPolicy",
                self.venv,
                learning_rate=c.learning_rate,
                n_steps=c.n_steps,
                batch_size=c.batch_size,
                n_epochs=c.n_epochs,
                gamma=c.gamma,
                gae_lambda=c.gae_lambda,
                clip_range=c.clip_range,
                ent_coef=c.ent_coef,
                vf_coef=c.vf_coef,
                max_grad_norm=c.max_grad_norm,
                policy_kwargs={"net_arch": list(c.net_arch)},
                device=device,
                verbose=0,
            )
        self.timer = ForwardTimer(self.model.policy)

    def train_round(self, episodes: Sequence[EpisodeSpec]) -> list[EpisodeLog]:
        """Play one episode per env (one spec per env), updating every rollout.

        Returns
        -------
        list of EpisodeLog
            One per env seed, in order; ``learn_stat`` is the last update's PPO loss.
        """
        c = self.config
        check_seeds(self.name, c.n_envs, episodes)
        model = self.model
        with self.rng.active():
            for view in self.views:
                view.take_finished()
            # Per-env reset seeds and options of SB3's DummyVecEnv (its public seed() takes one base seed).
            self.dummy._seeds = [int(e.env_seed) for e in episodes]
            self.dummy._options = [e.options for e in episodes]
            self.venv.training = True
            model._last_obs = self.venv.reset()  # type: ignore[assignment]
            model._last_episode_starts = np.ones(c.n_envs, dtype=bool)
            self.timer.enabled = True
            try:
                model.learn(
                    total_timesteps=c.n_envs * self.episode_len,
                    reset_num_timesteps=False,
                    progress_bar=False,
                )
            finally:
                self.timer.enabled = False
        loss = model.logger.name_to_value.get("train/loss", math.nan)
        times = per_decision(self.timer.take(), c.n_envs, self.episode_len)
        return [
            EpisodeLog(finished_episode(view), t, float(loss))
            for view, t in zip(self.views, times, strict=True)
        ]

    def act(self, obs: np.ndarray, mask: np.ndarray) -> int:
        """The most probable feasible action for one raw observation."""
        x = self.venv.normalize_obs(np.asarray(obs)[None]) if self.config.norm_obs else obs[None]
        action, _ = self.model.predict(x, deterministic=True, action_masks=mask[None])
        return int(np.asarray(action).reshape(-1)[0])

    def evaluate(self, episode: EpisodeSpec, view: SchedulerView | None = None) -> EpisodeLog:
        """Play one episode deterministically without learning, leaving every state unchanged.

        Parameters
        ----------
        episode : EpisodeSpec
        view : SchedulerView, optional
            Another view of the world (e.g. another t_max); default a fresh one.
        """
        env = LibraryEnv(view if view is not None else self.make_view())
        with self.rng.active(keep=False):
            outcomes, decision_s = play_greedy(env, episode, self.act)
        return EpisodeLog(outcomes, decision_s, math.nan)

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimiser, normalisation statistics, counters, generators.

        The rollout buffer is empty between rounds (a round ends on an update), so it holds
        nothing to save.
        """
        m = self.model
        return {
            "policy": m.policy.state_dict(),
            "optimizer": m.policy.optimizer.state_dict(),
            "obs_rms": self.venv.obs_rms,
            "ret_rms": self.venv.ret_rms,
            "returns": self.venv.returns.copy(),
            "num_timesteps": m.num_timesteps,
            "n_updates": m._n_updates,
            "episode_num": m._episode_num,
            "rng": self.rng.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        m = self.model
        m.policy.load_state_dict(state["policy"])
        m.policy.optimizer.load_state_dict(state["optimizer"])
        self.venv.obs_rms = state["obs_rms"]
        self.venv.ret_rms = state["ret_rms"]
        self.venv.returns = np.asarray(state["returns"]).copy()
        m.num_timesteps = int(state["num_timesteps"])
        m._n_updates = int(state["n_updates"])
        m._episode_num = int(state["episode_num"])
        self.rng.state = state["rng"]
