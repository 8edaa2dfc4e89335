"""Expected free energy of any Pyro predictive model, estimated from samples, with its parts.

``efe_mc`` scores policies by sampling predicted states and outcomes under each policy; its
information gain is a mixture entropy or an amortised posterior fitted by SVI (:mod:`aif.inference`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from aif.free_energy import hidden_sites, plate_nesting, seeded
from aif.handlers import (
    ACTION_SITE,
    OBS_SITE,
    add_preferences,
    condition_on_policy,
    is_preference_site,
    parse_site,
)
from aif.inference import amortised_info_gain
from aif.maths import entropy
from aif.planning import EFEResult

__all__ = ["MAX_JOINT_OUTCOMES", "MCEFEDetail", "efe_mc", "efe_mc_detail"]

Model = Callable[..., Any]
SiteSelector = str | Sequence[str] | Callable[[str], bool]


#: Largest joint outcome space (per time step) summed exactly; larger groups use nested MC.
MAX_JOINT_OUTCOMES = 4096
#: Rows of the nested Monte Carlo likelihood matrix evaluated at once (memory ~ rows * N).
_CROSS_BLOCK = 512


def _selector(obs_sites: SiteSelector) -> Callable[[str], bool]:
    if callable(obs_sites):
        return obs_sites
    if isinstance(obs_sites, str):
        pattern = obs_sites
        return lambda name: parse_site(name, pattern) is not None
    names = set(obs_sites)
    return lambda name: name in names


class MCEFEDetail(NamedTuple):
    """Monte Carlo EFE terms of one policy, per group of observation sites (nats).

    A group is one time step (all modalities observed together) when outcomes are scored
    jointly, otherwise one site.

    Attributes
    ----------
    groups : list of str
        Group labels (``"t=0"``, ... or site names), in the order the model samples them.
    pragmatic_value, predictive_entropy, ambiguity, state_info_gain : Tensor, shape (n_groups,)
        ``E_q(o)[log C(o)]``, ``H[q(o)]``, ``E_q(s)[H[p(o | s)]]`` and
        ``H[q(o)] - E_q(s)[H[p(o | s)]]`` per group.
    """

    groups: list[str]
    pragmatic_value: Tensor
    predictive_entropy: Tensor
    ambiguity: Tensor
    state_info_gain: Tensor


def _particles_first(x: Tensor, particle_dim: int) -> Tensor:
    """Move the particle dim of a batch-shaped tensor to the front; flatten the rest: (N, V)."""
    while x.dim() < -particle_dim:
        x = x.unsqueeze(0)
    x = x.movedim(particle_dim, 0)
    return x.reshape(x.shape[0], -1)


class _ObsSite:
    """What the estimator needs from one sampled observation site."""

    def __init__(self, site: dict, particle_dim: int, num_particles: int) -> None:
        self.name: str = site["name"]
        self.fn = site["fn"]
        self.value: Tensor = site["value"]
        self.particle_dim = particle_dim
        self.num_particles = num_particles
        self.n_event = len(self.fn.event_shape)
        self.discrete = bool(getattr(self.fn, "has_enumerate_support", False)) and self.n_event == 0
        self.lik: Tensor | None = None  # (N, V, K): p(o = k | s_i) for each variable v
        self.support: Tensor | None = None
        if self.discrete:
            support = self.fn.enumerate_support(expand=False)  # (K, 1, ..., 1)
            log_lik = self.fn.log_prob(support)  # (K, *batch)
            self.support = support.reshape(-1)
            self.lik = torch.stack(
                [_particles_first(log_lik[k].exp(), particle_dim) for k in range(log_lik.shape[0])],
                dim=-1,
            )

    @property
    def num_joint_outcomes(self) -> float:
        if self.lik is None:
            return math.inf
        return float(self.lik.shape[-1]) ** self.lik.shape[1]

    def ambiguity(self) -> Tensor:
        """``E_q(s)[H[p(o | s)]]`` summed over the site's variables, shape ()."""
        if self.lik is not None:
            return entropy(self.lik, dim=-1).sum(-1).mean()
        try:
            ent = self.fn.entropy()
        except (NotImplementedError, AttributeError):
            # Unbiased fallback: E_s E_{o|s}[-log p(o | s)] at the sampled outcomes.
            ent = -self.fn.log_prob(self.value)
        return _particles_first(ent, self.particle_dim).sum(-1).mean()

    def cross_log_lik(self, start: int, stop: int) -> Tensor:
        """``L[i, j] = log p(o_i | s_j)`` for samples ``start <= i < stop``, shape (stop - start, N).

        Summed over the site's variables. Rows come in blocks so memory stays bounded.
        """
        pos = self.value.dim() - self.n_event + self.particle_dim  # particle dim, non-negative
        rows = self.value.narrow(pos, start, stop - start)
        # Put sample i's outcome on a new leading dim and leave a singleton where particle j's
        # likelihood parameters broadcast.
        crossed = rows.unsqueeze(0).transpose(0, pos + 1)
        cross = self.fn.log_prob(crossed)  # (rows, ..., N_j at pos + 1, ...)
        cross = cross.movedim(pos + 1, 1)
        return cross.reshape(cross.shape[0], cross.shape[1], -1).sum(-1)

    def pragmatic(self, pref_fn: Callable | None) -> Tensor:
        """``E_q(o)[log C(o)]`` summed over variables; exact over outcomes when discrete."""
        if pref_fn is None:
            return torch.zeros(())
        if self.lik is not None and self.support is not None:
            log_c = pref_fn(self.name, self.support)
            if log_c is None:
                return torch.zeros(())
            q_o = self.lik.mean(0)  # (V, K)
            return (q_o * torch.as_tensor(log_c, dtype=q_o.dtype).reshape(1, -1)).sum()
        log_c = pref_fn(self.name, self.value)
        if log_c is None:
            return torch.zeros(())
        return _particles_first(torch.as_tensor(log_c), self.particle_dim).sum(-1).mean()


def _group_entropy(sites: list[_ObsSite], num_particles: int) -> Tensor:
    """Entropy of the joint predictive ``q(o_group)``, the mixture over particles."""
    joint_size = math.prod(s.num_joint_outcomes for s in sites)
    if joint_size <= MAX_JOINT_OUTCOMES:
        # Joint likelihood of every outcome combination per particle, then the mixture.
        joint: Tensor | None = None
        for s in sites:
            assert s.lik is not None
            for v in range(s.lik.shape[1]):
                part = s.lik[:, v, :]
                joint = part if joint is None else (joint.unsqueeze(-1) * part.unsqueeze(1))
                joint = joint.reshape(num_particles, -1)
        assert joint is not None
        return entropy(joint.mean(0), dim=-1)
    # Nested Monte Carlo: log q(o_i) ~= log (1/N) sum_j p(o_i | s_j); bias O(1/N).
    log_q = []
    for start in range(0, num_particles, _CROSS_BLOCK):
        stop = min(num_particles, start + _CROSS_BLOCK)
        cross = torch.stack([s.cross_log_lik(start, stop) for s in sites]).sum(0)
        log_q.append(torch.logsumexp(cross, dim=1) - math.log(num_particles))
    return -torch.cat(log_q).mean()


def _first_time(
    nodes: dict[str, Any], obs_sites: SiteSelector, is_obs: Callable[[str], bool]
) -> int:
    """Smallest time index ``t`` among the sampled observation sites (0 without a ``{t}`` field)."""
    if not isinstance(obs_sites, str) or "{t}" not in obs_sites:
        return 0
    times = []
    for name, site in nodes.items():
        if site["type"] == "sample" and is_obs(name) and not is_preference_site(name):
            fields = parse_site(name, obs_sites) or {}
            if "t" in fields:
                times.append(fields["t"])
    return min(times) if times else 0


def efe_mc_detail(
    model: Model,
    policy: Tensor | None,
    *args: Any,
    log_C: Any = None,
    obs_sites: SiteSelector = OBS_SITE,
    action_site: str = ACTION_SITE,
    joint_outcomes: bool = True,
    num_particles: int = 1000,
    seed: int | None = 0,
    max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> MCEFEDetail:
    """Monte Carlo EFE terms of one policy, per time step or per site (see :func:`efe_mc`).

    Returns
    -------
    MCEFEDetail
        Tensors of shape (n_groups,).
    """
    if num_particles < 2:
        raise ValueError(f"efe_mc: num_particles={num_particles}; expected >= 2")
    is_obs = _selector(obs_sites)
    with seeded(seed):
        mpn = (
            plate_nesting(model, args=args, kwargs=kwargs)
            if max_plate_nesting is None
            else max_plate_nesting
        )
        particle_dim = -(mpn + 1)
        program = pyro.plate("_efe_particles", num_particles, dim=particle_dim)(model)
        if policy is not None:
            program = condition_on_policy(policy, action_site=action_site)(program)
        with hidden_sites():
            trace = poutine.trace(program).get_trace(*args, **kwargs)
    groups: dict[str, list[_ObsSite]] = {}
    nodes: dict[str, Any] = trace.nodes
    pref_fn = None
    if log_C is not None:
        # Column k of a time-indexed C scores the k-th future step: count from the first
        # observation time the predictive model samples.
        first = _first_time(nodes, obs_sites, is_obs)
        pref_fn = add_preferences(log_C, first_step=first)._fn
    for name, site in nodes.items():
        if (
            site["type"] != "sample"
            or site_is_subsample(site)
            or is_preference_site(name)
            or not is_obs(name)
        ):
            continue
        if site["is_observed"]:
            raise ValueError(
                f"efe_mc: observation site {name!r} is observed (value of shape "
                f"{tuple(site['value'].shape)}); expected the predictive model to sample it "
                "(pass obs=None for future steps)"
            )
        key = name
        if joint_outcomes and isinstance(obs_sites, str):
            fields = parse_site(name, obs_sites) or {}
            if "t" in fields:
                key = f"t={fields['t']}"
        groups.setdefault(key, []).append(_ObsSite(site, particle_dim, num_particles))
    if not groups:
        raise ValueError(
            f"efe_mc: no sample site of the model matches obs_sites={obs_sites!r}; expected the "
            "predictive model to sample its future observations"
        )
    prag, pent, amb = [], [], []
    for sites in groups.values():
        prag.append(torch.stack([s.pragmatic(pref_fn) for s in sites]).sum())
        pent.append(_group_entropy(sites, num_particles))
        amb.append(torch.stack([s.ambiguity() for s in sites]).sum())
    pragmatic, pred_entropy, ambiguity = torch.stack(prag), torch.stack(pent), torch.stack(amb)
    return MCEFEDetail(list(groups), pragmatic, pred_entropy, ambiguity, pred_entropy - ambiguity)


def efe_mc(
    model: Model,
    policies: Tensor | Sequence[Any] | None,
    *args: Any,
    log_C: Any = None,
    obs_sites: SiteSelector = OBS_SITE,
    action_site: str = ACTION_SITE,
    joint_outcomes: bool = True,
    num_particles: int = 1000,
    seed: int | None = 0,
    info_gain: Literal["mixture", "svi"] = "mixture",
    use_utility: bool = True,
    use_states_info_gain: bool = True,
    svi_steps: int = 300,
    svi_lr: float = 0.02,
    amortised_guide: Callable[..., Any] | None = None,
    max_plate_nesting: int | None = None,
    **kwargs: Any,
) -> EFEResult:
    """Expected free energy per policy, estimated from samples of a Pyro predictive model.

    For each policy ``pi`` the model runs under :class:`aif.handlers.condition_on_policy`,
    vectorised over ``num_particles`` joint samples of future states and observations. Per time
    step (all modalities together; per site with ``joint_outcomes=False``), summed over steps:

    * pragmatic value ``E_q(o|pi)[log C(o)]``;
    * ambiguity ``E_q(s|pi)[H[p(o | s)]]``, from each sample's likelihood entropy;
    * predictive entropy ``H[q(o | pi)]`` of the mixture ``q(o | pi) = E_q(s|pi)[p(o | s)]``,
      summed exactly over outcomes when they are discrete and few (<= ``MAX_JOINT_OUTCOMES``),
      otherwise by nested Monte Carlo ``log q(o_i) ~= log (1/N) sum_j p(o_i | s_j)``;
    * state information gain ``H[q(o|pi)] - ambiguity``, the mutual information of predicted
      states and outcomes (Friston et al., "Active inference and epistemic value", Cogn.
      Neurosci. 6(4), 2015, eq. 4; Da Costa et al., J. Math. Psychol. 99, 2020, eq. 8);
    * risk ``-H[q(o|pi)] - pragmatic_value``, which is ``KL[q(o|pi) || C]`` when ``log C`` is
      normalised.

    With all terms on, ``efe = -pragmatic_value - state_info_gain = risk + ambiguity``. Switched
    off terms are left out of ``efe`` but still reported (as in
    :func:`aif.planning.efe_categorical`). On a discrete model with ``log_C = log_softmax(C)``
    the estimate converges to ``efe_categorical`` (``info_gain="joint"``; ``"per_modality"``
    with ``joint_outcomes=False``), with error ``O(num_particles ** -0.5)``.

    With ``info_gain="svi"`` the information gain is instead the expected complexity
    ``E_q(o|pi)[KL[r(s | o) || p(s | pi)]]`` of an amortised guide ``r`` fitted by SVI to the
    predicted observations (:func:`aif.inference.amortised_info_gain`), which needs no closed
    form posterior. When ``r`` is exact it is the mutual information of all latent sites and
    all predicted observations; for one-step policies that is the per-step value above.

    Parameters
    ----------
    model : callable
        Predictive Pyro program sampling states and observation sites forward in time; its
        control sites (``action_site``) are set per policy.
    policies : Tensor of int, shape (n_policies, T, F), or None
        Control indices per policy (pymdp layout); ``None`` evaluates the model as it is.
    *args, **kwargs
        Passed to ``model``.
    log_C : optional
        Log-preferences in any form :class:`aif.handlers.add_preferences` accepts; ``None``
        gives zero pragmatic value. Column ``k`` of a time-indexed table scores the ``k``-th
        future step: the first observation time the model samples is step 0 (as in
        :func:`aif.planning.efe_categorical` and pymdp).
    obs_sites : str, sequence of str or callable, default ``"o_{t}_{m}"``
        Which sample sites are observations (a pattern, names, or a predicate). Only a pattern
        with a ``{t}`` field groups sites into time steps.
    action_site : str, default ``"u_{t}_{f}"``
    joint_outcomes : bool, default True
        Score the outcomes of one time step jointly (exact mutual information) or per site.
    num_particles : int, default 1000
    seed : int or None, default 0
        Seed; policy ``i`` uses ``seed + i``. The caller's RNG state is restored.
    info_gain : {"mixture", "svi"}, default "mixture"
    use_utility, use_states_info_gain : bool, default True
        Which terms enter ``efe`` (pymdp's ``use_utility`` and ``use_states_info_gain``).
    svi_steps, svi_lr : int, float
        Budget of the amortised guide for ``info_gain="svi"``.
    amortised_guide : callable, optional
        Factory ``(sites) -> guide`` for ``info_gain="svi"``; default
        :class:`aif.inference.AmortisedGuide`.
    max_plate_nesting : int, optional
        Plates used by ``model``; guessed from a trace when omitted.

    Returns
    -------
    EFEResult
        ``efe, risk, ambiguity, pragmatic_value, state_info_gain, novelty``, each of shape
        (n_policies,) (``(1,)`` when ``policies`` is None). ``novelty`` is zero here: the
        parameter information gain of Dirichlet models is the closed form of
        :func:`aif.planning.efe_categorical`.
    """
    if info_gain not in ("mixture", "svi"):
        raise ValueError(f"efe_mc: info_gain={info_gain!r}; expected 'mixture' or 'svi'")
    if policies is None:
        policy_list: list[Tensor | None] = [None]
    else:
        pol = torch.as_tensor(policies)
        if pol.dim() == 2:
            pol = pol.unsqueeze(-1)
        if pol.dim() != 3:
            raise ValueError(
                f"efe_mc: policies have shape {tuple(pol.shape)}; expected (n_policies, T, F)"
            )
        policy_list = list(pol)
    rows = []
    for i, policy in enumerate(policy_list):
        policy_seed = None if seed is None else seed + i
        detail = efe_mc_detail(
            model,
            policy,
            *args,
            log_C=log_C,
            obs_sites=obs_sites,
            action_site=action_site,
            joint_outcomes=joint_outcomes,
            num_particles=num_particles,
            seed=policy_seed,
            max_plate_nesting=max_plate_nesting,
            **kwargs,
        )
        pragmatic = detail.pragmatic_value.sum()
        pred_entropy = detail.predictive_entropy.sum()
        ambiguity = detail.ambiguity.sum()
        if info_gain == "svi":
            ig = amortised_info_gain(
                model,
                policy,
                *args,
                obs_sites=_selector(obs_sites),
                action_site=action_site,
                num_particles=num_particles,
                num_steps=svi_steps,
                lr=svi_lr,
                seed=policy_seed,
                guide_factory=amortised_guide,
                max_plate_nesting=max_plate_nesting,
                **kwargs,
            ).info_gain
        else:
            ig = pred_entropy - ambiguity
        risk = -(ig + ambiguity) - pragmatic
        efe = torch.zeros_like(pragmatic)
        if use_utility:
            efe = efe - pragmatic
        if use_states_info_gain:
            efe = efe - ig
        rows.append(torch.stack([efe, risk, ambiguity, pragmatic, ig]))
    table = torch.stack(rows).detach()
    zeros = torch.zeros(table.shape[0], dtype=table.dtype)
    return EFEResult(table[:, 0], table[:, 1], table[:, 2], table[:, 3], table[:, 4], zeros)
