"""Episode metrics of the offloading world: completion rate, latency, pass@100 and reward.

Computed from the ``info`` dicts that ``CloudEdgeOffloadEnv.step`` returns, one per task.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

__all__ = ["EpisodeMetrics", "episode_metrics"]


class EpisodeMetrics(NamedTuple):
    """Summary of one episode.

    ``mean_latency`` and ``mean_pass_at_100`` average over completed tasks only (NaN when none
    completed), as the paper's mean latency does; ``total_reward`` sums ``r = 1/L + P``.
    """

    completion_rate: float
    mean_latency: float
    mean_pass_at_100: float
    total_reward: float
    n_tasks: int
    n_completed: int
    n_rejected: int
    cloud_share: float


def episode_metrics(infos: Sequence[Mapping[str, Any]]) -> EpisodeMetrics:
    """Summarise an episode from its per-step ``info`` dicts.

    Parameters
    ----------
    infos : sequence of mapping, length n_tasks
        Each with at least ``completed``, ``latency``, ``pass_at_100``, ``reward`` (latency and
        pass@100 are read for completed tasks only); ``failure`` and ``server_kind`` are used when
        present.

    Returns
    -------
    EpisodeMetrics
        ``cloud_share`` is the fraction of completed tasks that ran on a cloud server.
    """
    n = len(infos)
    if n == 0:
        raise ValueError("episode_metrics needs at least one info dict, got an empty sequence")
    done = [i for i in infos if bool(i["completed"])]
    k = len(done)
    mean_lat = math.fsum(float(i["latency"]) for i in done) / k if k else math.nan
    mean_p = math.fsum(float(i["pass_at_100"]) for i in done) / k if k else math.nan
    cloud = sum(1 for i in done if i.get("server_kind") == "cloud")
    return EpisodeMetrics(
        completion_rate=k / n,
        mean_latency=mean_lat,
        mean_pass_at_100=mean_p,
        total_reward=math.fsum(float(i["reward"]) for i in infos),
        n_tasks=n,
        n_completed=k,
        n_rejected=sum(1 for i in infos if i.get("failure") == "rejected"),
        cloud_share=cloud / k if k else math.nan,
    )
