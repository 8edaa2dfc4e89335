"""Training throughput of the deep-RL baselines beside the raw env, measured in one run.

Run ``python benchmarks/drl_throughput.py``. Prints, per algorithm at its default configuration
on the paper preset, training env-steps/s (collection and updates, vectorised as in `aif train`)
and its ratio to the raw env's steps/s through the same discrete action set.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from environments import CloudEdgeOffloadEnv
from environments.learner import EpisodeSpec
from environments.scheduler import SchedulerView


def make_view() -> SchedulerView:
    """A scheduler view of the paper preset at t_max 15 s."""
    return SchedulerView(CloudEdgeOffloadEnv(preset="paper", t_max=15.0))


def raw_steps_per_second(seconds: float) -> float:
    """Steps/s of the env through the discrete action set, random feasible actions, resets included."""
    view = make_view()
    rng = np.random.default_rng(0)
    view.reset(seed=0)
    n, episode = 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = view.step(int(rng.choice(np.flatnonzero(view.mask))))
        n += 1
        if terminated or truncated:
            episode += 1
            view.reset(seed=episode)
    return n / (time.perf_counter() - start)


def training_steps_per_second(build: Callable[[], object], rounds: int) -> tuple[float, int]:
    """Env steps/s of ``rounds`` training rounds after one warm-up round (library JIT, buffers)."""
    runner = build()
    n_envs = runner.config.n_envs  # type: ignore[attr-defined]
    runner.train_round([EpisodeSpec(i) for i in range(n_envs)])  # type: ignore[attr-defined]
    steps = 0
    start = time.perf_counter()
    for k in range(1, rounds + 1):
        specs = [EpisodeSpec(k * n_envs + i) for i in range(n_envs)]
        logs = runner.train_round(specs)  # type: ignore[attr-defined]
        steps += sum(len(log.outcomes) for log in logs)
    return steps / (time.perf_counter() - start), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per algorithm")
    parser.add_argument("--seconds", type=float, default=3.0, help="raw env measuring time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from baselines.drl.ppo import PPOConfig, PPORunner
    from baselines.drl.rainbow import RainbowConfig, RainbowRunner
    from baselines.drl.sac import SACConfig, SACRunner

    builders: dict[str, Callable[[], object]] = {
        "rainbow": lambda: RainbowRunner(RainbowConfig(), make_view, 0),
        "ppo": lambda: PPORunner(PPOConfig(), make_view, 0),
        "sac": lambda: SACRunner(SACConfig(), make_view, 0),
    }
    print(
        "Paper preset, t_max 15 s, default configurations, one torch thread; a round is one "
        "100-task episode in each vectorised env; the first round (JIT, warm-up) is not timed."
    )
    raw = raw_steps_per_second(args.seconds)
    print(f"{'raw env (discrete actions)':28s} {raw:10,.0f} env steps/s   ratio 1.000")
    for name, build in builders.items():
        sps, steps = training_steps_per_second(build, args.rounds)
        print(
            f"{name + ' training':28s} {sps:10,.0f} env steps/s   ratio {sps / raw:.3f}  ({steps} steps)"
        )
    print(f"{'raw env, again':28s} {raw_steps_per_second(args.seconds):10,.0f} env steps/s")


if __name__ == "__main__":
    main()
