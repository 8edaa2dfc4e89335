"""Radio models against their published formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from environments import radio


@pytest.mark.parametrize("d_km", [0.05, 0.3, 1.0, 2.5])
def test_paper_g2g_matches_formula(d_km: float) -> None:
    assert radio.paper_g2g_path_loss(d_km) == pytest.approx(128.1 + 37.6 * math.log10(d_km))


def test_paper_g2g_at_one_km_is_the_intercept() -> None:
    assert radio.paper_g2g_path_loss(1.0) == pytest.approx(128.1)


def test_free_space_matches_friis() -> None:
    d, f = 250.0, 3.5
    wavelength = radio.SPEED_OF_LIGHT / (f * 1e9)
    friis = 20 * math.log10(4 * math.pi * d / wavelength)
    assert radio.free_space_path_loss(d, f) == pytest.approx(friis, abs=0.01)


def test_air_to_air_alpha_two_is_free_space_and_grows_with_alpha() -> None:
    d = np.array([50.0, 400.0])
    np.testing.assert_allclose(
        radio.air_to_air_path_loss(d, 3.5, 2.0), radio.free_space_path_loss(d, 3.5)
    )
    assert np.all(radio.air_to_air_path_loss(d, 3.5, 2.5) > radio.air_to_air_path_loss(d, 3.5, 2.0))


def test_air_to_ground_between_los_and_nlos_excess() -> None:
    d, theta = np.array([200.0, 800.0]), np.array([60.0, 10.0])
    a, b, eta_los, eta_nlos = radio.A2G_ENVIRONMENTS["urban"]
    p = 1.0 / (1.0 + a * np.exp(-b * (theta - a)))
    expected = radio.free_space_path_loss(d, 2.0) + p * eta_los + (1 - p) * eta_nlos
    np.testing.assert_allclose(radio.air_to_ground_path_loss(d, theta, 2.0, "urban"), expected)
    # Higher elevation means more line of sight, so less excess loss.
    assert radio.air_to_ground_los_probability(80.0) > radio.air_to_ground_los_probability(10.0)


def test_unknown_a2g_environment_names_the_value() -> None:
    with pytest.raises(ValueError, match="rural"):
        radio.air_to_ground_path_loss(100.0, 30.0, 2.0, "rural")


def test_uma_los_below_breakpoint_matches_pl1() -> None:
    d, fc = 100.0, 3.5
    expected = 28.0 + 22 * math.log10(d) + 20 * math.log10(fc)
    assert radio.uma_path_loss(d, fc, 25.0, 1.5, True) == pytest.approx(expected)


def test_uma_los_beyond_breakpoint_matches_pl2() -> None:
    d, fc, hb, hu = 5000.0, 3.5, 25.0, 1.5
    dbp = 4 * (hb - 1) * (hu - 1) * fc * 1e9 / radio.SPEED_OF_LIGHT
    assert d > dbp
    expected = (
        28 + 40 * math.log10(d) + 20 * math.log10(fc) - 9 * math.log10(dbp**2 + (hb - hu) ** 2)
    )
    assert radio.uma_path_loss(d, fc, hb, hu, True) == pytest.approx(expected)


def test_nlos_never_below_los() -> None:
    d = np.geomspace(20, 5000, 30)
    assert np.all(radio.uma_path_loss(d, 3.5, los=False) >= radio.uma_path_loss(d, 3.5, los=True))
    assert np.all(radio.umi_path_loss(d, 3.5, los=False) >= radio.umi_path_loss(d, 3.5, los=True))


def test_umi_los_probability_formula() -> None:
    assert radio.umi_los_probability(10.0) == 1.0
    d = 100.0
    assert radio.umi_los_probability(d) == pytest.approx(18 / d + math.exp(-d / 36) * (1 - 18 / d))


def test_noise_power_of_one_hertz_is_the_density_plus_figure() -> None:
    assert radio.noise_power_dbm(1.0, 7.0) == pytest.approx(-167.0)
    assert radio.noise_power_dbm(20e6, 0.0) == pytest.approx(-174 + 10 * math.log10(20e6))


def test_shannon_rate_matches_formula_and_zero_bandwidth() -> None:
    w, p, g, nf = 10e6, 23.0, -110.0, 7.0
    snr_db = p + g - (-174 + 10 * math.log10(w) + nf)
    assert radio.shannon_rate(w, p, g, nf) == pytest.approx(w * math.log2(1 + 10 ** (snr_db / 10)))
    assert radio.shannon_rate(0.0, p, g, nf) == 0.0


def test_shannon_rate_increases_with_bandwidth_and_gain() -> None:
    w = np.array([1e6, 5e6, 20e6])
    r = radio.shannon_rate(w, 23.0, -100.0)
    assert np.all(np.diff(r) > 0)
    assert radio.shannon_rate(1e6, 23.0, -90.0) > radio.shannon_rate(1e6, 23.0, -100.0)


def test_channel_gain_subtracts_loss_and_shadowing() -> None:
    assert radio.channel_gain_db(120.0, 10.0, 3.0) == pytest.approx(-113.0)


def test_ground_to_ground_dispatch() -> None:
    assert radio.ground_to_ground_path_loss("paper", 1000.0, 1000.0, 3.5, 25, 1.5) == pytest.approx(
        128.1
    )
    los_p = radio.umi_los_probability(300.0)
    mixed = radio.ground_to_ground_path_loss("umi", 300.0, 300.0, 3.5, 10.0, 1.5)
    lo = radio.umi_path_loss(300.0, 3.5, 10.0, 1.5, True)
    hi = radio.umi_path_loss(300.0, 3.5, 10.0, 1.5, False)
    assert mixed == pytest.approx(los_p * lo + (1 - los_p) * hi)
    with pytest.raises(ValueError, match="rma"):
        radio.ground_to_ground_path_loss("rma", 1.0, 1.0, 3.5, 25, 1.5)  # type: ignore[arg-type]
