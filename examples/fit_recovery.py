"""Parameter recovery: simulate T-maze subjects with known parameters, fit them back, compare.

Run ``python examples/fit_recovery.py`` (20 subjects, NUTS; about half an hour on a busy 2-core
machine). Each subject is an :class:`aif.DiscreteAgent` with its own policy precision, reward
preference and habit of visiting the cue first, drawn from a stated population; it plays T-maze
trials (Friston et al., "Active inference and epistemic value", Cogn. Neurosci. 6(4), 2015) and
its observations and actions are all the fit sees. The program prints, per parameter, the
correlation between true values and posterior means and how often the 90% interval holds the
truth. ``--fit-alpha`` also fits the action precision; ``--learning`` runs the learning-rate
study instead (agents that learn the payout, fitted by SVI).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from discrete_agent_tmaze import TMazeWorld, tmaze_matrices, tmaze_model  # noqa: E402

from aif.discrete_agent import DiscreteAgent  # noqa: E402
from aif.fitting import (  # noqa: E402
    AgentTemplate,
    FitResult,
    FreeParameter,
    SubjectData,
    fit_agent,
)
from generative_models.categorical import CategoricalPOMDP  # noqa: E402

#: Location action that visits the cue (factor 0 of the T-maze).
CUE = 3


class Population(NamedTuple):
    """Where subjects' parameters come from: normal on the stated scale (log for gamma).

    Attributes
    ----------
    log_gamma : tuple of float
        Mean and sd of ``log gamma`` (policy precision).
    reward_pref : tuple of float
        Mean and sd of the reward preference ``c`` (``C[reward] = [0, c, -c]``).
    cue_habit : tuple of float
        Mean and sd of the habit ``e``: ``log E`` is ``e`` for policies that start at the cue.
    """

    log_gamma: tuple[float, float] = (math.log(3.0), 0.5)
    reward_pref: tuple[float, float] = (1.0, 0.4)
    cue_habit: tuple[float, float] = (0.0, 0.75)


def tmaze_known_payout(p_reward: float = 0.9, cue_validity: float = 0.95) -> CategoricalPOMDP:
    """The T-maze with a known payout and no preferences (they are the fitted part).

    Returns
    -------
    CategoricalPOMDP
        Two factors (location, context), three modalities, 16 two-step policies.
    """
    A, B = tmaze_matrices(p_reward, cue_validity)
    D = [
        torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64),
        torch.full((2,), 0.5, dtype=torch.float64),
    ]
    return CategoricalPOMDP(A, B, D=D, policy_len=2)


def directions(pomdp: CategoricalPOMDP) -> tuple[list[Tensor], Tensor]:
    """How the reward preference enters ``C`` and the cue habit enters ``log E``."""
    f64 = torch.float64
    C_dir = [
        torch.zeros(4, dtype=f64),
        torch.tensor([0.0, 1.0, -1.0], dtype=f64),
        torch.zeros(3, dtype=f64),
    ]
    assert pomdp.policies is not None
    E_dir = (pomdp.policies[:, 0, 0] == CUE).to(f64)
    return C_dir, E_dir


def free_parameters(pomdp: CategoricalPOMDP, population: Population) -> list[FreeParameter]:
    """The fitted parameters with the population as their prior."""
    C_dir, E_dir = directions(pomdp)
    return [
        FreeParameter("gamma", "gamma", *population.log_gamma),
        FreeParameter("reward_pref", "C", *population.reward_pref, direction=C_dir),
        FreeParameter("cue_habit", "E", *population.cue_habit, direction=E_dir),
    ]


def draw_population(n: int, population: Population, seed: int) -> dict[str, Tensor]:
    """True parameters of ``n`` subjects, seeded."""
    g = torch.Generator().manual_seed(seed)

    def normal(mean_sd: tuple[float, float]) -> Tensor:
        return mean_sd[0] + mean_sd[1] * torch.randn(n, generator=g, dtype=torch.float64)

    return {
        "gamma": normal(population.log_gamma).exp(),
        "reward_pref": normal(population.reward_pref),
        "cue_habit": normal(population.cue_habit),
    }


def simulate_subject(
    pomdp: CategoricalPOMDP,
    truth: dict[str, float],
    n_trials: int,
    seed: int,
    alpha: float = 1.0,
    label: str = "",
) -> SubjectData:
    """One subject: a stochastic DiscreteAgent playing ``n_trials`` trials of two moves.

    Parameters
    ----------
    pomdp : CategoricalPOMDP
        The maze without preferences.
    truth : dict
        ``gamma``, ``reward_pref``, ``cue_habit`` (and optionally ``alpha``).
    n_trials : int
    seed : int
        Seeds the world and the agent's action draws.
    alpha : float, default 1.0
        Action precision, unless ``truth`` has one.

    Returns
    -------
    SubjectData
        obs (n_trials, 3, 3), actions (n_trials, 2, 2).
    """
    C_dir, E_dir = directions(pomdp)
    C = [truth["reward_pref"] * d for d in C_dir]
    log_E = truth["cue_habit"] * E_dir
    E = torch.softmax(log_E, 0)
    model = CategoricalPOMDP(pomdp.A, pomdp.B, C=C, D=pomdp.D, E=E, policy_len=2)
    agent = DiscreteAgent(
        model,
        inference="exact",
        gamma=truth["gamma"],
        alpha=truth.get("alpha", alpha),
        action_selection="stochastic",
        seed=seed,
    )
    world = TMazeWorld(1, seed=seed + 100_003)
    obs_trials, act_trials = [], []
    for _ in range(n_trials):
        obs = world.reset()
        seen, done = [obs[0]], []
        for _t in range(2):
            action = agent.step(obs)
            done.append(action[0])
            obs = world.step(action)
            seen.append(obs[0])
        agent.end_episode()
        obs_trials.append(torch.stack(seen))
        act_trials.append(torch.stack(done))
    return SubjectData(torch.stack(obs_trials), torch.stack(act_trials), subject=label)


class Recovery(NamedTuple):
    """Truth against posterior, per parameter and subject.

    Attributes
    ----------
    names : list of str
    truth, mean, lower, upper : dict of str to numpy.ndarray, shape (n_subjects,)
        ``lower``/``upper``: the 5% and 95% posterior quantiles.
    fit : FitResult
    seconds : float
        Wall time of the fit.
    """

    names: list[str]
    truth: dict[str, np.ndarray]
    mean: dict[str, np.ndarray]
    lower: dict[str, np.ndarray]
    upper: dict[str, np.ndarray]
    fit: FitResult
    seconds: float

    def coverage(self, name: str) -> float:
        """Fraction of subjects whose 90% interval holds the true value."""
        t = self.truth[name]
        return float(np.mean((self.lower[name] <= t) & (t <= self.upper[name])))

    def correlation(self, name: str) -> float:
        """Pearson correlation of true values and posterior means."""
        return float(np.corrcoef(self.truth[name], self.mean[name])[0, 1])


def run_study(
    n_subjects: int = 20,
    n_trials: int = 40,
    seed: int = 0,
    method: str = "nuts",
    num_samples: int = 500,
    num_warmup: int = 500,
    num_chains: int = 2,
    population: Population | None = None,
    fit_alpha: bool = False,
    max_tree_depth: int = 8,
    num_steps: int = 1500,
) -> Recovery:
    """Simulate, fit and compare.

    Parameters
    ----------
    n_subjects, n_trials : int
    seed : int
        Seeds the population draw, every subject and the fit.
    method : {"nuts", "svi"}
    num_samples, num_warmup, num_chains : int
    population : Population, optional
    fit_alpha : bool, default False
        Also draw and fit the action precision ``alpha`` (log-normal, median 1, sd 0.4 on
        log scale); the subjects' default is ``alpha = 1``, known to the fit.
    max_tree_depth : int, default 8
        NUTS tree depth.
    num_steps : int, default 1500
        SVI steps.

    Returns
    -------
    Recovery
    """
    population = population or Population()
    pomdp = tmaze_known_payout()
    truths = draw_population(n_subjects, population, seed)
    parameters = free_parameters(pomdp, population)
    if fit_alpha:
        g = torch.Generator().manual_seed(seed + 7)
        truths["alpha"] = (0.4 * torch.randn(n_subjects, generator=g, dtype=torch.float64)).exp()
        parameters.append(FreeParameter("alpha", "alpha", 0.0, 0.4))
    subjects = [
        simulate_subject(
            pomdp,
            {k: float(v[i]) for k, v in truths.items()},
            n_trials,
            seed=1000 * seed + i,
            label=f"s{i:02d}",
        )
        for i in range(n_subjects)
    ]
    template = AgentTemplate.from_model(pomdp, inference="exact", gamma=1.0, alpha=1.0)
    start = time.perf_counter()
    fit = fit_agent(
        template,
        parameters,
        subjects,
        method=method,  # type: ignore[arg-type]
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=num_chains,
        max_tree_depth=max_tree_depth,
        num_steps=num_steps,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    post = fit.tree["posterior"].to_dataset()
    names = [p.name for p in parameters]
    mean, lower, upper = {}, {}, {}
    for name in names:
        x = post[name].values.reshape(-1, n_subjects)
        mean[name] = x.mean(0)
        lower[name] = np.quantile(x, 0.05, axis=0)
        upper[name] = np.quantile(x, 0.95, axis=0)
    truth = {k: v.numpy() for k, v in truths.items()}
    return Recovery(names, truth, mean, lower, upper, fit, seconds)


#: Prior (and population) of ``log lr_pA`` in the learning study.
LEARNING_RATE = (math.log(0.5), 0.6)


def simulate_learner(lr: float, n_trials: int, seed: int, label: str = "") -> SubjectData:
    """One subject who learns the payout (``pA`` of the reward modality) at learning rate ``lr``.

    The agent of ``examples/discrete_agent_tmaze.py`` (one pseudo-count of prior knowledge in
    the arms, novelty on, ``gamma = 4``, ``alpha = 1``), with per-modality information gain
    (pymdp's, and cheaper per step than the joint one) and stochastic action selection.
    """
    agent = DiscreteAgent(
        tmaze_model(reward_preference=2.0, prior_count=1.0),
        inference="exact",
        learn_A=True,
        use_param_info_gain=True,
        info_gain="per_modality",
        gamma=4.0,
        alpha=1.0,
        lr_pA=lr,
        action_selection="stochastic",
        seed=seed,
    )
    world = TMazeWorld(1, seed=seed + 100_003)
    obs_trials, act_trials = [], []
    for _ in range(n_trials):
        obs = world.reset()
        seen, done = [obs[0]], []
        for _t in range(2):
            action = agent.step(obs)
            done.append(action[0])
            obs = world.step(action)
            seen.append(obs[0])
        agent.infer_states(obs)  # the last outcome is learnt from too
        agent.learn()
        agent.end_episode()
        obs_trials.append(torch.stack(seen))
        act_trials.append(torch.stack(done))
    return SubjectData(torch.stack(obs_trials), torch.stack(act_trials), subject=label)


def run_learning_study(
    n_subjects: int = 20,
    n_trials: int = 20,
    seed: int = 0,
    method: str = "svi",
    num_samples: int = 500,
    num_warmup: int = 300,
    num_chains: int = 1,
    num_steps: int = 400,
    max_tree_depth: int = 6,
) -> Recovery:
    """Recover each subject's learning rate ``lr_pA`` (everything else known).

    The likelihood runs step by step through the Dirichlet updates, so a fit costs far more per
    evaluation than the study without learning; SVI (a mean-field normal guide) is the default.
    """
    g = torch.Generator().manual_seed(seed)
    lr = torch.exp(
        LEARNING_RATE[0]
        + LEARNING_RATE[1] * torch.randn(n_subjects, generator=g, dtype=torch.float64)
    )
    subjects = [
        simulate_learner(float(lr[i]), n_trials, seed=1000 * seed + i, label=f"s{i:02d}")
        for i in range(n_subjects)
    ]
    template = AgentTemplate.from_model(
        tmaze_model(reward_preference=2.0, prior_count=1.0),
        inference="exact",
        learn_A=True,
        use_param_info_gain=True,
        info_gain="per_modality",
        gamma=4.0,
        alpha=1.0,
    )
    parameters = [FreeParameter("lr_pA", "lr_pA", *LEARNING_RATE)]
    start = time.perf_counter()
    fit = fit_agent(
        template,
        parameters,
        subjects,
        method=method,  # type: ignore[arg-type]
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=num_chains,
        num_steps=num_steps,
        lr=0.05,
        guide="normal",
        max_tree_depth=max_tree_depth,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    x = fit.tree["posterior"].to_dataset()["lr_pA"].values.reshape(-1, n_subjects)
    return Recovery(
        ["lr_pA"],
        {"lr_pA": lr.numpy()},
        {"lr_pA": x.mean(0)},
        {"lr_pA": np.quantile(x, 0.05, axis=0)},
        {"lr_pA": np.quantile(x, 0.95, axis=0)},
        fit,
        seconds,
    )


def table(recovery: Recovery) -> list[str]:
    """Rows of the recovery table."""
    lines = [
        " parameter     true range       corr(true, mean)  90% coverage  mean width",
    ]
    for name in recovery.names:
        t = recovery.truth[name]
        width = float(np.mean(recovery.upper[name] - recovery.lower[name]))
        lines.append(
            f" {name:12s}  {t.min():6.2f}..{t.max():5.2f}   {recovery.correlation(name):16.3f}"
            f"  {recovery.coverage(name):12.2f}  {width:10.3f}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--trials", type=int, help="default 40 (20 with --learning)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--method", choices=["nuts", "svi"], help="default nuts (svi with --learning)"
    )
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--max-tree-depth", type=int, default=8)
    parser.add_argument("--steps", type=int, help="SVI steps (default 1500, 400 with --learning)")
    parser.add_argument("--fit-alpha", action="store_true", help="also fit the action precision")
    parser.add_argument("--learning", action="store_true", help="the learning-rate study instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.learning:
        method = args.method or "svi"
        trials = args.trials or 20
        rec = run_learning_study(
            args.subjects,
            trials,
            args.seed,
            method,
            args.samples,
            args.warmup,
            args.chains,
            args.steps or 400,
            args.max_tree_depth,
        )
        what = "learning subjects"
    else:
        method = args.method or "nuts"
        trials = args.trials or 40
        rec = run_study(
            args.subjects,
            trials,
            args.seed,
            method,
            args.samples,
            args.warmup,
            args.chains,
            fit_alpha=args.fit_alpha,
            max_tree_depth=args.max_tree_depth,
            num_steps=args.steps or 1500,
        )
        what = "subjects"
    print(
        f"{args.subjects} {what} x {trials} T-maze trials, {method}, seed {args.seed}: "
        f"fit in {rec.seconds:.1f} s"
    )
    for line in table(rec):
        print(line)
    if method == "nuts":
        stats = rec.fit.tree["sample_stats"].to_dataset()
        print(f" divergences: {int(stats['diverging'].values.sum())}")


if __name__ == "__main__":
    main()
