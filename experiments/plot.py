"""Figures rendered from result files alone: the paper's Fig. 3 (training curves), Fig. 4 (t_max sweep)
and Fig. 5 (load sweep), as matplotlib Figures that the caller saves (:func:`save_figure`) or shows.

Every band and error bar is a 95% bootstrap interval of the mean over seeds
(:func:`experiments.stats.mean_interval`); reference policies are dashed lines named in the legend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments.atomic import write_atomic  # noqa: E402
from experiments.stats import mean_interval  # noqa: E402

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PANELS",
    "SWEEP_PANELS",
    "load_figure",
    "plot_training",
    "save_figure",
    "seed_band",
    "tmax_figure",
    "training_curves_figure",
    "training_figure",
]

#: (variable, axis label) of the four training-curve panels (Fig. 3).
PANELS: tuple[tuple[str, str], ...] = (
    ("completion_rate", "completion rate (fraction of tasks done by t_max)"),
    ("mean_latency", "mean latency of completed tasks (s)"),
    ("mean_pass_at_100", "mean pass@100 of completed tasks"),
    ("total_reward", "total reward per episode (sum of 1/L + P)"),
)
#: (variable, axis label) of the sweep panels (Figs. 4 and 5).
SWEEP_PANELS: tuple[tuple[str, str], ...] = (
    ("completion_rate", "completion rate (fraction of tasks done by t_max)"),
    ("total_reward", "total reward per episode (sum of 1/L + P)"),
)
#: Colours of learners (solid) and of reference policies (dashed), in method order.
_LEARNER_COLOURS = [plt.get_cmap("tab10")(i) for i in (0, 3, 2, 4, 1, 5, 6, 8, 9)]
_REFERENCE_COLOURS = [plt.get_cmap("Dark2")(i) for i in range(8)] + [(0.4, 0.4, 0.4, 1.0)]
_REFERENCE_MARKERS = ["s", "^", "v", "D", "P", "X", "<", ">", "*"]


# ------------------------------------------------------------------------------ helpers
def save_figure(fig: Figure, path: Path | str, dpi: int = 120) -> Path:
    """Write a figure atomically (the format follows the suffix: ``.png``, ``.pdf``, ``.svg``).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : Path or str
        Image file; its folder is created.
    dpi : int
        Resolution of raster formats.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt))


def seed_band(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds and its 95% bootstrap interval, column by column.

    Parameters
    ----------
    data : numpy.ndarray, shape (seeds, points)
        One value per seed and point (episode, t_max, load); NaN entries are left out.

    Returns
    -------
    mean, low, high : numpy.ndarray, shape (points,)
        NaN where a column has no finite value (and ``low``/``high`` where it has one).
    """
    data = np.asarray(data, dtype=float)
    if data.ndim != 2:
        raise ValueError(f"data must have shape (seeds, points), got {data.shape}")
    out = np.array([tuple(mean_interval(data[:, j]))[:3] for j in range(data.shape[1])])
    out = out.reshape(data.shape[1], 3)
    return out[:, 0], out[:, 1], out[:, 2]


def _moving_average(data: np.ndarray, width: int) -> np.ndarray:
    """Trailing moving average of each row over ``width`` points (NaN filled by the row mean)."""
    if width <= 1:
        return data
    kernel = np.ones(width) / width
    rows = []
    for row in data:
        fill = np.nanmean(row) if np.isfinite(row).any() else 0.0
        rows.append(np.convolve(np.nan_to_num(row, nan=fill), kernel, mode="valid"))
    return np.array(rows)


def _legend_below(fig: Figure, axes: Sequence[Axes], ncols: int = 4) -> None:
    """One legend for the whole figure, below the panels, each label once."""
    seen: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside lower center",
            ncols=min(ncols, len(seen)),
            fontsize=8,
            frameon=False,
        )


def _seeds_text(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


# ------------------------------------------------------------------------------ Fig. 3
def training_curves_figure(
    curves: Mapping[str, xr.Dataset],
    references: Mapping[str, xr.Dataset] | None = None,
    evaluation: Mapping[str, xr.Dataset] | None = None,
    smooth: int = 1,
    title: str = "Training curves",
) -> Figure:
    """The four training-curve panels of the paper's Fig. 3.

    Parameters
    ----------
    curves : mapping of str to xarray.Dataset
        Learner name -> per-episode metrics (the :data:`PANELS` variables), dims
        ``(seed, episode)``; episode ``e`` is drawn at ``e + 1`` (episodes trained so far).
    references : mapping of str to xarray.Dataset, optional
        Reference policy name -> metrics with a ``seed`` dim (and any others, averaged within a
        seed): drawn as dashed horizontal lines at the mean over seeds.
    evaluation : mapping of str to xarray.Dataset, optional
        Learner name -> held-out metrics, dims ``(seed, after_episode, eval_episode)``: drawn as
        markers with 95% intervals over seeds.
    smooth : int
        Width of a trailing moving average over episodes (1 = none), applied per seed before the
        mean and interval.
    title : str
        Figure title; the caption of bands and lines is appended.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1 episode, got {smooth!r}")
    if not curves:
        raise ValueError("no training curves given")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), layout="constrained")
    for i, (name, ds) in enumerate(curves.items()):
        colour = _LEARNER_COLOURS[i % len(_LEARNER_COLOURS)]
        n_seeds = int(ds.sizes["seed"])
        for ax, (var, _) in zip(axes.flat, PANELS, strict=True):
            data = _moving_average(ds[var].transpose("seed", "episode").values, smooth)
            keep = np.isfinite(data).any(axis=0)
            x = np.arange(data.shape[1]) + smooth  # episodes trained at the window's end
            mean, low, high = seed_band(data[:, keep])
            ax.plot(x[keep], mean, color=colour, lw=1.6, label=f"{name} ({_seeds_text(n_seeds)})")
            ax.fill_between(x[keep], low, high, color=colour, alpha=0.18, lw=0)
            if evaluation is not None and name in evaluation:
                ev = evaluation[name]
                per_seed = ev[var].mean("eval_episode", skipna=True).transpose("seed", ...)
                m, lo, hi = seed_band(per_seed.values)
                xs = ev["after_episode"].values
                ok = np.isfinite(m)
                err = np.vstack([m - lo, hi - m])[:, ok]
                ax.errorbar(
                    xs[ok],
                    m[ok],
                    yerr=np.where(np.isfinite(err), err, 0.0),
                    fmt="o",
                    ms=4,
                    color=colour,
                    capsize=2,
                    label=f"{name}, held-out evaluation",
                )
    for k, (name, ds) in enumerate((references or {}).items()):
        colour = _REFERENCE_COLOURS[k % len(_REFERENCE_COLOURS)]
        for ax, (var, _) in zip(axes.flat, PANELS, strict=True):
            other = [d for d in ds[var].dims if d != "seed"]
            per_seed = ds[var].mean(other, skipna=True) if other else ds[var]
            value = float(np.nanmean(per_seed.values)) if np.isfinite(per_seed).any() else None
            if value is not None:
                ax.axhline(value, ls="--", lw=1.1, color=colour, label=f"{name} (reference)")
    for ax, (_, ylabel) in zip(axes.flat, PANELS, strict=True):
        ax.set_xlabel("training episode")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    _legend_below(fig, list(axes.flat))
    caption = "line: mean over seeds; band and bars: 95% bootstrap interval over seeds"
    if smooth > 1:
        caption += f"; moving average over {smooth} episodes"
    if references:
        caption += "; dashed: reference policies on held-out episodes"
    fig.suptitle(f"{title}\n{caption}", fontsize=10)
    return fig


def training_figure(tree: xr.DataTree, smooth: int | None = None) -> Figure:
    """Fig. 3 of a reproduction result (``aif reproduce``): learners' curves and the references.

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result (groups ``training``, ``evaluation``, ``heldout``).
    smooth : int, optional
        Moving-average width; default the profile's.
    """
    training = tree["training"].to_dataset()
    evaluation = tree["evaluation"].to_dataset() if "evaluation" in tree.children else None
    curves = {}
    evals = {}
    for m in training["method"].values.tolist():
        ds = training.sel({"method": m}).dropna("episode", how="all", subset=["completion_rate"])
        curves[str(m)] = ds
        if evaluation is not None and m in evaluation["method"].values:
            ev = evaluation.sel({"method": m}).dropna("after_episode", how="all")
            evals[str(m)] = ev
    refs = {}
    if "heldout" in tree.children:
        held = tree["heldout"].to_dataset()
        for m, fam in zip(
            held["method"].values.tolist(), held["family"].values.tolist(), strict=True
        ):
            if fam == "reference":
                refs[str(m)] = held.sel({"method": m})
    attrs = tree.attrs
    title = (
        f"Fig. 3: training on the {attrs.get('scenario', 'paper')} preset, "
        f"t_max = {float(attrs.get('t_max', 15)):g} s, {attrs.get('tasks', 100)} tasks per episode"
    )
    width = int(attrs.get("smooth", 1)) if smooth is None else smooth
    return training_curves_figure(curves, refs, evals, smooth=width, title=title)


def plot_training(results: Sequence[Path], out: Path, smooth: int = 1) -> Path:
    """Render the Fig. 3 panels of ``aif train`` (or ``aif reproduce``) result files into ``out``.

    Parameters
    ----------
    results : sequence of Path
        ``results.nc`` files written by ``aif train`` (one curve per file, labelled by its agent,
        with the first file's reference policies), or one reproduction result.
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
    trees = [xr.open_datatree(p, engine="h5netcdf") for p in results]
    try:
        if len(trees) == 1 and trees[0].attrs.get("kind") == "reproduction":
            fig = training_figure(trees[0], smooth)
        else:
            curves: dict[str, xr.Dataset] = {}
            evals: dict[str, xr.Dataset] = {}
            refs: dict[str, xr.Dataset] = {}
            for path, tree in zip(results, trees, strict=True):
                label = str(tree.attrs.get("agent", Path(path).stem))
                if label in curves:
                    label = f"{label} ({Path(path).parent.name})"
                curves[label] = tree["episodes"].to_dataset().load()
                if "evaluation" in tree.children:
                    evals[label] = tree["evaluation"].to_dataset().load()
                if "references" in tree.children and not refs:
                    ref = tree["references"].to_dataset().load()
                    refs = {str(p): ref.sel(policy=p) for p in ref["policy"].values}
            fig = training_curves_figure(curves, refs, evals, smooth, title="Training curves")
    finally:
        for tree in trees:
            tree.close()
    save_figure(fig, out)
    plt.close(fig)
    return Path(out)


# ------------------------------------------------------------------------------ Figs. 4 and 5
def _sweep_figure(ds: xr.Dataset, dim: str, xlabel: str, title: str) -> Figure:
    """Sweep panels: per method, the mean over seeds of the per-seed mean over held-out episodes."""
    fig, axes = plt.subplots(1, len(SWEEP_PANELS), figsize=(12, 5.2), layout="constrained")
    x = ds[dim].values.astype(float)
    n_learner = n_ref = 0
    for m, fam in zip(ds["method"].values.tolist(), ds["family"].values.tolist(), strict=True):
        sub = ds.sel({"method": m})
        is_ref = fam == "reference"
        if is_ref:
            colour = _REFERENCE_COLOURS[n_ref % len(_REFERENCE_COLOURS)]
            marker = _REFERENCE_MARKERS[n_ref % len(_REFERENCE_MARKERS)]
            n_ref += 1
        else:
            colour, marker = _LEARNER_COLOURS[n_learner % len(_LEARNER_COLOURS)], "o"
            n_learner += 1
        n_seeds = int(np.isfinite(sub["completion_rate"].values).any(axis=(1, 2)).sum())
        label = (
            f"{m} (reference, {_seeds_text(n_seeds)})"
            if is_ref
            else f"{m} ({_seeds_text(n_seeds)})"
        )
        for ax, (var, _) in zip(axes, SWEEP_PANELS, strict=True):
            per_seed = sub[var].mean("eval_episode", skipna=True).transpose("seed", dim).values
            mean, low, high = seed_band(per_seed)
            ok = np.isfinite(mean)
            if not ok.any():
                continue
            ax.plot(
                x[ok],
                mean[ok],
                ls="--" if is_ref else "-",
                lw=1.1 if is_ref else 1.8,
                marker=marker,
                ms=4 if is_ref else 5,
                color=colour,
                label=label,
            )
            if not is_ref:
                band = ok & np.isfinite(low)
                ax.fill_between(x[band], low[band], high[band], color=colour, alpha=0.18, lw=0)
    for ax, (_, ylabel) in zip(axes, SWEEP_PANELS, strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_xticks(x)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
    axes[0].set_ylim(-0.03, 1.03)
    _legend_below(fig, list(axes))
    caption = (
        "per seed: mean over held-out episodes; line: mean over seeds; band: 95% bootstrap "
        "interval over seeds; dashed: reference policies"
    )
    fig.suptitle(f"{title}\n{caption}", fontsize=10)
    return fig


def tmax_figure(tree: xr.DataTree) -> Figure:
    """Fig. 4 of a reproduction result: learners trained at the training t_max, evaluated at others.

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result with a ``tmax_sweep`` group, dims ``(method, seed, t_max,
        eval_episode)``.
    """
    ds = tree["tmax_sweep"].to_dataset()
    a = tree.attrs
    title = (
        f"Fig. 4: deadline sweep, learners trained at t_max = {float(a.get('t_max', 15)):g} s, "
        f"{a.get('tasks', 100)} tasks per episode"
    )
    return _sweep_figure(ds, "t_max", "deadline t_max (s)", title)


def load_figure(tree: xr.DataTree) -> Figure:
    """Fig. 5 of a reproduction result: more tasks in the preset's fixed time window.

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result with a ``load_sweep`` group, dims ``(method, seed, tasks,
        eval_episode)``.
    """
    ds = tree["load_sweep"].to_dataset()
    a = tree.attrs
    window = float(a.get("window_s", float("nan")))
    title = (
        f"Fig. 5: load sweep at t_max = {float(a.get('t_max', 15)):g} s, learners trained at "
        f"{a.get('tasks', 100)} tasks per episode"
    )
    return _sweep_figure(ds, "tasks", f"tasks per episode (arrivals in {window:g} s)", title)
