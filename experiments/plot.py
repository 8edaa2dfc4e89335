"""Figures rendered from result files alone: the paper's Fig. 3 (training curves), Fig. 4 (t_max sweep)
and Fig. 5 (load sweep), as matplotlib Figures that the caller saves (:func:`save_figure`) or shows.

Every band and error bar is a 95% bootstrap interval of the mean over seeds
(:func:`experiments.stats.mean_interval`). Each method keeps one colour, line style and marker in
every figure (learners solid or long-dashed and drawn on top, reference policies thin and dashed,
named in the legend and beside their lines); lines that coincide are drawn in alternating dashes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
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
# Styles: (colour, line style, marker) per method name, the same in every figure. Colours are
# the Okabe-Ito palette for the learners and distinct hues for the references; learners have
# solid or long-dash lines, references short dashes and dots. Names not listed take the first
# unused entry of the fallback lists.
_KNOWN_STYLES: dict[str, tuple[str, Any, str]] = {
    # learners
    "aif": ("#0072B2", "-", "o"),
    "aif-no-info-gain": ("#D55E00", (0, (5, 1.5)), "D"),
    "aif-paper": ("#009E73", (0, (7, 1.5, 1.5, 1.5)), "s"),
    "rainbow": ("#CC79A7", (0, (2.5, 1)), "^"),
    "ppo": ("#E69F00", (0, (8, 2, 2, 2)), "v"),
    "sac": ("#56B4E9", (0, (4, 1, 1, 1, 1, 1)), "p"),
    # reference policies
    "cloud": ("#17BECF", (0, (4, 2)), "P"),
    "edge_nearest": ("#8C564B", (0, (1, 1.5)), "<"),
    "edge_least_loaded": ("#9467BD", (0, (6, 2, 1, 2)), ">"),
    "random": ("#7F7F7F", (0, (2, 2)), "H"),
    "greedy": ("#9A9A1E", (0, (8, 2.5)), "X"),
    "frugal": ("#B8860B", (0, (3, 1.5, 1, 1.5)), "d"),
    "edge_first": ("#2CA02C", (0, (5, 1.5, 1, 1.5, 1, 1.5)), "h"),
    "lookahead": ("#000000", (0, (6, 3)), "*"),
    "lookahead_guidance": ("#D62728", (0, (1.5, 1.5, 4, 1.5)), "8"),
}
_FALLBACK_COLOURS = [
    "#1F3A93", "#A0522D", "#6A5ACD", "#008080", "#C71585", "#556B2F", "#FF6347", "#4682B4",
    "#8B008B", "#DAA520", "#2F4F4F", "#BC8F8F",
]  # fmt: skip
_FALLBACK_LEARNER_LINES: list[Any] = ["-", (0, (5, 1.5)), (0, (7, 1.5, 1.5, 1.5)), (0, (2.5, 1))]
_FALLBACK_REFERENCE_LINES: list[Any] = [(0, (3, 2)), (0, (1, 2)), (0, (5, 2, 1, 2)), (0, (2, 3))]
_FALLBACK_MARKERS = ["o", "s", "D", "^", "v", "<", ">", "p", "h", "*", "P", "X"]
# Drawing order: reference lines at the bottom, then bands, then learners' lines and markers.
_Z_REFERENCE, _Z_BAND, _Z_LEARNER = 2.0, 2.5, 3.0
_LEARNER_LW, _REFERENCE_LW = 2.0, 1.3


class _Style(NamedTuple):
    colour: str
    line: Any
    marker: str


def _method_styles(learners: Sequence[str], references: Sequence[str]) -> dict[str, _Style]:
    """One style per method: its own if known (by name, or by the name before " ("), else unused."""

    def known(name: str) -> tuple[str, Any, str] | None:
        return _KNOWN_STYLES.get(name) or _KNOWN_STYLES.get(name.split(" (")[0])

    names = list(learners) + [r for r in references if r not in learners]
    taken = {known(n)[0] for n in names if known(n)}  # type: ignore[index]
    spare = iter([c for c in _FALLBACK_COLOURS if c not in taken] + _FALLBACK_COLOURS)
    out: dict[str, _Style] = {}
    for group, lines in (
        (learners, _FALLBACK_LEARNER_LINES),
        (references, _FALLBACK_REFERENCE_LINES),
    ):
        k = 0
        for name in group:
            if name in out:
                continue
            style = known(name)
            if style is None:
                marker = _FALLBACK_MARKERS[len(out) % len(_FALLBACK_MARKERS)]
                style = (next(spare), lines[k % len(lines)], marker)
                k += 1
            out[name] = _Style(*style)
    return out


def _coinciding(values: Mapping[str, np.ndarray], tol: float) -> list[list[str]]:
    """Groups of names whose values agree within ``tol`` wherever both are finite (singletons too)."""
    groups: list[list[str]] = []
    for name, v in values.items():
        for group in groups:
            w = values[group[0]]
            both = np.isfinite(v) & np.isfinite(w)
            if both.any() and (np.isfinite(v) == np.isfinite(w)).all():
                if float(np.max(np.abs(v[both] - w[both]))) <= tol:
                    group.append(name)
                    break
        else:
            groups.append([name])
    return groups


def _interleaved(k: int, j: int, dash: float = 4.0) -> Any:
    """Line style of member ``j`` of ``k`` coinciding lines: dashes that take turns, all visible."""
    return (j * dash, (dash, dash * (k - 1)))


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


def _legend_below(
    fig: Figure, axes: Sequence[Axes], ncols: int = 4, handles: Mapping[str, Any] | None = None
) -> None:
    """One legend for the whole figure, below the panels, each label once.

    ``handles`` (label -> artist) come first and replace the axes' own handle of that label.
    """
    seen: dict[str, Any] = dict(handles or {})
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen),
            loc="outside lower center",
            ncols=min(ncols, len(seen)),
            fontsize=8.5,
            frameon=False,
            handlelength=3.2,
        )


def _spread(targets: Sequence[float], gap: float, lo: float, hi: float) -> list[float]:
    """Positions near sorted ``targets``, at least ``gap`` apart, inside [lo, hi] where possible.

    Neighbours closer than ``gap`` are merged into clusters centred on their targets' mean.
    """
    clusters: list[list[float]] = []  # each: [first position, count, sum of targets]
    for t in targets:
        clusters.append([t, 1, t])
        while len(clusters) > 1:
            a, b = clusters[-2], clusters[-1]
            if a[0] + a[1] * gap <= b[0]:
                break
            n, total = a[1] + b[1], a[2] + b[2]
            clusters[-2:] = [[total / n - (n - 1) * gap / 2, n, total]]
    out = [c[0] + i * gap for c in clusters for i in range(int(c[1]))]
    shift = max(0.0, out[-1] - hi) if out else 0.0
    out = [y - shift for y in out]
    shift = max(0.0, lo - out[0]) if out else 0.0
    return [y + shift for y in out]


def _label_lines(ax: Axes, items: Sequence[tuple[float, str, str]], fontsize: float = 8.5) -> None:
    """Write each (y value, name, colour) beside the right edge of ``ax``, none over another.

    Names are spread apart vertically and joined to their line's height by a thin leader.
    """
    if not items:
        return
    ax.figure.canvas.draw()  # lay the figure out: the axes' height sets the spacing
    y0, y1 = ax.get_ylim()
    height_pt = ax.get_window_extent().height * 72.0 / ax.figure.dpi
    gap = 1.15 * fontsize / max(height_pt, 1.0)
    ordered = sorted(((v - y0) / (y1 - y0), text, colour) for v, text, colour in items)
    placed = _spread([t for t, _, _ in ordered], gap, 0.0, 1.0)
    for (target, text, colour), y in zip(ordered, placed, strict=True):
        ax.annotate(
            text,
            xy=(1.0, target),
            xycoords="axes fraction",
            xytext=(1.03, y),
            textcoords="axes fraction",
            fontsize=fontsize,
            color=colour,
            va="center",
            ha="left",
            annotation_clip=False,
            arrowprops={"arrowstyle": "-", "color": colour, "lw": 0.6, "shrinkA": 0, "shrinkB": 0},
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
    references = references or {}
    styles = _method_styles(list(curves), list(references))
    # One panel per row over a shared episode axis, sized for the docs' text column (shown about
    # 700 px wide): room on the right for the reference policies' names.
    fig, axes = plt.subplots(4, 1, figsize=(9, 12), sharex=True, layout="constrained")
    handles: dict[str, Any] = {}
    n_learners = len(curves)
    span = max(int(ds.sizes["episode"]) for ds in curves.values())
    for i, (name, ds) in enumerate(curves.items()):
        style = styles[name]
        n_seeds = int(ds.sizes["seed"])
        label = f"{name} ({_seeds_text(n_seeds)})"
        # Later learners are drawn over earlier ones; their broken lines let the first show.
        z = _Z_LEARNER + 0.1 * i
        dodge = (i - (n_learners - 1) / 2) * 0.008 * span  # held-out bars side by side
        for ax, (var, _) in zip(axes.flat, PANELS, strict=True):
            data = _moving_average(ds[var].transpose("seed", "episode").values, smooth)
            keep = np.isfinite(data).any(axis=0)
            x = np.arange(data.shape[1]) + smooth  # episodes trained at the window's end
            mean, low, high = seed_band(data[:, keep])
            ax.plot(
                x[keep], mean, color=style.colour, ls=style.line, lw=_LEARNER_LW, zorder=z,
                label=label,
            )  # fmt: skip
            ax.fill_between(
                x[keep], low, high, color=style.colour, alpha=0.15, lw=0, zorder=_Z_BAND
            )
            if evaluation is not None and name in evaluation:
                ev = evaluation[name]
                per_seed = ev[var].mean("eval_episode", skipna=True).transpose("seed", ...)
                m, lo, hi = seed_band(per_seed.values)
                xs = ev["after_episode"].values + dodge
                ok = np.isfinite(m)
                err = np.vstack([m - lo, hi - m])[:, ok]
                ax.errorbar(
                    xs[ok],
                    m[ok],
                    yerr=np.where(np.isfinite(err), err, 0.0),
                    fmt=style.marker,
                    ms=5,
                    mfc=style.colour,
                    mec="white",
                    mew=0.6,
                    color=style.colour,
                    elinewidth=1.0,
                    capsize=2,
                    zorder=z + 1,
                )
        handles[label] = Line2D(
            [], [], color=style.colour, ls=style.line, lw=_LEARNER_LW, marker=style.marker,
            ms=5, mec="white", mew=0.6,
        )  # fmt: skip
    pending: list[list[tuple[float, str, str]]] = [[] for _ in PANELS]  # names beside lines
    for ax, labels, (var, _) in zip(axes.flat, pending, PANELS, strict=True):
        values: dict[str, np.ndarray] = {}
        for name, ds in references.items():
            other = [d for d in ds[var].dims if d != "seed"]
            per_seed = ds[var].mean(other, skipna=True) if other else ds[var]
            if np.isfinite(per_seed).any():
                values[name] = np.array([float(np.nanmean(per_seed.values))])
        if not values:
            continue
        lo, hi = ax.get_ylim()
        every = [lo, hi, *(float(v[0]) for v in values.values())]
        tol = 0.004 * (max(every) - min(every))
        for group in _coinciding(values, tol):
            for j, name in enumerate(group):
                style = styles[name]
                ls = style.line if len(group) == 1 else _interleaved(len(group), j)
                ax.axhline(
                    float(values[name][0]), ls=ls, lw=_REFERENCE_LW, color=style.colour,
                    zorder=_Z_REFERENCE,
                )  # fmt: skip
                # Coinciding lines' names are stacked, each joined to the same height.
                labels.append((float(values[name][0]), name, style.colour))
    for name in references:
        style = styles[name]
        handles[f"{name} (reference)"] = Line2D(
            [], [], color=style.colour, ls=style.line, lw=_REFERENCE_LW
        )
    for ax, (_, ylabel) in zip(axes.flat, PANELS, strict=True):
        ax.set_xlabel("training episode")
        # A long name breaks before its parenthesis, so each panel's label fits its height.
        ax.set_ylabel(ylabel if len(ylabel) <= 36 else ylabel.replace(" (", "\n(", 1), fontsize=8.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes.flat[:-1]:  # the shared episode axis is named once, under the last panel
        ax.xaxis.label.set_visible(False)
    _legend_below(fig, list(axes.flat), ncols=3, handles=handles)
    smoothed = f" (moving average over {smooth} episodes)" if smooth > 1 else ""
    caption = f"line: mean over seeds{smoothed}; band: 95% bootstrap interval over seeds"
    second = []
    if evaluation:
        second.append("markers: held-out evaluations, with 95% bootstrap bars")
    if references:
        second.append("thin dashed: reference policies on held-out episodes")
    if second:
        caption += "\n" + "; ".join(second)
    fig.suptitle(f"{title}\n{caption}", fontsize=10)
    for ax, labels in zip(axes.flat, pending, strict=True):  # last: where the layout puts lines
        _label_lines(ax, labels)
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
    """Sweep panels: per method, the mean over seeds of the per-seed mean over held-out episodes.

    Lines are drawn segment by segment: where several methods' segments coincide (all methods
    at 0 below the shortest deadline, say) they take turns in short dashes, and coinciding
    points' markers are set side by side, so that no method hides another.
    """
    # Panels stacked over a shared x axis, sized for the docs' text column (about 700 px).
    fig, axes = plt.subplots(
        len(SWEEP_PANELS), 1, figsize=(9, 8.6), sharex=True, layout="constrained"
    )
    x = ds[dim].values.astype(float)
    step = float(np.min(np.diff(x))) if len(x) > 1 else 1.0
    methods = [str(m) for m in ds["method"].values.tolist()]
    families = [str(f) for f in ds["family"].values.tolist()]
    is_ref = {m: f == "reference" for m, f in zip(methods, families, strict=True)}
    learners = [m for m in methods if not is_ref[m]]
    refs = [m for m in methods if is_ref[m]]
    styles = _method_styles(learners, refs)
    order = {m: i for i, m in enumerate(refs + learners)}  # learners above references

    def z(m: str) -> float:
        return (_Z_REFERENCE if is_ref[m] else _Z_LEARNER) + 0.01 * order[m]

    handles: dict[str, Any] = {}
    for ax, (var, _) in zip(axes, SWEEP_PANELS, strict=True):
        series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for m in methods:
            per_seed = ds[var].sel({"method": m}).mean("eval_episode", skipna=True)
            series[m] = seed_band(per_seed.transpose("seed", dim).values)
        finite = np.concatenate([v[0][np.isfinite(v[0])] for v in series.values()] + [[0.0]])
        tol = 0.004 * float(np.ptp(finite))
        for i in range(len(x) - 1):
            seg = {
                m: v[0][i : i + 2] for m, v in series.items() if np.isfinite(v[0][i : i + 2]).all()
            }
            for group in _coinciding(seg, tol):
                k = len(group)
                for j, m in enumerate(group):
                    style = styles[m]
                    ax.plot(
                        x[i : i + 2],
                        seg[m],
                        ls=style.line if k == 1 else _interleaved(k, j, min(4.0, 24.0 / k)),
                        lw=_REFERENCE_LW if is_ref[m] else _LEARNER_LW,
                        color=style.colour,
                        zorder=z(m),
                        dash_capstyle="butt",
                    )
        for i in range(len(x)):
            point = {m: v[0][i : i + 1] for m, v in series.items() if np.isfinite(v[0][i])}
            for group in _coinciding(point, tol):
                k = len(group)
                dx = min(0.08, 0.4 / max(k - 1, 1)) * step
                for j, m in enumerate(group):
                    style = styles[m]
                    ax.plot(
                        x[i] + (j - (k - 1) / 2) * dx if k > 1 else x[i],
                        point[m][0],
                        ls="none",
                        marker=style.marker,
                        ms=5 if is_ref[m] else 6,
                        mfc=style.colour,
                        mec="white",
                        mew=0.5,
                        zorder=z(m) + 1,
                    )
        for m in learners:
            mean, low, high = series[m]
            band = np.isfinite(mean) & np.isfinite(low)
            ax.fill_between(
                x[band], low[band], high[band], color=styles[m].colour, alpha=0.15, lw=0,
                zorder=_Z_BAND,
            )  # fmt: skip
    for m in learners + refs:
        if not np.isfinite(ds["completion_rate"].sel({"method": m}).values).any():
            continue
        sub = ds.sel({"method": m})
        n_seeds = int(np.isfinite(sub["completion_rate"].values).any(axis=(1, 2)).sum())
        what = f"reference, {_seeds_text(n_seeds)}" if is_ref[m] else _seeds_text(n_seeds)
        style = styles[m]
        handles[f"{m} ({what})"] = Line2D(
            [], [], color=style.colour, ls=style.line, marker=style.marker, mec="white", mew=0.5,
            lw=_REFERENCE_LW if is_ref[m] else _LEARNER_LW, ms=5 if is_ref[m] else 6,
        )  # fmt: skip
    for ax, (_, ylabel) in zip(axes, SWEEP_PANELS, strict=True):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel if len(ylabel) <= 36 else ylabel.replace(" (", "\n(", 1))
        ax.set_xticks(x)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.grid(alpha=0.3)
    for ax in axes[:-1]:  # the shared x axis is named once, under the last panel
        ax.xaxis.label.set_visible(False)
    axes[0].set_ylim(-0.03, 1.03)
    _legend_below(fig, list(axes), ncols=3, handles=handles)
    caption = (
        "per seed: mean over held-out episodes; line: mean over seeds; band: 95% bootstrap "
        "interval over seeds\nthin dashed: reference policies; where lines meet they take turns "
        "in short dashes and their markers stand side by side"
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
