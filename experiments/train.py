"""Train the active-inference offloading agent over episodes and seeds, with checkpoints and a DataTree result.

Perceive, plan (CEM over expected free energy), act, store, and refit the ensemble after every episode;
an interrupted run resumes from its last per-episode checkpoint and ends with identical results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from aif.agent import ModelBasedAgent
from aif.cem import CEMConfig
from experiments.atomic import write_atomic
from generative_models.offloading import (
    ModelConfig,
    ObservationLayout,
    OffloadingWorldModel,
    PolicyEFE,
    PreferenceConfig,
    ReadingFilter,
)

__all__ = [
    "AGENT_VARIANTS",
    "TrainConfig",
    "build_agent",
    "episode_seed",
    "make_env",
    "run_training",
    "train_seed",
]

#: Agent variants: the full agent, the ablations (no information gain, env reward in place of
#: rewardless guidance, an ensemble of one member), the agent with randomised prior functions, the
#: agent whose preferred outcome density is proportional to rg (``PreferenceConfig.form``), and an
#: extension with an explicit preference for completion beside rewardless guidance (with prior
#: functions: without them its first run stalled at zero completion).
AGENT_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "aif": {},
    "aif-no-info-gain": {"preferences": {"info_gain_weight": 0.0}},
    "aif-env-reward": {"model": {"guidance": "reward"}},
    "aif-single-member": {"model": {"ensemble_size": 1}},
    "aif-prior-functions": {"model": {"prior_function_scale": 1.0}},
    "aif-proportional": {"preferences": {"form": "proportional"}},
    "aif-completion": {
        "preferences": {"completion_weight": 1.0},
        "model": {"prior_function_scale": 1.0},
    },
}

EFE_TERMS = tuple(PolicyEFE._fields)
METRICS = ("completion_rate", "mean_latency", "mean_pass_at_100", "total_reward")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; two runs with equal configs give equal numbers.

    Parameters
    ----------
    agent : str
        One of :data:`AGENT_VARIANTS`.
    scenario : str
        Scenario preset (``"paper"`` or ``"large"``).
    t_max : float
        Task deadline in seconds.
    episodes : int
        Episodes per seed.
    seeds : tuple of int
        One independent run per seed.
    tasks_per_episode : int or None
        Override of the preset's tasks per episode.
    planner, model, preferences
        Settings of the CEM planner, the ensemble model and the EFE weights.
    threads : int
        torch intra-op threads (1 keeps runs bit-reproducible and matches the one-core targets).
    obs_noise : float
        Standard deviation of the noise on server readings (partial observability; 0 = exact
        readings). The agent is told this sensor specification and perceives through a
        :class:`~generative_models.offloading.ReadingFilter`.
    obs_delay : int
        Decisions by which server readings lag (partial observability).
    """

    agent: str = "aif"
    scenario: str = "paper"
    t_max: float = 15.0
    episodes: int = 100
    seeds: tuple[int, ...] = (0, 1, 2)
    tasks_per_episode: int | None = None
    planner: CEMConfig = field(default_factory=CEMConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    preferences: PreferenceConfig = field(default_factory=PreferenceConfig)
    threads: int = 1
    obs_noise: float = 0.0
    obs_delay: int = 0

    def __post_init__(self) -> None:
        if self.agent not in AGENT_VARIANTS:
            raise ValueError(
                f"agent {self.agent!r} is unknown; expected one of {sorted(AGENT_VARIANTS)}"
            )
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes!r}")
        if not self.seeds:
            raise ValueError("seeds must hold at least one seed, got an empty tuple")
        if not self.t_max > 0:
            raise ValueError(f"t_max must be > 0 seconds, got {self.t_max!r}")
        if not 0 <= self.obs_noise <= 1:
            raise ValueError(f"obs_noise must lie in [0, 1], got {self.obs_noise!r}")
        if self.obs_delay < 0:
            raise ValueError(f"obs_delay must be >= 0, got {self.obs_delay!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads!r}")

    @classmethod
    def for_agent(cls, agent: str, **kwargs: Any) -> TrainConfig:
        """Config of a named variant, with the variant's overrides applied to the sub-configs."""
        if agent not in AGENT_VARIANTS:
            raise ValueError(
                f"agent {agent!r} is unknown; expected one of {sorted(AGENT_VARIANTS)}"
            )
        base = cls(agent=agent, **kwargs)
        over = AGENT_VARIANTS[agent]
        return replace(
            base,
            model=replace(base.model, **over.get("model", {})),
            preferences=replace(base.preferences, **over.get("preferences", {})),
            planner=replace(base.planner, **over.get("planner", {})),
        )

    def to_json(self) -> str:
        """Canonical JSON of the config (used to match checkpoints to runs)."""
        return json.dumps(asdict(self), sort_keys=True, default=str)

    def digest(self, seed: int) -> str:
        """Hash of everything that determines the run of one seed (the seed list itself excluded)."""
        d = asdict(self)
        d.pop("seeds")
        d.pop("episodes")
        return hashlib.sha256(
            json.dumps([d, seed], sort_keys=True, default=str).encode()
        ).hexdigest()


def episode_seed(seed: int, episode: int) -> int:
    """Env seed of episode ``episode`` of run ``seed``; the same for every method compared on it."""
    return int(np.random.SeedSequence([int(seed), int(episode)]).generate_state(1)[0])


def make_env(config: TrainConfig) -> Any:
    """The registered environment of the config's scenario, with its t_max."""
    import gymnasium as gym

    import environments  # noqa: F401  (registers the ids)
    from environments import ENV_IDS

    env_id = {preset: env_id for env_id, preset in ENV_IDS.items()}.get(config.scenario)
    if env_id is None:
        raise ValueError(
            f"scenario {config.scenario!r} is unknown; expected one of {sorted(ENV_IDS.values())}"
        )
    kwargs: dict[str, Any] = {"t_max": config.t_max}
    if config.tasks_per_episode is not None:
        kwargs["tasks_per_episode"] = config.tasks_per_episode
    if config.obs_noise > 0 or config.obs_delay > 0:
        kwargs["partial_observability"] = {
            "noise_std": config.obs_noise,
            "delay_steps": config.obs_delay,
        }
    return gym.make(env_id, disable_env_checker=True, **kwargs).unwrapped


def build_agent(config: TrainConfig, env: Any, seed: int) -> ModelBasedAgent:
    """The agent of a config for an environment: layout from the env, model and planner seeded."""
    n_servers = int(env.action_space["server"].n)
    layout = ObservationLayout.from_mapping(env.obs_layout, n_servers)
    model = OffloadingWorldModel(layout, config.model, config.preferences, seed=seed)
    # A zero share is allowed: the env rejects such a task at once without holding resources, which is
    # the right move for a task that cannot complete anyway.
    return ModelBasedAgent(model, n_servers, 3, config.planner, seed=seed + 7919, low=0.0)


# ---------------------------------------------------------------------- checkpoints
def _atomic_torch_save(obj: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def _agent_state(agent: ModelBasedAgent) -> dict[str, Any]:
    model = agent.model
    assert isinstance(model, OffloadingWorldModel)
    return {
        "model": model.state_dict(),
        "data": {k: list(v) for k, v in vars(model.data).items()},
        "model_rng": model.generator.get_state(),
        "agent_rng": agent.generator.get_state(),
        "vfe_trace": list(model.vfe_trace),
        "n_fits": model.n_fits,
    }


def _load_agent_state(agent: ModelBasedAgent, state: dict[str, Any]) -> None:
    model = agent.model
    assert isinstance(model, OffloadingWorldModel)
    model.load_state_dict(state["model"])
    for k, v in state["data"].items():
        setattr(model.data, k, list(v))
    model.generator.set_state(state["model_rng"])
    agent.generator.set_state(state["agent_rng"])
    model.vfe_trace = list(state["vfe_trace"])
    model.n_fits = int(state["n_fits"])


# ---------------------------------------------------------------------- one seed
def run_episode(
    agent: ModelBasedAgent, env: Any, env_seed: int, obs_noise: float = 0.0
) -> dict[str, Any]:
    """Play one episode with learning data stored (not yet refitted); returns its records.

    With ``obs_noise > 0`` the agent perceives through a :class:`ReadingFilter` and decides, stores and
    learns on its perceived observations.
    """
    model = agent.model
    assert isinstance(model, OffloadingWorldModel)
    obs, _ = env.reset(seed=env_seed)
    obs_t = torch.as_tensor(obs, dtype=torch.float32)
    perception = ReadingFilter(model, obs_noise) if obs_noise > 0 else None
    if perception is not None:
        obs_t = perception.reset(obs_t)
    rec: dict[str, Any] = {
        "server": [],
        "completed": [],
        "latency": [],
        "pass_at_100": [],
        "reward": [],
        "decision_s": [],
        "efe_parts": [],
        "shares": [],
    }
    infos = []
    done = False
    while not done:
        t0 = time.perf_counter()
        decision = agent.act(obs_t)
        rec["decision_s"].append(time.perf_counter() - t0)
        shares = model.to_shares(obs_t, decision.choice, decision.vector)
        action = {"server": decision.choice, "shares": shares.numpy().astype(np.float32)}
        obs2, reward, terminated, truncated, info = env.step(action)
        done = bool(terminated or truncated)
        obs2_t = torch.as_tensor(obs2, dtype=torch.float32)
        if perception is not None and not done:
            obs2_t = perception.step(obs_t, decision.choice, shares, obs2_t)
        completed = bool(info["completed"])
        # A failed task is censored: its latency and accuracy are never observed.
        latency = float(info["latency"]) if completed else math.inf
        accuracy = float(info["pass_at_100"]) if completed else math.nan
        model.add(
            obs_t,
            decision.choice,
            shares,
            completed,
            latency,
            accuracy if completed else 0.0,
            float(reward),
            None if done else obs2_t,
        )
        infos.append(info)
        rec["server"].append(decision.choice)
        rec["completed"].append(completed)
        rec["latency"].append(latency if completed else np.nan)
        rec["pass_at_100"].append(accuracy)
        rec["reward"].append(float(reward))
        rec["efe_parts"].append([decision.parts[k] for k in EFE_TERMS])
        rec["shares"].append(shares.tolist())
        obs_t = obs2_t
    from environments import episode_metrics

    m = episode_metrics(infos)
    rec["metrics"] = {k: float(getattr(m, k)) for k in METRICS}
    return rec


def train_seed(
    config: TrainConfig,
    seed: int,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    on_episode: Callable[[int, int, float], None] | None = None,
) -> list[dict[str, Any]]:
    """Train one seed for ``config.episodes`` episodes, resuming from a checkpoint when there is one.

    Parameters
    ----------
    config : TrainConfig
        The run.
    seed : int
        The seed (agent initialisation, planner sampling and the env seeds of the episodes).
    checkpoint_dir : Path, optional
        Where ``seed{seed}.pt`` is written after every episode (atomically).
    progress : bool
        Show a progress bar.
    stop_after : int, optional
        Stop after this many episodes in this call (for tests of resumption).
    on_episode : callable, optional
        Called as ``on_episode(seed, episodes_done, completion_rate)`` after every checkpointed
        episode (progress reporting from cluster workers).

    Returns
    -------
    list of dict
        One record per episode (metrics, per-decision EFE parts, choices, final VFE of the refit).
    """
    from tqdm.auto import tqdm

    torch.set_num_threads(config.threads)
    env = make_env(config)
    agent = build_agent(config, env, seed)
    records: list[dict[str, Any]] = []
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"seed{seed}.pt"
    digest = config.digest(seed)
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state.get("digest") != digest:
            raise ValueError(
                f"checkpoint {ckpt} belongs to a different configuration; "
                "use another --out folder or delete it"
            )
        _load_agent_state(agent, state["agent"])
        records = state["records"]
    start = len(records)
    bar = tqdm(
        range(start, config.episodes),
        initial=start,
        total=config.episodes,
        desc=f"{config.agent} seed {seed}",
        disable=not progress,
        leave=False,
    )
    done_now = 0
    for ep in bar:
        rec = run_episode(agent, env, episode_seed(seed, ep), config.obs_noise)
        trace = agent.learn()
        rec["vfe"] = float(trace[-1]) if trace else float("nan")
        records.append(rec)
        bar.set_postfix(completion=f"{rec['metrics']['completion_rate']:.2f}")
        if ckpt is not None:
            _atomic_torch_save(
                {"digest": digest, "agent": _agent_state(agent), "records": records}, ckpt
            )
        done_now += 1
        if on_episode is not None:
            on_episode(seed, len(records), rec["metrics"]["completion_rate"])
        if stop_after is not None and done_now >= stop_after:
            break
    env.close()
    return records


# ---------------------------------------------------------------------- results
def records_to_datatree(
    config: TrainConfig,
    records: dict[int, list[dict[str, Any]]],
    references: xr.Dataset | None = None,
) -> xr.DataTree:
    """Labelled results: ``/episodes`` (seed, episode), ``/decisions`` (seed, episode, task, term).

    Parameters
    ----------
    config : TrainConfig
        The run (stored as JSON in the root attributes).
    records : dict
        seed -> per-episode records from :func:`train_seed`.
    references : xarray.Dataset, optional
        Reference-policy metrics on the same episode seeds, stored as ``/references``.
    """
    seeds = sorted(records)
    n_ep = min(len(records[s]) for s in seeds)
    n_task = max(len(r["server"]) for s in seeds for r in records[s][:n_ep])

    def pad(values: list[Any], fill: Any) -> list[Any]:
        return list(values) + [fill] * (n_task - len(values))

    ep_vars: dict[str, Any] = {}
    for k in METRICS:
        ep_vars[k] = (
            ("seed", "episode"),
            [[r["metrics"][k] for r in records[s][:n_ep]] for s in seeds],
        )
    ep_vars["vfe"] = (("seed", "episode"), [[r["vfe"] for r in records[s][:n_ep]] for s in seeds])
    ep_vars["median_decision_ms"] = (
        ("seed", "episode"),
        [[1e3 * float(np.median(r["decision_s"])) for r in records[s][:n_ep]] for s in seeds],
    )
    episodes = xr.Dataset(ep_vars, coords={"seed": seeds, "episode": np.arange(n_ep)})
    nan_parts = [np.nan] * len(EFE_TERMS)
    dec = xr.Dataset(
        {
            "server": (
                ("seed", "episode", "task"),
                [[pad(r["server"], -1) for r in records[s][:n_ep]] for s in seeds],
            ),
            "completed": (
                ("seed", "episode", "task"),
                [
                    [pad([float(c) for c in r["completed"]], np.nan) for r in records[s][:n_ep]]
                    for s in seeds
                ],
            ),
            "latency": (
                ("seed", "episode", "task"),
                [[pad(r["latency"], np.nan) for r in records[s][:n_ep]] for s in seeds],
            ),
            "pass_at_100": (
                ("seed", "episode", "task"),
                [[pad(r["pass_at_100"], np.nan) for r in records[s][:n_ep]] for s in seeds],
            ),
            "shares": (
                ("seed", "episode", "task", "resource"),
                [[pad(r["shares"], [np.nan] * 3) for r in records[s][:n_ep]] for s in seeds],
            ),
            "efe_parts": (
                ("seed", "episode", "task", "term"),
                [[pad(r["efe_parts"], nan_parts) for r in records[s][:n_ep]] for s in seeds],
            ),
        },
        coords={
            "seed": seeds,
            "episode": np.arange(n_ep),
            "task": np.arange(n_task),
            "term": list(EFE_TERMS),
            "resource": ["compute", "bandwidth", "memory"],
        },
    )
    children = {"episodes": xr.DataTree(episodes), "decisions": xr.DataTree(dec)}
    if references is not None:
        children["references"] = xr.DataTree(references)
    tree = xr.DataTree(
        xr.Dataset(attrs={"config": config.to_json(), "agent": config.agent}), children=children
    )
    return tree


def write_results(tree: xr.DataTree, path: Path) -> None:
    """Write a results DataTree to netCDF atomically."""
    write_atomic(path, lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf"))


def evaluate_references(
    config: TrainConfig, policies: Sequence[str], n_episodes: int
) -> xr.Dataset:
    """Metrics of reference policies on the last ``n_episodes`` env seeds of every training seed."""
    from baselines import make_policy
    from environments import episode_metrics

    env = make_env(config)
    eps = list(range(max(0, config.episodes - n_episodes), config.episodes))
    out = np.full((len(policies), len(config.seeds), len(eps), len(METRICS)), np.nan)
    for i, name in enumerate(policies):
        for j, seed in enumerate(config.seeds):
            for k, ep in enumerate(eps):
                pol = make_policy(name)
                es = episode_seed(seed, ep)
                pol.reset(es)
                obs, _ = env.reset(seed=es)
                infos = []
                done = False
                while not done:
                    obs, _, term, trunc, info = env.step(pol.act(env, obs))
                    infos.append(info)
                    done = bool(term or trunc)
                m = episode_metrics(infos)
                out[i, j, k] = [getattr(m, x) for x in METRICS]
    env.close()
    return xr.Dataset(
        {x: (("policy", "seed", "episode"), out[..., n]) for n, x in enumerate(METRICS)},
        coords={"policy": list(policies), "seed": list(config.seeds), "episode": eps},
    )


def run_training(
    config: TrainConfig,
    out: Path,
    references: Sequence[str] = (),
    reference_episodes: int = 10,
    progress: bool = True,
    workers: int = 1,
    scheduler: str | None = None,
) -> xr.DataTree:
    """Train every seed (resuming from ``out``'s checkpoints) and write ``out/results.nc``.

    Parameters
    ----------
    config : TrainConfig
        The run.
    out : Path
        Run folder (``checkpoints/``, ``results.nc``).
    references : sequence of str
        Reference policies evaluated on the same env seeds.
    reference_episodes : int
        How many of the last episodes of each seed the references are evaluated on.
    progress : bool
        Show progress bars.
    workers : int
        Seeds trained at once: ``1`` runs them in this process; more starts a Dask ``LocalCluster`` with
        that many single-threaded worker processes.
    scheduler : str, optional
        Address of a running Dask scheduler to use instead of a local cluster.
    """
    out = Path(out)
    ckpt = out / "checkpoints"
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    if workers == 1 and scheduler is None:
        records = {
            s: train_seed(config, s, checkpoint_dir=ckpt, progress=progress) for s in config.seeds
        }
    else:
        records = _train_on_dask(config, ckpt, progress, workers, scheduler)
    ref = (
        evaluate_references(config, references, min(reference_episodes, config.episodes))
        if references
        else None
    )
    tree = records_to_datatree(config, records, ref)
    write_results(tree, out / "results.nc")
    return tree


def _report_episode(queue: Any, seed: int, n: int, completion: float) -> None:
    queue.put((seed, n, completion))


def _drain(queue: Any) -> list[tuple[int, int, float]]:
    """Every message waiting on ``queue`` (returns at once)."""
    return [tuple(m) for m in queue.get(batch=True)]


def _train_on_dask(
    config: TrainConfig, ckpt: Path, progress: bool, workers: int, scheduler: str | None
) -> dict[int, list[dict[str, Any]]]:
    """One task per seed on a Dask cluster; every seed still checkpoints after each episode."""
    from dask.distributed import Client, LocalCluster, Queue
    from tqdm.auto import tqdm

    if scheduler is not None:
        client = Client(scheduler)
        cluster = None
    else:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            # Any free port: its HTTP server starts even without a dashboard, and 8787 may be taken.
            dashboard_address=":0",
            # Shutdown chatter (workers killed after their last task) is not the user's business.
            silence_logs=logging.ERROR,
        )
        client = Client(cluster)
    try:
        # Workers report every finished episode on a queue; the bar counts episodes over all seeds.
        queue = Queue(client=client)
        report = partial(_report_episode, queue)
        futures = {
            client.submit(
                train_seed, config, s, ckpt, False, None, report, pure=False, key=f"seed-{s}"
            ): s
            for s in config.seeds
        }
        total = config.episodes * len(config.seeds)
        bar = tqdm(total=total, desc=f"{config.agent} episodes", disable=not progress)
        done: dict[int, int] = {}
        last: dict[int, float] = {}
        while True:
            finished = all(f.done() for f in futures)
            for seed, n, completion in _drain(queue):
                done[seed], last[seed] = n, completion
            if last:
                bar.update(sum(done.values()) - bar.n)
                bar.set_postfix(completion=" ".join(f"{last[k]:.2f}" for k in sorted(last)))
            if finished:
                break
            time.sleep(1.0)
        records = {futures[f]: f.result() for f in futures}
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return records
