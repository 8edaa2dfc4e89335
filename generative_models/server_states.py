"""The worked discrete generative model of task offloading: server load levels, queue and outcome.

Each server's load level is a hidden-state factor; the agent observes the queue length and the
outcome of the task it sent; a policy is the sequence of servers the next tasks go to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from aif.maths import normalize
from generative_models.categorical import CategoricalPOMDP

__all__ = [
    "OUTCOME_LABELS",
    "ServerStateModel",
    "ServerStateSpec",
    "build_server_state_model",
]

#: Outcome of a task: failed (abandoned past the deadline) or completed in a latency band.
OUTCOME_LABELS: tuple[str, ...] = ("failed", "fast", "medium", "slow")


def _default_latency_probs() -> list[list[float]]:
    # Assumed values. The cloud (server 0) is faster than the edge servers at the same load, as
    # in He et al., IEEE TMC 23(12), 2024, Fig. 2 (cloud compute time always below edge).
    return [[0.6, 0.3, 0.1]] + [[0.2, 0.5, 0.3]] * 4


@dataclass(frozen=True)
class ServerStateSpec:
    """Sizes and priors of the server-state model; every number here is an assumed setting.

    Parameters
    ----------
    num_servers : int, default 5
        N. One cloud and four edge servers (cloud:edge = 1:4, He et al. 2024).
    num_load_levels : int, default 3
        L, load levels per server (0 = idle ... L-1 = saturated); also the queue-length bins.
    drain_prob : float, default 0.3
        Probability that a server's load drops one level in a step without a new task.
    task_load_prob : float, default 0.6
        Probability that a task sent to a server raises its load one level.
    background_prob : float, default 0.1
        Probability that other users raise a server's load one level in a step.
    queue_obs_accuracy : float, default 0.8
        Probability that the queue-length reading equals the chosen server's load level (the
        rest spread evenly over the other bins).
    latency_probs : sequence of sequence of float, shape (N, 3)
        Latency-band probabilities (fast, medium, slow) of each server at load level 0.
    load_slowdown : float, default 1.0
        How much each load level shifts mass towards slower bands (log-odds per level).
    fail_probs : sequence of float, shape (L,), optional
        Failure probability at each load level; default ``linspace(0.02, 0.4, L)``.
    outcome_preferences : sequence of float, shape (4,)
        Log-preferences ``C`` over ``OUTCOME_LABELS``.
    load_prior : sequence of float, shape (L,), optional
        Prior over each server's initial load level; default uniform.
    policy_len : int, default 1
        Number of future tasks a policy places.
    """

    num_servers: int = 5
    num_load_levels: int = 3
    drain_prob: float = 0.3
    task_load_prob: float = 0.6
    background_prob: float = 0.1
    queue_obs_accuracy: float = 0.8
    latency_probs: Sequence[Sequence[float]] = field(default_factory=_default_latency_probs)
    load_slowdown: float = 1.0
    fail_probs: Sequence[float] | None = None
    outcome_preferences: Sequence[float] = (-4.0, 2.0, 1.0, 0.0)
    load_prior: Sequence[float] | None = None
    policy_len: int = 1

    def __post_init__(self) -> None:
        if self.num_servers < 1:
            raise ValueError(f"num_servers={self.num_servers}; expected >= 1")
        if self.num_load_levels < 2:
            raise ValueError(f"num_load_levels={self.num_load_levels}; expected >= 2")
        for name in ("drain_prob", "task_load_prob", "background_prob", "queue_obs_accuracy"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value}; expected a probability in [0, 1]")
        lat = torch.as_tensor(self.latency_probs, dtype=torch.float64)
        if tuple(lat.shape) != (self.num_servers, 3):
            raise ValueError(
                f"latency_probs has shape {tuple(lat.shape)}; expected ({self.num_servers}, 3) "
                "(fast, medium, slow per server)"
            )
        if (lat < 0).any() or ((lat.sum(-1) - 1).abs() > 1e-6).any():
            raise ValueError(
                f"latency_probs rows {lat.tolist()} must be probabilities summing to one"
            )
        if self.fail_probs is not None:
            fp = torch.as_tensor(self.fail_probs, dtype=torch.float64)
            if tuple(fp.shape) != (self.num_load_levels,) or (fp < 0).any() or (fp > 1).any():
                raise ValueError(
                    f"fail_probs has shape {tuple(fp.shape)} / values {fp.tolist()}; expected "
                    f"({self.num_load_levels},) probabilities"
                )
        if len(self.outcome_preferences) != len(OUTCOME_LABELS):
            raise ValueError(
                f"outcome_preferences has {len(self.outcome_preferences)} entries; expected "
                f"{len(OUTCOME_LABELS)} for {OUTCOME_LABELS}"
            )
        if self.load_prior is not None:
            lp = torch.as_tensor(self.load_prior, dtype=torch.float64)
            if (
                tuple(lp.shape) != (self.num_load_levels,)
                or (lp < 0).any()
                or abs(float(lp.sum()) - 1) > 1e-6
            ):
                raise ValueError(
                    f"load_prior has shape {tuple(lp.shape)} / values {lp.tolist()}; expected "
                    f"({self.num_load_levels},) probabilities summing to one"
                )
        if self.policy_len < 1:
            raise ValueError(f"policy_len={self.policy_len}; expected >= 1")


@dataclass(frozen=True)
class ServerStateModel:
    """The built model and the labels that give its indices meaning.

    Attributes
    ----------
    pomdp : CategoricalPOMDP
        Factors ``0..N-1``: load level of each server; factor ``N``: the server that received
        the last task. Modality 0: queue-length bin of that server; modality 1: task outcome.
    spec : ServerStateSpec
    factor_names : tuple of str
    modality_names : tuple of str
    policy_targets : Tensor of int64, shape (n_policies, policy_len)
        Server each policy sends the next tasks to.
    """

    pomdp: CategoricalPOMDP
    spec: ServerStateSpec
    factor_names: tuple[str, ...]
    modality_names: tuple[str, ...]
    policy_targets: Tensor

    def action_for_server(self, server: int) -> Tensor:
        """Control vector (one entry per factor), shape (N + 1,), that sends a task to ``server``."""
        return _action_for_server(server, self.spec.num_servers)


def _action_for_server(server: int, n: int) -> Tensor:
    if not 0 <= server < n:
        raise ValueError(f"server={server}; expected 0..{n - 1}")
    action = torch.zeros(n + 1, dtype=torch.long)
    action[server] = 1
    action[n] = server
    return action


def _load_transitions(spec: ServerStateSpec) -> Tensor:
    """``B`` of one server's load, shape (L, L, 2); control 1 = a task arrives from the agent."""
    L = spec.num_load_levels
    B = torch.zeros(L, L, 2, dtype=torch.float64)
    for u in (0, 1):
        up = 1 - (1 - spec.background_prob) * (1 - (spec.task_load_prob if u else 0.0))
        for s in range(L):
            down = spec.drain_prob if s > 0 else 0.0
            stay_up = up if s < L - 1 else 0.0
            # Arrival and drain compete in one step; both happening leaves the level unchanged.
            p_up = stay_up * (1 - down)
            p_down = down * (1 - stay_up)
            B[min(s + 1, L - 1), s, u] += p_up
            B[max(s - 1, 0), s, u] += p_down
            B[s, s, u] += 1 - p_up - p_down
    return B


def _outcome_probs(spec: ServerStateSpec) -> Tensor:
    """``p(outcome | server, load)``, shape (4, N, L)."""
    L = spec.num_load_levels
    lat = torch.as_tensor(spec.latency_probs, dtype=torch.float64)  # (N, 3)
    fail = (
        torch.as_tensor(spec.fail_probs, dtype=torch.float64)
        if spec.fail_probs is not None
        else torch.linspace(0.02, 0.4, L, dtype=torch.float64)
    )
    out = torch.zeros(len(OUTCOME_LABELS), spec.num_servers, L, dtype=torch.float64)
    band_shift = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    for level in range(L):
        bands = normalize(lat * torch.exp(spec.load_slowdown * level * band_shift), dim=-1)
        out[0, :, level] = fail[level]
        out[1:, :, level] = ((1 - fail[level]) * bands).T
    return out


def build_server_state_model(spec: ServerStateSpec | None = None) -> ServerStateModel:
    """Build the server-state POMDP from plain sizes and priors.

    Hidden-state factors: the load level of each of the ``N`` servers (``L`` levels each) and
    the server that received the last task (``N`` values). A policy sends each of the next
    ``policy_len`` tasks to one server: the control of the chosen server's load factor is 1
    (task arrives), the others 0, and the "last target" factor is set to the server. The agent
    observes the queue-length bin and the outcome of the server that took the task.

    Parameters
    ----------
    spec : ServerStateSpec, optional
        Defaults to ``ServerStateSpec()``.

    Returns
    -------
    ServerStateModel
    """
    spec = spec or ServerStateSpec()
    N, L = spec.num_servers, spec.num_load_levels
    ns = [L] * N + [N]

    B_load = _load_transitions(spec)
    B_target = torch.zeros(N, N, N, dtype=torch.float64)
    for j in range(N):
        B_target[j, :, j] = 1.0
    B = [B_load.clone() for _ in range(N)] + [B_target]

    # Observations depend on the load of the server named by the target factor only.
    queue_given_load = torch.full(
        (L, L), (1 - spec.queue_obs_accuracy) / max(L - 1, 1), dtype=torch.float64
    )
    queue_given_load.fill_diagonal_(spec.queue_obs_accuracy)
    outcome = _outcome_probs(spec)  # (4, N, L)
    A_queue = torch.zeros(L, *ns, dtype=torch.float64)
    A_outcome = torch.zeros(len(OUTCOME_LABELS), *ns, dtype=torch.float64)
    for j in range(N):
        for level in range(L):
            index: list[slice | int] = [slice(None)] * (N + 2)
            index[1 + j] = level
            index[1 + N] = j
            A_queue[tuple(index)] = queue_given_load[:, level].reshape(-1, *([1] * (N - 1)))
            A_outcome[tuple(index)] = outcome[:, j, level].reshape(-1, *([1] * (N - 1)))

    load_prior = (
        torch.as_tensor(spec.load_prior, dtype=torch.float64)
        if spec.load_prior is not None
        else torch.full((L,), 1.0 / L, dtype=torch.float64)
    )
    D = [load_prior.clone() for _ in range(N)] + [torch.full((N,), 1.0 / N, dtype=torch.float64)]
    C = [
        torch.zeros(L, dtype=torch.float64),
        torch.as_tensor(spec.outcome_preferences, dtype=torch.float64),
    ]

    # Only joint actions "send to server j" are policies; other control combinations are not.
    targets = torch.cartesian_prod(*[torch.arange(N)] * spec.policy_len).reshape(
        -1, spec.policy_len
    )
    policies = torch.stack(
        [torch.stack([_action_for_server(int(j), N) for j in row]) for row in targets]
    )
    pomdp = CategoricalPOMDP(
        A=[A_queue, A_outcome], B=B, C=C, D=D, policy_len=spec.policy_len, policies=policies
    )
    factor_names = tuple(f"load_{j}" for j in range(N)) + ("target",)
    return ServerStateModel(pomdp, spec, factor_names, ("queue", "outcome"), targets.long())
