"""Figures rendered from result files alone: the training curves of the paper's Fig. 3 panels.

Each panel shows a metric per episode, mean and min-max band over seeds, with reference policies as lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

__all__ = ["PANELS", "plot_training"]

#: (variable, axis label) of the four panels.
PANELS: tuple[tuple[str, str], ...] = (
    ("completion_rate", "completion rate"),
    ("mean_latency", "mean latency of completed tasks (s)"),
    ("mean_pass_at_100", "mean pass@100 of completed tasks"),
    ("total_reward", "total reward per episode"),
)


def plot_training(results: Sequence[Path], out: Path, smooth: int = 1) -> Path:
    """Render the four training-curve panels of one or more result files into one figure.

    Parameters
    ----------
    results : sequence of Path
        ``results.nc`` files written by ``aif train`` (one curve per file, labelled by its agent).
    out : Path
        Image file to write (the format follows the suffix, e.g. ``.png`` or ``.pdf``).
    smooth : int
        Width of a moving average over episodes (1 = none).

    Returns
    -------
    Path
        ``out``.
    """
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1 episode, got {smooth!r}")
    if not results:
        raise ValueError("no result files given")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    refs_drawn = False
    for path in results:
        tree = xr.open_datatree(path, engine="h5netcdf")
        ep = tree["episodes"].to_dataset()
        label = str(tree.attrs.get("agent", Path(path).stem))
        for ax, (var, ylabel) in zip(axes.flat, PANELS, strict=True):
            data = ep[var].values  # (seed, episode)
            if smooth > 1:
                kernel = np.ones(smooth) / smooth
                data = np.array(
                    [
                        np.convolve(np.nan_to_num(row, nan=np.nanmean(row)), kernel, mode="valid")
                        for row in data
                    ]
                )
            x = np.arange(data.shape[1]) + (smooth - 1)
            mean = np.nanmean(data, axis=0)
            ax.plot(x, mean, label=f"{label} (n={data.shape[0]} seeds)")
            ax.fill_between(x, np.nanmin(data, 0), np.nanmax(data, 0), alpha=0.2)
            ax.set_xlabel("episode")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        if "references" in tree.children and not refs_drawn:
            ref = tree["references"].to_dataset()
            for ax, (var, _) in zip(axes.flat, PANELS, strict=True):
                for k, pol in enumerate(ref["policy"].values):
                    value = float(ref[var].sel(policy=pol).mean())
                    ax.axhline(value, ls="--", lw=1, color=f"C{(k + 3) % 10}", label=str(pol))
            refs_drawn = True
        tree.close()
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Training curves (mean over seeds, band = min-max); dashed: reference policies")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
