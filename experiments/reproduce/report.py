"""The report of a reproduction: ``report.md`` with its figures, and the generated docs page.

Both are rendered from the results file alone.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import xarray as xr

from experiments.atomic import write_atomic
from experiments.reproduce.assemble import open_tree
from experiments.reproduce.profiles import FIGURES, ReproductionError
from experiments.reproduce.tables import (
    attr_list,
    budget_table,
    comparison_table,
    summary_table,
    sweep_table,
    trend_table,
)


def _profile_text(tree: xr.DataTree) -> str:
    prof = json.loads(tree.attrs["profile_json"])
    budgets = ", ".join(
        f"{fam}: {b['episodes']} episodes (held-out evaluation every {b['eval_every']})"
        for fam, b in prof["budgets"]
        if fam != "default"
    )
    seeds = ", ".join(str(s) for s in attr_list(tree, "seeds"))
    lines = [
        f"- profile `{tree.attrs['profile']}`: seeds {seeds}; {budgets}",
        f"- training setting: preset `{tree.attrs['scenario']}`, t_max = "
        f"{tree.attrs['t_max']:g} s, {tree.attrs['tasks']} tasks per episode in "
        f"{tree.attrs['window_s']:g} s",
        f"- held-out episodes per (method, seed, setting): {tree.attrs['sweep_episodes']} "
        "(env seeds never used in training, the same for every method)",
        f"- learners: {', '.join(f'`{m}`' for m in attr_list(tree, 'methods'))}; references: "
        f"{', '.join(f'`{m}`' for m in attr_list(tree, 'references'))}",
    ]
    skipped = attr_list(tree, "skipped_methods")
    if skipped:
        lines.append(
            f"- not run (not registered in this installation): {', '.join(f'`{m}`' for m in skipped)}"
        )
    return "\n".join(lines)


def _budget_section(tree: xr.DataTree) -> list[str]:
    table = budget_table(tree)
    if not table:
        return []
    return [
        "### Learners at equal budget (held-out episodes during training)",
        "",
        "The same held-out episodes as the summary above, played by each learner after the given "
        "number of training episodes (a longer run passes through the shorter budget with the "
        "same state: no schedule of any learner depends on the total budget).",
        "",
        table,
        "",
    ]


def _report_body(tree: xr.DataTree, figure_dir: str) -> str:
    """The report's sections; figures are referenced under ``figure_dir``."""
    prefix = f"{figure_dir}/" if figure_dir else ""
    figs = attr_list(tree, "figures")
    parts = [
        _profile_text(tree),
        "",
        "Every interval is a 95% bootstrap interval of the mean over seeds (per seed: the mean "
        "over its held-out episodes); the number of seeds is given with each method.",
        "",
        "### Summary at the training setting (held-out episodes)",
        "",
        summary_table(tree),
        "",
        *_budget_section(tree),
        "### Paper vs this run",
        "",
        comparison_table(tree),
        "",
        trend_table(tree),
    ]
    if 3 in figs:
        parts += ["", "### Fig. 3: training curves", "", f"![Fig. 3]({prefix}fig3.png)"]
    if 4 in figs:
        parts += [
            "",
            "### Fig. 4: deadline sweep",
            "",
            f"![Fig. 4]({prefix}fig4.png)",
            "",
            "Completion rate:",
            "",
            sweep_table(tree, "tmax_sweep", "completion_rate", 3),
            "",
            "Total reward per episode:",
            "",
            sweep_table(tree, "tmax_sweep", "total_reward", 1),
        ]
    if 5 in figs:
        parts += [
            "",
            "### Fig. 5: load sweep",
            "",
            f"![Fig. 5]({prefix}fig5.png)",
            "",
            "Total reward per episode:",
            "",
            sweep_table(tree, "load_sweep", "total_reward", 1),
            "",
            "Completion rate:",
            "",
            sweep_table(tree, "load_sweep", "completion_rate", 3),
        ]
    return "\n".join(parts) + "\n"


def _render_figures(tree: xr.DataTree, folder: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    from experiments.plot import load_figure, save_figure, tmax_figure, training_figure

    makers = {3: training_figure, 4: tmax_figure, 5: load_figure}
    paths = []
    for f in set(FIGURES) - set(attr_list(tree, "figures")):
        (folder / f"fig{f}.png").unlink(missing_ok=True)  # of an earlier call: not this result's
    for f in attr_list(tree, "figures"):
        fig = makers[f](tree)
        paths.append(save_figure(fig, folder / f"fig{f}.png"))
        plt.close(fig)
    return paths


def render_report(results: Path | str, folder: Path | str | None = None) -> tuple[Path, list[Path]]:
    """Render the figures and ``report.md`` from a reproduction result file alone.

    Parameters
    ----------
    results : Path or str
        ``results.nc`` of :func:`run_reproduction`.
    folder : Path or str, optional
        Where ``report.md`` and ``fig3.png`` ... go (default: beside ``results``).

    Returns
    -------
    report : Path
    figures : list of Path
    """
    results = Path(results)
    folder = results.parent if folder is None else Path(folder)
    tree = open_tree(results)
    figs = _render_figures(tree, folder)
    text = (
        f"# Reproduction of He et al. 2025, profile `{tree.attrs['profile']}`\n\n"
        "Generated by `aif reproduce` from `results.nc` (every number below is in that file).\n\n"
        + _report_body(tree, "")
    )
    report = write_atomic(folder / "report.md", lambda tmp: Path(tmp).write_text(text))
    return report, figs


_MARK = "reproduction"


def update_docs_page(results: Path | str, page: Path | str, command: str) -> list[Path]:
    """Replace the generated section of a documentation page with a reproduction's results.

    The page holds ``<!-- generated:reproduction -->`` and ``<!-- /generated:reproduction -->``
    markers; what lies between them is replaced, and the figures go to a folder named after the
    page (``docs/reproduction.md`` -> ``docs/reproduction/``).

    Parameters
    ----------
    results : Path or str
        ``results.nc`` of :func:`run_reproduction`.
    page : Path or str
        The markdown page.
    command : str
        The command that produced the results, quoted in the section.

    Returns
    -------
    list of Path
        The page and the figures written.
    """
    page = Path(page)
    text = page.read_text()
    begin, end = f"<!-- generated:{_MARK} -->", f"<!-- /generated:{_MARK} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ReproductionError(f"{page} has no {begin} ... {end} section to replace")
    tree = open_tree(Path(results))
    folder = page.parent / page.stem
    if folder.exists():
        shutil.rmtree(folder)
    figs = _render_figures(tree, folder)
    body = (
        f"{begin}\n"
        f"Measured with `{command}` (profile `{tree.attrs['profile']}`).\n\n"
        + _report_body(tree, page.stem)
        + end
    )
    write_atomic(page, lambda tmp: Path(tmp).write_text(pattern.sub(lambda _m: body, text)))
    return [page, *figs]
