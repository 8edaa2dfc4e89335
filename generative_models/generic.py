"""A generic outcome model of the offloading world, in Pyro: compute time learned by Bayesian
regression on the granted shares, with no latency law built in.

It is a drop-in replacement for :class:`generative_models.structured.StructuredWorldModel` (same
data record, fitting, beliefs and diagnostics), so that the same agent can be run with and without
the world's compute law in its model, and what it knows told apart from what it infers and learns.

Compute time
------------
For server ``s`` and a task granted compute share ``c`` and memory share ``m``, with
``x = (log c, log m)``, log compute time is a regression on features of ``x``::

    log T | started ~ Normal(phi(x) . beta[s], sigma[s]**2)

    phi(x) = (1, log c, log m)                                  terms = "linear"
             (1, log c, log m, log c log m)                     terms = "interaction" (default)
             (1, log c, log m, log c log m, log^2 c, log^2 m)   terms = "quadratic"

so ``exp(beta[s, 0])`` is the compute time with the whole server, ``beta[s, 1]`` and
``beta[s, 2]`` are elasticities (``-1``: time inversely proportional to the share, ``0``: the
share does not matter), and the remaining terms let the elasticities change with the shares.
Why this family: a power law in each resource is the first-order model of any positive cost that
falls as a resource grows (a log-log regression, the usual first look at a scaling law); it is
linear in its coefficients, so the Bayesian regression is well posed from a handful of grants,
and its parameter uncertainty at a candidate grant is a quadratic form ``phi' Sigma phi`` that
the information gain of the planner reads directly. It contains none of the world's structure:
no waves of batched samples, no batch slots, no ``(1 - k) + k / c`` split of the work, and no
sign constraints (whether more compute helps is learned too).

Priors are vague and read nothing from the world: the intercept's median is one second (the
unit) with a log-sd of 2 (a factor of 7.4 either way at one sd), the elasticities are centred on
0 with sd 1, the second-order terms on 0 with sd 0.5, and the noise sd of log compute time has
median 0.1 with log-sd 1. The likelihood handles censoring exactly as the structured model does:
a completed task observes its compute time, a task that started but was not done by its deadline
contributes only ``log P(T > time it had)`` (the normal log survival function, as a
``pyro.factor``), and a task that never started says nothing about compute.

The guide is a full-rank Normal over each server's coefficients (its regression posterior keeps
the correlation between intercept and slopes, which mean-field would drop and so understate the
predictive variance away from the data) and mean-field Normal over every other latent.

Network time, pass@100, arrivals and task frequencies are the structured model's, unchanged
(same priors, same likelihoods): they are not the latency law, and keeping them fixed makes the
compute model the only difference between the two agents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
import xarray as xr
from pyro.infer import Trace_ELBO
from torch import Tensor, nn

from generative_models.structured import (
    OutcomeBeliefs,
    RecordedOutcomes,
    ServerSpec,
    TaskRecord,
    outcome_beliefs_from,
)

__all__ = ["TERMS", "GenericConfig", "GenericWorldModel"]

#: Feature names of each compute-regression family, in coefficient order.
TERMS: dict[str, tuple[str, ...]] = {
    "linear": ("intercept", "log_compute_share", "log_memory_share"),
    "interaction": ("intercept", "log_compute_share", "log_memory_share", "log_compute_x_memory"),
    "quadratic": (
        "intercept",
        "log_compute_share",
        "log_memory_share",
        "log_compute_x_memory",
        "log_compute_share_sq",
        "log_memory_share_sq",
    ),
}
# A share is floored here before its log is taken (a zero share would be log 0).
_MIN_SHARE = 1e-6
# Standard-normal log survival function floor, as in the structured model: one censored outlier
# never costs more than this many nats.
_LOG_SURVIVAL_FLOOR = -30.0
# Lower bound on the guide's standard deviations (and the Cholesky diagonal).
_MIN_SCALE = 1e-4
_PER_SERVER = ("log_noise", "log_net", "skill", "log_slope")


@dataclass(frozen=True)
class GenericConfig:
    """Priors and learning settings of :class:`GenericWorldModel`.

    Parameters
    ----------
    terms : {"linear", "interaction", "quadratic"}
        Features of the compute regression (see the module docstring).
    intercept_prior_s : float
        Prior median of every server's compute time at full shares (s). One second: the unit,
        not a property of any world.
    intercept_prior_sd : float
        Prior sd of the intercept (log seconds).
    slope_prior_sd : float
        Prior sd of the two elasticities (centred on 0: no sign assumed).
    curvature_prior_sd : float
        Prior sd of the interaction and squared terms (centred on 0).
    noise_prior : float
        Prior median of the sd of log compute time around the regression.
    noise_prior_sd : float
        Prior sd of the log of that sd.
    net_prior_s : float
        Prior median of a server's network time (s), as in the structured model.
    pass_noise : float
        Sd of an observed pass@100 around the model's value, as in the structured model.
    fit_steps : int
        SVI steps per refit (warm-started from the last fit).
    lr : float
        Adam learning rate of the guide's parameters.
    """

    terms: str = "interaction"
    intercept_prior_s: float = 1.0
    intercept_prior_sd: float = 2.0
    slope_prior_sd: float = 1.0
    curvature_prior_sd: float = 0.5
    noise_prior: float = 0.1
    noise_prior_sd: float = 1.0
    net_prior_s: float = 0.05
    pass_noise: float = 0.03
    fit_steps: int = 200
    lr: float = 0.05

    def __post_init__(self) -> None:
        if self.terms not in TERMS:
            raise ValueError(
                f"GenericConfig.terms must be one of {sorted(TERMS)}, got {self.terms!r}"
            )
        for name in ("intercept_prior_s", "intercept_prior_sd", "slope_prior_sd",
                     "curvature_prior_sd", "noise_prior", "noise_prior_sd", "net_prior_s",
                     "pass_noise", "lr"):  # fmt: skip
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"GenericConfig.{name} must be a finite number > 0, got {value!r}")
        if not isinstance(self.fit_steps, int) or self.fit_steps < 1:
            raise ValueError(f"GenericConfig.fit_steps must be an int >= 1, got {self.fit_steps!r}")


def features(terms: str, compute_share: Any, memory_share: Any) -> Any:
    """Regression features ``phi(c, m)`` of the family ``terms``, last axis the feature.

    Parameters
    ----------
    terms : str
        A key of :data:`TERMS`.
    compute_share, memory_share : numpy.ndarray or torch.Tensor
        Broadcastable arrays of shares in (0, 1]; floored at 1e-6.

    Returns
    -------
    numpy.ndarray or torch.Tensor, shape (*broadcast, len(TERMS[terms]))
    """
    if isinstance(compute_share, Tensor):
        tc = torch.log(compute_share.clamp_min(_MIN_SHARE))
        tm = torch.log(torch.as_tensor(memory_share, dtype=tc.dtype).clamp_min(_MIN_SHARE))
        tc, tm = torch.broadcast_tensors(tc, tm)
        cols = [torch.ones_like(tc), tc, tm, tc * tm, tc**2, tm**2]
        return torch.stack(cols[: len(TERMS[terms])], dim=-1)
    lc, lm = np.broadcast_arrays(
        np.log(np.maximum(np.asarray(compute_share, dtype=np.float64), _MIN_SHARE)),
        np.log(np.maximum(np.asarray(memory_share, dtype=np.float64), _MIN_SHARE)),
    )
    cols_np: list[np.ndarray] = [np.ones_like(lc), lc, lm, lc * lm, lc**2, lm**2]
    return np.stack(cols_np[: len(TERMS[terms])], axis=-1)


class GenericWorldModel(RecordedOutcomes, nn.Module):
    """Per-server Bayesian log-log regression of compute time, links, problem eases and arrivals.

    Generative model (``s`` server, ``i`` problem, ``c``/``m`` compute/memory share, ``phi`` the
    features of ``config.terms``)::

        beta[s] ~ Normal((log intercept_prior_s, 0, ...), diag(intercept_sd, slope_sd, slope_sd,
                          curvature_sd, ...)**2)                        regression coefficients
        log_noise[s] ~ Normal(log noise_prior, noise_prior_sd)          sd of log compute time
        log_net[s] ~ Normal(log net_prior_s, 1.5)                       network time
        skill[s] ~ Normal(-2, 2); slope[s] ~ LogNormal(0, 0.5)          pass@100 = sigmoid(skill + slope * ease)
        ease[i] ~ Normal(0, 1)
        log_rate ~ Normal(log 0.5, 1)                                   arrivals per second
        compute | started ~ LogNormal(phi(c, m) . beta[s], noise)
            observed when completed; when it failed after starting, only compute > bound
        net | completed ~ LogNormal(log_net, 0.5); pass | completed ~ Normal(sigmoid(...), pass_noise)
        gap ~ Exponential(exp(log_rate))

    The guide is a full-rank Normal over each ``beta[s]`` and a mean-field Normal over the other
    latents, owned by this module (no global parameter store).

    Parameters
    ----------
    servers : sequence of ServerSpec
        The servers' configuration. The model only counts them; it keeps them so that a planner
        can read what the configuration says (which memory shares hold a sample), but no part of
        the compute model reads ``samples_per_memory``.
    n_problems : int
    n_kinds : int
        Terminal kinds.
    config : GenericConfig
    seed : int
    device : str
    """

    LATENTS = ("coef", "log_noise", "log_net", "skill", "log_slope", "ease")

    def __init__(
        self,
        servers: Sequence[ServerSpec],
        n_problems: int,
        n_kinds: int,
        config: GenericConfig | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        self.servers = list(servers)
        self.n_servers = len(self.servers)
        if self.n_servers < 1 or int(n_problems) < 1 or int(n_kinds) < 1:
            raise ValueError(
                f"GenericWorldModel needs >= 1 server, problem and kind, got {self.n_servers}, "
                f"{n_problems!r}, {n_kinds!r}"
            )
        self.n_problems = int(n_problems)
        self.n_kinds = int(n_kinds)
        self.config = config or GenericConfig()
        self.terms = TERMS[self.config.terms]
        self.device = torch.device(device)
        self.generator = torch.Generator(device="cpu").manual_seed(int(seed))
        self.data = TaskRecord()
        self.vfe_trace: list[float] = []
        cfg = self.config
        s, n, p = self.n_servers, self.n_problems, len(self.terms)
        f64 = torch.float64
        coef_loc = torch.zeros(s, p, dtype=f64)
        coef_loc[:, 0] = math.log(cfg.intercept_prior_s)
        coef_sd = torch.tensor(
            [cfg.intercept_prior_sd, cfg.slope_prior_sd, cfg.slope_prior_sd]
            + [cfg.curvature_prior_sd] * (p - 3),
            dtype=f64,
        ).expand(s, p)
        self.prior_loc = {
            "coef": coef_loc,
            "log_noise": torch.full((s,), math.log(cfg.noise_prior), dtype=f64),
            "log_net": torch.full((s,), math.log(cfg.net_prior_s), dtype=f64),
            "skill": torch.full((s,), -2.0, dtype=f64),
            "log_slope": torch.zeros(s, dtype=f64),
            "ease": torch.zeros(n, dtype=f64),
            "log_rate": torch.tensor(math.log(0.5), dtype=f64),
        }
        self.prior_scale = {
            "coef": coef_sd.clone(),
            "log_noise": torch.full((s,), cfg.noise_prior_sd, dtype=f64),
            "log_net": torch.full((s,), 1.5, dtype=f64),
            "skill": torch.full((s,), 2.0, dtype=f64),
            "log_slope": torch.full((s,), 0.5, dtype=f64),
            "ease": torch.ones(n, dtype=f64),
            "log_rate": torch.tensor(1.0, dtype=f64),
        }
        # Guide started at the prior's median with a tenth of its spread (as Pyro's AutoNormal
        # starts); for the coefficients raw_scale is the Cholesky diagonal and coef_offdiag its
        # strictly lower triangle.
        self.loc = nn.ParameterDict(
            {k: nn.Parameter(v.clone().to(self.device)) for k, v in self.prior_loc.items()}
        )
        self.raw_scale = nn.ParameterDict(
            {
                k: nn.Parameter(_inv_softplus(0.1 * v.clone()).to(self.device))
                for k, v in self.prior_scale.items()
            }
        )
        self.coef_offdiag = nn.Parameter(torch.zeros(s, p, p, dtype=f64, device=self.device))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=cfg.lr)

    def _batch(self) -> dict[str, Tensor]:
        d, dev = self.data, str(self.device)

        def t(x: list[Any], dtype: torch.dtype = torch.float64) -> Tensor:
            return torch.tensor(x, dtype=dtype, device=dev)

        return {
            "server": t(d.server, torch.long),
            "phi": features(self.config.terms, t(d.compute_share), t(d.memory_share)),
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
    def _prior(self, name: str) -> tuple[Tensor, Tensor]:
        dev = self.device
        return (
            self.prior_loc[name].to(dev, torch.float64),
            self.prior_scale[name].to(dev, torch.float64),
        )

    def model(self, batch: dict[str, Tensor]) -> None:
        """The generative model (see the class docstring); conditions on ``batch``."""
        dev = str(self.device)
        z = {}
        with pyro.plate("servers", self.n_servers, device=dev):
            z["coef"] = pyro.sample("coef", dist.Normal(*self._prior("coef")).to_event(1))
            for name in _PER_SERVER:
                z[name] = pyro.sample(name, dist.Normal(*self._prior(name)))
        with pyro.plate("problems", self.n_problems, device=dev):
            z["ease"] = pyro.sample("ease", dist.Normal(*self._prior("ease")))
        log_rate = pyro.sample("log_rate", dist.Normal(*self._prior("log_rate")))
        j = batch["server"]
        if j.numel():
            mu = (batch["phi"] * z["coef"][j]).sum(-1)
            sd = torch.exp(z["log_noise"][j])
            done, started = batch["completed"], batch["started"]
            with pyro.plate("tasks", j.numel(), device=dev):
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
            with pyro.plate("gaps", gaps.numel(), device=dev):
                pyro.sample("gap_obs", dist.Exponential(torch.exp(log_rate)), obs=gaps)

    def guide(self, batch: dict[str, Tensor]) -> None:
        """Full-rank Normal over each server's coefficients, mean-field Normal over the rest."""
        dev = str(self.device)
        with pyro.plate("servers", self.n_servers, device=dev):
            pyro.sample("coef", dist.MultivariateNormal(self.loc["coef"], scale_tril=self._tril()))
            for name in _PER_SERVER:
                pyro.sample(name, dist.Normal(self.loc[name], self._scale(name)))
        with pyro.plate("problems", self.n_problems, device=dev):
            pyro.sample("ease", dist.Normal(self.loc["ease"], self._scale("ease")))
        pyro.sample("log_rate", dist.Normal(self.loc["log_rate"], self._scale("log_rate")))

    def _scale(self, name: str) -> Tensor:
        return torch.nn.functional.softplus(self.raw_scale[name]) + _MIN_SCALE

    def _tril(self) -> Tensor:
        """Cholesky factor of the coefficients' posterior covariance, shape (servers, P, P)."""
        return torch.tril(self.coef_offdiag, diagonal=-1) + torch.diag_embed(self._scale("coef"))

    # ------------------------------------------------------------------ learning
    def fit(self, steps: int | None = None) -> list[float]:
        """SVI on everything observed so far, warm-started; returns the VFE trace (nats).

        Parameters
        ----------
        steps : int, optional
            Adam steps (``config.fit_steps`` by default).

        Returns
        -------
        list of float
            ``F = -ELBO`` at every step (empty when nothing has been observed).
        """
        steps = self.config.fit_steps if steps is None else int(steps)
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
        """The posterior as numpy arrays (the prior before the first fit).

        Returns
        -------
        dict
            ``"coef"``: mean, shape (servers, P), and the Cholesky factor of the covariance,
            shape (servers, P, P); every other latent: mean and sd of its Normal.
        """
        if not self.vfe_trace:
            out = {
                k: (
                    self.prior_loc[k].numpy().astype(np.float64),
                    self.prior_scale[k].numpy().astype(np.float64),
                )
                for k in self.prior_loc
            }
            out["coef"] = (out["coef"][0], np.stack([np.diag(r) for r in out["coef"][1]]))
            return out
        out = {
            k: (
                self.loc[k].detach().cpu().numpy().astype(np.float64),
                self._scale(k).detach().cpu().numpy().astype(np.float64),
            )
            for k in self.loc
        }
        out["coef"] = (out["coef"][0], self._tril().detach().cpu().numpy().astype(np.float64))
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

        Returns
        -------
        OutcomeBeliefs
            Fields of the broadcast shape; ``param_var`` is ``phi' Sigma phi`` (the regression's
            parameter variance at the candidate), ``noise_var`` the posterior mean of
            ``sigma**2``.
        """
        server = np.asarray(server)
        phi = features(self.config.terms, compute_share, memory_share)
        shape = np.broadcast_shapes(server.shape, phi.shape[:-1], np.shape(problem))
        server_b = np.broadcast_to(server, shape)
        phi = np.broadcast_to(phi, (*shape, phi.shape[-1]))
        coef_m, coef_l = post["coef"]
        mean = np.einsum("...p,...p->...", phi, coef_m[server_b])
        # Var(phi . beta) = |L' phi|^2 with Sigma = L L'.
        proj = np.einsum("...pq,...p->...q", coef_l[server_b], phi)
        param_var = np.einsum("...q,...q->...", proj, proj)
        return outcome_beliefs_from(post, server_b, problem, mean, param_var)

    # ------------------------------------------------------------------ diagnostics
    def posterior_datatree(
        self, num_samples: int = 500, seed: int = 0, server_names: Sequence[str] | None = None
    ) -> Any:
        """Draws of every latent from the fitted posterior as an ArviZ DataTree.

        Groups ``posterior`` (``chain``, ``draw``, and ``server`` / ``term`` / ``problem`` dims;
        ``coef`` the regression coefficients with ``term`` labelled by :data:`TERMS`; derived
        quantities ``compute_s`` = exp(intercept), the compute time at full shares, ``noise_s``,
        ``net_s``, ``slope``, ``arrival_rate``), built with ``arviz_base.from_dict``, and
        ``free_energy`` (the VFE of every SVI step, ``step``).
        """
        import arviz_base

        rng = np.random.default_rng(seed)
        post = self.posterior()
        draws: dict[str, np.ndarray] = {}
        for name, (m, s) in post.items():
            if name == "coef":
                z = rng.standard_normal((1, num_samples, *m.shape))
                draws[name] = m + np.einsum("spq,cdsq->cdsp", s, z)
            else:
                draws[name] = rng.normal(m, s, size=(1, num_samples, *np.shape(m)))
        draws["compute_s"] = np.exp(draws["coef"][..., 0])
        draws["noise_s"] = np.exp(draws["log_noise"])
        draws["net_s"] = np.exp(draws["log_net"])
        draws["slope"] = np.exp(draws["log_slope"])
        draws["arrival_rate"] = np.exp(draws["log_rate"])
        names = (
            list(server_names)
            if server_names is not None
            else [str(j) for j in range(self.n_servers)]
        )
        if len(names) != self.n_servers:
            raise ValueError(f"server_names has {len(names)} names, the model {self.n_servers}")
        per_server = (*_PER_SERVER, "compute_s", "noise_s", "net_s", "slope")
        dims: dict[str, list[str]] = {k: ["server"] for k in per_server}
        dims["coef"] = ["server", "term"]
        dims["ease"] = ["problem"]
        tree = arviz_base.from_dict(
            {"posterior": draws},
            dims=dims,
            coords={
                "server": names,
                "term": list(self.terms),
                "problem": np.arange(self.n_problems),
            },
        )
        vfe = np.asarray(self.vfe_trace, dtype=np.float64)
        tree["free_energy"] = xr.DataTree(
            xr.Dataset({"vfe": (("step",), vfe)}, coords={"step": np.arange(vfe.size)})
        )
        return tree


def _inv_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))
