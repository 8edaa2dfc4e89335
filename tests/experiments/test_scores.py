"""Benchmark scores: IQM, probability of improvement, performance profiles, stratified bootstrap."""

import numpy as np
import pytest
from scipy import stats

from experiments.scores import (
    improvement_table,
    interquartile_mean,
    iqm,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap,
)


def test_iqm_is_the_mean_of_the_middle_half():
    scores = np.arange(1.0, 9.0).reshape(4, 2)  # runs x tasks, values 1..8 pooled
    assert interquartile_mean(scores) == pytest.approx(np.mean([3, 4, 5, 6]))


def test_probability_of_improvement_counts_pairs_and_ties():
    x = np.array([[2.0, 1.0], [3.0, 1.0]])
    y = np.array([[1.0, 1.0], [2.5, 1.0]])
    # Task 0: x beats y in 3 of 4 pairs (2 > 1, 3 > 1, 3 > 2.5; 2 < 2.5); task 1: all ties.
    assert probability_of_improvement(x, y) == pytest.approx((0.75 + 0.5) / 2)
    assert probability_of_improvement(x, y) + probability_of_improvement(y, x) == pytest.approx(1)
    assert probability_of_improvement(x, x) == pytest.approx(0.5)


def test_performance_profile_is_the_fraction_above_each_threshold():
    scores = np.array([[0.1, 0.5], [0.9, 0.7]])
    np.testing.assert_allclose(
        performance_profile(scores, np.array([0.0, 0.5, 0.8, 1.0])), [1, 0.5, 0.25, 0]
    )


def test_the_bootstrap_resamples_within_each_task():
    rng = np.random.default_rng(0)
    scores = np.column_stack([np.full(6, 0.3), rng.uniform(size=6)])
    draws = stratified_bootstrap(lambda s: s[:, 0].mean(), scores, resamples=200, seed=1)
    # Task 0 holds one value: whatever runs are drawn there, its mean stays.
    np.testing.assert_allclose(draws, 0.3)
    again = stratified_bootstrap(lambda s: s[:, 1].mean(), scores, resamples=200, seed=1)
    assert np.ptp(again) > 0
    np.testing.assert_array_equal(
        again, stratified_bootstrap(lambda s: s[:, 1].mean(), scores, resamples=200, seed=1)
    )


def test_one_task_interval_agrees_with_scipy_s_bootstrap():
    x = np.random.default_rng(3).normal(size=(40, 1))
    ours = iqm(x, resamples=4000, seed=0)
    ref = stats.bootstrap(
        (x[:, 0],),
        lambda v: stats.trim_mean(v, 0.25),
        n_resamples=4000,
        method="percentile",
        random_state=0,
    ).confidence_interval
    assert ours.low == pytest.approx(ref.low, abs=0.05)
    assert ours.high == pytest.approx(ref.high, abs=0.05)
    assert ours.low < ours.value < ours.high


def test_improvement_table_is_complementary():
    rng = np.random.default_rng(5)
    scores = {"a": rng.uniform(0.5, 1, (5, 3)), "b": rng.uniform(0, 0.5, (5, 3))}
    table = improvement_table(scores, resamples=100)
    assert table[("a", "b")].value == pytest.approx(1.0)
    assert table[("b", "a")].value == pytest.approx(0.0)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="n_runs, n_tasks"):
        interquartile_mean(np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        interquartile_mean(np.array([[np.nan]]))
