"""Benchmark scores as Agarwal et al. (NeurIPS 2021) report them, with stratified bootstrap intervals.

Scores are arrays of shape (n_runs, n_tasks) per method (here a run is a seed and a task is a
scenario), normalised so that 1 is the upper bound. The interquartile mean, the probability of
improvement and performance profiles come with 95% intervals from a stratified bootstrap:
runs are resampled with replacement within each task, independently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "Estimate",
    "improvement_table",
    "interquartile_mean",
    "iqm",
    "performance_profile",
    "probability_of_improvement",
    "stratified_bootstrap",
]

#: Bootstrap resamples of every interval here.
BOOTSTRAP_RESAMPLES = 2000


class Estimate(NamedTuple):
    """A point estimate and its 95% stratified bootstrap (percentile) interval."""

    value: float
    low: float
    high: float

    def format(self, digits: int = 3) -> str:
        """``value [low, high]``."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _check(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n_runs, n_tasks), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds non-finite values (NaN or inf)")
    return x


def interquartile_mean(scores: np.ndarray) -> float:
    """Mean of the middle 50% of all runs of all tasks (``scipy.stats.trim_mean`` at 25%).

    Parameters
    ----------
    scores : numpy.ndarray, shape (n_runs, n_tasks)
    """
    return float(stats.trim_mean(_check(scores).ravel(), 0.25))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): the chance that a run of X beats a run of Y on a task picked at random.

    Per task, the Mann-Whitney U statistic over every pair of runs (a tie counts one half),
    averaged over tasks (Agarwal et al. 2021, eq. 3).

    Parameters
    ----------
    x, y : numpy.ndarray, shapes (n_runs_x, n_tasks), (n_runs_y, n_tasks)
    """
    a, b = _check(x, "x"), _check(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y need the same tasks, got shapes {a.shape} and {b.shape}")
    greater = (a[:, None, :] > b[None, :, :]).mean(axis=(0, 1))
    ties = (a[:, None, :] == b[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * ties))


def performance_profile(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of all runs (every task) whose score exceeds each threshold.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n_runs, n_tasks)
    thresholds : numpy.ndarray, shape (n_thresholds,)

    Returns
    -------
    numpy.ndarray, shape (n_thresholds,)
    """
    x = _check(scores).ravel()
    tau = np.asarray(thresholds, dtype=np.float64)
    return (x[None, :] > tau[:, None]).mean(axis=1)


def stratified_bootstrap(
    statistic: Callable[..., float | np.ndarray],
    *samples: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """The statistic on resamples of every sample, runs drawn with replacement within each task.

    Parameters
    ----------
    statistic : callable
        Takes one array per sample (shapes (n_runs_i, n_tasks)) and returns a float or an array.
    *samples : numpy.ndarray
        One (n_runs_i, n_tasks) array per method.
    resamples : int
    seed : int

    Returns
    -------
    numpy.ndarray, shape (resamples, ...)
    """
    rng = np.random.default_rng(seed)
    arrays = [_check(s) for s in samples]
    out = []
    for _ in range(resamples):
        drawn = []
        for a in arrays:
            n, m = a.shape
            idx = rng.integers(0, n, size=(n, m))  # independently per task: the strata
            drawn.append(np.take_along_axis(a, idx, axis=0))
        out.append(np.asarray(statistic(*drawn), dtype=np.float64))
    return np.stack(out)


def _estimate(point: float, draws: np.ndarray) -> Estimate:
    low, high = np.percentile(draws, [2.5, 97.5])
    return Estimate(float(point), float(low), float(high))


def iqm(scores: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Estimate:
    """Interquartile mean with its 95% stratified bootstrap interval."""
    draws = stratified_bootstrap(interquartile_mean, scores, resamples=resamples, seed=seed)
    return _estimate(interquartile_mean(scores), draws)


def improvement_table(
    scores: Mapping[str, np.ndarray], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[tuple[str, str], Estimate]:
    """P(X > Y) with its interval for every ordered pair of distinct methods.

    Parameters
    ----------
    scores : mapping
        method -> (n_runs, n_tasks) scores, the same tasks for all.
    """
    out = {}
    names = list(scores)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            point = probability_of_improvement(scores[a], scores[b])
            draws = stratified_bootstrap(
                probability_of_improvement, scores[a], scores[b], resamples=resamples, seed=seed
            )
            est = _estimate(point, draws)
            out[(a, b)] = est
            out[(b, a)] = Estimate(1 - est.value, 1 - est.high, 1 - est.low)
    return out
