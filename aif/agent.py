"""A model-based active-inference agent: a thin shell over a learned world model and the CEM planner.

Per decision it searches policies that minimise expected free energy, acts on the first step, stores what
it observed and refits its model (Algorithm 1 of He et al. 2025; the planner of Tschantz et al. 2020).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from aif.cem import CEMConfig, HybridCEM

__all__ = ["Decision", "EFEModel", "ModelBasedAgent"]


class EFEModel(Protocol):
    """What the agent needs from a world model.

    ``efe(obs, choices, vectors)`` scores candidate policies (``choices`` ``(J, H)`` long, ``vectors``
    ``(J, H, D)``) and returns a NamedTuple whose ``efe`` field has shape ``(J,)`` (lower is better) and
    whose other fields are the parts of the EFE; ``fit()`` refits on the stored data.
    """

    def efe(self, obs: Tensor, choices: Tensor, vectors: Tensor) -> Any: ...

    def fit(self) -> list[float]: ...


class Decision(NamedTuple):
    """One decision: the first action of the best policy and the EFE parts of that policy.

    Attributes
    ----------
    choice : int
        Discrete part of the action (server index).
    vector : torch.Tensor
        Shape ``(D,)``: continuous part (resource shares).
    parts : dict of str to float
        The chosen policy's EFE and its parts (names from the model's EFE NamedTuple).
    """

    choice: int
    vector: Tensor
    parts: dict[str, float]


class ModelBasedAgent:
    """Plans by expected free energy with a hybrid CEM over a learned model.

    Parameters
    ----------
    model : EFEModel
        The world model (it owns its parameters; nothing is shared through a global store).
    n_choices : int
        Number of discrete choices (servers).
    dim : int
        Size of the continuous part of an action.
    planner : CEMConfig, optional
        J, K, I and horizon.
    seed : int
        Seed of the planner's sampling.
    low, high : float
        Bounds of every continuous action component.
    """

    def __init__(
        self,
        model: EFEModel,
        n_choices: int,
        dim: int,
        planner: CEMConfig | None = None,
        seed: int = 0,
        low: float = 0.0,
        high: float = 1.0,
    ) -> None:
        self.model = model
        self.cem = HybridCEM(n_choices, dim, planner, low=low, high=high)
        self.generator = torch.Generator().manual_seed(int(seed))

    def act(self, obs: Tensor) -> Decision:
        """Choose an action for observation ``obs`` (shape ``(obs_dim,)``)."""

        def score(choices: Tensor, vectors: Tensor) -> tuple[Tensor, Any]:
            result = self.model.efe(obs, choices, vectors)
            return -result.efe, result

        best = self.cem.plan(score, self.generator)
        parts = {
            name: float(value[best.row])
            for name, value in best.aux._asdict().items()  # type: ignore[attr-defined]
        }
        return Decision(int(best.choice[0]), best.vector[0].clone(), parts)

    def learn(self) -> list[float]:
        """Refit the world model; returns its free-energy trace."""
        return self.model.fit()
