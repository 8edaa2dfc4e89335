"""Inference over a window of time steps: the exact smoother and marginal message passing.

:func:`smooth_states` is the forward-backward algorithm on the joint hidden state (exact
posterior marginals and pairwise transitions of every step given the whole window);
:func:`infer_states_mmp` is pymdp's marginal message passing, a mean-field scheme over factors
and time steps. Both take an optional leading batch axis.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from aif.exact import (
    ObsLike,
    _contract_except,
    action_steps,
    is_batched_model,
    joint_from_marginals,
    log_likelihood_batch,
    marginals_from_joint,
    observation_batch,
    select_transitions,
)
from aif.maths import EPS, softmax, stable_log

__all__ = [
    "SmoothResult",
    "infer_states_mmp",
    "joint_transition",
    "smooth_states",
]

#: Largest joint transition matrix (entries, per batch element) the smoother builds.
_MAX_TRANSITION_ENTRIES = 4_000_000


class SmoothResult(NamedTuple):
    """Posterior of every step of a window given all of its observations.

    Attributes
    ----------
    qs : list of list of Tensor
        ``qs[t][f]``, shape (n_s[f],) (or (batch, n_s[f])): smoothed marginal of factor ``f``.
    joint : list of Tensor
        ``joint[t]``, shape (n_s[0], ..., n_s[F-1]): smoothed joint posterior of step ``t``.
    pairwise : list of list of Tensor
        ``pairwise[t][f]``, shape (n_s[f], n_s[f]): ``q(s_{t+1,f}, s_{t,f})`` (next state
        first, the layout of ``B``) for ``t = 0..T-2``.
    filtered : list of Tensor
        ``filtered[t]``: the forward (filtering) joint posterior given ``o_{0:t}``.
    log_evidence : Tensor, shape () or (batch,)
        ``log p(o_{0:T-1} | u)``.
    """

    qs: list[list[Tensor]]
    joint: list[Tensor]
    pairwise: list[list[Tensor]]
    filtered: list[Tensor]
    log_evidence: Tensor


def joint_transition(B: Sequence[Tensor], action: Tensor) -> Tensor:
    """Transition matrix of the joint state, ``p(s' | s, u) = prod_f B[f][s'_f, s_f, u_f]``.

    Parameters
    ----------
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, ...)
    action : Tensor of int, shape (batch, F)

    Returns
    -------
    Tensor, shape (batch, prod n_s, prod n_s)
        Rows index the next joint state, columns the previous one (C order over factors).
    """
    batch = int(action.shape[0])
    letters = string.ascii_letters
    F = len(B)
    if 2 * F + 1 > len(letters):
        raise ValueError(f"joint_transition: {F} factors; expected at most {len(letters) // 2 - 1}")
    operands = []
    terms = []
    for f, B_f in enumerate(B):
        operands.append(select_transitions(B_f, action[:, f]))
        terms.append("Z" + letters[f] + letters[F + f])
    out = "Z" + letters[:F] + letters[F : 2 * F]
    M = torch.einsum(",".join(terms) + "->" + out, *operands)
    S = math.prod(int(b.shape[-2]) for b in B)
    return M.reshape(batch, S, S)


def _as_batch_obs(
    obs: Sequence[ObsLike] | Sequence[Tensor],
    num_obs: list[int],
    batched: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> list[list[Tensor]]:
    out = []
    for o in obs:
        if batched:
            out.append(observation_batch(o, num_obs, dtype, device))  # type: ignore[arg-type]
        else:
            from aif.exact import observation_vectors

            vecs = observation_vectors(o, num_obs, dtype)  # type: ignore[arg-type]
            out.append([v.to(device).unsqueeze(0) for v in vecs])
    return out


def smooth_states(
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    prior: Sequence[Tensor] | Tensor,
    obs: Sequence[ObsLike] | Sequence[Tensor],
    actions: Tensor | Sequence[Sequence[int]] | None = None,
) -> SmoothResult:
    """Exact posterior of every step of a window given all its observations (forward-backward).

    The forward pass is exact filtering on the joint state (:func:`aif.exact.filter_states`
    with ``method="exact"``); the backward pass conditions each step on the future
    observations, ``q(s_t, s_{t+1}) = q(s_t | o_{0:t}) p(s_{t+1} | s_t, u_t)
    q(s_{t+1} | o) / q(s_{t+1} | o_{0:t})`` (Rauch-Tung-Striebel form of the HMM smoother;
    Rabiner, Proc. IEEE 77(2), 1989, eq. 24-27). Its marginals and pairwise joints are the
    statistics of exact Dirichlet learning.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1]) or (batch, ...)
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, ...)
    prior : sequence of Tensor or Tensor
        Prior of the first step: marginals ``prior[f]`` of shape (n_s[f],) (or (batch, n_s[f])),
        or a joint tensor of shape (n_s[0], ..., n_s[F-1]) (or (batch, ...)).
    obs : sequence of length T
        One observation per step (as for :func:`aif.exact.infer_states_exact`; with a batch,
        an integer tensor of shape (batch, M) or the per-modality form of
        :func:`aif.exact.observation_batch`).
    actions : Tensor or nested sequence of int, shape (T-1, F) or (T-1, batch, F)
        Control between consecutive steps.

    Returns
    -------
    SmoothResult
    """
    F = len(B)
    T = len(obs)
    if T == 0:
        raise ValueError("smooth_states: obs is empty; expected at least one time step")
    ns = [int(b.shape[-2]) for b in B]
    S = math.prod(ns)
    if isinstance(prior, Tensor):
        batched = prior.dim() == F + 1
        if tuple(prior.shape[-F:]) != tuple(ns) or prior.dim() not in (F, F + 1):
            raise ValueError(
                f"smooth_states: joint prior has shape {tuple(prior.shape)}; expected "
                f"{tuple(ns)} or (batch, {', '.join(map(str, ns))})"
            )
        p0 = prior if batched else prior.unsqueeze(0)
    else:
        if len(prior) != F:
            raise ValueError(f"smooth_states: prior has {len(prior)} factors; expected {F}")
        batched = prior[0].dim() == 2
        p0 = joint_from_marginals([p if batched else p.unsqueeze(0) for p in prior])
    dtype, device = A[0].dtype, A[0].device
    batch = int(p0.shape[0])
    if S * S > _MAX_TRANSITION_ENTRIES:
        raise ValueError(
            f"smooth_states: the joint transition matrix has {S * S} entries (states {ns}); "
            f"expected at most {_MAX_TRANSITION_ENTRIES}"
        )
    is_batched_model(A, F)  # validates the shapes of A
    num_obs = [int(a.shape[-F - 1]) for a in A]
    A_b = list(A)
    cols = _as_batch_obs(obs, num_obs, batched, dtype, device)
    act = action_steps(actions, T, F, batch if batched else None, device, "smooth_states")
    B_b = list(B)
    log_filtered: list[Tensor] = []
    transitions: list[Tensor] = []
    log_ev = torch.zeros(batch, dtype=dtype, device=device)
    log_pred = stable_log(p0.to(dtype).reshape(batch, S))
    for t in range(T):
        ll = log_likelihood_batch(A_b, cols[t], F).reshape(batch, S)
        log_joint = ll + log_pred
        step_ev = torch.logsumexp(log_joint, 1)
        log_ev = log_ev + step_ev
        log_post = log_joint - step_ev[:, None]
        log_filtered.append(log_post)
        if t + 1 < T:
            M = joint_transition(B_b, act[t]).to(dtype)
            transitions.append(M)
            log_pred = stable_log(torch.bmm(M, log_post.exp().unsqueeze(-1)).squeeze(-1))
    filtered = [lf.exp() for lf in log_filtered]
    smoothed: list[Tensor] = [filtered[-1]]
    pair_joint: list[Tensor] = []
    for t in range(T - 2, -1, -1):
        M = transitions[t]
        pred = torch.bmm(M, filtered[t].unsqueeze(-1)).squeeze(-1)  # (batch, S)
        ratio = torch.where(pred > EPS, smoothed[0] / pred.clamp_min(EPS), torch.zeros_like(pred))
        xi = ratio.unsqueeze(-1) * M * filtered[t].unsqueeze(1)  # (batch, S', S)
        smoothed.insert(0, xi.sum(1))
        pair_joint.insert(0, xi)
    joints = [g.reshape(batch, *ns) for g in smoothed]
    qs = [marginals_from_joint(j) for j in joints]
    pairwise: list[list[Tensor]] = []
    for xi in pair_joint:
        full = xi.reshape(batch, *ns, *ns)
        per_factor = []
        for f in range(F):
            keep = {1 + f, 1 + F + f}
            dims = [d for d in range(1, 2 * F + 1) if d not in keep]
            per_factor.append(full.sum(dim=dims) if dims else full)
        pairwise.append(per_factor)
    filt = [j.reshape(batch, *ns) for j in filtered]
    if not batched:
        return SmoothResult(
            [[q[0] for q in row] for row in qs],
            [j[0] for j in joints],
            [[p[0] for p in row] for row in pairwise],
            [j[0] for j in filt],
            log_ev[0],
        )
    return SmoothResult(qs, joints, pairwise, filt, log_ev)


def infer_states_mmp(
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    prior: Sequence[Tensor],
    obs: Sequence[ObsLike] | Sequence[Tensor],
    actions: Tensor | Sequence[Sequence[int]] | None = None,
    num_iter: int = 16,
    tau: float = 1.0,
) -> list[list[Tensor]]:
    """Marginal message passing over a window: mean-field beliefs of every factor and step.

    Each iteration updates every step and factor at once (from the previous iterate),
    ``log q(s_t) <- log q(s_t) + tau * (E_q[log p(o_t | s_t)] + m_fwd + m_bwd - log q(s_t))``,
    with the forward message ``log(B_{t-1} q_{t-1})`` (the prior at the first step) and the
    backward message ``log(q_{t+1} . B_t~)`` (``B_t`` normalised over the previous state), each
    weighted one half when the step has a following one: the marginal message passing of Parr
    et al., "Neuronal message passing using mean-field, Bethe, and marginal approximations",
    Sci. Rep. 9, 2019, in the form of pymdp 1.x ``run_mmp``. Beliefs start uniform. It is not
    exact: use :func:`smooth_states` for the exact posterior.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1]) or (batch, ...)
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, ...)
    prior : sequence of Tensor, ``prior[f]`` shape (n_s[f],) or (batch, n_s[f])
        Prior of the first step of the window.
    obs : sequence of length L
        One observation per step of the window (with a batch, anything
        :func:`aif.exact.observation_batch` accepts per step).
    actions : shape (L-1, F) or (L-1, batch, F)
    num_iter : int, default 16
    tau : float, default 1.0
        Step size of the update (pymdp's ``tau``).

    Returns
    -------
    list of list of Tensor
        ``qs[t][f]`` of shape (n_s[f],) or (batch, n_s[f]) for every step of the window.
    """
    if num_iter < 1:
        raise ValueError(f"infer_states_mmp: num_iter={num_iter}; expected >= 1")
    F = len(B)
    L = len(obs)
    if L == 0:
        raise ValueError("infer_states_mmp: obs is empty; expected at least one time step")
    if len(prior) != F:
        raise ValueError(f"infer_states_mmp: prior has {len(prior)} factors; expected {F}")
    batched = prior[0].dim() == 2
    dtype, device = A[0].dtype, A[0].device
    pri = [(p if batched else p.unsqueeze(0)).to(dtype) for p in prior]
    batch = int(pri[0].shape[0])
    num_obs = [int(a.shape[-F - 1]) for a in A]
    cols = _as_batch_obs(obs, num_obs, batched, dtype, device)
    act = action_steps(actions, L, F, batch if batched else None, device, "infer_states_mmp")
    lls = [log_likelihood_batch(list(A), cols[t], F) for t in range(L)]  # (batch, *ns)
    B_sel: list[list[Tensor]] = []  # B_sel[t][f]: (batch, n', n)
    B_back: list[list[Tensor]] = []  # normalised over the previous state
    for t in range(L - 1):
        sel_t, back_t = [], []
        for f, B_f in enumerate(B):
            sel = select_transitions(B_f, act[t, :, f]).to(dtype)
            sel_t.append(sel)
            back_t.append(sel / sel.sum(-1, keepdim=True).clamp_min(EPS))
        B_sel.append(sel_t)
        B_back.append(back_t)
    ln_prior = [stable_log(p) for p in pri]
    ns = [int(p.shape[1]) for p in pri]
    qs = [
        [torch.full((batch, n), 1.0 / n, dtype=dtype, device=device) for n in ns] for _ in range(L)
    ]
    for _ in range(num_iter):
        new = []
        for t in range(L):
            row = []
            for f in range(F):
                ln_q = stable_log(qs[t][f])
                if t == 0:
                    fwd = ln_prior[f]
                else:
                    fwd = stable_log(
                        torch.bmm(B_sel[t - 1][f], qs[t - 1][f].unsqueeze(-1)).squeeze(-1)
                    )
                if t + 1 < L:
                    # Each transition enters twice (forward into t+1, backward into t): half each.
                    fwd = 0.5 * fwd
                    bwd = 0.5 * stable_log(
                        torch.bmm(qs[t + 1][f].unsqueeze(1), B_back[t][f]).squeeze(1)
                    )
                else:
                    bwd = torch.zeros_like(fwd)
                ln_a = _contract_except(lls[t], qs[t], f)
                ln_new = ln_q + tau * (ln_a - ln_q + bwd + fwd)
                row.append(softmax(ln_new, dim=-1))
            new.append(row)
        qs = new
    if not batched:
        return [[q[0] for q in row] for row in qs]
    return qs
