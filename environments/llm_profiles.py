"""LLM cost profiles: how long a server needs for one inference task, read from JSON data files.

Profiles are derived from a measured GPT-J-6B H100 reference by stated hardware ratios; see
``docs/environment.md`` for the file format and the assumptions each shipped profile carries.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from environments.tasks import pass_at_k_array, synthesize_num_correct

__all__ = [
    "GPU_DATASHEET",
    "LLMProfile",
    "ProfileTable",
    "available_profiles",
    "compute_time_vec",
    "derive_paper_profiles",
    "load_profile",
    "profile_dir",
    "write_paper_profiles",
]

PROFILE_FORMAT_VERSION = 2

#: Datasheet figures used for scaling: NVIDIA H100 datasheet (SXM, 3.35 TB/s, 989.4 dense fp16
#: TFLOP/s), A800/A100 80GB datasheet (2.039 TB/s, 312), GeForce RTX 3090 / GA102 whitepaper
#: (936 GB/s, 71 dense fp16 TFLOP/s with fp32 accumulation, 142 with fp16 accumulation).
#: ``memory_gib`` is the device total that ``torch.cuda.get_device_properties`` reports: measured
#: for the H100 (79.18 GiB); for the A800 80GB and RTX 3090 the usual totals of the same memory
#: class are used (assumed: 79.15 GiB and 23.69 GiB).
GPU_DATASHEET: dict[str, dict[str, float | str]] = {
    "H100-SXM-80GB": {"name": "NVIDIA H100 80GB HBM3 (SXM)", "mem_bandwidth_gbs": 3350.0,
                      "fp16_tflops": 989.4, "memory_gib": 79.18},
    "A800-80GB": {"name": "NVIDIA A800 80GB", "mem_bandwidth_gbs": 2039.0,
                  "fp16_tflops": 312.0, "memory_gib": 79.15},
    "RTX3090": {"name": "NVIDIA GeForce RTX 3090 24GB", "mem_bandwidth_gbs": 936.0,
                "fp16_tflops": 71.0, "memory_gib": 23.69},
}  # fmt: skip


def profile_dir() -> Path:
    """Directory holding the shipped profile JSON files (``environments/profiles``)."""
    return Path(str(resources.files("environments") / "profiles"))


def available_profiles() -> list[str]:
    """Names of the shipped profiles (file stems under :func:`profile_dir`)."""
    return sorted(p.stem for p in profile_dir().glob("*.json"))


@dataclass(frozen=True)
class LLMProfile:
    """Cost and accuracy of one model served on one GPU class in one serving mode.

    A task generates ``S`` samples of ``N = max_new_tokens`` tokens each for a prompt of ``l``
    tokens. The server batches samples statically: a batch slot is sized for the longest sequence
    it admits, ``max_prompt_tokens + N`` tokens, so with a granted memory pool ``M`` (GiB):

    - batch ``B = min(S, floor(M / (beta (max_prompt_tokens + N))))`` samples at once (the task
      cannot run when ``B = 0``), waves ``w = ceil(S / B)``, batch per wave ``b = ceil(S / w)``;
    - prefill ``p = prefill_fixed_ms + prefill_per_token_ms * l * (1 if shared_prefix else b w)``;
    - decode step ``d(b) = max(step_fixed_ms + step_per_seq_ms * b, (weights + b ctx kv) / bw)``
      (the DistServe-style linear form, bounded below by the memory-bandwidth floor), with the mean
      context ``ctx = l + N / 2``; every wave decodes ``N`` steps;
    - full-share time ``t1 = p + w N d(b)``, and with a compute share ``s``:
      ``t = t1 ((1 - k) + k / s)``: the fraction ``k`` of the work that slows down when the GPU
      is shared, ``1 - k`` the part that does not.

    Attributes
    ----------
    name : str
        File stem of the profile.
    pass_at_k : numpy.ndarray, shape (n_problems,)
        Per-problem pass@k from the unbiased estimator on ``num_correct`` of ``n_samples``.
    """

    name: str
    model: str
    gpu: str
    mode: str
    samples_per_task: int
    max_new_tokens: int
    max_prompt_tokens: int
    prefill_fixed_ms: float
    prefill_per_token_ms: float
    shared_prefix: bool
    step_fixed_ms: float
    step_per_seq_ms: float
    weights_bytes: float
    kv_bytes_per_token: float
    mem_bandwidth_gbs: float
    memory_pool_gib: float
    mem_per_token_gib: float
    share_k: float
    k: int
    n_samples: int
    num_correct: tuple[int, ...]
    pass_at_k: np.ndarray
    raw: dict[str, Any]

    # ------------------------------------------------------------------ timing
    @property
    def slot_gib(self) -> float:
        """GPU memory of one batch slot (GiB): the longest admitted sequence."""
        return self.mem_per_token_gib * (self.max_prompt_tokens + self.max_new_tokens)

    @property
    def min_memory_share(self) -> float:
        """Smallest memory share that holds one sample (below it the task cannot run)."""
        return self.slot_gib / self.memory_pool_gib

    def batch_size(self, memory_gib: float) -> int:
        """Samples decoded at once with ``memory_gib`` of GPU memory (0: the task cannot run)."""
        if not memory_gib > 0.0:
            return 0
        return int(min(self.samples_per_task, math.floor(memory_gib / self.slot_gib)))

    def waves(self, memory_gib: float) -> float:
        """Sequential sample waves with ``memory_gib`` of GPU memory (``inf`` if none fits)."""
        per_wave = self.batch_size(memory_gib)
        if per_wave == 0:
            return math.inf
        return float(-(-self.samples_per_task // per_wave))

    def decode_step_ms(self, batch: float, context_tokens: float) -> float:
        """Time of one decode step (ms) for ``batch`` sequences of ``context_tokens`` each."""
        linear = self.step_fixed_ms + self.step_per_seq_ms * batch
        # Decode reads all weights and the batch's KV cache once per step.
        floor = (self.weights_bytes + batch * context_tokens * self.kv_bytes_per_token) / (
            self.mem_bandwidth_gbs * 1e6
        )
        return max(linear, floor)

    def full_share_time(self, prompt_tokens: float, memory_gib: float) -> float:
        """Compute time (s) with the whole compute of the server and ``memory_gib`` of GPU memory."""
        w = self.waves(memory_gib)
        if math.isinf(w):
            return math.inf
        batch = -(-self.samples_per_task // int(w))
        n_prefill = 1 if self.shared_prefix else batch * int(w)
        prefill = self.prefill_fixed_ms + self.prefill_per_token_ms * prompt_tokens * n_prefill
        context = prompt_tokens + 0.5 * self.max_new_tokens
        step = self.decode_step_ms(batch, context)
        return (prefill + w * self.max_new_tokens * step) / 1000.0

    def compute_time(
        self, prompt_tokens: float, compute_share: float, memory_share: float
    ) -> float:
        """Compute time (s) of one task under the granted shares of this server's GPU.

        Parameters
        ----------
        prompt_tokens : float
            Prompt length in tokens.
        compute_share, memory_share : float
            Fractions in [0, 1] of the server's compute and GPU memory pool.

        Returns
        -------
        float
            Seconds; ``inf`` when the compute share is zero or the memory holds no sample.
        """
        if compute_share <= 0.0 or memory_share <= 0.0:
            return math.inf
        t1 = self.full_share_time(prompt_tokens, memory_share * self.memory_pool_gib)
        return t1 * ((1.0 - self.share_k) + self.share_k / compute_share)

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str) -> LLMProfile:
        """Build a profile from the parsed JSON document (format version 2)."""
        version = data.get("format_version")
        if version != PROFILE_FORMAT_VERSION:
            raise ValueError(
                f"profile {name!r}: format_version={version!r}, expected {PROFILE_FORMAT_VERSION}"
            )
        try:
            gen, pre, dec = data["generation"], data["prefill"], data["decode"]
            mem, acc, share = data["memory"], data["accuracy"], data["share_scaling"]
            num_correct = tuple(int(c) for c in acc["num_correct"])
            n_samples, k = int(acc["n_samples"]), int(acc["k"])
            profile = cls(
                name=name,
                model=str(data["model"]["name"]),
                gpu=str(data["gpu"]["name"]),
                mode=str(data["serving"]["mode"]),
                samples_per_task=int(gen["samples_per_task"]),
                max_new_tokens=int(gen["max_new_tokens"]),
                max_prompt_tokens=int(data["serving"]["max_prompt_tokens"]),
                prefill_fixed_ms=float(pre["fixed_ms"]),
                prefill_per_token_ms=float(pre["per_token_ms"]),
                shared_prefix=bool(pre["shared_prefix"]),
                step_fixed_ms=float(dec["step_fixed_ms"]),
                step_per_seq_ms=float(dec["step_per_seq_ms"]),
                weights_bytes=float(dec["weights_bytes"]),
                kv_bytes_per_token=float(dec["kv_bytes_per_token"]),
                mem_bandwidth_gbs=float(data["gpu"]["mem_bandwidth_gbs"]),
                memory_pool_gib=float(mem["pool_gib"]),
                mem_per_token_gib=float(mem["per_token_gib"]),
                share_k=float(share["k"]),
                k=k,
                n_samples=n_samples,
                num_correct=num_correct,
                pass_at_k=pass_at_k_array(n_samples, np.asarray(num_correct), k),
                raw=data,
            )
        except KeyError as exc:
            raise ValueError(f"profile {name!r} lacks the required key {exc}") from exc
        if not 0.0 <= profile.share_k <= 1.0:
            raise ValueError(f"profile {name!r}: share_scaling.k={profile.share_k}, expected 0..1")
        if profile.samples_per_task < 1 or profile.max_new_tokens < 1:
            raise ValueError(
                f"profile {name!r}: samples_per_task={profile.samples_per_task} and "
                f"max_new_tokens={profile.max_new_tokens} must be positive"
            )
        return profile


_CACHE: dict[str, LLMProfile] = {}


def load_profile(name_or_path: str | Path) -> LLMProfile:
    """Load a profile by shipped name (e.g. ``"gptj6b-a800-optimised"``) or by JSON path.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        A stem listed by :func:`available_profiles`, or a path to a profile JSON file.
    """
    key = str(name_or_path)
    if key in _CACHE:
        return _CACHE[key]
    path = Path(key)
    if path.suffix != ".json":
        path = profile_dir() / f"{key}.json"
    if not path.is_file():
        raise ValueError(
            f"LLM profile {key!r} not found; shipped profiles: {available_profiles()} "
            "(or pass a path to a profile JSON file)"
        )
    with path.open() as fh:
        data = json.load(fh)
    profile = LLMProfile.from_dict(data, path.stem)
    _CACHE[key] = profile
    return profile


# ---------------------------------------------------------------------------------------------
# Derivation of the shipped profiles from the measured H100 reference
# ---------------------------------------------------------------------------------------------

#: Tokens generated per sample (the generation cap), assumed: it covers the canonical solution
#: of 95% of the HumanEval problems (GPT-2 pre-token estimate). A batch of samples decodes until
#: its longest sample stops, so every wave decodes the cap, and memory is reserved for it.
MAX_NEW_TOKENS = 120


def _nonneg_line_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` with ``b >= 0`` (b set to 0 and ``a`` = median if negative)."""
    a, b = np.linalg.lstsq(np.c_[np.ones_like(x), x], y, rcond=None)[0]
    if b < 0:
        return float(np.median(y)), 0.0
    return float(a), float(b)


def _measured_fits(measured: dict[str, Any], mode: str) -> dict[str, float]:
    """Fit prefill and decode lines to one serving mode of the measured reference."""
    m = measured["raw"]["modes"][mode]
    tokens = [p["batch"] * p["prompt_len"] for p in m["prefill"]]
    times = [p["median_ms"] for p in m["prefill"]]
    for d in m["decode"]:
        tokens.append(d["batch"] * d["prompt_len"])
        times.append(d["prefill_in_decode_median_ms"])
    pre_a, pre_b = _nonneg_line_fit(np.asarray(tokens, float), np.asarray(times, float))
    batches = np.asarray([d["batch"] for d in m["decode"]], float)
    steps = np.asarray([d["per_token_median_ms"] for d in m["decode"]], float)
    dec_a, dec_c = _nonneg_line_fit(batches, steps)
    # Peak memory above the weights, per token of context, at the largest measured batch.
    weights_alloc = measured["raw"]["memory"]["weights_only_alloc_gb"]
    if mode == "eager":
        run = max(m["e2e"], key=lambda r: r["batch"])
        ctx = run["prompt_len"] + run["new_tokens"]
    else:
        run = max(m["decode"], key=lambda r: r["batch"])
        ctx = int(m["static_cache_len"])
    per_token = (run["peak_mem_gb"] - weights_alloc) / (run["batch"] * ctx)
    return {
        "prefill_fixed_ms": pre_a,
        "prefill_per_token_ms": pre_b,
        "step_fixed_ms": dec_a,
        "step_per_seq_ms": dec_c,
        "mem_per_token_gib": per_token,
        "weights_alloc_gib": weights_alloc,
    }


def _accuracy_block(
    mean_pass: float, source: str, problems: list[dict[str, Any]]
) -> dict[str, Any]:
    n_samples, k = 200, 100
    difficulty = np.asarray([len(p["canonical_solution"]) for p in problems], float)
    counts = synthesize_num_correct(difficulty, mean_pass, n_samples=n_samples, k=k)
    return {
        "k": k,
        "n_samples": n_samples,
        "target_mean_pass_at_k": mean_pass,
        "mean_pass_at_k": float(pass_at_k_array(n_samples, counts, k).mean()),
        "source": source,
        "per_problem": "assumed: synthesized counts, see docs/environment.md (pass@100 per problem)",
        "task_ids": [p["task_id"] for p in problems],
        "num_correct": [int(c) for c in counts],
    }


def _share_k(
    mode: str,
    step_fixed: float,
    step_per_seq: float,
    floor_ms: float,
    samples: int,
) -> tuple[float, str]:
    """Fraction ``k`` of a task's compute time that stretches when the GPU is shared."""
    if mode == "accelerated":
        # Co-running tasks are batched into the same decode steps: the per-sequence part of a
        # step grows with the other tasks' samples, the fixed part (one read of the weights) is
        # shared.
        k = step_per_seq * samples / (step_fixed + step_per_seq * samples)
        note = (
            "derived: k = c S / (a + c S), the per-sequence part of a batched decode step "
            "(a, c fitted to the measured accelerated decode)"
        )
    else:
        # Without a batcher each task runs its own launch-bound loop and tasks time-slice the
        # GPU: only the part of a step during which the GPU works stretches with the share; the
        # host-side kernel launches do not.
        k = floor_ms / step_fixed
        note = (
            "derived: k = GPU-busy fraction of an eager decode step = memory-bandwidth floor of "
            "the target GPU / measured launch-bound step, at the full-share batch and the median "
            "HumanEval prompt"
        )
    return float(min(1.0, k)), note


def derive_paper_profiles(
    measured_path: str | Path | None = None,
    max_new_tokens: int = MAX_NEW_TOKENS,
    memory_reserve_gib: float = 1.0,
) -> dict[str, dict[str, Any]]:
    """Derive the two paper profiles (cloud A800 optimised, edge RTX 3090 eager) as JSON dicts.

    Scaling (stated in each file's ``derived_from.ratios``): decode and its fixed term by memory
    bandwidth when the mode is bandwidth-bound (accelerated), kept as measured when it is bound by
    host-side kernel launches (eager); prefill per-token cost by fp16 tensor FLOP/s; the memory
    pool is the target GPU's memory minus the measured weights and ``memory_reserve_gib``.

    Parameters
    ----------
    measured_path : str or Path, optional
        The measured reference JSON; defaults to the shipped ``profiles/measured`` copy.
    max_new_tokens : int
        Tokens generated per sample, decoded by every wave and reserved in memory (assumed).
    memory_reserve_gib : float
        GPU memory kept back for the CUDA context and allocator (assumed).
    """
    from environments.tasks import load_humaneval

    path = (
        Path(measured_path)
        if measured_path
        else profile_dir() / "measured" / "gptj6b_h100_profile.json"
    )
    with path.open() as fh:
        measured = json.load(fh)
    facts = measured["raw"]["meta"]["model_facts"]
    tasks = load_humaneval()
    problems = [{"task_id": t.task_id, "canonical_solution": t.canonical_solution} for t in tasks]
    prompt_tokens = np.asarray([t.prompt_tokens for t in tasks], float)
    max_prompt = int(prompt_tokens.max())
    median_prompt = float(np.median(prompt_tokens))
    samples = 100
    ref = GPU_DATASHEET["H100-SXM-80GB"]
    out: dict[str, dict[str, Any]] = {}
    specs = [
        ("gptj6b-a800-optimised", "A800-80GB", "accelerated", 0.1159, "cloud"),
        ("gptj6b-rtx3090-eager", "RTX3090", "eager", 0.1892, "edge"),
    ]
    for stem, gpu_key, mode, mean_pass, role in specs:
        gpu = GPU_DATASHEET[gpu_key]
        fits = _measured_fits(measured, mode)
        bw_ratio = float(ref["mem_bandwidth_gbs"]) / float(gpu["mem_bandwidth_gbs"])
        flop_ratio = float(ref["fp16_tflops"]) / float(gpu["fp16_tflops"])
        if mode == "accelerated":
            # CUDA graphs remove launch overhead: the step is bound by memory traffic, so both
            # terms scale with bandwidth.
            step_fixed = fits["step_fixed_ms"] * bw_ratio
            step_per_seq = fits["step_per_seq_ms"] * bw_ratio
            decode_note = "step terms x bandwidth ratio (bandwidth-bound)"
        else:
            # Eager decode is bound by host-side kernel launches (about the same ms/token from
            # batch 1 to 100 on the H100), so it is kept as measured; the bandwidth floor of the
            # target GPU still applies through decode_step_ms.
            step_fixed = fits["step_fixed_ms"]
            step_per_seq = fits["step_per_seq_ms"]
            decode_note = "kept as measured (launch-bound), bounded below by the bandwidth floor"
        pool = float(gpu["memory_gib"]) - fits["weights_alloc_gib"] - memory_reserve_gib
        slot = fits["mem_per_token_gib"] * (max_prompt + max_new_tokens)
        batch = min(samples, math.floor(pool / slot))
        waves = -(-samples // batch)
        wave_batch = -(-samples // waves)
        kv = float(facts["kv_cache_bytes_per_token_per_sequence"])
        context = median_prompt + 0.5 * max_new_tokens
        floor_ms = (float(facts["weights_bytes"]) + wave_batch * context * kv) / (
            float(gpu["mem_bandwidth_gbs"]) * 1e6
        )
        share_k, share_note = _share_k(mode, step_fixed, step_per_seq, floor_ms, wave_batch)
        out[stem] = {
            "format_version": PROFILE_FORMAT_VERSION,
            "name": stem,
            "role": role,
            "model": {
                "name": "GPT-J-6B",
                "n_params": 6053381344,
                "weights_gib": fits["weights_alloc_gib"],
            },
            "gpu": {"key": gpu_key, **gpu},
            "serving": {
                "mode": mode,
                "description": (
                    "optimised server (static KV cache, compiled decode with CUDA graphs, "
                    "cross-request batching), as the paper's Triton-served A800"
                    if mode == "accelerated"
                    else "unaccelerated Hugging Face generate (fp16, eager attention), as the "
                    "paper's edge RTX 3090"
                ),
                "batching": "static: one batch slot per sample, sized for the longest "
                "admitted sequence (max_prompt_tokens + max_new_tokens)",
                "max_prompt_tokens": max_prompt,
            },
            "derived_from": {
                "file": "measured/gptj6b_h100_profile.json",
                "mode": mode,
                "reference_gpu": ref,
                "ratios": {
                    "mem_bandwidth_h100_over_target": round(bw_ratio, 4),
                    "fp16_flops_h100_over_target": round(flop_ratio, 4),
                },
                "fits_on_h100": {k: round(v, 6) for k, v in fits.items()},
            },
            "generation": {
                "samples_per_task": samples,
                "max_new_tokens": max_new_tokens,
                "note": "every wave decodes max_new_tokens steps (a batch of samples ends with "
                "its longest sample); memory is reserved for the same length",
            },
            "prefill": {
                "fixed_ms": round(fits["prefill_fixed_ms"], 4),
                "per_token_ms": round(fits["prefill_per_token_ms"] * flop_ratio, 6),
                "shared_prefix": True,
                "note": "fixed term host-bound, kept as measured; per-token term x FLOP ratio",
            },
            "decode": {
                "step_fixed_ms": round(step_fixed, 4),
                "step_per_seq_ms": round(step_per_seq, 6),
                "weights_bytes": float(facts["weights_bytes"]),
                "kv_bytes_per_token": kv,
                "note": decode_note,
            },
            "memory": {
                "pool_gib": round(pool, 4),
                "per_token_gib": round(fits["mem_per_token_gib"], 8),
                "reserve_gib": memory_reserve_gib,
                "note": "pool = GPU memory - measured weights - reserve; per-token = measured "
                "peak above weights / (batch x context)",
            },
            "share_scaling": {
                "form": "t = t_full * ((1 - k) + k / share)",
                "k": round(share_k, 4),
                "note": share_note,
            },
            "accuracy": _accuracy_block(
                mean_pass,
                f"He et al. (TMC 2024) Table I, {role} pass@100 = {mean_pass}",
                problems,
            ),
            "assumed": [
                "generation.max_new_tokens",
                "serving.batching",
                "prefill.shared_prefix",
                "memory.reserve_gib",
                "accuracy.num_correct (per-problem spread)",
                "gpu.memory_gib",
            ],
        }
    return out


def write_paper_profiles(directory: str | Path) -> list[Path]:
    """Write the derived paper profiles as JSON files into ``directory`` (created if missing).

    To refresh the shipped files, pass :func:`profile_dir` from a source checkout.
    """
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, doc in derive_paper_profiles().items():
        path = target / f"{stem}.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        paths.append(path)
    _CACHE.clear()
    return paths


class ProfileTable(NamedTuple):
    """Parameters of several profiles stacked as arrays (one row per server), for vectorised use.

    Every field is a numpy array of shape (n_rows,).
    """

    samples: np.ndarray
    max_new_tokens: np.ndarray
    slot_gib: np.ndarray
    prefill_fixed_ms: np.ndarray
    prefill_per_token_ms: np.ndarray
    shared_prefix: np.ndarray
    step_fixed_ms: np.ndarray
    step_per_seq_ms: np.ndarray
    weights_bytes: np.ndarray
    kv_bytes_per_token: np.ndarray
    bandwidth_bytes_per_ms: np.ndarray
    pool_gib: np.ndarray
    share_k: np.ndarray

    @classmethod
    def from_profiles(cls, profiles: list[LLMProfile]) -> ProfileTable:
        """Stack ``profiles`` (one per server) into a table."""

        def col(attr: str) -> np.ndarray:
            return np.asarray([float(getattr(p, attr)) for p in profiles], dtype=np.float64)

        return cls(
            samples=col("samples_per_task"),
            max_new_tokens=col("max_new_tokens"),
            slot_gib=col("slot_gib"),
            prefill_fixed_ms=col("prefill_fixed_ms"),
            prefill_per_token_ms=col("prefill_per_token_ms"),
            shared_prefix=col("shared_prefix"),
            step_fixed_ms=col("step_fixed_ms"),
            step_per_seq_ms=col("step_per_seq_ms"),
            weights_bytes=col("weights_bytes"),
            kv_bytes_per_token=col("kv_bytes_per_token"),
            bandwidth_bytes_per_ms=col("mem_bandwidth_gbs") * 1e6,
            pool_gib=col("memory_pool_gib"),
            share_k=col("share_k"),
        )


def compute_time_vec(
    table: ProfileTable,
    rows: np.ndarray,
    prompt_tokens: np.ndarray | float,
    compute_share: np.ndarray,
    memory_share: np.ndarray,
) -> np.ndarray:
    """Vectorised :meth:`LLMProfile.compute_time` over candidates.

    Parameters
    ----------
    table : ProfileTable
    rows : numpy.ndarray of int, shape (K,)
        Row (server) of each candidate.
    prompt_tokens : float or numpy.ndarray, shape (K,)
    compute_share, memory_share : numpy.ndarray, shape (K,)

    Returns
    -------
    numpy.ndarray, shape (K,)
        Seconds, ``inf`` where the compute share is zero or memory holds no sample.
    """
    s = table.samples[rows]
    mem = memory_share * table.pool_gib[rows]
    per_wave = np.minimum(s, np.floor(mem / table.slot_gib[rows]))
    ok = (per_wave >= 1.0) & (compute_share > 0.0) & (memory_share > 0.0)
    per_wave = np.where(ok, per_wave, 1.0)
    waves = np.ceil(s / per_wave)
    batch = np.ceil(s / waves)
    n_prefill = np.where(table.shared_prefix[rows] > 0, 1.0, batch * waves)
    prefill = (
        table.prefill_fixed_ms[rows] + table.prefill_per_token_ms[rows] * prompt_tokens * n_prefill
    )
    new = table.max_new_tokens[rows]
    linear = table.step_fixed_ms[rows] + table.step_per_seq_ms[rows] * batch
    floor = (
        table.weights_bytes[rows]
        + batch * (prompt_tokens + 0.5 * new) * table.kv_bytes_per_token[rows]
    ) / table.bandwidth_bytes_per_ms[rows]
    t1 = (prefill + waves * new * np.maximum(linear, floor)) / 1000.0
    share = np.where(ok, compute_share, 1.0)
    k = table.share_k[rows]
    t = t1 * ((1.0 - k) + k / share)
    return np.where(ok, t, np.inf)


def main(argv: list[str] | None = None) -> int:
    """``python -m environments.llm_profiles OUT_DIR``: write the derived paper profiles."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(
            "usage: python -m environments.llm_profiles OUT_DIR  (writes the derived paper "
            "profiles there; pass environments/profiles of a source checkout to refresh them)",
            file=sys.stderr,
        )
        return 2
    for p in write_paper_profiles(args[0]):
        print(p)
    return 0


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    raise SystemExit(main())
