"""Intervals over seeds: the one place the toolkit turns per-seed numbers into "mean [low, high]".

Every interval is a 95% bootstrap confidence interval of the mean over independent runs (seeds or
episodes), computed with ``scipy.stats.bootstrap``; nothing here reports a population std.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Interval", "mean_interval"]

#: Confidence level of every interval the toolkit prints.
LEVEL = 0.95
#: Bootstrap resamples (``scipy.stats.bootstrap``'s ``n_resamples``).
N_RESAMPLES = 4999


class Interval(NamedTuple):
    """Mean of independent runs with its confidence interval."""

    mean: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 3) -> str:
        """``"mean [low, high]"``, or ``"mean"`` alone with fewer than two runs, ``"-"`` if none."""
        if self.n == 0 or math.isnan(self.mean):
            return "-"
        if self.n < 2 or math.isnan(self.low):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def mean_interval(values: ArrayLike, level: float = LEVEL, seed: int = 0) -> Interval:
    """Mean and bootstrap confidence interval (BCa, percentile where BCa is undefined).

    Parameters
    ----------
    values : array_like, shape (n,)
        One number per independent run; NaN entries (e.g. a mean latency of a run with no
        completed task) are left out.
    level : float
        Confidence level, default 0.95.
    seed : int
        Seed of the resampling, so the same numbers give the same interval.

    Returns
    -------
    Interval
        ``low`` and ``high`` are NaN with fewer than two runs; equal to the mean when all runs agree.
    """
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, math.nan, math.nan, 1)
    if np.all(v == v[0]):
        return Interval(mean, mean, mean, int(v.size))
    rng = np.random.default_rng(seed)
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"):
            res = bootstrap(
                (v,),
                np.mean,
                confidence_level=level,
                n_resamples=N_RESAMPLES,
                method=method,
                random_state=rng,
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return Interval(mean, lo, hi, int(v.size))
    return Interval(mean, math.nan, math.nan, int(v.size))
