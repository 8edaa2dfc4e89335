"""Pyro effect handlers that change what a generative model means without editing it.

Conditioning on a policy, adding log-preferences over observations and setting the planning
horizon are each one :class:`pyro.poutine.messenger.Messenger`, composable with Pyro's own.

Site conventions
----------------
The handlers act on sites by name. The defaults follow the engine's notation
(``docs/notation.md``): hidden-state factor ``f`` at time ``t`` is ``s_{t}_{f}``, observation
modality ``m`` at time ``t`` is ``o_{t}_{m}`` and the control of factor ``f`` at time ``t`` is
``u_{t}_{f}``. Every handler takes the pattern as an argument for models that name sites
differently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyro
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import effectful
from torch import Tensor

__all__ = [
    "ACTION_SITE",
    "OBS_SITE",
    "PREFERENCE_PREFIX",
    "STATE_SITE",
    "add_preferences",
    "condition_on_policy",
    "horizon",
    "is_preference_site",
    "parse_site",
    "set_horizon",
]

#: Default name pattern of hidden-state sites (factor ``f`` at time ``t``).
STATE_SITE = "s_{t}_{f}"
#: Default name pattern of observation sites (modality ``m`` at time ``t``).
OBS_SITE = "o_{t}_{m}"
#: Default name pattern of control sites (factor ``f`` at time ``t``).
ACTION_SITE = "u_{t}_{f}"
#: Prefix of the factor sites that :class:`add_preferences` adds after an observation site.
PREFERENCE_PREFIX = "pref:"

PreferenceFn = Callable[[str, Tensor], Tensor | None]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Compile a ``"o_{t}_{m}"``-style pattern into a regex with one integer group per field."""
    fields = re.findall(r"\{(\w+)\}", pattern)
    if not fields:
        raise ValueError(
            f"site pattern {pattern!r} has no '{{field}}' placeholders; expected e.g. 'o_{{t}}_{{m}}'"
        )
    regex = ""
    last = 0
    for match in re.finditer(r"\{(\w+)\}", pattern):
        regex += re.escape(pattern[last : match.start()]) + rf"(?P<{match.group(1)}>\d+)"
        last = match.end()
    regex += re.escape(pattern[last:])
    return re.compile(f"^{regex}$")


def parse_site(name: str, pattern: str) -> dict[str, int] | None:
    """Read the integer indices out of a site name.

    Parameters
    ----------
    name : str
        A site name such as ``"o_2_1"``.
    pattern : str
        A pattern with ``{field}`` placeholders such as ``"o_{t}_{m}"``.

    Returns
    -------
    dict of str to int, or None
        ``{"t": 2, "m": 1}`` for the example; ``None`` when ``name`` does not match.
    """
    match = _pattern_regex(pattern).match(name)
    if match is None:
        return None
    return {k: int(v) for k, v in match.groupdict().items()}


def is_preference_site(name: str) -> bool:
    """Whether ``name`` is a log-preference factor added by :class:`add_preferences`."""
    return name.startswith(PREFERENCE_PREFIX)


# --------------------------------------------------------------------------------------------
# Horizon
# --------------------------------------------------------------------------------------------


@effectful(type="horizon")
def _horizon(default: int) -> int:
    return default


def horizon(default: int) -> int:
    """The planning horizon a model should unroll, ``default`` unless :class:`set_horizon` is active.

    Models call this instead of reading a fixed length so that the horizon becomes a handler
    (``with set_horizon(3): model(...)``) rather than an ``if`` flag.

    Parameters
    ----------
    default : int
        The model's own horizon (number of future time steps).

    Returns
    -------
    int
        The innermost active :class:`set_horizon` value, otherwise ``default``.
    """
    if int(default) < 0:
        raise ValueError(f"horizon: default={default}; expected a non-negative number of steps")
    return int(_horizon(int(default)))


class set_horizon(Messenger):
    """Set the horizon returned by :func:`horizon` inside the handled model.

    Parameters
    ----------
    T : int
        Number of time steps the model unrolls (``T >= 1``).

    Examples
    --------
    >>> with set_horizon(2):
    ...     horizon(default=5)
    2
    """

    def __init__(self, T: int) -> None:
        if int(T) != T or T < 1:
            raise ValueError(f"set_horizon: T={T!r}; expected an integer >= 1")
        super().__init__()
        self.T = int(T)

    def _pyro_horizon(self, msg: Any) -> None:
        msg["value"] = self.T
        msg["done"] = True
        # The innermost horizon wins, as with nested ``poutine.scale``: outer handlers do not
        # overwrite it.
        msg["stop"] = True


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


class condition_on_policy(Messenger):
    """Fix the control sites of a model to the actions of one policy (an intervention).

    Control sites (``u_{t}_{f}`` by default) take the value ``policy[t, f]``. They are treated
    as interventions, not evidence: the site is marked observed so that no guide needs it, and
    masked so that it adds nothing to a free energy. Control sites at ``t >= policy.shape[0]``
    are left to the model.

    Parameters
    ----------
    policy : Tensor or array-like of int, shape (T, F) or (T,)
        Control index per time step and controllable factor (pymdp layout of one policy);
        a 1-D policy is read as one factor.
    action_site : str, default ``"u_{t}_{f}"``
        Name pattern of control sites with fields ``t`` and ``f``.

    Examples
    --------
    >>> import pyro, pyro.distributions as dist, torch
    >>> def model():
    ...     return pyro.sample("u_0_0", dist.Categorical(torch.ones(3) / 3))
    >>> with condition_on_policy(torch.tensor([[2]])):
    ...     model().item()
    2
    """

    def __init__(self, policy: Tensor | Sequence[Any], action_site: str = ACTION_SITE) -> None:
        super().__init__()
        pol = torch.as_tensor(policy)
        if pol.dim() == 1:
            pol = pol.unsqueeze(-1)
        if pol.dim() != 2:
            raise ValueError(
                f"condition_on_policy: policy has shape {tuple(pol.shape)}; expected (T, F) "
                "(time steps by controllable factors) or (T,)"
            )
        if pol.is_floating_point() and not torch.equal(pol, pol.round()):
            raise ValueError(
                f"condition_on_policy: policy {pol.tolist()} has non-integer entries; "
                "expected control indices"
            )
        if (pol < 0).any():
            raise ValueError(
                f"condition_on_policy: policy {pol.tolist()} has negative entries; "
                "expected control indices >= 0"
            )
        fields = set(re.findall(r"\{(\w+)\}", action_site))
        if fields != {"t", "f"}:
            raise ValueError(
                f"condition_on_policy: action_site={action_site!r} has fields {sorted(fields)}; "
                "expected exactly {t} and {f}"
            )
        self.policy = pol.long()
        self.action_site = action_site
        self._regex = _pattern_regex(action_site)

    def _pyro_sample(self, msg: Any) -> None:
        match = self._regex.match(msg["name"])
        if match is None:
            return
        t, f = int(match.group("t")), int(match.group("f"))
        if t >= self.policy.shape[0]:
            return
        if f >= self.policy.shape[1]:
            raise ValueError(
                f"condition_on_policy: site {msg['name']!r} asks for factor {f} but the policy has "
                f"shape {tuple(self.policy.shape)} (T, F); expected F > {f}"
            )
        fn = msg["fn"]
        value = self.policy[t, f]
        support = getattr(fn, "support", None)
        if support is not None and hasattr(support, "upper_bound"):
            upper = int(torch.as_tensor(support.upper_bound).max())
            if int(value) > upper:
                raise ValueError(
                    f"condition_on_policy: site {msg['name']!r} takes values 0..{upper} but the "
                    f"policy sets {int(value)} (policy shape {tuple(self.policy.shape)})"
                )
        # The value lives where the distribution's parameters do (a model on a GPU).
        params = [vars(fn).get(k) for k in ("probs", "logits")] if fn is not None else []
        devices = [p.device for p in params if isinstance(p, Tensor)]
        if devices and value.device != devices[0]:
            value = value.to(devices[0])
        msg["value"] = value.expand(fn.batch_shape + fn.event_shape) if fn is not None else value
        msg["is_observed"] = True
        # An intervention is not evidence: mask its log-probability out of every free energy.
        msg["mask"] = False
        msg["infer"] = dict(msg.get("infer") or {}, policy_intervention=True)


# --------------------------------------------------------------------------------------------
# Preferences
# --------------------------------------------------------------------------------------------


def _lookup_preference(log_c: Tensor, value: Tensor, t: int, name: str) -> Tensor:
    """Index a categorical log-preference table (shape (n_o,) or (n_o, T)) at observed values."""
    if log_c.dim() == 2:
        col = min(t, log_c.shape[1] - 1)
        log_c = log_c[:, col]
    elif log_c.dim() != 1:
        raise ValueError(
            f"add_preferences: the log-preferences for site {name!r} have shape "
            f"{tuple(log_c.shape)}; expected (n_obs,) or (n_obs, T)"
        )
    idx = value.long()
    if idx.numel() and (int(idx.max()) >= log_c.shape[0] or int(idx.min()) < 0):
        raise ValueError(
            f"add_preferences: site {name!r} produced outcome {int(idx.max())} but its "
            f"log-preferences have shape {tuple(log_c.shape)}; expected outcomes 0..{log_c.shape[0] - 1}"
        )
    return log_c[idx]


class add_preferences(Messenger):
    """Add a log-preference factor ``log C(o)`` after every observation site of a model.

    After each matching observation site the handler adds a factor site named
    ``"pref:" + site_name`` with log-density ``log C(o)`` evaluated at the site's value. Under a
    guide, the expected sum of these factors is the pragmatic (extrinsic) value of
    ``E_q[log C(o)]`` (Friston et al., "Active inference and epistemic value", Cogn. Neurosci.
    6(4), 2015, eq. 2). The observation's own likelihood is left untouched.

    Parameters
    ----------
    log_C : sequence of Tensor, mapping or callable
        * sequence ``log_C[m]`` of shape ``(n_obs_m,)`` or ``(n_obs_m, T)``: categorical
          log-preferences per modality, applied to sites matching ``obs_site`` (fields
          ``t`` and ``m``); pass log-probabilities (e.g. ``log_softmax(C[m])``) or pymdp-style
          raw utilities, the handler adds exactly what it is given;
        * mapping from site name to a tensor of that shape or to a callable ``value -> log C``;
        * callable ``(site_name, value) -> Tensor | None``; ``None`` skips the site.
          Use this for continuous observations (e.g. a Gaussian log-density of the preferred value).
    obs_site : str, default ``"o_{t}_{m}"``
        Name pattern of the observation sites when ``log_C`` is a sequence.
    first_step : int, default 0
        Time index of the first future outcome. A time-indexed table ``(n_obs_m, T)`` scores
        site ``o_{t}_{m}`` with column ``t - first_step`` (the last column repeating), so
        column ``k`` is the ``k``-th future step as in :func:`aif.planning.efe_categorical` and
        pymdp. A predictive model that starts from current beliefs and samples its first
        future outcome at ``o_1_*`` (``CategoricalPOMDP.model(observe_initial=False)``) needs
        ``first_step=1``; :func:`aif.expected_free_energy.efe_mc` sets it from the model's sites.
    """

    def __init__(
        self,
        log_C: Sequence[Tensor] | Mapping[str, Tensor | Callable[[Tensor], Tensor]] | PreferenceFn,
        obs_site: str = OBS_SITE,
        first_step: int = 0,
    ) -> None:
        super().__init__()
        if int(first_step) != first_step or first_step < 0:
            raise ValueError(
                f"add_preferences: first_step={first_step!r}; expected an integer >= 0"
            )
        self.obs_site = obs_site
        self.first_step = int(first_step)
        self._fn = self._normalise(log_C, obs_site, self.first_step)

    @staticmethod
    def _normalise(log_C: Any, obs_site: str, first_step: int = 0) -> PreferenceFn:
        if isinstance(log_C, Mapping):
            table = dict(log_C)

            def from_mapping(name: str, value: Tensor) -> Tensor | None:
                if name not in table:
                    return None
                entry = table[name]
                if callable(entry):
                    return entry(value)
                return _lookup_preference(torch.as_tensor(entry), value, 0, name)

            return from_mapping
        if callable(log_C):
            return log_C
        if isinstance(log_C, Tensor) and log_C.dim() == 1:
            tables = [log_C]
        else:
            tables = [torch.as_tensor(c) for c in log_C]
        regex = _pattern_regex(obs_site)
        if set(regex.groupindex) != {"t", "m"}:
            raise ValueError(
                f"add_preferences: obs_site={obs_site!r} has fields {sorted(regex.groupindex)}; "
                "expected exactly {t} and {m}"
            )

        def from_sequence(name: str, value: Tensor) -> Tensor | None:
            match = regex.match(name)
            if match is None:
                return None
            t, m = int(match.group("t")), int(match.group("m"))
            if m >= len(tables):
                raise ValueError(
                    f"add_preferences: site {name!r} is modality {m} but log_C has "
                    f"{len(tables)} modalities; expected one table per modality"
                )
            if t < first_step and tables[m].dim() == 2:
                raise ValueError(
                    f"add_preferences: site {name!r} is step {t}, before first_step={first_step}; "
                    "expected only future outcome sites to be scored by a time-indexed C"
                )
            return _lookup_preference(tables[m], value, t - first_step, name)

        return from_sequence

    def _pyro_sample(self, msg: Any) -> None:
        name = msg["name"]
        if is_preference_site(name):
            return
        previous = msg.get("continuation")

        def emit(done_msg: Any) -> None:
            if previous is not None:
                previous(done_msg)
            log_pref = self._fn(name, done_msg["value"])
            if log_pref is None:
                return
            log_pref = torch.as_tensor(log_pref)
            if not torch.isfinite(log_pref).all():
                raise ValueError(
                    f"add_preferences: the log-preference at site {name!r} is not finite "
                    f"(shape {tuple(log_pref.shape)}); expected finite log C values, e.g. "
                    "log_softmax(C) or stable_log of a probability vector"
                )
            pyro.factor(PREFERENCE_PREFIX + name, log_pref)

        msg["continuation"] = emit
