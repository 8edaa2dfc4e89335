"""Parameter information gain of ensemble models, the epistemic part of expected free energy.

For an ensemble {p(o | x, theta_m)}, the information an outcome carries about theta is the mutual
information I(o; theta | x) = H[mean_m p(o | theta_m)] - mean_m H[p(o | theta_m)]
(Tschantz et al. 2020, arXiv:2002.12636, eq. for the parameter epistemic value).
"""

from __future__ import annotations

import math

import torch

__all__ = ["bernoulli_entropy", "bernoulli_info_gain", "gaussian_info_gain"]

_LOG_2PI_E = math.log(2 * math.pi * math.e)


def bernoulli_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of Bernoulli(p), elementwise; 0 log 0 is taken as 0.

    Parameters
    ----------
    p : torch.Tensor
        Any shape, values in [0, 1].

    Returns
    -------
    torch.Tensor
        Same shape as ``p``.
    """
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))


def bernoulli_info_gain(p: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Exact mutual information between a binary outcome and the ensemble member.

    Parameters
    ----------
    p : torch.Tensor
        Shape ``(E, ...)`` (members along ``dim``): each member's probability of the outcome.
    dim : int
        The ensemble dimension.

    Returns
    -------
    torch.Tensor
        Shape ``(...)``, non-negative: H[mean p] - mean H[p].
    """
    mixture = bernoulli_entropy(p.mean(dim))
    return (mixture - bernoulli_entropy(p).mean(dim)).clamp_min(0.0)


def gaussian_info_gain(mean: torch.Tensor, var: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Mutual information between a Gaussian outcome and the ensemble member, moment-matched.

    The mixture entropy has no closed form; replacing the mixture by the Gaussian with the same mean and
    variance bounds it from above (the Gaussian has maximum entropy for a given variance), so this is an
    upper bound on I(o; theta): 0.5 log(mean var + var of means) - mean 0.5 log var. It is zero exactly
    when the members agree.

    Parameters
    ----------
    mean, var : torch.Tensor
        Shape ``(E, ...)`` each (members along ``dim``): every member's predictive mean and variance.
    dim : int
        The ensemble dimension.

    Returns
    -------
    torch.Tensor
        Shape ``(...)``, non-negative (nats).
    """
    if mean.shape != var.shape:
        raise ValueError(
            f"mean has shape {tuple(mean.shape)} but var has shape {tuple(var.shape)}; "
            "expected the same shape"
        )
    total = var.mean(dim) + mean.var(dim, unbiased=False)
    mixture = 0.5 * (_LOG_2PI_E + torch.log(total))
    members = 0.5 * (_LOG_2PI_E + torch.log(var)).mean(dim)
    return (mixture - members).clamp_min(0.0)
