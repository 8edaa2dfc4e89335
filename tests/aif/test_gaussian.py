"""The closed-form Gaussian update equals the posterior that SVI finds by minimising VFE."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from aif.gaussian import GaussianBelief, gaussian_predict, gaussian_update
from aif.inference import fit_beliefs


def test_update_matches_svi_vfe_minimiser():
    prior = GaussianBelief(torch.tensor(0.6), torch.tensor(0.04))
    reading = torch.tensor(0.3)
    r = 0.01

    def model(o):
        x = pyro.sample("x", dist.Normal(prior.mean, prior.var.sqrt()))
        pyro.sample("o", dist.Normal(x, r**0.5), obs=o)

    class Guide(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.tensor(0.5))
            self.log_scale = torch.nn.Parameter(torch.tensor(-1.0))

        def forward(self, o):
            pyro.sample("x", dist.Normal(self.loc, self.log_scale.exp()))

    guide = Guide()
    fit_beliefs(
        model, guide, reading, num_steps=3000, lr=0.02, seed=0, method="mc", num_particles=64
    )
    post = gaussian_update(prior, reading, r)
    assert guide.loc.item() == pytest.approx(post.mean.item(), abs=5e-3)
    assert (2 * guide.log_scale).exp().item() == pytest.approx(post.var.item(), rel=0.1)
    # the closed form itself: precision-weighted mean
    assert post.mean.item() == pytest.approx((0.6 / 0.04 + 0.3 / 0.01) / (1 / 0.04 + 1 / 0.01))


def test_predict_then_update_shapes_and_errors():
    b = GaussianBelief(torch.zeros(2, 3), torch.ones(2, 3))
    b = gaussian_predict(b, torch.full((2, 3), 0.5), torch.full((2, 3), 0.1))
    assert torch.allclose(b.var, torch.full((2, 3), 1.1))
    post = gaussian_update(b, torch.ones(2, 3), 1.1)
    assert torch.allclose(post.mean, torch.full((2, 3), 0.75))
    with pytest.raises(ValueError, match="noise_var"):
        gaussian_update(b, torch.ones(2, 3), 0.0)
    with pytest.raises(ValueError, match="expected"):
        gaussian_update(b, torch.ones(3), 1.0)
