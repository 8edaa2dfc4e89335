"""Planning time per decision of the active-inference agents, beside the machine's matmul rate.

Run: ``python benchmarks/agent_decision.py [--decisions 500] [--threads 1] [--device cpu]``.
Target: the structured agent ``aif`` takes a median <= 5 ms per decision on one core at its
default settings; the paper's ensemble agent ``aif-paper`` is timed beside it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from environments.learner import EpisodeSpec
from experiments.runconfig import TrainConfig, episode_seed, eval_seed
from learners import build_learner


def matmul_gflops(n: int = 256, repeats: int = 200) -> float:
    """Dense float32 matmul rate of this machine (GFLOP/s) on the configured threads."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    for _ in range(10):
        a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def decision_times(
    agent: str, decisions: int, warmup: int, threads: int, device: str
) -> np.ndarray:
    """Seconds per decision of ``agent`` after ``warmup`` training episodes (held-out episodes)."""
    cfg = TrainConfig(agent=agent, seeds=(0,), threads=threads, device=device)
    learner = build_learner(cfg.context(), 0)
    for ep in range(warmup):
        learner.train_round([EpisodeSpec(episode_seed(0, ep), ep)])
    times: list[float] = []
    k = 0
    while len(times) < decisions:
        times += learner.evaluate(EpisodeSpec(eval_seed(0, k), warmup)).decision_s
        k += 1
    return np.asarray(times[:decisions])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup-episodes", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = matmul_gflops()
    print(f"threads: {args.threads}; device: {args.device}; decisions timed: {args.decisions}")
    print(f"matmul rate of this machine (256x256 float32): {machine:.1f} GFLOP/s")
    structured = decision_times(
        "aif", args.decisions, args.warmup_episodes, args.threads, args.device
    )
    # Candidates scored per decision: 21 actions now, and for horizon 2, 8 imagined next tasks
    # x 21 actions after each of them; each a truncated log-normal over 12 quantiles.
    rows = (21 + 21 * 8 * 21) * 12
    med = float(np.median(structured))
    print(
        f"aif       : median {1e3 * med:6.2f} ms, p90 {1e3 * np.percentile(structured, 90):6.2f} ms "
        f"per decision (target <= 5 ms: {'meets' if med <= 5e-3 else 'MISSES'}); "
        f"{rows / med:,.0f} outcome quantiles/s, {rows / med / (machine * 1e9):.2e} per matmul FLOP/s"
    )
    paper = decision_times(
        "aif-paper", max(100, args.decisions // 5), args.warmup_episodes, args.threads, args.device
    )
    pm = float(np.median(paper))
    print(
        f"aif-paper : median {1e3 * pm:6.2f} ms, p90 {1e3 * np.percentile(paper, 90):6.2f} ms "
        f"per decision; ratio aif / aif-paper = {med / pm:.3f}"
    )


if __name__ == "__main__":
    main()
