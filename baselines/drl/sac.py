"""Discrete SAC on the offloading world: tianshou's ``DiscreteSAC`` with the feasibility mask.

SAC for discrete actions (Christodoulou 2019) from tianshou 2.0: a categorical actor, twin critics
with Polyak-averaged targets, expected soft values over the action distribution. The library's
actor has no mask, so masking is glue around its network: infeasible logits are set to
:data:`~baselines.drl.common.MASKED_LOGIT`, which gives them probability 0 when acting, in the
soft targets and in the actor loss. This file is configuration and construction; the round loop
is :class:`~baselines.drl.offpolicy.TianshouOffPolicyRunner`.

Why discrete: the mask applies to the shared discrete action set (server x capped level +
reject), the same set Rainbow and PPO choose from; a continuous SAC over shares would have no
feasibility mask and would compare another action space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from baselines.drl.common import MASKED_LOGIT, LibraryEnv, validate
from baselines.drl.offpolicy import NormalisedInput, ObsStats, TianshouOffPolicyRunner

__all__ = ["MaskedActor", "SACConfig", "SACRunner"]


@dataclass(frozen=True)
class SACConfig:
    """Hyperparameters of discrete SAC, with their sources.

    "tianshou CartPole" is tianshou's discrete-SAC test on CartPole-v1
    (``test/discrete/test_discrete_sac.py``, the library's setting for a small discrete problem).

    Attributes
    ----------
    learning_rate : float
        Critic Adam step size. 3e-3: kept by the tuning budget over 3e-4, 1e-3 and 3e-3 (a tie
        with 1e-3 on completion, broken by total reward; docs/baselines.md); tianshou CartPole
        uses 1e-3.
    actor_lr_ratio : float
        Actor step size / critic step size. 0.1 (tianshou CartPole: 1e-4 / 1e-3).
    gamma : float
        Discount. 0.95 (tianshou CartPole).
    tau : float
        Polyak coefficient of the target critics. 0.005 (tianshou CartPole; Haarnoja et al. 2018).
    alpha : float
        Fixed entropy weight. tianshou CartPole keeps alpha fixed at 0.05 with a reward of 1 per
        step ("better not to use auto alpha in CartPole"). The reward here is about 0.3 per task,
        so 0.015 keeps the same entropy-to-reward ratio. Fixed rather than tuned toward a target
        entropy: with the mask the reachable entropy changes from task to task (log of 6 to 21
        feasible actions), and a fixed target above it drives alpha up without bound.
    n_step : int
        n-step return horizon. 3 (tianshou CartPole).
    hidden_sizes : tuple of int
        Actor and critic MLPs. (64, 64) (tianshou CartPole).
    buffer_size : int
        Replay capacity in transitions. 20,000 (tianshou CartPole).
    batch_size : int
        Minibatch. 64 (tianshou CartPole).
    update_per_step : float
        Gradient steps per env step. 0.5, as for Rainbow (tianshou CartPole: 0.1 with 5x more
        env steps than this budget).
    learning_starts : int
        Transitions stored before the first update: 640 (one round of 64 x 10; tianshou
        CartPole starts at once).
    n_envs : int
        Vectorised training envs, one episode each per round. 10 (tianshou CartPole).
    step_per_collect : int
        Env steps (over all envs) collected between updates. 10 (tianshou CartPole).
    """

    learning_rate: float = 3e-3
    actor_lr_ratio: float = 0.1
    gamma: float = 0.95
    tau: float = 0.005
    alpha: float = 0.015
    n_step: int = 3
    hidden_sizes: tuple[int, ...] = (64, 64)
    buffer_size: int = 20_000
    batch_size: int = 64
    update_per_step: float = 0.5
    learning_starts: int = 640
    n_envs: int = 10
    step_per_collect: int = 10

    def __post_init__(self) -> None:
        checks = [
            (self.learning_rate > 0 and self.actor_lr_ratio > 0, "step sizes must be > 0"),
            (0 <= self.gamma <= 1, "gamma must lie in [0, 1]"),
            (0 < self.tau <= 1, "tau must lie in (0, 1]"),
            (self.alpha >= 0, "alpha must be >= 0"),
            (self.n_step >= 1, "n_step must be >= 1"),
            (self.buffer_size >= self.batch_size >= 1, "need buffer_size >= batch_size >= 1"),
            (self.update_per_step > 0, "update_per_step must be > 0"),
            (self.n_envs >= 1, "n_envs must be >= 1"),
            (
                self.step_per_collect > 0 and self.step_per_collect % self.n_envs == 0,
                "step_per_collect must be a positive multiple of n_envs",
            ),
        ]
        validate(self, checks)


class MaskedActor(torch.nn.Module):
    """A tianshou discrete actor whose infeasible logits are set to :data:`MASKED_LOGIT`.

    Parameters
    ----------
    actor : torch.nn.Module
        Maps normalised observations (n, obs_dim) to logits (n, n_actions).
    stats : ObsStats
        Normalisation statistics.
    """

    def __init__(self, actor: torch.nn.Module, stats: ObsStats) -> None:
        super().__init__()
        self.actor = NormalisedInput(actor, stats)

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> tuple[torch.Tensor, Any]:
        """Masked logits, shape (n, n_actions), and the hidden state."""
        logits, hidden = self.actor(obs, state=state)
        mask = torch.as_tensor(obs.mask, device=logits.device).bool()
        return logits.masked_fill(~mask, MASKED_LOGIT), hidden


class _Critic(torch.nn.Module):
    """A tianshou discrete critic reading the observation part of a masked observation."""

    def __init__(self, critic: torch.nn.Module, stats: ObsStats) -> None:
        super().__init__()
        self.critic = critic
        self.stats = stats

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> torch.Tensor:
        raw = obs.obs if hasattr(obs, "obs") else obs
        return self.critic(self.stats.norm(raw, next(self.critic.parameters()).device))


class SACRunner(TianshouOffPolicyRunner):
    """tianshou's discrete SAC on the shared masked discrete action set.

    Parameters
    ----------
    config : SACConfig
    make_view : callable
        Returns a fresh scheduler view of the world (its action set and features).
    seed : int
        Seeds the networks, action sampling and replay sampling.
    device : str
        torch device of the networks.
    """

    name = "sac"
    config: SACConfig

    def _build(self, obs_dim: int, view: LibraryEnv) -> tuple[Any, Any, Any]:
        from tianshou.algorithm import DiscreteSAC
        from tianshou.algorithm.modelfree.discrete_sac import DiscreteSACPolicy
        from tianshou.algorithm.optim import AdamOptimizerFactory
        from tianshou.data import VectorReplayBuffer
        from tianshou.utils.net.common import Net
        from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic

        c = self.config
        hidden = list(c.hidden_sizes)
        actor = DiscreteActor(
            preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hidden),
            action_shape=view.n_actions,
            softmax_output=False,
        )
        critics = [
            _Critic(
                DiscreteCritic(
                    preprocess_net=Net(state_shape=obs_dim, hidden_sizes=hidden),
                    last_size=view.n_actions,
                ),
                self.stats,
            ).to(self.device)
            for _ in range(2)
        ]
        policy = DiscreteSACPolicy(
            actor=MaskedActor(actor, self.stats).to(self.device),
            action_space=view.action_space,
            deterministic_eval=True,
        )
        algorithm = DiscreteSAC(
            policy=policy,
            policy_optim=AdamOptimizerFactory(lr=c.learning_rate * c.actor_lr_ratio),
            critic=critics[0],
            critic_optim=AdamOptimizerFactory(lr=c.learning_rate),
            critic2=critics[1],
            critic2_optim=AdamOptimizerFactory(lr=c.learning_rate),
            tau=c.tau,
            gamma=c.gamma,
            alpha=c.alpha,
            n_step_return_horizon=c.n_step,
        ).to(self.device)
        buffer = VectorReplayBuffer(c.buffer_size, buffer_num=c.n_envs)
        return policy, algorithm, buffer

    @staticmethod
    def _loss(stats: Any) -> float:
        # The critics' TD loss (mean of the twins): what SAC's value learning minimises.
        return 0.5 * (float(stats.critic1_loss) + float(stats.critic2_loss))
