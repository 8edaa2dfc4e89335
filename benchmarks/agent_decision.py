"""Planning time per decision of the active-inference agent, beside the machine's matmul rate.

Run: ``python benchmarks/agent_decision.py [--decisions 300] [--threads 1]``. Target: median <= 20 ms
per decision on one core at the default settings (J=128, K=16, I=3, horizon 2, ensemble 5).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from experiments.train import TrainConfig, build_agent, episode_seed, make_env, run_episode


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup-episodes", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig.for_agent("aif", seeds=(0,))
    env = make_env(cfg)
    agent = build_agent(cfg, env, 0)
    model = agent.model
    # a fitted model: timing does not depend on the weights, but the standardisation should be real
    for ep in range(args.warmup_episodes):
        run_episode(agent, env, episode_seed(0, ep))
        agent.learn()
    times: list[float] = []
    ep = args.warmup_episodes
    obs, _ = env.reset(seed=episode_seed(0, ep))
    while len(times) < args.decisions:
        obs_t = torch.as_tensor(obs, dtype=torch.float32)
        t0 = time.perf_counter()
        decision = agent.act(obs_t)
        times.append(time.perf_counter() - t0)
        shares = model.to_shares(obs_t, decision.choice, decision.vector)
        action = {"server": decision.choice, "shares": shares.numpy().astype(np.float32)}
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            ep += 1
            obs, _ = env.reset(seed=episode_seed(0, ep))
    p, m = cfg.planner, cfg.model
    n_servers = int(env.action_space["server"].n)
    outcome_rows = p.candidates * p.iterations * p.horizon * m.ensemble_size
    transition_rows = p.candidates * p.iterations * (p.horizon - 1) * m.ensemble_size * n_servers
    h = m.hidden
    flops_out = 2 * (model.n_out_in * h + h * h + h * 6)
    flops_tr = 2 * (model.n_tr_in * h + h * h + h * 2 * model.layout.dynamic_width)
    median = statistics.median(times)
    rows_per_s = (outcome_rows + transition_rows) / median
    agent_gflops = (outcome_rows * flops_out + transition_rows * flops_tr) / median / 1e9
    machine = matmul_gflops()
    print(f"threads: {args.threads}; decisions timed: {len(times)}")
    print(
        f"settings: J={p.candidates} K={p.elites} I={p.iterations} H={p.horizon} "
        f"E={m.ensemble_size} hidden={h} servers={n_servers}"
    )
    print(
        f"planning time per decision: median {1e3 * median:.2f} ms, "
        f"p90 {1e3 * float(np.percentile(times, 90)):.2f} ms (target <= 20 ms)"
    )
    print(
        f"ensemble rows per decision: {outcome_rows} outcome + {transition_rows} transition; "
        f"{rows_per_s:,.0f} rows/s"
    )
    print(f"matmul rate of this machine (256x256 float32): {machine:.1f} GFLOP/s")
    print(
        f"agent network FLOP rate: {agent_gflops:.2f} GFLOP/s = {agent_gflops / machine:.3f} of the "
        "matmul rate (the rest is per-operation overhead of small tensors)"
    )


if __name__ == "__main__":
    main()
