"""Closed-form state inference and variational free energy for categorical (discrete) models.

Exact Bayes on the joint state space, pymdp-style mean-field fixed-point iteration, forward
filtering over time and the VFE ``F = complexity - accuracy`` of any categorical belief.

Layout (pymdp/SPM, see ``docs/notation.md``): ``A[m]`` has shape ``(n_o[m], n_s[0], ..., n_s[F-1])``
(outcome first, one axis per hidden-state factor), ``B[f]`` has shape ``(n_s[f], n_s[f], n_u[f])``
(next state, previous state, control), priors ``D[f]`` and beliefs ``qs[f]`` have shape ``(n_s[f],)``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor

from aif.maths import (
    EPS,
    contract_factors,
    kl_categorical,
    outer_product,
    softmax,
    stable_log,
)

__all__ = [
    "CategoricalVFE",
    "action_steps",
    "ExactStateInference",
    "MeanFieldStateInference",
    "FilterResult",
    "ObsLike",
    "StatePosterior",
    "infer_states",
    "infer_states_exact",
    "infer_states_fpi",
    "log_evidence_sequence",
    "log_likelihood",
    "log_likelihood_per_modality",
    "observation_vectors",
    "filter_states",
    "is_batched_model",
    "joint_from_marginals",
    "log_likelihood_batch",
    "marginals_from_joint",
    "observation_batch",
    "predict_states",
    "predict_states_batch",
    "select_transitions",
    "vfe_categorical",
]

#: One observation per modality: an outcome index (int or 0-d tensor) or a probability vector.
ObsLike = Sequence[int | Tensor]


class StatePosterior(NamedTuple):
    """Posterior over hidden states after one observation.

    Attributes
    ----------
    qs : list of Tensor, each shape (n_s[f],)
        Marginal posterior of each factor.
    joint : Tensor of shape (n_s[0], ..., n_s[F-1]), or None
        Joint posterior (exact method only; the mean-field method has none).
    log_evidence : Tensor, shape (), or None
        ``log p(o)`` under the prior (exact method only).
    """

    qs: list[Tensor]
    joint: Tensor | None
    log_evidence: Tensor | None


class CategoricalVFE(NamedTuple):
    """Variational free energy of a categorical belief, with its two parts.

    ``vfe = complexity - accuracy`` with ``complexity = KL[q(s) || p(s)]`` and
    ``accuracy = E_q[log p(o | s)]`` (Friston et al., "Active inference: a process theory",
    Neural Comput. 29(1), 2017, eq. 1; Da Costa et al., J. Math. Psychol. 99, 2020, eq. 7).

    Attributes
    ----------
    vfe, accuracy, complexity : Tensor, shape ()
    """

    vfe: Tensor
    accuracy: Tensor
    complexity: Tensor


class FilterResult(NamedTuple):
    """Beliefs and free energies of forward filtering over ``T`` time steps.

    Attributes
    ----------
    qs : list of list of Tensor
        ``qs[t][f]``, shape (n_s[f],): posterior marginal of factor ``f`` after ``o_t``.
    priors : list of list of Tensor
        ``priors[t][f]``, shape (n_s[f],): the (empirical) prior marginal before ``o_t``.
    vfe, accuracy, complexity : Tensor, shape (T,)
        Per-step free energy of the step's posterior against the step's prior.
    log_evidence : Tensor of shape (T,), or None
        ``log p(o_t | o_{<t}, u_{<t})`` per step (exact method only); its sum is
        ``log p(o_{0:T-1} | u)``.
    joint : list of Tensor or None
        Joint posteriors per step (exact method only).
    """

    qs: list[list[Tensor]]
    priors: list[list[Tensor]]
    vfe: Tensor
    accuracy: Tensor
    complexity: Tensor
    log_evidence: Tensor | None
    joint: list[Tensor] | None


# --------------------------------------------------------------------------------------------
# Observations and likelihoods
# --------------------------------------------------------------------------------------------


def _num_states(A: Sequence[Tensor]) -> tuple[int, ...]:
    if len(A) == 0:
        raise ValueError("A is empty; expected one likelihood tensor per observation modality")
    shape = tuple(A[0].shape[1:])
    for m, A_m in enumerate(A):
        if tuple(A_m.shape[1:]) != shape:
            raise ValueError(
                f"A[{m}] has shape {tuple(A_m.shape)}; expected (n_o, {', '.join(map(str, shape))}) "
                "like A[0] (every modality spans all hidden-state factors)"
            )
    return shape


def _index_or_vector(o: object, m: int, n: int) -> int | Tensor:
    """Validate one modality's observation: an outcome index (int) or a probability vector."""
    if type(o) is int:  # the common case, without building a tensor
        if not 0 <= o < n:
            raise ValueError(f"obs[{m}] = {o}; expected an outcome index in 0..{n - 1}")
        return o
    if isinstance(o, bool) or (isinstance(o, Tensor) and o.dtype == torch.bool):
        raise ValueError(f"obs[{m}] = {o!r} is a bool; expected an outcome index in 0..{n - 1}")
    if isinstance(o, float):
        raise ValueError(
            f"obs[{m}] = {o!r} is a float; expected an integer outcome index in 0..{n - 1} "
            f"or a probability vector of shape ({n},)"
        )
    t = torch.as_tensor(o)
    if t.dim() == 0 or (t.dim() == 1 and t.numel() == 1 and (n != 1 or not t.is_floating_point())):
        if t.is_floating_point() or t.is_complex():
            raise ValueError(
                f"obs[{m}] = {t.reshape(-1).tolist()[0]!r} is a {t.dtype} scalar of shape "
                f"{tuple(t.shape)}; expected an integer outcome index in 0..{n - 1} (categorical "
                "outcomes are never rounded) or a probability vector of shape "
                f"({n},)"
            )
        idx = int(t.reshape(()).item())
        if not 0 <= idx < n:
            raise ValueError(f"obs[{m}] = {idx}; expected an outcome index in 0..{n - 1}")
        return idx
    if t.dim() == 1 and t.shape[0] == n:
        if not t.is_floating_point():
            raise ValueError(
                f"obs[{m}] is an integer vector of shape {tuple(t.shape)}; expected an outcome "
                f"index or a floating-point probability vector of shape ({n},)"
            )
        _check_probability_rows(t, f"obs[{m}]")
        return t
    raise ValueError(
        f"obs[{m}] has shape {tuple(t.shape)}; expected an outcome index or a probability "
        f"vector of shape ({n},)"
    )


def _check_probability_rows(t: Tensor, name: str) -> None:
    """Raise unless every row (last axis) of ``t`` is a probability vector."""
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} has negative or non-finite entries; expected "
            "probabilities"
        )
    err = float((t.sum(-1) - 1).abs().max()) if t.numel() else 0.0
    if err > _PROB_TOL:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not sum to one over its last axis (max "
            f"deviation {err:.3g}); expected a probability vector"
        )


#: Tolerance on "sums to one" checks of probability-vector observations.
_PROB_TOL = 1e-5


def observation_vectors(obs: ObsLike, num_obs: Sequence[int], dtype: torch.dtype) -> list[Tensor]:
    """Turn one observation per modality into probability vectors (one-hot for indices).

    Parameters
    ----------
    obs : sequence of int or Tensor, length M
        ``obs[m]`` is an outcome index (``int`` or a 0-d integer tensor) or a probability vector
        of shape ``(num_obs[m],)``. Floats are refused rather than rounded: ``1.9`` or
        ``tensor(1.0)`` is an error, not outcome 1.
    num_obs : sequence of int, length M
    dtype : torch.dtype

    Returns
    -------
    list of Tensor, each shape (num_obs[m],)

    Raises
    ------
    ValueError
        When an entry is a float or bool scalar, an index out of range, or a vector that is
        not a probability vector of the modality's size.
    """
    if len(obs) != len(num_obs):
        raise ValueError(
            f"obs has {len(obs)} entries; expected one per modality ({len(num_obs)} modalities)"
        )
    out = []
    for m, (o, n) in enumerate(zip(obs, num_obs, strict=True)):
        value = _index_or_vector(o, m, int(n))
        if isinstance(value, int):
            out.append(torch.nn.functional.one_hot(torch.tensor(value), n).to(dtype))
        else:
            out.append(value.to(dtype))
    return out


def observation_batch(
    obs: Tensor | Sequence[Tensor],
    num_obs: Sequence[int],
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Validate a batch of observations: one row of outcomes per batch element.

    Parameters
    ----------
    obs : Tensor of int, shape (batch, M), or sequence of length M
        Outcome indices of every modality, or per modality either a ``(batch,)`` integer tensor
        of indices or a ``(batch, num_obs[m])`` floating tensor of probability vectors.
    num_obs : sequence of int, length M
    dtype : torch.dtype
        Precision of probability-vector observations.
    device : torch.device or str, optional
        Where the result lives; default that of ``obs``.

    Returns
    -------
    list of Tensor
        Per modality, ``(batch,)`` int64 indices or ``(batch, num_obs[m])`` probabilities.
    """
    M = len(num_obs)
    if isinstance(obs, Tensor):
        if obs.dim() != 2 or obs.shape[1] != M or obs.is_floating_point():
            raise ValueError(
                f"obs has shape {tuple(obs.shape)} and dtype {obs.dtype}; expected an integer "
                f"tensor of shape (batch, {M}) (one outcome index per modality)"
            )
        columns: list[Tensor] = list(obs.unbind(1))
    else:
        if len(obs) != M:
            raise ValueError(
                f"obs has {len(obs)} entries; expected one per modality ({M} modalities)"
            )
        columns = [torch.as_tensor(o) for o in obs]
    out: list[Tensor] = []
    batch: int | None = None
    for m, (col, n) in enumerate(zip(columns, num_obs, strict=True)):
        if col.is_floating_point():
            if col.dim() != 2 or col.shape[1] != n:
                raise ValueError(
                    f"obs[{m}] is a {col.dtype} tensor of shape {tuple(col.shape)}; expected "
                    f"(batch, {n}) probability vectors or (batch,) integer outcome indices "
                    "(categorical outcomes are never rounded)"
                )
            _check_probability_rows(col, f"obs[{m}]")
            col = col.to(dtype=dtype, device=device)
        else:
            if col.dim() != 1 or col.dtype == torch.bool:
                raise ValueError(
                    f"obs[{m}] has shape {tuple(col.shape)} and dtype {col.dtype}; expected "
                    "(batch,) integer outcome indices"
                )
            if col.numel() and (int(col.min()) < 0 or int(col.max()) >= n):
                bad = int(col.min()) if int(col.min()) < 0 else int(col.max())
                raise ValueError(f"obs[{m}] holds outcome {bad}; expected indices in 0..{n - 1}")
            col = col.to(dtype=torch.long, device=device)
        if batch is None:
            batch = int(col.shape[0])
        elif int(col.shape[0]) != batch:
            raise ValueError(
                f"obs[{m}] has {col.shape[0]} rows but obs[0] has {batch}; expected one row per "
                "batch element in every modality"
            )
        out.append(col)
    return out


def log_likelihood_per_modality(A: Sequence[Tensor], obs: ObsLike) -> list[Tensor]:
    """Log-likelihood of each modality's observation over the joint hidden state.

    For an outcome index ``o`` this is ``log A[m][o, ...]``; for a probability vector ``o`` it is
    the expected log-likelihood ``sum_i o_i log A[m][i, ...]`` (pymdp 1.x convention,
    ``pymdp.maths.compute_log_likelihood_single_modality``).

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
    obs : sequence of int or Tensor, length M

    Returns
    -------
    list of Tensor, each shape (n_s[0], ..., n_s[F-1])
    """
    _num_states(A)
    if len(obs) != len(A):
        raise ValueError(
            f"obs has {len(obs)} entries; expected one per modality ({len(A)} modalities)"
        )
    out = []
    for m, (o, A_m) in enumerate(zip(obs, A, strict=True)):
        value = _index_or_vector(o, m, int(A_m.shape[0]))
        log_A = stable_log(A_m)
        if isinstance(value, int):
            out.append(log_A[value])  # the row of the observed outcome
        else:
            out.append(torch.tensordot(value.to(log_A), log_A, dims=1))
    return out


def log_likelihood(A: Sequence[Tensor], obs: ObsLike) -> Tensor:
    """Joint log-likelihood ``sum_m log p(o_m | s)`` (modalities are conditionally independent).

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
    obs : sequence of int or Tensor, length M

    Returns
    -------
    Tensor, shape (n_s[0], ..., n_s[F-1])
    """
    return torch.stack(log_likelihood_per_modality(A, obs)).sum(0)


def _check_prior(prior: Sequence[Tensor], num_states: Sequence[int], name: str = "prior") -> None:
    if len(prior) != len(num_states):
        raise ValueError(
            f"{name} has {len(prior)} factors; expected {len(num_states)} (one per hidden-state factor)"
        )
    for f, (p, n) in enumerate(zip(prior, num_states, strict=True)):
        if tuple(p.shape) != (n,):
            raise ValueError(f"{name}[{f}] has shape {tuple(p.shape)}; expected ({n},)")


# --------------------------------------------------------------------------------------------
# One-step inference
# --------------------------------------------------------------------------------------------


def _joint_marginals(joint: Tensor) -> list[Tensor]:
    dims = list(range(joint.dim()))
    return [joint.sum(dim=[d for d in dims if d != f]) if joint.dim() > 1 else joint for f in dims]


def infer_states_exact(
    A: Sequence[Tensor], obs: ObsLike, prior: Sequence[Tensor]
) -> StatePosterior:
    """Exact Bayes over the joint hidden state: ``q(s) = p(o | s) p(s) / p(o)``.

    With a batch (``prior[f]`` of shape (batch, n_s[f])) every batch element is updated at once,
    each with its own observation and, when ``A[m]`` has a leading batch axis, its own model.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
        Or (batch, n_o[m], n_s[0], ..., n_s[F-1]) with a batched prior.
    obs : sequence of int or Tensor, length M
        One observation per modality; with a batch, anything :func:`observation_batch`
        accepts (e.g. an integer tensor of shape (batch, M)).
    prior : sequence of Tensor, ``prior[f]`` shape (n_s[f],) or (batch, n_s[f])
        Independent prior marginals (``D`` or an empirical prior).

    Returns
    -------
    StatePosterior
        Marginals, the joint posterior and ``log p(o)`` (each with the leading batch axis of a
        batched call).
    """
    if _is_batch_call(prior):
        cols = observation_batch(
            obs,  # type: ignore[arg-type]
            [int(a.shape[-len(prior) - 1]) for a in A],
            A[0].dtype,
        )
        return _infer_exact_batch(A, cols, prior)
    ns = _num_states(A)
    _check_prior(prior, ns)
    log_joint = log_likelihood(A, obs) + _log_prior_joint(prior)
    log_evidence = torch.logsumexp(log_joint.reshape(-1), 0)
    joint = torch.exp(log_joint - log_evidence)
    return StatePosterior(_joint_marginals(joint), joint, log_evidence)


def _log_prior_joint(prior: Sequence[Tensor]) -> Tensor:
    out = stable_log(prior[0])
    for p in prior[1:]:
        out = out.unsqueeze(-1) + stable_log(p)
    return out


def infer_states_fpi(
    A: Sequence[Tensor],
    obs: ObsLike,
    prior: Sequence[Tensor],
    num_iter: int = 16,
    tol: float | None = None,
) -> list[Tensor]:
    """Mean-field posterior by fixed-point iteration (parallel updates from uniform beliefs).

    Each iteration sets, for every factor at once,
    ``log q_f <- E_{q_{-f}}[log p(o | s)] + log p(s_f)`` using the previous iterate for the other
    factors, the update of pymdp 1.x ``run_factorized_fpi`` and of pymdp.legacy
    ``run_vanilla_fpi`` (Parr et al., "Neuronal message passing using mean-field, Bethe, and
    marginal approximations", Sci. Rep. 9, 2019). With one factor the result is exact Bayes.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
        Or (batch, n_o[m], ...) with a batched prior.
    obs : sequence of int or Tensor, length M
        With a batch, anything :func:`observation_batch` accepts.
    prior : sequence of Tensor, ``prior[f]`` shape (n_s[f],) or (batch, n_s[f])
    num_iter : int, default 16
        Number of sweeps (pymdp 1.x default 16; pymdp.legacy default 10).
    tol : float, optional
        Stop early once the VFE changes by less than ``tol`` between sweeps (pymdp.legacy's
        ``dF_tol``, default there 0.001). ``None`` runs all ``num_iter`` sweeps. Not available
        with a batch (every element runs ``num_iter`` sweeps, as in pymdp 1.x).

    Returns
    -------
    list of Tensor, each shape (n_s[f],) (or (batch, n_s[f]))
    """
    if num_iter < 1:
        raise ValueError(f"infer_states_fpi: num_iter={num_iter}; expected >= 1")
    if _is_batch_call(prior):
        if tol is not None:
            raise ValueError(
                f"infer_states_fpi: tol={tol} with a batched prior; expected tol=None (a batch "
                "runs num_iter sweeps)"
            )
        cols = observation_batch(
            obs,  # type: ignore[arg-type]
            [int(a.shape[-len(prior) - 1]) for a in A],
            A[0].dtype,
        )
        return _infer_fpi_batch(A, cols, prior, num_iter)
    ns = _num_states(A)
    _check_prior(prior, ns)
    ll = log_likelihood(A, obs)
    log_prior = [stable_log(p) for p in prior]
    if len(ns) == 1:
        return [softmax(ll + log_prior[0])]
    qs = [torch.full((n,), 1.0 / n, dtype=ll.dtype, device=ll.device) for n in ns]
    prev_vfe: Tensor | None = None
    for _ in range(num_iter):
        # Parallel (Jacobi) sweep: every factor reads the previous iterate of the others.
        qs = [softmax(_marginal_ll(ll, qs, f) + log_prior[f]) for f in range(len(ns))]
        if tol is not None:
            vfe = _mean_field_vfe(qs, prior, ll).vfe
            if prev_vfe is not None and torch.abs(prev_vfe - vfe) < tol:
                break
            prev_vfe = vfe
    return qs


def _marginal_ll(ll: Tensor, qs: Sequence[Tensor], f: int) -> Tensor:
    """``E_{q_{-f}}[ll]`` as a function of ``s_f``."""
    return contract_factors(ll, list(qs), skip=f)


def infer_states(
    A: Sequence[Tensor],
    obs: ObsLike,
    prior: Sequence[Tensor],
    method: Literal["exact", "fpi"] = "exact",
    num_iter: int = 16,
    tol: float | None = None,
) -> StatePosterior:
    """Posterior over hidden states after one observation, exact or mean-field.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
    obs : sequence of int or Tensor, length M
    prior : sequence of Tensor, ``prior[f]`` shape (n_s[f],)
    method : {"exact", "fpi"}, default "exact"
        ``"exact"``: joint Bayes (marginals of the true posterior). ``"fpi"``: mean-field
        fixed-point iteration as in pymdp.
    num_iter, tol
        Passed to :func:`infer_states_fpi`.

    Returns
    -------
    StatePosterior
    """
    if method == "exact":
        return infer_states_exact(A, obs, prior)
    if method == "fpi":
        return StatePosterior(infer_states_fpi(A, obs, prior, num_iter, tol), None, None)
    raise ValueError(f"infer_states: method={method!r}; expected 'exact' or 'fpi'")


# --------------------------------------------------------------------------------------------
# Batches: a leading batch axis on beliefs, observations and (optionally) the model
# --------------------------------------------------------------------------------------------


def is_batched_model(A: Sequence[Tensor], num_factors: int) -> bool:
    """Whether the likelihoods carry a leading batch axis (one model per batch element).

    Parameters
    ----------
    A : sequence of Tensor
        ``A[m]`` of shape (n_o[m], n_s[0], ..., n_s[F-1]) or (batch, n_o[m], n_s[0], ...).
    num_factors : int
        F, the number of hidden-state factors.

    Returns
    -------
    bool
    """
    dims = {int(a.dim()) for a in A}
    if dims == {num_factors + 1}:
        return False
    if dims == {num_factors + 2}:
        return True
    raise ValueError(
        f"A has tensors of shapes {[tuple(a.shape) for a in A]}; expected every A[m] to have "
        f"{num_factors + 1} axes (n_o, one per factor) or {num_factors + 2} (batch first)"
    )


def _check_batch_prior(prior: Sequence[Tensor], A: Sequence[Tensor]) -> tuple[int, tuple[int, ...]]:
    """Batch size and factor sizes of a batched prior, checked against ``A``."""
    if len(prior) == 0 or any(p.dim() != 2 for p in prior):
        raise ValueError(
            f"prior has shapes {[tuple(p.shape) for p in prior]}; expected one (batch, n_s[f]) "
            "tensor per factor"
        )
    batch = int(prior[0].shape[0])
    ns = tuple(int(p.shape[1]) for p in prior)
    for f, p in enumerate(prior):
        if int(p.shape[0]) != batch:
            raise ValueError(
                f"prior[{f}] has shape {tuple(p.shape)}; expected ({batch}, {ns[f]}) like prior[0]"
            )
    batched = is_batched_model(A, len(ns))
    for m, A_m in enumerate(A):
        tail = tuple(A_m.shape[-len(ns) :])
        if tail != ns or (batched and int(A_m.shape[0]) != batch):
            lead = f"{batch}, " if batched else ""
            raise ValueError(
                f"A[{m}] has shape {tuple(A_m.shape)}; expected ({lead}n_o, "
                f"{', '.join(map(str, ns))}) to match the batched prior"
            )
    return batch, ns


def log_likelihood_batch(A: Sequence[Tensor], obs: Sequence[Tensor], num_factors: int) -> Tensor:
    """Joint log-likelihood ``sum_m log p(o_m | s)`` of a batch of observations.

    Parameters
    ----------
    A : sequence of Tensor
        ``A[m]`` of shape (n_o[m], *n_s) shared by the batch, or (batch, n_o[m], *n_s).
    obs : sequence of Tensor, length M
        From :func:`observation_batch`: ``(batch,)`` indices or ``(batch, n_o[m])``
        probability vectors per modality.
    num_factors : int

    Returns
    -------
    Tensor, shape (batch, n_s[0], ..., n_s[F-1])
    """
    batched = is_batched_model(A, num_factors)
    out: Tensor | None = None
    for A_m, o in zip(A, obs, strict=True):
        log_A = stable_log(A_m)
        if o.is_floating_point():
            o = o.to(log_A.dtype)
            if batched:
                ll = (o.reshape(*o.shape, *([1] * num_factors)) * log_A).sum(1)
            else:
                ll = torch.tensordot(o, log_A, dims=1)
        elif batched:
            ll = log_A[torch.arange(log_A.shape[0], device=log_A.device), o]
        else:
            ll = log_A[o]
        out = ll if out is None else out + ll
    assert out is not None
    return out


def _factor_view(q: Tensor, f: int, num_factors: int) -> Tensor:
    """``q`` of shape (batch, n_f) reshaped to broadcast along axis ``1 + f`` of a joint tensor."""
    shape = [q.shape[0]] + [1] * num_factors
    shape[1 + f] = q.shape[1]
    return q.reshape(shape)


def joint_from_marginals(qs: Sequence[Tensor]) -> Tensor:
    """Joint of independent factors for a batch: ``q(s) = prod_f q_f(s_f)``.

    Parameters
    ----------
    qs : sequence of Tensor, each shape (batch, n_s[f])

    Returns
    -------
    Tensor, shape (batch, n_s[0], ..., n_s[F-1])
    """
    F = len(qs)
    out = _factor_view(qs[0], 0, F)
    for f in range(1, F):
        out = out * _factor_view(qs[f], f, F)
    return out


def marginals_from_joint(joint: Tensor) -> list[Tensor]:
    """Factor marginals of a batch of joint beliefs.

    Parameters
    ----------
    joint : Tensor, shape (batch, n_s[0], ..., n_s[F-1])

    Returns
    -------
    list of Tensor, each shape (batch, n_s[f])
    """
    F = joint.dim() - 1
    return [
        joint.sum(dim=[1 + g for g in range(F) if g != f]) if F > 1 else joint for f in range(F)
    ]


def _contract_except(ll: Tensor, qs: Sequence[Tensor], f: int) -> Tensor:
    """``E_{q_{-f}}[ll]`` for a batch: ``ll`` (batch, *n_s) -> (batch, n_s[f])."""
    F = len(qs)
    out = ll
    for g in reversed(range(F)):
        if g != f:
            # Axes left: batch, factors 0..g, and f when f > g (later factors are summed out).
            n_axes = g + 1 + (1 if f > g else 0)
            out = (out * _factor_view(qs[g], g, n_axes)).sum(1 + g)
    return out


def _infer_exact_batch(
    A: Sequence[Tensor], obs: Sequence[Tensor], prior: Sequence[Tensor]
) -> StatePosterior:
    _, ns = _check_batch_prior(prior, A)
    F = len(ns)
    log_joint = log_likelihood_batch(A, obs, F)
    for f, p in enumerate(prior):
        log_joint = log_joint + _factor_view(stable_log(p.to(log_joint.dtype)), f, F)
    flat = log_joint.reshape(log_joint.shape[0], -1)
    log_evidence = torch.logsumexp(flat, 1)
    joint = torch.exp(flat - log_evidence[:, None]).reshape(log_joint.shape)
    return StatePosterior(marginals_from_joint(joint), joint, log_evidence)


def _infer_fpi_batch(
    A: Sequence[Tensor], obs: Sequence[Tensor], prior: Sequence[Tensor], num_iter: int
) -> list[Tensor]:
    batch, ns = _check_batch_prior(prior, A)
    ll = log_likelihood_batch(A, obs, len(ns))
    log_prior = [stable_log(p.to(ll.dtype)) for p in prior]
    if len(ns) == 1:
        return [softmax(ll + log_prior[0], dim=-1)]
    qs = [torch.full((batch, n), 1.0 / n, dtype=ll.dtype, device=ll.device) for n in ns]
    for _ in range(num_iter):
        qs = [softmax(_contract_except(ll, qs, f) + log_prior[f], dim=-1) for f in range(len(ns))]
    return qs


def _is_batch_call(prior: Sequence[Tensor]) -> bool:
    return len(prior) > 0 and isinstance(prior[0], Tensor) and prior[0].dim() == 2


# --------------------------------------------------------------------------------------------
# Variational free energy
# --------------------------------------------------------------------------------------------


def _mean_field_vfe(
    qs: Sequence[Tensor], prior: Sequence[Tensor], ll: Tensor | None
) -> CategoricalVFE:
    complexity = torch.stack([kl_categorical(q, p) for q, p in zip(qs, prior, strict=True)]).sum()
    accuracy = contract_factors(ll, list(qs)) if ll is not None else torch.zeros_like(complexity)
    return CategoricalVFE(complexity - accuracy, accuracy, complexity)


def vfe_categorical(
    q: Sequence[Tensor] | Tensor,
    prior: Sequence[Tensor],
    A: Sequence[Tensor] | None = None,
    obs: ObsLike | None = None,
) -> CategoricalVFE:
    """Variational free energy ``F[q] = KL[q(s) || p(s)] - E_q[log p(o | s)]`` in closed form.

    For the exact posterior, ``F = -log p(o)``; for any other ``q`` it is larger by
    ``KL[q || p(s | o)]``.

    Parameters
    ----------
    q : sequence of Tensor (``q[f]`` shape (n_s[f],)) or Tensor of shape (n_s[0], ..., n_s[F-1])
        A mean-field belief (one marginal per factor) or a joint belief.
    prior : sequence of Tensor, ``prior[f]`` shape (n_s[f],)
        Independent prior marginals.
    A : sequence of Tensor, optional
        ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1]); without it the accuracy is zero.
    obs : sequence of int or Tensor, optional
        One observation per modality; required with ``A``.

    Returns
    -------
    CategoricalVFE
        ``(vfe, accuracy, complexity)``, each shape ().
    """
    if (A is None) != (obs is None):
        raise ValueError("vfe_categorical: pass both A and obs, or neither")
    ll = log_likelihood(A, obs) if A is not None and obs is not None else None
    if isinstance(q, Tensor):
        ns = tuple(q.shape)
        _check_prior(prior, ns)
        if ll is not None and tuple(ll.shape) != ns:
            raise ValueError(
                f"vfe_categorical: joint q has shape {ns}; expected {tuple(ll.shape)} to match A"
            )
        log_p = _log_prior_joint(prior)
        complexity = (q * (stable_log(q) - log_p)).sum()
        accuracy = (q * ll).sum() if ll is not None else torch.zeros_like(complexity)
        return CategoricalVFE(complexity - accuracy, accuracy, complexity)
    ns = tuple(int(x.shape[0]) for x in q)
    _check_prior(prior, ns)
    if ll is not None and tuple(ll.shape) != ns:
        raise ValueError(
            f"vfe_categorical: q has factor sizes {ns}; expected {tuple(ll.shape)} to match A"
        )
    return _mean_field_vfe(q, prior, ll)


# --------------------------------------------------------------------------------------------
# Prediction and filtering
# --------------------------------------------------------------------------------------------


def predict_states(
    qs: Sequence[Tensor], B: Sequence[Tensor], action: Sequence[int] | Tensor
) -> list[Tensor]:
    """Push beliefs one step through the transitions: ``q'(s'_f) = sum_s B[f][s', s, u_f] q(s_f)``.

    With a batch, ``qs[f]`` has shape (batch, n_s[f]), ``action`` shape (batch, F) and ``B[f]``
    is shared or has a leading batch axis.

    Parameters
    ----------
    qs : sequence of Tensor, ``qs[f]`` shape (n_s[f],) or (batch, n_s[f])
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, ...)
    action : sequence of int or Tensor, shape (F,) or (batch, F)
        Control index per factor.

    Returns
    -------
    list of Tensor, each shape (n_s[f],) or (batch, n_s[f])
    """
    if _is_batch_call(qs):
        return predict_states_batch(qs, B, torch.as_tensor(action))
    act = torch.as_tensor(action).reshape(-1)
    if act.shape[0] != len(B) or len(qs) != len(B):
        raise ValueError(
            f"predict_states: action has shape {tuple(act.shape)} and qs has {len(qs)} factors; "
            f"expected ({len(B)},) and {len(B)} (one per factor of B)"
        )
    return [B_f[:, :, int(u)] @ q for B_f, q, u in zip(B, qs, act.tolist(), strict=True)]


def predict_states_batch(
    qs: Sequence[Tensor], B: Sequence[Tensor], action: Tensor | Sequence[Sequence[int]]
) -> list[Tensor]:
    """Batched :func:`predict_states`: ``q'_b(s'_f) = sum_s B[f][(b,) s', s, u_bf] q_b(s_f)``.

    Parameters
    ----------
    qs : sequence of Tensor, ``qs[f]`` shape (batch, n_s[f])
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, n_s[f], n_s[f], n_u[f])
    action : Tensor of int, shape (batch, F)

    Returns
    -------
    list of Tensor, each shape (batch, n_s[f])
    """
    batch = int(qs[0].shape[0])
    act = torch.as_tensor(action, device=qs[0].device)
    if act.dim() != 2 or tuple(act.shape) != (batch, len(B)) or len(qs) != len(B):
        raise ValueError(
            f"predict_states: action has shape {tuple(act.shape)} and qs has {len(qs)} factors; "
            f"expected ({batch}, {len(B)}) and {len(B)} (one control per factor and batch element)"
        )
    act = act.long()
    out = []
    for f, (B_f, q) in enumerate(zip(B, qs, strict=True)):
        B_sel = select_transitions(B_f, act[:, f])
        out.append(torch.bmm(B_sel, q.to(B_sel.dtype).unsqueeze(-1)).squeeze(-1))
    return out


def select_transitions(B_f: Tensor, action_f: Tensor) -> Tensor:
    """Each batch element's transition matrix under its own control.

    Parameters
    ----------
    B_f : Tensor
        ``B[f]`` of shape (n_s, n_s, n_u) shared by the batch, or (batch, n_s, n_s, n_u).
    action_f : Tensor of int, shape (batch,)
        Control of factor ``f`` per batch element.

    Returns
    -------
    Tensor, shape (batch, n_s, n_s)
        ``B[f][(b,) :, :, action_f[b]]``: next state first, as in ``B``.
    """
    if B_f.dim() == 4:
        rows = torch.arange(B_f.shape[0], device=B_f.device)
        return B_f[rows, :, :, action_f]
    return B_f.permute(2, 0, 1)[action_f]


def _predict_joint(joint: Tensor, B: Sequence[Tensor], action: Sequence[int]) -> Tensor:
    """Push a joint belief through factor-wise transitions (each ``B[f]`` acts on its own axis)."""
    out = joint
    for f, (B_f, u) in enumerate(zip(B, action, strict=True)):
        out = torch.movedim(torch.tensordot(B_f[:, :, int(u)], out, dims=([1], [f])), 0, f)
    return out


def _action_rows(
    actions: Tensor | Sequence[Sequence[int]] | None, T: int, F: int
) -> list[list[int]]:
    if T <= 1:
        return []
    act = action_steps(actions, T, F, name="filter_states")
    return [[int(u) for u in row] for row in act[:, 0].tolist()]


def action_steps(
    actions: Tensor | Sequence[Sequence[int]] | None,
    T: int,
    F: int,
    batch: int | None = None,
    device: torch.device | str | None = None,
    name: str = "actions",
) -> Tensor:
    """The controls between ``T`` steps as an int64 tensor of shape (T-1, batch, F), checked.

    Parameters
    ----------
    actions : Tensor or nested sequence of int, optional
        Shape (T-1, F) for one agent (or (T-1,) with one factor), (T-1, batch, F) for a batch;
        extra rows are ignored; ``None`` only when ``T <= 1``.
    T, F : int
        Number of steps and of factors.
    batch : int, optional
        Batch size of a batched call; ``None`` for one agent (the result has batch 1).
    device : torch.device or str, optional
    name : str
        Who asks, for the error message.

    Returns
    -------
    Tensor of int64, shape (max(T-1, 0), batch or 1, F)
    """
    if T <= 1:
        return torch.zeros(0, batch or 1, F, dtype=torch.long, device=device)
    if actions is None:
        raise ValueError(f"{name}: {T} steps need actions of shape ({T - 1}, {F}); got None")
    act = torch.as_tensor(actions, device=device).long()
    if batch is None:
        if act.dim() == 1 and F == 1:
            act = act.unsqueeze(-1)
        if act.dim() != 2 or act.shape[1] != F or act.shape[0] < T - 1:
            raise ValueError(
                f"{name}: actions have shape {tuple(act.shape)}; expected ({T - 1}, {F}) (one "
                "control per factor for each transition)"
            )
        return act[: T - 1].unsqueeze(1)
    if act.dim() != 3 or act.shape[1] != batch or act.shape[2] != F or act.shape[0] < T - 1:
        raise ValueError(
            f"{name}: actions have shape {tuple(act.shape)}; expected ({T - 1}, {batch}, {F}) "
            "for a batch"
        )
    return act[: T - 1]


def filter_states(
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    D: Sequence[Tensor],
    obs: Sequence[ObsLike],
    actions: Tensor | Sequence[Sequence[int]] | None = None,
    method: Literal["exact", "fpi"] = "exact",
    num_iter: int = 16,
    tol: float | None = None,
) -> FilterResult:
    """Forward filtering: prior at ``t+1`` is the posterior at ``t`` pushed through ``B``.

    ``"exact"`` filters the joint state (the HMM forward algorithm, Rabiner 1989, eq. 19-20),
    so its per-step ``log_evidence`` sums to ``log p(o_{0:T-1} | u)``. ``"fpi"`` keeps one
    marginal per factor and updates it by :func:`infer_states_fpi`, as pymdp's agent does
    with ``inference_algo="fpi"``.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f])
    D : sequence of Tensor, ``D[f]`` shape (n_s[f],)
    obs : sequence of length T of observations (one per modality each)
    actions : Tensor or nested sequence of int, shape (T-1, F), optional
        ``actions[t][f]`` is the control applied between ``t`` and ``t+1``.
    method : {"exact", "fpi"}, default "exact"
    num_iter, tol
        Passed to :func:`infer_states_fpi` for ``method="fpi"``.

    Returns
    -------
    FilterResult
    """
    ns = _num_states(A)
    _check_prior(D, ns, "D")
    T = len(obs)
    if T == 0:
        raise ValueError("filter_states: obs is empty; expected at least one time step")
    rows = _action_rows(actions, T, len(ns))
    qs_all: list[list[Tensor]] = []
    priors: list[list[Tensor]] = []
    vfe, acc, comp, log_ev, joints = [], [], [], [], []
    prior = [d for d in D]
    joint_prior = outer_product(prior)
    for t in range(T):
        ll = log_likelihood(A, obs[t])
        if method == "exact":
            log_joint = ll + stable_log(joint_prior)
            ev = torch.logsumexp(log_joint.reshape(-1), 0)
            joint = torch.exp(log_joint - ev)
            qs = _joint_marginals(joint)
            priors.append(_joint_marginals(joint_prior))
            comp_t = (joint * (stable_log(joint) - stable_log(joint_prior))).sum()
            acc_t = (joint * ll).sum()
            log_ev.append(ev)
            joints.append(joint)
            if t + 1 < T:
                joint_prior = _predict_joint(joint, B, rows[t])
        elif method == "fpi":
            qs = infer_states_fpi(A, obs[t], prior, num_iter, tol)
            priors.append(prior)
            parts = _mean_field_vfe(qs, prior, ll)
            comp_t, acc_t = parts.complexity, parts.accuracy
            if t + 1 < T:
                prior = predict_states(qs, B, rows[t])
        else:
            raise ValueError(f"filter_states: method={method!r}; expected 'exact' or 'fpi'")
        qs_all.append(qs)
        vfe.append(comp_t - acc_t)
        acc.append(acc_t)
        comp.append(comp_t)
    return FilterResult(
        qs=qs_all,
        priors=priors,
        vfe=torch.stack(vfe),
        accuracy=torch.stack(acc),
        complexity=torch.stack(comp),
        log_evidence=torch.stack(log_ev) if method == "exact" else None,
        joint=joints if method == "exact" else None,
    )


def log_evidence_sequence(
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    D: Sequence[Tensor],
    obs: Sequence[ObsLike],
    actions: Tensor | Sequence[Sequence[int]] | None = None,
) -> Tensor:
    """``log p(o_{0:T-1} | u_{0:T-2})`` by the forward algorithm on the joint state.

    ``-log_evidence_sequence(...)`` is the minimum over all beliefs of the free energy of the
    whole sequence, the value a Pyro ``TraceEnum_ELBO`` reaches at its optimum.

    Parameters
    ----------
    A, B, D, obs, actions
        As in :func:`filter_states`.

    Returns
    -------
    Tensor, shape ()
    """
    result = filter_states(A, B, D, obs, actions, method="exact")
    assert result.log_evidence is not None
    return result.log_evidence.sum()


# --------------------------------------------------------------------------------------------
# Precompiled exact update
# --------------------------------------------------------------------------------------------

#: Largest log-likelihood table (joint outcomes x joint states, entries) that
#: :class:`ExactStateInference` builds; bigger models gather one row per modality instead.
_MAX_TABLE_ENTRIES = 1_000_000
#: Largest message matrix over the outer product of the other factors' beliefs (entries)
#: that :class:`MeanFieldStateInference` builds for one observation.
_MAX_OUTER_ENTRIES = 50_000


class _LikelihoodTables(NamedTuple):
    """What the precompiled updates read ``log p(o | s)`` from (see :func:`_likelihood_tables`)."""

    num_states: tuple[int, ...]
    num_obs: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device
    batch_size: int | None
    log_A: list[Tensor]  # per modality, (*lead, n_o[m], prod n_s)
    table: Tensor | None  # (*lead, prod n_o, prod n_s), rows by mixed-radix joint outcome
    radix: Tensor  # (M,) int64, row = sum_m o_m * radix[m]
    rows: Tensor | None  # (batch,) arange, with batched models


def _likelihood_tables(A: Sequence[Tensor], batched: bool, who: str) -> _LikelihoodTables:
    """Validate ``A`` once and build the log-likelihood of every joint outcome.

    The table ``log p(o | s) = sum_m log A[m][o_m, s]`` has one row per joint outcome (its
    mixed-radix index) unless it would exceed ``_MAX_TABLE_ENTRIES`` (times 16 for a batch of
    models); then only ``log A[m]`` per modality is kept.
    """
    if batched:
        if len(A) == 0 or any(a.dim() < 2 for a in A):
            raise ValueError(
                f"{who}: batched=True but A has shapes "
                f"{[tuple(a.shape) for a in A]}; expected (batch, n_o, n_s[0], ...) each"
            )
        batch = int(A[0].shape[0])
        for m, A_m in enumerate(A):
            if int(A_m.shape[0]) != batch:
                raise ValueError(
                    f"{who}: A[{m}] has shape {tuple(A_m.shape)}; expected a "
                    f"leading batch axis of {batch} like A[0]"
                )
        ns = _num_states([a[0] for a in A])
    else:
        batch = 0
        ns = _num_states(A)
    dtype = A[0].dtype
    device = A[0].device
    for m, A_m in enumerate(A):
        if A_m.dtype != dtype or A_m.device != device:
            raise ValueError(
                f"{who}: A[{m}] has dtype {A_m.dtype} on {A_m.device}; expected "
                f"{dtype} on {device} like A[0]"
            )
        if bool((A_m < 0).any()) or bool((A_m > 1).any()):
            raise ValueError(
                f"{who}: A[{m}] of shape {tuple(A_m.shape)} has entries outside "
                f"[0, 1] (min {float(A_m.min()):.3g}, max {float(A_m.max()):.3g}); expected "
                "probabilities"
            )
    num_states = tuple(int(n) for n in ns)
    num_obs = tuple(int(A_m.shape[1 if batched else 0]) for A_m in A)
    n_joint = math.prod(num_states)
    lead = (batch,) if batched else ()
    log_A = [
        stable_log(A_m).reshape(*lead, n_o, n_joint) for A_m, n_o in zip(A, num_obs, strict=True)
    ]
    n_table = n_joint * math.prod(num_obs)
    table: Tensor | None = None
    M = len(A)
    if n_table * max(1, batch) <= _MAX_TABLE_ENTRIES * (1 if not batched else 16):
        table = log_A[0].reshape(*lead, -1, *([1] * (M - 1)), n_joint)
        for m in range(1, M):
            shape = [*lead] + [1] * M + [n_joint]
            shape[len(lead) + m] = num_obs[m]
            table = table + log_A[m].reshape(shape)
        # Flat rows, addressed by the mixed-radix index of the joint outcome.
        table = table.reshape(*lead, -1, n_joint).contiguous()
    radix = [1] * M
    for m in range(M - 2, -1, -1):
        radix[m] = radix[m + 1] * num_obs[m + 1]
    return _LikelihoodTables(
        num_states=num_states,
        num_obs=num_obs,
        dtype=dtype,
        device=device,
        batch_size=batch if batched else None,
        log_A=log_A,
        table=table,
        radix=torch.tensor(radix, dtype=torch.long, device=device),
        rows=torch.arange(max(1, batch), device=device) if batched else None,
    )


class ExactStateInference:
    """Exact Bayes over the joint hidden state, precompiled from ``A`` for repeated updates.

    Gives the same posterior as :func:`infer_states_exact` (to rounding) at a fraction of the
    cost per call: the model is validated and its tables are built once here, and
    :meth:`update` then runs a fixed, short sequence of tensor operations with no checks.

    Built once:

    * ``log p(o | s) = sum_m log A[m][o_m, s]`` for every joint outcome ``o`` as one table of
      shape ``(n_o[0], ..., n_o[M-1], prod n_s)`` (or, when that table would exceed
      ``_MAX_TABLE_ENTRIES``, ``log A[m]`` flattened to ``(n_o[m], prod n_s)`` per modality);
    * a 0/1 matrix ``I`` of shape ``(prod n_s, sum n_s)`` with ``I[s, offset_f + s_f] = 1``, so
      that ``I @ concat_f(log D_f)`` is the log prior of every joint state and
      ``joint @ I`` is every factor's marginal, each in one matrix product.

    :meth:`update` takes one observation (a list of ``int``) or a batch (an integer tensor of
    shape (batch, M) with priors of shape (batch, n_s[f])); a batch is updated in the same
    handful of operations as one observation. With ``batched=True`` every batch element has its
    own likelihood (``A[m]`` of shape (batch, n_o[m], ...)), as a population of agents that
    learn.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
        Likelihoods with entries in ``[0, 1]``; their dtype and device are those of every
        table and result. With ``batched=True``, shape (batch, n_o[m], n_s[0], ..., n_s[F-1]).
    batched : bool, default False
        Whether ``A`` carries a leading batch axis (one model per batch element).

    Attributes
    ----------
    num_states : tuple of int, length F
    num_obs : tuple of int, length M
    dtype : torch.dtype
    device : torch.device
    batch_size : int or None
        Number of models when ``batched=True``.

    Notes
    -----
    Log-probabilities are floored at :data:`aif.maths.EPS` exactly as in
    :func:`infer_states_exact`, so every joint log-probability is finite and
    ``log p(o) = log p(o, s) - log q(s)`` can be read off any single state ``s``.
    """

    def __init__(self, A: Sequence[Tensor], batched: bool = False) -> None:
        tables = _likelihood_tables(A, batched, "ExactStateInference")
        self.num_states: tuple[int, ...] = tables.num_states
        self.num_obs: tuple[int, ...] = tables.num_obs
        self.dtype: torch.dtype = tables.dtype
        self.device: torch.device = tables.device
        self.batch_size: int | None = tables.batch_size
        self._table: Tensor | None = tables.table
        self._log_A = tables.log_A
        self._radix = tables.radix
        self._rows = tables.rows
        dtype, device = self.dtype, self.device
        n_joint = math.prod(self.num_states)
        ind = torch.zeros(n_joint, sum(self.num_states), dtype=dtype, device=device)
        grids = torch.meshgrid(
            *[torch.arange(n, device=device) for n in self.num_states], indexing="ij"
        )
        offset = 0
        for f, n in enumerate(self.num_states):
            ind[torch.arange(n_joint, device=device), offset + grids[f].reshape(-1)] = 1.0
            offset += n
        self._ind = ind
        self._ind_T = ind.T.contiguous()
        # Row blocks of I^T, one per factor: marginal_f = I_f^T @ joint (one small product per
        # factor is cheaper than one product followed by a split into views).
        self._marginal_maps = [
            block.T.contiguous() for block in ind.split(list(self.num_states), dim=1)
        ]

    def update(self, obs: Sequence[int] | Tensor, prior: Sequence[Tensor]) -> StatePosterior:
        """Posterior after one observation: ``q(s) = p(o | s) p(s) / p(o)``.

        Only the outcome range is checked: ``obs`` must hold one outcome index per modality
        (plain ``int``, in ``0..n_o[m]-1``; anything else, including a negative index, raises
        ``IndexError``) and ``prior`` one probability vector per factor, in :attr:`dtype`. Use
        :func:`infer_states_exact` for probability-vector observations or fully checked inputs.

        Parameters
        ----------
        obs : sequence of int, length M, or Tensor of int, shape (batch, M)
            One observation, or one per batch element (then nothing is checked: indices out of
            range give a wrong row or an indexing error).
        prior : sequence of Tensor, ``prior[f]`` shape (n_s[f],) or (batch, n_s[f])
            Independent prior marginals (``D`` or an empirical prior).

        Returns
        -------
        StatePosterior
            Marginals ``qs[f]`` of shape (n_s[f],), the joint posterior of shape
            (n_s[0], ..., n_s[F-1]) and ``log p(o)`` of shape (); each with a leading batch
            axis for a batch.
        """
        if isinstance(obs, Tensor):
            return self._update_batch(obs, prior)
        if self.batch_size is not None:
            raise ValueError(
                f"ExactStateInference.update: obs={list(obs)} for a batch of "
                f"{self.batch_size} models; expected an integer tensor of shape "
                f"({self.batch_size}, {len(self.num_obs)})"
            )
        if self._table is not None:
            # Mixed-radix row index of the joint outcome (Horner's scheme).
            row = 0
            for o, n in zip(obs, self.num_obs, strict=True):
                if type(o) is not int or not 0 <= o < n:
                    raise IndexError(
                        f"obs = {list(obs)}; expected integer outcome indices below {n}"
                    )
                row = row * n + o
            ll = self._table[row]
        else:
            for o, n in zip(obs, self.num_obs, strict=True):
                if type(o) is not int or not 0 <= o < n:
                    raise IndexError(
                        f"obs = {list(obs)}; expected integer outcome indices below {n}"
                    )
            ll = self._log_A[0][obs[0]]
            for m in range(1, len(self._log_A)):
                ll = ll + self._log_A[m][obs[m]]
        log_prior = torch.cat(tuple(prior)).clamp_min_(EPS).log_()
        log_joint = ll.addmv(self._ind, log_prior)
        # log_softmax is one fused kernel; logsumexp costs about twice as much at these sizes.
        log_post = log_joint.log_softmax(0)
        joint = log_post.exp()
        # log p(o) = log p(o, s) - log q(s) for any s; both are finite thanks to the floor.
        log_evidence = log_joint.sub(log_post)[0]
        return StatePosterior(
            [ind.mv(joint) for ind in self._marginal_maps],
            joint.view(*self.num_states),
            log_evidence,
        )

    def _update_batch(self, obs: Tensor, prior: Sequence[Tensor]) -> StatePosterior:
        """The batched update: a handful of operations for the whole batch."""
        if self._table is not None:
            rows = obs.mv(self._radix) if obs.shape[1] > 1 else obs[:, 0]
            if self._rows is not None:
                ll = self._table[self._rows, rows]
            else:
                ll = self._table.index_select(0, rows)
        elif self._rows is not None:
            ll = self._log_A[0][self._rows, obs[:, 0]]
            for m in range(1, len(self._log_A)):
                ll = ll + self._log_A[m][self._rows, obs[:, m]]
        else:
            ll = self._log_A[0].index_select(0, obs[:, 0])
            for m in range(1, len(self._log_A)):
                ll = ll + self._log_A[m].index_select(0, obs[:, m])
        log_prior = torch.cat(tuple(prior), dim=1).clamp_min_(EPS).log_()
        log_joint = torch.addmm(ll, log_prior, self._ind_T)
        log_post = log_joint.log_softmax(1)
        joint = log_post.exp()
        log_evidence = log_joint[:, 0] - log_post[:, 0]
        marginals = joint.mm(self._ind).split(list(self.num_states), dim=1)
        return StatePosterior(list(marginals), joint.view(-1, *self.num_states), log_evidence)

    def log_likelihood(self, obs: Tensor) -> Tensor:
        """``log p(o | s)`` of a batch of observations over the joint state, read off the tables.

        Parameters
        ----------
        obs : Tensor of int, shape (batch, M)
            Outcome indices (not checked).

        Returns
        -------
        Tensor, shape (batch, prod n_s)
        """
        return _table_rows(self._table, self._log_A, self._radix, self._rows, obs)

    def update_joint(self, obs: Tensor, joint_prior: Tensor) -> StatePosterior:
        """Posterior of a batch from a joint prior (exact filtering): ``q(s) ~ p(o | s) p(s)``.

        The step of forward filtering on the joint state, whose prior (the previous joint
        posterior pushed through ``B``) is no product of marginals.

        Parameters
        ----------
        obs : Tensor of int, shape (batch, M)
            Outcome indices (not checked).
        joint_prior : Tensor, shape (batch, n_s[0], ..., n_s[F-1]) or (batch, prod n_s)

        Returns
        -------
        StatePosterior
            Marginals ``(batch, n_s[f])``, the joint posterior ``(batch, n_s[0], ...)`` and
            ``log p(o)`` of shape (batch,).
        """
        batch = int(obs.shape[0])
        ll = self.log_likelihood(obs)
        log_joint = ll + joint_prior.reshape(batch, -1).clamp_min(EPS).log()
        log_post = log_joint.log_softmax(1)
        joint = log_post.exp()
        log_evidence = log_joint[:, 0] - log_post[:, 0]
        marginals = joint.mm(self._ind).split(list(self.num_states), dim=1)
        return StatePosterior(list(marginals), joint.view(-1, *self.num_states), log_evidence)


def _table_rows(
    table: Tensor | None,
    log_A: Sequence[Tensor],
    radix: Tensor,
    rows: Tensor | None,
    obs: Tensor,
) -> Tensor:
    """``log p(o | s)`` of a batch of outcome rows (batch, M): (batch, prod n_s)."""
    if table is not None:
        index = obs.mv(radix) if obs.shape[1] > 1 else obs[:, 0]
        if rows is not None:
            return table[rows, index]
        return table.index_select(0, index)
    if rows is not None:
        ll = log_A[0][rows, obs[:, 0]]
        for m in range(1, len(log_A)):
            ll = ll + log_A[m][rows, obs[:, m]]
        return ll
    ll = log_A[0].index_select(0, obs[:, 0])
    for m in range(1, len(log_A)):
        ll = ll + log_A[m].index_select(0, obs[:, m])
    return ll


# --------------------------------------------------------------------------------------------
# Precompiled mean-field update
# --------------------------------------------------------------------------------------------


class MeanFieldStateInference:
    """Mean-field fixed-point iteration (:func:`infer_states_fpi`), precompiled from ``A``.

    The same sweeps as :func:`infer_states_fpi` (parallel updates from uniform beliefs, the
    update of pymdp 1.x ``run_factorized_fpi``), with the model validated and its tables built
    once, so that :meth:`update` is a fixed, short sequence of tensor operations per sweep.

    Beliefs live in one padded vector of ``F * n_max`` entries (factor ``f`` in slots
    ``f * n_max .. f * n_max + n_s[f] - 1``, the rest held at probability 0 by a log-prior of
    about ``-finfo.max / 4``), so that one softmax over a ``(F, n_max)`` view normalises every
    factor at once. The message to factor ``f``, ``E_{q_{-f}}[log p(o | s)]``, is linear in
    the product of the other factors' beliefs, which gives, per sweep:

    * one factor: no sweep, the exact posterior ``softmax(log p(o | s) + log D)``;
    * two factors: the message to each is linear in the other's belief, so one block matrix
      ``[[0, L], [L^T, 0]]`` (``L = log p(o | s)`` as an ``n_s[0] x n_s[1]`` matrix, read off a
      table with one entry per joint outcome) gives both in one matrix-vector product, and a
      sweep is that product plus the softmax;
    * three or more: the product of the other factors' beliefs at every joint state (a gather
      and a product over ``F - 1`` entries) is contracted with a 0/1-structured matrix holding
      ``log p(o | s)``, then the softmax: four operations per sweep.

    A batch of observations (an integer tensor of shape (batch, M) with priors of shape
    (batch, n_s[f])) runs the same sweeps with batched products; with ``batched=True`` each
    batch element has its own ``A``.

    With ``compile=True`` the sweeps of a single observation (a few dozen tiny operations,
    whose cost is the per-operation dispatch) are compiled ahead of time by AOTInductor
    (``torch.export`` and ``torch._inductor.aoti_compile_and_package``) into one native call.
    Compiling takes tens of seconds (:attr:`compile_seconds`) and needs a C++ compiler; the
    result is kept for the process and its package on disk beside Inductor's cache, keyed by
    the factor sizes, dtype, device and ``num_iter``, so later models of the same layout (and
    later processes) only load it. Batches are not compiled.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
        Likelihoods with entries in ``[0, 1]``; their dtype and device are those of every
        table and result. With ``batched=True``, shape (batch, n_o[m], n_s[0], ..., n_s[F-1]).
    num_iter : int, default 16
        Number of sweeps (pymdp 1.x default 16).
    batched : bool, default False
        Whether ``A`` carries a leading batch axis (one model per batch element).
    compile : bool, default False
        Compile the single-observation sweeps (ignored with one factor or ``batched=True``).

    Attributes
    ----------
    num_states : tuple of int, length F
    num_obs : tuple of int, length M
    num_iter : int
    dtype : torch.dtype
    device : torch.device
    batch_size : int or None
        Number of models when ``batched=True``.
    compile_seconds : float or None
        Time spent compiling (or loading the compiled sweeps) here; None without compiling.

    Raises
    ------
    RuntimeError
        With ``compile=True``, when AOTInductor cannot compile (no C++ compiler, ...).

    Notes
    -----
    Log-probabilities are floored at :data:`aif.maths.EPS` as in :func:`infer_states_fpi`, and
    the result agrees with it to rounding (about ``1e-15`` in float64). There is no early stop
    (``tol``): every call runs ``num_iter`` sweeps, as pymdp 1.x does.
    """

    def __init__(
        self,
        A: Sequence[Tensor],
        num_iter: int = 16,
        batched: bool = False,
        compile: bool = False,
    ) -> None:
        if num_iter < 1:
            raise ValueError(f"MeanFieldStateInference: num_iter={num_iter}; expected >= 1")
        tables = _likelihood_tables(A, batched, "MeanFieldStateInference")
        self.num_states: tuple[int, ...] = tables.num_states
        self.num_obs: tuple[int, ...] = tables.num_obs
        self.num_iter: int = int(num_iter)
        self.dtype: torch.dtype = tables.dtype
        self.device: torch.device = tables.device
        self.batch_size: int | None = tables.batch_size
        self._tables = tables
        dtype, device = self.dtype, self.device
        ns = self.num_states
        F = len(ns)
        S = math.prod(ns)
        n_max = max(ns)
        P = F * n_max
        self._F, self._n_max, self._P = F, n_max, P
        # Factor f's state i sits at padded slot f * n_max + i.
        slots = [f * n_max + i for f, n in enumerate(ns) for i in range(n)]
        spread = torch.zeros(sum(ns), P, dtype=dtype, device=device)
        spread[torch.arange(len(slots), device=device), torch.tensor(slots, device=device)] = 1.0
        self._spread = spread  # (sum n_s, P): concatenated log prior -> padded
        self._spread_T = spread.T.contiguous()
        bias = torch.full((P,), -torch.finfo(dtype).max / 4, dtype=dtype, device=device)
        bias[torch.tensor(slots, device=device)] = 0.0
        self._bias = bias
        q0 = torch.zeros(P, dtype=dtype, device=device)
        for f, n in enumerate(ns):
            q0[f * n_max : f * n_max + n] = 1.0 / n
        self._q0 = q0
        grids = [
            g.reshape(-1)
            for g in torch.meshgrid(*[torch.arange(n, device=device) for n in ns], indexing="ij")
        ]
        flat = torch.arange(S, device=device)
        # Message matrix over the product of the other factors' beliefs: row f * n_max + s_f,
        # column the mixed-radix index (base P) of the other factors' slots in factor order,
        # entry log p(o | s); S (past the end of a row of log-likelihoods) is the zero sentinel.
        # Its width is P ** (F - 1): with two factors the block matrix [[0, L], [L^T, 0]].
        self._outer = F == 2 or (F > 2 and P**F <= _MAX_OUTER_ENTRIES)
        self._msg_table: Tensor | None = None
        if self._outer:
            index = torch.full((P, P ** (F - 1)), S, dtype=torch.long, device=device)
            for f in range(F):
                col = torch.zeros(S, dtype=torch.long, device=device)
                for g in range(F):
                    if g != f:
                        col = col * P + g * n_max + grids[g]
                index[f * n_max + grids[f], col] = flat
            self._msg_index = index.reshape(-1)
            # One message matrix per joint outcome, for single observations (batches read
            # the log-likelihood rows instead).
            if tables.table is not None and tables.batch_size is None:
                if int(tables.table.shape[0]) * P**F <= _MAX_TABLE_ENTRIES:
                    self._msg_table = self._messages(tables.table, index.shape[1])
        if F > 1:
            # For batches (and models too large for the outer product): the other factors'
            # slots at every (factor, joint state), and the 0/1 map (P, F * S) that sums each
            # factor's block of (product of the others) * log p(o | s) onto its own slots.
            others = torch.zeros(F * S, F - 1, dtype=torch.long, device=device)
            gather = torch.zeros(P, F * S, dtype=dtype, device=device)
            for f in range(F):
                cols = [g * n_max + grids[g] for g in range(F) if g != f]
                others[f * S : (f + 1) * S] = torch.stack(cols, dim=1)
                gather[f * n_max + grids[f], f * S + flat] = 1.0
            self._others = others
            self._others_first = others[:, 0].contiguous()
            self._gather = gather
            self._gather_index = torch.where(
                gather.bool(), flat.repeat(F).expand(P, -1), torch.full_like(others[:1, :1], S)
            ).reshape(-1)

        self._sweeps = _MeanFieldSweeps(
            self._bias,
            self._spread_T,
            self._q0,
            self._others if F > 2 and not self._outer else None,
            self.num_iter,
            (F, n_max),
            self._outer,
        )
        self._compiled: Any = None
        self.compile_seconds: float | None = None
        if compile and F > 1 and not batched:
            width = P ** (F - 1) if self._outer else F * S
            start = time.perf_counter()
            self._compiled = _compiled_sweeps(self._sweeps, width, self.num_states)
            self.compile_seconds = time.perf_counter() - start

    def _messages(self, ll: Tensor, width: int, index: Tensor | None = None) -> Tensor:
        """Message matrices from log-likelihood rows: (..., S) -> (..., P, width)."""
        padded = torch.nn.functional.pad(ll, (0, 1))  # the zero sentinel at index S
        out = padded[..., self._msg_index if index is None else index]
        return out.reshape(*ll.shape[:-1], self._P, width).contiguous()

    def update(self, obs: Sequence[int] | Tensor, prior: Sequence[Tensor]) -> StatePosterior:
        """Mean-field posterior after one observation, by ``num_iter`` parallel sweeps.

        Only the outcome range of a single observation is checked, as in
        :meth:`ExactStateInference.update`; use :func:`infer_states_fpi` for probability-vector
        observations, an early stop or fully checked inputs.

        Parameters
        ----------
        obs : sequence of int, length M, or Tensor of int, shape (batch, M)
            One observation, or one per batch element (then nothing is checked).
        prior : sequence of Tensor, ``prior[f]`` shape (n_s[f],) or (batch, n_s[f])
            Independent prior marginals (``D`` or an empirical prior), in :attr:`dtype`.

        Returns
        -------
        StatePosterior
            Marginals ``qs[f]`` of shape (n_s[f],) or (batch, n_s[f]); ``joint`` and
            ``log_evidence`` are None (a mean-field belief has neither).
        """
        if isinstance(obs, Tensor):
            return self._update_batch(obs, prior)
        tables = self._tables
        if tables.batch_size is not None:
            raise ValueError(
                f"MeanFieldStateInference.update: obs={list(obs)} for a batch of "
                f"{tables.batch_size} models; expected an integer tensor of shape "
                f"({tables.batch_size}, {len(self.num_obs)})"
            )
        row = 0
        for o, n in zip(obs, self.num_obs, strict=True):
            if type(o) is not int or not 0 <= o < n:
                raise IndexError(f"obs = {list(obs)}; expected integer outcome indices below {n}")
            row = row * n + o
        F = self._F
        msg = self._msg_table[row] if self._msg_table is not None else None
        if msg is None:
            if tables.table is not None:
                ll = tables.table[row]
            else:
                ll = tables.log_A[0][obs[0]]
                for m in range(1, len(tables.log_A)):
                    ll = ll + tables.log_A[m][obs[m]]
            if F == 1:
                log_prior = prior[0].clamp_min(EPS).log()
                return StatePosterior([(ll + log_prior).softmax(0)], None, None)
            if self._outer:
                msg = self._messages(ll, self._P ** (F - 1))
            else:
                msg = self._messages(ll, F * math.prod(self.num_states), self._gather_index)
        if self._compiled is not None:
            for p, n in zip(prior, self.num_states, strict=True):
                if p.dtype != self.dtype or tuple(p.shape) != (n,) or not p.is_contiguous():
                    raise ValueError(
                        f"MeanFieldStateInference.update: prior entries have shapes "
                        f"{[tuple(x.shape) for x in prior]} and dtypes {[x.dtype for x in prior]};"
                        f" expected contiguous {self.num_states} in {self.dtype} (compiled sweeps)"
                    )
            q = self._compiled.boxed_run([msg, *prior])[0]
        else:
            q = self._sweeps.forward(msg, *prior)
        q2 = q.view(F, self._n_max)
        return StatePosterior([q2[f, :n] for f, n in enumerate(self.num_states)], None, None)

    def _update_batch(self, obs: Tensor, prior: Sequence[Tensor]) -> StatePosterior:
        """The batched update: the same sweeps with the batch on the last (fastest) axis.

        Beliefs are held as (P, batch), so that the softmax of every factor and every batch
        element is one reduction over a middle axis of (F, n_max, batch), vectorised along the
        batch (a softmax over a short last axis is several times slower).
        """
        tables = self._tables
        F = self._F
        batch = int(obs.shape[0])
        ll = _table_rows(tables.table, tables.log_A, tables.radix, tables.rows, obs).T
        log_prior = torch.cat(tuple(prior), dim=1).T.clamp_min(EPS).log_()  # (sum n_s, batch)
        if F == 1:
            return StatePosterior([(ll + log_prior).softmax(0).T], None, None)
        lp = torch.addmm(self._bias.unsqueeze(1), self._spread_T, log_prior)  # (P, batch)
        ll_rep = ll.repeat(F, 1)  # (F * S, batch)
        shape = (F, self._n_max, batch)
        q = self._q0.unsqueeze(1).expand(self._P, batch)
        gather = self._gather
        if F == 2:
            first = self._others_first
            for _ in range(self.num_iter):
                e = q.index_select(0, first) * ll_rep
                q = torch.addmm(lp, gather, e).view(shape).softmax(1).view(self._P, batch)
        else:
            others = self._others
            for _ in range(self.num_iter):
                e = q[others].prod(1) * ll_rep
                q = torch.addmm(lp, gather, e).view(shape).softmax(1).view(self._P, batch)
        q3 = q.view(shape)
        return StatePosterior([q3[f, :n].T for f, n in enumerate(self.num_states)], None, None)


class _MeanFieldSweeps(torch.nn.Module):
    """The sweeps of one mean-field update, as a module so AOTInductor can compile them.

    ``forward(msg, *prior)`` returns the padded beliefs (P,) after ``num_iter`` sweeps from
    uniform beliefs; ``msg`` is the message matrix of the observation (P, P ** (F - 1)) for
    the outer-product form, or (P, F * S) with ``others`` for the gathered form.
    """

    bias: Tensor
    spread_T: Tensor
    q0: Tensor
    others: Tensor | None

    def __init__(
        self,
        bias: Tensor,
        spread_T: Tensor,
        q0: Tensor,
        others: Tensor | None,
        num_iter: int,
        shape: tuple[int, int],
        outer: bool,
    ) -> None:
        super().__init__()
        self.register_buffer("bias", bias)
        self.register_buffer("spread_T", spread_T)
        self.register_buffer("q0", q0)
        self.register_buffer("others", others)
        self.num_iter = num_iter
        self.shape = shape
        self.outer = outer

    def forward(self, msg: Tensor, *prior: Tensor) -> Tensor:
        lp = torch.addmv(self.bias, self.spread_T, torch.cat(prior).clamp_min_(EPS).log_())
        q = self.q0
        shape = self.shape
        F = shape[0]
        if F == 2:
            for _ in range(self.num_iter):
                q = torch.addmv(lp, msg, q).view(shape).softmax(1).view(-1)
        elif self.outer:
            for _ in range(self.num_iter):
                k = q
                for _ in range(F - 2):
                    k = torch.outer(k, q).view(-1)
                q = torch.addmv(lp, msg, k).view(shape).softmax(1).view(-1)
        else:
            others = self.others
            assert others is not None
            for _ in range(self.num_iter):
                q = torch.addmv(lp, msg, q[others].prod(1)).view(shape).softmax(1).view(-1)
        return q


#: Compiled sweeps, one per model layout, dtype, device and number of sweeps.
_COMPILED_SWEEPS: dict[tuple[object, ...], Any] = {}


def _compiled_sweeps(sweeps: _MeanFieldSweeps, width: int, num_states: tuple[int, ...]) -> Any:
    """``sweeps`` compiled ahead of time by AOTInductor into one native call.

    Compiled once per layout, dtype, device and number of sweeps: kept for the process, and
    the package kept on disk beside Inductor's own cache, so a later process only loads it.
    """
    bias = sweeps.bias
    key = (num_states, width, sweeps.outer, sweeps.num_iter, bias.dtype, str(bias.device))
    if key in _COMPILED_SWEEPS:
        return _COMPILED_SWEEPS[key]
    import hashlib
    import os
    import tempfile

    from torch._inductor import aoti_compile_and_package, aoti_load_package
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    digest = hashlib.sha256(repr((key, torch.__version__)).encode()).hexdigest()[:32]
    folder = os.path.join(cache_dir(), "aif_mean_field")
    path = os.path.join(folder, f"{digest}.pt2")
    loader = None
    if os.path.exists(path):
        try:
            loader = aoti_load_package(path).loader
        except Exception:  # a damaged or foreign package: compile afresh
            loader = None
    if loader is None:
        P = int(bias.shape[0])
        msg = torch.zeros(P, width, dtype=bias.dtype, device=bias.device)
        prior = tuple(
            torch.full((n,), 1.0 / n, dtype=bias.dtype, device=bias.device) for n in num_states
        )
        try:
            os.makedirs(folder, exist_ok=True)
            with warnings.catch_warnings(), tempfile.TemporaryDirectory(dir=folder) as tmp:
                # torch's own deprecation notices from export and packaging
                warnings.simplefilter("ignore", FutureWarning)
                program = torch.export.export(sweeps, (msg, *prior))
                built = aoti_compile_and_package(
                    program, package_path=os.path.join(tmp, "sweeps.pt2")
                )
                os.replace(built, path)  # atomic: a concurrent reader sees all or nothing
                loader = aoti_load_package(path).loader
        except Exception as error:  # a missing compiler, an unsupported device, ...
            raise RuntimeError(
                "MeanFieldStateInference(compile=True): AOTInductor could not compile the "
                f"sweeps for factor sizes {num_states} ({type(error).__name__}: {error}); use "
                "compile=False"
            ) from error
    _COMPILED_SWEEPS[key] = loader
    return loader
