"""What the deep-RL baselines share: the world as a library sees it, and the state every runner saves.

The adapter gives a library a scheduler view's discrete action set with its feasibility mask, the
world's reward r = 1/L + P, and nothing of ``info``; it keeps the censored feedback of each
episode for the training records. Observation normalisation, seeding
and the saved random state are here too, so the three runners differ only in their library.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any, NamedTuple, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from environments.learner import EpisodeSpec
from environments.scheduler import SchedulerView

__all__ = [
    "MASKED_LOGIT",
    "EpisodeLog",
    "RandomState",
    "LibraryEnv",
    "check_round",
    "check_seeds",
    "episode_length",
    "finished_episode",
    "validate",
]

#: Logit given to an infeasible action by the masking glue of policies whose library class has no
#: mask: finite, so ``0 * logit`` stays 0 in entropies, and low enough that its probability is 0.0.
MASKED_LOGIT = -1e8


class EpisodeLog(NamedTuple):
    """One played episode as a runner reports it.

    Attributes
    ----------
    outcomes : list of dict
        The censored feedback of every decision, as a scheduler observes it.
    decision_s : list of float
        Wall-clock seconds of the policy's forward pass per decision; in vectorised training one
        batched pass decides for every env at once and each decision is charged its share.
    learn_stat : float
        Mean training loss over the gradient steps of the round (NaN when there were none).
    """

    outcomes: list[dict[str, Any]]
    decision_s: list[float]
    learn_stat: float


def episode_length(env: LibraryEnv) -> int:
    """Decisions per episode of the world behind ``env`` (every episode has exactly this many)."""
    return int(env.view.tasks_per_episode)


def check_round(name: str, n_envs: int, episode_len: int, steps_per_update: int) -> None:
    """Reject a vectorisation that would not end a round of episodes exactly on an update.

    Parameters
    ----------
    name : str
        The algorithm (for the message).
    n_envs : int
        Envs played at once (one episode each per round).
    episode_len : int
        Decisions per episode.
    steps_per_update : int
        Vector steps (decisions per env) between two updates.
    """
    if n_envs < 1:
        raise ValueError(f"{name}: n_envs must be >= 1, got {n_envs}")
    if steps_per_update < 1 or episode_len % steps_per_update:
        raise ValueError(
            f"{name}: {steps_per_update} steps per env between updates must divide the episode "
            f"length {episode_len}, so that every round of episodes ends on an update"
        )


def check_seeds(name: str, n_envs: int, episodes: Sequence[EpisodeSpec]) -> None:
    """Reject a round whose episodes are not one per vectorised env."""
    if len(episodes) != n_envs:
        raise ValueError(
            f"{name} plays {n_envs} envs per round (n_envs), got {len(episodes)} episodes "
            f"{[e.env_seed for e in episodes]}"
        )


def validate(config: Any, checks: Sequence[tuple[bool, str]]) -> None:
    """Raise ``ValueError`` naming the config and its values at the first failed check.

    Parameters
    ----------
    config : dataclass instance
    checks : sequence of (bool, str)
        Condition and the message when it fails.
    """
    for ok, message in checks:
        if not ok:
            raise ValueError(f"{type(config).__name__}: {message}; got {asdict(config)}")


class LibraryEnv(gym.Wrapper):  # type: ignore[type-arg]
    """A scheduler view as a deep-RL library sees it: discrete actions, the mask, the reward.

    Wraps a :class:`~environments.SchedulerView` and passes on its observation (plain or
    informed features), the world's reward ``r = 1/L + P`` (0 for a failed task) and
    termination. ``info`` reaches the library empty: it sees no outcome beyond the reward. The
    censored feedback of every finished episode is kept in :attr:`finished` for the training
    records, and the feasibility mask of the next decision in :attr:`mask` (also
    :meth:`action_masks`, the sb3-contrib convention).

    Parameters
    ----------
    view : SchedulerView
    dict_obs : bool
        Return ``{"obs": observation, "mask": mask}`` (the tianshou convention for masked
        discrete policies) instead of the observation alone.
    obs_stats : object, optional
        Running mean/std with an ``update(batch)`` method, fed every raw observation while
        :attr:`update_stats` is True (observation normalisation statistics of training).
    """

    def __init__(self, view: SchedulerView, dict_obs: bool = False, obs_stats: Any = None) -> None:
        super().__init__(view)
        self.view = view
        self.n_actions = view.n_actions
        self.dict_obs = dict_obs
        self.obs_stats = obs_stats
        self.update_stats = obs_stats is not None
        box = view.observation_space
        self.observation_space = (
            spaces.Dict({"obs": box, "mask": spaces.MultiBinary(self.n_actions)})
            if dict_obs
            else box
        )
        self.action_space = spaces.Discrete(self.n_actions)
        self.mask = np.ones(self.n_actions, dtype=bool)
        #: Feedback of the episodes finished since :meth:`take_finished` (a vectorised library
        #: resets an env as soon as its episode ends, before the runner reads it).
        self.finished: list[list[dict[str, Any]]] = []
        self._next: EpisodeSpec | None = None

    def set_next_episode(self, episode: EpisodeSpec) -> None:
        """Seed the next :meth:`reset` and set its world phase (vectorised envs reset them all
        without per-env seeds)."""
        self._next = episode

    def action_masks(self) -> np.ndarray:
        """Feasible actions of the current decision, shape (n_actions,), bool."""
        return self.mask.copy()

    def _out(self, obs: np.ndarray) -> Any:
        if self.update_stats:
            self.obs_stats.update(np.asarray(obs, dtype=np.float64)[None, :])
        if self.dict_obs:
            return {"obs": obs, "mask": self.mask.astype(np.int8)}
        return obs

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset (with the episode of :meth:`set_next_episode` when no seed is given)."""
        if kwargs.get("seed") is None and self._next is not None:
            kwargs["seed"] = int(self._next.env_seed)
            kwargs["options"] = self._next.options
        self._next = None
        obs, info = self.view.reset(**kwargs)
        self.mask = np.asarray(info["action_mask"], dtype=bool)
        return self._out(obs), {}

    def take_finished(self) -> list[list[dict[str, Any]]]:
        """Feedback of the episodes finished since the last call, oldest first."""
        out, self.finished = self.finished, []
        return out

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Play one discrete action; the library gets ``{}`` as info."""
        obs, reward, terminated, truncated, info = self.view.step(int(np.asarray(action)))
        self.mask = np.asarray(info["action_mask"], dtype=bool)
        if terminated or truncated:
            self.finished.append(self.view.outcomes())
        return self._out(obs), float(reward), bool(terminated), bool(truncated), {}


class RandomState:
    """The global generators a library draws from (python ``random``, NumPy's legacy global
    generator, torch), owned by one runner.

    tianshou and stable-baselines3 draw exploration, minibatches and prioritised samples from
    these globals. A runner keeps its own copy and swaps it in around every library call
    (:meth:`active`), so runners do not disturb each other or the caller and a checkpoint holds
    everything needed to continue bit-identically.

    Parameters
    ----------
    seed : int
        Seeds all three generators.
    """

    def __init__(self, seed: int) -> None:
        saved = self.capture()
        random.seed(seed)
        np.random.seed(seed % 2**32)  # noqa: NPY002 (the libraries draw from it)
        torch.manual_seed(seed)
        self.state = self.capture()
        self.restore(saved)

    @staticmethod
    def capture() -> dict[str, Any]:
        """The current global generator states."""
        state: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),  # noqa: NPY002
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    @staticmethod
    def restore(state: dict[str, Any]) -> None:
        """Set the global generators to ``state``."""
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])  # noqa: NPY002
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    @contextmanager
    def active(self, keep: bool = True) -> Iterator[None]:
        """Run a block on this runner's generators, then give the caller's back.

        Parameters
        ----------
        keep : bool
            Keep what the block drew (training); False leaves this state as it was (evaluation).
        """
        outside = self.capture()
        self.restore(self.state)
        try:
            yield
        finally:
            if keep:
                self.state = self.capture()
            self.restore(outside)


class ForwardTimer:
    """Wall-clock time of a module's forward passes while :attr:`enabled` (decision times).

    Parameters
    ----------
    module : torch.nn.Module
        The module whose call chooses actions (the library's policy object).
    """

    def __init__(self, module: torch.nn.Module) -> None:
        self.enabled = False
        self.calls: list[float] = []
        self._t0 = math.nan
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, *_: Any) -> None:
        if self.enabled:
            self._t0 = time.perf_counter()

    def _post(self, *_: Any) -> None:
        if self.enabled:
            self.calls.append(time.perf_counter() - self._t0)

    def take(self) -> list[float]:
        """The recorded times, emptied."""
        out, self.calls = self.calls, []
        return out


def per_decision(batched_s: list[float], n_envs: int, episode_len: int) -> list[list[float]]:
    """Spread batched forward times over the envs: env -> one time per decision.

    Parameters
    ----------
    batched_s : list of float
        One time per vector step (one batched pass over ``n_envs`` envs), ``episode_len`` of them.
    n_envs : int
    episode_len : int

    Returns
    -------
    list of list of float
        Shape (n_envs, episode_len): each decision is charged ``time / n_envs``.
    """
    times = list(batched_s)[:episode_len]
    times += [math.nan] * (episode_len - len(times))
    return [[t / n_envs for t in times] for _ in range(n_envs)]


def finished_episode(view: LibraryEnv) -> list[dict[str, Any]]:
    """The feedback of the one episode ``view`` finished in this round (an error otherwise)."""
    done = view.take_finished()
    if len(done) != 1:
        raise RuntimeError(
            f"an env finished {len(done)} episodes in one round, expected exactly 1 "
            "(episodes of the offloading world all have tasks_per_episode decisions)"
        )
    return done[0]


def play_greedy(
    view: LibraryEnv, episode: EpisodeSpec, choose: Callable[[Any, np.ndarray], int]
) -> tuple[list[dict[str, Any]], list[float]]:
    """Play one episode choosing ``choose(observation, mask)`` (a deterministic policy).

    Returns
    -------
    outcomes : list of dict
        The censored feedback of every decision.
    decision_s : list of float
        Seconds each call of ``choose`` took.
    """
    obs, _ = view.reset(seed=int(episode.env_seed), options=episode.options)
    decision_s: list[float] = []
    done = False
    while not done:
        t0 = time.perf_counter()
        action = choose(obs, view.action_masks())
        decision_s.append(time.perf_counter() - t0)
        obs, _, terminated, truncated, _ = view.step(action)
        done = terminated or truncated
    return finished_episode(view), decision_s
