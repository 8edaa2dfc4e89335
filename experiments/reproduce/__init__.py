"""Reproduce the paper's Figs. 3-5 in one command: a typed profile, one Dask task per cell, one result.

A *cell* is one (method, seed, setting): training a learner on one seed, or playing held-out
episodes of a trained learner or of a reference policy at one (t_max, load) setting. Each cell is
one task on a ``distributed`` cluster and writes its own result atomically under ``OUT/cells/``,
so a rerun skips finished cells and a killed worker or run loses nothing finished. The cells are
assembled into one DataTree (``OUT/results.nc``); the figures and ``OUT/report.md`` are rendered
from that file alone.

Split by concern: :mod:`.profiles` (what a run depends on), :mod:`.cells` (one Dask task
each), :mod:`.plan` (which cells), :mod:`.run` (Dask), :mod:`.assemble` (one DataTree),
:mod:`.tables` and :mod:`.report` (Markdown, figures and the docs page).
"""

from __future__ import annotations

from experiments.reproduce.assemble import assemble, compare_results
from experiments.reproduce.cells import Cell, Setting, run_cell
from experiments.reproduce.plan import Plan, make_plan
from experiments.reproduce.profiles import (
    DEFAULT_METHODS,
    FIGURES,
    PROFILES,
    Budget,
    Profile,
    ReproductionError,
    profile_by_name,
)
from experiments.reproduce.report import render_report, update_docs_page
from experiments.reproduce.run import ReproductionResult, local_cluster, run_reproduction
from experiments.reproduce.tables import (
    PAPER_RESULTS,
    attr_list,
    budget_table,
    comparison_table,
    summary_table,
    sweep_table,
    trend_table,
)

__all__ = [
    "DEFAULT_METHODS",
    "FIGURES",
    "PAPER_RESULTS",
    "PROFILES",
    "Budget",
    "Cell",
    "Plan",
    "Profile",
    "ReproductionError",
    "ReproductionResult",
    "Setting",
    "assemble",
    "attr_list",
    "compare_results",
    "comparison_table",
    "local_cluster",
    "make_plan",
    "profile_by_name",
    "render_report",
    "run_cell",
    "run_reproduction",
    "summary_table",
    "sweep_table",
    "trend_table",
    "update_docs_page",
    "budget_table",
]
