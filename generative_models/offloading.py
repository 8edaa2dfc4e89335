"""Ensemble generative model of the offloading world, declared in Pyro and learned by minimising VFE.

It predicts, for a task sent to server j with resource shares w, the task outcome (completed, log latency,
pass@100) and how every server's remaining resources and queue move until the next task arrives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch import Tensor, nn

__all__ = [
    "ModelConfig",
    "ReadingFilter",
    "ObservationLayout",
    "OffloadingWorldModel",
    "OutcomePrediction",
    "PolicyEFE",
    "PreferenceConfig",
    "Transitions",
    "expected_guidance",
    "log_preference",
    "policy_efe",
]

#: Number of resource kinds a task is granted: compute, bandwidth, GPU memory.
N_RESOURCES = 3
# Upper bound on predicted log standard deviations (the lower bound is ModelConfig.min_sd); Tschantz
# et al. 2020 bound the log-variance in the same spirit, so the likelihood neither collapses nor flattens.
_LOG_SD_MAX = 1.0
# Predicted means stay within this many data standard deviations of the data mean (see _soft_bound).
_MEAN_BOUND = 4.0
# Predicted log latencies stay within the observed range widened by this much (a factor e^0.5).
_LATENCY_MARGIN = 0.5
# Spread of log latency counted in the expected guidance E[1/L] = exp(-mu + sd^2 / 2); beyond a factor
# e the log-normal moment is dominated by its lower tail, which no data support.
_GUIDANCE_MAX_SD = 1.0


@dataclass(frozen=True)
class ObservationLayout:
    """Where the per-server readings and the task features sit in a flat observation vector.

    Parameters
    ----------
    n_servers : int
        S, number of servers.
    distance : slice
        ``S`` entries: distance from the current terminal to each server.
    remaining : slice
        ``S * 3`` entries, server-major: remaining compute, bandwidth and memory fractions.
    queue : slice
        ``S * q`` entries, server-major: queue / occupancy readings (``q >= 1`` per server).
    task : slice
        Features of the current task.
    """

    n_servers: int
    distance: slice
    remaining: slice
    queue: slice
    task: slice

    @classmethod
    def from_mapping(cls, layout: Mapping[str, slice], n_servers: int) -> ObservationLayout:
        """Build from a mapping name -> slice that holds the four keys above."""
        missing = {"distance", "remaining", "queue", "task"} - set(layout)
        if missing:
            raise KeyError(
                f"observation layout lacks {sorted(missing)}; it has {sorted(layout)}, "
                "expected distance, remaining, queue and task"
            )
        out = cls(
            n_servers,
            layout["distance"],
            layout["remaining"],
            layout["queue"],
            layout["task"],
        )
        out.validate()
        return out

    @staticmethod
    def _len(s: slice) -> int:
        return len(range(*s.indices(1 << 30)))

    def validate(self) -> None:
        """Check the slice sizes against ``n_servers``."""
        s = self.n_servers
        if self._len(self.distance) != s:
            raise ValueError(f"distance slice has {self._len(self.distance)} entries, expected {s}")
        if self._len(self.remaining) != s * N_RESOURCES:
            raise ValueError(
                f"remaining slice has {self._len(self.remaining)} entries, expected {s * N_RESOURCES}"
            )
        if self._len(self.queue) % s:
            raise ValueError(
                f"queue slice has {self._len(self.queue)} entries, expected a multiple of {s}"
            )

    @property
    def queue_width(self) -> int:
        """q, queue readings per server."""
        return self._len(self.queue) // self.n_servers

    @property
    def task_width(self) -> int:
        """T, number of task features."""
        return self._len(self.task)

    @property
    def dynamic_width(self) -> int:
        """Per-server readings that move between tasks: remaining (3) and queue (q)."""
        return N_RESOURCES + self.queue_width

    def split(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Split observations into per-server dynamic readings, distances and task features.

        Parameters
        ----------
        obs : Tensor
            Shape ``(..., obs_dim)``.

        Returns
        -------
        dynamic : Tensor
            Shape ``(..., S, 3 + q)``: remaining fractions then queue readings.
        distance : Tensor
            Shape ``(..., S)``.
        task : Tensor
            Shape ``(..., T)``.
        """
        s = self.n_servers
        batch = obs.shape[:-1]
        rem = obs[..., self.remaining].reshape(*batch, s, N_RESOURCES)
        que = obs[..., self.queue].reshape(*batch, s, self.queue_width)
        return torch.cat([rem, que], -1), obs[..., self.distance], obs[..., self.task]

    def with_dynamic(self, obs: Tensor, dynamic: Tensor) -> Tensor:
        """A copy of ``obs`` (shape ``(obs_dim,)``) with the per-server readings replaced.

        ``dynamic`` has shape ``(S, 3 + q)``, as returned by :meth:`split`.
        """
        out = obs.clone()
        out[self.remaining] = dynamic[:, :N_RESOURCES].reshape(-1)
        out[self.queue] = dynamic[:, N_RESOURCES:].reshape(-1)
        return out


@dataclass(frozen=True)
class ModelConfig:
    """Settings of the ensemble world model.

    Parameters
    ----------
    ensemble_size : int
        E, number of members; parameter uncertainty is their disagreement. ``1`` disables it.
    hidden : int
        Width of the two hidden layers of each member.
    prior_scale : float
        Prior standard deviation of every weight, in units of ``1 / sqrt(fan_in)``.
    fit_steps : int
        Gradient steps on the VFE per refit.
    lr : float
        Adam learning rate.
    batch_size : int
        Rows per step (a random subsample, rescaled so the VFE stays unbiased).
    guidance : str
        ``"rg"``: outcome heads, the agent never sees the env reward; ``"reward"``: an extra head learns
        the env reward (ablation).
    prior_function_scale : float
        Scale of each member's fixed random prior function (0, the default, disables it). Prior
        functions keep members disagreeing away from the data, which rescues runs whose early failures
        made every member predict failure everywhere; on the default agent they also kept it exploring
        longer and lowered its completion (see ``docs/agent.md``). With an ensemble of one they only
        shift the fit.
    relative_shares : bool
        Read the planner's continuous action u in [0, 1]^3 as a fraction of what remains on the chosen
        server (shares = u * remaining). Plans then satisfy the problem's constraint that grants never
        exceed the remaining compute, bandwidth and memory (He et al. 2025, problem formulation) on the
        readings the agent has; with ``False`` the agent must learn the constraint from failures.
    min_sd : float
        Floor on every predicted standard deviation (log latency, pass@100, reading changes). It is the
        resolution below which two members' predictions count as agreeing, so it keeps the information
        gain of near-deterministic outcomes from being driven by tiny differences between members.
    """

    ensemble_size: int = 5
    hidden: int = 64
    prior_scale: float = 1.0
    fit_steps: int = 150
    lr: float = 5e-3
    batch_size: int = 1024
    guidance: str = "rg"
    prior_function_scale: float = 0.0
    relative_shares: bool = True
    min_sd: float = 0.05

    def __post_init__(self) -> None:
        for name in ("ensemble_size", "hidden", "fit_steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be an integer >= 1, got {value!r}")
        if not self.prior_scale > 0 or not self.lr > 0:
            raise ValueError(
                f"ModelConfig.prior_scale and lr must be > 0, got {self.prior_scale!r}, {self.lr!r}"
            )
        if self.prior_function_scale < 0:
            raise ValueError(
                f"ModelConfig.prior_function_scale must be >= 0, got {self.prior_function_scale!r}"
            )
        if not 0 < self.min_sd < math.exp(_LOG_SD_MAX):
            raise ValueError(
                f"ModelConfig.min_sd must lie in (0, {math.exp(_LOG_SD_MAX):.3f}), got {self.min_sd!r}"
            )
        if self.guidance not in ("rg", "reward"):
            raise ValueError(
                f"ModelConfig.guidance must be 'rg' or 'reward', got {self.guidance!r}"
            )


class OutcomePrediction(NamedTuple):
    """Each member's predictive distribution of a task outcome; every field has shape ``(E, ...)``."""

    p_complete: Tensor
    log_latency_mean: Tensor
    log_latency_sd: Tensor
    pass_mean: Tensor
    reward_mean: Tensor


class Transitions(NamedTuple):
    """Each member's predicted change of the per-server readings, shape ``(E, ..., S, 3 + q)``."""

    delta_mean: Tensor
    delta_sd: Tensor


# outcome head columns
_OUT = {"logit": 0, "lat_mu": 1, "lat_logsd": 2, "pass_mu": 3, "pass_logsd": 4, "reward_mu": 5}


def _mlp_shapes(e: int, n_in: int, hidden: int, n_out: int) -> dict[str, tuple[int, ...]]:
    return {
        "w1": (e, n_in, hidden),
        "b1": (e, 1, hidden),
        "w2": (e, hidden, hidden),
        "b2": (e, 1, hidden),
        "w3": (e, hidden, n_out),
        "b3": (e, 1, n_out),
    }


def _soft_bound(y: Tensor, bound: float = _MEAN_BOUND) -> Tensor:
    """Smoothly bound standardised means to ``(-bound, bound)``.

    The planner searches actions where a member's prediction is best; an unbounded linear output lets
    it exploit extrapolation far outside the data (a latency of 1e-9 s, say). Bounding predictions to a
    few data standard deviations keeps the search honest without changing fits inside the data.
    """
    return bound * torch.tanh(y / bound)


def _mlp(p: Mapping[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    """Batched member MLP: ``x`` of shape ``(E, N, n_in)`` to ``(E, N, n_out)``, SiLU activations."""
    h = torch.nn.functional.silu(torch.baddbmm(p[f"{prefix}.b1"], x, p[f"{prefix}.w1"]))
    h = torch.nn.functional.silu(torch.baddbmm(p[f"{prefix}.b2"], h, p[f"{prefix}.w2"]))
    return torch.baddbmm(p[f"{prefix}.b3"], h, p[f"{prefix}.w3"])


@dataclass
class _Data:
    """Growing store of transitions (observation, action, outcome, next observation)."""

    obs: list[Tensor] = field(default_factory=list)
    server: list[int] = field(default_factory=list)
    shares: list[Tensor] = field(default_factory=list)
    completed: list[float] = field(default_factory=list)
    log_latency: list[float] = field(default_factory=list)
    has_latency: list[bool] = field(default_factory=list)
    pass_at_100: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    next_obs: list[Tensor] = field(default_factory=list)
    has_next: list[bool] = field(default_factory=list)
    boot: list[Tensor] = field(default_factory=list)


class OffloadingWorldModel(nn.Module):
    """Ensemble generative model p(o, s' | s, a, theta) p(theta) of the offloading world, in Pyro.

    Each of the E members is a pair of small MLPs with a Gaussian prior on every weight. The outcome net
    maps (task features, the chosen server's readings, its identity, the shares, shares minus remaining)
    to Bernoulli(completed), Normal(log latency), Normal(pass@100). The transition net maps each server's
    readings, identity, whether it was chosen and what it granted to the change of its readings until the
    next task. Members see different bootstrap weights of the data, so their disagreement measures
    parameter uncertainty. Learning fits a point (Delta) posterior per member by gradient steps on the
    variational free energy F = -ELBO computed by Pyro's ``Trace_ELBO``.

    Parameters
    ----------
    layout : ObservationLayout
        Where the readings sit in an observation.
    config : ModelConfig
        Sizes and learning settings.
    preferences : PreferenceConfig
        Weights of the expected free energy used by :meth:`efe`.
    seed : int
        Seed of the initial weights and the bootstrap weights.
    """

    # buffers (standardisation of inputs and outputs), declared for type checkers
    out_mu: Tensor
    out_sd: Tensor
    tr_mu: Tensor
    tr_sd: Tensor
    lat_lo: Tensor
    lat_hi: Tensor
    lat_scale: Tensor
    reward_loc: Tensor
    reward_scale: Tensor
    delta_scale: Tensor
    prior_out: Tensor
    prior_tr: Tensor

    def __init__(
        self,
        layout: ObservationLayout,
        config: ModelConfig | None = None,
        preferences: PreferenceConfig | None = None,
        seed: int = 0,
    ):
        super().__init__()
        self.layout = layout
        self.config = config or ModelConfig()
        self.preferences = preferences or PreferenceConfig()
        cfg = self.config
        s, t, d = layout.n_servers, layout.task_width, layout.dynamic_width
        self.n_out_in = t + 1 + d + s + 2 * N_RESOURCES
        self.n_tr_in = t + 1 + d + s + 1 + N_RESOURCES
        self._shapes = {
            **{
                f"out.{k}": v
                for k, v in _mlp_shapes(cfg.ensemble_size, self.n_out_in, cfg.hidden, 6).items()
            },
            **{
                f"tr.{k}": v
                for k, v in _mlp_shapes(cfg.ensemble_size, self.n_tr_in, cfg.hidden, 2 * d).items()
            },
        }
        self.generator = torch.Generator().manual_seed(int(seed))
        self.loc = nn.ParameterDict()
        for name, shape in self._shapes.items():
            init = self._prior_sd(name) * torch.randn(shape, generator=self.generator)
            if name.split(".")[1].startswith("b"):
                init = torch.zeros(shape)
            self.loc[name.replace(".", "_")] = nn.Parameter(init)
        # input standardisation, refreshed at every fit
        self.register_buffer("out_mu", torch.zeros(self.n_out_in))
        self.register_buffer("out_sd", torch.ones(self.n_out_in))
        self.register_buffer("tr_mu", torch.zeros(self.n_tr_in))
        self.register_buffer("tr_sd", torch.ones(self.n_tr_in))
        # output standardisation (log latency, reward, reading changes), refreshed at every fit
        self.register_buffer("lat_lo", torch.tensor(-1.0))
        self.register_buffer("lat_hi", torch.tensor(4.0))
        self.register_buffer("lat_scale", torch.tensor(1.0))
        self.register_buffer("reward_loc", torch.tensor(0.0))
        self.register_buffer("reward_scale", torch.tensor(1.0))
        self.register_buffer("delta_scale", torch.ones(layout.dynamic_width))
        # Randomised prior functions (Osband, Aslanides, Cassirer, NeurIPS 2018): each member adds a
        # fixed random linear map of its standardised input, so members disagree away from the data
        # even where their trained parts extrapolate alike, and information gain stays honest there.
        e, scale = cfg.ensemble_size, cfg.prior_function_scale
        self.register_buffer(
            "prior_out",
            scale
            * torch.randn((e, self.n_out_in, 6), generator=self.generator)
            / math.sqrt(self.n_out_in),
        )
        self.register_buffer(
            "prior_tr",
            scale
            * torch.randn((e, self.n_tr_in, 2 * d), generator=self.generator)
            / math.sqrt(self.n_tr_in),
        )
        self.data = _Data()
        self.vfe_trace: list[float] = []
        self.n_fits = 0

    # ------------------------------------------------------------------ priors and parameters
    def _prior_sd(self, name: str) -> float:
        fan_in = self._shapes[name][1] if name.split(".")[1].startswith("w") else 1
        return self.config.prior_scale / math.sqrt(fan_in)

    def _net(self, p: Mapping[str, Tensor], prefix: str, z: Tensor) -> Tensor:
        """Member outputs: the trained MLP plus the member's fixed random prior function."""
        out = _mlp(p, prefix, z)
        if self.config.prior_function_scale > 0:
            out = out + torch.bmm(z, self.prior_out if prefix == "out" else self.prior_tr)
        return out

    def params(self) -> dict[str, Tensor]:
        """Current point estimates of every weight, keyed ``"out.w1"`` etc."""
        return {name: self.loc[name.replace(".", "_")] for name in self._shapes}

    # ------------------------------------------------------------------ features
    def outcome_features(
        self, dynamic: Tensor, distance: Tensor, task: Tensor, server: Tensor, shares: Tensor
    ) -> Tensor:
        """Inputs of the outcome net.

        Parameters
        ----------
        dynamic : Tensor
            Shape ``(..., S, 3 + q)``.
        distance : Tensor
            Shape ``(..., S)``.
        task : Tensor
            Shape ``(..., T)``.
        server : Tensor
            Shape ``(...)``, long: the chosen server.
        shares : Tensor
            Shape ``(..., 3)``: shares granted.

        Returns
        -------
        Tensor
            Shape ``(..., n_out_in)``.
        """
        s = self.layout.n_servers
        idx = server.unsqueeze(-1)
        chosen = torch.gather(
            dynamic, -2, idx.unsqueeze(-1).expand(*server.shape, 1, dynamic.shape[-1])
        )
        chosen = chosen.squeeze(-2)
        dist_j = torch.gather(distance, -1, idx)
        onehot = torch.nn.functional.one_hot(server, s).to(dynamic.dtype)
        margin = shares - chosen[..., :N_RESOURCES]
        return torch.cat([task, dist_j, chosen, onehot, shares, margin], -1)

    def transition_features(
        self, dynamic: Tensor, distance: Tensor, task: Tensor, server: Tensor, shares: Tensor
    ) -> Tensor:
        """Inputs of the transition net, one row per server: shape ``(..., S, n_tr_in)``."""
        s = self.layout.n_servers
        batch = dynamic.shape[:-2]
        eye = torch.eye(s, dtype=dynamic.dtype).expand(*batch, s, s)
        chosen = torch.nn.functional.one_hot(server, s).to(dynamic.dtype).unsqueeze(-1)
        granted = chosen * shares.unsqueeze(-2)
        task_rep = task.unsqueeze(-2).expand(*batch, s, task.shape[-1])
        return torch.cat([task_rep, distance.unsqueeze(-1), dynamic, eye, chosen, granted], -1)

    # ------------------------------------------------------------------ predictions
    def _members(self, x: Tensor, per_member: bool = False) -> Tensor:
        """Reshape ``(E, ..., n)`` (per member) or broadcast ``(..., n)`` inputs to ``(E, N, n)``."""
        e = self.config.ensemble_size
        if per_member:
            if x.shape[0] != e:
                raise ValueError(
                    f"per-member inputs have leading size {x.shape[0]}, expected ensemble size {e}"
                )
            return x.reshape(e, -1, x.shape[-1])
        flat = x.reshape(1, -1, x.shape[-1])
        return flat.expand(e, flat.shape[1], flat.shape[2])

    def predict_outcome(
        self,
        x: Tensor,
        params: Mapping[str, Tensor] | None = None,
        per_member: bool = False,
    ) -> OutcomePrediction:
        """Member predictions of the task outcome.

        Parameters
        ----------
        x : Tensor
            Outcome features, shape ``(E, ..., n_out_in)`` when ``per_member`` (one row set per member),
            else ``(..., n_out_in)`` (shared by all members).
        params : mapping, optional
            Weights to use (default: the current point estimates).
        per_member : bool
            Whether the leading axis of ``x`` is the ensemble.

        Returns
        -------
        OutcomePrediction
            Fields of shape ``(E, ...)``.
        """
        p = self.params() if params is None else params
        e = self.config.ensemble_size
        batch = x.shape[1:-1] if per_member else x.shape[:-1]
        z = (self._members(x, per_member) - self.out_mu) / self.out_sd
        return self._outcome_heads(self._net(p, "out", z).reshape(e, *batch, 6))

    def _sd(self, log_sd: Tensor, scale: Tensor | float) -> Tensor:
        """Standard deviation in natural units from a standardised log-sd output, floored at min_sd."""
        return (scale * log_sd.clamp(max=_LOG_SD_MAX).exp()).clamp_min(self.config.min_sd)

    def _outcome_heads(self, y: Tensor) -> OutcomePrediction:
        """Natural-unit outcome predictions from the raw net output ``(E, ..., 6)``.

        The log latency is predicted inside the range of stored log latencies widened by
        ``_LATENCY_MARGIN`` on each side, and the reward in standardised units: an untrained member already
        predicts plausible magnitudes, and the planner cannot exploit a member that extrapolates to
        latencies far below anything ever observed.
        """
        return OutcomePrediction(
            p_complete=torch.sigmoid(y[..., _OUT["logit"]]),
            log_latency_mean=self.lat_lo
            + (self.lat_hi - self.lat_lo) * torch.sigmoid(y[..., _OUT["lat_mu"]]),
            log_latency_sd=self._sd(y[..., _OUT["lat_logsd"]], self.lat_scale),
            pass_mean=torch.sigmoid(y[..., _OUT["pass_mu"]]),
            reward_mean=self.reward_loc
            + self.reward_scale * _soft_bound(y[..., _OUT["reward_mu"]]),
        )

    def _transition_heads(self, y: Tensor) -> Transitions:
        """Natural-unit reading changes from the raw net output ``(E, ..., S, 2 (3 + q))``."""
        d = self.layout.dynamic_width
        return Transitions(
            self.delta_scale * _soft_bound(y[..., :d]), self._sd(y[..., d:], self.delta_scale)
        )

    def predict_transition(
        self,
        x: Tensor,
        params: Mapping[str, Tensor] | None = None,
        per_member: bool = False,
    ) -> Transitions:
        """Member predictions of the per-server change of readings.

        Parameters
        ----------
        x : Tensor
            Transition features, shape ``(E, ..., S, n_tr_in)`` when ``per_member``, else
            ``(..., S, n_tr_in)``.
        params : mapping, optional
            Weights to use (default: the current point estimates).
        per_member : bool
            Whether the leading axis of ``x`` is the ensemble.

        Returns
        -------
        Transitions
            Fields of shape ``(E, ..., S, 3 + q)``.
        """
        p = self.params() if params is None else params
        e = self.config.ensemble_size
        d = self.layout.dynamic_width
        batch = x.shape[1:-1] if per_member else x.shape[:-1]
        z = (self._members(x, per_member) - self.tr_mu) / self.tr_sd
        return self._transition_heads(self._net(p, "tr", z).reshape(e, *batch, 2 * d))

    @staticmethod
    def remaining_of(dynamic: Tensor, server: Tensor) -> Tensor:
        """Remaining fractions of the chosen server: ``(..., S, 3 + q)`` and ``(...)`` to ``(..., 3)``."""
        idx = server[..., None, None].expand(*server.shape, 1, dynamic.shape[-1])
        return torch.gather(dynamic, -2, idx).squeeze(-2)[..., :N_RESOURCES].clamp(0.0, 1.0)

    def to_shares(self, obs: Tensor, server: int, vector: Tensor) -> Tensor:
        """The shares to grant for the planner's continuous action ``vector`` (shape ``(3,)``)."""
        if not self.config.relative_shares:
            return vector.clone()
        dyn, _, _ = self.layout.split(obs.to(torch.float32))
        return vector * self.remaining_of(dyn, torch.tensor(server))

    def efe(self, obs: Tensor, choices: Tensor, vectors: Tensor) -> PolicyEFE:
        """Expected free energy of candidate policies (see :func:`policy_efe`)."""
        return policy_efe(self, obs, choices, vectors, self.preferences)

    # ------------------------------------------------------------------ data
    def add(
        self,
        obs: Tensor,
        server: int,
        shares: Tensor,
        completed: bool,
        latency: float,
        pass_at_100: float,
        reward: float,
        next_obs: Tensor | None,
    ) -> None:
        """Store one decision and its outcome.

        Parameters
        ----------
        obs : Tensor
            Shape ``(obs_dim,)``: the observation the decision was made on.
        server : int
            Chosen server.
        shares : Tensor
            Shape ``(3,)``: granted shares.
        completed : bool
            Whether the task completed.
        latency : float
            Latency in seconds of a completed task; ``inf`` for a failed one, whose latency a
            scheduler never observes (it only knows the task was not done by t_max).
        pass_at_100 : float
            Accuracy of the completed task.
        reward : float
            Environment reward; stored only for the ``"reward"`` guidance ablation (zero otherwise).
        next_obs : Tensor or None
            Observation at the next task of the same episode (``None`` at the episode end).
        """
        d = self.data
        d.obs.append(obs.detach().to(torch.float32).clone())
        d.server.append(int(server))
        d.shares.append(shares.detach().to(torch.float32).clone())
        d.completed.append(float(bool(completed)))
        ran = math.isfinite(latency) and latency > 0
        d.log_latency.append(math.log(latency) if ran else 0.0)
        d.has_latency.append(ran)
        d.pass_at_100.append(float(pass_at_100) if completed else 0.0)
        d.reward.append(float(reward) if self.config.guidance == "reward" else 0.0)
        d.has_next.append(next_obs is not None)
        d.next_obs.append(obs.detach().clone() if next_obs is None else next_obs.detach().clone())
        # Poisson(1) bootstrap weights: each member sees its own resample of the data.
        d.boot.append(
            torch.poisson(torch.ones(self.config.ensemble_size), generator=self.generator)
            if self.config.ensemble_size > 1
            else torch.ones(1)
        )

    def __len__(self) -> int:
        return len(self.data.obs)

    def _tensors(self) -> dict[str, Tensor]:
        d = self.data
        obs = torch.stack(d.obs)
        nxt = torch.stack(d.next_obs)
        server = torch.tensor(d.server)
        shares = torch.stack(d.shares)
        dyn, dist_, task = self.layout.split(obs)
        dyn_next, _, _ = self.layout.split(nxt)
        return {
            "x_out": self.outcome_features(dyn, dist_, task, server, shares),
            "x_tr": self.transition_features(dyn, dist_, task, server, shares),
            "delta": dyn_next - dyn,
            "has_next": torch.tensor(d.has_next),
            "completed": torch.tensor(d.completed),
            "log_latency": torch.tensor(d.log_latency),
            "has_latency": torch.tensor(d.has_latency),
            "pass": torch.tensor(d.pass_at_100),
            "reward": torch.tensor(d.reward),
            "boot": torch.stack(d.boot).T,  # (E, N)
        }

    # ------------------------------------------------------------------ the Pyro program
    def model(self, batch: Mapping[str, Tensor], n_total: int) -> None:
        """Generative model p(theta) prod_rows p(outcome, delta | row, theta), as a Pyro program.

        Sites: one weight site per tensor (``"out.w1"`` ...), then under plates ``member`` (E) and ``row``
        (subsampled from ``n_total``): ``completed`` (Bernoulli), ``log_latency`` (Normal, masked to
        tasks that ran), ``pass_at_100`` (Normal, masked to completed tasks), ``reward`` (Normal, only under reward guidance), ``delta``
        (Normal over the S x (3 + q) reading changes, masked to rows with a next observation).
        """
        e = self.config.ensemble_size
        p = {
            name: pyro.sample(
                name,
                dist.Normal(0.0, self._prior_sd(name)).expand(shape).to_event(len(shape)),
            )
            for name, shape in self._shapes.items()
        }
        n = batch["completed"].shape[0]
        y = self._net(p, "out", (self._members(batch["x_out"]) - self.out_mu) / self.out_sd)
        tr = self._net(p, "tr", (self._members(batch["x_tr"]) - self.tr_mu) / self.tr_sd)
        d = self.layout.dynamic_width
        s = self.layout.n_servers
        trans = self._transition_heads(tr.reshape(e, n, s, 2 * d))
        out = self._outcome_heads(y)
        completed = batch["completed"].expand(e, n)
        done = completed > 0.5
        pass_sd = self._sd(y[..., _OUT["pass_logsd"]], 1.0)
        with (
            pyro.plate("member", e, dim=-2),
            pyro.plate("row", n_total, subsample=torch.arange(n), dim=-1),
            # Poisson bootstrap weights: zero means the member never sees the row (mask), k > 0 counts
            # it k times (scale); Pyro's scale handler rejects zero.
            poutine.mask(mask=batch["boot"] > 0),  # type: ignore[call-overload]
            poutine.scale(scale=batch["boot"].clamp_min(1.0)),
        ):
            pyro.sample("completed", dist.Bernoulli(logits=y[..., _OUT["logit"]]), obs=completed)
            # latency and accuracy are observed when the task completed (failures are censored)
            with poutine.mask(mask=batch["has_latency"].expand(e, n)):  # type: ignore[call-overload]
                pyro.sample(
                    "log_latency",
                    dist.Normal(out.log_latency_mean, out.log_latency_sd),
                    obs=batch["log_latency"].expand(e, n),
                )
            with poutine.mask(mask=done):  # type: ignore[call-overload]
                # The same head the planner reads (a sigmoid keeps the mean in [0, 1]).
                pyro.sample(
                    "pass_at_100",
                    dist.Normal(out.pass_mean, pass_sd),
                    obs=batch["pass"].expand(e, n),
                )
            if self.config.guidance == "reward":
                pyro.sample(
                    "reward",
                    dist.Normal(out.reward_mean, self.reward_scale),
                    obs=batch["reward"].expand(e, n),
                )
            with poutine.mask(mask=batch["has_next"].expand(e, n)):  # type: ignore[call-overload]
                pyro.sample(
                    "delta",
                    dist.Normal(trans.delta_mean, trans.delta_sd).to_event(2),
                    obs=batch["delta"].expand(e, n, s, d),
                )

    def guide(self, batch: Mapping[str, Tensor], n_total: int) -> None:
        """Point (Delta) posterior over every weight of every member."""
        for name, shape in self._shapes.items():
            pyro.sample(name, dist.Delta(self.loc[name.replace(".", "_")]).to_event(len(shape)))

    def vfe(self, batch: Mapping[str, Tensor], n_total: int) -> Tensor:
        """Variational free energy F = -ELBO of a batch, as computed by Pyro's ``Trace_ELBO``."""
        return Trace_ELBO().differentiable_loss(self.model, self.guide, batch, n_total)

    # ------------------------------------------------------------------ learning
    def _standardise(self, t: Mapping[str, Tensor]) -> None:
        x_out = t["x_out"]
        x_tr = t["x_tr"].reshape(-1, self.n_tr_in)
        self.out_mu.copy_(x_out.mean(0))
        self.out_sd.copy_(x_out.std(0, unbiased=False).clamp_min(1e-3))
        self.tr_mu.copy_(x_tr.mean(0))
        self.tr_sd.copy_(x_tr.std(0, unbiased=False).clamp_min(1e-3))
        has = t["has_latency"]
        if has.any():
            lat = t["log_latency"][has]
            self.lat_lo.copy_(lat.min() - _LATENCY_MARGIN)
            self.lat_hi.copy_(lat.max() + _LATENCY_MARGIN)
            self.lat_scale.copy_(lat.std(unbiased=False).clamp_min(self.config.min_sd))
        self.reward_loc.copy_(t["reward"].mean())
        self.reward_scale.copy_(t["reward"].std(unbiased=False).clamp_min(self.config.min_sd))
        nxt = t["has_next"]
        if nxt.any():
            delta = t["delta"][nxt].reshape(-1, self.layout.dynamic_width)
            self.delta_scale.copy_(delta.std(0, unbiased=False).clamp_min(self.config.min_sd))

    def fit(self, steps: int | None = None) -> list[float]:
        """Refit every member on all stored data by gradient steps on the VFE (warm start).

        Returns
        -------
        list of float
            The per-row VFE after each step (the free-energy trace of this refit).
        """
        if not len(self):
            return []
        steps = self.config.fit_steps if steps is None else steps
        t = self._tensors()
        self._standardise(t)
        n = len(self)
        bs = min(self.config.batch_size, n)
        opt = torch.optim.Adam(self.loc.parameters(), lr=self.config.lr)
        trace: list[float] = []
        for step in range(steps):
            if bs < n:
                idx = torch.randperm(n, generator=self.generator)[:bs]
                batch = {k: (v[:, idx] if k == "boot" else v[idx]) for k, v in t.items()}
            else:
                batch = t
            loss = self.vfe(batch, n)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"VFE became {loss.item()} at refit {self.n_fits}, step {step}; "
                    "check the stored outcomes for non-finite values"
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(loss.item() / n)
        self.n_fits += 1
        self.vfe_trace.extend(trace)
        return trace


# ---------------------------------------------------------------------- preferences and EFE
@dataclass(frozen=True)
class PreferenceConfig:
    """Weights of the expected free energy of a policy.

    The preference prior over outcomes is built from rewardless guidance rg = tc (1/L + P)
    (He et al. 2025, DOI 10.1109/JIOT.2025.3588832) in one of two forms (``form``):

    * ``"exponential"`` (default): p~(o) proportional to exp(lambda rg(o)), i.e. rg read as a log
      preference, as the learned reward is in Tschantz et al. 2020; the pragmatic value is
      lambda E_q[rg]. A failed task (rg = 0) is then only as far below a completed one as that
      task's 1/L + P, about 0.2 to 0.5 nats.
    * ``"proportional"``: p~(o) proportional to rg(o) + ``floor``, i.e. rg read as the preferred
      density of outcomes itself; the pragmatic value is lambda E_q[log(rg + floor)]. A failure
      costs log(floor) nats, several times the spread between a slow and a fast completion, so
      completion comes first and latency and accuracy rank completed tasks.

    The epistemic value is the parameter information gain of the ensemble (Tschantz et al. 2020),
    weighted by ``info_gain_weight``.

    Parameters
    ----------
    guidance_weight : float
        lambda, precision of the preference prior.
    form : str
        ``"exponential"`` or ``"proportional"`` (see above).
    floor : float
        Preference floor of the ``"proportional"`` form: p~(failure) / p~(completion with rg = 1).
    info_gain_weight : float
        Weight of parameter information gain (0 disables it: the "no information gain" ablation).
        The default 0.1 keeps early exploration (an untrained ensemble disagrees by up to log 2 nats
        per binary outcome, several times the guidance of one task) while letting guidance dominate
        once the members agree; at 1.0 the agent kept probing uncertain allocations and completed
        about 10 points fewer tasks on the paper preset.
    transition_info_gain : bool
        Also count information gain about the server-state transitions (horizon > 1 only). Off by
        default: summed over every server reading it outweighs the outcome terms and keeps the agent
        exploring how queues drain instead of completing tasks.
    discount : float
        Weight ``discount**h`` of step ``h`` of a policy. The tasks after the current one are imagined
        (copies of the current task on predicted server readings), so their value is less certain;
        without discounting the planner will sacrifice the real task to keep resources for an
        imagined one.
    completion_weight : float
        kappa, an extra preference for completion itself: log p~(o) = lambda rg(o) + kappa tc + const.
        0 (default) is the paper's rewardless guidance alone; a positive value states that a completed
        task matters beyond its 1/L + P (an operator's choice, reported as its own variant).
    """

    guidance_weight: float = 1.0
    form: str = "exponential"
    floor: float = 0.01
    info_gain_weight: float = 0.1
    transition_info_gain: bool = False
    discount: float = 0.5
    completion_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.form not in ("exponential", "proportional"):
            raise ValueError(
                f"PreferenceConfig.form must be 'exponential' or 'proportional', got {self.form!r}"
            )
        if not 0 < self.floor < 1:
            raise ValueError(f"PreferenceConfig.floor must lie in (0, 1), got {self.floor!r}")
        if not 0 < self.discount <= 1:
            raise ValueError(f"PreferenceConfig.discount must lie in (0, 1], got {self.discount!r}")
        if self.completion_weight < 0:
            raise ValueError(
                f"PreferenceConfig.completion_weight must be >= 0, got {self.completion_weight!r}"
            )
        if self.guidance_weight < 0 or self.info_gain_weight < 0:
            raise ValueError(
                "PreferenceConfig weights must be >= 0, got "
                f"guidance_weight={self.guidance_weight!r}, info_gain_weight={self.info_gain_weight!r}"
            )


class PolicyEFE(NamedTuple):
    """Expected free energy of each candidate policy with its parts, each of shape ``(J,)``.

    ``efe = -pragmatic_value - info_gain_weight * (outcome_info_gain + transition_info_gain)``;
    lower is better. ``expected_guidance`` is the discounted sum of E_q[rg] over the horizon in
    either preference form (under the env-reward ablation, of the predicted reward).
    """

    efe: Tensor
    pragmatic_value: Tensor
    outcome_info_gain: Tensor
    transition_info_gain: Tensor
    expected_guidance: Tensor


def _completed_value(pred: OutcomePrediction) -> Tensor:
    """E[1/L] + P of a completed task, per member: ``(E, ...)``.

    With log L ~ Normal(mu, sd), E[1/L] = exp(-mu + sd^2 / 2) (log-normal moment, sd capped at
    ``_GUIDANCE_MAX_SD``); P is predicted in [0, 1].
    """
    sd = pred.log_latency_sd.clamp(max=_GUIDANCE_MAX_SD)
    return torch.exp(-pred.log_latency_mean + 0.5 * sd**2) + pred.pass_mean.clamp(0.0, 1.0)


def expected_guidance(pred: OutcomePrediction, guidance: str = "rg") -> Tensor:
    """Each member's expected rewardless guidance E[tc (1/L + P)], shape ``(E, ...)``.

    ``p_complete * (E[1/L] + P)`` (see :func:`_completed_value`). Under ``guidance="reward"`` the
    learned reward head is returned instead (ablation).
    """
    if guidance == "reward":
        return pred.reward_mean
    return pred.p_complete * _completed_value(pred)


def log_preference(pred: OutcomePrediction, floor: float, value: Tensor | None = None) -> Tensor:
    """Each member's E_q[log(rg + floor)], the pragmatic value of the proportional form.

    ``p_complete * log(E[1/L] + P + floor) + (1 - p_complete) * log(floor)``: the completed branch
    takes the log at the expected 1/L (a plug-in for E[log(1/L + P + floor)]; by Jensen it is an upper
    bound, tight when the predicted latency spread is small). ``value`` is E[1/L] + P when the caller
    has it already. Shape ``(E, ...)``.
    """
    value = _completed_value(pred) if value is None else value
    return pred.p_complete * torch.log(value + floor) + (1 - pred.p_complete) * math.log(floor)


def policy_efe(
    model: OffloadingWorldModel,
    obs: Tensor,
    servers: Tensor,
    shares: Tensor,
    preferences: PreferenceConfig | None = None,
) -> PolicyEFE:
    """Expected free energy of J candidate policies over a horizon of H tasks.

    Each member rolls every policy forward on its own predicted server readings (the tasks after the
    current one are assumed to resemble it, from the same terminal). Per step, the pragmatic value is the
    member-averaged expected guidance and the information gain is the ensemble mutual information about
    the outcome (completion exactly, log latency moment-matched, weighted by the chance it is observed).

    Parameters
    ----------
    model : OffloadingWorldModel
        The learned world model.
    obs : Tensor
        Shape ``(obs_dim,)``: the current observation.
    servers : Tensor
        Shape ``(J, H)``, long: server of each step of each policy.
    shares : Tensor
        Shape ``(J, H, 3)``: the continuous action at each step: the shares granted, or with
        ``relative_shares`` the fractions of the chosen server's (predicted) remaining resources.
    preferences : PreferenceConfig, optional
        Weights of the parts.

    Returns
    -------
    PolicyEFE
        Fields of shape ``(J,)``.
    """
    from aif.epistemics import bernoulli_info_gain, gaussian_info_gain

    pref = preferences or PreferenceConfig()
    if servers.dim() != 2 or shares.shape != (*servers.shape, N_RESOURCES):
        raise ValueError(
            f"servers has shape {tuple(servers.shape)} and shares {tuple(shares.shape)}; "
            f"expected (J, H) and (J, H, {N_RESOURCES})"
        )
    e = model.config.ensemble_size
    j, h = servers.shape
    dyn, dist_, task = model.layout.split(obs.to(torch.float32))
    s = model.layout.n_servers
    dyn = dyn.expand(e, j, s, dyn.shape[-1])
    dist_ = dist_.expand(e, j, s)
    task = task.expand(e, j, task.shape[-1])
    params = model.params()
    proportional = pref.form == "proportional"
    guidance = torch.zeros(j)
    preference = torch.zeros(j)
    completion = torch.zeros(j)
    ig_out = torch.zeros(j)
    ig_tr = torch.zeros(j)
    with torch.no_grad():
        for step in range(h):
            srv = servers[:, step].expand(e, j)
            sh = shares[:, step].expand(e, j, N_RESOURCES)
            if model.config.relative_shares:
                sh = sh * model.remaining_of(dyn, srv)
            pred = model.predict_outcome(
                model.outcome_features(dyn, dist_, task, srv, sh), params, per_member=True
            )
            w = pref.discount**step
            if model.config.guidance == "reward":
                rg = pred.reward_mean.mean(0)
                pref_value = rg
            else:
                value = _completed_value(pred)  # computed once for both forms
                rg = (pred.p_complete * value).mean(0)
                pref_value = log_preference(pred, pref.floor, value).mean(0) if proportional else rg
            guidance += w * rg
            preference += w * pref_value
            completion += w * pred.p_complete.mean(0)
            p_obs = pred.p_complete.mean(0)
            ig_out += w * (
                bernoulli_info_gain(pred.p_complete)
                + p_obs * gaussian_info_gain(pred.log_latency_mean, pred.log_latency_sd**2)
            )
            if step + 1 < h:
                tr = model.predict_transition(
                    model.transition_features(dyn, dist_, task, srv, sh), params, per_member=True
                )
                if pref.transition_info_gain:
                    ig_tr += w * gaussian_info_gain(tr.delta_mean, tr.delta_sd**2).sum((-1, -2))
                dyn = dyn + tr.delta_mean
                rem = dyn[..., :N_RESOURCES].clamp(0.0, 1.0)
                dyn = torch.cat([rem, dyn[..., N_RESOURCES:]], -1)
    pragmatic = pref.guidance_weight * preference + pref.completion_weight * completion
    efe = -pragmatic - pref.info_gain_weight * (ig_out + ig_tr)
    return PolicyEFE(efe, pragmatic, ig_out, ig_tr, guidance)


class ReadingFilter:
    """Perception under noisy server readings: Gaussian beliefs over every server's readings.

    Between two tasks the beliefs move by the world model's predicted change (ensemble mean, with the
    ensemble's total predictive variance added), then each new reading updates them in closed form
    (:func:`aif.gaussian.gaussian_update`, the VFE-minimising Gaussian posterior). The agent plans on the
    posterior means.

    Parameters
    ----------
    model : OffloadingWorldModel
        Supplies the layout and the transition predictions.
    noise_sd : float
        Standard deviation of the reading noise (> 0), as specified for the sensors.
    """

    def __init__(self, model: OffloadingWorldModel, noise_sd: float) -> None:
        if not noise_sd > 0:
            raise ValueError(f"noise_sd must be > 0, got {noise_sd!r}")
        self.model = model
        self.noise_var = float(noise_sd) ** 2
        self.belief: tuple[Tensor, Tensor] | None = None

    def reset(self, obs: Tensor) -> Tensor:
        """Start from the first reading of an episode; returns the perceived observation."""
        from aif.gaussian import GaussianBelief

        dyn, _, _ = self.model.layout.split(obs.to(torch.float32))
        self.belief = GaussianBelief(dyn, torch.full_like(dyn, self.noise_var))
        return self._perceived(obs)

    def step(self, perceived: Tensor, server: int, shares: Tensor, obs: Tensor) -> Tensor:
        """Update on the next reading ``obs`` after granting ``shares`` on ``server``.

        Parameters
        ----------
        perceived : Tensor
            Shape ``(obs_dim,)``: the perceived observation the decision was made on.
        server : int
            The chosen server.
        shares : Tensor
            Shape ``(3,)``: the shares granted.
        obs : Tensor
            Shape ``(obs_dim,)``: the new (noisy) observation.

        Returns
        -------
        Tensor
            Shape ``(obs_dim,)``: ``obs`` with its readings replaced by the posterior means.
        """
        from aif.gaussian import GaussianBelief, gaussian_predict, gaussian_update

        if self.belief is None:
            raise RuntimeError("ReadingFilter.step called before reset")
        m = self.model
        dyn, dist_, task = m.layout.split(perceived.to(torch.float32))
        with torch.no_grad():
            tr = m.predict_transition(
                m.transition_features(dyn, dist_, task, torch.tensor(server), shares)
            )
        delta_mean = tr.delta_mean.mean(0)
        delta_var = (tr.delta_sd**2).mean(0) + tr.delta_mean.var(0, unbiased=False)
        prior = gaussian_predict(GaussianBelief(*self.belief), delta_mean, delta_var)
        reading, _, _ = m.layout.split(obs.to(torch.float32))
        self.belief = gaussian_update(prior, reading, self.noise_var)
        return self._perceived(obs)

    def _perceived(self, obs: Tensor) -> Tensor:
        assert self.belief is not None
        mean = self.belief[0].clone()
        mean[:, :N_RESOURCES] = mean[:, :N_RESOURCES].clamp(0.0, 1.0)
        return self.model.layout.with_dynamic(obs.to(torch.float32), mean)
