"""Deep-RL baselines for `aif train`: Rainbow DQN, PPO and SAC behind the learner protocol.

Each learner builds its algorithm's runner (``baselines.drl``) from a run configuration and a seed,
with the run's settings validated against the algorithm's config dataclass. A round trains one
episode in each vectorised env; libraries are imported only when a learner is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from experiments.learners import Episode
from experiments.runconfig import TrainConfig, apply_settings, make_env

__all__ = [
    "ALGORITHMS",
    "DRLLearner",
    "build_ppo",
    "build_rainbow",
    "build_sac",
    "drl_config",
    "evaluation_summary",
]


@dataclass(frozen=True)
class _Algorithm:
    module: str
    config: str
    runner: str


#: Learner name -> where its configuration and runner live.
ALGORITHMS: dict[str, _Algorithm] = {
    "rainbow": _Algorithm("baselines.drl.rainbow", "RainbowConfig", "RainbowRunner"),
    "ppo": _Algorithm("baselines.drl.ppo", "PPOConfig", "PPORunner"),
    "sac": _Algorithm("baselines.drl.sac", "SACConfig", "SACRunner"),
}


def drl_config(config: TrainConfig, algorithm: str) -> Any:
    """The algorithm's config dataclass: its defaults under the run's settings.

    Parameters
    ----------
    config : TrainConfig
        The run; ``config.settings`` name fields of the algorithm's config.
    algorithm : str
        A key of :data:`ALGORITHMS`.
    """
    import importlib

    spec = ALGORITHMS[algorithm]
    defaults = getattr(importlib.import_module(spec.module), spec.config)()
    return apply_settings({"algorithm": defaults}, config.settings_dict, config.agent)["algorithm"]


class DRLLearner:
    """A deep-RL baseline as a learner: rounds of ``n_envs`` vectorised training episodes.

    Parameters
    ----------
    config : TrainConfig
        The run (scenario, t_max, budget, device, settings).
    seed : int
        Seeds the algorithm (networks, exploration, replay sampling).
    algorithm : str
        ``"rainbow"``, ``"ppo"`` or ``"sac"``.
    """

    def __init__(self, config: TrainConfig, seed: int, algorithm: str) -> None:
        import importlib

        torch.set_num_threads(config.threads)
        cfg = drl_config(config, algorithm)
        n = cfg.n_envs
        for name, value in (("--episodes", config.episodes), ("--eval-every", config.eval_every)):
            if value % n:
                raise ValueError(
                    f"{name} {value} is not a multiple of n_envs={n} of {config.agent!r} (one "
                    f"episode per env per round); use a multiple of {n} or --set n_envs=..."
                )
        spec = ALGORITHMS[algorithm]
        runner_cls = getattr(importlib.import_module(spec.module), spec.runner)
        self.config = config
        self.algorithm_config = cfg
        self.runner = runner_cls(cfg, lambda: make_env(config), seed, device=config.device)
        self.episodes_per_round = n
        self.extra_labels: dict[str, tuple[str, list[str]]] = {}

    def train_round(self, env_seeds: Sequence[int]) -> list[Episode]:
        """Play and learn from one episode per env seed (``n_envs`` of them), in order."""
        return [
            Episode(log.infos, log.decision_s, {}, log.learn_stat)
            for log in self.runner.train_round(list(env_seeds))
        ]

    def evaluate(self, env_seed: int, t_max: float | None = None) -> Episode:
        """Play one episode deterministically (most probable feasible action), without learning."""
        env = None if t_max is None else make_env(self.config, t_max=t_max)
        log = self.runner.evaluate(env_seed, env)
        return Episode(log.infos, log.decision_s, {}, log.learn_stat)

    def state_dict(self) -> dict[str, Any]:
        """The runner's whole state (networks, optimisers, buffers, statistics, generators)."""
        return self.runner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict`."""
        self.runner.load_state_dict(state)


def build_rainbow(config: TrainConfig, seed: int) -> DRLLearner:
    """Rainbow DQN (tianshou) for one seed."""
    return DRLLearner(config, seed, "rainbow")


def build_ppo(config: TrainConfig, seed: int) -> DRLLearner:
    """MaskablePPO (sb3-contrib) for one seed."""
    return DRLLearner(config, seed, "ppo")


def build_sac(config: TrainConfig, seed: int) -> DRLLearner:
    """Discrete SAC (tianshou) for one seed."""
    return DRLLearner(config, seed, "sac")


def evaluation_summary(results: Any, after_episode: int) -> dict[str, dict[str, Any]]:
    """Held-out evaluation after ``after_episode`` training episodes, with the references.

    Parameters
    ----------
    results : path or xarray.DataTree
        A ``results.nc`` of `aif train` (or its tree).
    after_episode : int
        An evaluation point of the run (a multiple of its ``eval_every``).

    Returns
    -------
    dict
        policy -> metric -> :class:`~experiments.stats.Interval` (95% bootstrap interval over
        seeds of the per-seed mean over the held-out episodes); the learner first, then the
        reference policies played on the same held-out env seeds.
    """
    import xarray as xr

    from experiments.report import METRICS
    from experiments.stats import mean_interval

    tree = results if isinstance(results, xr.DataTree) else xr.open_datatree(results)
    ev = tree["evaluation"].to_dataset()
    points = [int(p) for p in ev["after_episode"].values]
    if after_episode not in points:
        raise ValueError(f"after_episode={after_episode} is not an evaluation point; have {points}")
    per_seed = ev.sel(after_episode=after_episode).mean("eval_episode")
    out = {str(tree.attrs["agent"]): {m: mean_interval(per_seed[m].values) for m in METRICS}}
    if "references_eval" in tree.children:
        ref = tree["references_eval"].to_dataset().mean("eval_episode")
        for pol in ref["policy"].values:
            out[str(pol)] = {m: mean_interval(ref[m].sel(policy=pol).values) for m in METRICS}
    return out
