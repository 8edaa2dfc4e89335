"""Train any registered learner over episodes and seeds, with checkpoints and a DataTree result.

Every learner (active-inference agent or deep-RL baseline) plays the same training env seeds,
is evaluated on the same held-out seeds every ``eval_every`` episodes, checkpoints after every
round of episodes, and resumes from there to identical numbers after an interruption.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from environments.learner import Episode, EpisodeSpec, Learner
from experiments.atomic import write_atomic
from experiments.runconfig import TrainConfig, episode_seed, eval_seed, make_env
from learners import build_learner, learner_names, learner_spec

__all__ = [
    "METRICS",
    "RunMismatchError",
    "TrainConfig",
    "episode_record",
    "evaluate_references",
    "load_checkpoint",
    "records_to_datatree",
    "run_training",
    "train_seed",
    "write_results",
]

#: Per-episode metrics stored and reported.
METRICS = ("completion_rate", "mean_latency", "mean_pass_at_100", "total_reward", "cloud_share")


class RunMismatchError(ValueError):
    """A run folder or checkpoint belongs to other settings than the ones asked for."""


# ---------------------------------------------------------------------- records
def episode_record(episode: Episode, env_seed: int) -> dict[str, Any]:
    """The stored record of one played episode: metrics, per-decision outcomes and extras."""
    from environments import episode_metrics

    m = episode_metrics(episode.outcomes)
    infos = episode.outcomes
    return {
        "env_seed": int(env_seed),
        "metrics": {k: float(getattr(m, k)) for k in METRICS},
        "learn_stat": float(episode.learn_stat),
        "median_decision_ms": 1e3 * float(np.median(episode.decision_s))
        if episode.decision_s
        else math.nan,
        "server": [int(i["server"]) for i in infos],
        "completed": [bool(i["completed"]) for i in infos],
        "latency": [math.nan if i["latency"] is None else float(i["latency"]) for i in infos],
        "pass_at_100": [
            math.nan if i["pass_at_100"] is None else float(i["pass_at_100"]) for i in infos
        ],
        "reward": [float(i["reward"]) for i in infos],
        "shares": [np.asarray(i["shares"], float).tolist() for i in infos],
        "extras": {k: [list(map(float, row)) for row in v] for k, v in episode.extras.items()},
    }


# ---------------------------------------------------------------------- checkpoints
def _atomic_torch_save(obj: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint, with a one-line error for a truncated or foreign file."""
    try:
        state = torch.load(path, weights_only=False)
    except Exception as err:  # torch raises several kinds for a damaged file
        raise RunMismatchError(
            f"checkpoint {path} cannot be read ({type(err).__name__}); delete it to start that "
            "seed again, or use another --out folder"
        ) from None
    if not isinstance(state, dict) or not {"digest", "learner", "records", "evals"} <= set(state):
        raise RunMismatchError(
            f"checkpoint {path} is not a checkpoint of `aif train`; delete it or use another --out"
        )
    return state


# ---------------------------------------------------------------------- one seed
def check_rounds(config: TrainConfig, learner: Learner) -> Learner:
    """``learner``, after checking that the budget and evaluation points fall on its rounds."""
    n = learner.episodes_per_round
    for name, value in (("--episodes", config.episodes), ("--eval-every", config.eval_every)):
        if value % n:
            raise ValueError(
                f"{name} {value} is not a multiple of n_envs={n} of {config.agent!r} (one "
                f"episode per env per round); use a multiple of {n} or --set n_envs=..."
            )
    return learner


def _evaluate(learner: Learner, config: TrainConfig, seed: int, after: int) -> list[dict[str, Any]]:
    """Held-out episodes after ``after`` training episodes (in the world's phase of then)."""
    return [
        episode_record(learner.evaluate(EpisodeSpec(eval_seed(seed, k), after)), eval_seed(seed, k))
        for k in range(config.eval_episodes)
    ]


def train_seed(
    config: TrainConfig,
    seed: int,
    checkpoint_dir: Path | None = None,
    progress: bool = False,
    stop_after: int | None = None,
    on_episode: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train one seed for ``config.episodes`` episodes, resuming from a checkpoint when there is one.

    Parameters
    ----------
    config : TrainConfig
        The run.
    seed : int
        The seed (learner initialisation and the env seeds of its episodes).
    checkpoint_dir : Path, optional
        Where ``seed{seed}.pt`` is written after every round of episodes (atomically).
    progress : bool
        Print progress lines (single-process runs).
    stop_after : int, optional
        Stop after this many rounds in this call (for tests of resumption).
    on_episode : callable, optional
        Called as ``on_episode(seed, episodes_done, completion_rate)`` after every checkpointed
        round (progress reporting from cluster workers).

    Returns
    -------
    dict
        ``records`` (one per training episode), ``evals`` (after-episode -> records of the
        held-out episodes) and ``extra_labels`` of the learner.
    """
    from experiments.progress import ProgressReporter

    torch.set_num_threads(config.threads)
    learner = check_rounds(config, build_learner(config.context(), seed))
    records: list[dict[str, Any]] = []
    evals: dict[int, list[dict[str, Any]]] = {}
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir) / f"seed{seed}.pt"
    digest = config.digest(seed)
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["digest"] != digest:
            raise RunMismatchError(
                f"checkpoint {ckpt} belongs to a different configuration; use another --out "
                "folder or delete it"
            )
        if len(state["records"]) > config.episodes:
            raise RunMismatchError(
                f"checkpoint {ckpt} already holds {len(state['records'])} episodes, more than "
                f"--episodes {config.episodes}; ask for at least that many or use another --out"
            )
        learner.load_state_dict(state["learner"])
        records, evals = state["records"], {int(k): v for k, v in state["evals"].items()}

    def is_point(done: int) -> bool:
        # config.eval_points() without its list: --episodes may be huge.
        every = config.eval_every
        return every > 0 and (done % every == 0 or done == config.episodes)

    rounds = 0
    # Episodes loaded from a checkpoint count as done and stay out of the ETA.
    with ProgressReporter(
        config.episodes, f"{config.agent} seed {seed}", enabled=progress, initial=len(records)
    ) as bar:
        while True:
            done = len(records)
            if is_point(done) and done not in evals:
                evals[done] = _evaluate(learner, config, seed, done)
            if done >= config.episodes or (stop_after is not None and rounds >= stop_after):
                break
            n = min(learner.episodes_per_round, config.episodes - done)
            specs = [EpisodeSpec(episode_seed(seed, done + k), done + k) for k in range(n)]
            for episode, spec in zip(learner.train_round(specs), specs, strict=True):
                records.append(episode_record(episode, spec.env_seed))
            done = len(records)
            if is_point(done) and done not in evals:
                evals[done] = _evaluate(learner, config, seed, done)
            if ckpt is not None:
                _atomic_torch_save(
                    {
                        "digest": digest,
                        "learner": learner.state_dict(),
                        "records": records,
                        "evals": evals,
                    },
                    ckpt,
                )
            rounds += 1
            last = records[-1]["metrics"]["completion_rate"]
            bar.update(done, f"completion {last:.2f}")
            if on_episode is not None:
                on_episode(seed, done, last)
    return {"records": records, "evals": evals, "extra_labels": learner.extra_labels}


# ---------------------------------------------------------------------- results
def _decisions(
    runs: dict[int, list[dict[str, Any]]],
    episode_dim: str,
    extra_labels: dict[str, tuple[str, list[str]]],
) -> xr.Dataset:
    """Per-decision arrays of records, dims (seed, ``episode_dim``, task[, label dim])."""
    seeds = sorted(runs)
    n_ep = min(len(runs[s]) for s in seeds)
    n_task = max((len(r["server"]) for s in seeds for r in runs[s][:n_ep]), default=0)

    def stack(key: str, fill: Any, width: int | None = None) -> np.ndarray:
        shape = (len(seeds), n_ep, n_task) + (() if width is None else (width,))
        out = np.full(shape, fill, dtype=float)
        for i, s in enumerate(seeds):
            for e, r in enumerate(runs[s][:n_ep]):
                values = r[key] if key in r else r["extras"][key]
                if len(values):
                    out[i, e, : len(values)] = np.asarray(values, dtype=float)
        return out

    data: dict[str, Any] = {
        "server": (("seed", episode_dim, "task"), stack("server", -1).astype(np.int64)),
        "completed": (("seed", episode_dim, "task"), stack("completed", np.nan)),
        "latency": (("seed", episode_dim, "task"), stack("latency", np.nan)),
        "pass_at_100": (("seed", episode_dim, "task"), stack("pass_at_100", np.nan)),
        "reward": (("seed", episode_dim, "task"), stack("reward", np.nan)),
        "shares": (("seed", episode_dim, "task", "resource"), stack("shares", np.nan, 3)),
    }
    coords: dict[str, Any] = {
        "seed": seeds,
        episode_dim: np.arange(n_ep),
        "task": np.arange(n_task),
        "resource": ["compute", "bandwidth", "memory"],
    }
    for key, (dim, labels) in extra_labels.items():
        data[key] = (("seed", episode_dim, "task", dim), stack(key, np.nan, len(labels)))
        coords[dim] = list(labels)
    ds = xr.Dataset(data, coords=coords)
    ds["latency"].attrs.update(units="s", description="latency of completed tasks (NaN: failed)")
    ds["completed"].attrs["description"] = "1 if the task was done by t_max"
    return ds


def _metrics(runs: dict[int, list[dict[str, Any]]], episode_dim: str) -> xr.Dataset:
    seeds = sorted(runs)
    n_ep = min(len(runs[s]) for s in seeds)
    data: dict[str, Any] = {
        k: (("seed", episode_dim), [[r["metrics"][k] for r in runs[s][:n_ep]] for s in seeds])
        for k in METRICS
    }
    data["env_seed"] = (
        ("seed", episode_dim),
        np.asarray([[r["env_seed"] for r in runs[s][:n_ep]] for s in seeds], dtype=np.int64),
    )
    return xr.Dataset(data, coords={"seed": seeds, episode_dim: np.arange(n_ep)})


def records_to_datatree(
    config: TrainConfig,
    results: dict[int, dict[str, Any]],
    references: xr.Dataset | None = None,
    references_eval: xr.Dataset | None = None,
) -> xr.DataTree:
    """Labelled results of a run.

    Groups: ``/episodes`` (seed, episode) training metrics, the learner's ``learn_stat`` and
    median decision time; ``/decisions`` (seed, episode, task) every decision's server, shares
    and outcome, plus the learner's extras; ``/evaluation`` (seed, after_episode, eval_episode)
    metrics on held-out env seeds; ``/references`` (policy, seed, episode) the reference
    policies on the training env seeds of the last episodes; ``/references_eval`` (policy, seed,
    eval_episode) on the held-out seeds.
    """
    seeds = sorted(results)
    train = {s: results[s]["records"] for s in seeds}
    extra_labels = results[seeds[0]]["extra_labels"]
    episodes = _metrics(train, "episode")
    n_ep = episodes.sizes["episode"]
    episodes["learn_stat"] = (
        ("seed", "episode"),
        [[r["learn_stat"] for r in train[s][:n_ep]] for s in seeds],
    )
    episodes["median_decision_ms"] = (
        ("seed", "episode"),
        [[r["median_decision_ms"] for r in train[s][:n_ep]] for s in seeds],
    )
    episodes["median_decision_ms"].attrs["units"] = "ms"
    children: dict[str, xr.DataTree] = {
        "episodes": xr.DataTree(episodes),
        "decisions": xr.DataTree(_decisions(train, "episode", extra_labels)),
    }
    points = sorted(set.intersection(*(set(results[s]["evals"]) for s in seeds)))
    if points:
        per_point = []
        for p in points:
            ds = _metrics({s: results[s]["evals"][p] for s in seeds}, "eval_episode")
            per_point.append(ds)
        evaluation = xr.concat(per_point, dim=xr.DataArray(points, dims="after_episode"))
        evaluation["env_seed"] = evaluation["env_seed"].isel(after_episode=0, drop=True)
        children["evaluation"] = xr.DataTree(evaluation)
    if references is not None:
        children["references"] = xr.DataTree(references)
    if references_eval is not None:
        children["references_eval"] = xr.DataTree(references_eval)
    spec = learner_spec(config.agent)
    attrs = {
        "config": config.to_json(),
        "agent": config.agent,
        "family": spec.family,
        "episodes": int(n_ep),
        "n_seeds": len(seeds),
    }
    return xr.DataTree(xr.Dataset(attrs=attrs), children=children)


def write_results(tree: xr.DataTree, path: Path) -> None:
    """Write a results DataTree to netCDF atomically."""
    write_atomic(path, lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf"))


def evaluate_references(
    config: TrainConfig,
    policies: Sequence[str],
    episodes: dict[int, list[EpisodeSpec]],
    episode_dim: str = "episode",
    coords: Sequence[int] | None = None,
    tick: Callable[[str], None] | None = None,
) -> xr.Dataset:
    """Metrics of reference policies on given episodes.

    Parameters
    ----------
    config : TrainConfig
        The run (its scenario, t_max, tasks per episode).
    policies : sequence of str
        Names from ``baselines.POLICY_NAMES``.
    episodes : dict
        Run seed -> episodes to play (env seed and world phase), equal lengths.
    episode_dim : str
        Name of the episode dimension.
    coords : sequence of int, optional
        Labels of that dimension (default 0..n-1).
    tick : callable, optional
        Called with the policy's name after each episode (progress).
    """
    from baselines import make_policy
    from environments import episode_metrics

    env = make_env(config)
    run_seeds = sorted(episodes)
    n = len(episodes[run_seeds[0]])
    out = np.full((len(policies), len(run_seeds), n, len(METRICS)), np.nan)
    for i, name in enumerate(policies):
        for j, seed in enumerate(run_seeds):
            for k, spec in enumerate(episodes[seed]):
                pol = make_policy(name)
                pol.reset(spec.env_seed)
                obs, _ = env.reset(seed=spec.env_seed, options=spec.options)
                infos = []
                done = False
                while not done:
                    obs, _, term, trunc, info = env.step(pol.act(env, obs))
                    infos.append(info)
                    done = bool(term or trunc)
                m = episode_metrics(infos)
                out[i, j, k] = [getattr(m, x) for x in METRICS]
                if tick is not None:
                    tick(name)
    env.close()
    return xr.Dataset(
        {x: (("policy", "seed", episode_dim), out[..., q]) for q, x in enumerate(METRICS)},
        coords={
            "policy": list(policies),
            "seed": run_seeds,
            episode_dim: list(coords) if coords is not None else list(range(n)),
        },
    )


def _check_run_folder(config: TrainConfig, out: Path) -> None:
    """Refuse a run folder that holds a run of other settings (seeds and episodes may grow)."""
    meta = out / "run.json"
    if out.exists() and not out.is_dir():
        raise RunMismatchError(f"--out {out} is a file; give a folder for the run")
    if not meta.exists():
        return
    try:
        old = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError):
        raise RunMismatchError(f"{meta} cannot be read; delete it or use another --out") from None
    new = json.loads(json.dumps(asdict(config), default=str))
    differ = sorted(
        k
        for k in set(old) | set(new)
        if k not in ("seeds", "episodes") and old.get(k) != new.get(k)
    )
    if differ:
        shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ)
        raise RunMismatchError(
            f"--out {out} holds a run with other settings ({shown}); use another --out folder"
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
        Run folder (``run.json``, ``checkpoints/``, ``results.nc``). A folder holding a run of
        other settings is refused; a run can be continued with more episodes or seeds.
    references : sequence of str
        Reference policies evaluated on the same env seeds (the last ``reference_episodes``
        training episodes of every seed, and the held-out evaluation episodes).
    reference_episodes : int
        How many of the last training episodes the references are played on.
    progress : bool
        Show progress.
    workers : int
        Seeds trained at once: ``1`` runs them in this process; more starts a Dask
        ``LocalCluster`` with that many single-threaded worker processes.
    scheduler : str, optional
        Address of a running Dask scheduler to use instead of a local cluster.
    """
    out = Path(out)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    _check_run_folder(config, out)
    ckpt = out / "checkpoints"
    for s in config.seeds:  # fail early on an unreadable or foreign checkpoint
        path = ckpt / f"seed{s}.pt"
        if path.exists():
            state = load_checkpoint(path)
            if state["digest"] != config.digest(s):
                raise RunMismatchError(
                    f"checkpoint {path} belongs to a different configuration; use another --out"
                )
            if len(state["records"]) > config.episodes:
                raise RunMismatchError(
                    f"checkpoint {path} already holds {len(state['records'])} episodes, more "
                    f"than --episodes {config.episodes}; ask for at least that many"
                )
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(
        out / "run.json",
        lambda tmp: Path(tmp).write_text(json.dumps(asdict(config), indent=1, default=str)),
    )
    if workers == 1 and scheduler is None:
        results = {s: train_seed(config, s, ckpt, progress=progress) for s in config.seeds}
    else:
        results = _train_on_dask(config, ckpt, progress, workers, scheduler)
    ref = ref_eval = None
    if references:
        from experiments.progress import ProgressReporter

        n = min(reference_episodes, config.episodes)
        last = list(range(config.episodes - n, config.episodes))
        n_eval = config.eval_episodes if config.eval_every else 0
        total = len(references) * len(config.seeds) * (n + n_eval)
        with ProgressReporter(total, "reference policies", enabled=progress) as bar:
            ref = evaluate_references(
                config,
                references,
                {s: [EpisodeSpec(episode_seed(s, e), e) for e in last] for s in config.seeds},
                coords=last,
                tick=lambda name: bar.advance(1, postfix=name),
            )
            if config.eval_every:
                ref_eval = evaluate_references(
                    config,
                    references,
                    {
                        s: [
                            EpisodeSpec(eval_seed(s, k), config.episodes)
                            for k in range(config.eval_episodes)
                        ]
                        for s in config.seeds
                    },
                    episode_dim="eval_episode",
                    tick=lambda name: bar.advance(1, postfix=f"{name} (held-out)"),
                )
    tree = records_to_datatree(config, results, ref, ref_eval)
    write_results(tree, out / "results.nc")
    return tree


def _report_episode(queue: Any, seed: int, n: int, completion: float) -> None:
    queue.put((seed, n, completion))


def _drain(queue: Any) -> list[tuple[int, int, float]]:
    """Every message waiting on ``queue`` (returns at once)."""
    return [tuple(m) for m in queue.get(batch=True)]


def _train_on_dask(
    config: TrainConfig, ckpt: Path, progress: bool, workers: int, scheduler: str | None
) -> dict[int, dict[str, Any]]:
    """One task per seed on a Dask cluster; every seed still checkpoints after each round."""
    from dask.distributed import Client, LocalCluster, Queue

    from experiments.progress import ProgressReporter

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
        if progress:
            print(f"dask dashboard: {client.dashboard_link}", flush=True)
        queue = Queue(client=client)
        report = partial(_report_episode, queue)
        futures = {
            client.submit(
                train_seed, config, s, ckpt, False, None, report, pure=False, key=f"seed-{s}"
            ): s
            for s in config.seeds
        }
        total = config.episodes * len(config.seeds)
        done: dict[int, int] = {}
        last: dict[int, float] = {}
        with ProgressReporter(total, f"{config.agent} episodes", enabled=progress) as bar:
            while True:
                finished = all(f.done() for f in futures)
                for seed, n, completion in _drain(queue):
                    done[seed], last[seed] = n, completion
                if last:
                    bar.update(
                        sum(done.values()),
                        "completion " + " ".join(f"{last[k]:.2f}" for k in sorted(last)),
                    )
                if finished:
                    break
                time.sleep(1.0)
        results = {futures[f]: f.result() for f in futures}
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results


def agent_names() -> list[str]:
    """Names ``aif train --agent`` accepts."""
    return learner_names()
