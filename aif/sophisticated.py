"""Sophisticated and inductive planning for categorical POMDPs, as pure functions.

Sophisticated inference scores each action by a recursion over the outcomes it may bring and
the actions that would follow them (a tree search with pruning and a node budget); inductive
inference adds the cost of leaving the states from which intended states remain reachable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from aif.maths import EPS, entropy, log_softmax, stable_log, xlogx
from aif.planning import EFEResult, construct_policies, efe_categorical

__all__ = [
    "InductiveEFE",
    "SearchSettings",
    "SophisticatedResult",
    "action_set",
    "efe_inductive",
    "inductive_cost",
    "inductive_matrices",
    "sophisticated_efe_recursive",
    "sophisticated_search",
]

#: Largest joint outcome-by-state table (entries) the search builds for joint outcomes.
_MAX_JOINT_ENTRIES = 20_000_000
#: Parts carried through the recursion, in this order (``score = efe + inductive_cost``, or the
#: prune penalty).
_PARTS = ("score", "efe", "risk", "ambiguity", "pragmatic_value", "state_info_gain", "inductive")
_K = len(_PARTS)


# --------------------------------------------------------------------------------------------
# Results and settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSettings:
    """How far and how wide :func:`sophisticated_search` looks.

    Parameters
    ----------
    horizon : int, default 2
        Number of actions looked ahead (tree depth in actions).
    action_threshold : float, default 0.0
        An action is kept (expanded further) while its probability ``q(u | node)`` is at least
        this value: checked with the one-step scores when a node is expanded and again after
        every deepening, with the scores of the tree so far. Pruned actions never return.
    outcome_threshold : float, default 0.0
        An outcome branch is expanded only if its predicted probability exceeds this value.
    max_nodes : int, optional
        Most belief nodes expanded (the root counts as one; expanding a node scores every
        action from it). Frontier nodes are chosen by the probability of reaching them under
        the tree's current action posteriors; the budget is never exceeded. ``None``: no limit.
    keep_best : bool, default True
        Never prune the most probable action of a node or the most probable outcome of an
        action, so every expanded node and action keeps one child.
    renormalise : bool, default True
        Average the future of an action over its expanded outcomes only (``p(o)`` divided by the
        expanded mass), rather than count pruned branches as ending the horizon (``False``,
        pymdp).
    prune_penalty : float, optional
        ``None``: pruned actions get probability zero. A number: pruned actions, and actions none
        of whose outcomes pass ``outcome_threshold``, score ``efe = prune_penalty`` (pymdp: 512,
        its ``neg_efe = -512``).
    branching : {"joint", "per_modality"}, default "joint"
        Outcome branches over the joint outcome of all modalities with the exact predictive
        ``q(o | u) = E_q(s | u)[prod_m A[m]]``, or over every combination of modality outcomes
        with probability ``prod_m q(o_m | u)`` (pymdp).
    topk_outcomes : int, optional
        With ``branching="per_modality"``: only the ``k`` most probable outcomes of each modality,
        renormalised (pymdp's ``topk_obsspace``).
    entropy_stop : float, optional
        Stop deepening once the entropy of the root's action posterior is at most this value
        (pymdp's ``entropy_stop_threshold``, default 0.5 there).
    efe_stop : float, optional
        Stop deepening once the root's expected score is at most this value (pymdp's
        ``neg_efe_stop_threshold`` with the sign flipped).
    """

    horizon: int = 2
    action_threshold: float = 0.0
    outcome_threshold: float = 0.0
    max_nodes: int | None = None
    keep_best: bool = True
    renormalise: bool = True
    prune_penalty: float | None = None
    branching: Literal["joint", "per_modality"] = "joint"
    topk_outcomes: int | None = None
    entropy_stop: float | None = None
    efe_stop: float | None = None

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"SearchSettings: horizon={self.horizon}; expected >= 1")
        for name in ("action_threshold", "outcome_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SearchSettings: {name}={value}; expected a value in [0, 1]")
        if self.max_nodes is not None and self.max_nodes < 1:
            raise ValueError(f"SearchSettings: max_nodes={self.max_nodes}; expected >= 1 or None")
        if self.branching not in ("joint", "per_modality"):
            raise ValueError(
                f"SearchSettings: branching={self.branching!r}; expected 'joint' or 'per_modality'"
            )
        if self.topk_outcomes is not None:
            if self.topk_outcomes < 1:
                raise ValueError(
                    f"SearchSettings: topk_outcomes={self.topk_outcomes}; expected >= 1 or None"
                )
            if self.branching != "per_modality":
                raise ValueError(
                    f"SearchSettings: topk_outcomes={self.topk_outcomes} with "
                    f"branching={self.branching!r}; expected branching='per_modality'"
                )

    @classmethod
    def pymdp(
        cls,
        horizon: int = 5,
        *,
        policy_prune_threshold: float = 1 / 16,
        observation_prune_threshold: float = 1 / 16,
        entropy_stop_threshold: float | None = 0.5,
        prune_penalty: float = 512.0,
        topk_obsspace: int | None = None,
    ) -> SearchSettings:
        """The search of pymdp 1.0.4's ``si_policy_search``, in its argument names and defaults.

        Use it with ``info_gain="per_modality"`` and ``preferences="raw"`` (pymdp's one-step
        score) and pymdp's ``gamma`` (1 there) for pymdp's numbers. pymdp's node reuse by
        belief similarity (``kl_threshold``, off by default) is not reproduced, and its tree
        size (``max_nodes``, ``max_branching``) is not a limit here.
        """
        return cls(
            horizon=horizon,
            action_threshold=policy_prune_threshold,
            outcome_threshold=observation_prune_threshold,
            max_nodes=None,
            keep_best=False,
            renormalise=False,
            prune_penalty=prune_penalty,
            branching="per_modality",
            topk_outcomes=topk_obsspace,
            entropy_stop=entropy_stop_threshold,
        )


class SophisticatedResult(NamedTuple):
    """Outcome of :func:`sophisticated_search` at the root (the current belief).

    Attributes
    ----------
    q_action : Tensor, shape (n_actions,)
        Posterior over the next action, ``softmax(-gamma * (efe + inductive_cost))`` from the
        recursion (pruned actions zero, or scored by the penalty).
    efe : EFEResult
        Recursive expected free energy of each first action with its parts, each (n_actions,):
        the action's own step plus the expectation, over outcomes and the following actions'
        posteriors, of the rest of the tree (``novelty`` is zero). Inductive cost excluded.
    inductive_cost : Tensor, shape (n_actions,)
        The recursive inductive cost (zero without ``reachability``).
    expanded : Tensor of bool, shape (n_actions,)
        Whether the action was still kept (not pruned) at the end of the search.
    pruned_mass : Tensor, shape (n_actions,)
        Probability, taking the action and then following the tree's action posteriors, of
        reaching an outcome branch that was not expanded before the horizon (pruned by the
        threshold, cut by the budget, or left when the search stopped early).
    nodes_expanded : int
        Belief nodes expanded (the root included), at most ``max_nodes``.
    depth : int
        Action levels searched (``horizon`` unless the search stopped early).
    actions : Tensor of int64, shape (n_actions, F)
        The control of every factor for each action.
    """

    q_action: Tensor
    efe: EFEResult
    inductive_cost: Tensor
    expanded: Tensor
    pruned_mass: Tensor
    nodes_expanded: int
    depth: int
    actions: Tensor


class InductiveEFE(NamedTuple):
    """Expected free energy of each policy and its inductive cost (:func:`efe_inductive`).

    ``q(pi) = softmax(-gamma * (efe.efe + inductive_cost) + log E)``.

    Attributes
    ----------
    efe : EFEResult
        The expected free energy and its parts (:func:`aif.planning.efe_categorical`).
    inductive_cost : Tensor, shape (n_policies,) or (batch, n_policies)
        ``-log(epsilon)`` times the predicted probability, summed over the policy's steps, of
        states from which the intended states are no longer reachable in time (zero or
        positive; pymdp's inductive value with the sign flipped).
    """

    efe: EFEResult
    inductive_cost: Tensor

    @property
    def total(self) -> Tensor:
        """``efe.efe + inductive_cost``, the score that enters ``q(pi)`` (lower is better)."""
        return self.efe.efe + self.inductive_cost


def action_set(num_controls: Sequence[int]) -> Tensor:
    """Every combination of one control per factor, in pymdp's order (last factor fastest).

    Parameters
    ----------
    num_controls : sequence of int, length F

    Returns
    -------
    Tensor of int64, shape (prod(num_controls), F)
    """
    return construct_policies(num_controls, 1, control_factors=range(len(num_controls)))[:, 0, :]


# --------------------------------------------------------------------------------------------
# Inductive inference
# --------------------------------------------------------------------------------------------


def inductive_matrices(
    H: Sequence[Tensor], B: Sequence[Tensor], threshold: float = 0.1, depth: int = 1
) -> list[Tensor]:
    """Backward reachability of intended states, per factor (Friston et al. 2023).

    ``I[f][0] = H[f]``; ``I[f][k][s] = 1`` when some control moves state ``s`` with probability
    above ``threshold`` into a state marked in ``I[f][k - 1]``: from ``s`` the intended states
    are reachable in ``k`` steps (Friston, Salvatori, Isomura, Tschantz, Kiefer, Verbelen, Koudahl,
    Paul, Parr, Razi, Kagan, Buckley, Ramstead, "Active inference and intentional behaviour",
    arXiv:2312.07547, 2023; pymdp 1.x ``generate_I_matrix``).

    Parameters
    ----------
    H : sequence of Tensor, ``H[f]`` shape (n_s[f],) or (batch, n_s[f])
        1 for an intended (goal) state, 0 otherwise; all zeros for a factor without intentions.
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, ...)
    threshold : float, default 0.1
        Transitions with probability at most this value do not count as paths.
    depth : int, default 1
        Number of rows (steps of backward induction, the first being ``H`` itself).

    Returns
    -------
    list of Tensor, ``I[f]`` shape (depth, n_s[f]) or (batch, depth, n_s[f])
        0/1 entries in the dtype of ``H[f]``.
    """
    if depth < 1:
        raise ValueError(f"inductive_matrices: depth={depth}; expected >= 1")
    if len(H) != len(B):
        raise ValueError(f"inductive_matrices: H has {len(H)} factors; expected {len(B)} like B")
    out = []
    for f, (h, b) in enumerate(zip(H, B, strict=True)):
        batched = h.dim() == 2
        if h.dim() not in (1, 2) or b.dim() != 3 + int(batched) or b.shape[-3] != h.shape[-1]:
            raise ValueError(
                f"inductive_matrices: H[{f}] has shape {tuple(h.shape)} and B[{f}] "
                f"{tuple(b.shape)}; expected (n_s,) with (n_s, n_s, n_u), or both with a batch axis"
            )
        # reach[..., prev, next] = 1 if some control moves prev to next above the threshold.
        reach = (b > threshold).any(-1).transpose(-1, -2).to(h.dtype)
        rows = [h]
        for _ in range(depth - 1):
            rows.append(((reach @ rows[-1].unsqueeze(-1)).squeeze(-1) > 0).to(h.dtype))
        out.append(torch.stack(rows, dim=-2))
    return out


def inductive_cost(
    qs: Sequence[Tensor],
    qs_next: Sequence[Tensor],
    reachability: Sequence[Tensor],
    epsilon: float = 1e-3,
) -> Tensor:
    """Inductive cost of predicted beliefs, anchored to the most probable current state.

    For each factor with a path to its intended states, let ``k`` be the fewest backward steps
    in which the most probable state of ``qs[f]`` reaches them; predicted states outside
    ``I[f][max(k - 1, 0)]`` (those not closer to the goal) cost ``-log(epsilon)`` nats each:
    ``cost = -log(epsilon) * sum_f (1 - I[f][max(k - 1, 0)]) . qs_next[f]`` (pymdp 1.x
    ``calc_inductive_value_t`` is ``-cost``).

    Parameters
    ----------
    qs : sequence of Tensor, ``qs[f]`` shape (n_s[f],) or (batch, n_s[f])
        The belief that fixes the anchor state.
    qs_next : sequence of Tensor, ``qs_next[f]`` shape (..., n_s[f]) or (batch, ..., n_s[f])
        Predicted beliefs (for instance one per policy, (n_policies, n_s[f])).
    reachability : sequence of Tensor, ``I[f]`` shape (depth, n_s[f]) or (batch, depth, n_s[f])
        From :func:`inductive_matrices`.
    epsilon : float, default 1e-3
        Probability of a forbidden state implied by the intention; ``-log(epsilon)`` is its cost.

    Returns
    -------
    Tensor, shape of ``qs_next[f]`` without its last axis
        Zero or positive (lower is better).
    """
    if not 0.0 < epsilon <= 1.0:
        raise ValueError(f"inductive_cost: epsilon={epsilon}; expected a value in (0, 1]")
    scale = -math.log(max(epsilon, EPS))
    total: Tensor | None = None
    for f, (q, q_next, I_f) in enumerate(zip(qs, qs_next, reachability, strict=True)):
        shared = I_f.dim() == 2
        if I_f.shape[-1] != q.shape[-1] or not (shared or I_f.dim() == q.dim() + 1):
            raise ValueError(
                f"inductive_cost: reachability[{f}] has shape {tuple(I_f.shape)} for qs[{f}] of shape "
                f"{tuple(q.shape)}; expected (depth, {q.shape[-1]}), or with the batch axes of qs"
            )
        I_f = I_f.to(q_next.dtype)
        anchor = torch.argmax(q, dim=-1)  # (*b,)
        if shared:
            column = I_f.T[anchor]  # (*b, depth)
        else:
            column = torch.gather(I_f, -1, anchor[..., None, None].expand(*I_f.shape[:-1], 1))
            column = column[..., 0]
        on_path = column > 0
        # The first row that holds the anchor is its distance to the goal; the row before it
        # holds the states one step closer.
        row_index = (torch.argmax(on_path.to(torch.int8), dim=-1) - 1).clamp_min(0)
        if shared:
            row = I_f[row_index]  # (*b, n)
        else:
            index = row_index[..., None, None].expand(*I_f.shape[:-2], 1, I_f.shape[-1])
            row = torch.gather(I_f, -2, index)[..., 0, :]
        outside = (1.0 - row) * (scale * on_path.any(-1).to(I_f.dtype)).unsqueeze(-1)
        # The anchor's batch axes broadcast over the extra axes of the predictions.
        extra = q_next.dim() - q.dim()
        outside = outside.reshape(*outside.shape[:-1], *([1] * extra), outside.shape[-1])
        cost = (outside * q_next).sum(-1)
        total = cost if total is None else total + cost
    assert total is not None
    return total


def efe_inductive(
    qs: Sequence[Tensor],
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    C: Sequence[Tensor],
    policies: Tensor,
    reachability: Sequence[Tensor],
    *,
    epsilon: float = 1e-3,
    pA: Sequence[Tensor] | None = None,
    pB: Sequence[Tensor] | None = None,
    use_utility: bool = True,
    use_states_info_gain: bool = True,
    use_param_info_gain: bool = False,
    info_gain: Literal["joint", "per_modality"] = "joint",
    novelty_form: Literal["exact", "spm"] = "exact",
) -> InductiveEFE:
    """Expected free energy of every policy plus its inductive cost (inductive planning).

    The cost of step ``t`` of a policy is :func:`inductive_cost` of its predicted states
    ``q(s_{t+1} | pi)``, anchored to the current belief ``qs`` at every step (pymdp 1.x
    ``compute_neg_efe_policy_inductive``); the costs are summed over the steps.

    Parameters
    ----------
    qs : sequence of Tensor, ``qs[f]`` shape (n_s[f],) or (batch, n_s[f])
    A, B, C, policies, pA, pB, use_utility, use_states_info_gain, use_param_info_gain,
    info_gain, novelty_form
        As in :func:`aif.planning.efe_categorical` (a batched model carries a leading axis).
    reachability : sequence of Tensor, ``I[f]`` shape (depth, n_s[f]) or (batch, depth, n_s[f])
        From :func:`inductive_matrices`.
    epsilon : float, default 1e-3

    Returns
    -------
    InductiveEFE
        ``efe`` (each part (n_policies,) or (batch, n_policies)) and ``inductive_cost``.
    """
    efe = efe_categorical(
        qs,
        A,
        B,
        C,
        policies,
        pA,
        pB,
        use_utility=use_utility,
        use_states_info_gain=use_states_info_gain,
        use_param_info_gain=use_param_info_gain,
        info_gain=info_gain,
        novelty_form=novelty_form,
    )
    policies = torch.as_tensor(policies, dtype=torch.long, device=qs[0].device)
    batched = qs[0].dim() == 2
    pred = [q.unsqueeze(-2).expand(*q.shape[:-1], policies.shape[0], q.shape[-1]) for q in qs]
    cost = torch.zeros_like(efe.efe)
    for t in range(int(policies.shape[1])):
        nxt = []
        for f, (B_f, p) in enumerate(zip(B, pred, strict=True)):
            chosen = B_f.to(p.dtype)[..., policies[:, t, f]]  # (*b, n, n, P)
            if batched and B_f.dim() == 3:
                chosen = chosen.unsqueeze(0)
            nxt.append(torch.einsum("...ijp,...pj->...pi", chosen, p))
        pred = nxt
        cost = cost + inductive_cost(qs, pred, reachability, epsilon).to(cost.dtype)
    return InductiveEFE(efe, cost)


# --------------------------------------------------------------------------------------------
# Sophisticated inference: the model's tables
# --------------------------------------------------------------------------------------------


class _Tables:
    """What one step of the search reads, built once per call from ``A``, ``B`` and ``C``."""

    def __init__(
        self,
        A: Sequence[Tensor],
        B: Sequence[Tensor],
        C: Sequence[Tensor],
        actions: Tensor,
        *,
        info_gain: str,
        branching: str,
        preferences: str,
        use_utility: bool,
        use_states_info_gain: bool,
        reachability: Sequence[Tensor] | None,
        epsilon: float,
    ) -> None:
        F = len(B)
        ns = tuple(int(b.shape[0]) for b in B)
        _check_model(A, B, C, actions, ns)
        dtype, device = A[0].dtype, A[0].device
        self.dtype, self.device = dtype, device
        self.ns = ns
        self.F = F
        self.S = math.prod(ns)
        self.U = int(actions.shape[0])
        self.no = [int(a.shape[0]) for a in A]
        self.O = math.prod(self.no)
        # (U, n, n): the transition of each action, per factor.
        # (n, U * n): previous state against (action, next state), so that one matrix product
        # predicts every action from a batch of beliefs.
        self.trans = [
            B[f].to(dtype)[:, :, actions[:, f]].permute(1, 2, 0).reshape(ns[f], -1).contiguous()
            for f in range(F)
        ]
        self.A_flat = [a.to(dtype).reshape(int(a.shape[0]), self.S) for a in A]
        self.log_A = [stable_log(a) for a in self.A_flat]
        ambiguity = torch.stack([-xlogx(a).sum(0) for a in self.A_flat]).sum(0)  # (S,)
        self.C = [c.to(dtype) for c in C]
        self.preferences = preferences
        self.info_joint = info_gain == "joint"
        self.branch_joint = branching == "joint"
        self.use_utility = use_utility
        self.use_states_info_gain = use_states_info_gain
        # Joint outcome index: modality 0 slowest, as in pymdp's combinations.
        strides = [math.prod(self.no[m + 1 :]) for m in range(len(self.no))]
        self.strides = torch.tensor(strides, dtype=torch.long, device=device)
        self.no_t = torch.tensor(self.no, dtype=torch.long, device=device)
        needs_joint = self.info_joint or self.branch_joint
        if needs_joint and len(A) > 1 and self.O * self.S > _MAX_JOINT_ENTRIES:
            raise ValueError(
                f"sophisticated_search: the joint outcome-by-state table has {self.O * self.S} "
                f"entries (outcomes {self.no}, states {list(ns)}); expected at most "
                f"{_MAX_JOINT_ENTRIES}. Use info_gain='per_modality' and "
                "branching='per_modality'."
            )
        self.A_joint: Tensor | None = None
        if needs_joint:
            joint = self.A_flat[0]
            for a in self.A_flat[1:]:
                joint = (joint.unsqueeze(1) * a.unsqueeze(0)).reshape(-1, self.S)
            self.A_joint = joint  # (O, S)
        # Read-out of the joint predicted state: [outcome columns, ambiguity]; preferences per
        # depth are appended by ``readout``.
        cols = []
        if self.info_joint:
            assert self.A_joint is not None
            cols.append(self.A_joint)
        self.n_joint_cols = self.O if self.info_joint else 0
        if not self.info_joint or not self.branch_joint:
            cols.extend(self.A_flat)
        self._base = torch.cat([*cols, ambiguity.unsqueeze(0)], dim=0)  # (R, S)
        self._readouts: dict[int, Tensor] = {}
        self.reach = (
            None
            if reachability is None
            else [i.to(dtype=dtype, device=device) for i in reachability]
        )
        self.epsilon = epsilon

    def readout(self, depth: int) -> Tensor:
        """(S, R + 1): outcome columns, ambiguity and the preference of step ``depth``."""
        table = self._readouts.get(depth)
        if table is None:
            pref = torch.zeros(self.S, dtype=self.dtype, device=self.device)
            for m, (a, c) in enumerate(zip(self.A_flat, self.C, strict=True)):
                col = _preference(c, depth, m)
                if self.preferences == "normalised":
                    col = log_softmax(col, dim=0)
                pref = pref + col @ a
            table = torch.cat([self._base, pref.unsqueeze(0)], dim=0).T.contiguous()
            self._readouts[depth] = table
        return table


def _preference(C_m: Tensor, depth: int, m: int) -> Tensor:
    if C_m.dim() == 1:
        return C_m
    if C_m.dim() == 2:
        return C_m[:, min(depth, int(C_m.shape[1]) - 1)]
    raise ValueError(f"C[{m}] has shape {tuple(C_m.shape)}; expected (n_o,) or (n_o, T)")


def _check_model(
    A: Sequence[Tensor], B: Sequence[Tensor], C: Sequence[Tensor], actions: Tensor, ns: tuple
) -> None:
    for f, B_f in enumerate(B):
        if B_f.dim() != 3 or B_f.shape[0] != B_f.shape[1]:
            raise ValueError(
                f"sophisticated_search: B[{f}] has shape {tuple(B_f.shape)}; expected "
                "(n_s, n_s, n_u) (one model, no batch axis)"
            )
    for m, A_m in enumerate(A):
        if tuple(A_m.shape[1:]) != ns:
            raise ValueError(
                f"sophisticated_search: A[{m}] has shape {tuple(A_m.shape)}; expected "
                f"(n_o, {', '.join(map(str, ns))})"
            )
    if len(C) != len(A):
        raise ValueError(f"sophisticated_search: C has {len(C)} modalities; expected {len(A)}")
    for m, (C_m, A_m) in enumerate(zip(C, A, strict=True)):
        if C_m.dim() not in (1, 2) or C_m.shape[0] != A_m.shape[0]:
            raise ValueError(
                f"sophisticated_search: C[{m}] has shape {tuple(C_m.shape)}; expected "
                f"({A_m.shape[0]},) or ({A_m.shape[0]}, T)"
            )
    if actions.dim() != 2 or actions.shape[1] != len(B) or actions.shape[0] < 1:
        raise ValueError(
            f"sophisticated_search: actions have shape {tuple(actions.shape)}; expected "
            f"(n_actions, {len(B)})"
        )
    for f, B_f in enumerate(B):
        hi, lo = int(actions[:, f].max()), int(actions[:, f].min())
        if lo < 0 or hi >= B_f.shape[2]:
            raise ValueError(
                f"sophisticated_search: actions use controls {lo}..{hi} of factor {f}; "
                f"expected 0..{B_f.shape[2] - 1} (B[{f}] has shape {tuple(B_f.shape)})"
            )


class _Step(NamedTuple):
    """One step from ``N`` belief nodes under every action."""

    parts: Tensor  # (N, U, K)
    pred: list[Tensor]  # per factor (N, U, n_f)
    joint: Tensor  # (N, U, S) predicted joint state
    qo_joint: Tensor | None  # (N, U, O) exact joint predictive, when computed
    qo_modal: list[Tensor] | None  # per modality (N, U, n_o[m])


def _one_step(tab: _Tables, qs: Sequence[Tensor], depth: int) -> _Step:
    """Every part of the one-step EFE of every action from each of ``N`` beliefs."""
    N, U = int(qs[0].shape[0]), tab.U
    pred = [(q @ T).view(N, U, -1) for q, T in zip(qs, tab.trans, strict=True)]  # (N, U, n_f)
    joint = pred[0]
    for p in pred[1:]:
        joint = (joint.unsqueeze(-1) * p.unsqueeze(-2)).reshape(N, U, -1)
    read = joint @ tab.readout(depth)  # (N, U, R + 1)
    ambiguity, pragmatic = read[..., -2], read[..., -1]
    qo_joint = None
    qo_modal = None
    if tab.info_joint:
        qo_joint = read[..., : tab.O]
        h_o = -xlogx(qo_joint).sum(-1)
    start = tab.n_joint_cols
    if not tab.info_joint or not tab.branch_joint:
        qo_modal = []
        for n_o in tab.no:
            qo_modal.append(read[..., start : start + n_o])
            start += n_o
        if not tab.info_joint:
            h_o = torch.stack([-xlogx(q).sum(-1) for q in qo_modal]).sum(0)
    info = h_o - ambiguity
    risk = -h_o - pragmatic
    efe = torch.zeros_like(info)
    if tab.use_utility:
        efe = efe - pragmatic
    if tab.use_states_info_gain:
        efe = efe - info
    if tab.reach is not None:
        ind = inductive_cost(qs, pred, tab.reach, tab.epsilon)
    else:
        ind = torch.zeros_like(efe)
    parts = torch.stack([efe + ind, efe, risk, ambiguity, pragmatic, info, ind], dim=-1)
    return _Step(parts, pred, joint, qo_joint, qo_modal)


def _branch_probabilities(
    tab: _Tables, step: _Step, settings: SearchSettings
) -> tuple[Tensor, Tensor]:
    """Outcome combinations worth considering and their probabilities under each action.

    Returns the combinations as joint outcome indices ``(O',)`` and their probabilities
    ``(N, U, O')``. With a threshold, modality outcomes whose marginal probability never
    exceeds it are left out first: a combination is never more probable than any of its parts.
    """
    thr = settings.outcome_threshold
    if tab.branch_joint:
        qo = step.qo_joint
        if qo is None:
            assert tab.A_joint is not None
            qo = step.joint @ tab.A_joint.T
        index = torch.arange(tab.O, device=tab.device)
        if thr > 0 and qo.shape[-1] > 1:
            keep = (qo > thr).flatten(0, 1).any(0)
            if settings.keep_best:
                keep = keep | _argmax_mask(qo).flatten(0, 1).any(0)
            index = keep.nonzero().squeeze(1)
            qo = qo.index_select(-1, index)
        return index, qo
    assert step.qo_modal is not None
    probs = []
    for q in step.qo_modal:
        if settings.topk_outcomes is not None and settings.topk_outcomes < q.shape[-1]:
            top = torch.topk(q, settings.topk_outcomes, dim=-1)
            q = torch.zeros_like(q).scatter(-1, top.indices, top.values)
            q = q / q.sum(-1, keepdim=True)
        probs.append(q)
    values = []
    for q in probs:
        v = torch.arange(q.shape[-1], device=tab.device)
        if thr > 0:
            keep = (q > thr).flatten(0, 1).any(0)
            if settings.keep_best:
                keep = keep | _argmax_mask(q).flatten(0, 1).any(0)
            v = keep.nonzero().squeeze(1)
        values.append(v)
    p = probs[0].index_select(-1, values[0])
    index = values[0] * tab.strides[0]
    for m in range(1, len(probs)):
        q = probs[m].index_select(-1, values[m])
        p = (p.unsqueeze(-1) * q.unsqueeze(-2)).flatten(-2)
        index = (index.unsqueeze(-1) + values[m] * tab.strides[m]).flatten()
    return index, p


def _argmax_mask(x: Tensor) -> Tensor:
    """Boolean mask of the first maximum along the last axis."""
    return torch.zeros_like(x, dtype=torch.bool).scatter_(-1, x.argmax(-1, keepdim=True), True)


def _posterior(
    tab: _Tables,
    step: _Step,
    node: Tensor,
    action: Tensor,
    outcome: Tensor,
    inference: str,
    num_iter: int,
) -> list[Tensor]:
    """Posterior marginals after ``outcome`` under ``action`` from each listed node."""
    M = int(node.shape[0])
    digits = (outcome.unsqueeze(1) // tab.strides) % tab.no_t  # (M, n_modalities)
    if inference == "exact":
        lik = tab.A_flat[0].index_select(0, digits[:, 0])
        for m in range(1, len(tab.A_flat)):
            lik = lik * tab.A_flat[m].index_select(0, digits[:, m])
        post = step.joint[node, action] * lik  # (M, S)
        post = post / post.sum(-1, keepdim=True).clamp_min(torch.finfo(post.dtype).tiny)
        post = post.reshape(M, *tab.ns)
        if tab.F == 1:
            return [post]
        return [post.sum(dim=[1 + g for g in range(tab.F) if g != f]) for f in range(tab.F)]
    ll = tab.log_A[0].index_select(0, digits[:, 0])
    for m in range(1, len(tab.log_A)):
        ll = ll + tab.log_A[m].index_select(0, digits[:, m])
    log_prior = [stable_log(p[node, action]) for p in step.pred]
    return _fpi(ll.reshape(M, *tab.ns), log_prior, num_iter)


def _fpi(ll: Tensor, log_prior: Sequence[Tensor], num_iter: int) -> list[Tensor]:
    """Mean-field fixed-point iteration from uniform beliefs (pymdp 1.x ``run_factorized_fpi``).

    ``ll`` (M, n_s[0], ..., n_s[F-1]) is the log-likelihood of each row's outcome.
    """
    F = len(log_prior)
    if F == 1:
        return [torch.softmax(ll + log_prior[0], dim=-1)]
    qs = [torch.full_like(lp, 1.0 / lp.shape[-1]) for lp in log_prior]
    letters = "abcdefghijklmnopqrstuvwxyz"[:F]
    for _ in range(num_iter):
        new = []
        for f in range(F):
            others = [g for g in range(F) if g != f]
            spec = f"z{letters}," + ",".join(f"z{letters[g]}" for g in others) + f"->z{letters[f]}"
            marginal = torch.einsum(spec, ll, *[qs[g] for g in others])
            new.append(torch.softmax(marginal + log_prior[f], dim=-1))
        qs = new
    return qs


# --------------------------------------------------------------------------------------------
# Sophisticated inference: the search
# --------------------------------------------------------------------------------------------


class _Level:
    """Belief nodes at one depth, the actions scored from them, and their backed-up values."""

    def __init__(self, qs: list[Tensor], parent: Tensor | None, prob: Tensor | None) -> None:
        self.qs = qs  # per factor (N, n_f)
        self.parent = parent  # (N,) flat index node * U + action into the level above
        self.prob = prob  # (N,) probability of the outcome that led here
        self.N = int(qs[0].shape[0])
        self.step: _Step | None = None
        self.alive: Tensor | None = None  # (N, U) actions still kept
        self.has_child: Tensor | None = None  # (N, U) some outcome passes the threshold
        self.cand_flat: Tensor | None = None  # (nc,) flat index (node * U + action)
        self.cand_outcome: Tensor | None = None  # (nc,) joint outcome index
        self.cand_prob: Tensor | None = None  # (nc,)
        self.q: Tensor | None = None  # (N, U)
        self.value: Tensor | None = None  # (N, U, K)
        self.W: Tensor | None = None  # (N, K)


def sophisticated_search(
    qs: Sequence[Tensor],
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    C: Sequence[Tensor],
    settings: SearchSettings | None = None,
    *,
    gamma: float = 16.0,
    actions: Tensor | None = None,
    reachability: Sequence[Tensor] | None = None,
    inductive_epsilon: float = 1e-3,
    use_utility: bool = True,
    use_states_info_gain: bool = True,
    info_gain: Literal["joint", "per_modality"] = "joint",
    preferences: Literal["normalised", "raw"] = "normalised",
    inference: Literal["exact", "fpi"] = "exact",
    num_iter: int = 16,
) -> SophisticatedResult:
    """Sophisticated inference: expected free energy recursed over actions and outcomes.

    The expected free energy of action ``u`` from belief ``q`` is its own one-step EFE plus,
    for every outcome ``o`` it may bring, the EFE expected under the posterior over the next
    action after updating ``q`` with ``o`` (Friston, Da Costa, Hafner, Hesp & Parr,
    "Sophisticated inference", Neural Computation 33(3), 2021, eq. 9)::

        efe(q, u) = efe_1(q, u) + sum_o q(o | q, u) sum_u' q(u' | q_o) efe(q_o, u')
        q(u | q)  = softmax(-gamma * efe(q, .))

    ending after ``settings.horizon`` actions. ``q_o`` is the posterior after ``o`` (exact, or
    mean-field fixed-point iteration as in pymdp), and ``efe_1`` has every part of
    :func:`aif.planning.efe_categorical` for one step (plus :func:`inductive_cost` with ``reachability``).

    The tree is grown one level at a time (iterative deepening, as in pymdp 1.x
    ``si_policy_search``), with all nodes of a level computed together. After each level the
    values are backed up to the root; actions whose probability falls below
    ``action_threshold`` are pruned, outcome branches at most ``outcome_threshold`` likely are not
    expanded, and at most ``max_nodes`` belief nodes are ever expanded, the most probable to
    reach first. With both thresholds zero and no budget it is the exhaustive recursion
    (:func:`sophisticated_efe_recursive`).

    Parameters
    ----------
    qs : sequence of Tensor, ``qs[f]`` shape (n_s[f],)
        The current belief (marginals), the root of the tree.
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1])
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f])
    C : sequence of Tensor, ``C[m]`` shape (n_o[m],) or (n_o[m], T)
        Log-preferences; a 2-D ``C[m]`` scores the ``d``-th action of the tree with column
        ``d`` (the last repeating).
    settings : SearchSettings, optional
        Horizon, thresholds, budget and branching (default ``SearchSettings()``).
    gamma : float, default 16.0
        Precision of the action posteriors in the tree.
    actions : Tensor of int, shape (n_actions, F), optional
        The actions to consider at every node; default every combination (:func:`action_set`).
    reachability : sequence of Tensor, ``I[f]`` shape (depth, n_s[f]), optional
        Inductive matrices (:func:`inductive_matrices`): each step also costs
        :func:`inductive_cost`, anchored at the belief of the node it leaves.
    inductive_epsilon : float, default 1e-3
    use_utility, use_states_info_gain : bool, default True
        Terms of the one-step EFE.
    info_gain : {"joint", "per_modality"}, default "joint"
        As in :func:`aif.planning.efe_categorical`.
    preferences : {"normalised", "raw"}, default "normalised"
        Score outcomes with ``log_softmax(C)`` (this engine) or the raw ``C`` (pymdp 1.x). They
        differ by a constant per step, which matters only where branches are pruned.
    inference : {"exact", "fpi"}, default "exact"
        Posterior after each outcome: exact marginals, or mean-field fixed-point iteration
        (pymdp's ``"fpi"``), both from the predicted marginals as prior.
    num_iter : int, default 16
        Sweeps of ``"fpi"``.

    Returns
    -------
    SophisticatedResult
        Root action posterior, recursive EFE parts per action, pruned mass, nodes expanded.
    """
    settings = SearchSettings() if settings is None else settings
    if inference not in ("exact", "fpi"):
        raise ValueError(
            f"sophisticated_search: inference={inference!r}; expected 'exact' or 'fpi'"
        )
    if info_gain not in ("joint", "per_modality"):
        raise ValueError(
            f"sophisticated_search: info_gain={info_gain!r}; expected 'joint' or 'per_modality'"
        )
    if preferences not in ("normalised", "raw"):
        raise ValueError(
            f"sophisticated_search: preferences={preferences!r}; expected 'normalised' or 'raw'"
        )
    if num_iter < 1:
        raise ValueError(f"sophisticated_search: num_iter={num_iter}; expected >= 1")
    device = A[0].device
    if actions is None:
        actions = action_set([int(b.shape[2]) for b in B]).to(device)
    actions = torch.as_tensor(actions, dtype=torch.long, device=device)
    if len(qs) != len(B) or any(
        q.dim() != 1 or q.shape[0] != b.shape[0] for q, b in zip(qs, B, strict=False)
    ):
        raise ValueError(
            f"sophisticated_search: qs has shapes {[tuple(q.shape) for q in qs]}; expected "
            f"{[(int(b.shape[0]),) for b in B]} (one belief, no batch axis)"
        )
    tab = _Tables(
        A,
        B,
        C,
        actions,
        info_gain=info_gain,
        branching=settings.branching,
        preferences=preferences,
        use_utility=use_utility,
        use_states_info_gain=use_states_info_gain,
        reachability=reachability,
        epsilon=inductive_epsilon,
    )
    U = tab.U
    penalty = settings.prune_penalty
    levels = [_Level([q.to(tab.dtype).unsqueeze(0) for q in qs], None, None)]
    expanded_nodes = 1
    for d in range(settings.horizon):
        lev = levels[d]
        step = _one_step(tab, lev.qs, d)
        lev.step = step
        q1 = torch.softmax(-gamma * step.parts[..., 0], dim=-1)
        alive = q1 >= settings.action_threshold
        if settings.keep_best:
            alive = alive | _argmax_mask(q1)
        if d > 0:
            # Nodes under actions pruned since they were selected are dead too.
            assert lev.parent is not None
            path = levels[d - 1].alive.reshape(-1)[lev.parent]  # type: ignore[union-attr]
            alive = alive & path.unsqueeze(1)
        lev.alive = alive
        last = d == settings.horizon - 1
        if not last or penalty is not None:
            index, probs = _branch_probabilities(tab, step, settings)
            passing = probs > settings.outcome_threshold
            if settings.keep_best and probs.shape[-1] > 0:
                passing = passing | (_argmax_mask(probs) & (probs > 0))
            lev.has_child = passing.any(-1)
            if not last:
                passing = passing & alive.unsqueeze(-1)
                flat = passing.reshape(-1).nonzero().squeeze(1)
                n_out = int(probs.shape[-1])
                lev.cand_flat = flat // n_out
                lev.cand_outcome = index[flat % n_out]
                lev.cand_prob = probs.reshape(-1)[flat]
        _backward(levels, settings, gamma)
        root_q = levels[0].q
        assert root_q is not None and levels[0].W is not None
        if settings.entropy_stop is not None and float(entropy(root_q[0])) <= settings.entropy_stop:
            break
        if settings.efe_stop is not None and float(levels[0].W[0, 0]) <= settings.efe_stop:
            break
        if last:
            break
        # Select the next level's nodes: outcomes under actions still kept along the whole path,
        # the most probable to reach first when the budget binds.
        assert lev.cand_flat is not None and lev.cand_prob is not None
        assert lev.cand_outcome is not None
        keep = lev.alive.reshape(-1)[lev.cand_flat]
        cand = keep.nonzero().squeeze(1)
        if settings.max_nodes is not None:
            room = settings.max_nodes - expanded_nodes
            if room <= 0:
                break
            if cand.numel() > room:
                reach = _reach(levels, d)  # (N_d,)
                q_d = lev.q.reshape(-1)  # type: ignore[union-attr]
                flat_c = lev.cand_flat[cand]
                score = reach[flat_c // U] * q_d[flat_c] * lev.cand_prob[cand]
                top = torch.topk(score, room, sorted=False).indices
                cand = cand[top.sort().values]
        if cand.numel() == 0:
            break
        flat_c = lev.cand_flat[cand]
        node, action = flat_c // U, flat_c % U
        post = _posterior(tab, step, node, action, lev.cand_outcome[cand], inference, num_iter)
        levels.append(_Level(post, flat_c, lev.cand_prob[cand]))
        expanded_nodes += int(cand.numel())
    mass = _pruned_mass(levels, settings.horizon)
    root = levels[0]
    assert root.q is not None and root.value is not None and root.alive is not None
    v = root.value[0]
    zero = torch.zeros_like(v[:, 0])
    efe = EFEResult(v[:, 1], v[:, 2], v[:, 3], v[:, 4], v[:, 5], zero)
    return SophisticatedResult(
        q_action=root.q[0],
        efe=efe,
        inductive_cost=v[:, 6],
        expanded=root.alive[0].clone(),
        pruned_mass=mass,
        nodes_expanded=expanded_nodes,
        depth=len(levels),
        actions=actions,
    )


def _backward(levels: list[_Level], settings: SearchSettings, gamma: float) -> None:
    """Back the values of the tree up from its deepest level to the root; prune actions."""
    penalty = settings.prune_penalty
    child: _Level | None = None
    for lev in reversed(levels):
        assert lev.step is not None and lev.alive is not None
        N, U = lev.N, int(lev.alive.shape[1])
        value = lev.step.parts
        if child is not None and child.W is not None:
            assert child.parent is not None and child.prob is not None
            fut = torch.zeros(N * U, _K, dtype=value.dtype, device=value.device)
            fut.index_add_(0, child.parent, child.prob.unsqueeze(1) * child.W)
            if settings.renormalise:
                got = torch.zeros(N * U, dtype=value.dtype, device=value.device)
                got.index_add_(0, child.parent, child.prob)
                fut = fut / torch.where(got > 0, got, torch.ones_like(got)).unsqueeze(1)
            value = value + fut.view(N, U, _K)
        alive = lev.alive
        if penalty is not None:
            usable = alive if lev.has_child is None else alive & lev.has_child
            score = torch.where(usable, value[..., 0], torch.full_like(value[..., 0], penalty))
            value = torch.cat([score.unsqueeze(-1), value[..., 1:]], dim=-1)
            q = torch.softmax(-gamma * score, dim=-1)
            W = (q.unsqueeze(-1) * value).sum(1)
        else:
            logits = torch.where(alive, -gamma * value[..., 0], -math.inf)
            any_alive = alive.any(-1, keepdim=True)
            # A node whose actions are all pruned is dead: probability zero, no NaN.
            q = torch.softmax(torch.where(any_alive, logits, 0.0), dim=-1) * any_alive
            W = (q.unsqueeze(-1) * torch.where(alive.unsqueeze(-1), value, 0.0)).sum(1)
        kept = alive & (q >= settings.action_threshold)
        if settings.keep_best:
            best = _argmax_mask(torch.where(alive, q, -1.0))
            kept = kept | (best & alive)
        lev.q, lev.value, lev.W, lev.alive = q, value, W, kept
        child = lev
    # Everything below a pruned action is pruned too.
    for up, lev in zip(levels[:-1], levels[1:], strict=True):
        assert up.alive is not None and lev.alive is not None and lev.parent is not None
        lev.alive = lev.alive & up.alive.reshape(-1)[lev.parent].unsqueeze(1)


def _reach(levels: list[_Level], depth: int) -> Tensor:
    """Probability of reaching each node of level ``depth`` under the current posteriors."""
    reach = torch.ones(1, dtype=levels[0].qs[0].dtype, device=levels[0].qs[0].device)
    for c in range(1, depth + 1):
        up, lev = levels[c - 1], levels[c]
        assert up.q is not None and up.alive is not None
        assert lev.parent is not None and lev.prob is not None
        U = int(up.q.shape[1])
        w = torch.where(up.alive, up.q, 0.0).reshape(-1)
        reach = reach[lev.parent // U] * w[lev.parent] * lev.prob
    return reach


def _pruned_mass(levels: list[_Level], horizon: int) -> Tensor:
    """Per root action: probability of entering an unexpanded branch before the horizon."""
    below: Tensor | None = None  # (N_{c+1},) expected pruned mass from each child node
    for c in reversed(range(len(levels))):
        lev = levels[c]
        assert lev.q is not None and lev.alive is not None
        N, U = lev.N, int(lev.q.shape[1])
        dtype, device = lev.q.dtype, lev.q.device
        if c >= horizon - 1:
            m = torch.zeros(N * U, dtype=dtype, device=device)
        else:
            m = torch.ones(N * U, dtype=dtype, device=device)
            if c + 1 < len(levels):
                child = levels[c + 1]
                assert child.parent is not None and child.prob is not None and below is not None
                m.index_add_(0, child.parent, child.prob * (below - 1.0))
        m = m.view(N, U)
        below = (torch.where(lev.alive, lev.q, 0.0) * m).sum(1)
        if c == 0:
            return m[0].clamp(0.0, 1.0)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# The exhaustive recursion, as written in the paper
# --------------------------------------------------------------------------------------------


def sophisticated_efe_recursive(
    qs: Sequence[Tensor],
    A: Sequence[Tensor],
    B: Sequence[Tensor],
    C: Sequence[Tensor],
    horizon: int,
    *,
    gamma: float = 16.0,
    actions: Tensor | None = None,
    reachability: Sequence[Tensor] | None = None,
    inductive_epsilon: float = 1e-3,
    use_utility: bool = True,
    use_states_info_gain: bool = True,
    info_gain: Literal["joint", "per_modality"] = "joint",
    branching: Literal["joint", "per_modality"] = "joint",
    preferences: Literal["normalised", "raw"] = "normalised",
    inference: Literal["exact", "fpi"] = "exact",
    num_iter: int = 16,
) -> Tensor:
    """The exhaustive sophisticated recursion, depth first, one node at a time.

    A direct transcription of the recursion in :func:`sophisticated_search` with no pruning
    and no budget: every action from every node, every outcome of positive probability. Its
    cost grows as ``(n_actions * n_outcomes) ** horizon``; it is the reference the search is
    checked against.

    Parameters
    ----------
    qs, A, B, C, gamma, actions, reachability, inductive_epsilon, use_utility, use_states_info_gain,
    info_gain, preferences, inference, num_iter
        As in :func:`sophisticated_search`.
    horizon : int
        Number of actions looked ahead.
    branching : {"joint", "per_modality"}, default "joint"
        As in :class:`SearchSettings`.

    Returns
    -------
    Tensor, shape (n_actions,)
        ``efe + inductive_cost`` of each first action (lower is better).
    """
    if horizon < 1:
        raise ValueError(f"sophisticated_efe_recursive: horizon={horizon}; expected >= 1")
    device = A[0].device
    if actions is None:
        actions = action_set([int(b.shape[2]) for b in B]).to(device)
    actions = torch.as_tensor(actions, dtype=torch.long, device=device)
    tab = _Tables(
        A,
        B,
        C,
        actions,
        info_gain=info_gain,
        branching=branching,
        preferences=preferences,
        use_utility=use_utility,
        use_states_info_gain=use_states_info_gain,
        reachability=reachability,
        epsilon=inductive_epsilon,
    )
    settings = SearchSettings(horizon=horizon, branching=branching)

    def value(belief: list[Tensor], depth: int) -> Tensor:
        step = _one_step(tab, belief, depth)
        score = step.parts[0, :, 0].clone()
        if depth == horizon - 1:
            return score
        index, probs = _branch_probabilities(tab, step, settings)
        for u in range(tab.U):
            for k in range(int(probs.shape[-1])):
                p = float(probs[0, u, k])
                if p <= 0.0:
                    continue
                zero = torch.zeros(1, dtype=torch.long, device=device)
                post = _posterior(tab, step, zero, zero + u, index[k : k + 1], inference, num_iter)
                future = value(post, depth + 1)
                q_next = torch.softmax(-gamma * future, dim=-1)
                score[u] = score[u] + p * (q_next * future).sum()
        return score

    return value([q.to(tab.dtype).unsqueeze(0) for q in qs], 0)
