"""Latency of one offloaded task: transmission, propagation, queueing and compute parts.

Pure functions implementing He et al. 2025, L = (PS_x + PS_y)/R + (d1 + d2)/c + L_q + L_c.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from environments.radio import SPEED_OF_LIGHT

__all__ = [
    "LatencyParts",
    "propagation_time",
    "queue_start",
    "total_latency",
    "transmission_time",
]

FloatArray = NDArray[np.float64]


class LatencyParts(NamedTuple):
    """The four additive parts of a task's latency, seconds."""

    transmission: float
    propagation: float
    queueing: float
    compute: float

    @property
    def total(self) -> float:
        """Sum of the parts."""
        return self.transmission + self.propagation + self.queueing + self.compute


def transmission_time(size_bits: ArrayLike, rate_bps: ArrayLike) -> FloatArray:
    """Time to send a packet, ``PS / R`` seconds (``inf`` at zero rate).

    Parameters
    ----------
    size_bits : array_like
        Packet size in bits.
    rate_bps : array_like
        Link rate in bit/s.
    """
    size = np.asarray(size_bits, dtype=np.float64)
    rate = np.asarray(rate_bps, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(rate > 0.0, size / np.where(rate > 0.0, rate, 1.0), np.inf)


def propagation_time(
    radio_m: ArrayLike, fibre_km: ArrayLike = 0.0, fibre_s_per_km: float = 5e-6
) -> FloatArray:
    """Propagation delay ``d / c`` over the radio hop plus ``5 us/km`` over fibre.

    Sources: He et al. 2025 (``d / c``); light in optical fibre travels at about c / 1.47, i.e.
    about 5 us per km.
    """
    return (
        np.asarray(radio_m, dtype=np.float64) / SPEED_OF_LIGHT
        + np.asarray(fibre_km, dtype=np.float64) * fibre_s_per_km
    )


def queue_start(
    release_times: ArrayLike,
    held: ArrayLike,
    parallel_limit: int,
    ready: ArrayLike,
    request: ArrayLike,
    tol: float = 1e-9,
) -> FloatArray:
    """Start times of candidate tasks joining a first-come first-served server queue.

    A server runs at most ``parallel_limit`` tasks at once and grants fractions of its compute,
    bandwidth and GPU memory; a task starts once it is at the head of the queue, a slot is free
    and its whole grant is free. The tasks ahead of it have all started by ``ready`` (first come,
    first served), so after ``ready`` what they hold only falls, as each releases its grant. The
    queueing rule of He et al. (TMC 2024), "a task waits for the remaining time of the
    earliest-finishing task ahead of it", is the case where the slot is what binds.

    Parameters
    ----------
    release_times : array_like, shape (m,)
        When each grant held (or to be held) by the tasks ahead is released.
    held : array_like, shape (m, 3)
        Their grants: compute, bandwidth and memory fractions.
    parallel_limit : int
        Tasks run at once.
    ready : array_like, shape (K,)
        Earliest start of each candidate: its request reached the server and every task ahead
        of it has started.
    request : array_like, shape (K, 3)
        Grant of each candidate, fractions of the server's totals in [0, 1].
    tol : float
        Slack on the capacity of 1 (float32 actions against float64 bookkeeping).

    Returns
    -------
    numpy.ndarray, shape (K,)
        Start times, ``>= ready``; the queueing delay of candidate ``k`` is
        ``start[k] - ready[k]`` when ``ready`` is its arrival at the server.
    """
    ends = np.asarray(release_times, dtype=np.float64).reshape(-1)
    grants = np.asarray(held, dtype=np.float64).reshape(-1, 3)
    t0 = np.asarray(ready, dtype=np.float64).reshape(-1)
    req = np.asarray(request, dtype=np.float64).reshape(-1, 3)
    if grants.shape[0] != ends.size or req.shape[0] != t0.size:
        raise ValueError(
            f"release_times {ends.shape} / held {grants.shape} and ready {t0.shape} / request "
            f"{req.shape} must pair up row for row"
        )
    if parallel_limit < 1:
        raise ValueError(f"parallel_limit must be >= 1, got {parallel_limit}")
    order = np.argsort(ends, kind="stable")
    ends, grants = ends[order], grants[order]
    m = ends.size
    # After r releases (in order of release), the tasks ahead still hold grants[r:].
    still_held = np.zeros((m + 1, 3))
    still_held[:m] = np.cumsum(grants[::-1], axis=0)[::-1]
    released_by_ready = np.searchsorted(ends, t0, side="right")
    slot_free = max(0, m - parallel_limit + 1)
    fits = np.all(still_held[None, :, :] + req[:, None, :] <= 1.0 + tol, axis=2)  # (K, m + 1)
    grant_free = np.argmax(fits, axis=1)  # the last column always fits: nothing is held then
    r = np.maximum(np.maximum(released_by_ready, slot_free), grant_free)
    later = ends[np.maximum(r - 1, 0)] if m else np.zeros_like(t0)
    return np.where(r > released_by_ready, later, t0)


def total_latency(
    request_bits: float,
    result_bits: float,
    rate_up_bps: float,
    rate_down_bps: float,
    propagation_s: float,
    queueing_s: float,
    compute_s: float,
) -> LatencyParts:
    """Assemble the latency parts of one task (He et al. 2025, latency model).

    Parameters
    ----------
    request_bits, result_bits : float
        Sizes of the request ``PS_x`` and result ``PS_y`` packets.
    rate_up_bps, rate_down_bps : float
        Rates of the offloading and return links.
    propagation_s : float
        ``(d1 + d2) / c`` plus any backhaul delay.
    queueing_s, compute_s : float
        ``L_q`` and ``L_c``.
    """
    tx = float(transmission_time(request_bits, rate_up_bps)) + float(
        transmission_time(result_bits, rate_down_bps)
    )
    return LatencyParts(tx, float(propagation_s), float(queueing_s), float(compute_s))
