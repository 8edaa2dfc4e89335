"""Closed-form Gaussian belief updating: the VFE-minimising posterior of a linear-Gaussian reading.

For a prior N(m, v) over a latent value and a reading o ~ N(latent, r), the posterior that minimises the
variational free energy over Gaussian beliefs is the exact Bayes posterior (a scalar Kalman update).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["GaussianBelief", "gaussian_predict", "gaussian_update"]


class GaussianBelief(NamedTuple):
    """Independent Gaussian beliefs; ``mean`` and ``var`` have the same shape."""

    mean: Tensor
    var: Tensor


def gaussian_predict(
    belief: GaussianBelief, delta_mean: Tensor, delta_var: Tensor
) -> GaussianBelief:
    """Push beliefs through an additive transition ``x' = x + d``, ``d ~ N(delta_mean, delta_var)``.

    Parameters
    ----------
    belief : GaussianBelief
        Current beliefs, any shape ``(...)``.
    delta_mean, delta_var : Tensor
        Shape ``(...)``: predicted change and its variance.

    Returns
    -------
    GaussianBelief
        Shape ``(...)``.
    """
    if delta_mean.shape != belief.mean.shape or delta_var.shape != belief.mean.shape:
        raise ValueError(
            f"delta_mean {tuple(delta_mean.shape)} and delta_var {tuple(delta_var.shape)} must match "
            f"the belief shape {tuple(belief.mean.shape)}"
        )
    return GaussianBelief(belief.mean + delta_mean, belief.var + delta_var)


def gaussian_update(
    prior: GaussianBelief, reading: Tensor, noise_var: Tensor | float
) -> GaussianBelief:
    """Exact posterior of a latent value under prior N(m, v) after a reading ``o ~ N(latent, r)``.

    ``k = v / (v + r)``, posterior mean ``m + k (o - m)``, variance ``(1 - k) v``.

    Parameters
    ----------
    prior : GaussianBelief
        Shape ``(...)``.
    reading : Tensor
        Shape ``(...)``.
    noise_var : Tensor or float
        r, reading noise variance (> 0), broadcastable to ``(...)``.

    Returns
    -------
    GaussianBelief
        Shape ``(...)``.
    """
    r = torch.as_tensor(noise_var, dtype=prior.var.dtype)
    if (r <= 0).any():
        raise ValueError(f"noise_var must be > 0, got {noise_var!r}")
    if reading.shape != prior.mean.shape:
        raise ValueError(
            f"reading has shape {tuple(reading.shape)}, expected {tuple(prior.mean.shape)}"
        )
    gain = prior.var / (prior.var + r)
    return GaussianBelief(prior.mean + gain * (reading - prior.mean), (1 - gain) * prior.var)
