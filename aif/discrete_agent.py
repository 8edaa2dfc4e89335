"""A discrete active-inference agent: a thin, stateful shell over the engine's pure functions.

Each step infers states (exact, fixed-point, marginal message passing or smoothing over a
window), evaluates every policy by expected free energy (or searches a tree of actions and
outcomes, sophisticated inference; optionally with an inductive cost), learns Dirichlet
parameters, and chooses an action; the empirical prior of the next step is the posterior pushed
through ``B``.
Every tensor carries a leading batch axis, so one agent object runs a population of agents.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple, Protocol

import torch
from torch import Tensor

from aif.exact import (
    _contract_except,
    _index_or_vector,
    joint_from_marginals,
    log_likelihood_batch,
    marginals_from_joint,
    observation_batch,
    predict_states_batch,
)
from aif.learning import dirichlet_mean, update_pA, update_pB, update_pD
from aif.maths import softmax, stable_log
from aif.planning import (
    EFEResult,
    PolicyEvaluator,
    efe_categorical,
    policy_posterior,
    select_action,
)
from aif.sequence import infer_states_mmp, joint_transition, smooth_states
from aif.sophisticated import (
    SearchSettings,
    SophisticatedResult,
    efe_inductive,
    inductive_matrices,
    sophisticated_search,
)

__all__ = [
    "AgentStep",
    "CategoricalModel",
    "DiscreteAgent",
    "PolicyInference",
]

InferenceMethod = Literal["fpi", "exact", "mmp", "smooth"]
PolicySearch = Literal["policies", "sophisticated"]


class CategoricalModel(Protocol):
    """What the agent reads from a model (``generative_models.categorical.CategoricalPOMDP``).

    Attributes are in the layout of ``docs/notation.md``; ``pA``, ``pB`` and ``pD`` may be
    ``None``.
    """

    A: list[Tensor]
    B: list[Tensor]
    C: list[Tensor] | None
    D: list[Tensor] | None
    E: Tensor | None
    policies: Tensor | None
    pA: list[Tensor] | None
    pB: list[Tensor] | None
    dtype: torch.dtype


class PolicyInference(NamedTuple):
    """Policy posterior and the expected free energy behind it.

    With ``policy_search="sophisticated"`` the "policies" are the agent's one-step actions
    (:attr:`DiscreteAgent.actions`) and every field has ``n_actions`` columns.

    Attributes
    ----------
    q_pi : Tensor, shape (batch, n_policies)
        ``softmax(-gamma * (efe + inductive_cost) + log E)`` (the tree's root posterior times
        the habits with sophisticated search).
    efe : EFEResult
        Every part of the expected free energy, each of shape (batch, n_policies) (recursive
        over the tree with sophisticated search). Inductive cost not included.
    inductive_cost : Tensor, shape (batch, n_policies), optional
        With ``use_inductive=True``.
    search : tuple of SophisticatedResult, optional
        With sophisticated search: one per batch element (nodes expanded, pruned mass, ...).
    """

    q_pi: Tensor
    efe: EFEResult
    inductive_cost: Tensor | None = None
    search: tuple[SophisticatedResult, ...] | None = None


class AgentStep(NamedTuple):
    """What the agent did at one time step (all tensors with a leading batch axis).

    Attributes
    ----------
    t : int
        Time step within the episode.
    obs : list of Tensor
        Per modality, ``(batch,)`` outcome indices or ``(batch, n_o[m])`` probabilities.
    prior : list of Tensor
        Empirical prior marginals before the observation, ``(batch, n_s[f])``.
    qs : list of Tensor
        Posterior marginals, ``(batch, n_s[f])``.
    q_pi : Tensor, shape (batch, n_policies) or None
    efe : EFEResult or None
    action : Tensor of int64, shape (batch, F) or None
    """

    t: int
    obs: list[Tensor]
    prior: list[Tensor]
    qs: list[Tensor]
    q_pi: Tensor | None
    efe: EFEResult | None
    action: Tensor | None


def _stack(models: Sequence[CategoricalModel], attr: str) -> list[Tensor] | None:
    values = [getattr(m, attr, None) for m in models]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise ValueError(f"DiscreteAgent: some models have {attr} and some do not")
    return [torch.stack(list(parts)) for parts in zip(*values, strict=True)]


class DiscreteAgent:
    """Active inference on a categorical POMDP: perceive, plan, learn and act, step by step.

    A thin shell over pure functions (:mod:`aif.exact`, :mod:`aif.sequence`,
    :mod:`aif.planning`, :mod:`aif.learning`), in the manner of pymdp's ``Agent``. One step
    (:meth:`step`) runs, for every batch element at once:

    1. **infer states**: the empirical prior (``D`` at the first step, otherwise the previous
       posterior pushed through ``B`` with the action taken) is combined with the observation
       by the chosen ``inference``;
    2. **infer policies**: :func:`aif.planning.efe_categorical` (or the precompiled
       :class:`aif.planning.PolicyEvaluator` when nothing is learnt) gives every part of the
       expected free energy and ``q(pi) = softmax(-gamma * efe + log E)``;
    3. **learn** (when ``learn_A``/``learn_B``): Dirichlet counts of the step are added to
       ``pA``/``pB`` (:mod:`aif.learning`) and ``A``/``B`` become their means, used from the next
       step on;
    4. **act**: the next action is the argmax or a seeded draw from ``q(pi)`` (whole policies,
       ``sampling="full"``) or from the control marginals (``"marginal"``).

    :meth:`end_episode` learns ``pD`` from the belief about the first state and resets the
    episode; learnt parameters persist.

    ``policy_search="sophisticated"`` replaces step 2 by a tree search over actions and outcomes
    (:func:`aif.sophisticated.sophisticated_search`, Friston et al. 2021): ``q(pi)`` is then a
    posterior over the next action. ``use_inductive=True`` adds the inductive cost of leaving
    the states from which the intended states ``H`` remain reachable
    (:func:`aif.sophisticated.efe_inductive`, Friston et al. 2023), in either search.

    Parameters
    ----------
    model : CategoricalModel or sequence of CategoricalModel
        One model (shared by the whole batch) or one per batch element (same shapes and
        policies), e.g. :class:`generative_models.categorical.CategoricalPOMDP`.
    batch_size : int, optional
        Number of agents; default 1 for one model, the number of models otherwise.
    inference : {"fpi", "exact", "mmp", "smooth"}, default "fpi"
        ``"fpi"``: mean-field fixed-point iteration (pymdp's default). ``"exact"``: exact
        filtering of the joint state (the empirical prior is the joint, not a product of
        marginals). ``"mmp"``: marginal message passing over the last ``inference_horizon``
        steps (pymdp's ``"mmp"``). ``"smooth"``: exact filtering for acting, and learning from
        the exact smoother over a window of ``inference_horizon`` steps, each step counted once,
        when it leaves the window.
    num_iter : int, default 16
        Sweeps of ``"fpi"`` and ``"mmp"``.
    inference_horizon : int, optional
        Window length of ``"mmp"`` and ``"smooth"`` (default: the whole episode for
        ``"smooth"``, 8 steps for ``"mmp"``).
    gamma : float, default 16.0
        Policy precision (pymdp 1.x agents default to 1, SPM and pymdp.legacy to 16).
    alpha : float, default 16.0
        Action precision of stochastic selection.
    action_selection : {"deterministic", "stochastic"}, default "deterministic"
    sampling : {"full", "marginal"}, default "full"
        Choose a whole policy (pymdp 1.x default) or each factor's control from its marginal.
    use_utility, use_states_info_gain, use_param_info_gain : bool
        Terms of the expected free energy (pymdp's switches); novelty needs ``pA`` or ``pB``.
    info_gain : {"joint", "per_modality"}, default "joint"
        State information gain over the joint outcome (exact) or summed per modality (pymdp).
    novelty_form : {"exact", "spm"}, default "exact"
    learn_A, learn_B, learn_D : bool, default False
        Which Dirichlet parameters to learn; they need ``pA``, ``pB``, ``pD`` on the model
        (``pD`` defaults to ``D`` when missing).
    lr_pA, lr_pB, lr_pD : float, default 1.0
        Learning rates (pseudo-counts per observation).
    policy_search : {"policies", "sophisticated"}, default "policies"
        Score the model's policies (pymdp's ``infer_policies``), or search the tree of actions
        and outcomes (pymdp's ``si_policy_search``) over the distinct first steps of the
        policies.
    search : SearchSettings, optional
        Horizon, thresholds and node budget of the sophisticated search; default
        ``SearchSettings(horizon=policy_len)``.
    use_inductive : bool, default False
        Add the inductive cost (pymdp's ``use_inductive``); needs ``H`` or ``reachability``.
    H : sequence of Tensor, optional
        Intended states per factor, ``H[f]`` of shape (n_s[f],) or (batch, n_s[f]): 1 for a
        goal state, all zeros for a factor without intentions (pymdp's ``H``).
    reachability : sequence of Tensor, optional
        The inductive matrices themselves, ``(depth, n_s[f])`` or ``(batch, depth, n_s[f])``
        (pymdp's ``I``); default built from ``H`` and ``B`` (and rebuilt when ``B`` is learnt).
    inductive_depth : int, default 1
        Rows of the inductive matrices (steps of backward induction).
    inductive_threshold : float, default 0.1
        Transitions at most this probable are not paths.
    inductive_epsilon : float, default 1e-3
        Each forbidden state costs ``-log(inductive_epsilon)`` nats.
    seed : int, optional
        Seeds the agent's own generator for stochastic action selection.
    device : torch.device or str, optional
        Where every tensor lives (default: the model's device).
    dtype : torch.dtype, optional
        Precision of every tensor (default: the model's).

    Attributes
    ----------
    A, B, C, D : list of Tensor
        The model, with a leading batch axis when learnt or given per element.
    pA, pB, pD : list of Tensor or None
        Dirichlet concentrations (batched).
    qs : list of Tensor or None
        Latest posterior marginals, ``(batch, n_s[f])``.
    history : list of AgentStep
        The steps of the current episode: what each step observed, believed, evaluated and did
        (filled in by :meth:`infer_states`, :meth:`infer_policies` and :meth:`act`).

    Examples
    --------
    >>> import torch
    >>> from generative_models.categorical import CategoricalPOMDP
    >>> pomdp = CategoricalPOMDP.random([3], [3], [2], policy_len=1, seed=0)
    >>> agent = DiscreteAgent(pomdp)
    >>> agent.step([1]).shape
    torch.Size([1, 1])
    """

    def __init__(
        self,
        model: CategoricalModel | Sequence[CategoricalModel],
        *,
        batch_size: int | None = None,
        inference: InferenceMethod = "fpi",
        num_iter: int = 16,
        inference_horizon: int | None = None,
        gamma: float = 16.0,
        alpha: float = 16.0,
        action_selection: Literal["deterministic", "stochastic"] = "deterministic",
        sampling: Literal["full", "marginal"] = "full",
        use_utility: bool = True,
        use_states_info_gain: bool = True,
        use_param_info_gain: bool = False,
        info_gain: Literal["joint", "per_modality"] = "joint",
        novelty_form: Literal["exact", "spm"] = "exact",
        learn_A: bool = False,
        learn_B: bool = False,
        learn_D: bool = False,
        lr_pA: float = 1.0,
        lr_pB: float = 1.0,
        lr_pD: float = 1.0,
        policy_search: PolicySearch = "policies",
        search: SearchSettings | None = None,
        use_inductive: bool = False,
        H: Sequence[Tensor] | None = None,
        reachability: Sequence[Tensor] | None = None,
        inductive_depth: int = 1,
        inductive_threshold: float = 0.1,
        inductive_epsilon: float = 1e-3,
        seed: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if inference not in ("fpi", "exact", "mmp", "smooth"):
            raise ValueError(
                f"DiscreteAgent: inference={inference!r}; expected 'fpi', 'exact', 'mmp' or "
                "'smooth'"
            )
        if action_selection not in ("deterministic", "stochastic"):
            raise ValueError(
                f"DiscreteAgent: action_selection={action_selection!r}; expected "
                "'deterministic' or 'stochastic'"
            )
        if sampling not in ("full", "marginal"):
            raise ValueError(f"DiscreteAgent: sampling={sampling!r}; expected 'full' or 'marginal'")
        if num_iter < 1:
            raise ValueError(f"DiscreteAgent: num_iter={num_iter}; expected >= 1")
        if policy_search not in ("policies", "sophisticated"):
            raise ValueError(
                f"DiscreteAgent: policy_search={policy_search!r}; expected 'policies' or "
                "'sophisticated'"
            )
        if policy_search == "sophisticated" and use_param_info_gain:
            raise ValueError(
                "DiscreteAgent: use_param_info_gain=True with policy_search='sophisticated'; "
                "the tree search has no novelty term, expected use_param_info_gain=False"
            )
        if use_inductive and H is None and reachability is None:
            raise ValueError(
                "DiscreteAgent: use_inductive=True needs H or reachability; got neither"
            )
        if inductive_depth < 1:
            raise ValueError(f"DiscreteAgent: inductive_depth={inductive_depth}; expected >= 1")
        if not 0.0 < inductive_epsilon <= 1.0:
            raise ValueError(
                f"DiscreteAgent: inductive_epsilon={inductive_epsilon}; expected a value in (0, 1]"
            )
        if inference_horizon is not None and inference_horizon < 1:
            raise ValueError(f"DiscreteAgent: inference_horizon={inference_horizon}; expected >= 1")
        models = list(model) if isinstance(model, Sequence) else [model]
        if not models:
            raise ValueError("DiscreteAgent: got no model; expected one or one per batch element")
        first = models[0]
        self.dtype: torch.dtype = dtype if dtype is not None else first.dtype
        dev = device if device is not None else getattr(first, "device", None)
        self.device: torch.device = torch.device(dev if dev is not None else first.A[0].device)
        if batch_size is None:
            batch_size = len(models)
        if len(models) not in (1, batch_size):
            raise ValueError(
                f"DiscreteAgent: {len(models)} models for batch_size={batch_size}; expected one "
                "model or one per batch element"
            )
        self.batch_size: int = int(batch_size)
        if first.policies is None:
            raise ValueError("DiscreteAgent: the model has no policies; expected (P, L, F)")
        for k, m in enumerate(models[1:], start=1):
            if m.policies is None or not torch.equal(m.policies.cpu(), first.policies.cpu()):
                raise ValueError(
                    f"DiscreteAgent: model {k} has other policies than model 0; expected one "
                    "policy set for the whole batch"
                )
        self.policies: Tensor = first.policies.to(self.device, torch.long)
        self.inference: InferenceMethod = inference
        self.num_iter = int(num_iter)
        self.inference_horizon = inference_horizon
        self.gamma = float(gamma)
        self.alpha = float(alpha)
        self.action_selection = action_selection
        self.sampling = sampling
        self.use_utility = use_utility
        self.use_states_info_gain = use_states_info_gain
        self.use_param_info_gain = use_param_info_gain
        self.info_gain = info_gain
        self.novelty_form = novelty_form
        self.learn_A, self.learn_B, self.learn_D = learn_A, learn_B, learn_D
        self.lr_pA, self.lr_pB, self.lr_pD = float(lr_pA), float(lr_pB), float(lr_pD)
        self.generator = torch.Generator()
        if seed is not None:
            self.generator.manual_seed(int(seed))

        def batched(xs: list[Tensor] | None) -> list[Tensor] | None:
            if xs is None:
                return None
            return [
                x.to(self.device, self.dtype).expand(self.batch_size, *x.shape[1:]).clone()
                if len(models) > 1
                else x.to(self.device, self.dtype)
                .unsqueeze(0)
                .expand(self.batch_size, *x.shape)
                .clone()
                for x in xs
            ]

        if len(models) > 1:
            stacked = {k: _stack(models, k) for k in ("A", "B", "C", "D", "pA", "pB", "pD")}
            E_all = [m.E for m in models if m.E is not None]
            E_stack = torch.stack(E_all) if len(E_all) == len(models) else None
        else:
            stacked = {k: getattr(first, k, None) for k in ("A", "B", "C", "D", "pA", "pB", "pD")}
            E_stack = None if first.E is None else first.E.unsqueeze(0)
        A, B, C, D = (batched(stacked[k]) for k in ("A", "B", "C", "D"))
        if A is None or B is None:
            raise ValueError("DiscreteAgent: the model needs A and B")
        self.A: list[Tensor] = A
        self.B: list[Tensor] = B
        self.num_states: list[int] = [int(b.shape[1]) for b in B]
        self.num_obs: list[int] = [int(a.shape[1]) for a in A]
        self.num_controls: list[int] = [int(b.shape[-1]) for b in B]
        F = len(B)
        self.C: list[Tensor] = (
            C
            if C is not None
            else [
                torch.zeros(self.batch_size, n, dtype=self.dtype, device=self.device)
                for n in self.num_obs
            ]
        )
        self.D: list[Tensor] = (
            D
            if D is not None
            else [
                torch.full((self.batch_size, n), 1.0 / n, dtype=self.dtype, device=self.device)
                for n in self.num_states
            ]
        )
        n_pol = int(self.policies.shape[0])
        if E_stack is None:
            E = torch.full(
                (self.batch_size, n_pol), 1.0 / n_pol, dtype=self.dtype, device=self.device
            )
        else:
            E = E_stack.to(self.device, self.dtype).expand(self.batch_size, n_pol).clone()
        self.E: Tensor = E
        self.log_E: Tensor = stable_log(E)
        self.pA: list[Tensor] | None = batched(stacked["pA"])
        self.pB: list[Tensor] | None = batched(stacked["pB"])
        pD = batched(stacked["pD"])
        if learn_A and self.pA is None:
            raise ValueError("DiscreteAgent: learn_A=True needs pA on the model; it has none")
        if learn_B and self.pB is None:
            raise ValueError("DiscreteAgent: learn_B=True needs pB on the model; it has none")
        if learn_D and pD is None:
            pD = [d.clone() for d in self.D]
        self.pD: list[Tensor] | None = pD
        if use_param_info_gain and self.pA is None and self.pB is None:
            raise ValueError(
                "DiscreteAgent: use_param_info_gain=True needs pA or pB on the model; it has neither"
            )
        if len(self.num_states) != F or any(a.dim() != F + 2 for a in self.A):
            raise ValueError(
                f"DiscreteAgent: A has shapes {[tuple(a.shape[1:]) for a in self.A]}; expected "
                f"(n_o, {', '.join(map(str, self.num_states))}) per modality"
            )
        self._evaluator: PolicyEvaluator | None = None

        # Sophisticated search: the distinct first steps of the policies, and the habits
        # summed over the policies that share a first step.
        self.policy_search: PolicySearch = policy_search
        self.search: SearchSettings = (
            search if search is not None else SearchSettings(horizon=int(self.policies.shape[1]))
        )
        actions, first = torch.unique(self.policies[:, 0, :], dim=0, return_inverse=True)
        self.actions: Tensor = actions
        E_action = torch.zeros(
            self.batch_size, int(actions.shape[0]), dtype=self.dtype, device=self.device
        )
        self._E_action = E_action.index_add_(1, first, self.E)

        # Inductive inference: goal states and their backward reachability.
        self.use_inductive = use_inductive
        self.inductive_depth = int(inductive_depth)
        self.inductive_threshold = float(inductive_threshold)
        self.inductive_epsilon = float(inductive_epsilon)
        self.H: list[Tensor] | None = None
        if H is not None:
            if len(H) != F:
                raise ValueError(f"DiscreteAgent: H has {len(H)} factors; expected {F}")
            self.H = []
            for f, h in enumerate(H):
                h = torch.as_tensor(h, dtype=self.dtype, device=self.device)
                if h.shape[-1] != self.num_states[f] or h.dim() not in (1, 2):
                    raise ValueError(
                        f"DiscreteAgent: H[{f}] has shape {tuple(h.shape)}; expected "
                        f"({self.num_states[f]},) or ({self.batch_size}, {self.num_states[f]})"
                    )
                self.H.append(h.expand(self.batch_size, self.num_states[f]).clone())
        self.reachability: list[Tensor] | None = None
        if reachability is not None:
            self.reachability = []
            for f, r in enumerate(reachability):
                r = torch.as_tensor(r, dtype=self.dtype, device=self.device)
                if r.dim() not in (2, 3) or r.shape[-1] != self.num_states[f]:
                    raise ValueError(
                        f"DiscreteAgent: reachability[{f}] has shape {tuple(r.shape)}; expected "
                        f"(depth, {self.num_states[f]}) or ({self.batch_size}, depth, "
                        f"{self.num_states[f]})"
                    )
                self.reachability.append(r.expand(self.batch_size, *r.shape[-2:]).clone())
        elif self.H is not None:
            self._refresh_reachability()
        self.reset()

    def _refresh_reachability(self) -> None:
        """Inductive matrices from ``H`` and the current ``B`` (again after learning ``B``)."""
        if self.H is None:
            return
        self.reachability = inductive_matrices(
            self.H, self.B, self.inductive_threshold, self.inductive_depth
        )

    # ----------------------------------------------------------------------------------------
    # Episode state
    # ----------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Start a new episode: the next prior is ``D``; learnt parameters are kept."""
        self.t: int = 0
        self.qs: list[Tensor] | None = None
        self.joint: Tensor | None = None
        self.action: Tensor | None = None
        self.history: list[AgentStep] = []
        self._obs: list[list[Tensor]] = []  # observations of the current window
        self._actions: list[Tensor] = []  # actions between the window's steps
        self._window_prior: list[Tensor] | Tensor | None = None  # prior of the window's start
        self._prev_qs: list[Tensor] | None = None
        self._prev_joint_prior: Tensor | None = None
        self._joint_prior: Tensor | None = None
        self._first_qs: list[Tensor] | None = None
        self._q_pi: Tensor | None = None
        self._efe: EFEResult | None = None
        self._prior: list[Tensor] | None = None
        self._cols: list[Tensor] = []
        self._prev_cols: list[Tensor] | None = None
        self._mmp_window: list[list[Tensor]] = []
        self._window_offset = 0

    @property
    def _learning(self) -> bool:
        return self.learn_A or self.learn_B

    def _observation(self, obs: Any) -> list[Tensor]:
        """Observations as (batch,) indices or (batch, n_o) probabilities per modality."""
        if isinstance(obs, Tensor) or self.batch_size > 1:
            if isinstance(obs, Tensor) and obs.dim() == 1 and self.batch_size == 1:
                obs = obs.unsqueeze(0)
            cols = observation_batch(obs, self.num_obs, self.dtype, self.device)
            if any(int(c.shape[0]) != self.batch_size for c in cols):
                raise ValueError(
                    f"DiscreteAgent: obs has {int(cols[0].shape[0])} rows; expected one per "
                    f"batch element ({self.batch_size})"
                )
            return cols
        if len(obs) != len(self.num_obs):
            raise ValueError(
                f"DiscreteAgent: obs has {len(obs)} entries; expected one per modality "
                f"({len(self.num_obs)})"
            )
        cols = []
        for m, (o, n) in enumerate(zip(obs, self.num_obs, strict=True)):
            value = _index_or_vector(o, m, n)
            if isinstance(value, int):
                cols.append(torch.tensor([value], dtype=torch.long, device=self.device))
            else:
                cols.append(value.to(self.device, self.dtype).unsqueeze(0))
        return cols

    def _empirical_prior(self) -> list[Tensor]:
        """``D`` at the first step, otherwise ``B[:, :, a] q`` of the previous step."""
        if self.t == 0 or self.qs is None or self.action is None:
            return [d.clone() for d in self.D]
        return predict_states_batch(self.qs, self.B, self.action)

    # ----------------------------------------------------------------------------------------
    # Perception
    # ----------------------------------------------------------------------------------------

    def infer_states(self, obs: Any) -> list[Tensor]:
        """Update beliefs with one observation per batch element.

        Parameters
        ----------
        obs : sequence of int or Tensor, or Tensor of int, shape (batch, M)
            One outcome per modality; for a batch, an integer tensor of shape (batch, M) or
            per modality a ``(batch,)`` index tensor or ``(batch, n_o[m])`` probabilities. With
            ``batch_size=1`` a plain list such as ``[2, 0]`` is accepted.

        Returns
        -------
        list of Tensor
            Posterior marginals ``qs[f]`` of shape (batch, n_s[f]).
        """
        cols = self._observation(obs)
        F = len(self.B)
        method = self.inference
        if method == "fpi":
            prior = self._empirical_prior()
            ll = log_likelihood_batch(self.A, cols, F)
            log_prior = [stable_log(p) for p in prior]
            if F == 1:
                qs = [softmax(ll + log_prior[0], dim=-1)]
            else:
                qs = [
                    torch.full((self.batch_size, n), 1.0 / n, dtype=self.dtype, device=self.device)
                    for n in self.num_states
                ]
                for _ in range(self.num_iter):
                    qs = [
                        softmax(_contract_except(ll, qs, f) + log_prior[f], dim=-1)
                        for f in range(F)
                    ]
            joint = None
        elif method in ("exact", "smooth"):
            if self.t == 0 or self.joint is None or self.action is None:
                joint_prior = joint_from_marginals(self.D)
            else:
                M = joint_transition(self.B, self.action)
                flat = self.joint.reshape(self.batch_size, -1, 1)
                joint_prior = torch.bmm(M.to(self.dtype), flat).reshape(self.joint.shape)
            prior = marginals_from_joint(joint_prior)
            ll = log_likelihood_batch(self.A, cols, F)
            log_joint = (ll + stable_log(joint_prior)).reshape(self.batch_size, -1)
            joint = torch.softmax(log_joint, -1).reshape(joint_prior.shape)
            qs = marginals_from_joint(joint)
            self._prev_joint_prior = self._joint_prior
            self._joint_prior = joint_prior
        else:  # mmp
            prior, qs = self._infer_mmp(cols)
            joint = None
        if method == "smooth":
            # The smoothing window: observations, actions and the prior of its first step.
            self._obs.append(cols)
            if self.t > 0 and self.action is not None:
                self._actions.append(self.action.clone())
            if self._window_prior is None:
                self._window_prior = self._joint_prior
        self._prev_qs = self.qs
        self._prev_cols = self._cols if self._cols else None
        self.qs = qs
        self.joint = joint
        self._prior = prior
        if self.t == 0:
            self._first_qs = [q.clone() for q in qs]
        self._cols = cols
        step = AgentStep(self.t, cols, prior, qs, None, None, None)
        if self.history and self.history[-1].t == self.t:
            self.history[-1] = step  # the same step inferred again
        else:
            self.history.append(step)
        return qs

    def _infer_mmp(self, cols: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Marginal message passing over the window ending at this step."""
        W = self.inference_horizon if self.inference_horizon is not None else 8
        prior = self._empirical_prior()
        if self.t > 0 and self.action is not None:
            self._actions.append(self.action.clone())
        self._obs.append(cols)
        if self._window_prior is None:
            self._window_prior = [d.clone() for d in self.D]
        if len(self._obs) > W:
            # The window slides: its new first step's prior is the old first step's posterior
            # pushed through B (as pymdp's rollout does once its window is full).
            self._window_prior = predict_states_batch(self._mmp_window[0], self.B, self._actions[0])
            self._obs.pop(0)
            self._actions.pop(0)
        window_prior = self._window_prior
        assert isinstance(window_prior, list)
        actions = torch.stack(self._actions) if self._actions else None
        self._mmp_window = infer_states_mmp(
            self.A, self.B, window_prior, self._obs, actions, num_iter=self.num_iter
        )
        return (window_prior if len(self._obs) == 1 else prior), self._mmp_window[-1]

    # ----------------------------------------------------------------------------------------
    # Planning and acting
    # ----------------------------------------------------------------------------------------

    def infer_policies(self) -> PolicyInference:
        """Expected free energy of every policy from the current beliefs, and ``q(pi)``.

        Returns
        -------
        PolicyInference
            ``q_pi`` and every part of the EFE, each of shape (batch, n_policies).
        """
        if self.qs is None:
            raise ValueError("DiscreteAgent.infer_policies: call infer_states first")
        if self.policy_search == "sophisticated":
            result = self._infer_sophisticated()
            self._q_pi, self._efe = result.q_pi, result.efe
            if self.history and self.history[-1].t == self.t:
                self.history[-1] = self.history[-1]._replace(q_pi=result.q_pi, efe=result.efe)
            return result
        inductive: Tensor | None = None
        precompiled = not self._learning and not self.use_param_info_gain and not self.use_inductive
        if self.use_inductive:
            assert self.reachability is not None
            scored = efe_inductive(
                self.qs,
                self.A,
                self.B,
                self.C,
                self.policies,
                self.reachability,
                epsilon=self.inductive_epsilon,
                pA=self.pA,
                pB=self.pB,
                use_utility=self.use_utility,
                use_states_info_gain=self.use_states_info_gain,
                use_param_info_gain=self.use_param_info_gain,
                info_gain=self.info_gain,
                novelty_form=self.novelty_form,
            )
            efe, inductive = scored.efe, scored.inductive_cost
            q_pi = policy_posterior(scored.total, self.gamma, self.log_E)
        elif precompiled:
            if self._evaluator is None:
                self._evaluator = PolicyEvaluator(
                    self.A,
                    self.B,
                    self.C,
                    self.policies,
                    self.gamma,
                    self.log_E,
                    use_utility=self.use_utility,
                    use_states_info_gain=self.use_states_info_gain,
                    info_gain=self.info_gain,
                    batched=True,
                )
            evaluation = self._evaluator.evaluate(self.qs)
            efe, q_pi = evaluation.efe, evaluation.q_pi
        else:
            efe = efe_categorical(
                self.qs,
                self.A,
                self.B,
                self.C,
                self.policies,
                self.pA,
                self.pB,
                use_utility=self.use_utility,
                use_states_info_gain=self.use_states_info_gain,
                use_param_info_gain=self.use_param_info_gain,
                info_gain=self.info_gain,
                novelty_form=self.novelty_form,
            )
            q_pi = policy_posterior(efe.efe, self.gamma, self.log_E)
        self._q_pi, self._efe = q_pi, efe
        if self.history and self.history[-1].t == self.t:
            self.history[-1] = self.history[-1]._replace(q_pi=q_pi, efe=efe)
        return PolicyInference(q_pi, efe, inductive)

    def _infer_sophisticated(self) -> PolicyInference:
        """The tree search from every batch element's belief, one tree per element."""
        assert self.qs is not None
        results = []
        for b in range(self.batch_size):
            results.append(
                sophisticated_search(
                    [q[b] for q in self.qs],
                    [a[b] for a in self.A],
                    [x[b] for x in self.B],
                    [c[b] for c in self.C],
                    self.search,
                    gamma=self.gamma,
                    actions=self.actions,
                    reachability=(
                        [r[b] for r in self.reachability]
                        if self.use_inductive and self.reachability is not None
                        else None
                    ),
                    inductive_epsilon=self.inductive_epsilon,
                    use_utility=self.use_utility,
                    use_states_info_gain=self.use_states_info_gain,
                    info_gain=self.info_gain,
                    # The tree's belief updates: mean field for the mean-field agents, exact
                    # marginals otherwise.
                    inference="fpi" if self.inference in ("fpi", "mmp") else "exact",
                    num_iter=self.num_iter,
                )
            )
        q_tree = torch.stack([r.q_action for r in results])
        q_pi = q_tree * self._E_action
        q_pi = q_pi / q_pi.sum(-1, keepdim=True)
        efe = EFEResult(*(torch.stack([r.efe[k] for r in results]) for k in range(6)))
        inductive = torch.stack([r.inductive_cost for r in results]) if self.use_inductive else None
        return PolicyInference(q_pi, efe, inductive, tuple(results))

    def sample_action(self, generator: torch.Generator | None = None) -> Tensor:
        """Choose the next action of every batch element from ``q(pi)``.

        Parameters
        ----------
        generator : torch.Generator, optional
            For ``action_selection="stochastic"``; default the agent's own (seeded) generator.

        Returns
        -------
        Tensor of int64, shape (batch, F)
        """
        if self._q_pi is None:
            raise ValueError("DiscreteAgent.sample_action: call infer_policies first")
        action = select_action(
            self._q_pi,
            self.actions.unsqueeze(1) if self.policy_search == "sophisticated" else self.policies,
            self.action_selection,
            generator if generator is not None else self.generator,
            sampling=self.sampling,
            alpha=self.alpha,
            num_controls=self.num_controls,
        )
        self.act(action)
        return action

    def act(self, action: Tensor | Sequence[int] | Sequence[Sequence[int]]) -> None:
        """Record the action taken (the sampled one, or one imposed from outside).

        Parameters
        ----------
        action : Tensor or nested sequence of int, shape (batch, F) or (F,)
        """
        act = torch.as_tensor(action, device=self.device).long()
        if act.dim() == 1:
            act = act.unsqueeze(0).expand(self.batch_size, -1)
        F = len(self.B)
        if tuple(act.shape) != (self.batch_size, F):
            raise ValueError(
                f"DiscreteAgent.act: action has shape {tuple(act.shape)}; expected "
                f"({self.batch_size}, {F})"
            )
        for f, n in enumerate(self.num_controls):
            if int(act[:, f].min()) < 0 or int(act[:, f].max()) >= n:
                raise ValueError(
                    f"DiscreteAgent.act: controls {act[:, f].tolist()} of factor {f}; expected "
                    f"0..{n - 1}"
                )
        self.action = act.clone()
        if self.history and self.history[-1].t == self.t:
            self.history[-1] = self.history[-1]._replace(action=self.action)
        self.t += 1

    # ----------------------------------------------------------------------------------------
    # Learning
    # ----------------------------------------------------------------------------------------

    def learn(self) -> None:
        """Add this step's Dirichlet counts to ``pA``/``pB`` and refresh ``A``/``B``.

        ``"fpi"`` and ``"mmp"`` use the outer product of the posterior marginals (pymdp 1.x);
        ``"exact"`` uses the joint posterior and the exact pairwise posterior of the last
        transition; ``"smooth"`` learns from the smoother when a step leaves the window
        (or at :meth:`end_episode`).
        """
        if not self._learning or self.qs is None:
            return
        if self.inference == "smooth":
            self._learn_smoothed(flush=False)
            return
        qs = self.qs
        if self.learn_A:
            assert self.pA is not None
            joint = self.joint if self.inference == "exact" else None
            self.pA = update_pA(self.pA, self._cols, qs, self.lr_pA, joint=joint)
            self.A = [dirichlet_mean(p, dim=1) for p in self.pA]
        if self.learn_B and self.t > 0 and self.action is not None and self._prev_qs is not None:
            assert self.pB is not None
            if self.inference == "mmp" and len(self._mmp_window) > 1:
                q_prev = self._mmp_window[-2]
                q_next = self._mmp_window[-1]
                pairwise = None
            elif self.inference == "exact":
                q_prev, q_next = self._prev_qs, qs
                pairwise = self._last_pairwise()
            else:
                q_prev, q_next, pairwise = self._prev_qs, qs, None
            self.pB = update_pB(self.pB, q_next, q_prev, self.action, self.lr_pB, pairwise=pairwise)
            self.B = [dirichlet_mean(p, dim=1) for p in self.pB]
            self._refresh_reachability()

    def _last_pairwise(self) -> list[Tensor] | None:
        """Exact ``q(s_t, s_{t-1} | o_{0:t})`` per factor (next state first)."""
        if self._prev_joint_prior is None or self._prev_cols is None or self.action is None:
            return None
        result = smooth_states(
            self.A,
            self.B,
            self._prev_joint_prior,
            [self._prev_cols, self._cols],
            self.action.unsqueeze(0),
        )
        return result.pairwise[0]

    def _learn_smoothed(self, flush: bool) -> None:
        """Fixed-lag learning: count each step once, from the smoother over the window."""
        W = self.inference_horizon
        n = len(self._obs)
        if n == 0:
            return
        if not flush and (W is None or n <= W):
            return
        prior = self._window_prior
        assert prior is not None
        actions = torch.stack(self._actions) if self._actions else None
        result = smooth_states(self.A, self.B, prior, self._obs, actions)
        leaving = n if flush else n - (W if W is not None else n)
        for k in range(leaving):
            if self._window_offset + k == 0:
                self._first_qs = [q.clone() for q in result.qs[k]]
            if self.learn_A:
                assert self.pA is not None
                self.pA = update_pA(
                    self.pA, self._obs[k], result.qs[k], self.lr_pA, joint=result.joint[k]
                )
            if self.learn_B and k + 1 < n:
                assert self.pB is not None
                self.pB = update_pB(
                    self.pB,
                    result.qs[k + 1],
                    result.qs[k],
                    self._actions[k],
                    self.lr_pB,
                    pairwise=result.pairwise[k],
                )
        if self.learn_A:
            assert self.pA is not None
            self.A = [dirichlet_mean(p, dim=1) for p in self.pA]
        if self.learn_B:
            assert self.pB is not None
            self.B = [dirichlet_mean(p, dim=1) for p in self.pB]
            self._refresh_reachability()
        if flush:
            self._obs, self._actions, self._window_prior = [], [], None
            return
        # The window's new first step: its prior is the smoothed-away step's filtered belief
        # pushed through B.
        last_left = leaving - 1
        filt = result.filtered[last_left].reshape(self.batch_size, -1, 1)
        M = joint_transition(self.B, self._actions[last_left])
        self._window_prior = torch.bmm(M.to(self.dtype), filt).reshape(result.filtered[0].shape)
        self._obs = self._obs[leaving:]
        self._actions = self._actions[leaving:]
        self._window_offset += leaving

    def end_episode(self) -> None:
        """Finish the episode: learn what is pending (smoothing window, ``pD``), then reset."""
        if self.inference == "smooth" and self._learning:
            self._learn_smoothed(flush=True)
        if self.learn_D and self._first_qs is not None:
            assert self.pD is not None
            self.pD = update_pD(self.pD, self._first_qs, self.lr_pD)
            self.D = [dirichlet_mean(p, dim=1) for p in self.pD]
        self.reset()

    # ----------------------------------------------------------------------------------------
    # The whole step
    # ----------------------------------------------------------------------------------------

    def step(self, obs: Any, generator: torch.Generator | None = None) -> Tensor:
        """One step of active inference: infer states, infer policies, learn, act.

        Parameters
        ----------
        obs : observation of this step (see :meth:`infer_states`)
        generator : torch.Generator, optional
            For stochastic action selection; default the agent's own.

        Returns
        -------
        Tensor of int64, shape (batch, F)
            The action to take.
        """
        self.infer_states(obs)
        self.infer_policies()
        self.learn()
        return self.sample_action(generator)
