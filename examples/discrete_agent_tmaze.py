"""A population of discrete active-inference agents in the T-maze, learning where rewards are.

Run ``python examples/discrete_agent_tmaze.py --agents 64 --trials 32 --seed 0``. Each trial, a
mouse starts in the centre of a T-maze whose reward sits in the left or the right arm; a cue at the
bottom of the maze says which, with some error. The agents know the maze but not how often an arm
pays out: they learn the reward likelihood (``pA`` of the reward modality) from what they see, and
their curiosity about it (novelty) decays as the counts grow. The task is the T-maze of Friston et
al., "Active inference and epistemic value", Cogn. Neurosci. 6(4), 2015.
"""

from __future__ import annotations

import argparse
from typing import NamedTuple

import torch
from torch import Tensor

from aif.discrete_agent import DiscreteAgent
from generative_models.categorical import CategoricalPOMDP

#: Locations (factor 0, and the location modality): where the mouse is and where it can go.
LOCATIONS = ("centre", "left arm", "right arm", "cue")
#: Contexts (factor 1): which arm holds the reward in this trial.
CONTEXTS = ("reward left", "reward right")
#: Outcomes of the reward modality and of the cue modality.
REWARDS = ("nothing", "reward", "shock")
CUES = ("no cue", "cue left", "cue right")


def tmaze_matrices(
    p_reward: float = 0.9, cue_validity: float = 0.95
) -> tuple[list[Tensor], list[Tensor]]:
    """Likelihoods ``A`` and transitions ``B`` of the T-maze, in pymdp's layout.

    Parameters
    ----------
    p_reward : float, default 0.9
        Probability of a reward in the baited arm (and of a shock in the other).
    cue_validity : float, default 0.95
        Probability that the cue points to the baited arm.

    Returns
    -------
    A : list of Tensor
        Location ``(4, 4, 2)``, reward ``(3, 4, 2)`` and cue ``(3, 4, 2)`` likelihoods.
    B : list of Tensor
        Location ``(4, 4, 4)`` (move to the chosen place; the arms are absorbing) and context
        ``(2, 2, 1)`` (fixed within a trial).
    """
    f64 = torch.float64
    A_loc = torch.eye(4, dtype=f64).unsqueeze(-1).expand(4, 4, 2).clone()
    A_rew = torch.zeros(3, 4, 2, dtype=f64)
    A_cue = torch.zeros(3, 4, 2, dtype=f64)
    for context in range(2):
        A_rew[0, 0, context] = A_rew[0, 3, context] = 1.0  # centre and cue: nothing
        baited, other = 1 + context, 2 - context
        A_rew[1, baited, context], A_rew[2, baited, context] = p_reward, 1 - p_reward
        A_rew[2, other, context], A_rew[1, other, context] = p_reward, 1 - p_reward
        A_cue[0, :3, context] = 1.0
        A_cue[1 + context, 3, context] = cue_validity
        A_cue[2 - context, 3, context] = 1 - cue_validity
    B_loc = torch.zeros(4, 4, 4, dtype=f64)
    for here in range(4):
        for go in range(4):
            there = here if here in (1, 2) else go  # an arm, once entered, ends the trial
            B_loc[there, here, go] = 1.0
    B_ctx = torch.eye(2, dtype=f64).unsqueeze(-1)
    return [A_loc, A_rew, A_cue], [B_loc, B_ctx]


def tmaze_model(
    reward_preference: float = 3.0, prior_count: float = 1.0, known_p_reward: float = 0.9
) -> CategoricalPOMDP:
    """The agents' model: the maze is known, how often an arm pays out is learnt.

    Parameters
    ----------
    reward_preference : float, default 3.0
        Log-preference for a reward over nothing (a shock gets the opposite).
    prior_count : float, default 1.0
        Dirichlet pseudo-counts of the reward likelihood in the arms, spread evenly over the
        three outcomes (the agents start not knowing the payout); elsewhere the counts are large.
    known_p_reward : float, default 0.9
        Used only for the modalities the agents know (location and cue).

    Returns
    -------
    CategoricalPOMDP
        Two-step policies, ``pA`` on every modality (learnt only where it is weak).
    """
    A, B = tmaze_matrices(known_p_reward)
    pA = [100.0 * a for a in A]
    pA[1][:, 1:3, :] = prior_count  # the arms: payout unknown
    pA[1][:, [0, 3], :] = 100.0 * A[1][:, [0, 3], :]
    C = [
        torch.zeros(4, dtype=torch.float64),
        torch.tensor([0.0, reward_preference, -reward_preference], dtype=torch.float64),
        torch.zeros(3, dtype=torch.float64),
    ]
    D = [
        torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64),
        torch.full((2,), 0.5, dtype=torch.float64),
    ]
    return CategoricalPOMDP.from_dirichlet(pA, [100.0 * b for b in B], C=C, D=D, policy_len=2)


class TMazeWorld:
    """The generative process: a batch of mazes sampled with a seeded generator.

    Parameters
    ----------
    batch : int
    p_reward, cue_validity : float
        The true payout and cue reliability.
    seed : int
    """

    def __init__(
        self, batch: int, p_reward: float = 0.9, cue_validity: float = 0.95, seed: int = 0
    ) -> None:
        self.A, self.B = tmaze_matrices(p_reward, cue_validity)
        self.batch = batch
        self.generator = torch.Generator().manual_seed(seed)
        self.state = torch.zeros(batch, 2, dtype=torch.long)

    def _observe(self) -> Tensor:
        loc, ctx = self.state[:, 0], self.state[:, 1]
        probs = [a[:, loc, ctx].T for a in self.A]  # (batch, n_o) per modality
        return torch.stack(
            [torch.multinomial(p, 1, generator=self.generator)[:, 0] for p in probs], 1
        )

    def reset(self) -> Tensor:
        """New trials: every mouse in the centre, a random baited arm. Returns obs (batch, 3)."""
        context = torch.randint(2, (self.batch,), generator=self.generator)
        self.state = torch.stack([torch.zeros_like(context), context], 1)
        return self._observe()

    def step(self, action: Tensor) -> Tensor:
        """Move every mouse; action (batch, 2) as the agents choose it. Returns obs (batch, 3)."""
        loc = self.state[:, 0]
        probs = self.B[0][:, loc, action[:, 0].cpu()].T
        self.state[:, 0] = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
        return self._observe()


class TrialRecord(NamedTuple):
    """Per trial, the fraction of the batch that did each thing.

    Attributes
    ----------
    reward_rate, shock_rate : Tensor, shape (trials,)
        Outcome on first reaching an arm (the remainder never reached one).
    cue_first_rate : Tensor, shape (trials,)
        First move was to the cue.
    learnt_p_reward : Tensor, shape (trials,)
        Mean over agents of the learnt ``p(reward | left arm, reward left)`` (true value 0.9).
    """

    reward_rate: Tensor
    shock_rate: Tensor
    cue_first_rate: Tensor
    learnt_p_reward: Tensor


def run(agents: int = 64, trials: int = 32, steps: int = 3, seed: int = 0) -> TrialRecord:
    """Let a batch of learning agents play ``trials`` T-maze trials of ``steps`` moves each.

    Returns
    -------
    TrialRecord
    """
    agent = DiscreteAgent(
        tmaze_model(),
        batch_size=agents,
        inference="exact",
        learn_A=True,
        use_param_info_gain=True,
        gamma=16.0,
        seed=seed,
    )
    world = TMazeWorld(agents, seed=seed)
    rewards, shocks, cue_first, learnt = [], [], [], []
    for _ in range(trials):
        obs = world.reset()
        first_move = torch.full((agents,), -1)
        arm_outcome = torch.zeros(agents, dtype=torch.long)  # 0 until an arm is reached
        for t in range(steps):
            action = agent.step(obs)
            if t == 0:
                first_move = action[:, 0].cpu()
            obs = world.step(action)
            reached = (arm_outcome == 0) & (obs[:, 0] != 0) & (obs[:, 0] != 3)
            arm_outcome = torch.where(reached, obs[:, 1], arm_outcome)
        agent.infer_states(obs)  # the last outcome counts too
        agent.learn()
        agent.end_episode()
        assert agent.pA is not None
        counts = agent.pA[1][:, :, 1, 0]  # reward modality, left arm, context "reward left"
        learnt.append((counts[:, 1] / counts.sum(-1)).mean().cpu())
        rewards.append((arm_outcome == 1).float().mean())
        shocks.append((arm_outcome == 2).float().mean())
        cue_first.append((first_move == 3).float().mean())
    return TrialRecord(
        torch.stack(rewards), torch.stack(shocks), torch.stack(cue_first), torch.stack(learnt)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    record = run(args.agents, args.trials, seed=args.seed)
    print(f"{args.agents} agents, {args.trials} trials of the T-maze (true payout 0.9)")
    print(" trial  reward  shock  cue first  learnt p(reward | baited arm)")
    for k in range(args.trials):
        print(
            f" {k:5d}  {float(record.reward_rate[k]):6.2f}  {float(record.shock_rate[k]):5.2f}"
            f"  {float(record.cue_first_rate[k]):9.2f}  {float(record.learnt_p_reward[k]):8.3f}"
        )


if __name__ == "__main__":
    main()
