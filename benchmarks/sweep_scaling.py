"""Sweep scaling: the same reproduction sweep on 1 and 2 local Dask workers, timed side by side.

Run ``python benchmarks/sweep_scaling.py`` (the quick profile, every figure); prints the wall-clock
time of the cells on each cluster, the speed-up (target >= 1.8 on 2 cores) and whether the two
result files are identical (wall-clock timings left out).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from experiments.reproduce import (
    compare_results,
    local_cluster,
    profile_by_name,
    run_reproduction,
)

TARGET = 1.8


def _warm() -> None:
    """Import what every cell needs, so that the timings leave out a worker's first imports."""
    import experiments.train  # noqa: F401
    import generative_models.structured  # noqa: F401
    import learners.structured  # noqa: F401


def _cpu_seconds() -> float:
    """CPU seconds this worker process has used so far (user + system)."""
    t = os.times()
    return t.user + t.system


def timed_sweep(
    n_workers: int, out: Path, profile: str, figures: list[int], methods: list[str] | None
) -> tuple[float, float, object]:
    """Run the sweep into ``out`` on a fresh LocalCluster of ``n_workers`` warm workers.

    Returns
    -------
    wall_s : float
        Seconds from the first submitted cell to the last finished one.
    cpu_s : float
        CPU seconds the workers used meanwhile.
    tree : xarray.DataTree
        The assembled results.
    """
    from dask.distributed import Client

    with local_cluster(n_workers) as cluster, Client(cluster) as client:
        client.run(_warm)
        cpu0 = sum(client.run(_cpu_seconds).values())
        result = run_reproduction(
            profile,
            out,
            figures=figures,
            methods=methods,
            scheduler=cluster.scheduler_address,
            progress=False,
            render=False,
            log=None,
        )
        cpu = sum(client.run(_cpu_seconds).values()) - cpu0
    return result.wall_s, cpu, result.tree


def simulated_makespan(tree: object, workers: int) -> float:
    """Makespan of the sweep's cells on ``workers`` idle workers, from the cells' measured times.

    Greedy list scheduling as the scheduler does it here: a free worker takes the ready cell of
    highest priority (training, then evaluation, then references; in submission order), and an
    evaluation cell is ready once its training cell has finished.
    """
    import heapq

    walls = tree["timing"].to_dataset()["cell_wall_s"]  # type: ignore[index]
    cells = [str(c) for c in walls["cell"].values]
    seconds = dict(zip(cells, walls.values.tolist(), strict=True))
    rank = {"train": 0, "eval": 1, "reference": 2}
    ready = sorted(
        (c for c in cells if not c.startswith("eval/")), key=lambda c: rank[c.split("/")[0]]
    )
    waiting = {c: "/".join(["train", *c.split("/")[1:3]]) for c in cells if c.startswith("eval/")}
    free = [0.0] * workers
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or waiting or running:
        while ready and free:
            free.pop()
            cell = ready.pop(0)
            heapq.heappush(running, (now + seconds[cell], cell))
        now, done = heapq.heappop(running)
        free.append(now)
        released = [c for c, t in waiting.items() if t == done]
        for c in released:
            del waiting[c]
        ready = sorted(ready + released, key=lambda c: rank[c.split("/")[0]])
    return now


def main() -> None:
    """Time the sweep on 1 and 2 workers and print the speed-up and the identity check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", help="reproduction profile (default quick)")
    parser.add_argument("--figures", default="3,4,5", help="figures of the sweep (default 3,4,5)")
    parser.add_argument("--methods", default=None, help="learners (default: the profile's)")
    args = parser.parse_args()
    figures = [int(f) for f in args.figures.split(",")]
    methods = args.methods.split(",") if args.methods else None
    profile = profile_by_name(args.profile)
    print(
        f"sweep: profile {profile.name}, figures {figures}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} before the runs"
    )
    walls, cpus, trees = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="sweep-scaling-") as tmp:
        for n in (1, 2):
            start = time.perf_counter()
            walls[n], cpus[n], trees[n] = timed_sweep(
                n, Path(tmp) / f"workers{n}", profile.name, figures, methods
            )
            print(
                f"{n} worker{'s' if n > 1 else ''}: cells {walls[n]:7.1f} s wall, "
                f"{cpus[n]:7.1f} CPU s in the workers (whole call {time.perf_counter() - start:.1f} s, "
                f"load average {os.getloadavg()[0]:.1f})"
            )
    speedup = walls[1] / walls[2]
    parallelism = cpus[2] / walls[2]
    print(
        f"speed-up 2 vs 1 workers: {speedup:.2f}x (target >= {TARGET}x); the 2 workers kept "
        f"{parallelism:.2f} cores busy on average"
    )
    total = simulated_makespan(trees[1], 1)
    bound = total / simulated_makespan(trees[1], 2)
    print(
        f"on idle cores, with the cell times of the 1-worker run ({total:.1f} s in all), the "
        f"schedule of 2 workers would give {bound:.2f}x"
    )
    differ = compare_results(trees[1], trees[2])
    print(
        "results identical (timings left out): "
        + ("yes" if not differ else f"NO, groups {', '.join(differ)} differ")
    )


if __name__ == "__main__":
    main()
