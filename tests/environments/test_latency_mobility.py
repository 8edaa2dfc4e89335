"""Latency parts, the queueing rule and reflected mobility."""

from __future__ import annotations

import numpy as np
import pytest

from environments.latency import propagation_time, queue_start, total_latency, transmission_time
from environments.mobility import initial_state, positions_at, reflect
from environments.radio import SPEED_OF_LIGHT


def test_transmission_time_is_size_over_rate() -> None:
    assert transmission_time(8e6, 4e6) == pytest.approx(2.0)
    assert transmission_time(8.0, 0.0) == np.inf


def test_propagation_radio_and_fibre() -> None:
    assert propagation_time(SPEED_OF_LIGHT) == pytest.approx(1.0)
    assert propagation_time(0.0, 1000.0) == pytest.approx(5e-3)


def test_total_latency_sums_parts() -> None:
    parts = total_latency(8e3, 16e3, 1e6, 2e6, 0.01, 0.5, 2.0)
    assert parts.transmission == pytest.approx(8e-3 + 8e-3)
    assert parts.total == pytest.approx(parts.transmission + 0.01 + 0.5 + 2.0)


def test_queue_start_idle_server_starts_at_once() -> None:
    start = queue_start([], np.zeros((0, 3)), 2, [3.0], [[1.0, 1.0, 1.0]])
    assert start.tolist() == [3.0]


def test_queue_start_waits_for_earliest_finishing_task_when_slots_are_full() -> None:
    # The TMC rule: three tasks hold the three slots with small grants; a fourth waits for the
    # earliest of them to finish, whatever it asks for.
    held = np.full((3, 3), 0.1)
    start = queue_start([9.0, 7.0, 8.0], held, 3, [3.0, 3.0], [[0.1] * 3, [0.5] * 3])
    np.testing.assert_allclose(start, [7.0, 7.0])


def test_queue_start_waits_until_enough_is_released() -> None:
    # Slots are free; the grant is what binds. 0.6 + 0.3 are held; a request of 0.5 needs the
    # 0.6 (released at 8) back, a request of 0.1 starts at once, 0.4 once the 0.3 is back.
    held = np.array([[0.6, 0.1, 0.6], [0.3, 0.1, 0.3]])
    req = np.array([[0.5, 0.1, 0.5], [0.1, 0.1, 0.1], [0.4, 0.1, 0.4], [0.1, 0.1, 0.95]])
    start = queue_start([8.0, 5.0], held, 8, [2.0] * 4, req)
    np.testing.assert_allclose(start, [8.0, 2.0, 5.0, 8.0])


def test_queue_start_ignores_grants_released_before_ready() -> None:
    start = queue_start([1.0, 4.0], np.full((2, 3), 0.9), 1, [2.0, 6.0], np.full((2, 3), 0.5))
    np.testing.assert_allclose(start, [4.0, 6.0])


def test_queue_start_checks_shapes() -> None:
    with pytest.raises(ValueError, match="row for row"):
        queue_start([1.0], np.zeros((2, 3)), 1, [0.0], [[0.1] * 3])
    with pytest.raises(ValueError, match="parallel_limit"):
        queue_start([], np.zeros((0, 3)), 0, [0.0], [[0.1] * 3])


def test_reflect_stays_in_box_and_is_continuous() -> None:
    x = np.linspace(-5000, 5000, 20001)
    y = reflect(x, 1000.0)
    assert y.min() >= 0 and y.max() <= 1000.0
    assert np.max(np.abs(np.diff(y))) <= np.max(np.abs(np.diff(x))) + 1e-9


def test_positions_move_at_speed_and_keep_height() -> None:
    rng = np.random.default_rng(3)
    speeds = np.array([0.0, 1.4, 13.9, 10.0])
    p0, v = initial_state(rng, speeds, [1.5, 1.5, 1.5, 100.0], (2000.0, 2000.0))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), speeds)
    p1 = positions_at(p0, v, 0.5, (2000.0, 2000.0))
    # Over half a second no terminal reaches a wall from the inside far enough to fold twice.
    assert np.all(np.linalg.norm(p1 - p0, axis=1) <= speeds * 0.5 + 1e-9)
    np.testing.assert_allclose(p1[:, 2], p0[:, 2])
    far = positions_at(p0, v, 1e5, (2000.0, 2000.0))
    assert np.all((far[:, :2] >= 0) & (far[:, :2] <= 2000.0))
    np.testing.assert_allclose(far[0], p0[0])  # the fixed terminal stays put
