"""A categorical POMDP (A, B, C, D, E, optional Dirichlet pA/pB) declared as a Pyro program.

The same object feeds the closed-form engine (:mod:`aif.exact`, :mod:`aif.planning`) and Pyro's
inference (``Trace_ELBO`` / ``TraceEnum_ELBO``) through :meth:`CategoricalPOMDP.model` and
:class:`CategoricalGuide`.

Pyro site names
---------------
``s_{t}_{f}``
    Hidden state of factor ``f`` at time ``t`` (categorical, ``n_s[f]`` values).
``o_{t}_{m}``
    Outcome of modality ``m`` at time ``t`` (categorical, ``n_o[m]`` values).
``u_{t}_{f}``
    Control of factor ``f`` applied between ``t`` and ``t + 1`` (categorical, ``n_u[f]`` values);
    an intervention when ``actions`` is given (masked out of every free energy).
``A_{m}`` / ``B_{f}``
    Likelihood / transition tensors as Dirichlet latent sites, only with ``learn_A`` /
    ``learn_B``; their value has the pymdp shape moved so the outcome axis is last.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule, PyroParam
from pyro.ops.indexing import Vindex
from torch import Tensor

from aif.exact import (
    FilterResult,
    ObsLike,
    StatePosterior,
    filter_states,
    infer_states,
    log_evidence_sequence,
)
from aif.handlers import horizon
from aif.inference import JointCategorical
from aif.maths import normalize
from aif.planning import EFEResult, construct_policies, efe_categorical, policy_posterior
from aif.sequence import SmoothResult, smooth_states

__all__ = ["CategoricalGuide", "CategoricalPOMDP", "categorical_guide"]

_GUIDE_IDS = itertools.count()

#: Tolerance on "sums to one" checks of A, B, D and E.
_SUM_TOL = 1e-5


def _as_tensor_list(
    xs: Sequence[Any], name: str, dtype: torch.dtype, device: torch.device | str | None = None
) -> list[Tensor]:
    if isinstance(xs, Tensor):
        raise ValueError(
            f"{name} is a single tensor of shape {tuple(xs.shape)}; expected a list with one "
            "tensor per modality/factor"
        )
    return [torch.as_tensor(x, dtype=dtype, device=device).clone() for x in xs]


def _check_distribution(x: Tensor, name: str, axis: int = 0) -> None:
    if not torch.isfinite(x).all() or (x < 0).any():
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} has negative or non-finite entries; expected probabilities"
        )
    total = x.sum(dim=axis)
    err = float((total - 1).abs().max()) if total.numel() else 0.0
    if err > _SUM_TOL:
        raise ValueError(
            f"{name} of shape {tuple(x.shape)} does not sum to one over axis {axis} "
            f"(max deviation {err:.3g}); expected normalised columns"
        )


@dataclass(eq=False)
class CategoricalPOMDP:
    """A discrete generative model in the pymdp/SPM notation (see ``docs/notation.md``).

    Parameters
    ----------
    A : list of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
        Likelihood ``p(o_m | s)``; columns sum to one over axis 0.
    B : list of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f])
        Transitions ``p(s'_f | s_f, u_f)``; columns sum to one over axis 0.
    C : list of Tensor, optional
        ``C[m]`` shape (n_o[m],) or (n_o[m], T): log-preferences over outcomes (relative; the
        engine uses ``log_softmax(C[m])``). Default: zeros (no preference).
    D : list of Tensor, optional
        ``D[f]`` shape (n_s[f],): prior over initial states. Default: uniform.
    E : Tensor, optional
        Shape (n_policies,): prior over policies. Default: uniform.
    policy_len : int, default 1
        Planning horizon of the enumerated policies.
    pA, pB : list of Tensor, optional
        Dirichlet concentrations shaped like ``A`` / ``B`` (learnable parameters).
    policies : Tensor of int, optional
        Shape (n_policies, policy_len, F). Default: all control sequences
        (:func:`aif.planning.construct_policies`).
    dtype : torch.dtype, default torch.float64
    pD : list of Tensor, optional
        Dirichlet concentrations shaped like ``D`` (a learnable initial-state prior).
    device : torch.device or str, optional
        Where every tensor of the model lives (default: the CPU, or wherever ``A[0]`` is).
        Chosen once here; the engine's functions compute on the device of their inputs.

    Raises
    ------
    ValueError
        On any shape or normalisation mismatch; the message names the tensor, its shape and
        the expected shape.
    """

    A: list[Tensor]
    B: list[Tensor]
    C: list[Tensor] | None = None
    D: list[Tensor] | None = None
    E: Tensor | None = None
    policy_len: int = 1
    pA: list[Tensor] | None = None
    pB: list[Tensor] | None = None
    policies: Tensor | None = None
    dtype: torch.dtype = torch.float64
    pD: list[Tensor] | None = None
    device: torch.device | str | None = None

    def __post_init__(self) -> None:
        dt = self.dtype
        if self.device is None:
            first = self.A[0] if len(self.A) else None
            self.device = first.device if isinstance(first, Tensor) else torch.device("cpu")
        self.device = torch.device(self.device)
        dev = self.device
        self.A = _as_tensor_list(self.A, "A", dt, dev)
        self.B = _as_tensor_list(self.B, "B", dt, dev)
        if len(self.A) == 0 or len(self.B) == 0:
            raise ValueError(
                f"A has {len(self.A)} and B has {len(self.B)} entries; expected at least one modality and one factor"
            )
        for f, B_f in enumerate(self.B):
            if B_f.dim() != 3 or B_f.shape[0] != B_f.shape[1]:
                raise ValueError(
                    f"B[{f}] has shape {tuple(B_f.shape)}; expected (n_s, n_s, n_u) with equal first two axes"
                )
            _check_distribution(B_f, f"B[{f}]")
        ns = self.num_states
        for m, A_m in enumerate(self.A):
            if tuple(A_m.shape[1:]) != tuple(ns) or A_m.dim() != len(ns) + 1:
                raise ValueError(
                    f"A[{m}] has shape {tuple(A_m.shape)}; expected ({A_m.shape[0] if A_m.dim() else 'n_o'}, "
                    f"{', '.join(map(str, ns))}) (outcomes, then one axis per factor of B)"
                )
            _check_distribution(A_m, f"A[{m}]")
        no = self.num_obs
        if self.C is None:
            self.C = [torch.zeros(n, dtype=dt, device=dev) for n in no]
        else:
            self.C = _as_tensor_list(self.C, "C", dt, dev)
        if len(self.C) != len(no):
            raise ValueError(f"C has {len(self.C)} entries; expected {len(no)} (one per modality)")
        for m, C_m in enumerate(self.C):
            if C_m.dim() not in (1, 2) or C_m.shape[0] != no[m]:
                raise ValueError(
                    f"C[{m}] has shape {tuple(C_m.shape)}; expected ({no[m]},) or ({no[m]}, T)"
                )
            if not torch.isfinite(C_m).all():
                raise ValueError(
                    f"C[{m}] of shape {tuple(C_m.shape)} has non-finite entries; expected finite log-preferences"
                )
        if self.D is None:
            self.D = [torch.full((n,), 1.0 / n, dtype=dt, device=dev) for n in ns]
        else:
            self.D = _as_tensor_list(self.D, "D", dt, dev)
        if len(self.D) != len(ns):
            raise ValueError(f"D has {len(self.D)} entries; expected {len(ns)} (one per factor)")
        for f, D_f in enumerate(self.D):
            if tuple(D_f.shape) != (ns[f],):
                raise ValueError(f"D[{f}] has shape {tuple(D_f.shape)}; expected ({ns[f]},)")
            _check_distribution(D_f, f"D[{f}]")
        if int(self.policy_len) < 1:
            raise ValueError(f"policy_len={self.policy_len}; expected >= 1")
        if self.policies is None:
            self.policies = construct_policies(self.num_controls, int(self.policy_len)).to(dev)
        else:
            pol = torch.as_tensor(self.policies, dtype=torch.long, device=dev)
            if pol.dim() != 3 or pol.shape[2] != len(ns) or pol.shape[1] != int(self.policy_len):
                raise ValueError(
                    f"policies have shape {tuple(pol.shape)}; expected (n_policies, {self.policy_len}, {len(ns)})"
                )
            self.policies = pol
        n_pol = int(self.policies.shape[0])
        if self.E is None:
            self.E = torch.full((n_pol,), 1.0 / n_pol, dtype=dt, device=dev)
        else:
            self.E = torch.as_tensor(self.E, dtype=dt, device=dev).clone()
            if tuple(self.E.shape) != (n_pol,):
                raise ValueError(
                    f"E has shape {tuple(self.E.shape)}; expected ({n_pol},) (one entry per policy)"
                )
            _check_distribution(self.E, "E")
        if self.pA is not None:
            self.pA = _as_tensor_list(self.pA, "pA", dt, dev)
            if len(self.pA) != len(self.A):
                raise ValueError(
                    f"pA has {len(self.pA)} entries; expected {len(self.A)} (one per modality)"
                )
            for m, (p, a) in enumerate(zip(self.pA, self.A, strict=True)):
                if p.shape != a.shape:
                    raise ValueError(
                        f"pA[{m}] has shape {tuple(p.shape)}; expected {tuple(a.shape)} like A[{m}]"
                    )
                if (p < 0).any() or not torch.isfinite(p).all():
                    raise ValueError(
                        f"pA[{m}] of shape {tuple(p.shape)} has negative or non-finite entries; expected concentrations >= 0"
                    )
        if self.pB is not None:
            self.pB = _as_tensor_list(self.pB, "pB", dt, dev)
            if len(self.pB) != len(self.B):
                raise ValueError(
                    f"pB has {len(self.pB)} entries; expected {len(self.B)} (one per factor)"
                )
            for f, (p, b) in enumerate(zip(self.pB, self.B, strict=True)):
                if p.shape != b.shape:
                    raise ValueError(
                        f"pB[{f}] has shape {tuple(p.shape)}; expected {tuple(b.shape)} like B[{f}]"
                    )
                if (p < 0).any() or not torch.isfinite(p).all():
                    raise ValueError(
                        f"pB[{f}] of shape {tuple(p.shape)} has negative or non-finite entries; expected concentrations >= 0"
                    )
        if self.pD is not None:
            self.pD = _as_tensor_list(self.pD, "pD", dt, dev)
            if len(self.pD) != len(ns):
                raise ValueError(
                    f"pD has {len(self.pD)} entries; expected {len(ns)} (one per factor)"
                )
            for f, p in enumerate(self.pD):
                if tuple(p.shape) != (ns[f],) or (p < 0).any() or not torch.isfinite(p).all():
                    raise ValueError(
                        f"pD[{f}] has shape {tuple(p.shape)}; expected ({ns[f]},) with "
                        "concentrations >= 0"
                    )

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> CategoricalPOMDP:
        """A copy of the model on another device and/or in another precision.

        Parameters
        ----------
        device : torch.device or str, optional
            Default: the model's device.
        dtype : torch.dtype, optional
            Default: the model's dtype.

        Returns
        -------
        CategoricalPOMDP
        """
        return CategoricalPOMDP(
            A=self.A,
            B=self.B,
            C=self.C,
            D=self.D,
            E=self.E,
            policy_len=self.policy_len,
            pA=self.pA,
            pB=self.pB,
            policies=self.policies,
            dtype=dtype if dtype is not None else self.dtype,
            pD=self.pD,
            device=device if device is not None else self.device,
        )

    # ----------------------------------------------------------------------------------------
    # Sizes
    # ----------------------------------------------------------------------------------------

    @property
    def num_states(self) -> list[int]:
        """``n_s[f]`` per hidden-state factor."""
        return [int(b.shape[0]) for b in self.B]

    @property
    def num_obs(self) -> list[int]:
        """``n_o[m]`` per observation modality."""
        return [int(a.shape[0]) for a in self.A]

    @property
    def num_controls(self) -> list[int]:
        """``n_u[f]`` per factor (1 for an uncontrolled factor)."""
        return [int(b.shape[2]) for b in self.B]

    @property
    def num_factors(self) -> int:
        """F, the number of hidden-state factors."""
        return len(self.B)

    @property
    def num_modalities(self) -> int:
        """M, the number of observation modalities."""
        return len(self.A)

    @property
    def num_policies(self) -> int:
        """Number of policies."""
        assert self.policies is not None
        return int(self.policies.shape[0])

    @property
    def log_E(self) -> Tensor:
        """Log prior over policies, shape (n_policies,)."""
        assert self.E is not None
        return torch.log(torch.clamp(self.E, min=torch.finfo(self.dtype).tiny))

    # ----------------------------------------------------------------------------------------
    # Constructors
    # ----------------------------------------------------------------------------------------

    @classmethod
    def random(
        cls,
        num_states: Sequence[int],
        num_obs: Sequence[int],
        num_controls: Sequence[int],
        policy_len: int = 1,
        seed: int = 0,
        *,
        dirichlet: bool = False,
        concentration: float = 10.0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> CategoricalPOMDP:
        """A random model with every column drawn uniformly and then normalised (seeded).

        Parameters
        ----------
        num_states, num_obs, num_controls : sequence of int
            ``n_s[f]``, ``n_o[m]``, ``n_u[f]``.
        policy_len : int, default 1
        seed : int, default 0
            Seed of a private ``torch.Generator``; the same seed gives the same model.
        dirichlet : bool, default False
            Also set Dirichlet concentrations ``pA = concentration * A`` and
            ``pB = concentration * B``.
        concentration : float, default 10.0
            Total pseudo-count per column of ``pA``/``pB``.
        dtype : torch.dtype, default torch.float64
        device : torch.device or str, optional
            Where the model lives; the draws are made on the CPU first, so a seed gives the same
            model on every device.

        Returns
        -------
        CategoricalPOMDP

        Notes
        -----
        With ``dirichlet=True``, ``A`` and ``B`` are the means of ``pA`` and ``pB`` (the
        Dirichlet expectations), which is how a learning agent holds them.
        """
        if len(num_states) != len(num_controls):
            raise ValueError(
                f"num_states has {len(num_states)} entries but num_controls has {len(num_controls)}; expected one per factor"
            )
        g = torch.Generator().manual_seed(int(seed))
        ns = [int(n) for n in num_states]
        A = [normalize(torch.rand(int(n), *ns, generator=g, dtype=dtype), dim=0) for n in num_obs]
        B = [
            normalize(torch.rand(n, n, int(u), generator=g, dtype=dtype), dim=0)
            for n, u in zip(ns, num_controls, strict=True)
        ]
        C = [torch.randn(int(n), generator=g, dtype=dtype) for n in num_obs]
        D = [normalize(torch.rand(n, generator=g, dtype=dtype), dim=0) for n in ns]
        pA = pB = None
        if dirichlet:
            pA = [concentration * a for a in A]
            pB = [concentration * b for b in B]
        return cls(
            A=A, B=B, C=C, D=D, policy_len=policy_len, pA=pA, pB=pB, dtype=dtype, device=device
        )

    @classmethod
    def from_dirichlet(
        cls,
        pA: Sequence[Tensor],
        pB: Sequence[Tensor],
        C: Sequence[Tensor] | None = None,
        D: Sequence[Tensor] | None = None,
        E: Tensor | None = None,
        policy_len: int = 1,
        dtype: torch.dtype = torch.float64,
    ) -> CategoricalPOMDP:
        """Build a model whose ``A`` and ``B`` are the means of Dirichlet concentrations.

        Parameters
        ----------
        pA : sequence of Tensor, ``pA[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
        pB : sequence of Tensor, ``pB[f]`` shape (n_s[f], n_s[f], n_u[f])
        C, D, E, policy_len, dtype
            As in :class:`CategoricalPOMDP`.

        Returns
        -------
        CategoricalPOMDP
        """
        pA_t = _as_tensor_list(pA, "pA", dtype)
        pB_t = _as_tensor_list(pB, "pB", dtype)
        for m, p in enumerate(pA_t):
            if (p.sum(0) <= 0).any():
                raise ValueError(
                    f"pA[{m}] of shape {tuple(p.shape)} has a column with no counts; expected positive column sums"
                )
        for f, p in enumerate(pB_t):
            if (p.sum(0) <= 0).any():
                raise ValueError(
                    f"pB[{f}] of shape {tuple(p.shape)} has a column with no counts; expected positive column sums"
                )
        return cls(
            A=[normalize(p, 0) for p in pA_t],
            B=[normalize(p, 0) for p in pB_t],
            C=list(C) if C is not None else None,
            D=list(D) if D is not None else None,
            E=E,
            policy_len=policy_len,
            pA=pA_t,
            pB=pB_t,
            dtype=dtype,
        )

    # ----------------------------------------------------------------------------------------
    # Closed-form engine
    # ----------------------------------------------------------------------------------------

    def infer_states(
        self,
        obs: ObsLike,
        prior: Sequence[Tensor] | None = None,
        method: Literal["exact", "fpi"] = "exact",
        num_iter: int = 16,
    ) -> StatePosterior:
        """Posterior after one observation (:func:`aif.exact.infer_states`); prior defaults to ``D``."""
        return infer_states(
            self.A, obs, list(prior) if prior is not None else self._D, method, num_iter
        )

    def filter(
        self,
        obs: Sequence[ObsLike],
        actions: Tensor | Sequence[Sequence[int]] | None = None,
        method: Literal["exact", "fpi"] = "exact",
        num_iter: int = 16,
    ) -> FilterResult:
        """Forward filtering over a sequence (:func:`aif.exact.filter_states`)."""
        return filter_states(self.A, self.B, self._D, obs, actions, method, num_iter)

    def log_evidence(
        self, obs: Sequence[ObsLike], actions: Tensor | Sequence[Sequence[int]] | None = None
    ) -> Tensor:
        """``log p(o_{0:T-1} | u)`` by enumeration (:func:`aif.exact.log_evidence_sequence`)."""
        return log_evidence_sequence(self.A, self.B, self._D, obs, actions)

    def smooth(
        self, obs: Sequence[ObsLike], actions: Tensor | Sequence[Sequence[int]] | None = None
    ) -> SmoothResult:
        """Posterior of every step given the whole sequence (:func:`aif.sequence.smooth_states`)."""
        return smooth_states(self.A, self.B, self._D, obs, actions)

    def efe(self, qs: Sequence[Tensor], **kwargs: Any) -> EFEResult:
        """EFE of every policy from beliefs ``qs`` (:func:`aif.planning.efe_categorical`).

        ``pA``/``pB`` of the model are passed along; keyword arguments (the term switches,
        ``info_gain``, ``novelty_form``) go to :func:`aif.planning.efe_categorical`.
        """
        assert self.policies is not None
        return efe_categorical(
            qs, self.A, self.B, self._C, self.policies, self.pA, self.pB, **kwargs
        )

    def policy_posterior(self, efe: Tensor, gamma: float = 16.0) -> Tensor:
        """``softmax(-gamma * efe + log E)`` with this model's ``E``; shape (n_policies,)."""
        return policy_posterior(efe, gamma, self.log_E)

    @property
    def _D(self) -> list[Tensor]:
        assert self.D is not None
        return self.D

    @property
    def _C(self) -> list[Tensor]:
        assert self.C is not None
        return self.C

    # ----------------------------------------------------------------------------------------
    # Pyro program
    # ----------------------------------------------------------------------------------------

    def _num_steps(
        self,
        obs: Sequence[Any] | Tensor | None,
        actions: Tensor | None,
        T: int | None,
    ) -> int:
        if T is not None:
            default = int(T)
        elif obs is not None:
            default = len(obs)
        elif actions is not None:
            default = int(actions.shape[0]) + 1
        else:
            default = int(self.policy_len) + 1
        return horizon(default)

    def model(
        self,
        obs: Sequence[Tensor | Sequence[int] | None] | Tensor | None = None,
        actions: Tensor | Sequence[Sequence[int]] | None = None,
        prior: Sequence[Tensor] | None = None,
        T: int | None = None,
        observe_initial: bool = True,
        learn_A: bool = False,
        learn_B: bool = False,
    ) -> list[list[Tensor]]:
        """The generative model as a Pyro program over ``T`` time steps.

        ``s_0 ~ prior`` (default ``D``); ``s_{t+1, f} ~ B[f][:, s_{t,f}, u_{t,f}]``;
        ``o_{t, m} ~ A[m][:, s_t]``. Sites are named as in the module docstring. Every
        distribution indexes its table with :class:`pyro.ops.indexing.Vindex`, so the program
        runs under parallel enumeration (``pyro.infer.config_enumerate(pomdp.model)`` with
        ``TraceEnum_ELBO(max_plate_nesting=0)``); with an empty guide that ELBO is
        ``log p(o)``.

        Parameters
        ----------
        obs : sequence of length T, or Tensor of shape (T, M), optional
            ``obs[t][m]`` is the outcome index of modality ``m`` at time ``t``; ``obs[t] = None``
            (or ``obs = None``) leaves that step unobserved (sampled).
        actions : Tensor or nested sequence of int, shape (T-1, F), optional
            Controls between steps, applied as interventions (masked from the free energy).
            Without them the control sites are latent with a uniform prior, marked for
            enumeration; :class:`aif.handlers.condition_on_policy` can fix them instead.
        prior : sequence of Tensor, optional
            ``prior[f]`` shape (n_s[f],): distribution of ``s_0`` (e.g. current beliefs when
            planning). Default ``D``.
        T : int, optional
            Number of time steps. Default: ``len(obs)``, else ``len(actions) + 1``, else
            ``policy_len + 1``; :class:`aif.handlers.set_horizon` overrides it.
        observe_initial : bool, default True
            Whether ``o_0`` exists. Set False when ``prior`` already accounts for the current
            outcome, as in planning.
        learn_A, learn_B : bool, default False
            Draw ``A``/``B`` from Dirichlet(``pA``/``pB``) at sites ``A_{m}``/``B_{f}``.

        Returns
        -------
        list of list of Tensor
            The sampled (or enumerated) states ``s[t][f]``.
        """
        ns, F, M = self.num_states, self.num_factors, self.num_modalities
        act = None
        if actions is not None:
            act = torch.as_tensor(actions, dtype=torch.long, device=self.device)
            if act.dim() == 1 and F == 1:
                act = act.unsqueeze(-1)
            if act.dim() != 2 or act.shape[1] != F:
                raise ValueError(
                    f"model: actions have shape {tuple(act.shape)}; expected (T-1, {F})"
                )
        n_steps = self._num_steps(obs, act, T)
        if act is not None and act.shape[0] < n_steps - 1:
            raise ValueError(
                f"model: actions have shape {tuple(act.shape)}; expected ({n_steps - 1}, {F}) for T={n_steps}"
            )
        init = list(prior) if prior is not None else self._D
        if len(init) != F or any(tuple(p.shape) != (n,) for p, n in zip(init, ns, strict=False)):
            raise ValueError(
                f"model: prior has shapes {[tuple(p.shape) for p in init]}; expected {[(n,) for n in ns]}"
            )

        A_tabs = self._likelihood_tables(learn_A)  # each (n_s[0], ..., n_s[F-1], n_o[m])
        B_tabs = self._transition_tables(learn_B)  # each (n_s[f], n_u[f], n_s'[f])

        states: list[list[Tensor]] = []
        prev: list[Tensor] = []
        for t in range(n_steps):
            cur: list[Tensor] = []
            for f in range(F):
                if t == 0:
                    probs = init[f].to(self.dtype)
                else:
                    u = self._control(t - 1, f, act)
                    probs = Vindex(B_tabs[f])[..., prev[f], u, :]
                cur.append(pyro.sample(f"s_{t}_{f}", dist.Categorical(probs=probs)))
            if t > 0 or observe_initial:
                obs_t = self._obs_at(obs, t, M, self.device)  # type: ignore[arg-type]
                for m in range(M):
                    probs = Vindex(A_tabs[m])[(Ellipsis, *cur, slice(None))]
                    value = None if obs_t is None else obs_t[m]
                    pyro.sample(f"o_{t}_{m}", dist.Categorical(probs=probs), obs=value)
            states.append(cur)
            prev = cur
        return states

    def _control(self, t: int, f: int, act: Tensor | None) -> Tensor:
        n_u = self.num_controls[f]
        uniform = dist.Categorical(
            probs=torch.full((n_u,), 1.0 / n_u, dtype=self.dtype, device=self.device)
        )
        if act is not None:
            # An intervention: the value is fixed and its (constant) prior probability is
            # left out of the free energy.
            with poutine.mask(mask=False):
                return pyro.sample(f"u_{t}_{f}", uniform, obs=act[t, f])
        return pyro.sample(f"u_{t}_{f}", uniform, infer={"enumerate": "parallel"})

    @staticmethod
    def _obs_at(obs: Any, t: int, M: int, device: torch.device | None = None) -> Tensor | None:
        if obs is None or t >= len(obs) or obs[t] is None:
            return None
        raw = torch.as_tensor(obs[t])
        if raw.is_floating_point() or raw.dtype == torch.bool:
            raise ValueError(
                f"model: obs[{t}] = {raw.tolist()} has dtype {raw.dtype}; expected integer outcome "
                "indices (categorical outcomes are never rounded)"
            )
        o = raw.long().reshape(-1).to(device)
        if o.shape[0] != M:
            raise ValueError(
                f"model: obs[{t}] has shape {tuple(o.shape)}; expected ({M},) (one outcome per modality)"
            )
        return o

    def _likelihood_tables(self, learn: bool) -> list[Tensor]:
        F = self.num_factors
        if not learn:
            return [a.movedim(0, -1) for a in self.A]
        if self.pA is None:
            raise ValueError(
                "model: learn_A=True needs pA (Dirichlet concentrations); the model has none"
            )
        return [
            pyro.sample(
                f"A_{m}",
                dist.Dirichlet(
                    torch.clamp(p.movedim(0, -1), min=torch.finfo(self.dtype).tiny)
                ).to_event(F),
            )
            for m, p in enumerate(self.pA)
        ]

    def _transition_tables(self, learn: bool) -> list[Tensor]:
        if not learn:
            return [b.permute(1, 2, 0) for b in self.B]
        if self.pB is None:
            raise ValueError(
                "model: learn_B=True needs pB (Dirichlet concentrations); the model has none"
            )
        return [
            pyro.sample(
                f"B_{f}",
                dist.Dirichlet(
                    torch.clamp(p.permute(1, 2, 0), min=torch.finfo(self.dtype).tiny)
                ).to_event(2),
            )
            for f, p in enumerate(self.pB)
        ]

    @overload
    def make_guide(
        self,
        T: int | None = None,
        structure: Literal["mean_field"] = "mean_field",
        **kwargs: Any,
    ) -> CategoricalGuide: ...

    @overload
    def make_guide(
        self, T: int | None = None, *, structure: Literal["joint"], **kwargs: Any
    ) -> JointCategorical: ...

    def make_guide(
        self,
        T: int | None = None,
        structure: Literal["mean_field", "joint"] = "mean_field",
        **kwargs: Any,
    ) -> CategoricalGuide | JointCategorical:
        """A guide over the hidden states of ``T`` steps (default ``policy_len + 1``).

        Parameters
        ----------
        T : int, optional
        structure : {"mean_field", "joint"}, default "mean_field"
            ``"mean_field"``: a :class:`CategoricalGuide` (one belief per factor and step; exact
            for one factor at one step; takes ``learn_A``/``learn_B``). ``"joint"``: an
            :class:`aif.inference.JointCategorical`, joint over the factors of a step and Markov
            across steps, which holds the exact posterior of any window.
        **kwargs
            Passed to the guide's constructor.
        """
        n_steps = int(T) if T is not None else int(self.policy_len) + 1
        if structure == "joint":
            steps = [
                {f"s_{t}_{f}": n for f, n in enumerate(self.num_states)} for t in range(n_steps)
            ]
            return JointCategorical(steps, dtype=self.dtype, device=self.device, **kwargs)
        if structure != "mean_field":
            raise ValueError(
                f"make_guide: structure={structure!r}; expected 'mean_field' or 'joint'"
            )
        return CategoricalGuide(self, n_steps, **kwargs)


class CategoricalGuide(PyroModule):
    """Mean-field guide ``q(s) = prod_{t,f} Categorical(s_{t,f}; softmax(logits[f][t]))``.

    Its call signature is that of :meth:`CategoricalPOMDP.model`, so
    ``SVI(pomdp.model, guide, ...)`` and ``TraceEnum_ELBO`` work directly; the negated ELBO is
    the variational free energy of the belief the guide holds.

    Parameters
    ----------
    pomdp : CategoricalPOMDP
    T : int
        Number of time steps (must match the model's).
    init_logits : sequence of Tensor, optional
        ``init_logits[f]`` shape (T, n_s[f]); default zeros (uniform beliefs).
    enum : {"parallel", "sequential"} or None, default None
        Marks the state sites for enumeration, so ``TraceEnum_ELBO`` takes the exact
        expectation under ``q`` instead of sampling.
    learn_A, learn_B : bool, default False
        Add Dirichlet sites ``A_{m}`` / ``B_{f}`` with learnable concentrations (initialised
        at ``pA`` / ``pB``), for the model's ``learn_A`` / ``learn_B``.
    observe_initial : bool, default True
        Unused by the guide (accepted so that calls mirror the model's).
    name : str, optional
        Prefix of the guide's parameter names; default a fresh ``categorical_guide_<k>``.
    """

    def __init__(
        self,
        pomdp: CategoricalPOMDP,
        T: int,
        init_logits: Sequence[Tensor] | None = None,
        enum: Literal["parallel", "sequential"] | None = None,
        learn_A: bool = False,
        learn_B: bool = False,
        name: str | None = None,
    ) -> None:
        # A fresh name per guide keeps two guides apart even in Pyro's global parameter store
        # (when ``pyro.settings`` ``module_local_params`` is off).
        super().__init__(name if name is not None else f"categorical_guide_{next(_GUIDE_IDS)}")
        if int(T) < 1:
            raise ValueError(f"CategoricalGuide: T={T}; expected >= 1")
        self.T = int(T)
        self.num_states = pomdp.num_states
        self.enum = enum
        self.learn_A = learn_A
        self.learn_B = learn_B
        dt = pomdp.dtype
        for f, n in enumerate(self.num_states):
            if init_logits is not None:
                init = torch.as_tensor(init_logits[f], dtype=dt, device=pomdp.device).clone()
                if tuple(init.shape) != (self.T, n):
                    raise ValueError(
                        f"CategoricalGuide: init_logits[{f}] has shape {tuple(init.shape)}; expected ({self.T}, {n})"
                    )
            else:
                init = torch.zeros(self.T, n, dtype=dt, device=pomdp.device)
            setattr(self, f"logits_{f}", PyroParam(init))
        if learn_A:
            if pomdp.pA is None:
                raise ValueError(
                    "CategoricalGuide: learn_A=True needs pomdp.pA; the model has none"
                )
            for m, p in enumerate(pomdp.pA):
                conc = torch.clamp(p.movedim(0, -1), min=1e-3).clone()
                setattr(self, f"conc_A_{m}", PyroParam(conc, constraint=dist.constraints.positive))
        if learn_B:
            if pomdp.pB is None:
                raise ValueError(
                    "CategoricalGuide: learn_B=True needs pomdp.pB; the model has none"
                )
            for f, p in enumerate(pomdp.pB):
                conc = torch.clamp(p.permute(1, 2, 0), min=1e-3).clone()
                setattr(self, f"conc_B_{f}", PyroParam(conc, constraint=dist.constraints.positive))
        self._num_modalities = pomdp.num_modalities

    def logits(self, f: int) -> Tensor:
        """Logits of factor ``f``, shape (T, n_s[f])."""
        return getattr(self, f"logits_{f}")

    def marginals(self) -> list[list[Tensor]]:
        """Current beliefs ``q[t][f]``, each shape (n_s[f],), detached."""
        return [
            [torch.softmax(self.logits(f)[t].detach(), -1) for f in range(len(self.num_states))]
            for t in range(self.T)
        ]

    def forward(
        self,
        obs: Any = None,
        actions: Any = None,
        prior: Any = None,
        T: int | None = None,
        observe_initial: bool = True,
        learn_A: bool = False,
        learn_B: bool = False,
    ) -> None:
        """Sample every ``s_{t}_{f}`` (and ``A_{m}``/``B_{f}`` when learnt); arguments mirror the model."""
        del prior, observe_initial
        # The number of steps follows the same rule as the model's, so both see the same sites.
        if T is not None:
            default = int(T)
        elif obs is not None:
            default = len(obs)
        elif actions is not None:
            default = len(actions) + 1
        else:
            default = self.T
        n_steps = horizon(default)
        if n_steps > self.T:
            raise ValueError(
                f"CategoricalGuide: the model runs {n_steps} steps but the guide holds T={self.T}"
            )
        if learn_A or self.learn_A:
            F = len(self.num_states)
            for m in range(self._num_modalities):
                pyro.sample(f"A_{m}", dist.Dirichlet(getattr(self, f"conc_A_{m}")).to_event(F))
        if learn_B or self.learn_B:
            for f in range(len(self.num_states)):
                pyro.sample(f"B_{f}", dist.Dirichlet(getattr(self, f"conc_B_{f}")).to_event(2))
        for t in range(n_steps):
            for f in range(len(self.num_states)):
                site = dist.Categorical(logits=self.logits(f)[t])
                if self.enum is not None:
                    pyro.sample(f"s_{t}_{f}", site, infer={"enumerate": self.enum})
                else:
                    pyro.sample(f"s_{t}_{f}", site)


def categorical_guide(
    pomdp: CategoricalPOMDP, T: int | None = None, **kwargs: Any
) -> CategoricalGuide:
    """A mean-field categorical guide for ``pomdp`` (see :class:`CategoricalGuide`).

    Parameters
    ----------
    pomdp : CategoricalPOMDP
    T : int, optional
        Number of time steps; default ``pomdp.policy_len + 1``.
    **kwargs
        Passed to :class:`CategoricalGuide`.

    Returns
    -------
    CategoricalGuide
    """
    return pomdp.make_guide(T, **kwargs)
