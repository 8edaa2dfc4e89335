"""Summaries of training results: final metrics beside the reference policies, and convergence speed.

Everything here reads a results DataTree (as written by ``aif train``) and nothing else.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import xarray as xr

__all__ = ["TrainingSummary", "episodes_to_fraction", "print_training_summary", "summarise"]

METRICS = ("completion_rate", "mean_latency", "mean_pass_at_100", "total_reward")


class TrainingSummary(NamedTuple):
    """Final performance of the agent and of the references.

    Attributes
    ----------
    agent : dict
        metric -> (mean, std) over seeds of the mean over the last ``window`` episodes.
    references : dict
        policy -> metric -> (mean, std) over seeds.
    episodes_to_90 : list of int
        Per seed, the first episode from which the ``window``-episode moving average of the completion rate
        reaches 90% of its final value.
    window : int
        Episodes averaged for "final".
    """

    agent: dict[str, tuple[float, float]]
    references: dict[str, dict[str, tuple[float, float]]]
    episodes_to_90: list[int]
    window: int


def episodes_to_fraction(curve: np.ndarray, fraction: float = 0.9, window: int = 10) -> int:
    """First episode at which the moving average of ``curve`` reaches ``fraction`` of its final level.

    Parameters
    ----------
    curve : numpy.ndarray
        Shape ``(episodes,)``.
    fraction : float
        Target fraction of the final level (the mean of the last ``window`` episodes).
    window : int
        Moving-average width (trailing).

    Returns
    -------
    int
        Episode index (0-based) at the end of the first window that reaches the target.
    """
    curve = np.asarray(curve, dtype=float)
    if curve.ndim != 1 or curve.size == 0:
        raise ValueError(f"curve must be a non-empty 1-D array, got shape {curve.shape}")
    w = max(1, min(window, curve.size))
    final = float(np.nanmean(curve[-w:]))
    avg = np.convolve(curve, np.ones(w) / w, mode="valid")
    hit = np.nonzero(avg >= fraction * final)[0]
    return int(hit[0] + w - 1) if hit.size else int(curve.size - 1)


def summarise(tree: xr.DataTree, window: int = 10) -> TrainingSummary:
    """Final metrics (last ``window`` episodes) of the agent and of every reference policy."""
    ep = tree["episodes"].to_dataset()
    w = max(1, min(window, ep.sizes["episode"]))
    tail = ep.isel(episode=slice(-w, None)).mean("episode")
    agent = {m: (float(tail[m].mean()), float(tail[m].std())) for m in METRICS}
    refs: dict[str, dict[str, tuple[float, float]]] = {}
    if "references" in tree.children:
        ref = tree["references"].to_dataset()
        per_seed = ref.mean("episode")
        for pol in ref["policy"].values:
            sel = per_seed.sel(policy=pol)
            refs[str(pol)] = {m: (float(sel[m].mean()), float(sel[m].std())) for m in METRICS}
    to90 = [
        episodes_to_fraction(ep["completion_rate"].sel(seed=s).values, 0.9, w)
        for s in ep["seed"].values
    ]
    return TrainingSummary(agent, refs, to90, w)


def print_training_summary(tree: xr.DataTree, window: int = 10) -> TrainingSummary:
    """Print a rich table of :func:`summarise` and return it."""
    from rich.console import Console
    from rich.table import Table

    s = summarise(tree, window)
    table = Table(title=f"Final {s.window} episodes, mean ± std over seeds")
    table.add_column("policy")
    for m in METRICS:
        table.add_column(m.replace("_", " "), justify="right")

    def row(name: str, vals: dict[str, tuple[float, float]]) -> None:
        table.add_row(name, *(f"{vals[m][0]:.3f} ± {vals[m][1]:.3f}" for m in METRICS))

    row(str(tree.attrs.get("agent", "agent")), s.agent)
    for pol, vals in s.references.items():
        row(pol, vals)
    console = Console()
    console.print(table)
    console.print(f"episodes to 90% of final completion, per seed: {s.episodes_to_90}")
    return s
