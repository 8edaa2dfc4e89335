"""Environment throughput: steps per second of the offloading world beside Gymnasium's CartPole-v1.

Run ``python benchmarks/env_throughput.py``; prints steps/s per preset and the ratio to CartPole.
Targets: the paper preset >= 5,000 steps/s, every scenario preset >= 2,000, the large one >= 1,000.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

from environments import CloudEdgeOffloadEnv, ScenarioConfig

TARGETS = {
    "paper": 5_000.0,
    "large": 1_000.0,
    "heavy": 2_000.0,
    "tight": 2_000.0,
    "contention": 2_000.0,
    "bursty": 2_000.0,
    "diurnal": 2_000.0,
    "drift": 2_000.0,
}
#: Reset options per preset: the drift preset is measured after its changes (training episode 60).
RESET_OPTIONS: dict[str, dict[str, int]] = {"drift": {"episode": 60}}


def steps_per_second(
    env: gym.Env, actions: list, seconds: float, options: dict | None = None
) -> float:
    """Steps/s of ``env`` fed ``actions`` in a loop (resets included), over about ``seconds``."""
    env.reset(seed=0, options=options)
    n, k = 0, len(actions)
    start = time.perf_counter()
    while True:
        for _ in range(200):
            _, _, terminated, truncated, _ = env.step(actions[n % k])
            n += 1
            if terminated or truncated:
                env.reset(options=options)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def offload_actions(env: CloudEdgeOffloadEnv, rng: np.random.Generator, count: int) -> list:
    """Random valid native actions: uniform server, uniform shares in [0, 1]^3."""
    return [
        {
            "server": int(rng.integers(env.n_servers)),
            "shares": rng.uniform(0, 1, 3).astype(np.float32),
        }
        for _ in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per env")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        "Measuring the unwrapped envs (no PassiveEnvChecker / OrderEnforcing wrappers) with random "
        "valid actions, resets included, one process on one core."
    )
    cart = gym.make("CartPole-v1", disable_env_checker=True).unwrapped
    cart_actions = [int(a) for a in rng.integers(0, 2, size=4096)]
    cart_sps = steps_per_second(cart, cart_actions, args.seconds)
    print(f"{'CartPole-v1':28s} {cart_sps:12,.0f} steps/s")
    paper_sps = float("nan")  # the paper preset is measured first
    for preset, target in TARGETS.items():
        env = CloudEdgeOffloadEnv(ScenarioConfig.preset(preset))
        actions = offload_actions(env, rng, 4096)
        sps = steps_per_second(env, actions, args.seconds, RESET_OPTIONS.get(preset))
        if preset == "paper":
            paper_sps = sps
        verdict = "meets" if sps >= target else "MISSES"
        print(
            f"{'CloudEdgeOffload/' + preset:28s} {sps:12,.0f} steps/s   ratio to CartPole "
            f"{sps / cart_sps:6.3f}   to paper {sps / paper_sps:5.2f}   target >= {target:,.0f}: "
            f"{verdict}   ({env.n_servers} servers, {env.n_terminals} terminals)"
        )


if __name__ == "__main__":
    main()
