"""A structured generative model of the offloading world, in Pyro: latent causes a scheduler is unsure of.

Each server has a speed (its full-share compute time), a share scaling (how much of a task's
work stretches when its compute share shrinks), a noise level and a link quality; each HumanEval
problem has an ease that, through each server's skill, sets its pass@100 there; the arrival
process has a rate, and problems and terminal kinds have frequencies. Outcomes are what a
scheduler observes: compute time, network time and accuracy of completed tasks, and only "not
done by the deadline" for failed ones (a censored likelihood). Beliefs are fitted by SVI
(variational free energy F = -ELBO) and feed an expected free energy with a pragmatic part
(rewardless guidance) and a parameter information gain (novelty).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import xarray as xr
from pyro.infer import Trace_ELBO
from torch import Tensor, nn

__all__ = [
    "OutcomeBeliefs",
    "RecordedOutcomes",
    "ServerSpec",
    "StructuredConfig",
    "StructuredWorldModel",
    "TaskRecord",
    "expected_guidance",
    "outcome_beliefs_from",
]

#: Quantiles of the midpoint rule for expectations over a truncated log-normal compute time.
_QUANTILES = 12
# Standard-normal log survival function floor: a censored observation never costs more than
# this many nats, so one outlier cannot dominate the free energy.
_LOG_SURVIVAL_FLOOR = -30.0


@dataclass(frozen=True)
class ServerSpec:
    """What a scheduler knows of one server from its configuration (not its speed).

    Attributes
    ----------
    is_cloud : bool
        Cloud or edge server.
    samples_per_task : int
        Samples a task asks for (S = 100 for pass@100).
    samples_per_memory : float
        Samples the server batches at once with its whole GPU memory pool (its batch slots),
        so a memory share ``m`` runs ``ceil(S / floor(m * samples_per_memory))`` waves.
    """

    is_cloud: bool
    samples_per_task: int
    samples_per_memory: float

    def waves(self, memory_share: np.ndarray) -> np.ndarray:
        """Waves at each memory share (``inf`` where not one sample fits), any shape."""
        per_wave = np.minimum(
            self.samples_per_task, np.floor(np.asarray(memory_share) * self.samples_per_memory)
        )
        with np.errstate(divide="ignore"):
            return np.where(
                per_wave >= 1, np.ceil(self.samples_per_task / np.maximum(per_wave, 1)), np.inf
            )


@dataclass(frozen=True)
class StructuredConfig:
    """Priors and learning settings of :class:`StructuredWorldModel`.

    Parameters
    ----------
    speed_prior_s : float
        Prior median of every server's full-share compute time (s).
    speed_prior_sd : float
        Prior sd of its log (1.0: a factor e either way covers 1 to 15 s).
    share_logit_sd : float
        Prior sd of the logit of the share scaling ``k`` (median 0.5).
    noise_prior : float
        Prior median of the sd of log compute time.
    net_prior_s : float
        Prior median of a server's network time (transmission + propagation, s).
    pass_noise : float
        Sd of an observed pass@100 around the model's value (misfit of the logistic form).
    fit_steps : int
        SVI steps per refit (warm-started from the last fit).
    lr : float
        Adam learning rate of the guide's parameters.
    """

    speed_prior_s: float = 5.0
    speed_prior_sd: float = 1.0
    share_logit_sd: float = 1.5
    noise_prior: float = 0.05
    net_prior_s: float = 0.05
    pass_noise: float = 0.03
    fit_steps: int = 200
    lr: float = 0.05

    def __post_init__(self) -> None:
        for name in ("speed_prior_s", "speed_prior_sd", "share_logit_sd", "noise_prior",
                     "net_prior_s", "pass_noise", "lr"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"StructuredConfig.{name} must be > 0, got {getattr(self, name)!r}"
                )
        if self.fit_steps < 1:
            raise ValueError(f"StructuredConfig.fit_steps must be >= 1, got {self.fit_steps!r}")


@dataclass
class TaskRecord:
    """What a scheduler saw of its tasks: one list entry per decided task (no reject)."""

    server: list[int] = field(default_factory=list)
    compute_share: list[float] = field(default_factory=list)
    memory_share: list[float] = field(default_factory=list)
    problem: list[int] = field(default_factory=list)
    started: list[bool] = field(default_factory=list)
    completed: list[bool] = field(default_factory=list)
    compute_s: list[float] = field(default_factory=list)  # observed when completed
    censor_s: list[float] = field(default_factory=list)  # compute exceeded this when it failed
    net_s: list[float] = field(default_factory=list)  # observed when completed
    pass_at_100: list[float] = field(default_factory=list)  # observed when completed
    gaps_s: list[float] = field(default_factory=list)  # inter-arrival times
    kind: list[int] = field(default_factory=list)  # terminal kind of every arrival
    arrival_problem: list[int] = field(default_factory=list)  # problem of every arrival


class OutcomeBeliefs(NamedTuple):
    """Posterior predictive pieces for candidate actions; arrays broadcast together.

    ``log_compute_mean`` / ``log_compute_sd``: the compute time's log-normal predictive;
    ``param_var``: the part of ``log_compute_sd**2`` due to uncertain parameters; ``noise_var``
    the rest; ``net_s``: the expected network time; ``pass_mean`` / ``pass_param_var``: the
    predicted pass@100 and its parameter variance.
    """

    log_compute_mean: np.ndarray
    log_compute_sd: np.ndarray
    param_var: np.ndarray
    noise_var: np.ndarray
    net_s: np.ndarray
    pass_mean: np.ndarray
    pass_param_var: np.ndarray


def _share_term(logit_k: Tensor | np.ndarray, share: Tensor | np.ndarray) -> Any:
    """``log((1 - k) + k / share)``: how much a compute share stretches the work."""
    if isinstance(logit_k, Tensor):
        k = torch.sigmoid(logit_k)
        return torch.log((1 - k) + k / torch.as_tensor(share))
    k = 1.0 / (1.0 + np.exp(-logit_k))
    return np.log((1 - k) + k / share)


class RecordedOutcomes:
    """The data record and the predictions both outcome models of the offloading world share.

    What a scheduler saw (:meth:`observe`, :meth:`observe_arrival`), the posterior mean arrival
    rate and task frequencies; the class using it holds ``data`` (a :class:`TaskRecord`),
    ``n_servers``, ``n_problems`` and ``n_kinds``.
    """

    data: TaskRecord
    n_servers: int
    n_problems: int
    n_kinds: int

    def observe(
        self,
        server: int,
        compute_share: float,
        memory_share: float,
        problem: int,
        started: bool,
        completed: bool,
        compute_s: float,
        censor_s: float,
        net_s: float,
        pass_at_100: float,
    ) -> None:
        """Store one decided task's outcome as a scheduler saw it (NaN for what it did not see)."""
        if not 0 <= int(server) < self.n_servers:
            raise ValueError(f"server {server!r} out of range: the model has {self.n_servers}")
        d = self.data
        d.server.append(int(server))
        d.compute_share.append(float(compute_share))
        d.memory_share.append(float(memory_share))
        d.problem.append(int(problem))
        d.started.append(bool(started))
        d.completed.append(bool(completed))
        d.compute_s.append(float(compute_s))
        d.censor_s.append(float(censor_s))
        d.net_s.append(float(net_s))
        d.pass_at_100.append(float(pass_at_100))

    def observe_arrival(self, gap_s: float | None, kind: int, problem: int) -> None:
        """Store an arrival: the time since the previous one (None for an episode's first)."""
        if gap_s is not None and gap_s > 0:
            self.data.gaps_s.append(float(gap_s))
        self.data.kind.append(int(kind))
        self.data.arrival_problem.append(int(problem))

    def arrival_rate(self, post: dict[str, tuple[np.ndarray, np.ndarray]]) -> float:
        """Posterior mean of the arrival rate (tasks per second)."""
        m, s = post["log_rate"]
        return float(np.exp(m + 0.5 * s**2))

    def task_frequencies(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean frequencies of problems and terminal kinds (Dirichlet(1) priors)."""
        probs = np.bincount(self.data.arrival_problem, minlength=self.n_problems) + 1.0
        kinds = np.bincount(self.data.kind, minlength=self.n_kinds) + 1.0
        return probs / probs.sum(), kinds / kinds.sum()


def outcome_beliefs_from(
    post: dict[str, tuple[np.ndarray, np.ndarray]],
    server: np.ndarray,
    problem: np.ndarray,
    log_compute_mean: np.ndarray,
    param_var: np.ndarray,
) -> OutcomeBeliefs:
    """:class:`OutcomeBeliefs` from a compute model's mean and parameter variance of log compute
    time, and the posterior's noise, network time and pass@100 (the same in both outcome models).
    """
    noise_m, noise_s = post["log_noise"][0][server], post["log_noise"][1][server]
    noise_var = np.exp(2 * noise_m + 2 * noise_s**2)
    net_m, net_s = post["log_net"][0][server], post["log_net"][1][server]
    net = np.exp(net_m + 0.5 * (net_s**2 + 0.25))
    skill_m, skill_s = post["skill"][0][server], post["skill"][1][server]
    slope_m, slope_s = post["log_slope"][0][server], post["log_slope"][1][server]
    ease_m, ease_s = post["ease"][0][problem], post["ease"][1][problem]
    slope = np.exp(slope_m)
    lin = skill_m + slope * ease_m
    lin_var = skill_s**2 + slope**2 * ease_s**2 + (slope * slope_s) ** 2 * (ease_m**2 + ease_s**2)
    # Probit approximation of E[sigmoid(x)], x ~ Normal(lin, lin_var).
    pass_mean = 1.0 / (1.0 + np.exp(-lin / np.sqrt(1.0 + np.pi * lin_var / 8.0)))
    dsig = pass_mean * (1 - pass_mean)
    return OutcomeBeliefs(
        log_compute_mean=log_compute_mean,
        log_compute_sd=np.sqrt(param_var + noise_var),
        param_var=param_var,
        noise_var=noise_var,
        net_s=net,
        pass_mean=pass_mean,
        pass_param_var=dsig**2 * lin_var,
    )


class StructuredWorldModel(RecordedOutcomes, nn.Module):
    """Latent server speeds, share scalings, link qualities, problem eases and arrival rate.

    Generative model (``s`` server, ``i`` problem, ``c``/``m`` compute/memory share)::

        log_tau[s] ~ Normal(log speed_prior_s, speed_prior_sd)       full-share compute time
        share_logit[s] ~ Normal(0, share_logit_sd)                   k[s] = sigmoid(share_logit)
        log_noise[s] ~ Normal(log noise_prior, 0.5)                  sd of log compute time
        log_net[s] ~ Normal(log net_prior_s, 1.5)                    network time
        skill[s] ~ Normal(-2, 2); slope[s] ~ LogNormal(0, 0.5)       pass@100 = sigmoid(skill + slope * ease)
        ease[i] ~ Normal(0, 1)
        log_rate ~ Normal(log 0.5, 1)                                arrivals per second
        compute | started ~ LogNormal(log_tau + log waves(m)/waves(1) + log((1-k) + k/c), noise)
            observed when completed; when it failed after starting, only compute > bound
        net | completed ~ LogNormal(log_net, 0.5); pass | completed ~ Normal(sigmoid(...), pass_noise)
        gap ~ Exponential(exp(log_rate))

    The memory part ``waves(m)`` comes from the servers' batch configuration (:class:`ServerSpec`),
    which a scheduler knows; the speeds and scalings it learns. The guide is a mean-field Normal
    over every latent (``AutoNormal``-like, owned by this module: no global parameter store).

    Parameters
    ----------
    servers : sequence of ServerSpec
    n_problems : int
    n_kinds : int
        Terminal kinds.
    config : StructuredConfig
    seed : int
    device : str
    """

    LATENTS = ("log_tau", "share_logit", "log_noise", "log_net", "skill", "log_slope", "ease")

    def __init__(
        self,
        servers: Sequence[ServerSpec],
        n_problems: int,
        n_kinds: int,
        config: StructuredConfig | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.servers = list(servers)
        self.n_servers = len(self.servers)
        self.n_problems = int(n_problems)
        self.n_kinds = int(n_kinds)
        self.config = config or StructuredConfig()
        self.device = torch.device(device)
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.data = TaskRecord()
        self.vfe_trace: list[float] = []
        cfg = self.config
        s, n = self.n_servers, self.n_problems
        f64 = torch.float64
        self.prior_loc = {
            "log_tau": torch.full((s,), math.log(cfg.speed_prior_s), dtype=f64),
            "share_logit": torch.zeros(s, dtype=f64),
            "log_noise": torch.full((s,), math.log(cfg.noise_prior), dtype=f64),
            "log_net": torch.full((s,), math.log(cfg.net_prior_s), dtype=f64),
            "skill": torch.full((s,), -2.0, dtype=f64),
            "log_slope": torch.zeros(s, dtype=f64),
            "ease": torch.zeros(n, dtype=f64),
            "log_rate": torch.tensor(math.log(0.5), dtype=f64),
        }
        self.prior_scale = {
            "log_tau": torch.full((s,), cfg.speed_prior_sd, dtype=f64),
            "share_logit": torch.full((s,), cfg.share_logit_sd, dtype=f64),
            "log_noise": torch.full((s,), 0.5, dtype=f64),
            "log_net": torch.full((s,), 1.5, dtype=f64),
            "skill": torch.full((s,), 2.0, dtype=f64),
            "log_slope": torch.full((s,), 0.5, dtype=f64),
            "ease": torch.ones(n, dtype=f64),
            "log_rate": torch.tensor(1.0, dtype=f64),
        }
        # Guide: q(z) = Normal(loc, softplus(raw_scale)), started at the prior's median with a
        # tenth of its spread (as Pyro's AutoNormal starts), so early gradients are not noise.
        self.loc = nn.ParameterDict(
            {k: nn.Parameter(v.clone().to(self.device)) for k, v in self.prior_loc.items()}
        )
        self.raw_scale = nn.ParameterDict(
            {
                k: nn.Parameter(_inv_softplus(0.1 * v.clone()).to(self.device))
                for k, v in self.prior_scale.items()
            }
        )
        self.optimizer = torch.optim.Adam(self.parameters(), lr=cfg.lr)
        self._waves_ratio_cache: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ data
    def _batch(self) -> dict[str, Tensor]:
        d, dev = self.data, self.device

        def t(x: list[Any], dtype: torch.dtype = torch.float64) -> Tensor:
            return torch.tensor(x, dtype=dtype, device=str(dev))

        server = t(d.server, torch.long)
        waves = np.asarray(
            [
                self.servers[j].waves(np.asarray(m)) / self.servers[j].waves(np.asarray(1.0))
                for j, m in zip(d.server, d.memory_share, strict=True)
            ],
            dtype=np.float64,
        )
        return {
            "server": server,
            "log_waves": torch.tensor(np.log(waves), device=str(dev)),
            "compute_share": t(d.compute_share),
            "problem": t(d.problem, torch.long),
            "started": t(d.started, torch.bool),
            "completed": t(d.completed, torch.bool),
            "compute": t(d.compute_s),
            "censor": t(d.censor_s),
            "net": t(d.net_s),
            "pass": t(d.pass_at_100),
            "gaps": t(d.gaps_s),
        }

    # ------------------------------------------------------------------ Pyro programs
    def model(self, batch: dict[str, Tensor]) -> None:
        """The generative model (see the class docstring); conditions on ``batch``."""
        dev = self.device
        z = {}
        with pyro.plate("servers", self.n_servers, device=str(dev)):
            for name in ("log_tau", "share_logit", "log_noise", "log_net", "skill", "log_slope"):
                z[name] = pyro.sample(
                    name,
                    dist.Normal(
                        self.prior_loc[name].to(dev, torch.float64),
                        self.prior_scale[name].to(dev, torch.float64),
                    ),
                )
        with pyro.plate("problems", self.n_problems, device=str(dev)):
            z["ease"] = pyro.sample(
                "ease",
                dist.Normal(
                    self.prior_loc["ease"].to(dev, torch.float64),
                    self.prior_scale["ease"].to(dev, torch.float64),
                ),
            )
        log_rate = pyro.sample(
            "log_rate",
            dist.Normal(
                self.prior_loc["log_rate"].to(dev, torch.float64),
                self.prior_scale["log_rate"].to(dev, torch.float64),
            ),
        )
        j = batch["server"]
        if j.numel():
            mu = (
                z["log_tau"][j]
                + batch["log_waves"]
                + _share_term(z["share_logit"][j], batch["compute_share"])
            )
            sd = torch.exp(z["log_noise"][j])
            done, started = batch["completed"], batch["started"]
            with pyro.plate("tasks", j.numel(), device=str(dev)):
                with pyro.poutine.mask(mask=done):  # type: ignore[call-overload]
                    pyro.sample(
                        "compute_obs",
                        dist.Normal(mu, sd),
                        obs=torch.log(torch.where(done, batch["compute"], torch.ones_like(mu))),
                    )
                    pyro.sample(
                        "net_obs",
                        dist.Normal(z["log_net"][j], 0.5),
                        obs=torch.log(torch.where(done, batch["net"], torch.ones_like(mu))),
                    )
                    value = torch.sigmoid(
                        z["skill"][j] + torch.exp(z["log_slope"][j]) * z["ease"][batch["problem"]]
                    )
                    pyro.sample(
                        "pass_obs",
                        dist.Normal(value, self.config.pass_noise),
                        obs=torch.where(done, batch["pass"], torch.zeros_like(mu)),
                    )
                # Started but not done by the deadline: only log compute > log bound is known.
                censored = started & ~done
                bound = torch.log(
                    torch.where(censored, batch["censor"].clamp_min(1e-3), torch.ones_like(mu))
                )
                log_surv = torch.special.log_ndtr(-(bound - mu) / sd).clamp_min(_LOG_SURVIVAL_FLOOR)
                pyro.factor(
                    "censored_compute", torch.where(censored, log_surv, torch.zeros_like(mu))
                )
        gaps = batch["gaps"]
        if gaps.numel():
            with pyro.plate("gaps", gaps.numel(), device=str(dev)):
                pyro.sample("gap_obs", dist.Exponential(torch.exp(log_rate)), obs=gaps)

    def guide(self, batch: dict[str, Tensor]) -> None:
        """Mean-field Normal posterior over every latent."""
        dev = self.device
        with pyro.plate("servers", self.n_servers, device=str(dev)):
            for name in ("log_tau", "share_logit", "log_noise", "log_net", "skill", "log_slope"):
                pyro.sample(name, dist.Normal(self.loc[name], self._scale(name)))
        with pyro.plate("problems", self.n_problems, device=str(dev)):
            pyro.sample("ease", dist.Normal(self.loc["ease"], self._scale("ease")))
        pyro.sample("log_rate", dist.Normal(self.loc["log_rate"], self._scale("log_rate")))

    def _scale(self, name: str) -> Tensor:
        return torch.nn.functional.softplus(self.raw_scale[name]) + 1e-4

    # ------------------------------------------------------------------ learning
    def fit(self, steps: int | None = None) -> list[float]:
        """SVI on everything observed so far, warm-started; returns the VFE trace (nats)."""
        steps = self.config.fit_steps if steps is None else steps
        if not self.data.server and not self.data.gaps_s:
            return []
        batch = self._batch()
        loss_fn = Trace_ELBO(num_particles=1)
        trace = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator)))
            for _ in range(steps):
                self.optimizer.zero_grad()
                loss = loss_fn.differentiable_loss(self.model, self.guide, batch)
                loss.backward()
                self.optimizer.step()
                trace.append(float(loss.detach()))
        self.vfe_trace.extend(trace)
        return trace

    # ------------------------------------------------------------------ beliefs
    def posterior(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Mean and sd of every latent's (Normal) posterior, as numpy arrays (the prior before
        the first fit)."""
        if not self.vfe_trace:
            return {
                k: (
                    self.prior_loc[k].numpy().astype(np.float64),
                    self.prior_scale[k].numpy().astype(np.float64),
                )
                for k in self.prior_loc
            }
        return {
            k: (
                self.loc[k].detach().cpu().numpy().astype(np.float64),
                self._scale(k).detach().cpu().numpy().astype(np.float64),
            )
            for k in self.loc
        }

    def waves_ratio(self, server: np.ndarray, memory_share: np.ndarray) -> np.ndarray:
        """``waves(m) / waves(1)`` per candidate (``inf`` where not one sample fits)."""
        out = np.empty(np.broadcast(server, memory_share).shape)
        srv = np.broadcast_to(server, out.shape)
        mem = np.broadcast_to(memory_share, out.shape)
        for j, spec in enumerate(self.servers):
            sel = srv == j
            if sel.any():
                out[sel] = spec.waves(mem[sel]) / spec.waves(np.asarray(1.0))
        return out

    def outcome_beliefs(
        self,
        post: dict[str, tuple[np.ndarray, np.ndarray]],
        server: np.ndarray,
        compute_share: np.ndarray,
        memory_share: np.ndarray,
        problem: np.ndarray,
    ) -> OutcomeBeliefs:
        """Posterior predictive of compute time, network time and pass@100 for candidates.

        Parameters
        ----------
        post : dict
            :meth:`posterior`.
        server, compute_share, memory_share, problem : numpy.ndarray
            Broadcastable arrays describing the candidates.
        """
        tau_m, tau_s = post["log_tau"][0][server], post["log_tau"][1][server]
        kl_m, kl_s = post["share_logit"][0][server], post["share_logit"][1][server]
        share = np.maximum(compute_share, 1e-6)
        term = _share_term(kl_m, share)
        k = 1.0 / (1.0 + np.exp(-kl_m))
        # d/dlogit log((1-k) + k/c) = k (1 - k) (1/c - 1) / ((1-k) + k/c)
        grad = k * (1 - k) * (1.0 / share - 1.0) / np.exp(term)
        with np.errstate(divide="ignore"):
            log_waves = np.log(self.waves_ratio(server, memory_share))
        mean = tau_m + log_waves + term
        param_var = tau_s**2 + (grad * kl_s) ** 2
        return outcome_beliefs_from(post, server, problem, mean, param_var)

    # ------------------------------------------------------------------ diagnostics
    def posterior_datatree(
        self, num_samples: int = 500, seed: int = 0, server_names: Sequence[str] | None = None
    ) -> Any:
        """Draws of every latent from the fitted posterior as an ArviZ DataTree.

        Groups ``posterior`` (``chain``, ``draw``, and ``server`` / ``problem`` dims; derived
        quantities ``compute_s`` = exp(log_tau), ``share_k``, ``net_s``, ``arrival_rate``), built
        with ``arviz_base.from_dict``, and ``free_energy`` (the VFE of every SVI step, ``step``).
        """
        import arviz_base

        rng = np.random.default_rng(seed)
        post = self.posterior()
        draws: dict[str, np.ndarray] = {}
        for name, (m, s) in post.items():
            draws[name] = rng.normal(m, s, size=(1, num_samples, *np.shape(m)))
        draws["compute_s"] = np.exp(draws["log_tau"])
        draws["share_k"] = 1.0 / (1.0 + np.exp(-draws["share_logit"]))
        draws["net_s"] = np.exp(draws["log_net"])
        draws["slope"] = np.exp(draws["log_slope"])
        draws["arrival_rate"] = np.exp(draws["log_rate"])
        names = (
            list(server_names)
            if server_names is not None
            else [str(j) for j in range(self.n_servers)]
        )
        per_server = ("log_tau", "share_logit", "log_noise", "log_net", "skill", "log_slope",
                      "compute_s", "share_k", "net_s", "slope")  # fmt: skip
        dims: dict[str, list[str]] = {k: ["server"] for k in per_server}
        dims["ease"] = ["problem"]
        tree = arviz_base.from_dict(
            {"posterior": draws},
            dims=dims,
            coords={"server": names, "problem": np.arange(self.n_problems)},
        )
        vfe = np.asarray(self.vfe_trace, dtype=np.float64)
        tree["free_energy"] = xr.DataTree(
            xr.Dataset({"vfe": (("step",), vfe)}, coords={"step": np.arange(vfe.size)})
        )
        return tree


def _inv_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


def expected_guidance(
    beliefs: OutcomeBeliefs, wait_s: np.ndarray, t_max: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Completion probability, expected rewardless guidance and probability of starting.

    With compute time log-normal and wait and network time as given:
    ``p_done = P(wait + compute + net <= t_max)`` in closed form, and
    ``E[rg] = p_done (E[1/L | done] + P)`` with ``P`` the predicted pass@100 (He et al. 2025,
    rg = tc (1/L + P)), the conditional mean by the midpoint rule over 12 quantiles of the
    truncated log-normal.

    Returns
    -------
    p_done, guidance, p_start : numpy.ndarray
        Broadcast shape of the inputs.
    """
    from scipy.special import ndtr, ndtri

    mean = beliefs.log_compute_mean
    sd = beliefs.log_compute_sd
    room = t_max - wait_s - beliefs.net_s  # compute time that still meets the deadline
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.where(room > 0, (np.log(np.where(room > 0, room, 1.0)) - mean) / sd, -np.inf)
        p_done = np.where(np.isfinite(mean), ndtr(z), 0.0)
        # E[1/L | done] by the midpoint rule over quantiles of the truncated log-normal.
        levels = (np.arange(_QUANTILES) + 0.5) / _QUANTILES
        u = np.clip(p_done[..., None] * levels, 1e-300, 1.0)
        compute = np.exp(mean[..., None] + sd[..., None] * ndtri(u))
        latency = wait_s[..., None] + beliefs.net_s[..., None] + compute
        inv = np.where(p_done[..., None] > 0, 1.0 / latency, 0.0).mean(axis=-1)
    guidance = p_done * (np.where(np.isfinite(inv), inv, 0.0) + beliefs.pass_mean)
    p_start = (wait_s < t_max).astype(np.float64)
    return p_done, guidance, p_start
