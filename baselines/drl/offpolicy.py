"""The round loop of tianshou's off-policy algorithms (Rainbow DQN, discrete SAC) on the offloading world.

One round plays one episode in each of ``n_envs`` vectorised envs with tianshou's ``Collector``,
calling the algorithm's own ``update`` on replayed minibatches between collections, and reports
every env's episode. Observations reach the networks normalised by running statistics.
"""

from __future__ import annotations

import math
import pickle
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

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
)
from environments.learner import EpisodeSpec
from environments.scheduler import SchedulerView

__all__ = ["NormalisedInput", "ObsStats", "TianshouOffPolicyRunner"]


class ObsStats:
    """Running mean/std of raw observations (tianshou's ``RunningMeanStd``, clipped at 10 std).

    Replay stores raw observations; networks normalise what they read with the current
    statistics, so online and target networks agree and old transitions are read on today's
    scale, as SB3's ``VecNormalize`` does for off-policy replay. Deep copies (tianshou's target
    networks) share this object instead of freezing a copy.
    """

    def __init__(self) -> None:
        from tianshou.utils import RunningMeanStd

        self.rms = RunningMeanStd()

    def update(self, batch: np.ndarray) -> None:
        """Add raw observations, shape (n, obs_dim)."""
        self.rms.update(batch)

    def norm(self, obs: Any, device: torch.device) -> torch.Tensor:
        """Normalised float32 tensor of raw observations ``obs``, shape (n, obs_dim)."""
        x = np.asarray(self.rms.norm(np.asarray(obs, dtype=np.float64)))
        return torch.as_tensor(x, dtype=torch.float32, device=device)

    def __deepcopy__(self, memo: dict[int, Any]) -> ObsStats:
        return self

    def state(self) -> dict[str, Any]:
        """Mean, variance and count."""
        return {"mean": self.rms.mean, "var": self.rms.var, "count": self.rms.count}

    def load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state`."""
        self.rms.mean, self.rms.var, self.rms.count = state["mean"], state["var"], state["count"]


class NormalisedInput(torch.nn.Module):
    """Feeds a tianshou network normalised observations.

    Accepts what tianshou passes a model: the observation array, or the ``Batch(obs, mask)`` of a
    masked env (the mask is then left to the caller, e.g. :class:`~baselines.drl.sac` actor glue).

    Parameters
    ----------
    net : torch.nn.Module
        Called as ``net(x, state=state)`` with ``x`` of shape (n, obs_dim).
    stats : ObsStats
    """

    def __init__(self, net: torch.nn.Module, stats: ObsStats) -> None:
        super().__init__()
        self.net = net
        self.stats = stats

    def forward(self, obs: Any, state: Any = None, info: Any = None) -> Any:
        raw = obs.obs if hasattr(obs, "obs") else obs
        x = self.stats.norm(raw, next(self.net.parameters()).device)
        return self.net(x, state=state)


class TianshouOffPolicyRunner(ABC):
    """Owns a tianshou off-policy algorithm, its replay buffer and envs; trains round by round.

    Subclasses build the policy, algorithm and buffer (:meth:`_build`) and set schedules
    (:meth:`_schedules`); the loop, evaluation and checkpoint state live here.

    Parameters
    ----------
    config : dataclass
        The algorithm's configuration; needs ``n_envs``, ``step_per_collect``,
        ``update_per_step``, ``batch_size`` and ``learning_starts``.
    make_view : callable
        Returns a fresh scheduler view of the world (its action set and features).
    seed : int
        Seeds the networks and the runner's generators.
    device : str
        torch device of the networks.
    """

    name = "off-policy"

    def __init__(
        self,
        config: Any,
        make_view: Callable[[], SchedulerView],
        seed: int,
        device: str = "cpu",
    ) -> None:
        from tianshou.data import Collector
        from tianshou.env import DummyVectorEnv

        self.config = c = config
        self.make_view = make_view
        self.device = torch.device(device)
        self.stats = ObsStats()
        self.views = [
            LibraryEnv(make_view(), dict_obs=True, obs_stats=self.stats) for _ in range(c.n_envs)
        ]
        self.episode_len = episode_length(self.views[0])
        check_round(self.name, c.n_envs, self.episode_len, c.step_per_collect // c.n_envs)
        self.rng = RandomState(seed)
        view = self.views[0]
        obs_dim = int(np.prod(view.observation_space["obs"].shape))  # type: ignore[index]
        with self.rng.active():
            self.policy, self.algorithm, self.buffer = self._build(obs_dim, view)
        self.venv = DummyVectorEnv([lambda v=v: v for v in self.views])  # type: ignore[misc]
        self.collector: Any = Collector(
            self.algorithm, self.venv, self.buffer, exploration_noise=True
        )
        self.timer = ForwardTimer(self.policy)
        self.env_steps = 0
        self.gradient_steps = 0

    @abstractmethod
    def _build(self, obs_dim: int, view: LibraryEnv) -> tuple[Any, Any, Any]:
        """The policy, algorithm and replay buffer (on the runner's generators)."""

    def _schedules(self) -> None:
        """Set exploration and replay schedules from :attr:`env_steps` (none by default)."""
        return None

    @staticmethod
    def _loss(stats: Any) -> float:
        """The number reported as the round's training loss from one update's statistics."""
        return float(stats.loss)

    def _counters(self) -> dict[str, Any]:
        """Algorithm counters outside its ``state_dict`` (none by default)."""
        return {}

    def _set_counters(self, counters: dict[str, Any]) -> None:
        """Restore :meth:`_counters`."""
        return None

    # ------------------------------------------------------------------ training
    def train_round(self, episodes: Sequence[EpisodeSpec]) -> list[EpisodeLog]:
        """Play one episode per env (one spec per env), learning as configured.

        Returns
        -------
        list of EpisodeLog
            One per env seed, in order.
        """
        from tianshou.utils.torch_utils import policy_within_training_step

        c = self.config
        check_seeds(self.name, c.n_envs, episodes)
        losses: list[float] = []
        with self.rng.active(), policy_within_training_step(self.policy):
            for view, episode in zip(self.views, episodes, strict=True):
                view.set_next_episode(episode)
                view.update_stats = True
                view.take_finished()
            self.collector.reset(reset_buffer=False)
            collected = 0
            while collected < c.n_envs * self.episode_len:
                self._schedules()
                self.timer.enabled = True
                stats = self.collector.collect(n_step=c.step_per_collect)
                self.timer.enabled = False
                collected += stats.n_collected_steps
                self.env_steps += stats.n_collected_steps
                if len(self.buffer) < c.learning_starts:
                    continue
                for _ in range(round(c.update_per_step * stats.n_collected_steps)):
                    out = self.algorithm.update(buffer=self.buffer, sample_size=c.batch_size)
                    losses.append(self._loss(out))
                    self.gradient_steps += 1
        times = per_decision(self.timer.take(), c.n_envs, self.episode_len)
        stat = float(np.mean(losses)) if losses else math.nan
        return [
            EpisodeLog(finished_episode(view), t, stat)
            for view, t in zip(self.views, times, strict=True)
        ]

    # ------------------------------------------------------------------ evaluation
    def act(self, obs: Any, mask: np.ndarray) -> int:
        """The policy's deterministic choice among the feasible actions of one observation."""
        from tianshou.data import Batch

        batch = Batch(
            obs=Batch(obs=np.asarray(obs["obs"])[None], mask=mask.astype(np.int8)[None]),
            info=Batch(),
        )
        with torch.no_grad():
            return int(np.asarray(self.policy(batch).act).reshape(-1)[0])

    def evaluate(self, episode: EpisodeSpec, view: SchedulerView | None = None) -> EpisodeLog:
        """Play one episode deterministically without learning, leaving every state unchanged.

        Parameters
        ----------
        episode : EpisodeSpec
        view : SchedulerView, optional
            Another view of the world (e.g. another t_max); default a fresh one.
        """
        env = LibraryEnv(view if view is not None else self.make_view(), dict_obs=True)
        was_training = self.policy.training
        self.policy.eval()
        try:
            with self.rng.active(keep=False):
                outcomes, decision_s = play_greedy(env, episode, self.act)
        finally:
            self.policy.train(was_training)
        return EpisodeLog(outcomes, decision_s, math.nan)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Networks and optimisers, replay buffer, normalisation statistics, counters, generators."""
        return {
            "algorithm": self.algorithm.state_dict(),
            "counters": self._counters(),
            "buffer": pickle.dumps(self.buffer),
            "obs_stats": self.stats.state(),
            "env_steps": self.env_steps,
            "gradient_steps": self.gradient_steps,
            "rng": self.rng.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        self.algorithm.load_state_dict(dict(state["algorithm"]))
        self._set_counters(state["counters"])
        self.buffer = pickle.loads(state["buffer"])
        self.collector.buffer = self.buffer
        self.stats.load(state["obs_stats"])
        self.env_steps = int(state["env_steps"])
        self.gradient_steps = int(state["gradient_steps"])
        self.rng.state = state["rng"]
