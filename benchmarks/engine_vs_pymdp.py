"""Time per belief update and per policy evaluation: exact path, SVI path and pymdp, side by side.

Run ``python benchmarks/engine_vs_pymdp.py``. Every number is measured in this run on the same
seeded models; ratios are engine time / pymdp 1.x (jitted) time, so below 1 means faster.
The precompiled rows (:class:`aif.exact.ExactStateInference`, :class:`aif.planning.PolicyEvaluator`)
are built once before timing, as pymdp's jitted functions are compiled once; each timed call
still does the whole update or evaluation from its inputs.

At the small model both libraries sit at their per-call dispatch floor (tens of microseconds), where
machine load moves a median by more than the difference between them. The last block therefore
times the precompiled path and pymdp in alternation, call for call (``--paired`` pairs, after a
warm-up), so that load falls on both alike, and prints the ratio of the two medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from aif.exact import ExactStateInference, infer_states_exact, infer_states_fpi
from aif.planning import PolicyEvaluator, efe_categorical, policy_posterior
from generative_models.categorical import CategoricalPOMDP

MODELS: dict[str, dict[str, Any]] = {
    "small (2 factors, 3 modalities, len 2)": dict(
        num_states=[3, 2], num_obs=[4, 3, 2], num_controls=[2, 3], policy_len=2
    ),
    "medium (3 factors, 2 modalities, len 3)": dict(
        num_states=[4, 3, 3], num_obs=[5, 4], num_controls=[3, 2, 1], policy_len=3
    ),
}


def _time(fn: Callable[[], Any], repeats: int, block: Callable[[Any], Any] = lambda x: x) -> float:
    """Median seconds per call after one warm-up call."""
    block(fn())
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _paired(
    fn_a: Callable[[], Any],
    fn_b: Callable[[], Any],
    pairs: int,
    block_b: Callable[[Any], Any] = lambda x: x,
) -> tuple[float, float]:
    """Median seconds per call of ``fn_a`` and ``fn_b``, timed in alternation (a, b, a, b, ...)."""
    for _ in range(max(10, pairs // 10)):
        fn_a()
        block_b(fn_b())
    a, b = [], []
    clock = time.perf_counter
    for _ in range(pairs):
        start = clock()
        fn_a()
        a.append(clock() - start)
        start = clock()
        block_b(fn_b())
        b.append(clock() - start)
    return statistics.median(a), statistics.median(b)


def _pymdp_fns(
    pomdp: CategoricalPOMDP, obs: list[int]
) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[Any], Any]] | None:
    """pymdp 1.x jitted belief update and policy evaluation of the same model, compiled."""
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    from generative_models.pymdp_io import to_pymdp

    agent = to_pymdp(pomdp, "1.x", gamma=16.0)
    obs_j = [jnp.array([o]) for o in obs]
    infer = jax.jit(lambda o, prior: agent.infer_states(o, prior))
    policies = jax.jit(lambda q: agent.infer_policies(q))
    qs = jax.block_until_ready(infer(obs_j, agent.D))
    jax.block_until_ready(policies(qs))
    return (lambda: infer(obs_j, agent.D)), (lambda: policies(qs)), jax.block_until_ready


def _svi_times(
    pomdp: CategoricalPOMDP, obs: list[int], svi_steps: int, particles: int
) -> tuple[float, float] | None:
    try:
        from aif.free_energy import efe_mc
        from aif.inference import fit_beliefs
    except ImportError:
        return None
    import pyro

    pyro.settings.set(module_local_params=True)
    guide = pomdp.make_guide(T=1)
    start = time.perf_counter()
    fit_beliefs(pomdp.model, guide, [obs], num_steps=svi_steps, lr=0.1, early_stop=False)
    t_belief = time.perf_counter() - start
    qs = [q for q in guide.marginals()[0]]
    assert pomdp.policies is not None
    start = time.perf_counter()
    efe_mc(
        pomdp.model,
        pomdp.policies,
        actions=None,
        prior=qs,
        observe_initial=False,
        log_C=[torch.log_softmax(c, 0) for c in pomdp.C or []],
        num_particles=particles,
    )
    t_policy = time.perf_counter() - start
    return t_belief, t_policy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--paired", type=int, default=5000, help="alternating call pairs")
    parser.add_argument("--svi-steps", type=int, default=200)
    parser.add_argument("--particles", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median of {args.repeats} calls"
    )
    for name, sizes in MODELS.items():
        _bench_model(name, sizes, args)


def _bench_model(name: str, sizes: dict[str, Any], args: argparse.Namespace) -> None:
    """Time and print every path on one model."""
    pomdp = CategoricalPOMDP.random(**sizes, seed=args.seed)
    g = torch.Generator().manual_seed(args.seed)
    obs = [int(torch.randint(n, (1,), generator=g)) for n in pomdp.num_obs]
    assert pomdp.policies is not None and pomdp.C is not None and pomdp.D is not None
    policies, C, D = pomdp.policies, pomdp.C, pomdp.D
    qs = infer_states_fpi(pomdp.A, obs, D)

    def plan(kind: str) -> torch.Tensor:
        res = efe_categorical(qs, pomdp.A, pomdp.B, C, policies, info_gain=kind)  # type: ignore[arg-type]
        return policy_posterior(res.efe, 16.0, pomdp.log_E)

    exact = ExactStateInference(pomdp.A)
    evaluators = {
        kind: PolicyEvaluator(pomdp.A, pomdp.B, C, policies, 16.0, pomdp.log_E, info_gain=kind)  # type: ignore[arg-type]
        for kind in ("per_modality", "joint")
    }

    rows = {
        "belief update, exact path (mean-field FPI, 16 sweeps)": _time(
            lambda: infer_states_fpi(pomdp.A, obs, D), args.repeats
        ),
        "belief update, exact path (joint Bayes)": _time(
            lambda: infer_states_exact(pomdp.A, obs, D), args.repeats
        ),
        "policy evaluation, exact path (per-modality, as pymdp)": _time(
            lambda: plan("per_modality"), args.repeats
        ),
        "policy evaluation, exact path (joint outcomes)": _time(
            lambda: plan("joint"), args.repeats
        ),
        "belief update, precompiled (ExactStateInference)": _time(
            lambda: exact.update(obs, D), args.repeats
        ),
        "policy evaluation, precompiled (PolicyEvaluator, per-modality)": _time(
            lambda: evaluators["per_modality"].evaluate(qs), args.repeats
        ),
        "policy evaluation, precompiled (PolicyEvaluator, joint)": _time(
            lambda: evaluators["joint"].evaluate(qs), args.repeats
        ),
    }
    # pymdp's jitted functions, compiled once for the block timings and the paired ones.
    fns = _pymdp_fns(pomdp, obs)
    pm = (
        None
        if fns is None
        else (_time(fns[0], args.repeats, fns[2]), _time(fns[1], args.repeats, fns[2]))
    )
    svi = _svi_times(pomdp, obs, args.svi_steps, args.particles)
    if svi is not None:
        rows[f"belief update, SVI path ({args.svi_steps} steps)"] = svi[0]
        rows[f"policy evaluation, SVI/MC path ({args.particles} particles)"] = svi[1]
    print(f"\n{name}: {pomdp.num_policies} policies")
    if pm is not None:
        print(f"  {'pymdp 1.x jitted belief update':64s} {pm[0] * 1e3:10.3f} ms")
        print(f"  {'pymdp 1.x jitted policy evaluation':64s} {pm[1] * 1e3:10.3f} ms")
    for label, seconds in rows.items():
        ratio = ""
        if pm is not None:
            ref = pm[0] if label.startswith("belief") else pm[1]
            ratio = f"  x{seconds / ref:8.2f} vs pymdp"
        print(f"  {label:64s} {seconds * 1e3:10.3f} ms{ratio}")
    if fns is None:
        return
    infer, policies_fn, block = fns
    print(f"  in alternation with pymdp, {args.paired} pairs each:")
    for label, ours, theirs in (
        ("belief update, precompiled", lambda: exact.update(obs, D), infer),
        (
            "policy evaluation, precompiled (per-modality)",
            lambda: evaluators["per_modality"].evaluate(qs),
            policies_fn,
        ),
    ):
        t_ours, t_pm = _paired(ours, theirs, args.paired, block)
        print(
            f"    {label:62s} {t_ours * 1e3:8.4f} ms vs pymdp {t_pm * 1e3:8.4f} ms"
            f"  x{t_ours / t_pm:6.2f}"
        )


if __name__ == "__main__":
    main()
