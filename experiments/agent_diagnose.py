"""Posterior beliefs of a trained structured agent: an ArviZ DataTree, a summary table and figures.

``aif diagnose --run RUN_DIR`` reads the checkpoint of one seed of an ``aif train`` run of a
structured agent (``aif``, ``aif-no-info-gain``, ``aif-myopic``), draws from its fitted posterior
and writes ``posterior.nc`` and figures; nothing in it is simulator knowledge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

__all__ = ["AgentDiagnostics", "diagnose_run", "load_structured_agent"]


class AgentDiagnostics(NamedTuple):
    """What :func:`diagnose_run` wrote."""

    tree: xr.DataTree
    summary: Any
    files: list[Path]


def load_structured_agent(run_dir: Path, seed: int) -> Any:
    """The learner of ``run_dir`` for ``seed``, restored from its last checkpoint.

    Raises
    ------
    ValueError
        When the folder is not a run of a structured agent or lacks that seed's checkpoint.
    """
    from experiments.runconfig import TrainConfig
    from experiments.train import load_checkpoint
    from learners import build_learner

    meta = Path(run_dir) / "run.json"
    if not meta.is_file():
        raise ValueError(f"--run {run_dir} holds no run.json: give the --out folder of `aif train`")
    raw = json.loads(meta.read_text())
    raw["seeds"] = tuple(raw["seeds"])
    raw["settings"] = tuple(tuple(pair) for pair in raw.get("settings", ()))
    config = TrainConfig(**raw)
    ckpt = Path(run_dir) / "checkpoints" / f"seed{seed}.pt"
    if not ckpt.is_file():
        raise ValueError(
            f"--seed {seed}: {ckpt} does not exist; the run has seeds {list(config.seeds)}"
        )
    learner = build_learner(config.context(), seed)
    if not hasattr(learner, "model") or not hasattr(learner.model, "posterior_datatree"):
        raise ValueError(
            f"--run {run_dir} trained {config.agent!r}; posterior diagnostics need a structured "
            "agent (aif and its variants)"
        )
    learner.load_state_dict(load_checkpoint(ckpt)["learner"])
    return learner


def diagnose_run(
    run_dir: Path, seed: int, out_dir: Path, num_samples: int = 500
) -> AgentDiagnostics:
    """Write the posterior DataTree, an ``arviz_stats.summary`` table and figures of one seed.

    Parameters
    ----------
    run_dir : Path
        The ``--out`` folder of an ``aif train`` run of a structured agent.
    seed : int
        Which seed's checkpoint.
    out_dir : Path
        Folder for ``posterior.nc``, ``summary.csv``, ``servers.png``, ``problems.png``.
    num_samples : int
        Posterior draws.
    """
    import arviz_stats
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from experiments.atomic import write_atomic

    learner = load_structured_agent(Path(run_dir), seed)
    names = [f"{j} {s.kind}" for j, s in enumerate(learner.view.servers)]
    tree = learner.model.posterior_datatree(num_samples=num_samples, seed=seed, server_names=names)
    post = tree["posterior"].to_dataset()
    summary = arviz_stats.summary(
        tree, var_names=["compute_s", "share_k", "net_s", "skill", "slope", "arrival_rate"]
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "posterior.nc", out / "summary.csv", out / "servers.png", out / "problems.png"]
    write_atomic(files[0], lambda tmp: tree.to_netcdf(tmp, engine="h5netcdf"))
    write_atomic(files[1], lambda tmp: summary.to_csv(tmp))

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
    for ax, var, label in (
        (axes[0], "compute_s", "full-share compute time (s)"),
        (axes[1], "share_k", "share scaling k"),
        (axes[2], "net_s", "network time (s)"),
    ):
        data = post[var].stack(sample=("chain", "draw")).transpose("server", "sample").values
        ax.boxplot(list(data), showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Posterior beliefs about the servers, seed {seed} (boxes: 50%, whiskers: 1.5 IQR)"
    )
    fig.savefig(files[2], dpi=110)
    plt.close(fig)

    ease = post["ease"].stack(sample=("chain", "draw")).transpose("problem", "sample").values
    skill = post["skill"].mean(("chain", "draw")).values
    slope = post["slope"].mean(("chain", "draw")).values
    order = np.argsort(ease.mean(axis=1))
    fig, ax = plt.subplots(figsize=(10, 3.6), constrained_layout=True)
    for j, name in enumerate(names):
        value = 1.0 / (1.0 + np.exp(-(skill[j] + slope[j] * ease.mean(axis=1)[order])))
        ax.plot(np.arange(order.size), value, label=name, lw=1)
    seen = np.bincount(learner.model.data.problem, minlength=ease.shape[0])[order]
    ax2 = ax.twinx()
    ax2.bar(np.arange(order.size), seen, color="0.85", width=1.0, zorder=0)
    ax2.set_ylabel("tasks of the problem decided")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xlabel("HumanEval problem, by posterior ease")
    ax.set_ylabel("predicted pass@100")
    ax.legend(fontsize=7, ncol=len(names))
    fig.suptitle("What the agent believes each problem's pass@100 is, per server")
    fig.savefig(files[3], dpi=110)
    plt.close(fig)
    return AgentDiagnostics(tree, summary, files)
