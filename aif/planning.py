"""Planning for categorical models: policies, expected free energy with its parts, action selection.

Everything is computed for all policies at once (policies are a batch axis), so a call costs a
few tensor contractions per time step rather than a Python loop over policies.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from aif.exact import is_batched_model
from aif.maths import (
    EPS,
    entropy,
    log_softmax,
    softmax,
    stable_log,
    xlogx,
)

__all__ = [
    "EFEResult",
    "PolicyEvaluation",
    "PolicyEvaluator",
    "construct_policies",
    "efe_categorical",
    "action_marginals",
    "novelty_weights",
    "policy_posterior",
    "preference_offset",
    "select_action",
]

#: Largest joint outcome-by-state table (entries) the joint information gain builds.
_MAX_JOINT_ENTRIES = 20_000_000
#: Agents per chunk of a batched policy evaluation: this many (rows x joint states) entries,
#: about two megabytes in float64 (the factored read-out builds less than that).
_CHUNK_ENTRIES = 300_000


class EFEResult(NamedTuple):
    """Expected free energy of each policy, with both standard decompositions.

    With every term switched on (Da Costa et al., "Active inference on discrete state-spaces:
    a synthesis", J. Math. Psychol. 99, 2020, eq. 8 and Appendix D; Parr, Pezzulo & Friston,
    *Active Inference*, MIT Press 2022, eq. 2.6)::

        efe = risk + ambiguity - novelty
            = -pragmatic_value - state_info_gain - novelty

    summed over the policy's future steps, where ``risk = KL[q(o | pi) || p(o)]`` with
    ``log p(o) = log_softmax(C)``, ``ambiguity = E_q(s | pi)[H[p(o | s)]]``,
    ``pragmatic_value = E_q(o | pi)[log p(o)]`` and ``state_info_gain`` is the mutual information
    between predicted states and outcomes. Switched-off terms are excluded from ``efe`` but still
    reported. Lower ``efe`` is better; ``neg_efe`` is pymdp's score.

    Attributes
    ----------
    efe, risk, ambiguity, pragmatic_value, state_info_gain, novelty : Tensor, shape (n_policies,)
    """

    efe: Tensor
    risk: Tensor
    ambiguity: Tensor
    pragmatic_value: Tensor
    state_info_gain: Tensor
    novelty: Tensor

    @property
    def neg_efe(self) -> Tensor:
        """``-efe`` (higher is better), the quantity pymdp returns; shape (n_policies,)."""
        return -self.efe


def construct_policies(
    num_controls: Sequence[int],
    policy_len: int = 1,
    control_factors: Sequence[int] | None = None,
) -> Tensor:
    """Enumerate every sequence of controls over ``policy_len`` steps.

    The order is that of pymdp (``pymdp.control.construct_policies``): the Cartesian product of
    the controls of each factor at each step, with the last factor of the last step varying
    fastest, so policy indices agree between the two codes.

    Parameters
    ----------
    num_controls : sequence of int, length F
        Number of controls of each hidden-state factor (1 for an uncontrolled factor).
    policy_len : int, default 1
        Number of future steps a policy fixes.
    control_factors : sequence of int, optional
        Factors that may be controlled; the others are held at control 0. Default: the factors
        with more than one control.

    Returns
    -------
    Tensor of int64, shape (n_policies, policy_len, F)
    """
    if policy_len < 1:
        raise ValueError(f"construct_policies: policy_len={policy_len}; expected >= 1")
    if any(int(n) < 1 for n in num_controls):
        raise ValueError(
            f"construct_policies: num_controls={list(num_controls)}; expected every entry >= 1"
        )
    F = len(num_controls)
    if control_factors is None:
        control_factors = [f for f, n in enumerate(num_controls) if n > 1]
    sizes = [int(num_controls[f]) if f in control_factors else 1 for f in range(F)]
    rows = list(itertools.product(*[range(n) for n in sizes * policy_len]))
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), policy_len, F)


def preference_offset(C: Sequence[Tensor], policy_len: int) -> Tensor:
    """Constant that separates this engine's EFE from pymdp 1.x's ``neg_efe``.

    This engine scores outcomes with ``log p(o) = log_softmax(C)`` (SPM and pymdp.legacy);
    pymdp 1.x uses the raw ``C``. The two differ by ``logsumexp(C[m])`` per modality and step,
    the same for every policy of a given length, so::

        efe = preference_offset(C, policy_len) - neg_efe_pymdp_1x

    and policy posteriors agree.

    Parameters
    ----------
    C : sequence of Tensor, ``C[m]`` shape (n_o[m],) or (n_o[m], T)
    policy_len : int

    Returns
    -------
    Tensor, shape ()
    """
    total = torch.zeros((), dtype=torch.float64, device=C[0].device)
    for m, C_m in enumerate(C):
        for t in range(policy_len):
            total = total + torch.logsumexp(_preference_column(C_m, t, m).double(), 0)
    return total


def _preference_column(C_m: Tensor, t: int, m: int) -> Tensor:
    if C_m.dim() == 1:
        return C_m
    if C_m.dim() == 2:
        return C_m[:, min(t, C_m.shape[1] - 1)]
    raise ValueError(f"C[{m}] has shape {tuple(C_m.shape)}; expected (n_o,) or (n_o, T)")


def novelty_weights(pX: Tensor, form: Literal["exact", "spm"] = "exact", dim: int = 0) -> Tensor:
    """Per-count information gain of a Dirichlet table, the weights of the novelty term.

    ``"exact"``: ``W[i, ...] = log a_0 - log a_i + psi(a_i + 1) - psi(a_0 + 1)``, the KL divergence
    from ``Dir(a)`` to ``Dir(a + e_i)`` (the update after one count of outcome ``i``; Da Costa et
    al. 2020, eq. D.15; pymdp 1.x ``spm_wnorm``). ``"spm"``: the large-count approximation
    ``W = 1 / a_i - 1 / a_0`` (SPM ``spm_wnorm``, pymdp.legacy). Entries with ``a_i = 0`` get
    weight 0 (structural zeros carry no information).

    Parameters
    ----------
    pX : Tensor, shape (n_out, ...)
        Dirichlet concentrations; axis 0 is the outcome (``pA[m]`` or one control slice of
        ``pB[f]``).
    form : {"exact", "spm"}, default "exact"
    dim : int, default 0
        The outcome axis (1 for concentrations with a leading batch axis).

    Returns
    -------
    Tensor, shape of ``pX``
    """
    a = torch.clamp(pX, min=EPS)
    a0 = torch.clamp(a.sum(dim=dim, keepdim=True), min=EPS)
    if form == "exact":
        w = torch.log(a0) - torch.log(a) + torch.digamma(a + 1.0) - torch.digamma(a0 + 1.0)
    elif form == "spm":
        w = 1.0 / a - 1.0 / a0
    else:
        raise ValueError(f"novelty_weights: form={form!r}; expected 'exact' or 'spm'")
    return w * (pX > 0).to(w.dtype)


def _check_inputs(
    qs: Sequence[Tensor],
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    C: Sequence[Tensor],
    policies: Tensor,
) -> tuple[int, ...]:
    ns = tuple(int(b.shape[0]) for b in B)
    if len(qs) != len(B):
        raise ValueError(f"qs has {len(qs)} factors; expected {len(B)} (one per B[f])")
    for f, (q, n) in enumerate(zip(qs, ns, strict=True)):
        if tuple(q.shape) != (n,):
            raise ValueError(f"qs[{f}] has shape {tuple(q.shape)}; expected ({n},)")
    for f, B_f in enumerate(B):
        if B_f.dim() != 3 or B_f.shape[1] != B_f.shape[0]:
            raise ValueError(
                f"B[{f}] has shape {tuple(B_f.shape)}; expected (n_s, n_s, n_u) = ({ns[f]}, {ns[f]}, n_u)"
            )
    for m, A_m in enumerate(A):
        if tuple(A_m.shape[1:]) != ns:
            raise ValueError(
                f"A[{m}] has shape {tuple(A_m.shape)}; expected (n_o, {', '.join(map(str, ns))})"
            )
    if len(C) != len(A):
        raise ValueError(f"C has {len(C)} modalities; expected {len(A)} (one per A[m])")
    for m, (C_m, A_m) in enumerate(zip(C, A, strict=True)):
        if C_m.shape[0] != A_m.shape[0] or C_m.dim() > 2:
            raise ValueError(
                f"C[{m}] has shape {tuple(C_m.shape)}; expected ({A_m.shape[0]},) or ({A_m.shape[0]}, T)"
            )
    if policies.dim() != 3 or policies.shape[2] != len(B):
        raise ValueError(
            f"policies have shape {tuple(policies.shape)}; expected (n_policies, policy_len, {len(B)})"
        )
    for f, B_f in enumerate(B):
        if policies.numel() and (
            int(policies[..., f].max()) >= B_f.shape[2] or int(policies[..., f].min()) < 0
        ):
            raise ValueError(
                f"policies use control {int(policies[..., f].max())} of factor {f}, but B[{f}] has "
                f"shape {tuple(B_f.shape)}; expected controls 0..{B_f.shape[2] - 1}"
            )
    return ns


def efe_categorical(
    qs: Sequence[Tensor],
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    C: Sequence[Tensor],
    policies: Tensor,
    pA: Sequence[Tensor] | None = None,
    pB: Sequence[Tensor] | None = None,
    *,
    use_utility: bool = True,
    use_states_info_gain: bool = True,
    use_param_info_gain: bool = False,
    info_gain: Literal["joint", "per_modality"] = "joint",
    novelty_form: Literal["exact", "spm"] = "exact",
) -> EFEResult:
    """Expected free energy of every policy of a categorical POMDP, with its parts.

    From the current beliefs ``qs`` each policy's predicted states are
    ``q(s_{t+1} | pi) = B[f][:, :, pi[t, f]] q(s_t | pi)`` per factor and its predicted outcomes
    ``q(o_m | pi) = E_q(s | pi)[A[m]]`` (pymdp ``compute_expected_state`` / ``compute_expected_obs``).
    The parts are summed over the ``policy_len`` future steps.

    State information gain is the mutual information between the predicted (factorised) states
    and the outcomes. ``info_gain="joint"`` uses the joint outcome of all modalities, which is
    the exact value and the one a sampling estimator converges to (SPM ``spm_MDP_G``,
    pymdp.legacy ``update_posterior_policies``). ``"per_modality"`` sums one mutual
    information per modality, an upper bound used by pymdp 1.x and by pymdp.legacy's agent;
    the two agree with a single modality. Risk is computed over the same outcome space, so
    ``risk + ambiguity = -pragmatic_value - state_info_gain`` holds in both forms.

    Novelty (parameter information gain) follows pymdp: for ``pA``,
    ``sum_{o,s} q(o_m | pi) q(s | pi) W_A[o, s]``; for ``pB``,
    ``sum q(s'_f | pi) W_B[s', s, u] q(s_f)``, with ``W`` from :func:`novelty_weights`.

    With a batch, ``qs[f]`` has shape (batch, n_s[f]) and every field of the result has shape
    (batch, n_policies). The model is shared by the batch, or (one model per element) every
    one of ``A``, ``B``, ``C``, ``pA`` and ``pB`` has a leading batch axis.

    Parameters
    ----------
    qs : sequence of Tensor, ``qs[f]`` shape (n_s[f],) or (batch, n_s[f])
        Current beliefs (the start of every policy).
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1]) or (batch, ...)
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, ...)
    C : sequence of Tensor, ``C[m]`` shape (n_o[m],) or (n_o[m], T) (or (batch, ...))
        Log-preferences (relative: normalised here by ``log_softmax``); a 2-D ``C[m]`` gives one
        column per future step, the last column repeating.
    policies : Tensor of int, shape (n_policies, policy_len, F)
    pA : sequence of Tensor, optional
        Dirichlet concentrations shaped like ``A``.
    pB : sequence of Tensor, optional
        Dirichlet concentrations shaped like ``B``.
    use_utility, use_states_info_gain, use_param_info_gain : bool
        Which terms enter ``efe`` (the flags of pymdp ``compute_neg_efe_policy``).
    info_gain : {"joint", "per_modality"}, default "joint"
    novelty_form : {"exact", "spm"}, default "exact"

    Returns
    -------
    EFEResult
        Each field has shape (n_policies,) (or (batch, n_policies)).
    """
    if use_param_info_gain and pA is None and pB is None:
        raise ValueError(
            "efe_categorical: use_param_info_gain=True needs pA, pB or both; got neither"
        )
    if info_gain not in ("joint", "per_modality"):
        raise ValueError(
            f"efe_categorical: info_gain={info_gain!r}; expected 'joint' or 'per_modality'"
        )
    policies = torch.as_tensor(policies, dtype=torch.long, device=A[0].device)
    batched = len(qs) > 0 and qs[0].dim() == 2
    if batched:
        checked = _check_batch_inputs(qs, A, B, C, policies)
    else:
        # One belief is a batch of one: the same code, and the batched contractions are the
        # faster ones even then.
        ns = _check_inputs(qs, A, B, C, policies)
        checked = (1, ns, False)
        qs = [q.unsqueeze(0) for q in qs]
    result = _efe_batch(
        qs,
        A,
        B,
        C,
        policies,
        pA,
        pB,
        checked,
        use_utility=use_utility,
        use_states_info_gain=use_states_info_gain,
        use_param_info_gain=use_param_info_gain,
        info_gain=info_gain,
        novelty_form=novelty_form,
    )
    return result if batched else EFEResult(*(x[0] for x in result))


def _check_batch_inputs(
    qs: Sequence[Tensor],
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    C: Sequence[Tensor],
    policies: Tensor,
) -> tuple[int, tuple[int, ...], bool]:
    """Batch size, factor sizes and whether the model is batched, checked."""
    F = len(B)
    if len(qs) != F or any(q.dim() != 2 for q in qs):
        raise ValueError(
            f"qs has shapes {[tuple(q.shape) for q in qs]}; expected {F} tensors of shape "
            "(batch, n_s[f])"
        )
    batch = int(qs[0].shape[0])
    batched = is_batched_model(A, F)
    lead = 1 if batched else 0
    ns = tuple(int(b.shape[lead]) for b in B)
    for f, (q, B_f) in enumerate(zip(qs, B, strict=True)):
        if tuple(q.shape) != (batch, ns[f]):
            raise ValueError(f"qs[{f}] has shape {tuple(q.shape)}; expected ({batch}, {ns[f]})")
        ok = B_f.dim() == 3 + lead and B_f.shape[lead] == B_f.shape[lead + 1]
        if not ok or (batched and int(B_f.shape[0]) != batch):
            expected = f"({batch}, n_s, n_s, n_u)" if batched else "(n_s, n_s, n_u)"
            raise ValueError(f"B[{f}] has shape {tuple(B_f.shape)}; expected {expected}")
    for m, A_m in enumerate(A):
        if tuple(A_m.shape[lead + 1 :]) != ns or (batched and int(A_m.shape[0]) != batch):
            raise ValueError(
                f"A[{m}] has shape {tuple(A_m.shape)}; expected "
                f"({f'{batch}, ' if batched else ''}n_o, {', '.join(map(str, ns))})"
            )
    if len(C) != len(A):
        raise ValueError(f"C has {len(C)} modalities; expected {len(A)} (one per A[m])")
    for m, (C_m, A_m) in enumerate(zip(C, A, strict=True)):
        n_o = int(A_m.shape[lead])
        if C_m.dim() not in (1 + lead, 2 + lead) or int(C_m.shape[lead]) != n_o:
            raise ValueError(
                f"C[{m}] has shape {tuple(C_m.shape)}; expected "
                f"({f'{batch}, ' if batched else ''}{n_o},) or (..., {n_o}, T)"
            )
    if policies.dim() != 3 or policies.shape[2] != F:
        raise ValueError(
            f"policies have shape {tuple(policies.shape)}; expected (n_policies, policy_len, {F})"
        )
    for f, B_f in enumerate(B):
        n_u = int(B_f.shape[-1])
        if policies.numel() and (
            int(policies[..., f].max()) >= n_u or int(policies[..., f].min()) < 0
        ):
            raise ValueError(
                f"policies use control {int(policies[..., f].max())} of factor {f}, but B[{f}] has "
                f"shape {tuple(B_f.shape)}; expected controls 0..{n_u - 1}"
            )
    return batch, ns, batched


def _batch_preference(C_m: Tensor, t: int, batched: bool) -> Tensor:
    """Column ``t`` of a (possibly batched, possibly time-indexed) preference table."""
    lead = 1 if batched else 0
    if C_m.dim() == 1 + lead:
        return C_m
    return C_m[..., min(t, int(C_m.shape[-1]) - 1)]


def _joint_states(q_next: Sequence[Tensor]) -> Tensor:
    """Outer product over factors of (batch, P, n_f) beliefs: (batch, P, prod n_s)."""
    out = q_next[0]
    for q in q_next[1:]:
        out = (out.unsqueeze(-1) * q.unsqueeze(-2)).reshape(*out.shape[:-1], -1)
    return out


def _efe_batch(
    qs: Sequence[Tensor],
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    C: Sequence[Tensor],
    policies: Tensor,
    pA: Sequence[Tensor] | None,
    pB: Sequence[Tensor] | None,
    checked: tuple[int, tuple[int, ...], bool],
    *,
    use_utility: bool,
    use_states_info_gain: bool,
    use_param_info_gain: bool,
    info_gain: str,
    novelty_form: Literal["exact", "spm"],
) -> EFEResult:
    """:func:`efe_categorical` for a batch of beliefs (and optionally of models), checked."""
    batch, ns, batched = checked
    dtype, device = A[0].dtype, A[0].device
    n_pol, policy_len, F = policies.shape
    M = len(A)
    S = math.prod(ns)
    lead = (batch,) if batched else ()
    o_axis = 1 if batched else 0
    A_flat = [a.to(dtype).reshape(*lead, int(a.shape[o_axis]), S) for a in A]
    H_A = torch.stack([entropy(a, dim=o_axis) for a in A_flat]).sum(0)  # (S,) or (batch, S)
    log_C = [
        [
            log_softmax(_batch_preference(C_m.to(dtype), t, batched), dim=-1)
            for t in range(policy_len)
        ]
        for C_m in C
    ]
    A_joint: Tensor | None = None
    if info_gain == "joint" and M > 1:
        n_entries = math.prod(int(a.shape[o_axis]) for a in A) * S
        if n_entries > _MAX_JOINT_ENTRIES:
            raise ValueError(
                f"efe_categorical: the joint outcome-by-state table has {n_entries} entries "
                f"(outcomes {[int(a.shape[o_axis]) for a in A]}, states {list(ns)}); expected "
                f"at most {_MAX_JOINT_ENTRIES}. Use info_gain='per_modality'."
            )
        if batched:
            A_joint = torch.stack([_joint_likelihood([a[b] for a in A_flat]) for b in range(batch)])
            A_joint = A_joint.reshape(batch, -1, S)
        else:
            A_joint = _joint_likelihood(A_flat).reshape(-1, S)
    W_A = (
        [novelty_weights(p.to(dtype), novelty_form, dim=o_axis).reshape(*lead, -1, S) for p in pA]
        if pA is not None
        else None
    )
    W_B = (
        [novelty_weights(p.to(dtype), novelty_form, dim=o_axis) for p in pB]
        if pB is not None
        else None
    )

    def read(q_joint: Tensor, table: Tensor) -> Tensor:
        """(batch, P, S) x (K, S) or (batch, K, S) -> (batch, P, K)."""
        if table.dim() == 2:
            return q_joint.matmul(table.T)
        return torch.bmm(q_joint, table.transpose(1, 2))

    zeros = torch.zeros(batch, n_pol, dtype=dtype, device=device)
    risk, ambiguity, pragmatic, info, novelty = (zeros.clone() for _ in range(5))
    q_prev = [q.to(dtype).unsqueeze(1).expand(batch, n_pol, -1) for q in qs]
    for t in range(policy_len):
        q_next = []
        for f in range(F):
            B_sel = B[f].to(dtype)[..., policies[:, t, f]]  # (..., n', n, P)
            eq = "bijp,bpj->bpi" if batched else "ijp,bpj->bpi"
            q_next.append(torch.einsum(eq, B_sel, q_prev[f]))
        q_joint = _joint_states(q_next)  # (batch, P, S)
        qo = [read(q_joint, a) for a in A_flat]  # (batch, P, n_o[m])
        if batched:
            amb_t = torch.bmm(q_joint, H_A.unsqueeze(-1)).squeeze(-1)
        else:
            amb_t = q_joint.matmul(H_A)
        prag_t = torch.stack(
            [
                (qo[m] * (log_C[m][t].unsqueeze(1) if batched else log_C[m][t])).sum(-1)
                for m in range(M)
            ]
        ).sum(0)
        if A_joint is not None:
            neg_h_qo = xlogx(read(q_joint, A_joint)).sum(-1)
        else:
            neg_h_qo = torch.stack([xlogx(qo[m]).sum(-1) for m in range(M)]).sum(0)
        info_t = -neg_h_qo - amb_t
        risk = risk + neg_h_qo - prag_t
        ambiguity = ambiguity + amb_t
        pragmatic = pragmatic + prag_t
        info = info + info_t
        if W_A is not None:
            for m in range(M):
                novelty = novelty + (qo[m] * read(q_joint, W_A[m])).sum(-1)
        if W_B is not None:
            for f in range(F):
                w = W_B[f][..., policies[:, t, f]]  # (..., n', n, P)
                eq = "bpi,bijp,bpj->bp" if batched else "bpi,ijp,bpj->bp"
                novelty = novelty + torch.einsum(eq, q_next[f], w, q_prev[f])
        q_prev = q_next

    return _assemble(
        risk,
        ambiguity,
        pragmatic,
        info,
        novelty,
        (use_utility, use_states_info_gain, use_param_info_gain),
    )


def _assemble(
    risk: Tensor,
    ambiguity: Tensor,
    pragmatic: Tensor,
    info: Tensor,
    novelty: Tensor,
    switches: tuple[bool, bool, bool],
) -> EFEResult:
    """The EFE from the terms switched on (utility, state information gain, novelty)."""
    use_utility, use_states_info_gain, use_param_info_gain = switches
    efe = torch.zeros_like(risk)
    if use_utility:
        efe = efe - pragmatic
    if use_states_info_gain:
        efe = efe - info
    if use_param_info_gain:
        efe = efe - novelty
    return EFEResult(efe, risk, ambiguity, pragmatic, info, novelty)


def _joint_likelihood(A: Sequence[Tensor]) -> Tensor:
    """``p(o_1, ..., o_M | s) = prod_m A[m][o_m, s]``, shape (n_o[0], ..., n_o[M-1], *n_s)."""
    M = len(A)
    n_f = A[0].dim() - 1
    out = A[0].reshape(A[0].shape[0], *([1] * (M - 1)), *A[0].shape[1:])
    for m in range(1, M):
        shape = [1] * M + [1] * n_f
        shape[m] = A[m].shape[0]
        shape[M:] = list(A[m].shape[1:])
        out = out * A[m].reshape(shape)
    return out


def policy_posterior(efe: Tensor, gamma: float = 16.0, log_E: Tensor | None = None) -> Tensor:
    """Posterior over policies ``q(pi) = softmax(-gamma * efe + log E)``.

    (Da Costa et al. 2020, eq. 9; pymdp ``update_posterior_policies`` with ``neg_efe = -efe``.)

    Parameters
    ----------
    efe : Tensor, shape (n_policies,) or (batch, n_policies)
        Expected free energy (lower is better).
    gamma : float, default 16.0
        Policy precision (SPM and pymdp.legacy default 16; pymdp 1.x agents default to 1).
    log_E : Tensor, shape (n_policies,) or (batch, n_policies), optional
        Log prior over policies (habits); uniform when omitted.

    Returns
    -------
    Tensor, shape of ``efe``
    """
    if efe.dim() not in (1, 2):
        raise ValueError(
            f"policy_posterior: efe has shape {tuple(efe.shape)}; expected (n_policies,) or "
            "(batch, n_policies)"
        )
    logits = -gamma * efe
    if log_E is not None:
        if log_E.shape[-1] != efe.shape[-1] or log_E.dim() > efe.dim():
            raise ValueError(
                f"policy_posterior: log_E has shape {tuple(log_E.shape)}; expected "
                f"{tuple(efe.shape)} like efe (or ({efe.shape[-1]},))"
            )
        logits = logits + log_E.to(efe.dtype)
    return softmax(logits, dim=-1)


def action_marginals(q_pi: Tensor, policies: Tensor, num_controls: Sequence[int]) -> list[Tensor]:
    """Posterior probability of each first-step control, per factor.

    Parameters
    ----------
    q_pi : Tensor, shape (n_policies,) or (batch, n_policies)
    policies : Tensor of int, shape (n_policies, policy_len, F)
    num_controls : sequence of int, length F

    Returns
    -------
    list of Tensor, ``out[f]`` shape (num_controls[f],) or (batch, num_controls[f])
    """
    if q_pi.shape[-1] != policies.shape[0]:
        raise ValueError(
            f"q_pi has shape {tuple(q_pi.shape)} but policies have shape {tuple(policies.shape)}; "
            "expected one probability per policy"
        )
    if q_pi.dim() == 1 and q_pi.is_cpu:
        first = torch.as_tensor(policies, dtype=torch.long)[:, 0, :]
        return [
            torch.zeros(int(n), dtype=q_pi.dtype).index_add_(0, first[:, f], q_pi)
            for f, n in enumerate(num_controls)
        ]
    first = policies[:, 0, :]
    if first.dtype != torch.long or first.device != q_pi.device:
        first = first.to(device=q_pi.device, dtype=torch.long)
    lead = tuple(q_pi.shape[:-1])
    axis = q_pi.dim() - 1
    return [
        q_pi.new_zeros(lead + (int(n),)).index_add_(axis, first[:, f], q_pi)
        for f, n in enumerate(num_controls)
    ]


def _draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One draw per row of ``probs`` (last axis), on the CPU so a seed gives the same numbers."""
    rows = probs.detach().to("cpu", torch.float64).reshape(-1, probs.shape[-1])
    return torch.multinomial(rows, 1, generator=generator).reshape(probs.shape[:-1])


def select_action(
    q_pi: Tensor,
    policies: Tensor,
    mode: Literal["deterministic", "stochastic"] = "deterministic",
    generator: torch.Generator | None = None,
    *,
    sampling: Literal["marginal", "full"] = "marginal",
    alpha: float = 16.0,
    num_controls: Sequence[int] | None = None,
) -> Tensor:
    """Choose the next control of every factor from the policy posterior.

    ``sampling="marginal"`` works on the first-step control marginals of each factor
    (pymdp ``sample_action``); ``"full"`` picks one whole policy and returns its first step
    (pymdp ``sample_policy``). ``"deterministic"`` takes the argmax (first index on ties);
    ``"stochastic"`` samples from ``softmax(alpha * log p)``. Draws use a CPU generator, so a
    seed gives the same actions whatever the device of ``q_pi``.

    Parameters
    ----------
    q_pi : Tensor, shape (n_policies,) or (batch, n_policies)
    policies : Tensor of int, shape (n_policies, policy_len, F)
    mode : {"deterministic", "stochastic"}, default "deterministic"
    generator : torch.Generator, optional
        Source of randomness for ``"stochastic"`` (a CPU generator, required there, so runs
        are repeatable).
    sampling : {"marginal", "full"}, default "marginal"
    alpha : float, default 16.0
        Action precision for ``"stochastic"`` (pymdp default 16).
    num_controls : sequence of int, optional
        Controls per factor; default ``policies.max(...) + 1`` per factor.

    Returns
    -------
    Tensor of int64, shape (F,) or (batch, F)
        On the device of ``q_pi``.
    """
    if mode not in ("deterministic", "stochastic"):
        raise ValueError(f"select_action: mode={mode!r}; expected 'deterministic' or 'stochastic'")
    if q_pi.dim() == 1 and mode == "deterministic" and q_pi.is_cpu:
        # One agent on the CPU: a few Python integers are cheaper than stacking tensors.
        policies = torch.as_tensor(policies, dtype=torch.long)
        if sampling == "full":
            return policies[int(torch.argmax(q_pi)), 0, :].clone()
        if num_controls is None:
            num_controls = [int(policies[:, :, f].max()) + 1 for f in range(policies.shape[2])]
        chosen = [int(torch.argmax(m)) for m in action_marginals(q_pi, policies, num_controls)]
        return torch.tensor(chosen, dtype=torch.long)
    policies = torch.as_tensor(policies)
    if policies.dtype != torch.long or policies.device != q_pi.device:
        policies = policies.to(device=q_pi.device, dtype=torch.long)
    if mode == "stochastic" and generator is None:
        raise ValueError(
            "select_action: mode='stochastic' needs a torch.Generator (seeded) as generator"
        )
    if sampling == "full":
        if mode == "deterministic":
            idx = torch.argmax(q_pi, dim=-1)
        else:
            idx = _draw(softmax(alpha * stable_log(q_pi), dim=-1), generator).to(q_pi.device)
        return policies[idx, 0, :].clone()
    if sampling != "marginal":
        raise ValueError(f"select_action: sampling={sampling!r}; expected 'marginal' or 'full'")
    if num_controls is None:
        num_controls = [int(policies[:, :, f].max()) + 1 for f in range(policies.shape[2])]
    picks = []
    for marg in action_marginals(q_pi, policies, num_controls):
        if mode == "deterministic":
            picks.append(torch.argmax(marg, dim=-1))
        else:
            picks.append(_draw(softmax(alpha * stable_log(marg), dim=-1), generator))
    return torch.stack([c.to(q_pi.device) for c in picks], dim=-1).long()


class PolicyEvaluation(NamedTuple):
    """Expected free energy of every policy and the policy posterior it implies.

    Attributes
    ----------
    efe : EFEResult
        Each field has shape (n_policies,).
    q_pi : Tensor, shape (n_policies,)
        ``softmax(-gamma * efe.efe + log E)``.
    """

    efe: EFEResult
    q_pi: Tensor


class _FactoredPlan(NamedTuple):
    """Index tables of the factored read-out of :class:`PolicyEvaluator` (batches only)."""

    order: list[int]  # factors, outermost (contracted last) first
    first_row: list[Tensor]  # per factor: a row of each distinct prefix of that factor
    kidx: list[Tensor]  # per level: the prefix of factor order[i] of each combination
    child: list[Tensor]  # per level: the combination of the levels inside it
    inner: list[int]  # per level: prod n_s of the factors outside it


def _factored_plan(
    parent: list[int], last_action: list[list[int]], ns: Sequence[int], device: torch.device
) -> _FactoredPlan:
    """Index tables of the factored read-out of the prefix rows (``parent``, ``last_action``).

    A factor's prediction at row ``u`` depends only on that factor's own actions up to ``u``:
    rows sharing them share a *factor prefix*, interned here as ``(its parent's id, action)``.
    Level ``i`` contracts factor ``order[i]`` (fewest distinct prefixes innermost); its
    combinations are the distinct tuples of factor prefixes of ``order[i:]`` over the rows, and
    those of level 0 are the rows themselves.
    """
    F, n_rows = len(ns), len(parent)
    key_ids: list[list[int]] = []
    first_row: list[Tensor] = []
    for f in range(F):
        ids: dict[tuple[int, int], int] = {}
        rep: list[int] = []
        per_row: list[int] = []
        for u in range(n_rows):
            key = (per_row[parent[u]] if parent[u] >= 0 else -1, last_action[u][f])
            if key not in ids:
                ids[key] = len(rep)
                rep.append(u)
            per_row.append(ids[key])
        key_ids.append(per_row)
        first_row.append(torch.tensor(rep, dtype=torch.long, device=device))
    order = sorted(range(F), key=lambda f: len(first_row[f]), reverse=True)  # outermost first
    kidx: list[Tensor] = [torch.empty(0, dtype=torch.long)] * F
    child: list[Tensor] = [torch.empty(0, dtype=torch.long)] * F
    inner = [math.prod(ns[g] for g in order[:i]) for i in range(F)]
    combo_of_row = [0] * n_rows  # combination of the level inside (none inside the last: 0)
    for i in reversed(range(F)):
        g = order[i]
        combos: dict[tuple[int, int], int] = {}
        k_list: list[int] = []
        c_list: list[int] = []
        for u in range(n_rows):
            pair = (key_ids[g][u], combo_of_row[u])
            if pair not in combos:
                combos[pair] = len(k_list)
                k_list.append(pair[0])
                c_list.append(pair[1])
            combo_of_row[u] = combos[pair]
        kidx[i] = torch.tensor(k_list, dtype=torch.long, device=device)
        child[i] = torch.tensor(c_list, dtype=torch.long, device=device)
    # All factors' prefixes together are the row's own prefix: level 0 is the rows, in order.
    assert combo_of_row == list(range(n_rows))
    return _FactoredPlan(order, first_row, kidx, child, inner)


class PolicyEvaluator:
    """Expected free energy of all policies and their posterior, precompiled for one model.

    Gives the same numbers as :func:`efe_categorical` followed by :func:`policy_posterior`
    (to rounding, without novelty) at a fraction of the cost per call. Everything that depends
    only on the model and the policies is validated and built once here:

    * the distinct action prefixes ``(u_0, ..., u_t)`` of the policies (``U`` of them over all
      steps; policies that share a prefix share its predicted states) and, per prefix and
      factor, the transition product ``B[f][:, :, u_t] ... B[f][:, :, u_0]``, stacked to shape
      ``(U * n_s[f], n_s[f])``, so that one matrix-vector product predicts factor ``f`` for
      every prefix;
    * a read-out table ``W`` of shape ``(prod n_s, K)`` whose columns map a joint predicted
      state to its predicted outcomes (per modality, or joint outcomes for
      ``info_gain="joint"``), its ambiguity ``sum_m H[A[m][:, s]]`` and its expected
      log-preference ``sum_m log p(o_m) . A[m][:, s]`` per distinct column of ``C``, all of them
      linear in the predicted state;
    * the rows of each policy's prefixes, and a coefficient matrix of shape ``(K, 7)`` that maps
      a policy's read-outs summed over its steps to ``efe``, ``risk``, ``ambiguity``,
      ``pragmatic_value``, ``state_info_gain``, ``novelty`` and the policy logits.

    :meth:`evaluate` then costs one matrix-vector product per factor, an outer product over
    factors (products of 0/1 spreading maps, which beat broadcasting for these tiny axes), one
    matrix product with ``W``, an elementwise ``x log x`` of the predicted outcomes, a
    gather-and-sum over steps, one matrix product with the coefficients and a softmax, whatever
    the number of policies. A batch of beliefs (``qs[f]`` of shape (batch, n_s[f])) is read out
    without the joint predicted state: a factor's prediction depends only on its own actions, so
    it has few distinct values when its controls are few, and the read-out table is contracted
    with one factor's predictions at a time, fewest distinct values first. With ``batched=True``
    each batch element has its own model (every table gains a leading batch axis).

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f])
    C : sequence of Tensor, ``C[m]`` shape (n_o[m],) or (n_o[m], T)
        Log-preferences, normalised here by ``log_softmax``; a 2-D ``C[m]`` gives one column per
        future step, the last column repeating.
    policies : Tensor of int, shape (n_policies, policy_len, F)
    gamma : float, default 16.0
        Policy precision.
    log_E : Tensor, shape (n_policies,), optional
        Log prior over policies; uniform when omitted.
    use_utility, use_states_info_gain : bool, default True
        Which terms enter ``efe`` (as in :func:`efe_categorical`).
    info_gain : {"joint", "per_modality"}, default "joint"
        As in :func:`efe_categorical`.
    batched : bool, default False
        Whether ``A``, ``B``, ``C`` (and ``log_E``) carry a leading batch axis, one model per
        batch element.

    Attributes
    ----------
    policies : Tensor of int64, shape (n_policies, policy_len, F)
    gamma : float
    dtype : torch.dtype
        The dtype of ``A``, of every table and of every result.
    device : torch.device
        The device of ``A``, of every table and of every result.
    batch_size : int or None
        Number of models when ``batched=True``.

    Notes
    -----
    Novelty (parameter information gain) is not part of the precompiled path: the ``novelty``
    field is zero, as in :func:`efe_categorical` without ``pA`` and ``pB``. Use
    :func:`efe_categorical` for learnable models.
    """

    def __init__(
        self,
        A: Sequence[Tensor],
        B: Sequence[Tensor],
        C: Sequence[Tensor],
        policies: Tensor,
        gamma: float = 16.0,
        log_E: Tensor | None = None,
        *,
        use_utility: bool = True,
        use_states_info_gain: bool = True,
        info_gain: Literal["joint", "per_modality"] = "joint",
        batched: bool = False,
    ) -> None:
        if info_gain not in ("joint", "per_modality"):
            raise ValueError(
                f"PolicyEvaluator: info_gain={info_gain!r}; expected 'joint' or 'per_modality'"
            )
        dtype, device = A[0].dtype, A[0].device
        policies = torch.as_tensor(policies, dtype=torch.long, device=device)
        lead = 1 if batched else 0
        ns = tuple(int(b.shape[lead]) for b in B)
        if batched:
            batch = int(A[0].shape[0])
            _check_batch_inputs(
                [torch.ones(batch, n, dtype=dtype, device=device) for n in ns], A, B, C, policies
            )
        else:
            batch = 1
            _check_inputs(
                [torch.ones(n, dtype=dtype, device=device) for n in ns], A, B, C, policies
            )
        n_pol, policy_len, F = policies.shape
        if log_E is not None and log_E.shape[-1] != n_pol:
            raise ValueError(
                f"PolicyEvaluator: log_E has shape {tuple(log_E.shape)}; expected ({n_pol},)"
            )
        self.policies: Tensor = policies
        self.gamma: float = float(gamma)
        self.dtype: torch.dtype = dtype
        self.device: torch.device = device
        self.batch_size: int | None = batch if batched else None
        self._batched = batched
        n_joint = math.prod(ns)
        bl = (batch,) if batched else ()

        # Distinct prefixes, step by step, so a parent's row precedes its children's.
        rows: dict[tuple[int, ...], int] = {}
        parent: list[int] = []
        last_action: list[list[int]] = []
        step: list[int] = []
        pol_list = policies.tolist()
        member_rows: list[list[int]] = [[] for _ in range(n_pol)]
        for t in range(policy_len):
            for p in range(n_pol):
                key = tuple(u for s in pol_list[p][: t + 1] for u in s)
                if key not in rows:
                    rows[key] = len(parent)
                    parent.append(rows[key[:-F]] if t > 0 else -1)
                    last_action.append(list(pol_list[p][t]))
                    step.append(t)
                member_rows[p].append(rows[key])
        n_rows = len(parent)
        self._n_rows = n_rows
        self._policy_len = policy_len
        # Row of each (step, policy), step-major: the sum over steps runs over the leading axis.
        self._member_index = (
            torch.tensor(member_rows, dtype=torch.long, device=device).T.reshape(-1).contiguous()
        )

        # Transition products per prefix and factor.
        self._transitions: list[Tensor] = []
        for f in range(F):
            prods: list[Tensor] = []
            for u in range(n_rows):
                B_u = B[f][..., last_action[u][f]].to(dtype)
                prods.append(B_u @ prods[parent[u]] if parent[u] >= 0 else B_u)
            self._transitions.append(
                torch.stack(prods, dim=lead).reshape(*bl, n_rows * ns[f], ns[f]).contiguous()
            )
        # 0/1 maps (n_s[f], prod n_s) that copy factor f's prediction onto every joint state.
        grids = torch.meshgrid(*[torch.arange(n, device=device) for n in ns], indexing="ij")
        self._spread: list[Tensor] = []
        for f in range(F):
            spread = torch.zeros(ns[f], n_joint, dtype=dtype, device=device)
            spread[grids[f].reshape(-1), torch.arange(n_joint, device=device)] = 1.0
            self._spread.append(spread)
        self._num_states = ns

        # Read-outs, linear in the joint predicted state: outcomes, ambiguity, preferences.
        A_flat = [a.to(dtype).reshape(*bl, int(a.shape[lead]), n_joint) for a in A]
        if info_gain == "joint" and len(A) > 1:
            n_entries = math.prod(int(a.shape[lead]) for a in A) * n_joint
            if n_entries > _MAX_JOINT_ENTRIES:
                raise ValueError(
                    f"PolicyEvaluator: the joint outcome-by-state table has {n_entries} entries "
                    f"(outcomes {[int(a.shape[lead]) for a in A]}, states {list(ns)}); expected "
                    f"at most {_MAX_JOINT_ENTRIES}. Use info_gain='per_modality'."
                )
            if batched:
                outcomes = torch.stack(
                    [
                        _joint_likelihood([a[b] for a in A_flat]).reshape(-1, n_joint)
                        for b in range(batch)
                    ]
                )
            else:
                outcomes = _joint_likelihood(A_flat).reshape(-1, n_joint)
        else:
            outcomes = torch.cat(A_flat, dim=lead)
        n_out = int(outcomes.shape[lead])
        ambiguity = torch.stack([entropy(a, dim=lead) for a in A_flat]).sum(0)  # (*bl, S)
        pref_steps = [
            torch.stack(
                [
                    (
                        a
                        * log_softmax(_batch_preference(c.to(dtype), t, batched), dim=-1).unsqueeze(
                            -1
                        )
                    ).sum(lead)
                    for a, c in zip(A_flat, C, strict=True)
                ]
            ).sum(0)
            for t in range(policy_len)
        ]
        distinct: list[Tensor] = []
        step_col: list[int] = []
        for t in range(policy_len):
            match = [i for i, v in enumerate(distinct) if torch.equal(v, pref_steps[t])]
            if not match:
                distinct.append(pref_steps[t])
                match = [len(distinct) - 1]
            step_col.append(match[0])
        n_pref = len(distinct)
        self._readout = torch.cat(
            [
                outcomes.transpose(-1, -2),
                ambiguity.unsqueeze(-1),
                torch.stack(distinct, dim=-1),
            ],
            dim=-1,
        ).contiguous()  # (*bl, S, K)
        K = n_out + 1 + n_pref
        # Per row, each read-out is multiplied by log(outcome) for outcome columns (x log x),
        # by 1 for ambiguity, and by 1 or 0 for preference columns (the row's own step only).
        self._is_outcome = torch.zeros(1, K, dtype=torch.bool, device=device)
        self._is_outcome[0, :n_out] = True
        self._n_out = n_out
        if n_pref == 1:
            self._weight = torch.ones(1, K, dtype=dtype, device=device)
        else:
            weight = torch.zeros(n_rows, K, dtype=dtype, device=device)
            weight[:, n_out] = 1.0
            cols = torch.tensor(step_col, device=device)[torch.tensor(step, device=device)]
            weight[torch.arange(n_rows, device=device), n_out + 1 + cols] = 1.0
            self._weight = weight

        # Per-policy sums of [sum_o q log q, ambiguity, preferences] -> the seven outputs.
        neg_h = torch.zeros(K, dtype=dtype, device=device)
        neg_h[:n_out] = 1.0
        amb = torch.zeros(K, dtype=dtype, device=device)
        amb[n_out] = 1.0
        prag = torch.zeros(K, dtype=dtype, device=device)
        prag[n_out + 1 :] = 1.0
        risk = neg_h - prag
        info = -neg_h - amb
        efe = torch.zeros(K, dtype=dtype, device=device)
        if use_utility:
            efe = efe - prag
        if use_states_info_gain:
            efe = efe - info
        zero = torch.zeros(K, dtype=dtype, device=device)
        coef = torch.stack([efe, risk, amb, prag, info, zero, -gamma * efe])
        self._coef = coef.contiguous()  # (7, K)
        self._coef_T = coef.T.contiguous()  # (K, 7)
        bias = torch.zeros(*bl, 7, n_pol, dtype=dtype, device=device)
        if log_E is not None:
            bias[..., 6, :] = log_E.to(dtype=dtype, device=device)
        self._bias = bias
        self._bias_T = bias.transpose(-1, -2).contiguous()  # (*bl, n_pol, 7)

        # Factored read-out for batches: contract the read-out table with one factor's
        # predictions at a time instead of building the joint predicted state of every row.
        self._factored = _factored_plan(parent, last_action, ns, device)
        order = self._factored.order
        # State axes innermost level first: each level sums out the leading state axis.
        perm = [lead + o for o in reversed(order)]
        W = self._readout.reshape(*bl, *ns, K).permute(*range(lead), *perm, lead + F)
        self._factored_readout = W.reshape(*bl, 1, n_joint, K).contiguous()
        self._factored_trans = [
            self._transitions[f]
            .reshape(*bl, n_rows, ns[f], ns[f])[..., self._factored.first_row[f], :, :]
            .reshape(*bl, -1, ns[f])
            .contiguous()
            for f in range(F)
        ]

    def evaluate(self, qs: Sequence[Tensor]) -> PolicyEvaluation:
        """EFE of every policy from the current beliefs, and the policy posterior.

        No argument is checked: ``qs`` must hold one probability vector per factor in
        :attr:`dtype` (or a batch of them). Use :func:`efe_categorical` for checked inputs.

        Parameters
        ----------
        qs : sequence of Tensor, ``qs[f]`` shape (n_s[f],) or (batch, n_s[f])
            Current beliefs (the start of every policy).

        Returns
        -------
        PolicyEvaluation
            ``efe`` (an :class:`EFEResult`, each field of shape (n_policies,) or
            (batch, n_policies)) and ``q_pi`` of the same shape.
        """
        if qs[0].dim() == 2:
            return self._evaluate_batch(qs)
        # Joint predicted state of every prefix, (U, prod n_s), as an outer product of factors.
        n_rows, ns, spread = self._n_rows, self._num_states, self._spread
        q_joint = self._transitions[0].mv(qs[0]).view(n_rows, ns[0]).mm(spread[0])
        for f in range(1, len(qs)):
            q_joint = q_joint * self._transitions[f].mv(qs[f]).view(n_rows, ns[f]).mm(spread[f])
        read = q_joint.mm(self._readout)  # (U, K)
        logs = read.clamp_min(EPS).log()
        terms = read * torch.where(self._is_outcome, logs, self._weight)
        per_policy = (
            terms.index_select(0, self._member_index)
            .view(self._policy_len, -1, terms.shape[1])
            .sum(0)
        )  # (n_policies, K)
        out = self._bias.addmm(self._coef, per_policy.T)  # (7, n_policies)
        efe, risk, ambiguity, pragmatic, info, novelty, logits = out.unbind(0)
        return PolicyEvaluation(
            EFEResult(efe, risk, ambiguity, pragmatic, info, novelty), logits.softmax(0)
        )

    def _evaluate_batch(self, qs: Sequence[Tensor]) -> PolicyEvaluation:
        """:meth:`evaluate` for beliefs with a leading batch axis."""
        batch = int(qs[0].shape[0])
        # Chunks of agents keep the intermediates small enough for the cache; one chunk per call
        # for small batches.
        per_agent = self._n_rows * int(self._readout.shape[-2])
        chunk = max(1, min(batch, _CHUNK_ENTRIES // max(1, per_agent)))
        if chunk >= batch:
            out = self._evaluate_chunk(qs, 0, batch)
        else:
            out = torch.cat(
                [
                    self._evaluate_chunk(qs, start, min(batch, start + chunk))
                    for start in range(0, batch, chunk)
                ]
            )
        efe, risk, ambiguity, pragmatic, info, novelty, logits = out.unbind(-1)
        return PolicyEvaluation(
            EFEResult(efe, risk, ambiguity, pragmatic, info, novelty), logits.softmax(-1)
        )

    def _factored_read(self, qs: Sequence[Tensor], start: int, stop: int) -> Tensor:
        """Read-outs of every row, contracting one factor at a time, shape (chunk, U, K).

        Level ``i`` sums factor ``order[i]`` out of the read-out table of every combination of
        the factors inside it: ``G_i[c] = sum_s p[kidx[c], s] G_{i+1}[child[c], s, ...]``.
        """
        plan = self._factored
        ns = self._num_states
        b = stop - start
        G = self._factored_readout[start:stop] if self._batched else self._factored_readout
        K = int(G.shape[-1])
        for i in reversed(range(len(plan.order))):  # innermost level first
            g = plan.order[i]
            q = qs[g][start:stop]
            n = ns[g]
            if self._batched:
                pred = torch.bmm(self._factored_trans[g][start:stop], q.unsqueeze(-1))
                pred = pred.view(b, -1, n)
            else:
                pred = self._factored_trans[g].mm(q.T).view(-1, n, b).permute(2, 0, 1)
            inner = G.view(G.shape[0], -1, n, plan.inner[i] * K).index_select(1, plan.child[i])
            p = pred.index_select(1, plan.kidx[i])  # (b, C_i, n)
            # sum over the factor's states as n multiply-adds (faster than a reduction over a
            # middle axis, or than batched 1-row matrix products, at these sizes)
            G = inner[:, :, 0] * p[:, :, 0, None]  # (b, C_i, S_outer * K)
            for s in range(1, n):
                G.addcmul_(inner[:, :, s], p[:, :, s, None])
        return G.reshape(b, self._n_rows, K)

    def _evaluate_chunk(self, qs: Sequence[Tensor], start: int, stop: int) -> Tensor:
        """The seven outputs for batch elements ``start..stop-1``, shape (chunk, n_policies, 7)."""
        b = stop - start
        read = self._factored_read(qs, start, stop)  # (b, U, K)
        n_out = self._n_out
        outcomes = read[..., :n_out]
        linear = read[..., n_out:]
        if self._weight.shape[0] > 1:
            linear = linear * self._weight[:, n_out:]
        terms = torch.cat([outcomes * outcomes.clamp_min(EPS).log(), linear], dim=-1)
        K = terms.shape[-1]
        per_policy = (
            terms.index_select(1, self._member_index).view(b, self._policy_len, -1, K).sum(1)
        )  # (b, n_policies, K)
        bias = self._bias_T[start:stop] if self._batched else self._bias_T
        return torch.matmul(per_policy, self._coef_T) + bias  # (b, n_policies, 7)
