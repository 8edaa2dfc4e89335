"""Tables of ``docs/environment.md`` written from code, so every number there is one the code gives.

``python -m experiments.doc_tables`` rewrites the generated blocks of the page (between
``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->``); ``--check`` only compares and
exits 1 when the page is stale. ``--fast`` limits either to the blocks that need no simulation.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["BLOCKS", "FAST_BLOCKS", "render", "update_page"]

PAGE = Path(__file__).resolve().parents[1] / "docs" / "environment.md"
CLOUD, EDGE = "gptj6b-a800-optimised", "gptj6b-rtx3090-eager"
#: Seeds of the reference tables (the first episodes of ``aif simulate --seed 0``).
TABLE_EPISODES = 10


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _profiles() -> str:
    from environments.llm_profiles import load_profile
    from environments.tasks import task_arrays

    tokens, _ = task_arrays()
    lo, med, hi = float(tokens.min()), float(np.median(tokens)), float(tokens.max())
    rows = []
    for name, role in ((CLOUD, "cloud"), (EDGE, "edge")):
        p = load_profile(name)
        pool = p.memory_pool_gib
        fits = p.raw["derived_from"]["fits_on_h100"]
        full = [p.compute_time(t, 1.0, 1.0) for t in (lo, med, hi)]
        shares = [p.compute_time(med, s, 1.0) for s in (0.25, 0.5, 0.75)]
        rows.append(
            [
                f"{role}: {p.gpu}, {p.mode}",
                f"{fits['step_fixed_ms']:.2f} + {fits['step_per_seq_ms']:.4f} b",
                f"{p.step_fixed_ms:.2f} + {p.step_per_seq_ms:.4f} b",
                f"{pool:.2f}",
                f"{p.slot_gib:.3f}",
                f"{p.batch_size(pool)} x {p.waves(pool):.0f}",
                f"{p.share_k:.3f}",
                " / ".join(f"{t:.2f}" for t in full),
                " / ".join(f"{t:.2f}" for t in shares),
            ]
        )
    header = [
        "profile",
        "decode step on the H100 (ms, batch b)",
        "decode step on the target (ms)",
        "memory pool (GiB)",
        "slot per sample (GiB)",
        "batch x waves at full memory",
        "share k",
        f"full-share compute, prompts {lo:.0f} / {med:.1f} / {hi:.0f} tokens (s)",
        "compute at compute share 0.25 / 0.5 / 0.75, median prompt (s)",
    ]
    return _md(header, rows)


def _tasks() -> str:
    from environments.llm_profiles import load_profile
    from environments.tasks import task_arrays

    tokens, request = task_arrays()
    rows = [
        [
            "prompt tokens (GPT-2 pre-token estimate)",
            f"{tokens.min():.0f}",
            f"{np.median(tokens):.1f}",
            f"{tokens.max():.0f}",
        ],
        [
            "request bytes",
            f"{request.min():.0f}",
            f"{np.median(request):.0f}",
            f"{request.max():.0f}",
        ],
    ]
    for name, role in ((CLOUD, "cloud"), (EDGE, "edge")):
        p = load_profile(name).pass_at_k
        rows.append(
            [
                f"pass@100, {role} (mean {p.mean():.4f}; {np.mean(p > 0):.0%} of problems above 0)",
                f"{p.min():.3f}",
                f"{np.median(p):.3f}",
                f"{p.max():.3f}",
            ]
        )
    return _md(["quantity over the 164 problems", "min", "median", "max"], rows)


def _presets() -> str:
    from environments import PRESETS, ScenarioConfig

    rows = []
    for name in PRESETS:
        c = ScenarioConfig.preset(name)
        kinds = [s.kind for s in c.servers]
        rows.append(
            [
                name,
                f"{kinds.count('cloud')} cloud + {kinds.count('edge')} edge",
                str(c.n_terminals),
                str(c.tasks_per_episode),
                f"{c.episode_window_s:.1f}",
                f"{c.arrival_rate:.3f}",
                f"{c.t_max:g}",
            ]
        )
    header = ["preset", "servers", "terminals", "tasks", "window (s)", "arrivals/s", "t_max (s)"]
    return _md(header, rows)


def _reference_rows(policies: list[str], episodes: int, **overrides: object) -> list[list[str]]:
    from environments import ScenarioConfig
    from experiments.simulate import evaluate_policy

    cfg = ScenarioConfig.preset("paper", **overrides)
    rows = []
    for name in policies:
        r = evaluate_policy(name, cfg, episodes, 0)
        rows.append(
            [
                name,
                r.interval("completion_rate").format(3),
                r.interval("mean_latency").format(2),
                r.interval("mean_pass_at_100").format(3),
                r.interval("total_reward").format(1),
                r.interval("cloud_share").format(2),
            ]
        )
    return rows


_METRIC_HEADER = [
    "completion",
    "mean latency (s)",
    "mean pass@100",
    "total reward",
    "cloud share",
]


def _references() -> str:
    from baselines import POLICY_NAMES

    rows = _reference_rows(list(POLICY_NAMES), TABLE_EPISODES)
    return _md(["policy", *_METRIC_HEADER], rows)


def _tmax_sweep() -> str:
    rows = []
    for t_max in (3.0, 5.0, 9.0, 10.0, 15.0):
        for row in _reference_rows(
            ["cloud", "edge_least_loaded", "edge_first", "lookahead"], TABLE_EPISODES, t_max=t_max
        ):
            rows.append([f"{t_max:g}", *row])
    return _md(["t_max (s)", "policy", *_METRIC_HEADER], rows)


def _load_sweep() -> str:
    rows = []
    for tasks in (100, 150, 200):
        policies = ["cloud", "edge_least_loaded", "greedy", "frugal", "edge_first", "lookahead"]
        for row in _reference_rows(policies, TABLE_EPISODES, tasks_per_episode=tasks):
            rows.append([str(tasks), *row])
    return _md(["tasks in 240 s", "policy", *_METRIC_HEADER], rows)


#: Generated blocks of the page, by name.
BLOCKS: dict[str, Callable[[], str]] = {
    "profiles": _profiles,
    "tasks": _tasks,
    "presets": _presets,
    "references": _references,
    "tmax_sweep": _tmax_sweep,
    "load_sweep": _load_sweep,
}
#: Blocks that need no simulation (checked by the default test suite).
FAST_BLOCKS = ("profiles", "tasks", "presets")


def render(name: str) -> str:
    """The text of one generated block."""
    return BLOCKS[name]()


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- generated:{name} -->\n)(.*?)(\n<!-- /generated:{name} -->)", flags=re.DOTALL
    )


def update_page(names: tuple[str, ...], check: bool, page: Path = PAGE) -> list[str]:
    """Rewrite (or, with ``check``, compare) the named blocks; returns the stale ones."""
    text = page.read_text()
    stale = []
    for name in names:
        pattern = _pattern(name)
        match = pattern.search(text)
        if match is None:
            raise ValueError(f"{page} has no block <!-- generated:{name} -->")
        body = render(name)
        if match.group(2) != body:
            stale.append(name)
            text = text[: match.start(2)] + body + text[match.end(2) :]
    if not check and stale:
        page.write_text(text)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    unknown = [a for a in args if a not in ("--check", "--fast")]
    if unknown:
        print(
            f"doc_tables: unknown arguments {unknown}; use --check and/or --fast", file=sys.stderr
        )
        return 2
    names = FAST_BLOCKS if "--fast" in args else tuple(BLOCKS)
    stale = update_page(names, check="--check" in args)
    if stale:
        print(("stale: " if "--check" in args else "rewrote: ") + ", ".join(stale))
        return 1 if "--check" in args else 0
    print("up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
