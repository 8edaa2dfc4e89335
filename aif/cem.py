"""Cross-entropy-method policy search over hybrid actions (one discrete choice + a continuous vector).

Used by the model-based agent: sample J candidate policies from q(pi), score them, keep the top K, refit q(pi).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

__all__ = ["CEMConfig", "CEMResult", "HybridCEM"]


@dataclass(frozen=True)
class CEMConfig:
    """Settings of the hybrid cross-entropy planner.

    Parameters
    ----------
    candidates : int
        J, candidate policies sampled per iteration.
    elites : int
        K, candidates kept to refit the sampling distribution (``1 <= K <= J``).
    iterations : int
        I, refits per decision.
    horizon : int
        H, actions per policy (the current task and ``H - 1`` upcoming ones).
    init_std : float
        Initial standard deviation of every continuous component.
    min_std : float
        Floor on the refitted standard deviation, so the search never collapses to a point early.
    prob_floor : float
        Probability mass mixed uniformly into the discrete distribution after each refit, so that no
        choice is ruled out by a single unlucky iteration.
    """

    candidates: int = 128
    elites: int = 16
    iterations: int = 3
    horizon: int = 2
    init_std: float = 0.3
    min_std: float = 0.03
    prob_floor: float = 0.02

    def __post_init__(self) -> None:
        for name in ("candidates", "elites", "iterations", "horizon"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"CEMConfig.{name} must be an integer >= 1, got {value!r}")
        if self.elites > self.candidates:
            raise ValueError(
                f"CEMConfig.elites ({self.elites}) must not exceed candidates ({self.candidates})"
            )
        if not self.init_std > 0:
            raise ValueError(f"CEMConfig.init_std must be > 0, got {self.init_std!r}")
        if not 0 <= self.min_std <= self.init_std:
            raise ValueError(
                f"CEMConfig.min_std must lie in [0, init_std={self.init_std}], got {self.min_std!r}"
            )
        if not 0 <= self.prob_floor < 1:
            raise ValueError(f"CEMConfig.prob_floor must lie in [0, 1), got {self.prob_floor!r}")


class CEMResult(NamedTuple):
    """Outcome of one planning call.

    Attributes
    ----------
    choice : torch.Tensor
        Shape ``(H,)``, long. Discrete part of the best policy found.
    vector : torch.Tensor
        Shape ``(H, D)``. Continuous part of the best policy found, inside ``[low, high]``.
    score : torch.Tensor
        Scalar. Its score (higher is better; the agent scores with ``-efe``).
    row : int
        Row of the best candidate inside its ``aux`` batch.
    aux : object
        Whatever the score function returned beside the scores on the iteration that found the best
        policy (for instance the EFE parts of every candidate).
    """

    choice: torch.Tensor
    vector: torch.Tensor
    score: torch.Tensor
    row: int
    aux: object


ScoreFn = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, object]]


class HybridCEM:
    """Cross-entropy search over policies of ``H`` hybrid actions ``(choice, vector)``.

    q(pi) factorises over horizon steps: a categorical over ``n_choices`` and, per choice, an independent
    Gaussian over the ``D``-vector clipped to ``[low, high]``. The vector distribution is kept per choice
    because the best allocation differs between choices (servers).

    Parameters
    ----------
    n_choices : int
        Number of discrete choices (servers).
    dim : int
        D, the size of the continuous vector (resource shares).
    config : CEMConfig
        Planner settings.
    low, high : float
        Bounds of each vector component.
    """

    def __init__(
        self,
        n_choices: int,
        dim: int,
        config: CEMConfig | None = None,
        low: float = 0.0,
        high: float = 1.0,
    ) -> None:
        if n_choices < 1 or dim < 1:
            raise ValueError(f"n_choices and dim must be >= 1, got {n_choices!r} and {dim!r}")
        if not low < high:
            raise ValueError(f"low must be below high, got low={low!r}, high={high!r}")
        self.n_choices = n_choices
        self.dim = dim
        self.config = config or CEMConfig()
        self.low = low
        self.high = high

    def plan(
        self,
        score_fn: ScoreFn,
        generator: torch.Generator,
        init_mean: torch.Tensor | None = None,
    ) -> CEMResult:
        """Search for the policy with the highest score.

        Parameters
        ----------
        score_fn : callable
            ``score_fn(choices, vectors) -> (scores, aux)`` with ``choices`` of shape ``(J, H)`` (long),
            ``vectors`` of shape ``(J, H, D)`` and ``scores`` of shape ``(J,)``; higher is better.
        generator : torch.Generator
            Source of all randomness of the search.
        init_mean : torch.Tensor, optional
            Shape ``(n_choices, D)``: initial mean of the vector per choice (default: mid-range).

        Returns
        -------
        CEMResult
            The best candidate evaluated over all iterations.
        """
        cfg = self.config
        h, s, d = cfg.horizon, self.n_choices, self.dim
        probs = torch.full((h, s), 1.0 / s)
        if init_mean is None:
            mean = torch.full((h, s, d), 0.5 * (self.low + self.high))
        else:
            if init_mean.shape != (s, d):
                raise ValueError(
                    f"init_mean has shape {tuple(init_mean.shape)}, expected ({s}, {d})"
                )
            mean = init_mean.to(torch.float32).expand(h, s, d).clone()
        std = torch.full((h, s, d), cfg.init_std)
        steps = torch.arange(h)
        best: CEMResult | None = None
        for _ in range(cfg.iterations):
            choices = torch.multinomial(
                probs, cfg.candidates, replacement=True, generator=generator
            ).T
            noise = torch.randn((cfg.candidates, h, d), generator=generator)
            mu = mean[steps, choices]  # (J, H, D)
            sd = std[steps, choices]
            vectors = (mu + sd * noise).clamp(self.low, self.high)
            scores, aux = score_fn(choices, vectors)
            if scores.shape != (cfg.candidates,):
                raise ValueError(
                    f"score_fn returned scores of shape {tuple(scores.shape)}, "
                    f"expected ({cfg.candidates},)"
                )
            scores = torch.nan_to_num(scores, nan=-torch.inf)
            top = int(torch.argmax(scores))
            if best is None or bool(scores[top] > best.score):
                best = CEMResult(choices[top], vectors[top], scores[top], top, aux)
            elite_idx = torch.topk(scores, cfg.elites).indices
            e_choice = choices[elite_idx]  # (K, H)
            e_vec = vectors[elite_idx]  # (K, H, D)
            onehot = torch.nn.functional.one_hot(e_choice, s).to(torch.float32)  # (K, H, S)
            counts = onehot.sum(0)  # (H, S)
            probs = (1 - cfg.prob_floor) * counts / cfg.elites + cfg.prob_floor / s
            # Per-choice weighted moments; choices with no elite keep their previous distribution.
            w = onehot.unsqueeze(-1)  # (K, H, S, 1)
            n = counts.unsqueeze(-1)  # (H, S, 1)
            has = n > 0
            m_new = (w * e_vec.unsqueeze(2)).sum(0) / n.clamp_min(1)
            v_new = (w * (e_vec.unsqueeze(2) - m_new) ** 2).sum(0) / n.clamp_min(1)
            mean = torch.where(has, m_new, mean)
            std = torch.where(has, v_new.sqrt().clamp_min(cfg.min_std), std)
        assert best is not None
        return best
