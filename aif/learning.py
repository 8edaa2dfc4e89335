"""Dirichlet learning of the likelihood (pA), transitions (pB) and initial-state prior (pD).

Each update adds the expected sufficient statistics of one step to the concentrations, the
variational update of a Dirichlet posterior (Da Costa et al., "Active inference on discrete
state-spaces: a synthesis", J. Math. Psychol. 99, 2020, eq. 18-19; Friston et al., "Active
inference and learning", Neurosci. Biobehav. Rev. 68, 2016, eq. 8). Every function takes an
optional leading batch axis on beliefs, observations, actions and concentrations.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from aif.exact import joint_from_marginals, observation_batch
from aif.maths import EPS

__all__ = [
    "dirichlet_mean",
    "update_pA",
    "update_pB",
    "update_pD",
]


def dirichlet_mean(p: Tensor, dim: int = 0) -> Tensor:
    """Mean of a Dirichlet, ``p_i / sum_j p_j``, with concentrations floored at :data:`EPS`.

    The floor is pymdp 1.x's ``dirichlet_expected_value`` clip, so a column of zeros becomes
    uniform and structural zeros stay (numerically) zero.

    Parameters
    ----------
    p : Tensor, shape (..., n, ...)
        Concentrations; axis ``dim`` holds the outcomes.
    dim : int, default 0
        The outcome axis (0 for ``pA[m]``/``pB[f]``, 1 for a batched ``pA[m]``/``pB[f]``).

    Returns
    -------
    Tensor, shape of ``p``
    """
    p = torch.clamp(p, min=EPS)
    return p / p.sum(dim=dim, keepdim=True)


def _batched(qs: Sequence[Tensor]) -> bool:
    dims = {int(q.dim()) for q in qs}
    if dims not in ({1}, {2}):
        raise ValueError(
            f"beliefs have shapes {[tuple(q.shape) for q in qs]}; expected one (n_s[f],) vector "
            "per factor, or one (batch, n_s[f]) matrix per factor"
        )
    return dims == {2}


def update_pA(
    pA: Sequence[Tensor],
    obs: Sequence[int | Tensor] | Tensor,
    qs: Sequence[Tensor],
    lr: float = 1.0,
    *,
    joint: Tensor | None = None,
) -> list[Tensor]:
    """Likelihood learning: ``pA[m] + lr * o_m (x) q(s)`` for one observation.

    ``q(s)`` is the outer product of the factor marginals (pymdp 1.x
    ``update_obs_likelihood_dirichlet``) unless the joint posterior is given, which is exact
    when the factors are correlated.

    Parameters
    ----------
    pA : sequence of Tensor, ``pA[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1]) or (batch, ...)
    obs : sequence of int or Tensor, length M, or Tensor of int, shape (batch, M)
        The observation: an outcome index or a probability vector per modality (with a batch,
        anything :func:`aif.exact.observation_batch` accepts).
    qs : sequence of Tensor, ``qs[f]`` shape (n_s[f],) or (batch, n_s[f])
        Posterior marginals at the step of the observation.
    lr : float, default 1.0
        Learning rate (pseudo-counts per observation).
    joint : Tensor, shape (n_s[0], ..., n_s[F-1]) or (batch, ...), optional
        Joint posterior; replaces the outer product of ``qs``.

    Returns
    -------
    list of Tensor
        Updated concentrations, shaped like ``pA`` (with a batch axis when ``qs`` has one).
    """
    batched = _batched(qs)
    F = len(qs)
    num_obs = [int(p.shape[-F - 1]) for p in pA]
    dtype, device = pA[0].dtype, pA[0].device
    q = joint if joint is not None else None
    if batched:
        cols = observation_batch(obs, num_obs, dtype, device)  # type: ignore[arg-type]
        o_vecs = [
            c if c.is_floating_point() else torch.nn.functional.one_hot(c, n).to(dtype)
            for c, n in zip(cols, num_obs, strict=True)
        ]
        q_joint = q if q is not None else joint_from_marginals([x.to(dtype) for x in qs])
        out = []
        for p, o in zip(pA, o_vecs, strict=True):
            stat = o.reshape(*o.shape, *([1] * F)) * q_joint.unsqueeze(1)
            out.append(p + lr * stat)
        return out
    from aif.exact import observation_vectors

    o_vecs = observation_vectors(obs, num_obs, dtype)  # type: ignore[arg-type]
    if q is None:
        q = qs[0].to(dtype)
        for x in qs[1:]:
            q = q.unsqueeze(-1) * x.to(dtype)
    return [
        p + lr * (o.to(device).reshape(-1, *([1] * F)) * q) for p, o in zip(pA, o_vecs, strict=True)
    ]


def update_pB(
    pB: Sequence[Tensor],
    qs_next: Sequence[Tensor],
    qs_prev: Sequence[Tensor],
    action: Sequence[int] | Tensor,
    lr: float = 1.0,
    *,
    pairwise: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Transition learning: ``pB[f][:, :, u_f] + lr * q(s'_f) (x) q(s_f)`` for one transition.

    The statistic is the outer product of the marginals before and after the transition
    (pymdp 1.x ``update_state_transition_dirichlet`` without ``B_dependencies``) unless the
    pairwise posterior ``q(s'_f, s_f)`` is given (for instance from a smoother).

    Parameters
    ----------
    pB : sequence of Tensor, ``pB[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, ...)
    qs_next, qs_prev : sequence of Tensor, each ``(n_s[f],)`` or ``(batch, n_s[f])``
        Posteriors after and before the transition.
    action : sequence of int or Tensor, shape (F,) or (batch, F)
        Control applied in the transition, per factor.
    lr : float, default 1.0
    pairwise : sequence of Tensor, ``pairwise[f]`` shape (n_s[f], n_s[f]) or (batch, ...), optional
        Joint posterior of (next, previous) state of each factor.

    Returns
    -------
    list of Tensor
        Updated concentrations, shaped like ``pB`` (batched when the beliefs are).
    """
    batched = _batched(qs_next)
    dtype, device = pB[0].dtype, pB[0].device
    act = torch.as_tensor(action, device=device).long()
    F = len(pB)
    if batched:
        if act.dim() != 2 or act.shape[1] != F:
            raise ValueError(
                f"update_pB: action has shape {tuple(act.shape)}; expected (batch, {F})"
            )
    elif act.reshape(-1).shape[0] != F:
        raise ValueError(f"update_pB: action has shape {tuple(act.shape)}; expected ({F},)")
    out = []
    for f, p in enumerate(pB):
        n_u = int(p.shape[-1])
        if pairwise is not None:
            pair = pairwise[f].to(dtype)
        else:
            pair = qs_next[f].to(dtype).unsqueeze(-1) * qs_prev[f].to(dtype).unsqueeze(-2)
        if batched:
            u = torch.nn.functional.one_hot(act[:, f], n_u).to(dtype)  # (batch, n_u)
            out.append(p + lr * pair.unsqueeze(-1) * u[:, None, None, :])
        else:
            u_f = int(act.reshape(-1)[f])
            if not 0 <= u_f < n_u:
                raise ValueError(
                    f"update_pB: action[{f}] = {u_f}; expected a control in 0..{n_u - 1} "
                    f"(pB[{f}] has shape {tuple(p.shape)})"
                )
            new = p.clone()
            new[..., u_f] = new[..., u_f] + lr * pair
            out.append(new)
    return out


def update_pD(pD: Sequence[Tensor], qs: Sequence[Tensor], lr: float = 1.0) -> list[Tensor]:
    """Initial-state learning: ``pD[f] + lr * q(s_0f)`` where ``pD[f] > 0``.

    Entries with zero concentration stay zero (a state the prior rules out), as in
    pymdp.legacy ``update_state_prior_dirichlet``.

    Parameters
    ----------
    pD : sequence of Tensor, ``pD[f]`` shape (n_s[f],) or (batch, n_s[f])
    qs : sequence of Tensor, ``qs[f]`` shape (n_s[f],) or (batch, n_s[f])
        Posterior over the initial state (ideally smoothed over the episode).
    lr : float, default 1.0

    Returns
    -------
    list of Tensor
    """
    if len(pD) != len(qs):
        raise ValueError(f"update_pD: pD has {len(pD)} factors but qs has {len(qs)}")
    return [p + lr * q.to(p.dtype) * (p > 0).to(p.dtype) for p, q in zip(pD, qs, strict=True)]
