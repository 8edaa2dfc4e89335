"""The hybrid CEM planner finds known optima, is seeded, and rejects bad settings."""

import pytest
import torch

from aif.cem import CEMConfig, HybridCEM

TARGET = torch.tensor([0.3, 0.7, 0.5])


def _score(choices: torch.Tensor, vectors: torch.Tensor):
    # best: choice 2 at every step with vector TARGET; other choices pay a penalty
    dist = ((vectors - TARGET) ** 2).sum(-1)  # (J, H)
    penalty = (choices != 2).float()
    return -(dist + penalty).sum(-1), dist


def test_finds_the_optimum_of_a_known_score():
    cem = HybridCEM(4, 3, CEMConfig(candidates=200, elites=20, iterations=6, horizon=2))
    best = cem.plan(_score, torch.Generator().manual_seed(0))
    assert best.choice.tolist() == [2, 2]
    assert torch.allclose(best.vector, TARGET.expand(2, 3), atol=0.08)
    assert best.vector.min() >= 0 and best.vector.max() <= 1


def test_more_iterations_do_not_get_worse():
    scores = []
    for it in (1, 3, 6):
        cem = HybridCEM(4, 3, CEMConfig(candidates=64, elites=8, iterations=it, horizon=1))
        scores.append(float(cem.plan(_score, torch.Generator().manual_seed(3)).score))
    assert scores[0] <= scores[1] <= scores[2]


def test_same_seed_same_plan_and_aux_row():
    cem = HybridCEM(3, 3, CEMConfig(horizon=1))
    a = cem.plan(_score, torch.Generator().manual_seed(11))
    b = cem.plan(_score, torch.Generator().manual_seed(11))
    assert torch.equal(a.vector, b.vector) and torch.equal(a.choice, b.choice)
    assert float(a.aux[a.row].sum()) == pytest.approx(float(((a.vector - TARGET) ** 2).sum()))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"candidates": 0}, "candidates"),
        ({"candidates": 4, "elites": 5}, "elites"),
        ({"init_std": 0.0}, "init_std"),
        ({"prob_floor": 1.0}, "prob_floor"),
    ],
)
def test_invalid_config_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CEMConfig(**kwargs)


def test_wrong_score_shape_is_reported():
    cem = HybridCEM(2, 3, CEMConfig(candidates=8, elites=2, horizon=1))
    with pytest.raises(ValueError, match=r"expected \(8,\)"):
        cem.plan(lambda c, v: (torch.zeros(3), None), torch.Generator().manual_seed(0))
