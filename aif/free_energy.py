"""Variational free energy of any Pyro model and guide, computed from Pyro traces.

``vfe`` is ``-ELBO`` split into accuracy and complexity (exact by enumeration or Monte Carlo);
expected free energy by sampling predictions is in :mod:`aif.expected_free_energy`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO, config_enumerate
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch import Tensor

__all__ = [
    "VFEResult",
    "hidden_sites",
    "plate_nesting",
    "seeded",
    "vfe",
]

Model = Callable[..., Any]


class VFEResult(NamedTuple):
    """Variational free energy and its two parts (nats).

    ``vfe = complexity - accuracy`` holds exactly (up to float rounding) on both paths.

    Attributes
    ----------
    vfe : Tensor, shape ()
        ``F = E_q[log q(s) - log p(o, s)] = -ELBO``.
    accuracy : Tensor, shape ()
        ``E_q[log p(o | s)]`` summed over observed sites (and factor sites, such as preferences).
    complexity : Tensor, shape ()
        ``E_q[log q(s) - log p(s)] = KL[q(s) || p(s)]`` over the latent sites of the guide.
    """

    vfe: Tensor
    accuracy: Tensor
    complexity: Tensor


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's RNG seeded, restoring the caller's RNG state afterwards.

    Pyro draws from torch's global generator; forking it keeps every stochastic entry point
    of the engine reproducible (same seed, same numbers) without side effects on the caller.

    Parameters
    ----------
    seed : int or None
        ``None`` leaves the generator alone.
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def hidden_sites() -> Messenger:
    """Hide sample and param sites from enclosing handlers, letting other effects through.

    A bare ``poutine.block()`` also stops effectful queries such as
    :func:`aif.handlers.horizon`, which would then ignore an enclosing ``set_horizon``.
    """
    return poutine.block(hide_types=["sample", "param"])


class _MaskObserved(Messenger):
    """Zero the log-density of observed and factor sites, leaving only the latent prior."""

    def _pyro_sample(self, msg: Any) -> None:
        if msg["is_observed"]:
            msg["mask"] = False


def _non_enumerable_latents(guide: Model, args: tuple, kwargs: dict) -> list[str]:
    trace = poutine.trace(guide).get_trace(*args, **kwargs)
    bad = []
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            if not getattr(site["fn"], "has_enumerate_support", False):
                bad.append(f"{name} ({type(site['fn']).__name__})")
    return bad


def _enum_loss(
    model: Model, guide: Model, mpn: int, args: tuple, kwargs: dict, num_particles: int = 1
) -> Tensor:
    """``-ELBO`` by parallel enumeration, differentiable when the guide has parameters.

    With ``num_particles > 1`` the non-enumerated sites are averaged over that many vectorised
    draws.
    """
    elbo = TraceEnum_ELBO(
        max_plate_nesting=mpn,
        num_particles=num_particles,
        vectorize_particles=num_particles > 1,
    )
    try:
        return elbo.differentiable_loss(model, guide, *args, **kwargs)
    except ValueError as err:
        # Pyro refuses a differentiable loss when nothing requires a gradient (a guide of
        # fixed tensors); the value is still exact.
        if "cannot be differentiated" not in str(err):
            raise
        return torch.tensor(elbo.loss(model, guide, *args, **kwargs), dtype=torch.float64)


def vfe(
    model: Model,
    guide: Model,
    *args: Any,
    method: Literal["exact", "mc", "mixed"] = "exact",
    num_particles: int = 1000,
    seed: int | None = 0,
    max_plate_nesting: int | None = None,
    differentiable: bool = False,
    **kwargs: Any,
) -> VFEResult:
    """Variational free energy ``F = -ELBO`` of a model under a guide, with accuracy and complexity.

    ``F = E_q[log q(s) - log p(o, s)] = KL[q(s) || p(s)] - E_q[log p(o | s)]``
    (Friston, "The free-energy principle: a unified brain theory?", Nat. Rev. Neurosci.
    11, 2010, Box 1; Pyro's ELBO is the same quantity with the opposite sign).

    Parameters
    ----------
    model, guide : callable
        Pyro programs taking ``*args, **kwargs``. Observations are the model's observed sites.
    *args, **kwargs
        Passed to both programs.
    method : {"exact", "mc", "mixed"}, default "exact"
        ``"exact"`` enumerates every latent site of the guide in parallel (``TraceEnum_ELBO``);
        all of them must be discrete. Latent model sites absent from the guide must carry
        ``infer={"enumerate": "parallel"}`` and are summed out. ``"mc"`` averages
        ``num_particles`` vectorised samples from the guide (the ``Trace_ELBO`` estimator).
        ``"mixed"`` enumerates the discrete sites and averages over ``num_particles`` draws of
        the continuous ones (such as the Dirichlet tables of a learnable model).
    num_particles : int, default 1000
        Samples for ``method="mc"`` and ``"mixed"``.
    seed : int or None, default 0
        Seed of the Monte Carlo draws; the caller's RNG state is restored afterwards.
    max_plate_nesting : int, optional
        Number of nested plates in the programs; guessed from a trace when omitted.
    differentiable : bool, default False
        Keep the autograd graph (gradients with respect to the guide's parameters) instead of
        returning detached values.

    Returns
    -------
    VFEResult
        0-d tensors ``(vfe, accuracy, complexity)``.

    Raises
    ------
    ValueError
        For ``method="exact"`` with a continuous latent site in the guide, or an unknown method.
    """
    if method in ("exact", "mixed"):
        if method == "exact":
            bad = _non_enumerable_latents(guide, args, kwargs)
            if bad:
                raise ValueError(
                    f"vfe(method='exact'): the guide has latent sites without enumerable support: "
                    f"{', '.join(bad)}; expected only discrete sites (use method='mixed' or "
                    "'mc' for these)"
                )
        elif num_particles < 1:
            raise ValueError(f"vfe: num_particles={num_particles}; expected >= 1")
        particles = num_particles if method == "mixed" else 1
        enum_guide = config_enumerate(guide, "parallel")
        with seeded(seed):
            mpn = (
                plate_nesting(guide, model, args=args, kwargs=kwargs)
                if max_plate_nesting is None
                else max_plate_nesting
            )
            # The same draws (if any) for the free energy and its complexity.
            state = torch.random.get_rng_state()
            free_energy = _enum_loss(model, enum_guide, mpn, args, kwargs, particles)
            torch.random.set_rng_state(state)
            complexity = _enum_loss(
                _MaskObserved()(model), enum_guide, mpn, args, kwargs, particles
            )
        result = VFEResult(free_energy, complexity - free_energy, complexity)
        return result if differentiable else VFEResult(*(x.detach() for x in result))
    if method == "mc":
        if num_particles < 1:
            raise ValueError(f"vfe: num_particles={num_particles}; expected >= 1")
        with seeded(seed):
            acc, comp = _mc_parts(model, guide, args, kwargs, num_particles, max_plate_nesting)
        result = VFEResult(comp.mean() - acc.mean(), acc.mean(), comp.mean())
        return result if differentiable else VFEResult(*(x.detach() for x in result))
    raise ValueError(f"vfe: method={method!r}; expected 'exact', 'mc' or 'mixed'")


def plate_nesting(*programs: Model, args: tuple = (), kwargs: dict | None = None) -> int:
    """Deepest plate nesting (number of batch dims used by plates) across Pyro programs.

    Parameters
    ----------
    *programs : callable
        Pyro programs run once each with ``args`` and ``kwargs``.

    Returns
    -------
    int
        ``max(-frame.dim)`` over every plate frame seen, 0 without plates.
    """
    deepest = 0
    for program in programs:
        with hidden_sites():
            trace = poutine.trace(program).get_trace(*args, **(kwargs or {}))
        for site in trace.nodes.values():
            for frame in site.get("cond_indep_stack", ()):
                if frame.vectorized and frame.dim is not None:
                    deepest = max(deepest, -frame.dim)
    return deepest


def _particle_dim_sum(log_prob: Tensor, particle_dim: int, num_particles: int) -> Tensor:
    """Sum a site's log-density over every dim but the particle dim: shape (num_particles,)."""
    while log_prob.dim() < -particle_dim:
        log_prob = log_prob.unsqueeze(0)
    log_prob = log_prob.movedim(particle_dim, 0)
    return log_prob.reshape(log_prob.shape[0], -1).sum(-1).expand(num_particles)


def _mc_parts(
    model: Model,
    guide: Model,
    args: tuple,
    kwargs: dict,
    num_particles: int,
    max_plate_nesting: int | None,
) -> tuple[Tensor, Tensor]:
    """Per-particle accuracy and complexity, shapes (num_particles,), from vectorised traces."""
    mpn = (
        plate_nesting(guide, model, args=args, kwargs=kwargs)
        if max_plate_nesting is None
        else max_plate_nesting
    )
    particle_dim = -(mpn + 1)
    particles = pyro.plate("_vfe_particles", num_particles, dim=particle_dim)
    guide_trace = poutine.trace(particles(guide)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(particles(model), trace=guide_trace)).get_trace(
        *args, **kwargs
    )
    guide_trace.compute_log_prob()
    model_trace.compute_log_prob()
    zero = torch.zeros(num_particles)
    accuracy, complexity = zero.clone(), zero.clone()
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        lp = _particle_dim_sum(site["log_prob"], particle_dim, num_particles)
        if site["is_observed"]:
            accuracy = accuracy + lp
        elif name in guide_trace.nodes:
            complexity = complexity - lp
        else:
            raise ValueError(
                f"vfe(method='mc'): latent model site {name!r} has no guide site; expected the "
                "guide to sample every latent site (or use method='exact' with enumeration)"
            )
    for site in guide_trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            complexity = complexity + _particle_dim_sum(
                site["log_prob"], particle_dim, num_particles
            )
    return accuracy, complexity
