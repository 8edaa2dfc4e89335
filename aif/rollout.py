"""Whole episodes of a batch of discrete agents in a batch of environments, stepped together.

:func:`rollout` runs :class:`aif.discrete_agent.DiscreteAgent` against any :class:`BatchedEnv`
(infer states, evaluate policies, choose actions, step the environments, learn when the agent
learns), with the per-step work on precompiled tables; :class:`CategoricalEnv` is the generative
process of a categorical POMDP as such an environment.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from aif.exact import (
    ExactStateInference,
    MeanFieldStateInference,
    joint_from_marginals,
    predict_states_batch,
)
from aif.planning import EFEResult, PolicyEvaluator, select_action
from aif.sequence import joint_transition

if TYPE_CHECKING:
    from aif.discrete_agent import DiscreteAgent

__all__ = ["BatchedEnv", "CategoricalEnv", "Rollout", "RolloutResult", "rollout"]


@runtime_checkable
class BatchedEnv(Protocol):
    """A batch of discrete environments that step together, one per agent of a batch.

    Observations are outcome indices, one per modality; actions are control indices, one per
    hidden-state factor. All randomness comes from the environment's own generator, seeded by
    :meth:`reset` (the Gymnasium convention).

    Attributes
    ----------
    batch_size : int
        Number of environments.
    """

    batch_size: int

    def reset(self, seed: int | None = None) -> Tensor:
        """Start every environment; returns the first observations, int64 (batch, M)."""
        ...

    def step(self, action: Tensor) -> Tensor:
        """Apply one action per environment, int64 (batch, F); returns int64 (batch, M)."""
        ...


class RolloutResult(NamedTuple):
    """What a batch of agents observed, believed, evaluated and did at every step.

    Attributes
    ----------
    obs : Tensor of int64, shape (T, batch, M)
        Observation at each step, before the step's inference.
    qs : list of Tensor, ``qs[f]`` shape (T, batch, n_s[f])
        Posterior marginals after each step's observation.
    q_pi : Tensor, shape (T, batch, n_policies)
        Policy posterior at each step.
    efe : Tensor, shape (T, batch, n_policies)
        Expected free energy of every policy at each step (lower is better).
    action : Tensor of int64, shape (T, batch, F)
        Action chosen at each step (applied to the environments).
    efe_parts : EFEResult or None
        Every part of the expected free energy, each of shape (T, batch, n_policies), when
        asked for (``efe_parts=True``).
    """

    obs: Tensor
    qs: list[Tensor]
    q_pi: Tensor
    efe: Tensor
    action: Tensor
    efe_parts: EFEResult | None


class Rollout:
    """Episodes of a :class:`~aif.discrete_agent.DiscreteAgent` batch, precompiled once.

    Each step, for the whole batch: infer states from the observation, evaluate every policy
    and form ``q(pi)``, learn (when the agent learns ``A`` or ``B``), choose an action and
    apply it to the environments, whose next observation starts the next step. :meth:`run`
    gives what stepping the agent by hand gives with the same generators::

        agent.reset()
        obs = env.reset(seed=seed)
        for t in range(steps):
            action = agent.step(obs)
            obs = env.step(action)

    Without learning and with ``"fpi"`` or ``"exact"`` inference (and without novelty), the
    tables of every step are built here, once (:attr:`fused` is True):
    :class:`aif.exact.MeanFieldStateInference` or :class:`aif.exact.ExactStateInference` for
    the beliefs and :class:`aif.planning.PolicyEvaluator` for the policies, one model for the
    whole batch when every agent has the same ``A``, ``B``, ``C`` and ``E`` (as for an agent
    built from one model). Otherwise every step runs the agent's own methods.

    With ``compile=True`` (fused steps only) the beliefs and the policy evaluation of a step
    are compiled ahead of time by AOTInductor into one native call for this batch and model
    (the tables become constants of the compiled code): it takes a minute or two
    (:attr:`compile_seconds`) and a C++ compiler, and is kept by this object only. Action
    selection, the next prior and the environments stay outside, so draws are unchanged.

    Parameters
    ----------
    agent : DiscreteAgent
        The agents: their model (read here; build a new :class:`Rollout` after changing it),
        settings and generator (action draws, as in
        :meth:`~aif.discrete_agent.DiscreteAgent.step`).
    compile : bool, default False
        Compile each step's beliefs and policy evaluation (fused steps only).

    Attributes
    ----------
    agent : DiscreteAgent
    fused : bool
        Whether the steps run on the precompiled tables.
    shared : bool
        Whether one model serves the whole batch (fused steps only).
    compile_seconds : float or None
        Time spent compiling the step; None without compiling.

    Raises
    ------
    RuntimeError
        With ``compile=True``, when AOTInductor cannot compile the step.
    """

    def __init__(self, agent: DiscreteAgent, compile: bool = False) -> None:
        self.agent = agent
        self.compile_seconds: float | None = None
        self._step: _Step | None = None
        self._compiled: Any = None
        self.fused: bool = (
            agent.inference in ("fpi", "exact")
            and not (agent.learn_A or agent.learn_B)
            and not agent.use_param_info_gain
        )
        self.shared: bool = False
        self._evaluator: PolicyEvaluator | None = None
        self._engine: ExactStateInference | MeanFieldStateInference | None = None
        if not self.fused:
            return
        A, B, C = agent.A, agent.B, agent.C
        shared = _shared([*A, *B, *C, agent.log_E])
        self.shared = shared

        def model(xs: Sequence[Tensor]) -> list[Tensor]:
            return [x[0] for x in xs] if shared else list(xs)

        self._evaluator = PolicyEvaluator(
            model(A),
            model(B),
            model(C),
            agent.policies,
            agent.gamma,
            agent.log_E[0] if shared else agent.log_E,
            use_utility=agent.use_utility,
            use_states_info_gain=agent.use_states_info_gain,
            info_gain=agent.info_gain,
            batched=not shared,
        )
        if agent.inference == "exact":
            self._engine = ExactStateInference(model(A), batched=not shared)
        else:
            self._engine = MeanFieldStateInference(
                model(A), num_iter=agent.num_iter, batched=not shared
            )
        self._step = _Step(self._engine, self._evaluator)
        if compile:
            start = time.perf_counter()
            self._compiled = _compile_step(self._step, agent)
            self.compile_seconds = time.perf_counter() - start

    def run(
        self,
        env: BatchedEnv,
        steps: int,
        *,
        seed: int | None = None,
        efe_parts: bool = False,
    ) -> RolloutResult:
        """One episode of ``steps`` steps.

        Parameters
        ----------
        env : BatchedEnv
            ``env.batch_size`` must equal ``agent.batch_size``.
        steps : int
            Number of steps (the environments are stepped after each, ``steps`` times).
        seed : int, optional
            Passed to ``env.reset``.
        efe_parts : bool, default False
            Also keep every part of the expected free energy (six more arrays of the size of
            ``efe``).

        Returns
        -------
        RolloutResult
            Every tensor with leading axes (steps, batch).

        Notes
        -----
        The agent's episode starts afresh (:meth:`~aif.discrete_agent.DiscreteAgent.reset`) and
        is reset again at the end: learnt ``pA``/``pB`` (and ``A``/``B``) are kept, the episode
        state is not, and ``pD`` is not learnt (call
        :meth:`~aif.discrete_agent.DiscreteAgent.end_episode` in a hand-written loop for that).
        """
        agent = self.agent
        if steps < 1:
            raise ValueError(f"rollout: steps={steps}; expected >= 1")
        if int(env.batch_size) != agent.batch_size:
            raise ValueError(
                f"rollout: env.batch_size={env.batch_size} but agent.batch_size="
                f"{agent.batch_size}; expected one environment per agent"
            )
        agent.reset()
        obs = _checked_obs(env.reset(seed=seed), agent, "env.reset")
        record = _Record(efe_parts)
        try:
            if self.fused:
                self._run_fused(env, steps, obs, record)
            else:
                self._run_stepped(env, steps, obs, record)
        finally:
            agent.reset()
        return record.result()

    def _run_stepped(self, env: BatchedEnv, steps: int, obs: Tensor, record: _Record) -> None:
        """The agent's own methods, step by step (learning, smoothing, message passing, novelty)."""
        agent = self.agent
        for _ in range(steps):
            qs = agent.infer_states(obs)
            policy = agent.infer_policies()
            agent.learn()
            action = agent.sample_action()
            record.add(obs, qs, policy.q_pi, policy.efe, action)
            obs = _checked_obs(env.step(action), agent, "env.step")

    def _run_fused(self, env: BatchedEnv, steps: int, obs: Tensor, record: _Record) -> None:
        """Steps on the precompiled tables."""
        agent = self.agent
        batch, B = agent.batch_size, agent.B
        exact = isinstance(self._engine, ExactStateInference)
        prior = [d.clone() for d in agent.D]
        joint_prior = joint_from_marginals(prior).reshape(batch, -1) if exact else None
        step = self._step
        assert step is not None
        F = len(B)
        for t in range(steps):
            inputs = [obs.contiguous(), *(prior if joint_prior is None else [joint_prior])]
            if self._compiled is not None:
                out = self._compiled.boxed_run(inputs)
            else:
                out = step.forward(*inputs)
            qs = list(out[:F])
            joint = out[F] if exact else None
            q_pi = out[-7]
            efe = EFEResult(*out[-6:])
            action = select_action(
                q_pi,
                agent.policies,
                agent.action_selection,
                agent.generator,
                sampling=agent.sampling,
                alpha=agent.alpha,
                num_controls=agent.num_controls,
            )
            record.add(obs, qs, q_pi, efe, action)
            obs = _checked_obs(env.step(action), agent, "env.step")
            if t + 1 < steps:
                if joint is not None:
                    M = joint_transition(B, action).to(agent.dtype)
                    joint_prior = torch.bmm(M, joint.reshape(batch, -1, 1)).squeeze(-1)
                else:
                    prior = predict_states_batch(qs, B, action)


class _Step(torch.nn.Module):
    """Beliefs and policy evaluation of one fused step (a module, so it can be exported).

    ``forward(obs, *prior)`` (``prior``: the marginals, or the joint prior for exact
    inference) returns the marginals, the joint (exact inference), ``q(pi)`` and the six parts
    of the expected free energy.
    """

    def __init__(
        self, engine: ExactStateInference | MeanFieldStateInference, evaluator: PolicyEvaluator
    ) -> None:
        super().__init__()
        self.engine = engine
        self.evaluator = evaluator

    def forward(self, obs: Tensor, *prior: Tensor) -> tuple[Tensor, ...]:
        if isinstance(self.engine, ExactStateInference):
            post = self.engine.update_joint(obs, prior[0])
            assert post.joint is not None
            out = [*post.qs, post.joint]
        else:
            post = self.engine.update(obs, list(prior))
            out = list(post.qs)
        evaluation = self.evaluator.evaluate(post.qs)
        return (*out, evaluation.q_pi, *evaluation.efe)


def _compile_step(step: _Step, agent: DiscreteAgent) -> Any:
    """``step`` compiled ahead of time by AOTInductor for the agent's batch (a loader)."""
    import os
    import tempfile

    from torch._inductor import aoti_compile_and_package, aoti_load_package

    batch = agent.batch_size
    obs = torch.zeros(batch, len(agent.num_obs), dtype=torch.long, device=agent.device)
    prior = [d.clone() for d in agent.D]
    if isinstance(step.engine, ExactStateInference):
        prior = [joint_from_marginals(prior).reshape(batch, -1).contiguous()]
    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory() as tmp:
            # torch's own deprecation notices from export and packaging, not the caller's concern
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.export.export(step, (obs, *prior))
            path = aoti_compile_and_package(program, package_path=os.path.join(tmp, "step.pt2"))
            return aoti_load_package(path).loader
    except Exception as error:  # a missing compiler, an unsupported device, ...
        raise RuntimeError(
            f"Rollout(compile=True): AOTInductor could not compile the step "
            f"({type(error).__name__}: {error}); use compile=False"
        ) from error


def rollout(
    agent: DiscreteAgent,
    env: BatchedEnv,
    steps: int,
    *,
    seed: int | None = None,
    efe_parts: bool = False,
) -> RolloutResult:
    """One episode of a batch of agents in a batch of environments: ``Rollout(agent).run(...)``.

    Parameters
    ----------
    agent : DiscreteAgent
    env : BatchedEnv
        One environment per agent.
    steps : int
    seed : int, optional
        Passed to ``env.reset``.
    efe_parts : bool, default False
        Also keep every part of the expected free energy.

    Returns
    -------
    RolloutResult
        Every tensor with leading axes (steps, batch).

    See Also
    --------
    Rollout : the same with its tables built once, for repeated episodes.
    """
    return Rollout(agent).run(env, steps, seed=seed, efe_parts=efe_parts)


class _Record:
    """Per-step results, stacked at the end."""

    def __init__(self, efe_parts: bool) -> None:
        self.efe_parts = efe_parts
        self.obs: list[Tensor] = []
        self.qs: list[list[Tensor]] = []
        self.q_pi: list[Tensor] = []
        self.efe: list[EFEResult] = []
        self.action: list[Tensor] = []

    def add(
        self, obs: Tensor, qs: Sequence[Tensor], q_pi: Tensor, efe: EFEResult, action: Tensor
    ) -> None:
        self.obs.append(obs)
        self.qs.append(list(qs))
        self.q_pi.append(q_pi)
        self.efe.append(efe)
        self.action.append(action)

    def result(self) -> RolloutResult:
        parts = None
        if self.efe_parts:
            parts = EFEResult(*(torch.stack(x) for x in zip(*self.efe, strict=True)))
        return RolloutResult(
            obs=torch.stack(self.obs),
            qs=[torch.stack(x) for x in zip(*self.qs, strict=True)],
            q_pi=torch.stack(self.q_pi),
            efe=parts.efe if parts is not None else torch.stack([e.efe for e in self.efe]),
            action=torch.stack(self.action),
            efe_parts=parts,
        )


def _checked_obs(obs: Tensor, agent: DiscreteAgent, who: str) -> Tensor:
    """Observations as int64 (batch, M) on the agent's device, with their outcome range checked."""
    M = len(agent.num_obs)
    if not isinstance(obs, Tensor) or obs.dim() != 2 or tuple(obs.shape) != (agent.batch_size, M):
        shape = tuple(obs.shape) if isinstance(obs, Tensor) else type(obs).__name__
        raise ValueError(
            f"rollout: {who} returned observations of shape {shape}; expected an integer "
            f"tensor of shape ({agent.batch_size}, {M})"
        )
    if obs.is_floating_point() or obs.dtype == torch.bool:
        raise ValueError(
            f"rollout: {who} returned {obs.dtype} observations; expected integer outcome indices"
        )
    obs = obs.to(agent.device, torch.long)
    high = torch.tensor(agent.num_obs, device=obs.device)
    if bool(((obs < 0) | (obs >= high)).any()):
        raise ValueError(
            f"rollout: {who} returned outcomes {obs.tolist()}; expected indices below "
            f"{agent.num_obs} per modality"
        )
    return obs


def _shared(xs: Sequence[Tensor]) -> bool:
    """Whether every batch element (leading axis) of every tensor equals the first."""
    return all(bool((x == x[:1]).all()) for x in xs)


class CategoricalEnv:
    """The generative process of a categorical POMDP, for a batch of environments.

    Hidden states start from ``D``, move by ``B[f][:, s_f, u_f]`` under the agents' controls and
    emit outcomes by ``A[m][:, s]``, every draw from one seeded generator (inverse transform
    sampling of uniform draws made on the CPU, so a seed gives the same episode on every
    device). Cumulative tables of every row of ``A``, ``B`` and ``D`` are built once; a step is
    a gather and a comparison per factor and per modality for the whole batch.

    Parameters
    ----------
    A : sequence of Tensor, ``A[m]`` shape (n_o[m], n_s[0], ..., n_s[F-1]) or (batch, ...)
    B : sequence of Tensor, ``B[f]`` shape (n_s[f], n_s[f], n_u[f]) or (batch, ...)
    D : sequence of Tensor, ``D[f]`` shape (n_s[f],) or (batch, n_s[f])
        Each of ``A``, ``B`` and ``D`` is shared by the batch or has one entry per environment
        (a leading batch axis).
    batch_size : int, optional
        Number of environments; default the leading axis of a batched ``A``, ``B`` or ``D``,
        else 1.
    seed : int, optional
        Seeds the generator (a later ``reset(seed=...)`` reseeds it).

    Attributes
    ----------
    batch_size : int
    num_states, num_obs, num_controls : tuple of int
    device : torch.device
        Where observations are returned (that of ``A``).
    state : Tensor of int64, shape (batch, F) or None
        The hidden states (simulator internals, for analysis; no agent reads them).
    """

    def __init__(
        self,
        A: Sequence[Tensor],
        B: Sequence[Tensor],
        D: Sequence[Tensor],
        *,
        batch_size: int | None = None,
        seed: int | None = None,
    ) -> None:
        F = len(B)
        if F == 0 or len(D) != F or len(A) == 0:
            raise ValueError(
                f"CategoricalEnv: {len(A)} likelihoods, {F} transitions and {len(D)} priors; "
                "expected at least one modality and one D[f] per B[f]"
            )
        a_batched = A[0].dim() == F + 2
        b_batched = B[0].dim() == 4
        d_batched = D[0].dim() == 2
        sizes = {
            int(x[0].shape[0])
            for x, flag in ((A, a_batched), (B, b_batched), (D, d_batched))
            if flag
        }
        if len(sizes) > 1 or (batch_size is not None and sizes and sizes != {batch_size}):
            raise ValueError(
                f"CategoricalEnv: batched A, B, D have leading axes {sorted(sizes)} and "
                f"batch_size={batch_size}; expected one batch size"
            )
        self.batch_size: int = int(batch_size if batch_size is not None else next(iter(sizes), 1))
        self.device: torch.device = A[0].device
        la, lb, ld = int(a_batched), int(b_batched), int(d_batched)
        self.num_states: tuple[int, ...] = tuple(int(b.shape[lb]) for b in B)
        self.num_obs: tuple[int, ...] = tuple(int(a.shape[la]) for a in A)
        self.num_controls: tuple[int, ...] = tuple(int(b.shape[-1]) for b in B)
        ns = self.num_states
        for m, a in enumerate(A):
            if a.dim() != F + 1 + la or tuple(a.shape[la + 1 :]) != ns:
                raise ValueError(
                    f"CategoricalEnv: A[{m}] has shape {tuple(a.shape)}; expected "
                    f"({'batch, ' if a_batched else ''}n_o, {', '.join(map(str, ns))})"
                )
        for f, (b, d) in enumerate(zip(B, D, strict=True)):
            n = ns[f]
            if b.dim() != 3 + lb or tuple(b.shape[lb : lb + 2]) != (n, n):
                raise ValueError(f"CategoricalEnv: B[{f}] has shape {tuple(b.shape)}")
            if d.dim() != 1 + ld or int(d.shape[-1]) != n:
                raise ValueError(
                    f"CategoricalEnv: D[{f}] has shape {tuple(d.shape)}; expected "
                    f"({'batch, ' if d_batched else ''}{n},)"
                )
        dev = self.device
        S = math.prod(ns)
        n_max, o_max, u_max = max(ns), max(self.num_obs), max(self.num_controls)
        # Cumulative tables, padded with 2 (never below a uniform draw): outcome rows per joint
        # state (S, M, o_max), next-state rows per (factor, state, control) and prior rows.
        cum_A = [
            _cumulative(a.to(dev, torch.float64).reshape(*a.shape[: la + 1], S).movedim(la, -1))
            for a in A
        ]
        self._cum_A = torch.stack([_pad(c, o_max) for c in cum_A], dim=-2)
        cum_B = []
        for b in B:
            rows = _cumulative(b.to(dev, torch.float64).movedim(lb, -1))  # (..., s, u, s')
            rows = _pad(rows, n_max)
            pad = [0, 0, 0, u_max - rows.shape[-2], 0, n_max - rows.shape[-3]]
            cum_B.append(torch.nn.functional.pad(rows, pad, value=2.0))
        self._cum_B = torch.stack(cum_B, dim=-4)  # (..., F, n_max, u_max, n_max)
        self._cum_D = torch.stack(
            [_pad(_cumulative(d.to(dev, torch.float64)), n_max) for d in D], dim=-2
        )
        self._a_batched, self._b_batched, self._d_batched = a_batched, b_batched, d_batched
        self._last_state = torch.tensor([n - 1 for n in ns], device=dev)
        self._last_obs = torch.tensor([n - 1 for n in self.num_obs], device=dev)
        radix = [1] * F
        for f in range(F - 2, -1, -1):
            radix[f] = radix[f + 1] * ns[f + 1]
        self._radix = torch.tensor(radix, device=dev)
        self._rows = torch.arange(self.batch_size, device=dev)
        self._factors = torch.arange(F, device=dev)
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(int(seed))
        else:
            self.generator.seed()
        self.state: Tensor | None = None

    def _uniform(self, k: int) -> Tensor:
        u = torch.rand(self.batch_size, k, generator=self.generator, dtype=torch.float64)
        return u.to(self.device)

    def _observe(self) -> Tensor:
        assert self.state is not None
        joint = self.state.mv(self._radix)
        rows = self._cum_A[self._rows, joint] if self._a_batched else self._cum_A[joint]
        u = self._uniform(len(self.num_obs))
        return torch.minimum((rows < u.unsqueeze(-1)).sum(-1), self._last_obs)

    def reset(self, seed: int | None = None) -> Tensor:
        """Draw every environment's first state from ``D`` and its first observation.

        Parameters
        ----------
        seed : int, optional
            Reseeds the generator first.

        Returns
        -------
        Tensor of int64, shape (batch, M)
        """
        if seed is not None:
            self.generator.manual_seed(int(seed))
        rows = self._cum_D if self._d_batched else self._cum_D.expand(self.batch_size, -1, -1)
        u = self._uniform(len(self.num_states))
        self.state = torch.minimum((rows < u.unsqueeze(-1)).sum(-1), self._last_state)
        return self._observe()

    def step(self, action: Tensor) -> Tensor:
        """Move every environment's hidden state under its action and observe it.

        Parameters
        ----------
        action : Tensor of int, shape (batch, F)

        Returns
        -------
        Tensor of int64, shape (batch, M)
        """
        if self.state is None:
            raise ValueError("CategoricalEnv.step: call reset first")
        F = len(self.num_states)
        act = action.to(self.device, torch.long)
        if tuple(act.shape) != (self.batch_size, F):
            raise ValueError(
                f"CategoricalEnv.step: action has shape {tuple(act.shape)}; expected "
                f"({self.batch_size}, {F})"
            )
        if self._b_batched:
            rows = self._cum_B[self._rows.unsqueeze(1), self._factors, self.state, act]
        else:
            rows = self._cum_B[self._factors, self.state, act]
        u = self._uniform(F)
        self.state = torch.minimum((rows < u.unsqueeze(-1)).sum(-1), self._last_state)
        return self._observe()


def _cumulative(p: Tensor) -> Tensor:
    """Cumulative sums along the last axis, exactly 1 from the last positive entry on.

    A uniform draw ``u`` in [0, 1) then falls below the row's total, so counting the entries
    below ``u`` never picks an outcome of probability zero, whatever the rounding.
    """
    cum = p.cumsum(-1)
    cum = cum / cum[..., -1:].clamp_min(torch.finfo(p.dtype).tiny)
    idx = torch.arange(p.shape[-1], device=p.device)
    last = torch.where(p > 0, idx, torch.zeros_like(idx)).amax(-1, keepdim=True)
    return torch.where(idx >= last, torch.ones_like(cum), cum)


def _pad(rows: Tensor, n: int) -> Tensor:
    """Pad the last axis to ``n`` with 2 (above every uniform draw)."""
    return torch.nn.functional.pad(rows, (0, n - rows.shape[-1]), value=2.0)
