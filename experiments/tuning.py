"""The pre-registered tuning budget of the deep-RL learners: learning rates on validation seeds.

Every deep-RL learner gets the same budget, chosen before any test run: 3 learning rates (3e-4,
1e-3, 3e-3) x 2 validation run seeds (100 and 101, whose env seeds are never training or
held-out env seeds of runs with seeds 0-4), 100 episodes on the paper preset at t_max 15 s. The
pick is the highest mean held-out completion after the last episode, ties broken by total reward.
Run ``python -m experiments.tuning --agents rainbow-informed,ppo-informed,sac-informed``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from experiments.runconfig import TrainConfig
from experiments.train import run_training

__all__ = ["RATES", "VALIDATION_SEEDS", "TuningRow", "pick", "tune"]

#: The learning rates every deep-RL learner is tuned over (for SAC: the critics' rate).
RATES: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
#: Validation run seeds (never the seeds results are reported on).
VALIDATION_SEEDS: tuple[int, ...] = (100, 101)


class TuningRow(NamedTuple):
    """Held-out metrics after the last training episode, per validation seed."""

    agent: str
    learning_rate: float
    completion: tuple[float, ...]
    latency: tuple[float, ...]
    pass_at_100: tuple[float, ...]
    reward: tuple[float, ...]


def tune(
    agents: Sequence[str],
    out: Path,
    rates: Sequence[float] = RATES,
    seeds: Sequence[int] = VALIDATION_SEEDS,
    episodes: int = 100,
    workers: int = 2,
    progress: bool = True,
) -> list[TuningRow]:
    """Train every agent at every rate on the validation seeds (resumable; one run folder each).

    Parameters
    ----------
    agents : sequence of str
        Registered learner names.
    out : Path
        Folder of the runs (``out/<agent>-lr<rate>``).
    rates, seeds : sequences
        The budget (default the pre-registered one).
    episodes : int
        Training episodes per run.
    workers : int
        Seeds trained at once on a Dask ``LocalCluster``.
    progress : bool
    """
    rows = []
    for agent in agents:
        for lr in rates:
            config = TrainConfig(
                agent=agent,
                episodes=episodes,
                seeds=tuple(seeds),
                eval_every=episodes,
                eval_episodes=5,
                settings=(("learning_rate", float(lr)),),
            )
            tree = run_training(
                config, Path(out) / f"{agent}-lr{lr:g}", progress=progress, workers=workers
            )
            ev = tree["evaluation"].to_dataset().sel(after_episode=episodes).mean("eval_episode")

            def per_seed(name: str, ds=ev) -> tuple[float, ...]:
                return tuple(float(v) for v in ds[name].values)

            rows.append(
                TuningRow(
                    agent,
                    float(lr),
                    per_seed("completion_rate"),
                    per_seed("mean_latency"),
                    per_seed("mean_pass_at_100"),
                    per_seed("total_reward"),
                )
            )
    return rows


def pick(rows: Sequence[TuningRow]) -> dict[str, float]:
    """Per agent, the rate of highest mean completion, ties broken by mean total reward."""
    best: dict[str, tuple[float, float, float]] = {}
    for r in rows:
        key = (round(float(np.mean(r.completion)), 3), float(np.mean(r.reward)), r.learning_rate)
        if r.agent not in best or key[:2] > best[r.agent][:2]:
            best[r.agent] = key
    return {agent: key[2] for agent, key in best.items()}


def table(rows: Sequence[TuningRow]) -> str:
    """The tuning table in Markdown: means of the seeds, each seed in brackets."""

    def cell(values: tuple[float, ...], digits: int) -> str:
        inner = ", ".join(f"{v:.{digits}f}" for v in values)
        return f"{np.mean(values):.{digits}f} ({inner})"

    lines = [
        "| learner | learning rate | completion | mean latency (s) | mean pass@100 | total reward |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.agent} | {r.learning_rate:g} | {cell(r.completion, 3)} | "
            f"{cell(r.latency, 2)} | {cell(r.pass_at_100, 3)} | {cell(r.reward, 2)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="rainbow-informed,ppo-informed,sac-informed")
    parser.add_argument("--out", default="runs/tuning")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    rows = tune(
        [a for a in args.agents.split(",") if a],
        Path(args.out),
        episodes=args.episodes,
        workers=args.workers,
    )
    print(table(rows))
    for agent, lr in pick(rows).items():
        print(f"kept: {agent} learning_rate={lr:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
