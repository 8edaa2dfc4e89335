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
    "fifo_start",
    "propagation_time",
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

    Sources: He et al. 2025 (``d / c``); fibre delay about 5 us/km (facts.md section 5).
    """
    return (
        np.asarray(radio_m, dtype=np.float64) / SPEED_OF_LIGHT
        + np.asarray(fibre_km, dtype=np.float64) * fibre_s_per_km
    )


def fifo_start(slot_free: ArrayLike, arrival: float) -> tuple[float, int]:
    """Start time and slot of a task arriving at a server with a parallel limit (queueing rule).

    The server runs at most ``len(slot_free)`` tasks at once. A task arriving when every slot is
    busy waits for the remaining time of the earliest-finishing task ahead of it (He et al.,
    TMC 2024, queueing model), i.e. first-come first-served over parallel slots.

    Parameters
    ----------
    slot_free : array_like, shape (parallel_limit,)
        Time at which each slot becomes free.
    arrival : float
        Time the task reaches the server.

    Returns
    -------
    start : float
        ``max(arrival, min(slot_free))``; the queueing delay is ``start - arrival``.
    slot : int
        Index of the slot the task takes.
    """
    free = np.asarray(slot_free, dtype=np.float64)
    if free.ndim != 1 or free.size == 0:
        raise ValueError(f"slot_free must be a non-empty 1-D array, got shape {free.shape}")
    slot = int(np.argmin(free))
    return max(float(arrival), float(free[slot])), slot


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
