"""Fitting active-inference agents to recorded behaviour: agent parameters from actions, in Pyro.

The likelihood of a subject's actions is the engine's own perceive-plan-act loop (belief updating,
:func:`aif.planning.efe_categorical`, ``q(pi) = softmax(-gamma * efe + log E)``, action probabilities)
run inside a Pyro model, so parameters are inferred by SVI or NUTS; a conditional-logit fitter
covers agents whose per-decision candidate scores are given as data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import arviz_base
import numpy as np
import pyro
import pyro.distributions as dist
import torch
import xarray as xr
from pyro import poutine
from pyro.infer import MCMC, NUTS, SVI, Trace_ELBO
from pyro.infer.autoguide import AutoMultivariateNormal, AutoNormal, init_to_median
from pyro.optim import ClippedAdam
from torch import Tensor

from aif.discrete_agent import CategoricalModel
from aif.exact import (
    infer_states_fpi,
    joint_from_marginals,
    log_likelihood_batch,
    marginals_from_joint,
    predict_states_batch,
)
from aif.learning import dirichlet_mean, update_pA, update_pB
from aif.maths import log_softmax, stable_log
from aif.planning import action_marginals, efe_categorical, policy_posterior
from aif.sequence import joint_transition, smooth_states

__all__ = [
    "ActionLikelihood",
    "AgentParameters",
    "AgentTemplate",
    "FitResult",
    "FreeParameter",
    "SubjectBatch",
    "SubjectData",
    "action_log_likelihood",
    "agent_model",
    "agent_parameters",
    "check_parameters",
    "choice_model",
    "fit_agent",
    "fit_choice_weights",
    "stack_subjects",
]

Target = Literal["gamma", "alpha", "lr_pA", "lr_pB", "C", "E", "pA", "pB"]
#: Targets whose value is positive: a log-normal prior (the prior's loc and scale are on log scale).
POSITIVE_TARGETS: frozenset[str] = frozenset({"gamma", "alpha", "lr_pA", "lr_pB", "pA", "pB"})
_TARGETS = ("gamma", "alpha", "lr_pA", "lr_pB", "C", "E", "pA", "pB")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SubjectData:
    """What one subject saw and did: trials of observations, the actions taken and which count.

    Each trial starts from the prior ``D``; learnt Dirichlet counts carry over from trial to trial.
    At step ``t`` the subject observes ``obs[k, t]``, decides, and takes ``actions[k, t]``, which
    moves the hidden state to step ``t + 1``. The last step's observation is used for belief
    updating and learning only.

    Parameters
    ----------
    obs : Tensor of int, shape (n_trials, n_steps, M)
        Outcome index of every modality at every step.
    actions : Tensor of int, shape (n_trials, n_steps - 1, F) or (n_trials, n_steps, F)
        Control of every factor taken after each observation. With ``n_steps - 1`` actions the
        last step has no decision.
    mask : Tensor of bool, shape (n_trials, n_steps), optional
        Which actions are the subject's decisions and enter the likelihood (a forced move still
        moves the state but is masked out). Default: every step that has an action.
    subject : str, default ""
        A label (the ``subject`` coordinate of fitted posteriors).

    Attributes
    ----------
    obs, actions, mask : Tensor
        Normalised to shapes (n_trials, n_steps, M), (n_trials, n_steps, F), (n_trials, n_steps).
    """

    obs: Tensor
    actions: Tensor
    mask: Tensor | None = None
    subject: str = ""

    def __post_init__(self) -> None:
        obs = torch.as_tensor(self.obs)
        actions = torch.as_tensor(self.actions)
        if obs.dim() != 3 or obs.is_floating_point() or obs.dtype == torch.bool:
            raise ValueError(
                f"SubjectData {self.subject!r}: obs has shape {tuple(obs.shape)} and dtype "
                f"{obs.dtype}; expected integer outcome indices of shape (n_trials, n_steps, M)"
            )
        K, T, _ = obs.shape
        if actions.dim() != 3 or actions.is_floating_point() or actions.dtype == torch.bool:
            raise ValueError(
                f"SubjectData {self.subject!r}: actions has shape {tuple(actions.shape)} and "
                f"dtype {actions.dtype}; expected integer controls of shape ({K}, {T - 1}, F) "
                f"or ({K}, {T}, F)"
            )
        if actions.shape[0] != K or actions.shape[1] not in (T - 1, T):
            raise ValueError(
                f"SubjectData {self.subject!r}: actions has shape {tuple(actions.shape)} for obs "
                f"of shape {tuple(obs.shape)}; expected ({K}, {T - 1}, F) or ({K}, {T}, F)"
            )
        if K < 1 or T < 1:
            raise ValueError(
                f"SubjectData {self.subject!r}: obs has shape {tuple(obs.shape)}; expected at "
                "least one trial and one step"
            )
        short = actions.shape[1] == T - 1
        if short:
            pad = torch.zeros(K, 1, actions.shape[2], dtype=actions.dtype, device=actions.device)
            actions = torch.cat([actions, pad], dim=1)
        if self.mask is None:
            mask = torch.ones(K, T, dtype=torch.bool, device=obs.device)
            if short:
                mask[:, -1] = False
        else:
            mask = torch.as_tensor(self.mask)
            if tuple(mask.shape) != (K, T):
                raise ValueError(
                    f"SubjectData {self.subject!r}: mask has shape {tuple(mask.shape)}; "
                    f"expected ({K}, {T}) (one entry per trial and step)"
                )
            mask = mask.to(torch.bool)
            if short and bool(mask[:, -1].any()):
                raise ValueError(
                    f"SubjectData {self.subject!r}: mask marks a decision at the last step, but "
                    f"actions has {T - 1} steps for {T} observations; expected mask[:, -1] False"
                )
        object.__setattr__(self, "obs", obs.long())
        object.__setattr__(self, "actions", actions.long())
        object.__setattr__(self, "mask", mask)

    @property
    def n_trials(self) -> int:
        """Number of trials."""
        return int(self.obs.shape[0])

    @property
    def n_steps(self) -> int:
        """Observations per trial."""
        return int(self.obs.shape[1])

    @property
    def n_decisions(self) -> int:
        """Actions that enter the likelihood."""
        assert self.mask is not None
        return int(self.mask.sum())


class SubjectBatch(NamedTuple):
    """Subjects stacked along a leading axis (:func:`stack_subjects`).

    Attributes
    ----------
    obs : Tensor of int64, shape (n_subjects, n_trials, n_steps, M)
    actions : Tensor of int64, shape (n_subjects, n_trials, n_steps, F)
    mask : Tensor of bool, shape (n_subjects, n_trials, n_steps)
        Trials added to even out the trial counts are masked out entirely.
    subjects : list of str
    n_trials : list of int
        Recorded trials of each subject.
    """

    obs: Tensor
    actions: Tensor
    mask: Tensor
    subjects: list[str]
    n_trials: list[int]

    @property
    def n_subjects(self) -> int:
        """Number of subjects."""
        return int(self.obs.shape[0])

    def to(self, device: torch.device | str) -> SubjectBatch:
        """The same batch on ``device``."""
        return self._replace(
            obs=self.obs.to(device), actions=self.actions.to(device), mask=self.mask.to(device)
        )


def stack_subjects(subjects: Sequence[SubjectData] | SubjectData) -> SubjectBatch:
    """Stack subjects into one batch; shorter records are padded with masked-out trials.

    Padding repeats a subject's last trial after its recorded ones, so nothing it learnt during
    the recorded trials changes and the padding adds nothing to the likelihood.

    Parameters
    ----------
    subjects : SubjectData or sequence of SubjectData
        Same number of steps per trial, modalities and factors; any number of trials.

    Returns
    -------
    SubjectBatch
    """
    items = [subjects] if isinstance(subjects, SubjectData) else list(subjects)
    if not items:
        raise ValueError("stack_subjects: got no subjects; expected at least one SubjectData")
    first = items[0]
    T, M, F = first.n_steps, int(first.obs.shape[2]), int(first.actions.shape[2])
    for i, s in enumerate(items):
        if (s.n_steps, int(s.obs.shape[2]), int(s.actions.shape[2])) != (T, M, F):
            raise ValueError(
                f"stack_subjects: subject {i} ({s.subject!r}) has obs {tuple(s.obs.shape)} and "
                f"actions {tuple(s.actions.shape)}; expected {T} steps, {M} modalities and {F} "
                f"factors like subject 0"
            )
    K = max(s.n_trials for s in items)
    obs, actions, masks = [], [], []
    for s in items:
        assert s.mask is not None
        extra = K - s.n_trials
        o, a, m = s.obs, s.actions, s.mask
        if extra:
            o = torch.cat([o, o[-1:].expand(extra, -1, -1)])
            a = torch.cat([a, a[-1:].expand(extra, -1, -1)])
            m = torch.cat([m, torch.zeros(extra, T, dtype=torch.bool, device=m.device)])
        obs.append(o)
        actions.append(a)
        masks.append(m)
    labels = [s.subject if s.subject else str(i) for i, s in enumerate(items)]
    if len(set(labels)) != len(labels):
        raise ValueError(
            f"stack_subjects: subject labels {labels} repeat; expected distinct labels"
        )
    return SubjectBatch(
        torch.stack(obs),
        torch.stack(actions),
        torch.stack(masks),
        labels,
        [s.n_trials for s in items],
    )


# --------------------------------------------------------------------------------------------
# The agent: fixed parts and fitted parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentTemplate:
    """The fixed parts of a subject's agent: its generative model and how it plans and acts.

    It mirrors :class:`aif.discrete_agent.DiscreteAgent` with stochastic action selection; the
    fitted parameters (:class:`FreeParameter`) change a copy of it per subject.

    Parameters
    ----------
    A, B : list of Tensor
        ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1]), ``B[f]`` shape (n_s[f], n_s[f], n_u[f]).
    C : list of Tensor
        ``C[m]`` shape (n_o[m],) or (n_o[m], T): log-preferences (normalised by ``log_softmax``).
    D : list of Tensor
        ``D[f]`` shape (n_s[f],).
    policies : Tensor of int, shape (n_policies, policy_len, F)
    E : Tensor, shape (n_policies,), optional
        Prior over policies; uniform when omitted.
    pA, pB : list of Tensor, optional
        Dirichlet concentrations (learning, novelty, or the base of fitted prior counts).
    inference : {"fpi", "exact"}, default "fpi"
        As in :class:`~aif.discrete_agent.DiscreteAgent`.
    num_iter : int, default 16
    gamma, alpha : float, default 16.0
        Policy and action precision when not fitted.
    sampling : {"full", "marginal"}, default "full"
        Actions from ``softmax(alpha * log q(pi))`` over whole policies (first step), or per
        factor from ``softmax(alpha * log q(u_f))`` of the control marginals (as
        :func:`aif.planning.select_action` draws them).
    learn_A, learn_B : bool, default False
    lr_pA, lr_pB : float, default 1.0
        Learning rates when not fitted.
    use_utility, use_states_info_gain, use_param_info_gain : bool
    info_gain : {"joint", "per_modality"}, default "joint"
    novelty_form : {"exact", "spm"}, default "exact"
    """

    A: list[Tensor]
    B: list[Tensor]
    C: list[Tensor]
    D: list[Tensor]
    policies: Tensor
    E: Tensor | None = None
    pA: list[Tensor] | None = None
    pB: list[Tensor] | None = None
    inference: Literal["fpi", "exact"] = "fpi"
    num_iter: int = 16
    gamma: float = 16.0
    alpha: float = 16.0
    sampling: Literal["full", "marginal"] = "full"
    learn_A: bool = False
    learn_B: bool = False
    lr_pA: float = 1.0
    lr_pB: float = 1.0
    use_utility: bool = True
    use_states_info_gain: bool = True
    use_param_info_gain: bool = False
    info_gain: Literal["joint", "per_modality"] = "joint"
    novelty_form: Literal["exact", "spm"] = "exact"

    def __post_init__(self) -> None:
        if self.inference not in ("fpi", "exact"):
            raise ValueError(
                f"AgentTemplate: inference={self.inference!r}; expected 'fpi' or 'exact' "
                "(the filtering paths of DiscreteAgent)"
            )
        if self.sampling not in ("full", "marginal"):
            raise ValueError(
                f"AgentTemplate: sampling={self.sampling!r}; expected 'full' or 'marginal'"
            )
        if self.learn_A and self.pA is None:
            raise ValueError("AgentTemplate: learn_A=True needs pA; got pA=None")
        if self.learn_B and self.pB is None:
            raise ValueError("AgentTemplate: learn_B=True needs pB; got pB=None")
        if self.use_param_info_gain and self.pA is None and self.pB is None:
            raise ValueError("AgentTemplate: use_param_info_gain=True needs pA or pB; got neither")
        if len(self.C) != len(self.A) or len(self.D) != len(self.B):
            raise ValueError(
                f"AgentTemplate: {len(self.C)} C and {len(self.D)} D for {len(self.A)} A and "
                f"{len(self.B)} B; expected one C per modality and one D per factor"
            )
        pol = torch.as_tensor(self.policies)
        if pol.dim() != 3 or pol.shape[2] != len(self.B):
            raise ValueError(
                f"AgentTemplate: policies have shape {tuple(pol.shape)}; expected (n_policies, "
                f"policy_len, {len(self.B)})"
            )
        if self.E is not None and tuple(self.E.shape) != (int(pol.shape[0]),):
            raise ValueError(
                f"AgentTemplate: E has shape {tuple(self.E.shape)}; expected ({int(pol.shape[0])},)"
            )
        object.__setattr__(self, "policies", pol.long().to(self.A[0].device))

    @classmethod
    def from_model(cls, model: CategoricalModel, **settings: Any) -> AgentTemplate:
        """Template from a model such as :class:`generative_models.categorical.CategoricalPOMDP`.

        Parameters
        ----------
        model : CategoricalModel
            Read: ``A``, ``B``, ``C``, ``D``, ``E``, ``policies``, ``pA``, ``pB``.
        **settings
            Any other field of :class:`AgentTemplate` (``inference``, ``gamma``, ...).

        Returns
        -------
        AgentTemplate
        """
        if model.policies is None:
            raise ValueError("AgentTemplate.from_model: the model has no policies")
        dtype = model.dtype
        A = [a.to(dtype) for a in model.A]
        C = (
            [c.to(dtype) for c in model.C]
            if model.C is not None
            else [torch.zeros(int(a.shape[0]), dtype=dtype, device=a.device) for a in A]
        )
        D = (
            [d.to(dtype) for d in model.D]
            if model.D is not None
            else [
                torch.full((int(b.shape[0]),), 1.0 / int(b.shape[0]), dtype=dtype) for b in model.B
            ]
        )
        return cls(
            A=A,
            B=[b.to(dtype) for b in model.B],
            C=C,
            D=D,
            policies=model.policies,
            E=None if model.E is None else model.E.to(dtype),
            pA=None if model.pA is None else [p.to(dtype) for p in model.pA],
            pB=None if model.pB is None else [p.to(dtype) for p in model.pB],
            **settings,
        )

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> AgentTemplate:
        """The same template with every tensor on ``device`` in ``dtype``."""

        def move(xs: list[Tensor] | None) -> list[Tensor] | None:
            if xs is None:
                return None
            return [x.to(device=device, dtype=dtype or x.dtype) for x in xs]

        return replace(
            self,
            A=move(self.A) or [],
            B=move(self.B) or [],
            C=move(self.C) or [],
            D=move(self.D) or [],
            E=None if self.E is None else self.E.to(device=device, dtype=dtype or self.E.dtype),
            pA=move(self.pA),
            pB=move(self.pB),
            policies=self.policies.to(device or self.policies.device),
        )

    @property
    def num_controls(self) -> list[int]:
        """Controls per factor, ``n_u[f]``."""
        return [int(b.shape[-1]) for b in self.B]

    @property
    def num_policies(self) -> int:
        """Number of policies."""
        return int(self.policies.shape[0])

    @property
    def dtype(self) -> torch.dtype:
        """Precision of the model tensors."""
        return self.A[0].dtype

    @property
    def device(self) -> torch.device:
        """Device of the model tensors."""
        return self.A[0].device


@dataclass(frozen=True)
class FreeParameter:
    """One fitted parameter of the agent: where it enters and its prior.

    A scalar per subject, ``value``, enters the agent through ``target``:

    ============  =========================================================  ===========
    target        effect on the subject's agent                              scale
    ============  =========================================================  ===========
    ``gamma``     policy precision ``gamma = value``                         log-normal
    ``alpha``     action precision ``alpha = value``                         log-normal
    ``lr_pA``     learning rate of ``pA``                                    log-normal
    ``lr_pB``     learning rate of ``pB``                                    log-normal
    ``C``         ``C[m] += value * direction[m]`` (preferences)             normal
    ``E``         ``log E += value * direction`` (habits)                    normal
    ``pA``        ``pA[m] += value * direction[m]`` (prior counts)           log-normal
    ``pB``        ``pB[f] += value * direction[f]`` (prior counts)           log-normal
    ============  =========================================================  ===========

    Without a hierarchy, ``value`` has the prior ``Normal(loc, scale)`` (normal scale) or
    ``LogNormal(loc, scale)`` (log-normal scale) independently per subject. With one, the
    population mean ``{name}_mu ~ Normal(loc, scale)`` and sd ``{name}_sigma ~
    HalfNormal(pop_scale)`` give each subject ``value = mu + sigma * z`` (or its exponential),
    ``z ~ Normal(0, 1)`` (non-centred, which suits NUTS).

    Parameters
    ----------
    name : str
        Site name and variable name of the posterior (e.g. ``"gamma"``, ``"reward_pref"``).
    target : {"gamma", "alpha", "lr_pA", "lr_pB", "C", "E", "pA", "pB"}
    loc, scale : float
        Prior of the value, on log scale for the positive targets.
    direction : list of Tensor or Tensor, optional
        Required for ``C`` (shaped like the template's ``C``), ``E`` (shape (n_policies,)),
        ``pA`` and ``pB`` (shaped like the template's ``pA``/``pB``, non-negative).
    pop_scale : float, optional
        Scale of the half-normal prior of the population sd (default ``scale``).
    """

    name: str
    target: Target
    loc: float = 0.0
    scale: float = 1.0
    direction: list[Tensor] | Tensor | None = None
    pop_scale: float | None = None

    def __post_init__(self) -> None:
        if self.target not in _TARGETS:
            raise ValueError(
                f"FreeParameter {self.name!r}: target={self.target!r}; expected one of {_TARGETS}"
            )
        if not self.scale > 0:
            raise ValueError(f"FreeParameter {self.name!r}: scale={self.scale}; expected > 0")
        needs = self.target in ("C", "E", "pA", "pB")
        if needs and self.direction is None:
            raise ValueError(
                f"FreeParameter {self.name!r}: target {self.target!r} needs a direction; got None"
            )
        if not needs and self.direction is not None:
            raise ValueError(
                f"FreeParameter {self.name!r}: target {self.target!r} takes no direction"
            )

    @property
    def positive(self) -> bool:
        """Whether the value is positive (log-normal prior)."""
        return self.target in POSITIVE_TARGETS

    def constrain(self, unconstrained: Tensor) -> Tensor:
        """The value from its unconstrained form (``exp`` for positive targets)."""
        return unconstrained.exp() if self.positive else unconstrained


class AgentParameters(NamedTuple):
    """Every subject's agent parameters, with a leading subject axis.

    Attributes
    ----------
    gamma, alpha, lr_pA, lr_pB : Tensor, shape (n_subjects,)
    C : list of Tensor, ``C[m]`` shape (n_subjects, n_o[m]) or (n_subjects, n_o[m], T)
    log_E : Tensor, shape (n_subjects, n_policies)
    pA, pB : list of Tensor or None
        With a leading subject axis.
    A_from_pA, B_from_pB : bool
        Whether the initial ``A`` (``B``) is the Dirichlet mean of the subject's ``pA`` (``pB``),
        which is the case when prior counts are fitted.
    """

    gamma: Tensor
    alpha: Tensor
    lr_pA: Tensor
    lr_pB: Tensor
    C: list[Tensor]
    log_E: Tensor
    pA: list[Tensor] | None
    pB: list[Tensor] | None
    A_from_pA: bool = False
    B_from_pB: bool = False


def _directions(p: FreeParameter, like: Sequence[Tensor] | None, what: str) -> list[Tensor]:
    if like is None:
        raise ValueError(
            f"FreeParameter {p.name!r}: target {p.target!r} needs the template's {what}; it has none"
        )
    d = p.direction
    if isinstance(d, Tensor) or d is None or len(d) != len(like):
        raise ValueError(
            f"FreeParameter {p.name!r}: direction must be a list of {len(like)} tensors shaped "
            f"like the template's {what} {[tuple(x.shape) for x in like]}"
        )
    out = []
    for i, (x, ref) in enumerate(zip(d, like, strict=True)):
        x = torch.as_tensor(x, dtype=ref.dtype, device=ref.device)
        if tuple(x.shape) != tuple(ref.shape):
            raise ValueError(
                f"FreeParameter {p.name!r}: direction[{i}] has shape {tuple(x.shape)}; expected "
                f"{tuple(ref.shape)} like the template's {what}[{i}]"
            )
        if p.target in ("pA", "pB") and bool((x < 0).any()):
            raise ValueError(
                f"FreeParameter {p.name!r}: direction[{i}] has negative entries; prior counts "
                "need a non-negative direction"
            )
        out.append(x)
    return out


def check_parameters(template: AgentTemplate, parameters: Sequence[FreeParameter]) -> None:
    """Check names, targets and directions of fitted parameters against a template.

    Parameters
    ----------
    template : AgentTemplate
    parameters : sequence of FreeParameter
    """
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise ValueError(f"fit parameters {names} repeat a name; expected distinct names")
    for p in parameters:
        for suffix in ("_mu", "_sigma", "_z"):
            if p.name.endswith(suffix):
                raise ValueError(
                    f"FreeParameter {p.name!r}: names ending in {suffix!r} are reserved for the "
                    "population sites"
                )
        if p.target in ("gamma", "alpha", "lr_pA", "lr_pB"):
            if sum(q.target == p.target for q in parameters) > 1:
                raise ValueError(f"fit parameters: target {p.target!r} is fitted twice")
        if p.target == "lr_pA" and not template.learn_A:
            raise ValueError(f"FreeParameter {p.name!r}: lr_pA is fitted but learn_A=False")
        if p.target == "lr_pB" and not template.learn_B:
            raise ValueError(f"FreeParameter {p.name!r}: lr_pB is fitted but learn_B=False")
        if p.target == "C":
            _directions(p, template.C, "C")
        elif p.target == "pA":
            _directions(p, template.pA, "pA")
        elif p.target == "pB":
            _directions(p, template.pB, "pB")
        elif p.target == "E":
            d = torch.as_tensor(p.direction)
            if tuple(d.shape) != (template.num_policies,):
                raise ValueError(
                    f"FreeParameter {p.name!r}: direction has shape {tuple(d.shape)}; expected "
                    f"({template.num_policies},) (one entry per policy)"
                )


def agent_parameters(
    template: AgentTemplate,
    parameters: Sequence[FreeParameter],
    values: Mapping[str, Tensor],
    n_subjects: int,
) -> AgentParameters:
    """Every subject's agent parameters from the fitted values.

    Parameters
    ----------
    template : AgentTemplate
    parameters : sequence of FreeParameter
    values : mapping of str to Tensor
        ``values[p.name]`` of shape (n_subjects,), on the value's own (constrained) scale.
    n_subjects : int

    Returns
    -------
    AgentParameters
    """
    dtype, device = template.dtype, template.device
    S = int(n_subjects)

    def full(x: float) -> Tensor:
        return torch.full((S,), float(x), dtype=dtype, device=device)

    def per_subject(xs: Sequence[Tensor]) -> list[Tensor]:
        return [x.unsqueeze(0).expand(S, *x.shape) for x in xs]

    scalars = {
        "gamma": full(template.gamma),
        "alpha": full(template.alpha),
        "lr_pA": full(template.lr_pA),
        "lr_pB": full(template.lr_pB),
    }
    C = per_subject(template.C)
    E = (
        template.E
        if template.E is not None
        else torch.full(
            (template.num_policies,), 1.0 / template.num_policies, dtype=dtype, device=device
        )
    )
    log_E = stable_log(E).unsqueeze(0).expand(S, -1)
    pA = per_subject(template.pA) if template.pA is not None else None
    pB = per_subject(template.pB) if template.pB is not None else None
    A_from_pA = B_from_pB = False
    for p in parameters:
        if p.name not in values:
            raise ValueError(f"agent_parameters: no value for {p.name!r}; got {sorted(values)}")
        v = values[p.name].to(dtype=dtype, device=device)
        if tuple(v.shape) != (S,):
            raise ValueError(
                f"agent_parameters: {p.name!r} has shape {tuple(v.shape)}; expected ({S},)"
            )
        if p.target in scalars:
            scalars[p.target] = v
        elif p.target == "C":
            dirs = _directions(p, template.C, "C")
            C = [c + v.reshape(S, *([1] * d.dim())) * d for c, d in zip(C, dirs, strict=True)]
        elif p.target == "E":
            d = torch.as_tensor(p.direction, dtype=dtype, device=device)
            log_E = log_E + v[:, None] * d
        elif p.target == "pA":
            assert pA is not None
            dirs = _directions(p, template.pA, "pA")
            pA = [x + v.reshape(S, *([1] * d.dim())) * d for x, d in zip(pA, dirs, strict=True)]
            A_from_pA = True
        elif p.target == "pB":
            assert pB is not None
            dirs = _directions(p, template.pB, "pB")
            pB = [x + v.reshape(S, *([1] * d.dim())) * d for x, d in zip(pB, dirs, strict=True)]
            B_from_pB = True
    return AgentParameters(
        scalars["gamma"],
        scalars["alpha"],
        scalars["lr_pA"],
        scalars["lr_pB"],
        C,
        log_E,
        pA,
        pB,
        A_from_pA,
        B_from_pB,
    )


# --------------------------------------------------------------------------------------------
# The likelihood of recorded actions
# --------------------------------------------------------------------------------------------


class ActionLikelihood(NamedTuple):
    """Log-probability of every recorded decision under each subject's agent.

    Attributes
    ----------
    log_prob : Tensor, shape (n_subjects, n_trials, n_steps)
        ``log P(action)`` at every decision; zero where the mask is off.
    q_pi : Tensor, shape (n_subjects, n_trials, n_steps, n_policies) or None
        The policy posterior at every step with a decision (``return_q_pi=True``); zeros
        elsewhere.
    """

    log_prob: Tensor
    q_pi: Tensor | None


def _first_actions(template: AgentTemplate) -> Tensor:
    return template.policies[:, 0, :]


def _check_batch(template: AgentTemplate, batch: SubjectBatch) -> None:
    """Outcomes and controls in range; every decision is a first step of some policy."""
    num_obs = [int(a.shape[0]) for a in template.A]
    if batch.obs.shape[-1] != len(num_obs) or batch.actions.shape[-1] != len(template.B):
        raise ValueError(
            f"subjects have obs {tuple(batch.obs.shape)} and actions {tuple(batch.actions.shape)}; "
            f"expected {len(num_obs)} modalities and {len(template.B)} factors (the template's)"
        )
    for m, n in enumerate(num_obs):
        col = batch.obs[..., m]
        if int(col.min()) < 0 or int(col.max()) >= n:
            s = int(((col < 0) | (col >= n)).flatten(1).any(1).nonzero()[0])
            raise ValueError(
                f"subject {batch.subjects[s]!r}: obs of modality {m} hold outcome "
                f"{int(col.max()) if int(col.max()) >= n else int(col.min())}; expected 0..{n - 1}"
            )
    for f, n in enumerate(template.num_controls):
        col = batch.actions[..., f]
        if int(col.min()) < 0 or int(col.max()) >= n:
            raise ValueError(
                f"actions of factor {f} hold control "
                f"{int(col.max()) if int(col.max()) >= n else int(col.min())}; expected 0..{n - 1}"
            )
    if template.sampling == "full":
        first = _first_actions(template).to(batch.actions.device)
        known = (batch.actions.unsqueeze(-2) == first).all(-1).any(-1)  # (S, K, T)
        bad = batch.mask & ~known
        if bool(bad.any()):
            s, k, t = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"subject {batch.subjects[s]!r}, trial {k}, step {t}: action "
                f"{batch.actions[s, k, t].tolist()} is not the first step of any policy; expected "
                "one of the template's policies' first steps"
            )


def _action_log_prob(
    q_pi: Tensor,
    action: Tensor,
    alpha: Tensor,
    template: AgentTemplate,
    match: Tensor | None = None,
) -> Tensor:
    """``log P(action)`` of stochastic selection from ``q_pi`` (batch, P) at precision alpha.

    ``match`` (batch, P): which policies start with ``action`` (computed when omitted).
    """
    if template.sampling == "full":
        log_p = log_softmax(alpha[:, None] * stable_log(q_pi), dim=-1)
        if match is None:
            match = (_first_actions(template).unsqueeze(0) == action.unsqueeze(1)).all(-1)
        return torch.logsumexp(log_p.masked_fill(~match, -math.inf), dim=-1)
    total = torch.zeros_like(alpha)
    margs = action_marginals(q_pi, template.policies, template.num_controls)
    for f, marg in enumerate(margs):
        if marg.shape[-1] > 1:
            log_p = log_softmax(alpha[:, None] * stable_log(marg), dim=-1)
            total = total + log_p.gather(-1, action[:, f : f + 1]).squeeze(-1)
    return total


def _safe_actions(template: AgentTemplate, batch: SubjectBatch) -> Tensor:
    """Recorded actions, with masked-out ones replaced by a valid first step (finite gradients)."""
    first = _first_actions(template)[0].to(batch.actions.device)
    return torch.where(batch.mask.unsqueeze(-1), batch.actions, first)


def action_log_likelihood(
    template: AgentTemplate,
    params: AgentParameters,
    batch: SubjectBatch,
    *,
    return_q_pi: bool = False,
) -> ActionLikelihood:
    """Log-probability of every recorded action, running each subject's agent through its data.

    Step by step, as :meth:`aif.discrete_agent.DiscreteAgent.step` does it (infer states, infer
    policies, learn, act, with the recorded action imposed), for all subjects at once:
    belief updating (:func:`aif.exact.infer_states_fpi`, or exact filtering of the joint state),
    :func:`aif.planning.efe_categorical`, :func:`aif.planning.policy_posterior`, Dirichlet
    learning (:func:`aif.learning.update_pA`, :func:`aif.learning.update_pB`) and the probability
    of the recorded action under stochastic selection. Every operation is differentiable in the
    parameters.

    Parameters
    ----------
    template : AgentTemplate
    params : AgentParameters
        From :func:`agent_parameters`, with ``n_subjects`` rows.
    batch : SubjectBatch
    return_q_pi : bool, default False
        Also return the policy posterior at every decision.

    Returns
    -------
    ActionLikelihood
    """
    S = int(batch.mask.shape[0])
    if int(params.gamma.shape[0]) != S:
        raise ValueError(
            f"action_log_likelihood: parameters for {int(params.gamma.shape[0])} subjects; "
            f"expected {S} (one per subject of the batch)"
        )
    # Many tiny contractions: opt_einsum's path search costs more than it saves here.
    with torch.backends.opt_einsum.flags(enabled=False):
        return _sequential_likelihood(template, params, batch, return_q_pi)


def _sequential_likelihood(
    template: AgentTemplate, params: AgentParameters, batch: SubjectBatch, return_q_pi: bool
) -> ActionLikelihood:
    S, K, T = (int(x) for x in batch.mask.shape)
    F = len(template.B)
    dtype, device = template.dtype, template.device
    actions = _safe_actions(template, batch)

    def expand(xs: Sequence[Tensor]) -> list[Tensor]:
        return [x.unsqueeze(0).expand(S, *x.shape) for x in xs]

    pA = params.pA
    pB = params.pB
    A = (
        [dirichlet_mean(p, dim=1) for p in pA]
        if params.A_from_pA and pA is not None
        else expand(template.A)
    )
    B = (
        [dirichlet_mean(p, dim=1) for p in pB]
        if params.B_from_pB and pB is not None
        else expand(template.B)
    )
    D = expand(template.D)
    lr_pA = params.lr_pA.reshape(S, *([1] * (template.A[0].dim())))
    lr_pB = params.lr_pB.reshape(S, 1, 1, 1)
    zeros_pA = [torch.zeros_like(p) for p in pA] if pA is not None else None
    zeros_pB = [torch.zeros_like(p) for p in pB] if pB is not None else None
    rows: list[Tensor] = []
    q_rows: list[Tensor] = []
    P = template.num_policies
    for k in range(K):
        qs: list[Tensor] = []
        joint: Tensor | None = None
        joint_prior: Tensor | None = None
        for t in range(T):
            cols = [batch.obs[:, k, t, m] for m in range(len(template.A))]
            prev_qs, prev_joint_prior = qs, joint_prior
            if template.inference == "fpi":
                prior = D if t == 0 else predict_states_batch(qs, B, actions[:, k, t - 1])
                qs = infer_states_fpi(A, cols, prior, template.num_iter)
            else:
                if t == 0 or joint is None:
                    joint_prior = joint_from_marginals(D)
                else:
                    M_t = joint_transition(B, actions[:, k, t - 1])
                    joint_prior = torch.bmm(M_t.to(dtype), joint.reshape(S, -1, 1)).reshape(
                        joint.shape
                    )
                ll = log_likelihood_batch(A, cols, F)
                log_joint = (ll + stable_log(joint_prior)).reshape(S, -1)
                joint = torch.softmax(log_joint, -1).reshape(joint_prior.shape)
                qs = marginals_from_joint(joint)
            decided = batch.mask[:, k, t]
            if bool(decided.any()):
                efe = efe_categorical(
                    qs,
                    A,
                    B,
                    params.C,
                    template.policies,
                    pA if template.use_param_info_gain else None,
                    pB if template.use_param_info_gain else None,
                    use_utility=template.use_utility,
                    use_states_info_gain=template.use_states_info_gain,
                    use_param_info_gain=template.use_param_info_gain,
                    info_gain=template.info_gain,
                    novelty_form=template.novelty_form,
                )
                q_pi = policy_posterior(params.gamma[:, None] * efe.efe, 1.0, params.log_E)
                lp = _action_log_prob(q_pi, actions[:, k, t], params.alpha, template)
                rows.append(torch.where(decided, lp, torch.zeros_like(lp)))
                if return_q_pi:
                    q_rows.append(q_pi)
            else:
                rows.append(torch.zeros(S, dtype=dtype, device=device))
                if return_q_pi:
                    q_rows.append(torch.zeros(S, P, dtype=dtype, device=device))
            # Learning uses this step's beliefs and the action that led here, as the agent does.
            if template.learn_A:
                assert pA is not None and zeros_pA is not None
                stat = update_pA(
                    zeros_pA, cols, qs, 1.0, joint=joint if template.inference == "exact" else None
                )
                pA = [p + lr_pA * s for p, s in zip(pA, stat, strict=True)]
                A = [dirichlet_mean(p, dim=1) for p in pA]
            if template.learn_B and t > 0:
                assert pB is not None and zeros_pB is not None
                pairwise = None
                if template.inference == "exact":
                    assert prev_joint_prior is not None
                    prev_cols = [batch.obs[:, k, t - 1, m] for m in range(len(template.A))]
                    pairwise = smooth_states(
                        A, B, prev_joint_prior, [prev_cols, cols], actions[:, k, t - 1].unsqueeze(0)
                    ).pairwise[0]
                stat = update_pB(
                    zeros_pB, qs, prev_qs, actions[:, k, t - 1], 1.0, pairwise=pairwise
                )
                pB = [p + lr_pB * s for p, s in zip(pB, stat, strict=True)]
                B = [dirichlet_mean(p, dim=1) for p in pB]
    log_prob = torch.stack(rows, dim=1).reshape(S, K, T)
    q_all = torch.stack(q_rows, dim=1).reshape(S, K, T, P) if return_q_pi else None
    return ActionLikelihood(log_prob, q_all)


def _beliefs_are_fixed(template: AgentTemplate, parameters: Sequence[FreeParameter]) -> bool:
    """Whether no fitted parameter changes what the agents believe (no learning, no prior counts)."""
    return not (
        template.learn_A or template.learn_B or any(p.target in ("pA", "pB") for p in parameters)
    )


def _batched_preference_offset(C: Sequence[Tensor], policy_len: int) -> Tensor:
    """:func:`aif.planning.preference_offset` for per-subject ``C[m]`` (S, n_o) or (S, n_o, T)."""
    total = torch.zeros(C[0].shape[0], dtype=C[0].dtype, device=C[0].device)
    for C_m in C:
        for t in range(policy_len):
            col = C_m if C_m.dim() == 2 else C_m[..., min(t, C_m.shape[-1] - 1)]
            total = total + torch.logsumexp(col, -1)
    return total


class _FixedBeliefLikelihood:
    """The likelihood when beliefs do not depend on the fitted parameters, with them computed once.

    Without learning and with the model's ``A``, ``B``, ``D`` fixed, every subject's beliefs
    follow from its observations and actions alone. They are computed once (the same loop as
    :func:`action_log_likelihood`), and so are the EFE parts of every decision
    (:func:`aif.planning.efe_categorical`, all decisions as one batch). The pragmatic value is
    linear in ``C`` up to :func:`aif.planning.preference_offset`, so each fitted direction of
    ``C`` costs one more EFE evaluation here and a weighted sum per model evaluation.
    """

    def __init__(
        self, template: AgentTemplate, parameters: Sequence[FreeParameter], batch: SubjectBatch
    ) -> None:
        self.template = template
        self.parameters = list(parameters)
        S, K, T = (int(x) for x in batch.mask.shape)
        self.shape = (S, K, T)
        dtype = template.dtype
        with torch.no_grad():
            beliefs = _beliefs(template, batch)  # per factor (S, K, T, n_s)
        idx = batch.mask.nonzero()  # (N, 3)
        self.index = idx
        self.subject = idx[:, 0]
        qs = [b[idx[:, 0], idx[:, 1], idx[:, 2]] for b in beliefs]
        self.actions = _safe_actions(template, batch)[idx[:, 0], idx[:, 1], idx[:, 2]]
        policy_len = int(template.policies.shape[1])
        self.policy_len = policy_len

        def efe(C: Sequence[Tensor]) -> Any:
            return efe_categorical(
                qs,
                template.A,
                template.B,
                C,
                template.policies,
                template.pA if template.use_param_info_gain else None,
                template.pB if template.use_param_info_gain else None,
                use_utility=True,
                use_states_info_gain=True,
                use_param_info_gain=template.use_param_info_gain,
                info_gain=template.info_gain,
                novelty_form=template.novelty_form,
            )

        with torch.no_grad():
            base = efe(template.C)
            self.base_efe = (
                -(base.pragmatic_value if template.use_utility else 0.0)
                - (base.state_info_gain if template.use_states_info_gain else 0.0)
                - (base.novelty if template.use_param_info_gain else 0.0)
            )
            # Along each fitted direction d of C the pragmatic value changes by its linear part,
            # prag(d) + preference_offset(d); what is left, preference_offset(C) of the subject's
            # C, is the same for every policy and leaves q(pi) unchanged.
            self.c_linear: dict[str, Tensor] = {}
            if template.use_utility:
                for p in self.parameters:
                    if p.target == "C":
                        dirs = _directions(p, template.C, "C")
                        part = efe(dirs).pragmatic_value
                        offset = _batched_preference_offset(
                            [d.unsqueeze(0) for d in dirs], policy_len
                        )
                        self.c_linear[p.name] = (part + offset).to(dtype)
        self.match = (
            (_first_actions(template).unsqueeze(0) == self.actions.unsqueeze(1)).all(-1)
            if template.sampling == "full"
            else None
        )

    def __call__(self, params: AgentParameters, values: Mapping[str, Tensor]) -> ActionLikelihood:
        """Log-probabilities of the decisions (``efe`` is exact up to a constant per subject)."""
        s = self.subject
        efe = self.base_efe
        for name, part in self.c_linear.items():
            efe = efe - values[name][s, None] * part
        q_pi = policy_posterior(params.gamma[s, None] * efe, 1.0, params.log_E[s])
        lp = _action_log_prob(q_pi, self.actions, params.alpha[s], self.template, self.match)
        S, K, T = self.shape
        out = torch.zeros(S, K, T, dtype=lp.dtype, device=lp.device)
        out = out.index_put((self.index[:, 0], self.index[:, 1], self.index[:, 2]), lp)
        return ActionLikelihood(out, None)


def _beliefs(template: AgentTemplate, batch: SubjectBatch) -> list[Tensor]:
    """Posterior marginals at every step, without learning: per factor (S, K, T, n_s[f])."""
    S, K, T = (int(x) for x in batch.mask.shape)
    F = len(template.B)
    actions = _safe_actions(template, batch)
    A = [a.unsqueeze(0).expand(S, *a.shape) for a in template.A]
    B = [b.unsqueeze(0).expand(S, *b.shape) for b in template.B]
    D = [d.unsqueeze(0).expand(S, *d.shape) for d in template.D]
    out: list[list[Tensor]] = [[] for _ in range(F)]
    for k in range(K):
        qs: list[Tensor] = []
        joint: Tensor | None = None
        for t in range(T):
            cols = [batch.obs[:, k, t, m] for m in range(len(A))]
            if template.inference == "fpi":
                prior = D if t == 0 else predict_states_batch(qs, B, actions[:, k, t - 1])
                qs = infer_states_fpi(A, cols, prior, template.num_iter)
            else:
                if t == 0 or joint is None:
                    joint_prior = joint_from_marginals(D)
                else:
                    M_t = joint_transition(B, actions[:, k, t - 1])
                    joint_prior = torch.bmm(M_t, joint.reshape(S, -1, 1)).reshape(joint.shape)
                ll = log_likelihood_batch(A, cols, F)
                joint = torch.softmax((ll + stable_log(joint_prior)).reshape(S, -1), -1).reshape(
                    joint_prior.shape
                )
                qs = marginals_from_joint(joint)
            for f in range(F):
                out[f].append(qs[f])
    return [torch.stack(x, 1).reshape(S, K, T, -1) for x in out]


# --------------------------------------------------------------------------------------------
# The Pyro model
# --------------------------------------------------------------------------------------------


def _sample_values(
    parameters: Sequence[FreeParameter],
    plate: pyro.plate,
    hierarchical: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> dict[str, Tensor]:
    """Sample every parameter's per-subject value (and population sites) at Pyro sites."""

    def const(x: float) -> Tensor:
        return torch.tensor(float(x), dtype=dtype, device=device)

    values: dict[str, Tensor] = {}
    pop: dict[str, tuple[Tensor, Tensor]] = {}
    if hierarchical:
        for p in parameters:
            mu = pyro.sample(f"{p.name}_mu", dist.Normal(const(p.loc), const(p.scale)))
            sd_scale = p.pop_scale if p.pop_scale is not None else p.scale
            sigma = pyro.sample(f"{p.name}_sigma", dist.HalfNormal(const(sd_scale)))
            pop[p.name] = (mu, sigma)
    with plate:
        for p in parameters:
            if hierarchical:
                mu, sigma = pop[p.name]
                z = pyro.sample(f"{p.name}_z", dist.Normal(const(0.0), const(1.0)))
                values[p.name] = pyro.deterministic(p.name, p.constrain(mu + sigma * z))
            elif p.positive:
                values[p.name] = pyro.sample(p.name, dist.LogNormal(const(p.loc), const(p.scale)))
            else:
                values[p.name] = pyro.sample(p.name, dist.Normal(const(p.loc), const(p.scale)))
    return values


def agent_model(
    template: AgentTemplate,
    parameters: Sequence[FreeParameter],
    batch: SubjectBatch,
    hierarchical: bool = False,
    likelihood: Callable[[AgentParameters, Mapping[str, Tensor]], ActionLikelihood] | None = None,
) -> None:
    """Pyro model of recorded actions: parameter priors, then the agents' action likelihood.

    Sites: one per :class:`FreeParameter` (``name``, shape (n_subjects,), in the ``subject``
    plate; with ``hierarchical=True`` also ``{name}_mu``, ``{name}_sigma`` and ``{name}_z``, the
    subject values being deterministic sites) and the factor ``actions`` with each subject's
    summed log-probability of its decisions.

    Parameters
    ----------
    template : AgentTemplate
    parameters : sequence of FreeParameter
    batch : SubjectBatch
    hierarchical : bool, default False
    likelihood : callable, optional
        ``(params, values) -> ActionLikelihood``; default :func:`action_log_likelihood`.
    """
    S = batch.n_subjects
    plate = pyro.plate("subject", S, dim=-1)
    values = _sample_values(parameters, plate, hierarchical, template.dtype, template.device)
    params = agent_parameters(template, parameters, values, S)
    if likelihood is None:
        result = action_log_likelihood(template, params, batch)
    else:
        result = likelihood(params, values)
    with plate:
        pyro.factor("actions", result.log_prob.sum((-1, -2)))


# --------------------------------------------------------------------------------------------
# Inference: NUTS and SVI, and the DataTree of the result
# --------------------------------------------------------------------------------------------


class FitResult(NamedTuple):
    """A fitted posterior.

    Attributes
    ----------
    tree : xarray.DataTree
        ArviZ groups: ``posterior`` (dims ``chain, draw`` and ``subject`` or ``term``),
        ``sample_stats`` (NUTS: ``lp``, ``diverging``, ``step_size``), ``observed_data``,
        ``constant_data``, ``log_likelihood`` (when asked for) and, for SVI, ``optimisation``
        (the loss, ``-ELBO``, per step). ``tree.attrs["sampling_time"]`` is the fit's wall time
        in seconds.
    samples : dict of str to Tensor
        Every latent and derived site, shape (chain, draw, ...).
    losses : Tensor or None
        SVI loss per step.
    """

    tree: xr.DataTree
    samples: dict[str, Tensor]
    losses: Tensor | None


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch (and the CUDA device in use) for a block; the caller's RNG state is restored."""
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if (device.type == "cuda")
        else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


def _chain_seeds(seed: int, num_chains: int) -> list[int]:
    states = np.random.SeedSequence(int(seed)).spawn(num_chains)
    return [int(s.generate_state(1)[0]) for s in states]


@dataclass
class _ChainStats:
    lp: list[float] = field(default_factory=list)
    diverging: list[bool] = field(default_factory=list)
    step_size: list[float] = field(default_factory=list)


def _run_nuts(
    model: Callable[..., None],
    *,
    num_samples: int,
    num_warmup: int,
    num_chains: int,
    seed: int,
    target_accept_prob: float,
    max_tree_depth: int,
    device: torch.device,
) -> tuple[dict[str, Tensor], dict[str, np.ndarray]]:
    """Chains one after the other (each seeded), samples stacked as (chain, draw, ...)."""
    if num_samples < 1 or num_warmup < 0 or num_chains < 1:
        raise ValueError(
            f"NUTS: num_samples={num_samples}, num_warmup={num_warmup}, num_chains={num_chains}; "
            "expected num_samples >= 1, num_warmup >= 0, num_chains >= 1"
        )
    chains: list[dict[str, Tensor]] = []
    stats: list[_ChainStats] = []
    for chain_seed in _chain_seeds(seed, num_chains):
        record = _ChainStats()

        def hook(
            kernel: Any, _params: Any, stage: str, _i: int, record: _ChainStats = record
        ) -> None:
            if stage != "Sample":
                return
            pe = getattr(kernel, "_potential_energy_last", None)
            record.lp.append(-float(pe) if pe is not None else math.nan)
            n_div = len(getattr(kernel, "_divergences", []))
            record.diverging.append(n_div > sum(record.diverging))
            record.step_size.append(float(getattr(kernel, "step_size", math.nan)))

        with _seeded(chain_seed, device):
            kernel = NUTS(
                model,
                target_accept_prob=target_accept_prob,
                max_tree_depth=max_tree_depth,
                init_strategy=init_to_median(num_samples=15),
            )
            mcmc = MCMC(
                kernel,
                num_samples=num_samples,
                warmup_steps=num_warmup,
                num_chains=1,
                hook_fn=hook,
                disable_progbar=True,
            )
            mcmc.run()
        chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
        stats.append(record)
    samples = {k: torch.stack([c[k] for c in chains]) for k in chains[0]}
    sample_stats = {
        "lp": np.array([s.lp for s in stats]),
        "diverging": np.array([s.diverging for s in stats]),
        "step_size": np.array([s.step_size for s in stats]),
    }
    return samples, sample_stats


def _run_svi(
    model: Callable[..., None],
    *,
    num_steps: int,
    lr: float,
    num_samples: int,
    seed: int,
    guide_family: Literal["normal", "multivariate_normal"],
    num_particles: int,
    device: torch.device,
) -> tuple[dict[str, Tensor], Tensor]:
    """SVI in a private param store; ``num_samples`` draws of the fitted guide as (1, draw, ...)."""
    if num_steps < 1 or num_samples < 1:
        raise ValueError(
            f"SVI: num_steps={num_steps}, num_samples={num_samples}; expected both >= 1"
        )
    if guide_family not in ("normal", "multivariate_normal"):
        raise ValueError(f"SVI: guide={guide_family!r}; expected 'normal' or 'multivariate_normal'")
    store = pyro.get_param_store()
    with ExitStack() as stack:
        stack.enter_context(_seeded(seed, device))
        stack.enter_context(store.scope())
        init = init_to_median(num_samples=15)
        guide: Any = (
            AutoNormal(model, init_loc_fn=init, init_scale=0.05)
            if guide_family == "normal"
            else AutoMultivariateNormal(model, init_loc_fn=init, init_scale=0.05)
        )
        svi = SVI(
            model,
            guide,
            ClippedAdam({"lr": lr, "lrd": 0.1 ** (1.0 / num_steps)}),
            Trace_ELBO(num_particles=num_particles, vectorize_particles=False),
        )
        losses = [float(svi.step()) for _ in range(num_steps)]
        draws: dict[str, list[Tensor]] = {}
        with torch.no_grad():
            for _ in range(num_samples):
                trace = poutine.trace(guide).get_trace()
                for name, site in trace.nodes.items():
                    if site["type"] == "sample" and not name.startswith("_"):
                        draws.setdefault(name, []).append(site["value"].detach())
    samples = {k: torch.stack(v).unsqueeze(0) for k, v in draws.items()}
    return samples, torch.tensor(losses)


def _np(x: Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def _build_tree(
    posterior: Mapping[str, np.ndarray],
    dims: Mapping[str, list[str]],
    coords: Mapping[str, Any],
    *,
    sample_stats: Mapping[str, np.ndarray] | None,
    observed: Mapping[str, np.ndarray],
    constant: Mapping[str, np.ndarray],
    log_lik: Mapping[str, np.ndarray] | None,
    losses: Tensor | None,
    attrs: Mapping[str, Any],
) -> xr.DataTree:
    data: dict[str, dict[str, Any]] = {"posterior": dict(posterior)}
    if sample_stats is not None:
        data["sample_stats"] = dict(sample_stats)
    data["observed_data"] = dict(observed)
    data["constant_data"] = dict(constant)
    if log_lik is not None:
        data["log_likelihood"] = dict(log_lik)
    tree = arviz_base.from_dict(
        data,
        dims={k: list(v) for k, v in dims.items()},
        coords=dict(coords),
        attrs={"/": dict(attrs)},
    )
    if losses is not None:
        loss = arviz_base.from_dict(
            {"optimisation": {"loss": _np(losses)}},
            dims={"loss": ["step"]},
            sample_dims=[],
        )
        tree["optimisation"] = loss["optimisation"]
    return tree


def fit_agent(
    template: AgentTemplate,
    parameters: Sequence[FreeParameter],
    subjects: Sequence[SubjectData] | SubjectData | SubjectBatch,
    *,
    method: Literal["nuts", "svi"] = "nuts",
    hierarchical: bool = False,
    num_samples: int = 500,
    num_warmup: int = 500,
    num_chains: int = 2,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 8,
    num_steps: int = 1500,
    lr: float = 0.03,
    guide: Literal["normal", "multivariate_normal"] = "multivariate_normal",
    num_particles: int = 1,
    log_likelihood: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> FitResult:
    """Infer agent parameters from recorded observations and actions, by NUTS or SVI.

    The model (:func:`agent_model`) puts the priors of :class:`FreeParameter` on every subject's
    parameters (optionally drawn from a fitted population) and scores the recorded actions with
    the engine's perceive-plan-act loop (:func:`action_log_likelihood`). When nothing the fit
    changes affects the agents' beliefs (no learning, no fitted prior counts) the beliefs and
    EFE parts are computed once and each evaluation only re-weights them: the same numbers,
    much faster.

    Parameters
    ----------
    template : AgentTemplate
        The agents' model and settings.
    parameters : sequence of FreeParameter
        What is fitted, with priors.
    subjects : SubjectData, sequence of SubjectData, or SubjectBatch
    method : {"nuts", "svi"}, default "nuts"
        ``"nuts"``: Pyro's ``NUTS`` kernel in ``MCMC``, chains run one after another, each with
        its own seed. ``"svi"``: an autoguide (``guide``) fitted by ``Trace_ELBO`` and Adam, then
        ``num_samples`` draws from it (one chain).
    hierarchical : bool, default False
        Per-subject values drawn from a fitted population (non-centred).
    num_samples, num_warmup, num_chains : int
        Draws kept per chain, warm-up steps per chain, chains (NUTS; SVI uses ``num_samples``).
    target_accept_prob : float, default 0.8
    max_tree_depth : int, default 8
    num_steps : int, default 1500
        SVI steps.
    lr : float, default 0.03
        SVI Adam learning rate (decayed tenfold over the run).
    guide : {"normal", "multivariate_normal"}, default "multivariate_normal"
        ``AutoNormal`` (mean field) or ``AutoMultivariateNormal`` (full covariance).
    num_particles : int, default 1
        ELBO particles per SVI step.
    log_likelihood : bool, default False
        Add the ``log_likelihood`` group (``actions``, dims ``chain, draw, subject, trial,
        step``; zero at non-decisions), for ``arviz_stats.loo``. Costs one likelihood evaluation
        per draw.
    seed : int, default 0
        Seeds everything (chains get seeds spawned from it); the caller's RNG is left alone.
    device : torch.device or str, optional
        Where the fit computes (e.g. ``"cuda"``); default the template's device.
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    FitResult
        ``posterior`` holds every parameter per subject (dims ``chain, draw, subject``) and,
        with a hierarchy, ``{name}_mu`` and ``{name}_sigma``.
    """
    if method not in ("nuts", "svi"):
        raise ValueError(f"fit_agent: method={method!r}; expected 'nuts' or 'svi'")
    if not parameters:
        raise ValueError("fit_agent: no parameters to fit; expected at least one FreeParameter")
    dev = torch.device(device) if device is not None else template.device
    template = template.to(dev, dtype)
    check_parameters(template, parameters)
    batch = subjects if isinstance(subjects, SubjectBatch) else stack_subjects(subjects)
    batch = batch.to(dev)
    _check_batch(template, batch)
    start = time.perf_counter()
    fixed = (
        _FixedBeliefLikelihood(template, parameters, batch)
        if _beliefs_are_fixed(template, parameters)
        else None
    )

    def model() -> None:
        agent_model(template, parameters, batch, hierarchical, likelihood=fixed)

    stats: dict[str, np.ndarray] | None = None
    losses: Tensor | None = None
    if method == "nuts":
        samples, stats = _run_nuts(
            model,
            num_samples=num_samples,
            num_warmup=num_warmup,
            num_chains=num_chains,
            seed=seed,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            device=dev,
        )
    else:
        samples, losses = _run_svi(
            model,
            num_steps=num_steps,
            lr=lr,
            num_samples=num_samples,
            seed=seed,
            guide_family=guide,
            num_particles=num_particles,
            device=dev,
        )
    elapsed = time.perf_counter() - start
    samples = _with_subject_values(parameters, samples, hierarchical)
    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    for p in parameters:
        posterior[p.name] = _np(samples[p.name])
        dims[p.name] = ["subject"]
        if hierarchical:
            for suffix in ("_mu", "_sigma"):
                posterior[p.name + suffix] = _np(samples[p.name + suffix])
    log_lik = None
    if log_likelihood:
        log_lik = {"actions": _draw_log_likelihood(template, parameters, batch, samples, fixed)}
        dims["actions"] = ["subject", "trial", "step"]
    dims.update(
        {
            "obs": ["subject", "trial", "step", "modality"],
            "action": ["subject", "trial", "step", "factor"],
            "decision_mask": ["subject", "trial", "step"],
        }
    )
    tree = _build_tree(
        posterior,
        dims,
        {"subject": batch.subjects},
        sample_stats=stats,
        observed={"action": _np(batch.actions)},
        constant={"obs": _np(batch.obs), "decision_mask": _np(batch.mask)},
        log_lik=log_lik,
        losses=losses,
        attrs={
            "sampling_time": elapsed,
            "inference_library": "pyro",
            "method": method,
            "hierarchical": int(hierarchical),
            "seed": int(seed),
        },
    )
    return FitResult(tree, samples, losses)


def _with_subject_values(
    parameters: Sequence[FreeParameter], samples: dict[str, Tensor], hierarchical: bool
) -> dict[str, Tensor]:
    """Add each subject's value where only the hierarchy's sites were returned."""
    out = dict(samples)
    if hierarchical:
        for p in parameters:
            if p.name not in out:
                mu = out[f"{p.name}_mu"].unsqueeze(-1)
                sigma = out[f"{p.name}_sigma"].unsqueeze(-1)
                out[p.name] = p.constrain(mu + sigma * out[f"{p.name}_z"])
    return out


def _draw_log_likelihood(
    template: AgentTemplate,
    parameters: Sequence[FreeParameter],
    batch: SubjectBatch,
    samples: Mapping[str, Tensor],
    fixed: _FixedBeliefLikelihood | None,
) -> np.ndarray:
    """Per-decision log-likelihood at every draw, shape (chain, draw, subject, trial, step)."""
    n_chain, n_draw = (int(x) for x in samples[parameters[0].name].shape[:2])
    S = batch.n_subjects
    out = []
    with torch.no_grad():
        for c in range(n_chain):
            for d in range(n_draw):
                values = {p.name: samples[p.name][c, d] for p in parameters}
                params = agent_parameters(template, parameters, values, S)
                res = (
                    fixed(params, values)
                    if fixed is not None
                    else action_log_likelihood(template, params, batch)
                )
                out.append(_np(res.log_prob))
    arr = np.stack(out)
    return arr.reshape(n_chain, n_draw, *arr.shape[1:])


# --------------------------------------------------------------------------------------------
# Conditional logit: choices among candidates scored by given features
# --------------------------------------------------------------------------------------------


def _check_choices(
    features: Tensor, choices: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    if features.dim() != 3 or not features.is_floating_point():
        raise ValueError(
            f"fit_choice_weights: features has shape {tuple(features.shape)} and dtype "
            f"{features.dtype}; expected floats of shape (n_decisions, n_actions, n_terms)"
        )
    N, K, _ = features.shape
    choices = torch.as_tensor(choices, device=features.device)
    if tuple(choices.shape) != (N,) or choices.is_floating_point():
        raise ValueError(
            f"fit_choice_weights: choices has shape {tuple(choices.shape)} and dtype "
            f"{choices.dtype}; expected integer indices of shape ({N},)"
        )
    choices = choices.long()
    if int(choices.min()) < 0 or int(choices.max()) >= K:
        bad = int(((choices < 0) | (choices >= K)).nonzero()[0])
        raise ValueError(
            f"fit_choice_weights: choices[{bad}] = {int(choices[bad])}; expected 0..{K - 1}"
        )
    if mask is None:
        mask = torch.ones(N, K, dtype=torch.bool, device=features.device)
    mask = torch.as_tensor(mask, device=features.device)
    if tuple(mask.shape) != (N, K):
        raise ValueError(
            f"fit_choice_weights: mask has shape {tuple(mask.shape)}; expected ({N}, {K})"
        )
    mask = mask.to(torch.bool)
    chosen_ok = mask.gather(1, choices[:, None]).squeeze(1)
    if not bool(chosen_ok.all()):
        bad = int((~chosen_ok).nonzero()[0])
        raise ValueError(
            f"fit_choice_weights: decision {bad} chose action {int(choices[bad])}, which its "
            f"mask marks infeasible (mask row {mask[bad].tolist()})"
        )
    finite = torch.isfinite(features) | ~mask.unsqueeze(-1)
    if not bool(finite.all()):
        n, k, j = (int(i) for i in (~finite).nonzero()[0])
        raise ValueError(
            f"fit_choice_weights: features[{n}, {k}, {j}] = {float(features[n, k, j])} at a "
            "feasible action; expected finite features wherever mask is True"
        )
    # Infeasible candidates may carry anything; zero them so no NaN reaches a gradient.
    return features.masked_fill(~mask.unsqueeze(-1), 0.0), choices, mask


def choice_model(
    features: Tensor,
    choices: Tensor | None,
    mask: Tensor,
    *,
    prior: Literal["normal", "precision"] = "normal",
    loc: Sequence[float] | float = 0.0,
    scale: Sequence[float] | float = 2.0,
    precision_loc: float = 0.0,
    precision_scale: float = 1.0,
    concentration: Sequence[float] | float = 1.0,
) -> Tensor:
    """Pyro model of a conditional logit: ``P(a) ∝ exp(sum_k w_k features[..., a, k])``.

    Sites: ``w`` (n_terms,) with ``prior="normal"`` (``w_k ~ Normal(loc_k, scale_k)``); with
    ``prior="precision"``, ``precision ~ LogNormal(precision_loc, precision_scale)`` and
    ``weights ~ Dirichlet(concentration)`` (non-negative, summing to one) give the
    deterministic ``w = precision * weights``. The observed site ``choice`` is one categorical
    per decision over its feasible actions.

    Parameters
    ----------
    features : Tensor, shape (n_decisions, n_actions, n_terms)
    choices : Tensor of int, shape (n_decisions,), or None
        ``None`` samples choices (prior predictive).
    mask : Tensor of bool, shape (n_decisions, n_actions)
        Feasible actions.
    prior : {"normal", "precision"}, default "normal"
    loc, scale : float or sequence of float
        Per-term normal prior of ``w``.
    precision_loc, precision_scale : float
        Log-normal prior of the precision.
    concentration : float or sequence of float, default 1.0
        Dirichlet prior of the relative weights.

    Returns
    -------
    Tensor, shape (n_terms,)
        The weights ``w``.
    """
    N, _, J = features.shape
    dtype, device = features.dtype, features.device

    def per_term(x: Sequence[float] | float, what: str) -> Tensor:
        t = torch.as_tensor(x, dtype=dtype, device=device)
        if t.dim() == 0:
            return t.expand(J)
        if tuple(t.shape) != (J,):
            raise ValueError(f"choice_model: {what} has shape {tuple(t.shape)}; expected ({J},)")
        return t

    if prior == "normal":
        w = pyro.sample(
            "w", dist.Normal(per_term(loc, "loc"), per_term(scale, "scale")).to_event(1)
        )
    elif prior == "precision":
        beta = pyro.sample(
            "precision",
            dist.LogNormal(
                torch.tensor(float(precision_loc), dtype=dtype, device=device),
                torch.tensor(float(precision_scale), dtype=dtype, device=device),
            ),
        )
        omega = pyro.sample("weights", dist.Dirichlet(per_term(concentration, "concentration")))
        w = pyro.deterministic("w", beta * omega)
    else:
        raise ValueError(f"choice_model: prior={prior!r}; expected 'normal' or 'precision'")
    logits = (features * w).sum(-1).masked_fill(~mask, -math.inf)
    with pyro.plate("decision", N):
        pyro.sample("choice", dist.Categorical(logits=logits), obs=choices)
    return w


def fit_choice_weights(
    features: Tensor,
    choices: Tensor,
    mask: Tensor | None = None,
    *,
    terms: Sequence[str] | None = None,
    prior: Literal["normal", "precision"] = "normal",
    loc: Sequence[float] | float = 0.0,
    scale: Sequence[float] | float = 2.0,
    precision_loc: float = 0.0,
    precision_scale: float = 1.0,
    concentration: Sequence[float] | float = 1.0,
    method: Literal["nuts", "svi"] = "nuts",
    num_samples: int = 500,
    num_warmup: int = 500,
    num_chains: int = 2,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 8,
    num_steps: int = 1500,
    lr: float = 0.03,
    guide: Literal["normal", "multivariate_normal"] = "multivariate_normal",
    log_likelihood: bool = True,
    seed: int = 0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> FitResult:
    """Infer the weights of candidate scores from recorded choices (a conditional logit).

    Each decision ``n`` chose ``choices[n]`` among the actions ``mask[n]`` allows, with
    ``P(a) ∝ exp(sum_k w_k features[n, a, k])`` (McFadden's conditional logit). Features are
    whatever the decision-maker scored its candidates by, e.g. the expected pragmatic value and
    the information gain of each action; with ``prior="precision"``, ``w = precision *
    weights`` separates how deterministic the choices are from the relative weight of each term.

    Parameters
    ----------
    features : Tensor, shape (n_decisions, n_actions, n_terms)
        Anything at infeasible actions (ignored).
    choices : Tensor of int, shape (n_decisions,)
    mask : Tensor of bool, shape (n_decisions, n_actions), optional
        Feasible actions; default all.
    terms : sequence of str, optional
        Names of the terms (the ``term`` coordinate); default ``"0"``, ``"1"``, ...
    prior, loc, scale, precision_loc, precision_scale, concentration
        As in :func:`choice_model`.
    method : {"nuts", "svi"}, default "nuts"
    num_samples, num_warmup, num_chains, target_accept_prob, max_tree_depth : int or float
        NUTS settings (``num_samples`` also for SVI draws).
    num_steps, lr, guide
        SVI settings, as in :func:`fit_agent`.
    log_likelihood : bool, default True
        Add the ``log_likelihood`` group (``choice``, dims ``chain, draw, decision``).
    seed : int, default 0
    device : torch.device or str, optional
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    FitResult
        ``posterior``: ``w`` (dims ``chain, draw, term``), and ``precision``, ``weights`` with
        ``prior="precision"``.
    """
    if method not in ("nuts", "svi"):
        raise ValueError(f"fit_choice_weights: method={method!r}; expected 'nuts' or 'svi'")
    if prior not in ("normal", "precision"):
        raise ValueError(f"fit_choice_weights: prior={prior!r}; expected 'normal' or 'precision'")
    dev = torch.device(device) if device is not None else torch.as_tensor(features).device
    features = torch.as_tensor(features).to(dev, dtype)
    feats, chosen, feasible = _check_choices(
        features,
        torch.as_tensor(choices).to(dev),
        mask if mask is None else torch.as_tensor(mask).to(dev),
    )
    J = int(feats.shape[-1])
    labels = list(terms) if terms is not None else [str(j) for j in range(J)]
    if len(labels) != J:
        raise ValueError(f"fit_choice_weights: {len(labels)} term names for {J} terms")
    kwargs = {
        "prior": prior,
        "loc": loc,
        "scale": scale,
        "precision_loc": precision_loc,
        "precision_scale": precision_scale,
        "concentration": concentration,
    }

    def model() -> None:
        choice_model(feats, chosen, feasible, **kwargs)  # type: ignore[arg-type]

    start = time.perf_counter()
    stats: dict[str, np.ndarray] | None = None
    losses: Tensor | None = None
    if method == "nuts":
        samples, stats = _run_nuts(
            model,
            num_samples=num_samples,
            num_warmup=num_warmup,
            num_chains=num_chains,
            seed=seed,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            device=dev,
        )
    else:
        samples, losses = _run_svi(
            model,
            num_steps=num_steps,
            lr=lr,
            num_samples=num_samples,
            seed=seed,
            guide_family=guide,
            num_particles=1,
            device=dev,
        )
    elapsed = time.perf_counter() - start
    if prior == "precision" and "w" not in samples:
        samples["w"] = samples["precision"].unsqueeze(-1) * samples["weights"]
    posterior = {"w": _np(samples["w"])}
    dims: dict[str, list[str]] = {"w": ["term"]}
    if prior == "precision":
        posterior["precision"] = _np(samples["precision"])
        posterior["weights"] = _np(samples["weights"])
        dims["weights"] = ["term"]
    log_lik = None
    if log_likelihood:
        w = samples["w"]  # (chain, draw, J)
        logits = torch.einsum("naj,cdj->cdna", feats, w).masked_fill(~feasible, -math.inf)
        lp = torch.log_softmax(logits, -1).gather(
            -1, chosen.view(1, 1, -1, 1).expand(*logits.shape[:2], -1, 1)
        )
        log_lik = {"choice": _np(lp.squeeze(-1))}
        dims["choice"] = ["decision"]
    dims.update(
        {
            "features": ["decision", "action", "term"],
            "mask": ["decision", "action"],
        }
    )
    tree = _build_tree(
        posterior,
        dims,
        {"term": labels},
        sample_stats=stats,
        observed={"choice": _np(chosen)},
        constant={"features": _np(feats), "mask": _np(feasible)},
        log_lik=log_lik,
        losses=losses,
        attrs={
            "sampling_time": elapsed,
            "inference_library": "pyro",
            "method": method,
            "seed": int(seed),
        },
    )
    return FitResult(tree, samples, losses)
