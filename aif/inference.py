"""Belief updating by stochastic variational inference: fit a guide to minimise free energy.

``fit_beliefs`` fits one guide and returns its posterior with the VFE trace; ``filter_beliefs``
repeats that over time steps; ``amortised_info_gain`` fits a guide over predicted observations.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, Literal, NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import Predictive, Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.ops.indexing import Vindex
from pyro.poutine.util import site_is_subsample
from torch import Tensor, nn

from aif.free_energy import VFEResult, hidden_sites, plate_nesting, seeded, vfe
from aif.handlers import ACTION_SITE, STATE_SITE, condition_on_policy, is_preference_site
from aif.maths import softmax, stable_log

__all__ = [
    "AmortisedInfoGain",
    "AmortisedGuide",
    "BeliefResult",
    "ConvergenceWarning",
    "FilterBeliefsResult",
    "JointCategorical",
    "MeanFieldCategorical",
    "NonFiniteFreeEnergyError",
    "amortised_info_gain",
    "categorical_predict",
    "categorical_step_model",
    "filter_beliefs",
    "fit_beliefs",
    "trace_converged",
]

Model = Callable[..., Any]


class ConvergenceWarning(UserWarning):
    """The free energy was still changing when the optimisation budget ran out."""


class NonFiniteFreeEnergyError(FloatingPointError):
    """A NaN or infinity appeared during belief updating.

    Attributes
    ----------
    step : int
        Optimisation step (0-based) at which it appeared.
    site : str or None
        The first sample or parameter site found non-finite, if any.
    """

    def __init__(self, message: str, step: int, site: str | None) -> None:
        super().__init__(message)
        self.step = step
        self.site = site


class BeliefResult(NamedTuple):
    """Outcome of :func:`fit_beliefs`.

    Attributes
    ----------
    params : dict of str to Tensor
        Fitted guide parameters (constrained values, detached), by Pyro parameter name.
    samples : dict of str to Tensor
        ``num_samples`` draws of every latent guide site, shape (num_samples, *site_shape);
        empty when ``num_samples=0``.
    vfe_trace : Tensor, shape (n_steps,)
        Free energy (``-ELBO`` estimate) before each optimisation step.
    final : VFEResult
        VFE, accuracy and complexity of the fitted guide (exact or with ``final_particles``).
    converged : bool
        Whether the convergence test passed before the budget ran out.
    num_steps : int
        Steps taken (fewer than requested when it converged early).
    param_state : dict
        Param-store state holding the fitted parameters of plain (non-module) guides; enter it
        with ``pyro.get_param_store().scope(param_state)`` to run the fitted guide.
    beliefs : dict of str to Tensor, or None
        The fitted posterior itself when the guide exposes it (``beliefs()`` of
        :class:`MeanFieldCategorical` and :class:`JointCategorical`, ``marginals()`` of
        ``CategoricalGuide``): probabilities of shape (n,) per categorical site.
    """

    params: dict[str, Tensor]
    samples: dict[str, Tensor]
    vfe_trace: Tensor
    final: VFEResult
    converged: bool
    num_steps: int
    param_state: dict
    beliefs: dict[str, Tensor] | None = None


# --------------------------------------------------------------------------------------------
# Guides
# --------------------------------------------------------------------------------------------


class MeanFieldCategorical(nn.Module):
    """Mean-field categorical guide: one logits vector per latent site, ``q(s) = prod_i q_i(s_i)``.

    Parameters
    ----------
    sites : mapping of str to int
        Site name to number of categories, e.g. ``{"s_0_0": 3, "s_0_1": 2}``.
    init : mapping of str to Tensor, optional
        Initial probabilities per site (shape (n,)); uniform when omitted. Starting from the
        prior is what sequential filtering does.
    dtype : torch.dtype, default torch.float64
        Precision of the logits (that of the categorical models).

    Examples
    --------
    >>> guide = MeanFieldCategorical({"s_0_0": 3})
    >>> guide.beliefs()["s_0_0"].shape
    torch.Size([3])
    """

    def __init__(
        self,
        sites: Mapping[str, int],
        init: Mapping[str, Tensor] | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if not sites:
            raise ValueError("MeanFieldCategorical: got no sites; expected at least one")
        self.site_names = list(sites)
        self.logits = nn.ParameterList()
        for name, n in sites.items():
            if int(n) < 1:
                raise ValueError(
                    f"MeanFieldCategorical: site {name!r} has {n} categories; expected >= 1"
                )
            if init is not None and name in init:
                p = torch.as_tensor(init[name])
                if tuple(p.shape) != (int(n),):
                    raise ValueError(
                        f"MeanFieldCategorical: init[{name!r}] has shape {tuple(p.shape)}; "
                        f"expected ({int(n)},)"
                    )
                logits = stable_log(p.detach().clone().to(dtype))
            else:
                logits = torch.zeros(int(n), dtype=dtype)
            self.logits.append(nn.Parameter(logits))

    def forward(self, *args: Any, **kwargs: Any) -> None:
        for name, logits in zip(self.site_names, self.logits, strict=True):
            pyro.sample(name, dist.Categorical(logits=logits))

    def beliefs(self) -> dict[str, Tensor]:
        """Posterior probabilities per site, ``{name: Tensor of shape (n,)}`` (detached)."""
        return {
            name: softmax(logits.detach(), dim=-1)
            for name, logits in zip(self.site_names, self.logits, strict=True)
        }


class JointCategorical(nn.Module):
    """Structured categorical guide: joint within a time step, Markov across steps.

    ``q(z_0) prod_t q(z_t | z_{t-1})`` where ``z_t`` holds every site of step ``t``, each
    factorised by the chain rule, ``q(z_t | z_{t-1}) = prod_i q(s_{t,i} | z_{t-1}, s_{t,<i})``,
    with one free logits table per site indexed by its parents' values. Unlike
    :class:`MeanFieldCategorical` this family holds every posterior of a hidden Markov model
    over the window (the posterior of a chain is itself a chain, Rabiner, Proc. IEEE 77(2),
    1989), so with enumeration (``fit_beliefs(method="exact")``) SVI reaches exact Bayes and
    the free energy reaches ``-log p(o)``. A single step (``steps`` of length one) is a joint
    belief over several factors.

    Parameters
    ----------
    steps : sequence of mapping of str to int
        Per time step, the sites in sampling order and their number of categories, e.g.
        ``[{"s_0_0": 3, "s_0_1": 2}, {"s_1_0": 3, "s_1_1": 2}]``.
    markov : bool, default True
        Condition each step on the previous one. ``False`` gives independent steps (joint
        within each step only).
    dtype : torch.dtype, default torch.float64
    device : torch.device or str, optional

    Notes
    -----
    Site ``i`` of step ``t`` has ``prod(parent sizes) * n`` logits, where the parents are every
    site of step ``t - 1`` and the earlier sites of step ``t``; the family suits models whose
    joint state per step is small (hundreds of states), the same models the exact engine
    handles.

    Examples
    --------
    >>> guide = JointCategorical([{"s_0_0": 3, "s_0_1": 2}])
    >>> guide.joint(0).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        steps: Sequence[Mapping[str, int]],
        markov: bool = True,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if not steps or any(len(step) == 0 for step in steps):
            raise ValueError(
                f"JointCategorical: steps={list(steps)}; expected at least one step, each with "
                "at least one site"
            )
        self.steps = [[(name, int(n)) for name, n in step.items()] for step in steps]
        self.markov = markov
        self.logits = nn.ParameterList()
        self._parents: list[list[int]] = []  # flat indices of each site's parents
        self._names: list[str] = []
        self._sizes: list[int] = []
        self._step_of: list[int] = []
        flat = 0
        previous: list[int] = []
        for t, step in enumerate(self.steps):
            current: list[int] = []
            for name, n in step:
                if n < 1:
                    raise ValueError(f"JointCategorical: site {name!r} has {n} categories")
                if name in self._names:
                    raise ValueError(f"JointCategorical: site {name!r} appears twice")
                parents = (previous if markov else []) + current
                shape = [self._sizes[p] for p in parents] + [n]
                self.logits.append(nn.Parameter(torch.zeros(shape, dtype=dtype, device=device)))
                self._parents.append(list(parents))
                self._names.append(name)
                self._sizes.append(n)
                self._step_of.append(t)
                current.append(flat)
                flat += 1
            previous = current

    def forward(self, *args: Any, **kwargs: Any) -> None:
        values: list[Tensor] = []
        for k, (name, logits) in enumerate(zip(self._names, self.logits, strict=True)):
            parents = [values[p] for p in self._parents[k]]
            table = Vindex(logits)[(Ellipsis, *parents, slice(None))] if parents else logits
            values.append(pyro.sample(name, dist.Categorical(logits=table)))

    @torch.no_grad()
    def _conditional(self, t: int) -> Tensor:
        """``q(z_t | z_{t-1})`` as a tensor over (previous sites..., current sites...)."""
        sites = [k for k in range(len(self._names)) if self._step_of[k] == t]
        prev = [k for k in range(len(self._names)) if self._step_of[k] == t - 1]
        prev = prev if (self.markov and t > 0) else []
        axes = prev + sites
        out = torch.ones([self._sizes[k] for k in axes], dtype=self.logits[0].dtype)
        for k in sites:
            probs = torch.softmax(self.logits[k].detach(), -1)
            # Place each table on the axes of its parents and itself.
            shape = [1] * len(axes)
            for p in self._parents[k] + [k]:
                shape[axes.index(p)] = self._sizes[p]
            out = out * probs.reshape(shape)
        return out

    @torch.no_grad()
    def joint(self, t: int) -> Tensor:
        """Joint belief over the sites of step ``t``, shape (n_sites of step t...), detached."""
        if not 0 <= t < len(self.steps):
            raise ValueError(f"JointCategorical.joint: t={t}; expected 0..{len(self.steps) - 1}")
        marginal = self._conditional(0)
        for u in range(1, t + 1):
            cond = self._conditional(u)
            if self.markov:
                n_prev = marginal.dim()
                flat_prev = marginal.reshape(-1)
                cond = cond.reshape(flat_prev.shape[0], *cond.shape[n_prev:])
                marginal = torch.tensordot(flat_prev, cond, dims=1)
            else:
                marginal = cond
        return marginal

    @torch.no_grad()
    def beliefs(self) -> dict[str, Tensor]:
        """Posterior marginal of every site, ``{name: Tensor of shape (n,)}`` (detached)."""
        out: dict[str, Tensor] = {}
        for t in range(len(self.steps)):
            joint = self.joint(t)
            for i, (name, _) in enumerate(self.steps[t]):
                dims = [d for d in range(joint.dim()) if d != i]
                out[name] = joint.sum(dim=dims) if dims else joint
        return out


# --------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------


def _locate_non_finite(model: Model, guide: Model, args: tuple, kwargs: dict) -> str | None:
    """First site (guide, then model) whose value or log-density is not finite."""
    with pyro.validation_enabled(False):
        return _first_non_finite(model, guide, args, kwargs)


def _first_non_finite(model: Model, guide: Model, args: tuple, kwargs: dict) -> str | None:
    try:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        guide_nodes: dict[str, Any] = guide_trace.nodes
        for name, site in guide_nodes.items():
            if site["type"] == "param" and not torch.isfinite(site["value"]).all():
                return f"param {name}"
        for name, site in guide_nodes.items():
            if site["type"] == "sample":
                if not torch.isfinite(torch.as_tensor(site["value"], dtype=torch.float64)).all():
                    return f"guide sample {name}"
                if not torch.isfinite(site["fn"].log_prob(site["value"])).all():
                    return f"guide sample {name}"
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(
            *args, **kwargs
        )
        model_nodes: dict[str, Any] = model_trace.nodes
        for name, site in model_nodes.items():
            if site["type"] == "param" and not torch.isfinite(site["value"]).all():
                return f"param {name}"
            if site["type"] == "sample":
                value = torch.as_tensor(site["value"], dtype=torch.float64)
                if not torch.isfinite(value).all():
                    return f"model sample {name}"
                if not torch.isfinite(site["fn"].log_prob(site["value"])).all():
                    return f"model sample {name}"
    except (ValueError, RuntimeError) as err:
        # Pyro's own validation refuses distributions with NaN parameters: its message names the
        # offending distribution, which is the best location available.
        return f"(distribution validation: {err})"
    return None


def _collect_params(param_trace: Any) -> dict[str, Tensor]:
    """Unconstrained leaf tensors of every param site of a trace, by name."""
    out: dict[str, Tensor] = {}
    for name, site in param_trace.nodes.items():
        value = site["value"]
        unconstrained = getattr(value, "unconstrained", None)
        leaf = unconstrained() if callable(unconstrained) else value
        if isinstance(leaf, Tensor) and leaf.requires_grad:
            out[name] = leaf
    return out


def trace_converged(trace: Sequence[float], tol: float, window: int, patience: int) -> bool:
    """Relative-change test on the end of a free-energy trace (True when it has settled).

    With ``window == 1`` (a deterministic loss) the last ``patience`` consecutive changes must
    all be within ``tol * max(1, |F|)``. With a window (a noisy loss) the means of the last two
    windows must differ by less than that tolerance or two standard errors, whichever is larger.
    """
    if window <= 1:
        if len(trace) <= patience:
            return False
        recent = torch.tensor(trace[-(patience + 1) :], dtype=torch.float64)
        scale = max(1.0, float(recent[-1].abs()))
        return bool((recent.diff().abs() <= tol * scale).all())
    if len(trace) < 2 * window:
        return False
    last = torch.tensor(trace[-window:], dtype=torch.float64)
    prev = torch.tensor(trace[-2 * window : -window], dtype=torch.float64)
    scale = max(1.0, float(last.mean().abs()))
    stderr = float(torch.sqrt(last.var() / window + prev.var() / window))
    return abs(float(last.mean() - prev.mean())) <= max(tol * scale, 2.0 * stderr)


def fit_beliefs(
    model: Model,
    guide: Model,
    *args: Any,
    num_steps: int = 1000,
    lr: float = 0.05,
    seed: int | None = 0,
    tol: float = 1e-6,
    method: Literal["exact", "mc"] = "exact",
    lr_decay: float = 0.1,
    num_particles: int = 1,
    window: int | None = None,
    patience: int = 10,
    early_stop: bool = True,
    num_samples: int = 0,
    final_particles: int = 1000,
    max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> BeliefResult:
    """Fit a guide to a model by SVI (minimising VFE) and return the posterior and its VFE trace.

    Each step evaluates ``F = -ELBO`` (``TraceEnum_ELBO`` with the guide's discrete sites
    enumerated for ``method="exact"``, ``Trace_ELBO`` with ``num_particles`` vectorised particles
    for ``"mc"``), checks it and its gradients are finite, and takes an Adam step. Parameters
    of plain guides (``pyro.param``) live in a private param-store scope, returned as
    ``param_state``; ``torch.nn.Module`` guides (such as :class:`MeanFieldCategorical`, or a
    ``PyroModule`` built under ``pyro.settings.set(module_local_params=True)``) keep theirs.
    Fitting leaves the global param store as it found it.

    Parameters
    ----------
    model, guide : callable
        Pyro programs taking ``*args, **kwargs``.
    num_steps : int, default 1000
        Maximum number of optimisation steps.
    lr : float, default 0.05
        Adam learning rate.
    lr_decay : float, default 0.1
        Ratio of the last step's learning rate to the first (exponential decay); below one it
        damps the noise of Monte Carlo gradients near the optimum.
    seed : int or None, default 0
        Seeds parameter initialisation and sampling; the caller's RNG state is restored.
    tol : float, default 1e-6
        Relative tolerance of the convergence test (see ``window``).
    method : {"exact", "mc"}, default "exact"
    num_particles : int, default 1
        Particles per step for ``method="mc"``; with ``"exact"``, draws per step of the
        guide's continuous sites (the Dirichlet tables of ``learn_A``/``learn_B``), whose
        expectation cannot be enumerated.
    window : int, optional
        Steps per window of the convergence test; default 1 for ``"exact"`` (consecutive
        values) and 50 for ``"mc"`` (window means, allowing two standard errors of noise).
    patience : int, default 10
        Consecutive small changes required with ``window=1``.
    early_stop : bool, default True
        Stop as soon as the test passes.
    num_samples : int, default 0
        Posterior draws from the fitted guide to return.
    final_particles : int, default 1000
        Particles of the final VFE for ``method="mc"``, and for the continuous sites of an
        ``"exact"`` fit (evaluated with ``vfe(method="mixed")``).
    max_plate_nesting : int, optional
        Guessed from a trace when omitted.

    Returns
    -------
    BeliefResult

    Raises
    ------
    NonFiniteFreeEnergyError
        When the free energy or a gradient becomes NaN or infinite; the message names the step
        and the first non-finite site or parameter.

    Warns
    -----
    ConvergenceWarning
        When the budget runs out before the convergence test passes (``converged=False``).
    """
    if num_steps < 1:
        raise ValueError(f"fit_beliefs: num_steps={num_steps}; expected >= 1")
    if not 0.0 < lr_decay <= 1.0:
        raise ValueError(f"fit_beliefs: lr_decay={lr_decay}; expected a value in (0, 1]")
    if method not in ("exact", "mc"):
        raise ValueError(f"fit_beliefs: method={method!r}; expected 'exact' or 'mc'")
    if window is None:
        window = 1 if method == "exact" else 50
    store = pyro.get_param_store()
    with ExitStack() as stack:
        stack.enter_context(seeded(seed))
        state = stack.enter_context(store.scope())
        mpn = (
            plate_nesting(guide, model, args=args, kwargs=kwargs)
            if max_plate_nesting is None
            else max_plate_nesting
        )
        if method == "exact":
            # Particles only matter for continuous guide sites (e.g. Dirichlet tables).
            elbo: Any = TraceEnum_ELBO(
                max_plate_nesting=mpn,
                num_particles=num_particles,
                vectorize_particles=num_particles > 1,
            )
            fit_guide = config_enumerate(guide, "parallel")
        else:
            elbo = Trace_ELBO(
                num_particles=num_particles,
                vectorize_particles=num_particles > 1,
                max_plate_nesting=mpn,
            )
            fit_guide = guide
        optimiser: torch.optim.Optimizer | None = None
        known: set[int] = set()
        trace: list[float] = []
        converged = False
        for step in range(num_steps):
            try:
                with poutine.trace(param_only=True) as param_capture:
                    loss = elbo.differentiable_loss(model, fit_guide, *args, **kwargs)
            except ValueError as err:
                # Pyro's argument validation stops at a distribution built from NaN/inf
                # parameters; re-run without it to name the site, keeping Pyro's own words.
                if "invalid values" not in str(err):
                    raise
                site = _locate_non_finite(model, guide, args, kwargs)
                first_line = str(err).splitlines()[0]
                raise NonFiniteFreeEnergyError(
                    f"fit_beliefs: a distribution got non-finite parameters at step {step}"
                    + (f"; first non-finite site: {site}" if site else "")
                    + f" ({first_line})",
                    step,
                    site,
                ) from err
            if not torch.isfinite(loss):
                site = _locate_non_finite(model, guide, args, kwargs)
                raise NonFiniteFreeEnergyError(
                    f"fit_beliefs: the free energy is {float(loss)} at step {step}"
                    + (f"; first non-finite site: {site}" if site else "")
                    + "; expected a finite -ELBO (check priors, likelihood supports and lr)",
                    step,
                    site,
                )
            named = _collect_params(param_capture.trace)
            if isinstance(guide, nn.Module):
                named.update((n, p) for n, p in guide.named_parameters() if p.requires_grad)
            if not named:
                raise ValueError(
                    "fit_beliefs: the guide has no parameters to fit; expected pyro.param sites "
                    "or a torch.nn.Module guide with parameters"
                )
            unique = {id(p): p for p in named.values()}
            new = [p for key, p in unique.items() if key not in known]
            if optimiser is None:
                optimiser = torch.optim.Adam(new, lr=lr)
            elif new:
                optimiser.add_param_group({"params": new})
            for group in optimiser.param_groups:
                group["lr"] = lr * lr_decay ** (step / max(1, num_steps - 1))
            known.update(id(p) for p in new)
            optimiser.zero_grad()
            loss.backward()
            for name, leaf in named.items():
                if leaf.grad is not None and not torch.isfinite(leaf.grad).all():
                    raise NonFiniteFreeEnergyError(
                        f"fit_beliefs: the gradient of parameter {name!r} (shape "
                        f"{tuple(leaf.shape)}) is not finite at step {step}; expected finite "
                        "gradients (check for log(0) or a vanishing scale)",
                        step,
                        f"param {name}",
                    )
            optimiser.step()
            trace.append(float(loss.detach()))
            if trace_converged(trace, tol, window, patience):
                converged = True
                if early_stop:
                    break
        final_method: Literal["exact", "mc", "mixed"] = method
        if method == "exact" and _has_continuous_latents(guide, args, kwargs):
            # Discrete sites are enumerated, continuous ones (Dirichlet tables) sampled.
            final_method = "mixed"
        final = vfe(
            model,
            guide,
            *args,
            method=final_method,
            num_particles=final_particles,
            seed=None,
            max_plate_nesting=mpn,
            **kwargs,
        )
        final = VFEResult(*(x.detach() for x in final))
        params_out = {name: store[name].detach().clone() for name in store.keys()}
        if isinstance(guide, nn.Module):
            params_out.update({name: p.detach().clone() for name, p in guide.named_parameters()})
        samples = _draw(guide, num_samples, args, kwargs) if num_samples > 0 else {}
    if not converged:
        warnings.warn(
            f"fit_beliefs: no convergence in {len(trace)} steps (last VFE {trace[-1]:.6g}, "
            f"tol={tol}, window={window}); raise num_steps or lr",
            ConvergenceWarning,
            stacklevel=2,
        )
    return BeliefResult(
        params_out,
        samples,
        torch.tensor(trace, dtype=torch.float64),
        final,
        converged,
        len(trace),
        dict(state),
        _guide_beliefs(guide),
    )


def _guide_beliefs(guide: Any) -> dict[str, Tensor] | None:
    """The posterior a guide holds, as probabilities per categorical site, when it says."""
    beliefs = getattr(guide, "beliefs", None)
    if callable(beliefs):
        out = beliefs()
        if isinstance(out, Mapping) and all(isinstance(v, Tensor) for v in out.values()):
            return {str(k): v.detach() for k, v in out.items()}
        return None
    marginals = getattr(guide, "marginals", None)
    if callable(marginals):
        rows = marginals()
        return {f"s_{t}_{f}": q.detach() for t, row in enumerate(rows) for f, q in enumerate(row)}
    return None


def _has_continuous_latents(guide: Model, args: tuple, kwargs: dict) -> bool:
    """Whether the guide samples a latent site without enumerable support."""
    with hidden_sites():
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
    for site in trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site):
            if not getattr(site["fn"], "has_enumerate_support", False):
                return True
    return False


def _draw(guide: Model, num_samples: int, args: tuple, kwargs: dict) -> dict[str, Tensor]:
    """``num_samples`` draws of every latent site of the guide, detached."""
    with torch.no_grad():
        try:
            predictive = Predictive(guide, num_samples=num_samples, parallel=True)
            out = predictive(*args, **kwargs)
        except (ValueError, RuntimeError):
            predictive = Predictive(guide, num_samples=num_samples, parallel=False)
            out = predictive(*args, **kwargs)
    return {k: v.detach() for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Sequential filtering
# --------------------------------------------------------------------------------------------


class FilterBeliefsResult(NamedTuple):
    """Outcome of :func:`filter_beliefs` over ``T`` time steps.

    Attributes
    ----------
    priors, posteriors : list, length T
        Beliefs before and after each observation, in the structure ``predict`` uses.
    vfe, accuracy, complexity : Tensor, shape (T,)
        Free energy of each step at the fitted posterior, and its parts.
    vfe_traces : list of Tensor, each shape (n_steps_t,)
        Optimisation traces per time step.
    converged : Tensor of bool, shape (T,)
    """

    priors: list[Any]
    posteriors: list[Any]
    vfe: Tensor
    accuracy: Tensor
    complexity: Tensor
    vfe_traces: list[Tensor]
    converged: Tensor


def filter_beliefs(
    model: Model,
    make_guide: Callable[[Any], Any],
    observations: Sequence[Any],
    prior: Any,
    predict: Callable[[Any, Any], Any],
    actions: Sequence[Any] | None = None,
    **fit_kwargs: Any,
) -> FilterBeliefsResult:
    """Sequential belief updating: fit each step by SVI, then push the posterior through dynamics.

    At step ``t`` a fresh guide ``make_guide(prior_t)`` is fitted to ``model(obs_t, prior_t)``;
    its ``beliefs()`` are the posterior, and ``prior_{t+1} = predict(posterior_t, action_t)``
    (for a categorical model, ``B[f][:, :, a_f] @ q_f``: Bayesian filtering, Da Costa et al.,
    J. Math. Psychol. 99, 2020, eq. 6).

    Parameters
    ----------
    model : callable
        One-step Pyro program ``model(obs_t, prior_t)``.
    make_guide : callable
        ``make_guide(prior_t)`` returns a guide ``guide(obs_t, prior_t)`` with a ``beliefs()``
        method returning the posterior in the structure of ``prior_t``.
    observations : sequence, length T
        Observation of each step (passed through to ``model``).
    prior : Any
        Beliefs before the first observation.
    predict : callable
        ``predict(posterior_t, action_t) -> prior_{t+1}``.
    actions : sequence, length >= T - 1, optional
        Action taken after each step; ``None`` passes ``None`` to ``predict``.
    **fit_kwargs
        Passed to :func:`fit_beliefs` (``num_steps``, ``lr``, ``seed``, ``tol``, ``method``...).
        Step ``t`` uses ``seed + t``.

    Returns
    -------
    FilterBeliefsResult
    """
    T = len(observations)
    if T == 0:
        raise ValueError("filter_beliefs: got no observations; expected at least one time step")
    if actions is not None and len(actions) < T - 1:
        raise ValueError(
            f"filter_beliefs: {len(actions)} actions for {T} observations; expected at least {T - 1}"
        )
    seed = fit_kwargs.pop("seed", 0)
    priors, posteriors, traces, parts, flags = [], [], [], [], []
    for t, obs in enumerate(observations):
        guide = make_guide(prior)
        if not callable(getattr(guide, "beliefs", None)):
            raise TypeError(
                f"filter_beliefs: make_guide returned {type(guide).__name__} without a beliefs() "
                "method; expected a guide exposing its posterior"
            )
        result = fit_beliefs(
            model, guide, obs, prior, seed=None if seed is None else seed + t, **fit_kwargs
        )
        posterior = guide.beliefs()
        priors.append(prior)
        posteriors.append(posterior)
        traces.append(result.vfe_trace)
        parts.append(torch.stack([x.to(torch.float64) for x in result.final]))
        flags.append(result.converged)
        if t < T - 1:
            prior = predict(posterior, None if actions is None else actions[t])
    table = torch.stack(parts)
    return FilterBeliefsResult(
        priors,
        posteriors,
        table[:, 0],
        table[:, 1],
        table[:, 2],
        traces,
        torch.tensor(flags, dtype=torch.bool),
    )


def categorical_step_model(
    A: Sequence[Tensor], state_site: str = STATE_SITE, obs_site: str = "o_{t}_{m}"
) -> Callable[[Sequence[Any], Sequence[Tensor]], None]:
    """One-step categorical model ``p(o, s) = prod_m A[m][o_m, s] prod_f prior[f][s_f]``.

    Sites ``s_0_{f}`` and ``o_0_{m}`` (time index 0 within the step) are ready for
    :func:`fit_beliefs` and :func:`filter_beliefs` with :class:`MeanFieldCategorical`.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
        Likelihoods in the pymdp layout (columns sum to one).
    state_site, obs_site : str
        Name patterns (fields ``t, f`` and ``t, m``).

    Returns
    -------
    callable
        ``model(obs, prior)`` with ``obs[m]`` an outcome index and ``prior[f]`` of shape (n_s[f],).
    """
    A = [torch.as_tensor(a) for a in A]
    n_factors = A[0].dim() - 1
    moved = [a.movedim(0, -1) for a in A]  # (n_s[0], ..., n_s[F-1], n_o[m])

    def model(obs: Sequence[Any], prior: Sequence[Tensor]) -> None:
        if len(prior) != n_factors:
            raise ValueError(
                f"categorical_step_model: prior has {len(prior)} factors; expected {n_factors}"
            )
        states = [
            pyro.sample(state_site.format(t=0, f=f), dist.Categorical(probs=prior[f]))
            for f in range(n_factors)
        ]
        index = _broadcast_index(states)
        for m, a in enumerate(moved):
            value = None if obs is None else torch.as_tensor(obs[m])
            pyro.sample(obs_site.format(t=0, m=m), dist.Categorical(probs=a[index]), obs=value)

    return model


def _broadcast_index(states: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """Index tensors that broadcast enumerated factor values against one another."""
    return tuple(torch.as_tensor(s).long() for s in states)


def categorical_predict(B: Sequence[Tensor]) -> Callable[[Any, Any], list[Tensor]]:
    """Transition of factorised beliefs: ``q'(s_f) = B[f][:, :, a_f] q(s_f)`` per factor.

    Parameters
    ----------
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f])

    Returns
    -------
    callable
        ``predict(posterior, action)`` where ``posterior`` is a list of ``(n_s[f],)`` tensors or
        a :meth:`MeanFieldCategorical.beliefs` dict (in factor order) and ``action[f]`` is a
        control index; returns the list of predicted priors.
    """
    B = [torch.as_tensor(b) for b in B]

    def predict(posterior: Any, action: Any) -> list[Tensor]:
        qs = list(posterior.values()) if isinstance(posterior, Mapping) else list(posterior)
        if len(qs) != len(B):
            raise ValueError(f"categorical_predict: {len(qs)} factors; expected {len(B)}")
        act = (
            [0] * len(B)
            if action is None
            else [int(a) for a in torch.as_tensor(action).reshape(-1)]
        )
        return [B[f][:, :, act[f]] @ qs[f].to(B[f].dtype) for f in range(len(B))]

    return predict


# --------------------------------------------------------------------------------------------
# Amortised posteriors over predicted observations
# --------------------------------------------------------------------------------------------


class AmortisedGuide(nn.Module):
    """Amortised guide ``r(s | o) = prod_i r_i(s_i | o, s_<i)`` over predicted observations.

    A small MLP maps the observations (one-hot for discrete sites, standardised for continuous
    ones) to one head per latent site: Categorical logits for discrete sites, or the location
    and scale of a Normal mapped onto the site's support. With ``structured=True`` each scalar
    latent site also depends additively on the earlier scalar latent sites (a learned table or
    weight per pair: logits ``+ M[s_j]``, location ``+ w * s_j``). That makes the family exact
    for Markov chains such as hidden Markov and linear-Gaussian state-space models, whose
    posterior ``p(s_t | s_{t-1}, o)`` adds the transition's log-density to a function of ``o``;
    a mean-field guide would miss the prior correlation between steps and inflate the
    complexity. The guide is fitted to a fixed batch of ``N`` predicted observations.

    Parameters
    ----------
    latent : mapping of str to Pyro site dict
        Prototype latent sites (in sampling order) whose ``value`` has the particle dim first.
    observed : mapping of str to Tensor
        Predicted observations per site, shape (N, ...).
    hidden : int, default 64
        Width of the hidden layer.
    structured : bool, default True
        Add the dependencies on earlier latent sites.
    """

    def __init__(
        self,
        latent: Mapping[str, Any],
        observed: Mapping[str, Tensor],
        hidden: int = 64,
        structured: bool = True,
    ) -> None:
        super().__init__()
        # Work in the precision of the model (its log-densities), not torch's default.
        first = next(iter(latent.values()))
        dtype = first["fn"].log_prob(first["value"]).dtype
        self.features = _encode_observations(observed).to(dtype)
        n = self.features.shape[0]
        self.specs: list[tuple[str, str, tuple[int, ...], int, Any]] = []
        n_out = 0
        for name, site in latent.items():
            fn = site["fn"]
            value = site["value"]
            if value.shape[:1] != (n,):
                raise ValueError(
                    f"AmortisedGuide: latent site {name!r} has value shape "
                    f"{tuple(value.shape)}; expected a leading particle dim of {n}"
                )
            n_event = len(fn.event_shape)
            shape = tuple(value.shape[1 : value.dim() - n_event]) + tuple(fn.event_shape)
            if getattr(fn, "has_enumerate_support", False) and n_event == 0:
                k = int(fn.enumerate_support(expand=False).reshape(-1).shape[0])
                self.specs.append((name, "categorical", shape, k, None))
                n_out += math.prod(shape) * k
            else:
                self.specs.append((name, "normal", shape, n_event, fn.support))
                n_out += 2 * math.prod(shape)
        self.net = nn.Sequential(
            nn.Linear(self.features.shape[1], hidden, dtype=dtype),
            nn.Tanh(),
            nn.Linear(hidden, n_out, dtype=dtype),
        )
        self.moments: dict[str, tuple[float, float]] = {
            name: (float(site["value"].double().mean()), float(site["value"].double().std()) + 1e-6)
            for name, site in latent.items()
        }
        self._start_at_prior(latent)
        # One coupling per ordered pair of scalar sites: a (K_j, K_i) table, a K_j vector, a
        # K_i vector or a scalar, depending on which of the two sites are discrete.
        self.couplings = nn.ParameterDict()
        if structured:
            scalar = [spec for spec in self.specs if math.prod(spec[2]) == 1 and not spec[2]]
            for i, (name_i, kind_i, _, k_i, _) in enumerate(scalar):
                for name_j, kind_j, _, k_j, _ in scalar[:i]:
                    rows = k_j if kind_j == "categorical" else 1
                    cols = k_i if kind_i == "categorical" else 1
                    key = f"{name_j}->{name_i}".replace(".", "_")
                    self.couplings[key] = nn.Parameter(torch.zeros(rows, cols, dtype=dtype))

    @torch.no_grad()
    def _start_at_prior(self, latent: Mapping[str, Any]) -> None:
        """Initialise the output layer so every head starts near the sampled prior marginal.

        Starting at the prior (rather than at an arbitrary unit Normal) saves most of the
        optimisation budget: the guide then only has to learn how observations move it.
        """
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        last.weight.mul_(0.1)
        start = 0
        for name, kind, shape, extra, support in self.specs:
            size = math.prod(shape)
            value = latent[name]["value"].detach()
            if kind == "categorical":
                counts = torch.nn.functional.one_hot(value.long().reshape(-1), extra).sum(0)
                freq = (counts.to(last.bias.dtype) + 1.0) / (counts.sum() + extra)
                last.bias[start : start + size * extra] = stable_log(freq).repeat(size)
                start += size * extra
                continue
            if support is not constraints.real and support != constraints.real_vector:
                value = dist.transforms.biject_to(support).inv(value)
            flat = value.reshape(value.shape[0], -1).to(last.bias.dtype)
            std = flat.std(0).clamp_min(1e-3)
            last.bias[start : start + size] = flat.mean(0)
            last.bias[start + size : start + 2 * size] = torch.log(torch.expm1(std))
            start += 2 * size

    def _coupling(self, name_i: str, kind_i: str, values: dict[str, tuple[str, Tensor]]) -> Any:
        total: Any = 0.0
        for name_j, (kind_j, value_j) in values.items():
            key = f"{name_j}->{name_i}".replace(".", "_")
            if key not in self.couplings:
                continue
            table = self.couplings[key]
            if kind_j == "categorical":
                term = table[value_j.long()]
            else:
                # Standardised so one learning rate suits sites of any scale.
                centre, spread = self.moments[name_j]
                term = ((value_j - centre) / spread).unsqueeze(-1) * table[0]
            total = total + (term if kind_i == "categorical" else term[..., 0])
        return total

    def forward(self, *args: Any, **kwargs: Any) -> None:
        out = self.net(self.features)
        start = 0
        values: dict[str, tuple[str, Tensor]] = {}
        for name, kind, shape, extra, support in self.specs:
            size = math.prod(shape)
            if kind == "categorical":
                logits = out[:, start : start + size * extra].reshape(-1, *shape, extra)
                start += size * extra
                logits = logits + self._coupling(name, kind, values)
                values[name] = (kind, pyro.sample(name, dist.Categorical(logits=logits)))
                continue
            loc = out[:, start : start + size].reshape(-1, *shape)
            raw_scale = out[:, start + size : start + 2 * size].reshape(-1, *shape)
            start += 2 * size
            loc = loc + self._coupling(name, kind, values)
            # A floor on the scale keeps the log-density finite early in training.
            base: Any = dist.Normal(loc, torch.nn.functional.softplus(raw_scale) + 1e-4)
            if support is not constraints.real and support != constraints.real_vector:
                base = dist.TransformedDistribution(base, dist.transforms.biject_to(support))
            values[name] = (kind, pyro.sample(name, base.to_event(extra) if extra else base))


def _encode_observations(observed: Mapping[str, Tensor]) -> Tensor:
    """Concatenate predicted observations into features: one-hot or standardised, (N, D)."""
    columns = []
    for name, value in observed.items():
        v = value.reshape(value.shape[0], -1)
        if not v.is_floating_point():
            k = int(v.max()) + 1
            columns.append(torch.nn.functional.one_hot(v.long(), k).reshape(v.shape[0], -1))
        else:
            std = v.std(0, keepdim=True).clamp_min(1e-6)
            columns.append((v - v.mean(0, keepdim=True)) / std)
        if not torch.isfinite(columns[-1].double()).all():
            raise ValueError(
                f"AmortisedGuide: predicted observation {name!r} (shape {tuple(value.shape)}) "
                "is not finite; expected finite samples"
            )
    return torch.cat([c.to(torch.get_default_dtype()) for c in columns], dim=-1)


class AmortisedInfoGain(NamedTuple):
    """Outcome of :func:`amortised_info_gain`.

    Attributes
    ----------
    info_gain : Tensor, shape ()
        ``E_q(o)[KL[r(s | o) || p(s)]]``, the expected complexity (nats).
    expected_accuracy : Tensor, shape ()
        ``E_q(o) E_r[log p(o | s)]``.
    vfe_trace : Tensor, shape (n_steps,)
        Mean VFE per predicted observation during fitting.
    """

    info_gain: Tensor
    expected_accuracy: Tensor
    vfe_trace: Tensor


def amortised_info_gain(
    model: Model,
    policy: Tensor | None,
    *args: Any,
    obs_sites: Callable[[str], bool],
    action_site: str = ACTION_SITE,
    num_particles: int = 1000,
    num_steps: int = 500,
    lr: float = 0.01,
    seed: int | None = 0,
    guide_factory: Callable[..., Any] | None = None,
    max_plate_nesting: int | None = None,
    final_particles: int = 64,
    svi_particles: int = 8,
    **kwargs: Any,
) -> AmortisedInfoGain:
    """Expected information gain from an amortised posterior fitted by SVI to predicted outcomes.

    Draw ``num_particles`` joint samples of the model under the policy, condition the model on
    the sampled observations (vectorised over a particle plate) and fit an amortised guide
    ``r(s | o)`` by minimising the mean VFE over the batch. The expected complexity
    ``E_o[KL[r(s | o) || p(s)]]`` of the fitted guide estimates the epistemic value
    ``E_o[KL[p(s | o) || p(s)]] = I(s; o)`` (Friston et al., "Active inference and epistemic
    value", Cogn. Neurosci. 6(4), 2015, eq. 4); it is exact when the guide family holds the
    posterior. Discrete latent sites are enumerated in the guide (exact expectations);
    continuous ones are reparameterised.

    Parameters
    ----------
    model : callable
        Predictive Pyro program (as for :func:`aif.expected_free_energy.efe_mc`).
    policy : Tensor of int, shape (T, F), or None
    *args, **kwargs
        Passed to ``model``.
    obs_sites : callable
        Predicate on site names selecting the observation sites.
    action_site : str, default ``"u_{t}_{f}"``
    num_particles : int, default 1000
        Predicted observations the guide is fitted to.
    num_steps : int, default 500
        Adam steps.
    lr : float, default 0.01
    seed : int or None, default 0
    guide_factory : callable, optional
        ``guide_factory(latent_sites, observed)`` returning a guide module; default
        :class:`AmortisedGuide`.
    max_plate_nesting : int, optional
    final_particles : int, default 64
        Guide samples per predicted observation in the final complexity estimate (continuous
        latent sites only; discrete ones are summed exactly).
    svi_particles : int, default 8
        Guide samples per predicted observation and step while fitting continuous latent sites
        (reparameterised gradients; more samples, less gradient noise).

    Returns
    -------
    AmortisedInfoGain
    """
    program = model if policy is None else condition_on_policy(policy, action_site)(model)
    with seeded(seed), warnings.catch_warnings():
        mpn = (
            plate_nesting(program, args=args, kwargs=kwargs)
            if max_plate_nesting is None
            else max_plate_nesting
        )
        particle_dim = -(mpn + 1)
        plate_name = "_ig_particles"
        batched = pyro.plate(plate_name, num_particles, dim=particle_dim)(program)
        with hidden_sites():
            trace = poutine.trace(batched).get_trace(*args, **kwargs)
        observed: dict[str, Tensor] = {}
        latent: dict[str, Any] = {}
        nodes: dict[str, Any] = trace.nodes
        for name, site in nodes.items():
            if (
                site["type"] != "sample"
                or site["is_observed"]
                or site_is_subsample(site)
                or is_preference_site(name)
            ):
                continue
            value = site["value"]
            n_event = len(site["fn"].event_shape)
            # Pad to the full plate depth so the particle dim is the leading one.
            while value.dim() < mpn + 1 + n_event:
                value = value.unsqueeze(0)
            if obs_sites(name):
                observed[name] = value
            else:
                latent[name] = dict(site, value=value)
        if not observed or not latent:
            raise ValueError(
                f"amortised_info_gain: found {len(observed)} observation and {len(latent)} "
                "latent sites; expected at least one of each"
            )
        conditioned = poutine.condition(batched, data={k: nodes[k]["value"] for k in observed})
        module = (guide_factory or AmortisedGuide)(latent, observed)

        def guide(*_: Any, **__: Any) -> None:
            with pyro.plate(plate_name, num_particles, dim=particle_dim):
                module()

        discrete = all(getattr(s["fn"], "has_enumerate_support", False) for s in latent.values())
        method: Literal["exact", "mc"] = "exact" if discrete else "mc"
        if discrete:
            elbo: Any = TraceEnum_ELBO(max_plate_nesting=mpn + 1)
            fit_guide = config_enumerate(guide, "parallel")
        else:
            elbo = Trace_ELBO(
                num_particles=svi_particles,
                vectorize_particles=svi_particles > 1,
                max_plate_nesting=mpn + 1,
            )
            fit_guide = guide
        optimiser = torch.optim.Adam(module.parameters(), lr=lr)
        values = []
        # The particle plate of the guide is matched by the model's; Pyro's check misreads the
        # model's plate site as observed once the model is conditioned, so its warning is noise.
        warnings.filterwarnings("ignore", message="Found plate statements in guide but not model")
        for step in range(num_steps):
            # Decay to a tenth of ``lr`` so the Monte Carlo gradient noise settles at the end.
            for group in optimiser.param_groups:
                group["lr"] = lr * 0.1 ** (step / max(1, num_steps - 1))
            optimiser.zero_grad()
            loss = elbo.differentiable_loss(conditioned, fit_guide, *args, **kwargs) / num_particles
            if not torch.isfinite(loss):
                raise NonFiniteFreeEnergyError(
                    f"amortised_info_gain: the mean free energy is {float(loss)} at step {step}; "
                    "expected finite values (lower lr or check the model's supports)",
                    step,
                    _locate_non_finite(conditioned, guide, args, kwargs),
                )
            loss.backward()
            optimiser.step()
            values.append(float(loss.detach()))
        parts = vfe(
            conditioned,
            guide,
            *args,
            method=method,
            num_particles=final_particles,
            seed=None,
            max_plate_nesting=mpn + 1,
            **kwargs,
        )
    return AmortisedInfoGain(
        (parts.complexity / num_particles).detach(),
        (parts.accuracy / num_particles).detach(),
        torch.tensor(values, dtype=torch.float64),
    )
