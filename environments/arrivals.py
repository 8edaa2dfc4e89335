"""Arrival processes of an episode's tasks in its time window: Poisson, Markov-modulated, diurnal.

Pure functions of a NumPy generator (the env passes ``self.np_random``); the count is fixed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "RatePath",
    "diurnal_arrivals",
    "diurnal_rate",
    "mmpp_arrivals",
    "mmpp_rate_path",
    "mmpp_rates",
    "poisson_arrivals",
]

FloatArray = NDArray[np.float64]


class RatePath(NamedTuple):
    """A piecewise-constant relative rate over ``[0, window]``.

    ``breaks`` (shape (m + 1,)) runs from 0 to the window; ``rates`` (shape (m,)) is the
    relative rate on ``[breaks[i], breaks[i + 1])``; ``burst`` (shape (m,), bool) marks the
    burst state of a Markov-modulated process.
    """

    breaks: FloatArray
    rates: FloatArray
    burst: NDArray[np.bool_]


def poisson_arrivals(rng: np.random.Generator, count: int, window: float) -> FloatArray:
    """A homogeneous Poisson process conditioned on ``count`` arrivals in ``[0, window]``.

    Given the count, the arrival times are the order statistics of ``count`` uniform times.

    Returns
    -------
    numpy.ndarray, shape (count,)
        Sorted arrival times (s).
    """
    return np.sort(rng.uniform(0.0, window, size=count))


def mmpp_rates(
    mean_rate: float, rate_ratio: float, mean_calm_s: float, mean_burst_s: float
) -> tuple[float, float]:
    """Calm and burst rates (per s) of a two-state MMPP whose long-run mean is ``mean_rate``.

    The modulating chain spends the fraction ``pi_b = mean_burst_s / (mean_calm_s +
    mean_burst_s)`` of the time in the burst state, so ``mean_rate = lambda_c (1 - pi_b) +
    lambda_b pi_b`` with ``lambda_b = rate_ratio * lambda_c``.

    Returns
    -------
    (float, float)
        ``(lambda_calm, lambda_burst)``.
    """
    pi_b = mean_burst_s / (mean_calm_s + mean_burst_s)
    calm = mean_rate / ((1.0 - pi_b) + rate_ratio * pi_b)
    return calm, rate_ratio * calm


def mmpp_rate_path(
    rng: np.random.Generator,
    window: float,
    rate_ratio: float,
    mean_calm_s: float,
    mean_burst_s: float,
) -> RatePath:
    """The modulating chain of a two-state Markov-modulated Poisson process over the window.

    The chain starts in its stationary distribution (burst with probability ``mean_burst_s /
    (mean_calm_s + mean_burst_s)``) and stays in each state for an exponential time of the
    state's mean: it leaves the calm state at rate ``1 / mean_calm_s`` and the burst state at
    rate ``1 / mean_burst_s`` (Fischer and Meier-Hellstern, "The Markov-modulated Poisson
    process (MMPP) cookbook", Performance Evaluation 18(2), 1993). Relative rates: 1 when calm,
    ``rate_ratio`` in a burst.
    """
    burst = bool(rng.uniform() < mean_burst_s / (mean_calm_s + mean_burst_s))
    breaks, states = [0.0], []
    t = 0.0
    while t < window:
        states.append(burst)
        t += float(rng.exponential(mean_burst_s if burst else mean_calm_s))
        breaks.append(min(t, window))
        burst = not burst
    flags = np.asarray(states, dtype=bool)
    return RatePath(np.asarray(breaks), np.where(flags, rate_ratio, 1.0), flags)


def mmpp_arrivals(
    rng: np.random.Generator,
    count: int,
    window: float,
    rate_ratio: float,
    mean_calm_s: float,
    mean_burst_s: float,
) -> tuple[FloatArray, RatePath]:
    """``count`` arrivals of a Markov-modulated Poisson process in ``[0, window]``.

    The rate path is drawn first (:func:`mmpp_rate_path`); given the path, a Poisson process of
    that intensity conditioned on ``count`` points places them independently with density
    proportional to the rate, drawn here by inverting the piecewise-linear cumulative rate at
    sorted uniforms (exact).

    Returns
    -------
    times : numpy.ndarray, shape (count,)
        Sorted arrival times (s).
    path : RatePath
        The modulating chain.
    """
    path = mmpp_rate_path(rng, window, rate_ratio, mean_calm_s, mean_burst_s)
    cumulative = np.concatenate(([0.0], np.cumsum(np.diff(path.breaks) * path.rates)))
    u = np.sort(rng.uniform(0.0, cumulative[-1], size=count))
    return np.interp(u, cumulative, path.breaks), path


def diurnal_rate(t: ArrayLike, window: float, amplitude: float) -> FloatArray:
    """Relative rate ``1 - amplitude cos(2 pi t / window)``: one day compressed into the window.

    Trough ``1 - amplitude`` at both ends of the window, peak ``1 + amplitude`` in its middle,
    mean 1 over the window (assumed shape).
    """
    return 1.0 - amplitude * np.cos(2.0 * math.pi * np.asarray(t, dtype=np.float64) / window)


def diurnal_arrivals(
    rng: np.random.Generator, count: int, window: float, amplitude: float
) -> FloatArray:
    """``count`` arrivals with density proportional to :func:`diurnal_rate` in ``[0, window]``.

    Drawn by thinning (Lewis and Shedler, "Simulation of nonhomogeneous Poisson processes by
    thinning", Naval Research Logistics Quarterly 26(3), 1979): uniform candidates kept with
    probability ``rate(t) / (1 + amplitude)``, until ``count`` are kept (exact).

    Returns
    -------
    numpy.ndarray, shape (count,)
        Sorted arrival times (s).
    """
    kept: list[FloatArray] = []
    need = count
    while need > 0:
        t = rng.uniform(0.0, window, size=2 * need + 8)
        accept = rng.uniform(0.0, 1.0 + amplitude, size=t.size) < diurnal_rate(t, window, amplitude)
        take = t[accept][:need]
        kept.append(take)
        need -= take.size
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0)
