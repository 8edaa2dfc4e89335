"""A linear-Gaussian state-space model of one server's remaining capacity, as Pyro programs.

It is the continuous counterpart of the categorical server model: the same ``vfe``,
``fit_beliefs``, ``filter_beliefs`` and ``efe_mc`` run on it, and its Kalman closed forms check them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from aif.handlers import ACTION_SITE, OBS_SITE, STATE_SITE, horizon, parse_site
from aif.planning import EFEResult

__all__ = [
    "GaussianBelief",
    "GaussianSSM",
    "KalmanResult",
]

Belief = tuple[Tensor, Tensor]


class KalmanResult(NamedTuple):
    """Exact filtering of the linear-Gaussian model.

    Attributes
    ----------
    means, variances : Tensor, shape (T,)
        Filtered ``p(c_t | o_{0:t})``.
    log_evidence : Tensor, shape (T,)
        ``log p(o_t | o_{0:t-1})`` per step; the sum is ``log p(o_{0:T-1})``.
    prior_means, prior_variances : Tensor, shape (T,)
        Predicted ``p(c_t | o_{0:t-1})``.
    """

    means: Tensor
    variances: Tensor
    log_evidence: Tensor
    prior_means: Tensor
    prior_variances: Tensor


@dataclass(frozen=True)
class GaussianSSM:
    """Remaining capacity ``c_t`` of a server that tasks are (or are not) sent to.

    ``c_{t+1} = level + decay * (c_t - level) - load[u_t] + w_t`` with ``w_t ~ N(0, process_sd^2)``
    (capacity recovers towards ``level`` as tasks finish and drops by ``load[u]`` when control
    ``u`` sends work to the server), observed as ``o_t = c_t + v_t`` with
    ``v_t ~ N(0, obs_sd^2)``. Every number here is a modelling choice, not a published value.

    Sites (``docs/notation.md``): states ``s_{t}_0``, observations ``o_{t}_0``, controls ``u_{t}_0``.

    Parameters
    ----------
    level : float, default 1.0
        Long-run remaining capacity (fraction of the server's resources).
    decay : float, default 0.8
        Persistence of deviations from ``level`` per step, in [0, 1].
    load : tuple of float, default (0.0, 0.3)
        Capacity consumed by each control (0: send the task elsewhere, 1: send it here).
    process_sd, obs_sd : float, default 0.1, 0.15
        Standard deviations of the transition and observation noise.
    prior_mean, prior_sd : float, default 0.8, 0.3
        Belief about ``c_0`` before any observation.
    horizon : int, default 2
        Planning horizon of :meth:`predictive` (overridden by :class:`aif.handlers.set_horizon`).
    """

    level: float = 1.0
    decay: float = 0.8
    load: tuple[float, ...] = (0.0, 0.3)
    process_sd: float = 0.1
    obs_sd: float = 0.15
    prior_mean: float = 0.8
    prior_sd: float = 0.3
    horizon: int = 2

    def __post_init__(self) -> None:
        for name in ("process_sd", "obs_sd", "prior_sd"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GaussianSSM: {name}={getattr(self, name)!r}; expected > 0")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"GaussianSSM: decay={self.decay!r}; expected a value in [0, 1]")
        if len(self.load) < 1:
            raise ValueError("GaussianSSM: load=(); expected one capacity cost per control")
        if self.horizon < 1:
            raise ValueError(f"GaussianSSM: horizon={self.horizon}; expected >= 1")

    @property
    def num_controls(self) -> int:
        """Number of controls (length of ``load``)."""
        return len(self.load)

    # ---------------------------------------------------------------- dynamics

    def transition_mean(self, c: Tensor, u: Tensor) -> Tensor:
        """``level + decay * (c - level) - load[u]``; broadcasts ``c`` and ``u``."""
        load = torch.as_tensor(self.load, dtype=torch.as_tensor(c).dtype)
        return self.level + self.decay * (c - self.level) - load[torch.as_tensor(u).long()]

    def predict(self, belief: Belief, action: Any) -> Belief:
        """Push a Gaussian belief ``(mean, var)`` through one transition with control ``action``.

        Parameters
        ----------
        belief : tuple of Tensor, shapes () and ()
        action : int, 0-d Tensor or None (control 0)

        Returns
        -------
        tuple of Tensor
            ``(level + decay (m - level) - load[u], decay^2 v + process_sd^2)``.
        """
        mean, var = (torch.as_tensor(x, dtype=torch.float64) for x in belief)
        u = torch.as_tensor(0 if action is None else action).reshape(-1)[0]
        return self.transition_mean(mean, u), self.decay**2 * var + self.process_sd**2

    # ---------------------------------------------------------------- Pyro programs

    def _check_control(self, u: Any, t: int) -> Tensor:
        u = torch.as_tensor(u).long()
        if int(u.max()) >= self.num_controls or int(u.min()) < 0:
            raise ValueError(
                f"GaussianSSM: control {u.tolist()} at step {t}; expected 0..{self.num_controls - 1}"
            )
        return u

    def model(
        self,
        obs: Tensor | Sequence[float] | None,
        actions: Tensor | Sequence[int] | None = None,
        num_steps: int | None = None,
    ) -> None:
        """Joint ``p(o_{0:T-1}, c_{0:T-1} | u)`` over an observed sequence (smoothing model).

        Parameters
        ----------
        obs : Tensor, shape (T,), or None
            Observed capacities; ``None`` samples them (then ``num_steps`` gives ``T``).
        actions : Tensor of int, shape (T - 1,), optional
            Controls between steps; without them the control sites ``u_{t}_0`` are sampled
            uniformly (set them with :class:`aif.handlers.condition_on_policy`).
        num_steps : int, optional
            ``T`` when ``obs`` is None.
        """
        if obs is None and num_steps is None:
            raise ValueError("GaussianSSM.model: obs=None needs num_steps; got neither")
        obs_t = None if obs is None else torch.as_tensor(obs, dtype=torch.float64)
        T = int(obs_t.shape[0]) if obs_t is not None else int(num_steps or 0)
        c = pyro.sample(
            STATE_SITE.format(t=0, f=0),
            dist.Normal(torch.tensor(self.prior_mean, dtype=torch.float64), self.prior_sd),
        )
        self._observe(c, 0, obs_t)
        for t in range(1, T):
            u = self._control(t - 1, actions)
            c = pyro.sample(
                STATE_SITE.format(t=t, f=0),
                dist.Normal(self.transition_mean(c, u), self.process_sd),
            )
            self._observe(c, t, obs_t)

    def _control(self, t: int, actions: Any) -> Tensor:
        probs = torch.full((self.num_controls,), 1.0 / self.num_controls, dtype=torch.float64)
        value = None if actions is None else self._check_control(torch.as_tensor(actions)[t], t)
        site = ACTION_SITE.format(t=t, f=0)
        if value is None:
            return pyro.sample(site, dist.Categorical(probs))
        # A given control is an intervention: recorded, but not scored as evidence.
        return pyro.sample(site, dist.Categorical(probs).mask(False), obs=value)

    def _observe(self, c: Tensor, t: int, obs: Tensor | None) -> Tensor:
        value = None if obs is None else obs[t]
        return pyro.sample(OBS_SITE.format(t=t, m=0), dist.Normal(c, self.obs_sd), obs=value)

    def step_model(self, obs: Tensor | float | None, prior: Belief) -> None:
        """One filtering step: ``c ~ N(prior)`` then ``o ~ N(c, obs_sd^2)``; sites ``s_0_0``, ``o_0_0``.

        Parameters
        ----------
        obs : float or 0-d Tensor, or None
        prior : tuple of Tensor ``(mean, var)``, shapes () and ()
        """
        mean, var = (torch.as_tensor(x, dtype=torch.float64) for x in prior)
        c = pyro.sample(STATE_SITE.format(t=0, f=0), dist.Normal(mean, var.sqrt()))
        value = None if obs is None else torch.as_tensor(obs, dtype=torch.float64)
        pyro.sample(OBS_SITE.format(t=0, m=0), dist.Normal(c, self.obs_sd), obs=value)

    def predictive(self, belief: Belief) -> None:
        """Future capacities and observations from the current belief, for planning.

        ``c_now ~ N(belief)`` (site ``s_now``), then for ``t < horizon(self.horizon)``: control
        ``u_{t}_0`` (uniform unless conditioned on a policy), ``s_{t}_0`` and ``o_{t}_0``.

        Parameters
        ----------
        belief : tuple of Tensor ``(mean, var)``, shapes () and ()
        """
        mean, var = (torch.as_tensor(x, dtype=torch.float64) for x in belief)
        c = pyro.sample("s_now", dist.Normal(mean, var.sqrt()))
        for t in range(horizon(self.horizon)):
            u = self._control(t, None)
            c = pyro.sample(
                STATE_SITE.format(t=t, f=0),
                dist.Normal(self.transition_mean(c, u), self.process_sd),
            )
            pyro.sample(OBS_SITE.format(t=t, m=0), dist.Normal(c, self.obs_sd))

    def preference(self, target: float, scale: float) -> Callable[[str, Tensor], Tensor | None]:
        """Gaussian log-preference over observed capacity, ``log N(o; target, scale^2)``.

        Returns a callable for :class:`aif.handlers.add_preferences` and ``efe_mc(log_C=...)``
        that scores every ``o_{t}_{m}`` site.
        """
        if not scale > 0:
            raise ValueError(f"GaussianSSM.preference: scale={scale!r}; expected > 0")

        def log_c(name: str, value: Tensor) -> Tensor | None:
            if parse_site(name, OBS_SITE) is None:
                return None
            return dist.Normal(torch.tensor(target, dtype=torch.float64), scale).log_prob(value)

        return log_c

    # ---------------------------------------------------------------- closed forms

    def kalman_filter(
        self, obs: Tensor | Sequence[float], actions: Tensor | Sequence[int] | None = None
    ) -> KalmanResult:
        """Exact filtering and log evidence (Kalman, J. Basic Eng. 82(1), 1960).

        Parameters
        ----------
        obs : Tensor, shape (T,)
        actions : Tensor of int, shape (T - 1,), optional (control 0 when omitted)

        Returns
        -------
        KalmanResult
        """
        obs_t = torch.as_tensor(obs, dtype=torch.float64)
        m = torch.tensor(self.prior_mean, dtype=torch.float64)
        v = torch.tensor(self.prior_sd**2, dtype=torch.float64)
        r2 = self.obs_sd**2
        out: list[list[Tensor]] = [[], [], [], [], []]
        for t in range(obs_t.shape[0]):
            if t > 0:
                u = 0 if actions is None else actions[t - 1]
                m, v = self.predict((m, v), u)
            s2 = v + r2
            log_ev = -0.5 * (math.log(2 * math.pi) + torch.log(s2) + (obs_t[t] - m) ** 2 / s2)
            gain = v / s2
            post_m, post_v = m + gain * (obs_t[t] - m), (1 - gain) * v
            for lst, x in zip(out, (post_m, post_v, log_ev, m, v), strict=True):
                lst.append(x)
            m, v = post_m, post_v
        return KalmanResult(*(torch.stack(x) for x in out))

    def efe_closed_form(
        self, belief: Belief, policies: Tensor, target: float, scale: float
    ) -> EFEResult:
        """Exact expected free energy of each policy under the Gaussian preference.

        With predicted ``c_t ~ N(m_t, v_t)`` and ``o_t ~ N(m_t, v_t + r^2)`` per step: ambiguity
        ``0.5 log(2 pi e r^2)``, information gain ``0.5 log(1 + v_t / r^2)`` and pragmatic value
        ``E[log N(o_t; target, scale^2)] = -0.5 log(2 pi scale^2) - ((m_t - target)^2 + v_t + r^2)
        / (2 scale^2)``, summed over steps (the Gaussian case of Da Costa et al., J. Math.
        Psychol. 99, 2020, eq. 8).

        Parameters
        ----------
        belief : tuple of Tensor ``(mean, var)``
        policies : Tensor of int, shape (n_policies, T, 1) or (n_policies, T)
        target, scale : float

        Returns
        -------
        EFEResult
            Fields of shape (n_policies,); ``novelty`` is zero.
        """
        pol = torch.as_tensor(policies).long()
        if pol.dim() == 3:
            pol = pol[..., 0]
        r2 = self.obs_sd**2
        rows = []
        for policy in pol:
            m, v = (torch.as_tensor(x, dtype=torch.float64) for x in belief)
            prag = amb = ig = torch.zeros((), dtype=torch.float64)
            for u in policy:
                m, v = self.predict((m, v), u)
                amb = amb + 0.5 * math.log(2 * math.pi * math.e * r2)
                ig = ig + 0.5 * torch.log1p(v / r2)
                prag = prag - 0.5 * math.log(2 * math.pi * scale**2)
                prag = prag - ((m - target) ** 2 + v + r2) / (2 * scale**2)
            risk = -(ig + amb) - prag
            rows.append(torch.stack([-prag - ig, risk, amb, prag, ig]))
        table = torch.stack(rows)
        return EFEResult(
            table[:, 0], table[:, 1], table[:, 2], table[:, 3], table[:, 4], torch.zeros(len(rows))
        )


class GaussianBelief(nn.Module):
    """Normal guide over one state site with a ``beliefs()`` method, for filtering.

    Parameters
    ----------
    prior : tuple of Tensor ``(mean, var)``
        Initial location and scale (the prior is a good start for the posterior).
    site : str, default ``"s_0_0"``
    """

    def __init__(self, prior: Belief, site: str = "s_0_0") -> None:
        super().__init__()
        mean, var = (torch.as_tensor(x, dtype=torch.float64) for x in prior)
        self.site = site
        self.loc = nn.Parameter(mean.detach().clone().reshape(()))
        self.log_scale = nn.Parameter(0.5 * torch.log(var.detach().clone().reshape(())))

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        return pyro.sample(self.site, dist.Normal(self.loc, self.log_scale.exp()))

    def beliefs(self) -> Belief:
        """Posterior ``(mean, var)`` as detached 0-d tensors."""
        return self.loc.detach().clone(), torch.exp(2 * self.log_scale.detach())
