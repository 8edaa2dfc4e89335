"""Radio channel models of the offloading world: path loss, shadowing, thermal noise, Shannon rate.

Every function is pure, works on scalars or numpy arrays (broadcasting), and cites its source.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "A2G_ENVIRONMENTS",
    "SPEED_OF_LIGHT",
    "air_to_air_path_loss",
    "air_to_ground_los_probability",
    "air_to_ground_path_loss",
    "channel_gain_db",
    "free_space_path_loss",
    "ground_to_ground_path_loss",
    "noise_power_dbm",
    "paper_g2g_path_loss",
    "shannon_rate",
    "uma_los_probability",
    "uma_path_loss",
    "umi_los_probability",
    "umi_path_loss",
]

FloatArray = NDArray[np.float64]

#: Speed of light in vacuum, m/s (used for radio propagation delay d / c, He et al. 2025 eq. latency).
SPEED_OF_LIGHT = 299_792_458.0

#: Al-Hourani, Kandeepan and Lardner, IEEE WCL 3(6), 2014, Table I: (a, b, eta_LoS dB, eta_NLoS dB).
A2G_ENVIRONMENTS: dict[str, tuple[float, float, float, float]] = {
    "suburban": (4.88, 0.43, 0.1, 21.0),
    "urban": (9.61, 0.16, 1.0, 20.0),
    "dense_urban": (12.08, 0.11, 1.6, 23.0),
}

# Distances below 1 m are outside every model's validity; they are clamped there.
_MIN_DISTANCE_M = 1.0


def _arr(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def paper_g2g_path_loss(d_km: ArrayLike) -> FloatArray:
    """Ground-to-ground path loss of the paper, ``128.1 + 37.6 log10(d_km)`` dB.

    Source: He et al. 2025 (and TMC 2024), the macro-cell model of 3GPP TR 36.814.

    Parameters
    ----------
    d_km : array_like, any shape
        Link distance in kilometres (clamped to >= 1 m).

    Returns
    -------
    numpy.ndarray, same shape as ``d_km``
    """
    d = np.maximum(_arr(d_km), _MIN_DISTANCE_M / 1000.0)
    return 128.1 + 37.6 * np.log10(d)


def free_space_path_loss(d_m: ArrayLike, fc_ghz: ArrayLike) -> FloatArray:
    """Free-space path loss ``32.45 + 20 log10(f_GHz) + 20 log10(d_m)`` dB (Friis, d in metres)."""
    d = np.maximum(_arr(d_m), _MIN_DISTANCE_M)
    return 32.45 + 20.0 * np.log10(_arr(fc_ghz)) + 20.0 * np.log10(d)


def air_to_air_path_loss(d_m: ArrayLike, fc_ghz: ArrayLike, alpha: float = 2.0) -> FloatArray:
    """Air-to-air (UAV-UAV, line of sight) path loss ``FSPL(1 m) + 10 alpha log10(d_m)`` dB.

    He et al. 2025 model air-to-air links as ``10 alpha log10(d)`` with a small exponent; with
    ``alpha = 2`` this is exactly the free-space (Friis) loss.
    """
    d = np.maximum(_arr(d_m), _MIN_DISTANCE_M)
    return 32.45 + 20.0 * np.log10(_arr(fc_ghz)) + 10.0 * alpha * np.log10(d)


def air_to_ground_los_probability(
    elevation_deg: ArrayLike, environment: str = "urban"
) -> FloatArray:
    """Line-of-sight probability ``1 / (1 + a exp(-b (theta - a)))`` (Al-Hourani et al. 2014, eq. 5).

    Parameters
    ----------
    elevation_deg : array_like
        Elevation angle in degrees, 0..90.
    environment : {"suburban", "urban", "dense_urban"}
    """
    a, b, _, _ = _a2g_params(environment)
    return 1.0 / (1.0 + a * np.exp(-b * (_arr(elevation_deg) - a)))


def air_to_ground_path_loss(
    d_m: ArrayLike,
    elevation_deg: ArrayLike,
    fc_ghz: ArrayLike,
    environment: str = "urban",
) -> FloatArray:
    """Mean air-to-ground path loss ``FSPL + P_LoS eta_LoS + (1 - P_LoS) eta_NLoS`` dB.

    Source: Al-Hourani, Kandeepan, Lardner, "Optimal LAP altitude for maximum coverage",
    IEEE WCL 3(6), 2014, eq. 5-6; the excess losses per environment are in
    :data:`A2G_ENVIRONMENTS`.

    Parameters
    ----------
    d_m : array_like
        3-D link distance in metres.
    elevation_deg : array_like
        Elevation angle seen from the ground end, degrees.
    fc_ghz : array_like
        Carrier frequency, GHz.
    environment : {"suburban", "urban", "dense_urban"}
    """
    _, _, eta_los, eta_nlos = _a2g_params(environment)
    p_los = air_to_ground_los_probability(elevation_deg, environment)
    return free_space_path_loss(d_m, fc_ghz) + p_los * eta_los + (1.0 - p_los) * eta_nlos


def _a2g_params(environment: str) -> tuple[float, float, float, float]:
    try:
        return A2G_ENVIRONMENTS[environment]
    except KeyError:
        raise ValueError(
            f"air-to-ground environment {environment!r} unknown; expected one of "
            f"{sorted(A2G_ENVIRONMENTS)}"
        ) from None


def _breakpoint_m(h_bs: FloatArray, h_ut: FloatArray, fc_ghz: FloatArray) -> FloatArray:
    # 3GPP TR 38.901 Table 7.4.1-1 note 1: d'_BP = 4 h'_BS h'_UT f_c / c with effective heights h - 1 m.
    return 4.0 * (h_bs - 1.0) * (h_ut - 1.0) * fc_ghz * 1e9 / SPEED_OF_LIGHT


def uma_path_loss(
    d3d_m: ArrayLike,
    fc_ghz: ArrayLike,
    h_bs: ArrayLike = 25.0,
    h_ut: ArrayLike = 1.5,
    los: ArrayLike = True,
) -> FloatArray:
    """3GPP TR 38.901 UMa path loss (Table 7.4.1-1), dB.

    LOS: ``28 + 22 log10(d3D) + 20 log10(fc)`` up to the breakpoint, then
    ``28 + 40 log10(d3D) + 20 log10(fc) - 9 log10(d'BP^2 + (hBS - hUT)^2)``.
    NLOS: ``max(PL_LOS, 13.54 + 39.08 log10(d3D) + 20 log10(fc) - 0.6 (hUT - 1.5))``.

    Parameters
    ----------
    d3d_m : array_like
        3-D distance, metres.
    fc_ghz : array_like
        Carrier, GHz.
    h_bs, h_ut : array_like
        Base-station and terminal heights, metres.
    los : array_like of bool
        Line-of-sight state per link.
    """
    d = np.maximum(_arr(d3d_m), _MIN_DISTANCE_M)
    fc, hb, hu = _arr(fc_ghz), _arr(h_bs), _arr(h_ut)
    dbp = _breakpoint_m(hb, hu, fc)
    pl1 = 28.0 + 22.0 * np.log10(d) + 20.0 * np.log10(fc)
    pl2 = 28.0 + 40.0 * np.log10(d) + 20.0 * np.log10(fc) - 9.0 * np.log10(dbp**2 + (hb - hu) ** 2)
    pl_los = np.where(d <= dbp, pl1, pl2)
    pl_nlos = np.maximum(
        pl_los, 13.54 + 39.08 * np.log10(d) + 20.0 * np.log10(fc) - 0.6 * (hu - 1.5)
    )
    return np.where(np.asarray(los, dtype=bool), pl_los, pl_nlos)


def umi_path_loss(
    d3d_m: ArrayLike,
    fc_ghz: ArrayLike,
    h_bs: ArrayLike = 10.0,
    h_ut: ArrayLike = 1.5,
    los: ArrayLike = True,
) -> FloatArray:
    """3GPP TR 38.901 UMi street-canyon path loss (Table 7.4.1-1), dB.

    LOS: ``32.4 + 21 log10(d3D) + 20 log10(fc)`` up to the breakpoint, then
    ``32.4 + 40 log10(d3D) + 20 log10(fc) - 9.5 log10(d'BP^2 + (hBS - hUT)^2)``.
    NLOS: ``max(PL_LOS, 35.3 log10(d3D) + 22.4 + 21.3 log10(fc) - 0.3 (hUT - 1.5))``.
    """
    d = np.maximum(_arr(d3d_m), _MIN_DISTANCE_M)
    fc, hb, hu = _arr(fc_ghz), _arr(h_bs), _arr(h_ut)
    dbp = _breakpoint_m(hb, hu, fc)
    pl1 = 32.4 + 21.0 * np.log10(d) + 20.0 * np.log10(fc)
    pl2 = 32.4 + 40.0 * np.log10(d) + 20.0 * np.log10(fc) - 9.5 * np.log10(dbp**2 + (hb - hu) ** 2)
    pl_los = np.where(d <= dbp, pl1, pl2)
    pl_nlos = np.maximum(pl_los, 35.3 * np.log10(d) + 22.4 + 21.3 * np.log10(fc) - 0.3 * (hu - 1.5))
    return np.where(np.asarray(los, dtype=bool), pl_los, pl_nlos)


def umi_los_probability(d2d_m: ArrayLike) -> FloatArray:
    """UMi LOS probability: 1 if ``d2D <= 18`` m else ``18/d + exp(-d/36)(1 - 18/d)`` (38.901 Table 7.4.2-1)."""
    d = np.maximum(_arr(d2d_m), _MIN_DISTANCE_M)
    return np.where(d <= 18.0, 1.0, 18.0 / d + np.exp(-d / 36.0) * (1.0 - 18.0 / d))


def uma_los_probability(d2d_m: ArrayLike) -> FloatArray:
    """UMa LOS probability for terminals below 13 m: 1 if ``d2D <= 18`` m else
    ``18/d + exp(-d/63)(1 - 18/d)`` (38.901 Table 7.4.2-1 with C'(h_UT) = 0)."""
    d = np.maximum(_arr(d2d_m), _MIN_DISTANCE_M)
    return np.where(d <= 18.0, 1.0, 18.0 / d + np.exp(-d / 63.0) * (1.0 - 18.0 / d))


G2GModel = Literal["paper", "uma", "umi"]


def ground_to_ground_path_loss(
    model: G2GModel,
    d3d_m: ArrayLike,
    d2d_m: ArrayLike,
    fc_ghz: float,
    h_bs: ArrayLike,
    h_ut: ArrayLike,
) -> FloatArray:
    """Ground-to-ground path loss under the chosen model, dB.

    ``"paper"`` is :func:`paper_g2g_path_loss`; ``"uma"`` and ``"umi"`` average the LOS and NLOS
    losses in dB with the 38.901 LOS probability (the deterministic part; shadowing is added
    separately by :func:`channel_gain_db`).
    """
    if model == "paper":
        return paper_g2g_path_loss(_arr(d3d_m) / 1000.0)
    if model == "uma":
        p = uma_los_probability(d2d_m)
        return p * uma_path_loss(d3d_m, fc_ghz, h_bs, h_ut, True) + (1 - p) * uma_path_loss(
            d3d_m, fc_ghz, h_bs, h_ut, False
        )
    if model == "umi":
        p = umi_los_probability(d2d_m)
        return p * umi_path_loss(d3d_m, fc_ghz, h_bs, h_ut, True) + (1 - p) * umi_path_loss(
            d3d_m, fc_ghz, h_bs, h_ut, False
        )
    raise ValueError(f"ground-to-ground model {model!r} unknown; expected 'paper', 'uma' or 'umi'")


def channel_gain_db(
    path_loss_db: ArrayLike, antenna_gain_db: ArrayLike = 0.0, shadowing_db: ArrayLike = 0.0
) -> FloatArray:
    """Channel gain ``G = g - PL - X_sigma`` in dB (He et al. 2025, rate model).

    ``X_sigma`` is the log-normal shadowing sample in dB (``N(0, sigma^2)``); pass 0 for the
    deterministic (expected) part.
    """
    return _arr(antenna_gain_db) - _arr(path_loss_db) - _arr(shadowing_db)


def noise_power_dbm(
    bandwidth_hz: ArrayLike, noise_figure_db: ArrayLike = 7.0, psd_dbm_hz: float = -174.0
) -> FloatArray:
    """Thermal noise ``-174 dBm/Hz + 10 log10(B) + NF`` in dBm (kT at 290 K)."""
    return (
        psd_dbm_hz + 10.0 * np.log10(np.maximum(_arr(bandwidth_hz), 1e-300)) + _arr(noise_figure_db)
    )


def shannon_rate(
    bandwidth_hz: ArrayLike,
    tx_power_dbm: ArrayLike,
    gain_db: ArrayLike,
    noise_figure_db: ArrayLike = 7.0,
    psd_dbm_hz: float = -174.0,
) -> FloatArray:
    """Shannon rate ``R = W log2(1 + P G / N)`` in bit/s with ``N`` the noise over ``W``.

    Source: He et al. 2025 (rate model), Shannon 1948.

    Parameters
    ----------
    bandwidth_hz : array_like
        Granted bandwidth ``W`` (0 gives rate 0).
    tx_power_dbm : array_like
        Transmit power ``P``.
    gain_db : array_like
        Channel gain ``G`` from :func:`channel_gain_db`.
    noise_figure_db : array_like
        Receiver noise figure.

    Returns
    -------
    numpy.ndarray
        Rate in bit/s, broadcast shape of the inputs.
    """
    w = np.maximum(_arr(bandwidth_hz), 0.0)
    # Received power over the noise density (per Hz); dividing by W afterwards avoids log10(0).
    snr_hz = 10.0 ** (
        (_arr(tx_power_dbm) + _arr(gain_db) - psd_dbm_hz - _arr(noise_figure_db)) / 10.0
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = w * np.log2(1.0 + snr_hz / w)
    return np.where(w > 0.0, rate, 0.0)
