"""An independent check of the PPO baseline: MaskablePPO as anyone would train it, library defaults.

Run ``python benchmarks/default_ppo_check.py``. Trains sb3-contrib's ``MaskablePPO("MlpPolicy", env)``
with every default (no tuning, no normalisation, one env, its own episode resets) on the paper
preset for the same budgets as `aif train` (100 and 300 episodes of 100 tasks), and plays the
held-out evaluation episodes `aif train` uses for run seeds 0-4 (``eval_seed(seed, k)``, k < 5),
deterministically with the mask. Uses none of ``baselines.drl``: only the env, its discrete
wrapper and the library. Prints completion, mean latency, mean pass@100 and total reward with
95% bootstrap intervals over seeds.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from environments import CloudEdgeOffloadEnv, episode_metrics
from environments.scheduler import SchedulerView
from experiments.report import METRICS
from experiments.runconfig import eval_seed
from experiments.stats import mean_interval


def make_env() -> SchedulerView:
    """The paper preset at t_max 15 s seen through the scheduler view (it has action_masks)."""
    return SchedulerView(CloudEdgeOffloadEnv(preset="paper", t_max=15.0))


def evaluate(model: object, seed: int, episodes: int) -> dict[str, float]:
    """Mean metrics over the held-out episodes of run seed ``seed``."""
    env = make_env()
    rows = []
    for k in range(episodes):
        obs, _ = env.reset(seed=eval_seed(seed, k))
        done = False
        while not done:
            action, _ = model.predict(  # type: ignore[attr-defined]
                obs, deterministic=True, action_masks=env.action_masks()
            )
            obs, _, terminated, truncated, _ = env.step(int(action))
            done = terminated or truncated
        m = episode_metrics(env.outcomes())
        rows.append([getattr(m, x) for x in METRICS])
    return dict(zip(METRICS, np.nanmean(np.asarray(rows, float), axis=0), strict=True))


def main() -> None:
    from sb3_contrib import MaskablePPO

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budgets", type=int, nargs="+", default=[100, 300], help="episodes")
    parser.add_argument("--eval-episodes", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tasks = 100
    results: dict[int, list[dict[str, float]]] = {b: [] for b in args.budgets}
    for seed in args.seeds:
        model = MaskablePPO("MlpPolicy", make_env(), seed=seed, verbose=0)
        done = 0
        for budget in sorted(args.budgets):
            model.learn((budget - done) * tasks, reset_num_timesteps=False)
            done = budget
            results[budget].append(evaluate(model, seed, args.eval_episodes))
            print(f"seed {seed} after {budget} episodes: " + ", ".join(
                f"{k} {v:.3f}" for k, v in results[budget][-1].items()), flush=True)  # fmt: skip
    print("MaskablePPO with library defaults [95% bootstrap interval over seeds]")
    for budget in sorted(args.budgets):
        cells = [mean_interval([r[m] for r in results[budget]]).format(3) for m in METRICS]
        print(
            f"{budget:4d} episodes  "
            + "  ".join(f"{m} {c}" for m, c in zip(METRICS, cells, strict=True))
        )


if __name__ == "__main__":
    main()
