"""Sophisticated inference: ``sophisticated_search`` against pymdp's ``si_policy_search``.

Run ``python benchmarks/sophisticated_vs_pymdp.py``. Both searches plan from the same seeded
random models (columns of ``A`` and ``B`` drawn as ``u**3``, normalised; log-preferences
``log_softmax`` of a normal draw; a random belief), one belief at a time, in one run.

Ours runs :func:`aif.sophisticated.sophisticated_search` with pymdp's search semantics
(``SearchSettings.pymdp``: penalty 512 for pruned branches, per-modality outcome branching, raw
preferences, mean-field posteriors) in float64. The small cases prune actions and outcomes at
``--threshold`` (default 1/16, pymdp's). The wide case (25 actions, 100 joint outcomes, horizon
4) keeps every action (``--wide-action-threshold``, default 0: at 1/16 all 25 near-uniform
actions would be pruned at the root), prunes outcomes at ``--wide-outcome-threshold`` (default
0.01: none of its outcomes reaches 1/16) and gives ours a budget of ``--budget`` belief nodes.

pymdp runs its jitted ``si_policy_search`` in JAX's float32 (its tree search does not run in
64-bit), in a subprocess per case killed after ``--pymdp-timeout`` seconds (default 60, import
and compile included), so that a search that does not finish cannot hang the benchmark. Its
tree is preallocated (``max_nodes``): the small cases get a size just above what their search
uses, since pymdp's time per call grows with the preallocated size; the wide case gets 20000
(``--pymdp-max-nodes`` sets one size for every case). Its ``max_branching`` is the number of
actions or of outcomes that can pass the threshold, whichever is larger. If the tree fills up,
pymdp stops expanding and the row says ``TREE FULL``.

Columns: ``ours ms`` and ``pymdp ms`` are medians of ``--repeats`` calls after a warm-up call
(pymdp: fewer once its timed calls have taken ``--pymdp-timed-s``, at least one); ``pymdp 1st
s`` is pymdp's first call, compilation plus one search. ``ratio`` is pymdp ms / ours ms (above
1: ours is faster). ``max|dq|`` is the largest difference of the two root action posteriors
(float32 rounding where the two trees are the same; the budgeted case is a smaller tree).
``pruned`` is our pruned mass weighted by our root posterior: the probability, acting on the
tree's posteriors, of reaching an outcome branch that was not expanded before the horizon.
``nodes`` is our count of belief nodes expanded, ``pymdp nodes`` pymdp's used / allocated tree
nodes (it counts action and outcome nodes). Both searches use the entropy stop
``--entropy-stop`` (default -1: never stop early, every tree is searched to its horizon) and
``--gamma`` (default 1, pymdp's).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

# Structure of each model: states per factor, outcomes per modality, controls per factor.
Structure = tuple[list[int], list[int], list[int]]


@dataclass(frozen=True)
class Case:
    """One row: a model structure, a horizon, and the size of pymdp's preallocated tree."""

    name: str
    structure: Structure
    horizon: int
    pymdp_max_nodes: int
    budget: bool = False

    @property
    def actions(self) -> int:
        return math.prod(self.structure[2])


# pymdp's tree sizes for the small cases are just above what its search uses there (358, 5801
# and 3362 nodes at seed 0): its time per call grows with the preallocated size.
CASES: list[Case] = [
    Case("small: 2 factors, 2 modalities", ([3, 2], [3, 2], [2, 2]), 2, 400),
    Case("small: 2 factors, 2 modalities", ([3, 2], [3, 2], [2, 2]), 3, 6000),
    Case("medium: 2 factors, 2 modalities", ([4, 2], [3, 3], [4, 2]), 2, 3500),
    Case("wide: 2 factors, 3 modalities", ([5, 5], [5, 5, 4], [5, 5]), 4, 20000, budget=True),
]


def random_model(seed: int, structure: Structure) -> dict[str, list[np.ndarray]]:
    """A seeded random model and belief, float64 (the same in the parent and the worker)."""
    ns, no, nu = structure
    rng = np.random.default_rng(seed)

    def cat(shape: tuple[int, ...]) -> np.ndarray:
        x = rng.random(shape) ** 3.0 + 1e-3
        return x / x.sum(0, keepdims=True)

    C = []
    for o in no:
        c = rng.standard_normal(o)
        C.append(c - np.log(np.exp(c).sum()))
    return {
        "A": [cat((o, *ns)) for o in no],
        "B": [cat((n, n, u)) for n, u in zip(ns, nu, strict=True)],
        "C": C,
        "qs": [cat((n,)) for n in ns],
    }


# --------------------------------------------------------------------------------------------
# pymdp, in a subprocess
# --------------------------------------------------------------------------------------------


def pymdp_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Compile and time pymdp's search on one case; runs in the child process."""
    import jax
    import jax.numpy as jnp
    from pymdp.agent import Agent
    from pymdp.planning.si import si_policy_search

    jax.config.update("jax_enable_x64", False)
    model = random_model(spec["seed"], tuple(spec["structure"]))  # type: ignore[arg-type]

    def f32(xs: list[np.ndarray]) -> list[Any]:
        return [jnp.asarray(x, dtype=jnp.float32) for x in xs]

    agent = Agent(f32(model["A"]), f32(model["B"]), f32(model["C"]), policy_len=1)
    search = si_policy_search(
        horizon=spec["horizon"],
        max_nodes=spec["max_nodes"],
        max_branching=spec["max_branching"],
        policy_prune_threshold=spec["action_threshold"],
        observation_prune_threshold=spec["threshold"],
        entropy_stop_threshold=spec["entropy_stop"],
        gamma=spec["gamma"],
    )
    qs = [q[None] for q in f32(model["qs"])]
    start = time.perf_counter()
    q_pi, info = jax.block_until_ready(search(agent, qs))
    first = time.perf_counter() - start
    samples: list[float] = []
    # At least one timed call; no more once the timed calls have taken ``max_timed_s``.
    while len(samples) < spec["repeats"] and (not samples or sum(samples) < spec["max_timed_s"]):
        start = time.perf_counter()
        jax.block_until_ready(search(agent, qs))
        samples.append(time.perf_counter() - start)
    used = int(np.asarray(info["tree"].used).sum())
    return {
        "first_s": first,
        "median_s": statistics.median(samples),
        "calls": len(samples),
        "nodes": used,
        "full": used >= spec["max_nodes"],
        "q": np.asarray(q_pi, dtype=np.float64)[0].tolist(),
    }


def run_pymdp(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The worker in a child process, killed after ``timeout`` seconds."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {timeout:g} s"}
    wall = time.perf_counter() - start
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            result["status"] = f"done in {wall:.1f} s"
            return result
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": f"failed (rc {done.returncode}): {tail[:60]}"}


# --------------------------------------------------------------------------------------------
# Ours
# --------------------------------------------------------------------------------------------


def thresholds(case: Case, args: argparse.Namespace) -> tuple[float, float]:
    """Action and outcome thresholds of a case."""
    if case.budget:
        return args.wide_action_threshold, args.wide_outcome_threshold
    return args.threshold, args.threshold


def max_branching(case: Case, outcome_threshold: float) -> int:
    """Children pymdp must hold per node: every action, and every outcome above the threshold."""
    outcomes = math.prod(case.structure[1])
    if outcome_threshold > 0:
        outcomes = min(outcomes, math.floor(1 / outcome_threshold))
    return max(case.actions, outcomes)


def run_ours(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from aif.sophisticated import SearchSettings, sophisticated_search

    model = random_model(args.seed, case.structure)
    t = {k: [torch.tensor(x, dtype=torch.float64) for x in v] for k, v in model.items()}
    settings = SearchSettings.pymdp(
        case.horizon,
        policy_prune_threshold=thresholds(case, args)[0],
        observation_prune_threshold=thresholds(case, args)[1],
        entropy_stop_threshold=args.entropy_stop,
    )
    if case.budget:
        settings = replace(settings, max_nodes=args.budget)

    def call() -> Any:
        return sophisticated_search(
            t["qs"], t["A"], t["B"], t["C"], settings, gamma=args.gamma,
            info_gain="per_modality", preferences="raw", inference="fpi",
        )  # fmt: skip

    result = call()
    samples = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    q = result.q_action
    return {
        "median_s": statistics.median(samples),
        "q": q.tolist(),
        "pruned": float((q * result.pruned_mass).sum()),
        "nodes": int(result.nodes_expanded),
    }


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=1 / 16)
    parser.add_argument(
        "--wide-action-threshold",
        type=float,
        default=0.0,
        help="action threshold of the wide case (1/16 would prune all 25 near-uniform actions)",
    )
    parser.add_argument(
        "--wide-outcome-threshold",
        type=float,
        default=0.01,
        help="outcome threshold of the wide case (no one of its 100 outcomes reaches 1/16)",
    )
    parser.add_argument("--entropy-stop", type=float, default=-1.0)
    parser.add_argument("--gamma", type=float, default=1.0)
    parser.add_argument("--budget", type=int, default=500, help="our node budget, wide case")
    parser.add_argument("--pymdp-timeout", type=float, default=60.0)
    parser.add_argument(
        "--pymdp-max-nodes",
        type=int,
        default=None,
        help="pymdp's preallocated tree size for every case (default: per case)",
    )
    parser.add_argument(
        "--pymdp-timed-s",
        type=float,
        default=5.0,
        help="no further timed pymdp calls once they have taken this long (at least one call)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (ours)")
    parser.add_argument("--no-pymdp", action="store_true", help="time ours only")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print("RESULT " + json.dumps(pymdp_worker(json.loads(args.worker))), flush=True)
        return

    import torch

    torch.set_num_threads(args.threads)
    print(
        f"threshold {args.threshold:g}, entropy stop {args.entropy_stop:g}, gamma {args.gamma:g}, "
        f"our budget (wide) {args.budget}, repeats {args.repeats}, torch threads {args.threads}, "
        f"pymdp timeout {args.pymdp_timeout:g} s"
    )
    labels = [c.name + (f", budget {args.budget}" if c.budget else "") for c in CASES]
    width = max(len(label) for label in labels)
    header = (
        f"{'model':<{width}} {'acts':>4} {'hor':>3} {'ours ms':>9} {'pymdp ms':>9} "
        f"{'pymdp 1st s':>11} {'ratio':>7} {'max|dq|':>8} {'pruned':>7} {'nodes':>6} "
        f"{'pymdp nodes':>11}  pymdp"
    )
    print(header)
    print("-" * len(header))
    for case, label in zip(CASES, labels, strict=True):
        ours = run_ours(case, args)
        if args.no_pymdp:
            ref: dict[str, Any] = {"status": "not run"}
        else:
            spec = {
                "seed": args.seed,
                "structure": case.structure,
                "horizon": case.horizon,
                "action_threshold": thresholds(case, args)[0],
                "threshold": thresholds(case, args)[1],
                "entropy_stop": args.entropy_stop,
                "gamma": args.gamma,
                "repeats": args.repeats,
                "max_timed_s": args.pymdp_timed_s,
                "max_nodes": args.pymdp_max_nodes or case.pymdp_max_nodes,
                "max_branching": max_branching(case, thresholds(case, args)[1]),
            }
            ref = run_pymdp(spec, args.pymdp_timeout)
        ours_ms = 1e3 * ours["median_s"]
        if "median_s" in ref:
            pymdp_ms = 1e3 * ref["median_s"]
            cells = (
                f"{pymdp_ms:9.2f} {ref['first_s']:11.2f} {pymdp_ms / ours_ms:7.1f} "
                f"{float(np.abs(np.subtract(ours['q'], ref['q'])).max()):8.1e}"
            )
            used = f"{ref['nodes']}/{spec['max_nodes']}"
            status = f"{ref['status']}, {ref['calls']} timed" + (
                ", TREE FULL" if ref["full"] else ""
            )
        else:
            cells = f"{'-':>9} {'-':>11} {'-':>7} {'-':>8}"
            used, status = "-", ref["status"]
        print(
            f"{label:<{width}} {case.actions:>4} {case.horizon:>3} {ours_ms:9.2f} {cells} "
            f"{ours['pruned']:7.4f} {ours['nodes']:>6} {used:>11}  {status}",
            flush=True,
        )


if __name__ == "__main__":
    main()
