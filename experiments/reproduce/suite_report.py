"""The report of a suite: per world, every method against the upper bound; across worlds, the scores.

Rendered from the suite's ``results.nc`` alone: the table of each world (completion, total rg
and rg as a fraction of the bound, 95% bootstrap intervals over seeds), the interquartile mean
and probability of improvement over worlds x seeds (95% stratified bootstrap intervals),
performance profiles, and for worlds that change during training the adaptation of each method.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from experiments.atomic import write_atomic
from experiments.reproduce.assemble import open_tree
from experiments.reproduce.profiles import ReproductionError
from experiments.reproduce.tables import _md_table
from experiments.scores import improvement_table, iqm, performance_profile, stratified_bootstrap
from experiments.stats import mean_interval

__all__ = [
    "Adaptation",
    "adaptation",
    "adaptation_table",
    "fair_table",
    "improvement_md",
    "iqm_table",
    "render_suite_report",
    "score_arrays",
    "update_suite_page",
]

#: Thresholds of the performance profiles (fractions of the bound).
THRESHOLDS = np.linspace(0.0, 1.0, 101)


def _styles(names: Sequence[str], references: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Matplotlib line styles of the figures' methods (the same as in every other figure)."""
    from experiments.plot import _method_styles

    learners = [n for n in names if n not in references]
    table = _method_styles(learners, [n for n in names if n in references])
    return {
        n: {"color": st.colour, "linestyle": st.line, "marker": st.marker, "markevery": 10}
        for n, st in table.items()
    }


def _worlds(tree: xr.DataTree) -> list[str]:
    return list(json.loads(tree.attrs["worlds"]))


def _iv(values: np.ndarray, digits: int) -> str:
    return mean_interval(values).format(digits)


def fair_table(world: xr.DataTree) -> str:
    """Every learner (after training, and the active-inference ones untrained), every reference
    and the bound of one world: completion, total rg and rg over the bound."""
    held = world["heldout"].to_dataset().mean("eval_episode")
    scores = world["scores"].to_dataset()
    bound = world["bound"].to_dataset().mean("eval_episode")
    ev = world["evaluation"].to_dataset() if "evaluation" in world.children else None
    rows = []
    for m in held["method"].values:
        m = str(m)
        fam = str(held["family"].sel({"method": m}).values)
        kind = "reference" if fam == "reference" else "learner"
        rows.append(
            [
                f"`{m}`" + (" (reads the true state)" if kind == "reference" else ""),
                _iv(held["completion_rate"].sel({"method": m}).values, 3),
                _iv(held["total_reward"].sel({"method": m}).values, 2),
                _iv(scores["rg_fraction"].sel({"method": m}).values, 3),
            ]
        )
        if ev is not None and fam == "active-inference" and m in ev["method"].values:
            u = ev.sel({"method": m, "after_episode": 0}).mean("eval_episode")
            rows.append(
                [
                    f"`{m}` untrained (priors only)",
                    _iv(u["completion_rate"].values, 3),
                    _iv(u["total_reward"].values, 2),
                    _iv(scores["rg_fraction"].sel({"method": f"{m} (untrained)"}).values, 3),
                ]
            )
    rows.append(
        [
            "upper bound (`baselines.bound`)",
            _iv(bound["bound_completion"].values, 3),
            _iv(bound["bound_rg"].values, 2),
            "1",
        ]
    )
    rows.append(
        [
            "no-contention bound (each task's best idle server)",
            "-",
            _iv(bound["no_contention_rg"].values, 2),
            _iv((bound["bound_rg"] / bound["no_contention_rg"]).values ** -1, 3),
        ]
    )
    return _md_table(["method", "completion", "total rg", "rg / bound"], rows)


def score_arrays(tree: xr.DataTree, var: str = "rg_fraction") -> dict[str, np.ndarray]:
    """method -> (n_seeds, n_worlds) scores of every method present in every world."""
    worlds = _worlds(tree)
    per = [tree[w]["scores"].to_dataset() for w in worlds]
    methods = [str(m) for m in per[0]["method"].values]
    common = [m for m in methods if all(m in p["method"].values for p in per)]
    return {m: np.stack([p[var].sel({"method": m}).values for p in per], axis=1) for m in common}


def iqm_table(tree: xr.DataTree, methods: Sequence[str] | None = None) -> str:
    """Interquartile mean of rg (and completion) over the bound, worlds x seeds pooled."""
    rg = score_arrays(tree, "rg_fraction")
    done = score_arrays(tree, "completion_fraction")
    names = list(rg) if methods is None else [m for m in methods if m in rg]
    names.sort(key=lambda m: -iqm(rg[m], resamples=200).value)
    rows = [[f"`{m}`", iqm(rg[m]).format(3), iqm(done[m]).format(3)] for m in names]
    return _md_table(["method", "IQM of rg / bound", "IQM of completion / bound"], rows)


def improvement_md(tree: xr.DataTree, methods: Sequence[str]) -> str:
    """P(row > column) on rg over the bound for the given methods, with 95% intervals."""
    rg = score_arrays(tree)
    names = [m for m in methods if m in rg]
    table = improvement_table({m: rg[m] for m in names})
    rows = []
    for a in names:
        rows.append([f"`{a}`", *("-" if a == b else table[(a, b)].format(2) for b in names)])
    return _md_table(["P(row > column)", *(f"`{b}`" for b in names)], rows)


def profile_figure(tree: xr.DataTree, methods: Sequence[str]) -> Any:
    """Performance profiles of rg over the bound (fraction of runs above each threshold).

    Two panels sharing the axes, so that no line hides another: the learners, and the
    references beside the first learner (the same curve in both, for comparison).
    """
    import matplotlib.pyplot as plt

    rg = score_arrays(tree)
    names = [m for m in methods if m in rg]
    refs = [str(r) for r in json.loads(tree.attrs["references"])]
    styles = _styles(names, refs)
    learners = [m for m in names if m not in refs]
    panels = [
        ("learners", learners),
        ("references", [*learners[:1], *(m for m in names if m in refs)]),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.4), sharey=True)
    lo_x = max(0.0, min(float(np.min(rg[m])) for m in names) - 0.05)
    for ax, (title, group) in zip(axes, panels, strict=True):
        for m in group:
            curve = performance_profile(rg[m], THRESHOLDS)
            draws = stratified_bootstrap(
                lambda s: performance_profile(s, THRESHOLDS), rg[m], resamples=500
            )
            lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
            st = styles[m]
            ax.plot(THRESHOLDS, curve, label=m, **st)
            ax.fill_between(THRESHOLDS, lo, hi, color=st["color"], alpha=0.08, linewidth=0)
        ax.set_xlabel(r"$\tau$: total rg as a fraction of the upper bound")
        ax.set_xlim(lo_x, 1.0)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, ncols=1, loc="lower left", framealpha=0.9)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel(r"fraction of runs with score $> \tau$")
    n_runs = next(iter(rg.values())).size
    fig.suptitle(
        f"Performance profiles over {n_runs} runs (worlds x seeds), 95% bands", fontsize=10
    )
    fig.tight_layout()
    return fig


class Adaptation(NamedTuple):
    """How one method met a change during training (each a 95% interval over seeds).

    ``before``: mean rg of the 10 training episodes before the change; ``dip``: ``before``
    minus the lowest 5-episode moving average after it; ``recovery``: episodes from the change
    until the moving average regains 95% of the method's own plateau (the mean of the last 10
    episodes), NaN for a seed that never does; ``regret``: the sum over the episodes after the
    change of (bound - rg), when the training episodes' bounds are known.
    """

    before: Any
    dip: Any
    recovery: Any
    plateau: Any
    regret: Any
    never: int


def adaptation(
    curves: np.ndarray, change: int, bounds: np.ndarray | None = None, window: int = 5
) -> Adaptation:
    """Adaptation of one method from its per-seed training curves.

    Parameters
    ----------
    curves : numpy.ndarray, shape (n_seeds, n_episodes)
        Total rg of every training episode.
    change : int
        First episode of the change.
    bounds : numpy.ndarray, shape (n_seeds, n_episodes), optional
        Upper bound of every training episode (NaN where unknown).
    window : int
        Moving-average width.
    """
    c = np.asarray(curves, dtype=np.float64)
    n_seeds, n_ep = c.shape
    if not 10 <= change <= n_ep - 10:
        raise ValueError(f"change episode {change} needs 10 episodes before and after it")
    kernel = np.ones(window) / window
    before, dip, recovery, plateau, regret = [], [], [], [], []
    never = 0
    for s in range(n_seeds):
        x = c[s]
        pre = float(np.mean(x[change - 10 : change]))
        post = x[change:]
        smooth = np.convolve(post, kernel, mode="valid")
        plat = float(np.mean(x[-10:]))
        hit = np.flatnonzero(smooth >= 0.95 * plat)
        rec = float(hit[0]) if hit.size else np.nan
        never += int(not hit.size)
        before.append(pre)
        dip.append(pre - float(np.min(smooth)))
        recovery.append(rec)
        plateau.append(plat)
        if bounds is not None:
            regret.append(float(np.nansum(bounds[s, change:] - post)))
    return Adaptation(
        mean_interval(before),
        mean_interval(dip),
        mean_interval(recovery),
        mean_interval(plateau),
        mean_interval(regret) if regret else None,
        never,
    )


def _change_points(world: xr.DataTree) -> list[int]:
    return list(json.loads(world.attrs.get("change_points", "[]")))


def adaptation_table(world: xr.DataTree) -> str:
    """The adaptation of every learner of a world that changes during training."""
    points = _change_points(world)
    if not points:
        return ""
    change = points[0]
    train = world["training"].to_dataset()
    bounds = None
    if "train_bound" in world.children:
        bounds = world["train_bound"].to_dataset()["bound_rg"].values
    rows = []
    for m in train["method"].values:
        a = adaptation(train["total_reward"].sel({"method": m}).values, change, bounds)
        rows.append(
            [
                f"`{m}`",
                a.before.format(2),
                a.dip.format(2),
                a.recovery.format(1) + (f" ({a.never} never)" if a.never else ""),
                a.plateau.format(2),
                "-" if a.regret is None else a.regret.format(1),
            ]
        )
    return _md_table(
        [
            "learner",
            "rg before",
            "dip",
            "episodes to 95% of plateau",
            "plateau (last 10)",
            "regret vs bound after the change",
        ],
        rows,
    )


def adaptation_figure(world: xr.DataTree, title: str) -> Any:
    """Training curves (total rg, 5-episode moving average, mean over seeds) with the changes."""
    import matplotlib.pyplot as plt

    train = world["training"].to_dataset()
    names = [str(m) for m in train["method"].values]
    styles = _styles(names, [])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    kernel = np.ones(5) / 5
    for m in names:
        mean = np.nanmean(train["total_reward"].sel({"method": m}).values, axis=0)
        smooth = np.convolve(mean, kernel, mode="valid")
        ax.plot(np.arange(smooth.size) + 4, smooth, label=m, **styles[m])
    if "train_bound" in world.children:
        b = np.nanmean(world["train_bound"].to_dataset()["bound_rg"].values, axis=0)
        ax.plot(np.arange(b.size), b, color="0.3", linewidth=1, linestyle=":", label="upper bound")
    for k in _change_points(world):
        ax.axvline(k, color="0.2", linewidth=1, linestyle="--")
        ax.annotate(f"change at {k}", (k, ax.get_ylim()[1]), fontsize=8, ha="left", va="top")
    ax.set_xlabel("training episode")
    ax.set_ylabel("total rg per episode (5-episode moving average)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    return fig


def _render(tree: xr.DataTree, folder: Path, prefix: str) -> tuple[str, list[Path]]:
    from experiments.plot import save_figure

    folder.mkdir(parents=True, exist_ok=True)
    methods = json.loads(tree.attrs["methods"])
    refs = json.loads(tree.attrs["references"])
    figs: list[Path] = []
    lines: list[str] = []
    for w in _worlds(tree):
        world = tree[w]
        assert isinstance(world, xr.DataTree)
        lines += [
            f"### World `{w}` (preset `{world.attrs['scenario']}`, t_max {world.attrs['t_max']:g} s, "
            f"{world.attrs['tasks']} tasks per episode)",
            "",
            fair_table(world),
            "",
        ]
        table = adaptation_table(world)
        if table:
            path = save_figure(adaptation_figure(world, f"{w}: training with changes"),
                               folder / f"adaptation-{w}.png")  # fmt: skip
            figs.append(path)
            lines += [table, "", f"![Adaptation in {w}]({prefix}{path.name})", ""]
    scored = [m for m in [*methods, *refs] if m in score_arrays(tree)]
    if len(_worlds(tree)) > 1:
        lines += [
            "### Across worlds: interquartile mean (worlds x seeds)",
            "",
            iqm_table(tree, scored),
            "",
            "### Probability of improvement (rg / bound)",
            "",
            improvement_md(tree, methods),
            "",
        ]
    path = save_figure(profile_figure(tree, scored), folder / "profiles.png")
    figs.append(path)
    lines += [f"![Performance profiles]({prefix}{path.name})", ""]
    return "\n".join(lines), figs


def render_suite_report(results: Path | str, folder: Path | str | None = None) -> Path:
    """Render ``report.md`` and its figures beside a suite's ``results.nc``."""
    results = Path(results)
    folder = results.parent if folder is None else Path(folder)
    tree = open_tree(results)
    body, _ = _render(tree, folder, "")
    text = f"# Suite `{tree.attrs['suite']}`\n\nGenerated from `results.nc`.\n\n{body}"
    return write_atomic(folder / "report.md", lambda tmp: Path(tmp).write_text(text))


def update_suite_page(results: Path | str, page: Path | str, command: str) -> list[Path]:
    """Replace the ``<!-- generated:suite-NAME -->`` section of a docs page with a suite's report.

    Figures go to a folder named after the page and the suite (``docs/benchmark/fair/``).
    """
    page = Path(page)
    tree = open_tree(Path(results))
    mark = f"suite-{tree.attrs['suite']}"
    text = page.read_text()
    begin, end = f"<!-- generated:{mark} -->", f"<!-- /generated:{mark} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ReproductionError(f"{page} has no {begin} ... {end} section to replace")
    folder = page.parent / page.stem / str(tree.attrs["suite"])
    if folder.exists():
        shutil.rmtree(folder)
    body, figs = _render(tree, folder, f"{page.stem}/{tree.attrs['suite']}/")
    new = f"{begin}\nMeasured with `{command}`.\n\n{body}{end}"
    write_atomic(page, lambda tmp: Path(tmp).write_text(pattern.sub(lambda _m: new, text)))
    return [page, *figs]
