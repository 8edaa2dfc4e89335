"""Markdown tables of a reproduction result: learners and references, sweeps, the paper.

Every table is rendered from the result DataTree alone; every interval is a 95% bootstrap
interval over seeds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from experiments.reproduce.profiles import TABLE_METRICS
from experiments.stats import Interval, mean_interval

#: The paper's reported operating points (He et al., IEEE IoT-J 2025, text and Fig. 3; values read
#: from the text, approximate): completion, mean latency (s), mean pass@100.
PAPER_RESULTS: dict[str, tuple[str, float, float, float]] = {
    "aif": ("active inference with rewardless guidance", 0.99, 8.0, 0.175),
    "aif-paper": ("active inference with rewardless guidance", 0.99, 8.0, 0.175),
    "rainbow": ("Rainbow DQN", 0.85, 8.0, 0.15),
    "ppo": ("PPO", 0.90, 8.0, 0.15),
    "sac": ("SAC", 0.80, 10.0, 0.14),
}
#: How far a measured mean may sit from a number read off the paper's text and still "agree".
PAPER_TOLERANCE: dict[str, float] = {
    "completion_rate": 0.03,
    "mean_latency": 1.0,
    "mean_pass_at_100": 0.02,
}


def attr_list(tree: xr.DataTree, key: str) -> list[Any]:
    """A list attribute of a reproduction result (stored as JSON).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result.
    key : str
        ``figures``, ``methods``, ``skipped_methods``, ``references`` or ``seeds``.
    """
    return list(json.loads(tree.attrs.get(key, "[]")))


def _interval(summary: xr.Dataset, var: str, where: dict[str, Any]) -> Interval:
    # .sel takes a dict here: its keyword ``method`` is the nearest-neighbour option.
    v = summary[var].sel(where).values
    return Interval(float(v[0]), float(v[1]), float(v[2]), int(np.nan_to_num(v[3])))


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _budget_text(tree: xr.DataTree, method: str) -> str:
    episodes = json.loads(tree.attrs["episodes"])
    return str(episodes.get(method, "-"))


def summary_table(tree: xr.DataTree) -> str:
    """Markdown table of every method at the training setting (95% bootstrap intervals).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result (its ``summary/heldout`` group).

    Returns
    -------
    str
        One row per learner and reference policy: completion, mean latency, mean pass@100,
        total reward and cloud share, each ``mean [low, high]``.
    """
    s = tree["summary/heldout"].to_dataset()
    rows = []
    for m, fam in zip(s["method"].values.tolist(), s["family"].values.tolist(), strict=True):
        n = int(np.nan_to_num(s["completion_rate"].sel({"method": m, "stat": "n_seeds"}).values))
        kind = "reference" if fam == "reference" else f"{fam}, {_budget_text(tree, str(m))} ep."
        cells = [_interval(s, k, {"method": m}).format(d) for k, _, d in TABLE_METRICS]
        rows.append([f"`{m}`", kind, str(n), *cells])
    return _md_table(
        ["method", "kind (training episodes)", "seeds", *(h for _, h, _ in TABLE_METRICS)], rows
    )


def budget_table(tree: xr.DataTree) -> str:
    """Markdown table of the learners at equal training budgets (95% bootstrap intervals).

    Every learner is evaluated on the held-out episodes of the training setting during its
    training (group ``evaluation``). This table takes each family's budget (e.g. 100 episodes for
    active inference, 300 for deep RL) as a common point and shows every learner that reached it,
    so that methods are compared after the same number of training episodes. The reference
    policies play the same held-out episodes (the summary table).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result with an ``evaluation`` group.

    Returns
    -------
    str
        One row per (budget, learner); empty when the result has no evaluation during training.
    """
    if "evaluation" not in tree.children:
        return ""
    from experiments.report import METRICS

    ev = tree["evaluation"].to_dataset()
    budgets = sorted(set(json.loads(tree.attrs["episodes"]).values()))
    points = [b for b in budgets if b in ev["after_episode"].values.tolist()]
    digits = {k: d for k, _, d in TABLE_METRICS}
    heads = {k: h for k, h, _ in TABLE_METRICS}
    rows = []
    for point in points:
        at = ev.sel(after_episode=point).mean("eval_episode")
        for m in at["method"].values.tolist():
            per_seed = at.sel({"method": m})
            values = per_seed["completion_rate"].values
            if np.isnan(values).all():
                continue  # trained for fewer episodes than this point
            cells = [mean_interval(per_seed[k].values).format(digits[k]) for k in METRICS]
            rows.append([str(point), f"`{m}`", str(int(np.isfinite(values).sum())), *cells])
    if not rows:
        return ""
    return _md_table(["training episodes", "method", "seeds", *(heads[k] for k in METRICS)], rows)


def sweep_table(tree: xr.DataTree, group: str, var: str, digits: int) -> str:
    """Markdown table of one metric over a sweep: methods as rows, sweep points as columns.

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result.
    group : str
        ``tmax_sweep`` or ``load_sweep``.
    var : str
        A metric of the summary (``completion_rate``, ``total_reward``, ...).
    digits : int
        Decimals shown.
    """
    s = tree[f"summary/{group}"].to_dataset()
    dim = "t_max" if group == "tmax_sweep" else "tasks"
    points = s[dim].values.tolist()
    head = [f"{'t_max' if dim == 't_max' else 'tasks'} = {x:g}" for x in points]
    rows = []
    for m in s["method"].values.tolist():
        rows.append(
            [f"`{m}`"] + [_interval(s, var, {"method": m, dim: x}).format(digits) for x in points]
        )
    return _md_table(["method", *head], rows)


def _comparison_rows(tree: xr.DataTree) -> list[list[str]]:
    s = tree["summary/heldout"].to_dataset()
    rows = []
    for m in s["method"].values.tolist():
        if str(m) not in PAPER_RESULTS:
            continue
        label, *paper = PAPER_RESULTS[str(m)]
        for (k, header, d), value in zip(TABLE_METRICS[:3], paper, strict=True):
            iv = _interval(s, k, {"method": m})
            rows.append(
                [f"`{m}` ({label})", header, f"~{value:g}", iv.format(d), _verdict(iv, value, k)]
            )
    return rows


def _verdict(iv: Interval, paper: float, var: str) -> str:
    if iv.n == 0 or math.isnan(iv.mean):
        return "not measured"
    tol = PAPER_TOLERANCE[var]
    low = iv.low if math.isfinite(iv.low) else iv.mean
    high = iv.high if math.isfinite(iv.high) else iv.mean
    if low - tol <= paper <= high + tol:
        return "agrees"
    return "higher here" if iv.mean > paper else "lower here"


def comparison_table(tree: xr.DataTree) -> str:
    """The paper's operating points beside the measured ones (markdown).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result; its learners named in :data:`PAPER_RESULTS` get a row per metric
        with a verdict (``agrees`` when the paper's number lies within the measured interval
        widened by :data:`PAPER_TOLERANCE`).
    """
    rows = _comparison_rows(tree)
    if not rows:
        return "No method of this run has a number in the paper."
    return _md_table(["method (paper's name)", "metric", "paper", "measured", "verdict"], rows)


def _per_method_means(tree: xr.DataTree, group: str, var: str) -> xr.DataArray:
    return tree[f"summary/{group}"].to_dataset()[var].sel(stat="mean")


def _names(values: Iterable[str]) -> str:
    names = [f"`{v}`" for v in values]
    return ", ".join(names) if names else "none"


def trend_table(tree: xr.DataTree) -> str:
    """The paper's Fig. 4 and 5 statements, each beside what this run measured (markdown).

    Parameters
    ----------
    tree : xarray.DataTree
        A reproduction result with its sweep summaries.

    Notes
    -----
    The paper's statements are about its four methods; a verdict compares the learners of this
    run that map to them (``aif`` or ``aif-paper`` for active inference), and the measured
    column also names the reference policies that meet the same condition.
    """
    rows = []
    learners = [str(m) for m in attr_list(tree, "methods")]
    refs = [str(m) for m in attr_list(tree, "references")]
    aif = [m for m in learners if m in ("aif", "aif-paper")]
    summary = tree["summary"].children
    if "tmax_sweep" in summary:
        c = _per_method_means(tree, "tmax_sweep", "completion_rate")
        t = c["t_max"].values

        def meeting(mask: np.ndarray, level: float, names: list[str]) -> list[str]:
            sub = c.sel(t_max=t[mask])
            return [m for m in names if bool((sub.sel({"method": m}) > level).all())]

        if (t <= 2).any():
            top = float(c.sel(t_max=t[t <= 2]).max())
            rows.append(
                [
                    "t_max <= 2 s: no method completes a task",
                    f"highest completion of any method at t_max <= 2 s: {top:.3f}",
                    "agrees" if top < 0.01 else "differs",
                ]
            )
        mid = (t >= 3) & (t <= 9)
        if mid.any():
            above = meeting(mid, 0.2, learners)
            expect = {m for m in learners if m in ("aif", "aif-paper", "rainbow")}
            verdict = set(above) == expect
            text = (
                f"above 20% at every t_max in 3-9 s: learners {_names(above)}; "
                f"references {_names(meeting(mid, 0.2, refs))}"
            )
            if "cloud" in refs:
                cloud = c.sel({"method": "cloud", "t_max": t[mid]}).values
                lo, hi = f"{np.nanmin(cloud):.2f}", f"{np.nanmax(cloud):.2f}"
                text += f"; `cloud` alone completes {lo if lo == hi else f'{lo}-{hi}'}"
            rows.append(
                [
                    "t_max 3-9 s: only active inference and Rainbow stay above 20% "
                    "(the cloud's share)",
                    text,
                    "agrees" if verdict else "differs",
                ]
            )
        high = t >= 10
        if high.any():
            full = meeting(high, 0.985, learners)
            rows.append(
                [
                    "t_max >= 10 s: only active inference reaches ~100%",
                    f"above 98.5% at every t_max >= 10 s: learners {_names(full)}; "
                    f"references {_names(meeting(high, 0.985, refs))}",
                    "agrees" if aif and set(full) == set(aif) else "differs",
                ]
            )
    if "load_sweep" in summary and learners:
        r = _per_method_means(tree, "load_sweep", "total_reward")
        best, best_all = [], []
        for n in r["tasks"].values.tolist():
            col = r.sel(tasks=n)
            lc = col.sel({"method": learners})
            best.append(str(lc["method"].values[int(np.nanargmax(lc.values))]))
            best_all.append(str(col["method"].values[int(np.nanargmax(col.values))]))
        loads = [int(n) for n in r["tasks"].values]
        rows.append(
            [
                "load 100-200 tasks: active inference keeps the highest total reward",
                "highest mean total reward per load among learners: "
                + ", ".join(f"{n}: `{b}`" for n, b in zip(loads, best, strict=True))
                + "; among all methods: "
                + ", ".join(f"{n}: `{b}`" for n, b in zip(loads, best_all, strict=True)),
                "agrees" if aif and all(b in aif for b in best) else "differs",
            ]
        )
    if not rows:
        return "Figs. 4 and 5 were not part of this run."
    missing = [m for m in ("rainbow", "ppo", "sac") if m not in learners]
    if missing:  # a statement about four methods, checked on fewer
        note = f" (among the learners run; {_names(missing)} not run)"
        rows = [
            [a, b, v + note if v == "agrees" and not a.startswith("t_max <= 2") else v]
            for a, b, v in rows
        ]
    return _md_table(["the paper (He et al. 2025)", "this run (means over seeds)", "verdict"], rows)
