"""Ensemble information gain: exact for binary outcomes, a true upper bound for Gaussian ones."""

import math

import pytest
import torch

from aif.epistemics import bernoulli_entropy, bernoulli_info_gain, gaussian_info_gain


def test_bernoulli_info_gain_closed_forms():
    agree = torch.full((5, 4), 0.3)
    assert torch.allclose(bernoulli_info_gain(agree), torch.zeros(4), atol=1e-7)
    # two certain members that disagree: one full bit of information (log 2 nats)
    split = torch.tensor([[0.0], [1.0]])
    assert bernoulli_info_gain(split).item() == pytest.approx(math.log(2))
    p = torch.tensor([[0.2], [0.6]])
    expected = bernoulli_entropy(torch.tensor(0.4)) - 0.5 * (
        bernoulli_entropy(torch.tensor(0.2)) + bernoulli_entropy(torch.tensor(0.6))
    )
    assert bernoulli_info_gain(p).item() == pytest.approx(expected.item())


def test_gaussian_info_gain_zero_when_members_agree_and_grows_with_spread():
    var = torch.ones(3, 1)
    assert gaussian_info_gain(torch.zeros(3, 1), var).item() == pytest.approx(0.0, abs=1e-6)
    gains = [
        gaussian_info_gain(torch.tensor([[-d], [0.0], [d]]), var).item() for d in (0.1, 0.5, 2.0)
    ]
    assert gains[0] < gains[1] < gains[2]


def test_gaussian_info_gain_bounds_the_monte_carlo_mutual_information():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([-1.5, 0.0, 2.0])
    sds = torch.tensor([0.5, 1.0, 0.7])
    comp = torch.randint(0, 3, (200_000,), generator=g)
    x = means[comp] + sds[comp] * torch.randn(200_000, generator=g)
    log_mix = torch.logsumexp(
        torch.distributions.Normal(means, sds).log_prob(x[:, None]) - math.log(3), dim=1
    )
    h_mix = -log_mix.mean().item()
    h_members = (0.5 * torch.log(2 * math.pi * math.e * sds**2)).mean().item()
    mi = h_mix - h_members
    bound = gaussian_info_gain(means[:, None], (sds**2)[:, None]).item()
    assert mi > 0.1
    assert bound >= mi - 0.01


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="same shape"):
        gaussian_info_gain(torch.zeros(2, 3), torch.ones(2, 4))
