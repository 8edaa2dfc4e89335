"""Named numerical safety and tensor contractions for categorical free-energy maths.

Every module of the engine takes logs, entropies and factor contractions from here, so the
floor applied to probabilities is written once (``EPS``) and not scattered as ``+ 1e-16``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "EPS",
    "contract_factors",
    "contract_factors_batched",
    "dirichlet_expected_log",
    "entropy",
    "kl_categorical",
    "log_softmax",
    "normalize",
    "outer_product",
    "softmax",
    "stable_log",
    "xlogx",
]

#: Floor applied to probabilities before a logarithm. It is the float64 machine epsilon,
#: the same floor pymdp 1.x clips with (``pymdp.maths.MINVAL = jnp.finfo(float).eps``), so a
#: zero probability costs ``log(EPS) ~ -36.04`` nats in both codes instead of ``-inf``.
EPS: float = float(torch.finfo(torch.float64).eps)


def stable_log(x: Tensor) -> Tensor:
    """Natural logarithm with probabilities floored at :data:`EPS`.

    Parameters
    ----------
    x : Tensor, shape (...)
        Non-negative values (probabilities or Dirichlet counts).

    Returns
    -------
    Tensor, shape (...)
        ``log(max(x, EPS))``; finite wherever ``x`` is finite.
    """
    return torch.log(torch.clamp(x, min=EPS))


def xlogx(x: Tensor) -> Tensor:
    """Elementwise ``x * log(x)`` with the limit ``0 log 0 = 0``.

    Parameters
    ----------
    x : Tensor, shape (...)
        Non-negative values.

    Returns
    -------
    Tensor, shape (...)
    """
    return x * stable_log(x)


def entropy(p: Tensor, dim: int = -1) -> Tensor:
    """Shannon entropy ``H[p] = -sum_i p_i log p_i`` in nats.

    Parameters
    ----------
    p : Tensor, shape (..., n, ...)
        Categorical probabilities along ``dim``.
    dim : int, default -1
        The axis holding the outcomes.

    Returns
    -------
    Tensor, shape of ``p`` without ``dim``
    """
    return -xlogx(p).sum(dim=dim)


def kl_categorical(q: Tensor, p: Tensor, dim: int = -1) -> Tensor:
    """Kullback-Leibler divergence ``KL[q || p] = sum_i q_i (log q_i - log p_i)``.

    Parameters
    ----------
    q, p : Tensor, shape (..., n, ...)
        Categorical probabilities along ``dim`` (broadcastable against each other).
    dim : int, default -1
        The axis holding the outcomes.

    Returns
    -------
    Tensor, broadcast shape of ``q`` and ``p`` without ``dim``
        Non-negative up to the :data:`EPS` floor; zero where ``q == p``.
    """
    if q.shape[dim] != p.shape[dim]:
        raise ValueError(
            f"kl_categorical: q has {q.shape[dim]} outcomes on dim {dim} (shape {tuple(q.shape)}) "
            f"but p has {p.shape[dim]} (shape {tuple(p.shape)}); expected the same number"
        )
    return (q * (stable_log(q) - stable_log(p))).sum(dim=dim)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Normalised exponential ``exp(x_i) / sum_j exp(x_j)``, shifted by the max for stability.

    Parameters
    ----------
    x : Tensor, shape (..., n, ...)
        Unnormalised log-probabilities along ``dim``.
    dim : int, default -1

    Returns
    -------
    Tensor, shape of ``x``
        Sums to one along ``dim``.
    """
    return torch.softmax(x, dim=dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    """Log of :func:`softmax`, computed as ``x - logsumexp(x)`` (no log of a rounded zero).

    Parameters
    ----------
    x : Tensor, shape (..., n, ...)
    dim : int, default -1

    Returns
    -------
    Tensor, shape of ``x``
    """
    return torch.log_softmax(x, dim=dim)


def normalize(x: Tensor, dim: int = 0) -> Tensor:
    """Divide non-negative values by their sum along ``dim`` (counts to probabilities).

    A slice that sums to zero becomes uniform instead of ``nan``, which is how an empty
    Dirichlet column or an all-zero likelihood column is read as "no information".

    Parameters
    ----------
    x : Tensor, shape (..., n, ...)
        Non-negative values.
    dim : int, default 0
        The axis to normalise over; 0 is the outcome axis of likelihoods ``A[m]`` and
        transitions ``B[f]`` in the pymdp layout.

    Returns
    -------
    Tensor, shape of ``x``
    """
    if (x < 0).any():
        raise ValueError(
            f"normalize: x of shape {tuple(x.shape)} has negative entries (min {x.min().item():.3g}); "
            "expected non-negative counts or probabilities"
        )
    total = x.sum(dim=dim, keepdim=True)
    n = x.shape[dim]
    uniform = torch.full_like(x, 1.0 / n)
    return torch.where(total > 0, x / torch.where(total > 0, total, 1.0), uniform)


def dirichlet_expected_log(alpha: Tensor, dim: int = 0) -> Tensor:
    """Expected log-probabilities under a Dirichlet: ``E[log theta_i] = psi(a_i) - psi(sum_j a_j)``.

    Parameters
    ----------
    alpha : Tensor, shape (..., n, ...)
        Positive concentration parameters along ``dim``.
    dim : int, default 0
        The outcome axis (0 for ``pA[m]`` / ``pB[f]`` in the pymdp layout).

    Returns
    -------
    Tensor, shape of ``alpha``
    """
    alpha = torch.clamp(alpha, min=EPS)
    return torch.digamma(alpha) - torch.digamma(alpha.sum(dim=dim, keepdim=True))


def outer_product(vectors: Sequence[Tensor]) -> Tensor:
    """Joint distribution of independent factors: ``q(s_1, ..., s_F) = prod_f q_f(s_f)``.

    Parameters
    ----------
    vectors : sequence of Tensor, each shape (n_f,)

    Returns
    -------
    Tensor, shape (n_1, ..., n_F)
    """
    if len(vectors) == 0:
        raise ValueError("outer_product: got no vectors; expected at least one factor")
    out = vectors[0]
    for v in vectors[1:]:
        out = out.unsqueeze(-1) * v
    return out


def contract_factors(
    tensor: Tensor,
    vectors: Sequence[Tensor],
    skip: int | Sequence[int] | None = None,
) -> Tensor:
    """Contract the trailing factor axes of ``tensor`` with one vector per factor.

    ``tensor`` has ``k`` leading axes (for instance the observation axis of ``A[m]``) followed by
    one axis per hidden-state factor. Each factor axis ``f`` is summed against ``vectors[f]``,
    except the factors listed in ``skip``, whose axes stay in the result (in factor order).
    With ``A[m]`` of shape ``(n_o, n_1, ..., n_F)`` and beliefs ``qs``, ``contract_factors(A[m],
    qs)`` is the predicted observation ``E_q[p(o_m | s)]`` of shape ``(n_o,)``.

    Parameters
    ----------
    tensor : Tensor, shape (*lead, n_1, ..., n_F)
    vectors : sequence of Tensor, each shape (n_f,)
        One vector per trailing axis; ``len(vectors) = F``.
    skip : int or sequence of int, optional
        Factors whose axes are kept.

    Returns
    -------
    Tensor, shape (*lead, *[n_f for f in skip])
    """
    n_factors = len(vectors)
    if tensor.dim() < n_factors:
        raise ValueError(
            f"contract_factors: tensor of shape {tuple(tensor.shape)} has {tensor.dim()} axes; "
            f"expected at least {n_factors} (one per factor vector)"
        )
    n_lead = tensor.dim() - n_factors
    for f, v in enumerate(vectors):
        expected = tensor.shape[n_lead + f]
        if v.dim() != 1 or v.shape[0] != expected:
            raise ValueError(
                f"contract_factors: vectors[{f}] has shape {tuple(v.shape)}; expected ({expected},) "
                f"to match axis {n_lead + f} of tensor shape {tuple(tensor.shape)}"
            )
    if skip is None:
        skipped: set[int] = set()
    elif isinstance(skip, int):
        skipped = {skip}
    else:
        skipped = set(skip)
    # Contract from the last factor down: removing axis n_lead + f leaves the indices of the
    # lower factors' axes unchanged. Pairwise tensordots avoid einsum's path search, which
    # costs more than the arithmetic for the small tables of discrete models.
    out = tensor
    for f in reversed(range(n_factors)):
        if f not in skipped:
            out = torch.tensordot(out, vectors[f].to(tensor.dtype), dims=([n_lead + f], [0]))
    return out


def contract_factors_batched(tensor: Tensor, vectors: Sequence[Tensor]) -> Tensor:
    """Contract the trailing factor axes of ``tensor`` with a batch of beliefs per factor.

    The batched form of :func:`contract_factors`: ``vectors[f]`` holds ``P`` beliefs over
    factor ``f`` (for instance one predicted state per policy) and the result holds the ``P``
    contractions, ``out[p] = sum_s tensor[..., s_1, ..., s_F] prod_f vectors[f][p, s_f]``.

    Parameters
    ----------
    tensor : Tensor, shape (*lead, n_1, ..., n_F)
    vectors : sequence of Tensor, each shape (P, n_f)

    Returns
    -------
    Tensor, shape (P, *lead)
    """
    n_factors = len(vectors)
    if n_factors == 0 or tensor.dim() < n_factors:
        raise ValueError(
            f"contract_factors_batched: tensor of shape {tuple(tensor.shape)} and {n_factors} "
            "factor batches; expected at least one factor and one tensor axis per factor"
        )
    n_lead = tensor.dim() - n_factors
    batch = vectors[0].shape[0]
    for f, v in enumerate(vectors):
        expected = (batch, tensor.shape[n_lead + f])
        if tuple(v.shape) != expected:
            raise ValueError(
                f"contract_factors_batched: vectors[{f}] has shape {tuple(v.shape)}; expected "
                f"{expected} to match axis {n_lead + f} of tensor shape {tuple(tensor.shape)}"
            )
    # The last factor is a matrix product that creates the batch axis at the end; every other
    # factor is then a broadcast multiply and a sum over its axis (now second to last).
    out = torch.tensordot(tensor, vectors[-1].to(tensor.dtype).T, dims=([tensor.dim() - 1], [0]))
    for f in reversed(range(n_factors - 1)):
        out = (out * vectors[f].to(tensor.dtype).T).sum(-2)
    return out.movedim(-1, 0)
