"""Contention between co-located tasks: the slowdown per co-running task, from the measured decode.

A law outside the share law of ``llm_profiles``: a task's compute time grows with the number of
other tasks running on its server when it starts, never shrinks (the multiplier is >= 1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from environments.llm_profiles import LLMProfile, profile_dir

__all__ = [
    "contention_multiplier",
    "measured_per_task_slowdown",
    "per_task_slowdown",
]


def per_task_slowdown(profile: LLMProfile) -> float:
    """Relative slowdown ``gamma`` of a task's compute per other task running beside it.

    Compute shares partition a GPU's compute (as CUDA MPS's active-thread percentage does), not
    its memory bandwidth. In a decode step ``d(b) = a + c b`` (the DistServe-style form the
    profile fits to the measured batch-1..100 decode), the per-sequence part ``c b`` is the
    traffic of the batch's own KV cache. A co-running task streams its batch through the same
    memory in the same interval, so each step of this task waits for about that much more
    traffic: per co-running task with a batch of the same size, the step grows by ``c b``, a
    fraction ``gamma = c b / (a + c b)`` of the task's own step, with ``b`` the profile's batch
    per wave at its full memory pool. Where the measured step does not grow with the batch (the
    eager, launch-bound mode: ``c = 0``), ``gamma = 0``. The form is assumed; ``a``, ``c`` and
    ``b`` are the profile's (measured on the H100 and scaled by datasheet ratios, which scale
    ``a`` and ``c`` alike and leave ``gamma`` unchanged).

    Returns
    -------
    float
        ``gamma >= 0``.
    """
    batch = float(profile.batch_size(profile.memory_pool_gib))
    per_seq = profile.step_per_seq_ms * batch
    total = profile.step_fixed_ms + per_seq
    return float(per_seq / total) if total > 0.0 else 0.0


def measured_per_task_slowdown(
    mode: str, measured_path: str | Path | None = None, batch: int = 100
) -> float:
    """The same slowdown from two measured points: the decode step at batch 1 and at ``batch``.

    ``c = (d(batch) - d(1)) / (batch - 1)`` per sequence (medians; the median over repeated runs
    at one batch), ``gamma = batch c / d(batch)``, floored at 0. On the shipped GPT-J-6B H100
    measurement: accelerated 5.58 and 11.71 ms/token give 0.53 (the profile's fit over batches
    1..100: 0.53); eager 36.5 and 33.5-43.8 ms/token (two runs) give 0.05, inside the spread of
    the repeated batch-100 runs, where the fit over all batches has no positive slope (0).

    Parameters
    ----------
    mode : {"accelerated", "eager"}
        Serving mode of the measured reference.
    measured_path : str or Path, optional
        The measured reference JSON; defaults to the shipped ``profiles/measured`` copy.
    batch : int
        The larger measured batch.
    """
    path = (
        Path(measured_path)
        if measured_path
        else profile_dir() / "measured" / "gptj6b_h100_profile.json"
    )
    with path.open() as fh:
        measured: dict[str, Any] = json.load(fh)
    decode = measured["raw"]["modes"][mode]["decode"]

    def step(b: int) -> float:
        runs = [d["per_token_median_ms"] for d in decode if d["batch"] == b]
        if not runs:
            raise ValueError(f"the measurement has no {mode} decode at batch {b}")
        return float(np.median(runs))

    d1, db = step(1), step(batch)
    per_seq = (db - d1) / (batch - 1)
    return max(0.0, batch * per_seq / db)


def contention_multiplier(gamma: ArrayLike, n_running: ArrayLike) -> NDArray[np.float64]:
    """Compute-time multiplier ``1 + gamma * n_running`` (>= 1 for ``gamma, n_running >= 0``).

    Parameters
    ----------
    gamma : array_like
        Slowdown per co-running task (:func:`per_task_slowdown`, times the scenario's scale).
    n_running : array_like
        Other tasks holding grants on the server when the task starts.
    """
    g = np.asarray(gamma, dtype=np.float64)
    n = np.asarray(n_running, dtype=np.float64)
    if np.any(g < 0.0) or np.any(n < 0.0):
        raise ValueError(f"gamma {g.tolist()} and n_running {n.tolist()} must be >= 0")
    return 1.0 + g * n
