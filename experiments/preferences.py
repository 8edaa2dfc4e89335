"""Which preferences explain a scheduler's decisions: the agent's EFE terms as features of a choice model.

An observer (a trained `aif` agent) scores every action of the discrete set at each decision of a
scheduler by the unweighted terms of its expected free energy: the task's expected rewardless
guidance E[rg], the expected rg of an imagined next task, and the parameter information gain.
A conditional logit over those terms (:func:`aif.fitting.fit_choice_weights`, by NUTS in Pyro)
then says which weights make the scheduler's recorded choices most probable. For the agent itself
acting with softmax precision gamma the true weights are gamma * (lambda, discount * lambda,
omega), which the fit must recover; for a reference rule they say what it behaves as if it
preferred. Run ``python -m experiments.preferences``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from environments.learner import EpisodeSpec, LearnerContext, WorldSpec
from environments.scheduler import SchedulerView
from experiments.runconfig import episode_seed, eval_seed
from learners import build_learner

__all__ = ["TERMS", "DecisionRecord", "explain", "record_decisions", "train_observer"]

#: The features of every action, in this order.
TERMS: tuple[str, ...] = ("expected_rg", "next_task_rg", "info_gain")


class DecisionRecord(NamedTuple):
    """Recorded decisions with the observer's features of every action.

    ``features`` (n_decisions, n_actions, 3) in the order of :data:`TERMS`; ``choices``
    (n_decisions,) the discrete action each decision took (a native grant mapped to the nearest
    action of its server); ``mask`` (n_decisions, n_actions) the feasible actions; ``mapped``
    the mean L1 distance between native grants and the actions they were mapped to.
    """

    features: np.ndarray
    choices: np.ndarray
    mask: np.ndarray
    mapped: float


def train_observer(world: WorldSpec, episodes: int, seed: int = 0, **settings: Any) -> Any:
    """An `aif` agent trained ``episodes`` episodes on ``world`` (the observer's beliefs)."""
    agent = build_learner(LearnerContext("aif", world, settings), seed)
    for e in range(episodes):
        agent.train_round([EpisodeSpec(episode_seed(seed, e), e)])
    return agent


def _nearest_action(view: SchedulerView, native: dict[str, Any]) -> tuple[int, float]:
    shares = np.asarray(native["shares"], dtype=np.float64)
    if not np.any(shares > 0):
        return view.reject_action, 0.0
    options = view.grant_options()
    same = np.flatnonzero(view.action_servers == int(native["server"]))
    dist = np.abs(options[same] - shares[None, :]).sum(axis=1)
    k = int(np.argmin(dist))
    return int(same[k]), float(dist[k])


def record_decisions(
    observer: Any, scheduler: str | Any, world: WorldSpec, episodes: Sequence[EpisodeSpec]
) -> DecisionRecord:
    """Play ``scheduler`` on ``world`` and record the observer's features at every decision.

    Parameters
    ----------
    observer : StructuredAgent
        Its beliefs score the actions; it does not act.
    scheduler : str, policy or StructuredAgent
        A reference policy or its name (``baselines.make_policy``; it reads the true state and
        acts with native grants), or the observer itself acting by its own planner on the terms
        it recorded.
    world : WorldSpec
    episodes : sequence of EpisodeSpec
    """
    from baselines import make_policy

    feats: list[np.ndarray] = []
    choices: list[int] = []
    masks: list[np.ndarray] = []
    gaps: list[float] = []
    for spec in episodes:
        env = world.make()
        view = SchedulerView(env, levels=observer.planner.levels)
        view.reset(seed=spec.env_seed, options=spec.options)
        policy = make_policy(scheduler) if isinstance(scheduler, str) else scheduler
        if not hasattr(policy, "act"):
            policy = None
        else:
            policy.reset(spec.env_seed)
        holdings: dict[int, Any] = {}
        done = False
        while not done:
            request = view.request
            task = observer.task_index(request.prompt_tokens, request.problem)
            holdings = observer.update_holdings(view, holdings)
            terms = observer.candidate_terms(
                view, request.arrival_time, task, list(holdings.values()), view.t_max
            )
            if policy is not None:
                native = policy.act(env, view.observation)
                action, gap = _nearest_action(view, native)
                step: Any = native
            else:
                agent: Any = scheduler
                action, _ = agent.choose(terms)
                gap, step = 0.0, action
            feats.append(np.stack([terms.guidance, terms.future, terms.info_gain], axis=-1))
            choices.append(action)
            masks.append(terms.feasible.copy())
            gaps.append(gap)
            if action != view.reject_action:
                holdings[request.decision] = observer.holding(view, action, terms)
            _, _, terminated, truncated, _ = view.step(step)
            done = bool(terminated or truncated)
    return DecisionRecord(
        np.stack(feats), np.asarray(choices), np.stack(masks), float(np.mean(gaps))
    )


def explain(record: DecisionRecord, seed: int = 0, scale: float = 20.0, **fit: Any) -> Any:
    """Posterior of the choice weights (NUTS), an ArviZ DataTree in a ``FitResult``.

    The prior of every weight is Normal(0, ``scale``): wide, since a scheduler acting almost
    deterministically has weights of tens (a narrow prior would shrink them towards 0).
    """
    from aif.fitting import fit_choice_weights

    # An infeasible action's features may be inf or NaN; the mask removes it from the choice.
    features = np.where(np.isfinite(record.features), record.features, 0.0)
    return fit_choice_weights(
        torch.as_tensor(features),
        torch.as_tensor(record.choices),
        torch.as_tensor(record.mask),
        terms=list(TERMS),
        scale=scale,
        seed=seed,
        **fit,
    )


def _summary(result: Any) -> dict[str, tuple[float, float, float]]:
    w = result.tree["posterior"]["w"].values.reshape(-1, len(TERMS))
    lo, hi = np.percentile(w, [5, 95], axis=0)
    return {t: (float(w[:, k].mean()), float(lo[k]), float(hi[k])) for k, t in enumerate(TERMS)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-episodes", type=int, default=10)
    parser.add_argument("--episodes", type=int, default=2, help="recorded episodes per scheduler")
    parser.add_argument("--precision", type=float, default=5.0)
    parser.add_argument("--schedulers", default="greedy,edge_first,frugal")
    args = parser.parse_args(argv)
    world = WorldSpec("paper")
    observer = train_observer(world, args.train_episodes)
    specs = [EpisodeSpec(eval_seed(7, k), args.train_episodes) for k in range(args.episodes)]
    actor = train_observer(world, args.train_episodes, precision=args.precision)
    p = actor.planner
    truth = args.precision * np.asarray(
        [p.guidance_weight, p.discount * p.guidance_weight, p.info_gain_weight]
    )
    rows: list[tuple[str, dict[str, tuple[float, float, float]], float]] = []
    record = record_decisions(actor, actor, world, specs)
    rows.append((f"aif (precision {args.precision:g})", _summary(explain(record)), 0.0))
    from baselines import make_policy

    for name in [s for s in args.schedulers.split(",") if s]:
        # Rules that grant a fixed level choose among the levels of the agent's action set.
        kwargs = {"levels": observer.planner.levels} if name in ("greedy", "edge_first") else {}
        policy = make_policy(name, **kwargs)
        record = record_decisions(observer, policy, world, specs)
        rows.append((name, _summary(explain(record)), record.mapped))
    print("true weights of aif:", dict(zip(TERMS, np.round(truth, 2).tolist(), strict=True)))
    print("| scheduler | " + " | ".join(TERMS) + " | mean L1 of mapped grants |")
    print("|---" * (len(TERMS) + 2) + "|")
    for name, summary, mapped in rows:
        cells = [f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in summary.values()]
        print(f"| {name} | " + " | ".join(cells) + f" | {mapped:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
