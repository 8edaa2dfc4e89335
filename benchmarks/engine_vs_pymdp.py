"""Time per belief update, policy evaluation and rollout: engine and pymdp, side by side.

Run ``python benchmarks/engine_vs_pymdp.py``. Every number is measured in this run on the same
seeded models; ratios are engine time / pymdp 1.x (jitted) time, so below 1 means faster.
The precompiled rows (:class:`aif.exact.ExactStateInference`,
:class:`aif.exact.MeanFieldStateInference`, :class:`aif.planning.PolicyEvaluator`) are built
once before timing, as pymdp's jitted functions are compiled once; each timed call still does
the whole update or evaluation from its inputs. pymdp's belief update is mean-field fixed-point
iteration (16 sweeps), the one :class:`~aif.exact.MeanFieldStateInference` runs; the exact rows
are joint Bayes. The compiled mean-field row (``compile=True``, AOTInductor) prints its compile
time; ``--no-compile`` skips every compiled row.

At the small model both libraries sit at their per-call dispatch floor (tens of microseconds), where
machine load moves a median by more than the difference between them. The single-model block
therefore also times the precompiled paths and pymdp in alternation, call for call (``--paired``
pairs, after a warm-up), so that load falls on both alike, and prints the ratio of the two medians.

The batch block (``--batch``, default 256 medium models, each with its own seeded A, B, C, D)
times one batched call of the precompiled update and policy evaluation against pymdp's jitted
``Agent`` with ``batch_size`` set to the same number, and reports time per agent. For reference it
also times the pre-batch way, one precompiled update per agent in a Python loop. The engine's rows
run in float64 (the models' dtype); pymdp runs in JAX's default float32, so the policy evaluation
is also timed in float32.

The rollout block (``--rollout-batch`` agents, default 256, for ``--rollout-steps`` steps, default
16) runs whole episodes: :class:`aif.rollout.Rollout` with a :class:`aif.rollout.CategoricalEnv`
against pymdp's jitted ``pymdp.envs.rollout.rollout`` with a ``PymdpEnv`` of the same model, for
the small and the medium model, once with one model for every agent and once with each agent its
own. Build and compile times are printed apart from run times; run times are medians of
``--rollout-repeats`` rollouts alternated with pymdp's. Stepping ``DiscreteAgent`` by hand is
timed for reference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from aif.discrete_agent import DiscreteAgent
from aif.exact import (
    ExactStateInference,
    MeanFieldStateInference,
    infer_states_exact,
    infer_states_fpi,
)
from aif.planning import PolicyEvaluator, efe_categorical, policy_posterior
from aif.rollout import CategoricalEnv, Rollout
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
    warmup: int | None = None,
) -> tuple[float, float]:
    """Median seconds per call of ``fn_a`` and ``fn_b``, timed in alternation (a, b, a, b, ...)."""
    for _ in range(max(10, pairs // 10) if warmup is None else warmup):
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
        from aif.expected_free_energy import efe_mc
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
    parser.add_argument("--batch", type=int, default=256, help="agents in the batch block")
    parser.add_argument("--skip-single", action="store_true", help="no single-model block")
    parser.add_argument("--rollout-batch", type=int, default=256, help="agents per rollout")
    parser.add_argument("--rollout-steps", type=int, default=16)
    parser.add_argument("--rollout-repeats", type=int, default=10, help="rollout pairs")
    parser.add_argument("--skip-batch", action="store_true", help="no batch block")
    parser.add_argument("--skip-rollout", action="store_true", help="no rollout block")
    parser.add_argument(
        "--no-compile",
        dest="compile",
        action="store_false",
        help="skip the compiled mean-field rows (AOTInductor; tens of seconds per model at first)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); median of {args.repeats} calls"
    )
    if not args.skip_single:
        for name, sizes in MODELS.items():
            _bench_model(name, sizes, args)
    if args.batch > 0 and not args.skip_batch:
        _bench_batch("medium (3 factors, 2 modalities, len 3)", args)
    if args.rollout_batch > 0 and not args.skip_rollout:
        _bench_rollout(args)


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
    mean_field = MeanFieldStateInference(pomdp.A)
    compiled = MeanFieldStateInference(pomdp.A, compile=True) if args.compile else None
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
        "belief update, precompiled mean-field (MeanFieldStateInference)": _time(
            lambda: mean_field.update(obs, D), args.repeats
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
    if compiled is not None:
        rows["belief update, precompiled mean-field, compiled (AOTInductor)"] = _time(
            lambda: compiled.update(obs, D), args.repeats
        )
    svi = _svi_times(pomdp, obs, args.svi_steps, args.particles)
    if svi is not None:
        rows[f"belief update, SVI path ({args.svi_steps} steps)"] = svi[0]
        rows[f"policy evaluation, SVI/MC path ({args.particles} particles)"] = svi[1]
    print(f"\n{name}: {pomdp.num_policies} policies")
    if compiled is not None:
        print(
            f"  mean-field sweeps compiled (or loaded from the cache) in "
            f"{compiled.compile_seconds:.1f} s"
        )
    if pm is not None:
        print(
            f"  {'pymdp 1.x jitted belief update (mean-field FPI, 16 sweeps)':66s} {pm[0] * 1e3:10.3f} ms"
        )
        print(f"  {'pymdp 1.x jitted policy evaluation':66s} {pm[1] * 1e3:10.3f} ms")
    for label, seconds in rows.items():
        ratio = ""
        if pm is not None:
            ref = pm[0] if label.startswith("belief") else pm[1]
            ratio = f"  x{seconds / ref:8.2f} vs pymdp"
        print(f"  {label:66s} {seconds * 1e3:10.3f} ms{ratio}")
    if fns is None:
        return
    infer, policies_fn, block = fns
    print(f"  in alternation with pymdp, {args.paired} pairs each:")
    pairs: list[tuple[str, Callable[[], Any], Callable[[], Any]]] = [
        ("belief update, precompiled (exact)", lambda: exact.update(obs, D), infer),
        ("belief update, precompiled mean-field", lambda: mean_field.update(obs, D), infer),
        (
            "belief update, mean-field infer_states_fpi",
            lambda: infer_states_fpi(pomdp.A, obs, D),
            infer,
        ),
        (
            "policy evaluation, precompiled (per-modality)",
            lambda: evaluators["per_modality"].evaluate(qs),
            policies_fn,
        ),
    ]
    if compiled is not None:
        pairs.insert(
            2,
            (
                "belief update, precompiled mean-field, compiled",
                lambda: compiled.update(obs, D),
                infer,
            ),
        )
    for label, ours, theirs in pairs:
        t_ours, t_pm = _paired(ours, theirs, args.paired, block)
        print(
            f"    {label:62s} {t_ours * 1e3:8.4f} ms vs pymdp {t_pm * 1e3:8.4f} ms"
            f"  x{t_ours / t_pm:6.2f}"
        )


def _bench_batch(name: str, args: argparse.Namespace) -> None:
    """A batch of models with their own parameters: batched calls against pymdp's batched agent."""
    n = int(args.batch)
    sizes = MODELS[name]
    models = [CategoricalPOMDP.random(**sizes, seed=args.seed + k) for k in range(n)]
    first = models[0]
    assert first.policies is not None

    def stack(attr: str) -> list[torch.Tensor]:
        return [
            torch.stack(list(parts))
            for parts in zip(*[getattr(m, attr) for m in models], strict=True)
        ]

    A, B, C, D = stack("A"), stack("B"), stack("C"), stack("D")
    log_E = torch.stack([m.log_E for m in models])
    g = torch.Generator().manual_seed(args.seed)
    obs = torch.stack([torch.randint(k, (n,), generator=g) for k in first.num_obs], 1)
    exact = ExactStateInference(A, batched=True)
    evaluator = PolicyEvaluator(
        A, B, C, first.policies, 16.0, log_E, info_gain="per_modality", batched=True
    )
    qs = exact.update(obs, D).qs
    # pymdp runs in JAX's default float32; the same evaluator in float32, for a like-for-like row.
    A32, B32, C32 = ([x.to(torch.float32) for x in xs] for xs in (A, B, C))
    evaluator32 = PolicyEvaluator(
        A32, B32, C32, first.policies, 16.0, log_E.float(), info_gain="per_modality", batched=True
    )
    qs32 = [q.float() for q in qs]
    singles = [ExactStateInference(m.A) for m in models]
    obs_rows = obs.tolist()
    D_rows = [list(m.D) for m in models]  # type: ignore[arg-type]

    def loop() -> None:
        for engine, o, d in zip(singles, obs_rows, D_rows, strict=True):
            engine.update(o, d)

    rows = {
        "belief update, precompiled, one call per agent in a loop (before batching)": _time(
            loop, max(3, args.repeats // 10)
        )
        / n,
        "belief update, precompiled, one batched call": _time(
            lambda: exact.update(obs, D), args.repeats
        )
        / n,
        "policy evaluation, precompiled (per-modality), one batched call": _time(
            lambda: evaluator.evaluate(qs), args.repeats
        )
        / n,
        "policy evaluation, as above in float32 (pymdp's dtype here)": _time(
            lambda: evaluator32.evaluate(qs32), args.repeats
        )
        / n,
    }
    print(f"\nbatch of {n} {name} models, each its own A, B, C, D; time per agent")
    ref = _pymdp_batch(models, obs)
    if ref is not None:
        t_infer = _time(ref[0], args.repeats, ref[2]) / n
        t_policies = _time(ref[1], args.repeats, ref[2]) / n
        print(
            f"  {'pymdp 1.x jitted batched belief update (FPI, 16 sweeps)':72s} {t_infer * 1e6:9.2f} us"
        )
        print(f"  {'pymdp 1.x jitted batched policy evaluation':72s} {t_policies * 1e6:9.2f} us")
    for label, seconds in rows.items():
        ratio = ""
        if ref is not None:
            base = t_infer if label.startswith("belief") else t_policies
            ratio = f"  x{seconds / base:7.3f} vs pymdp"
        print(f"  {label:72s} {seconds * 1e6:9.2f} us{ratio}")
    if ref is None:
        return
    print(f"  in alternation with pymdp, {args.paired // 10} pairs each:")
    for label, ours, theirs in (
        ("belief update, batched", lambda: exact.update(obs, D), ref[0]),
        ("policy evaluation, batched (per-modality)", lambda: evaluator.evaluate(qs), ref[1]),
        ("policy evaluation, batched, float32", lambda: evaluator32.evaluate(qs32), ref[1]),
    ):
        t_ours, t_pm = _paired(ours, theirs, max(50, args.paired // 10), ref[2])
        print(
            f"    {label:62s} {t_ours / n * 1e6:8.3f} us vs pymdp {t_pm / n * 1e6:8.3f} us"
            f" per agent  x{t_ours / t_pm:6.3f}"
        )


def _pymdp_batch(
    models: list[CategoricalPOMDP], obs: torch.Tensor
) -> tuple[Callable[[], Any], Callable[[], Any], Callable[[Any], Any]] | None:
    """pymdp 1.x Agent with batch_size = len(models), each element its own model; jitted."""
    try:
        import jax
        import jax.numpy as jnp
        from pymdp.agent import Agent
    except ImportError:
        return None
    first = models[0]
    assert first.policies is not None

    def stack(attr: str) -> list[Any]:
        return [
            jnp.asarray(torch.stack(list(parts)).numpy())
            for parts in zip(*[getattr(m, attr) for m in models], strict=True)
        ]

    agent = Agent(
        A=stack("A"),
        B=stack("B"),
        C=stack("C"),
        D=stack("D"),
        E=jnp.asarray(torch.stack([m.E for m in models]).numpy()),  # type: ignore[misc]
        policies=jnp.asarray(first.policies.numpy()),
        policy_len=first.policy_len,
        gamma=16.0,
        batch_size=len(models),
    )
    obs_j = [jnp.asarray(obs[:, m].numpy()) for m in range(obs.shape[1])]
    infer = jax.jit(lambda o, prior: agent.infer_states(o, prior))
    policies = jax.jit(lambda q: agent.infer_policies(q))
    qs = jax.block_until_ready(infer(obs_j, agent.D))
    jax.block_until_ready(policies(qs))
    return (lambda: infer(obs_j, agent.D)), (lambda: policies(qs)), jax.block_until_ready


def _stack_models(models: list[CategoricalPOMDP], attr: str) -> list[torch.Tensor]:
    return [
        torch.stack(list(parts)) for parts in zip(*[getattr(m, attr) for m in models], strict=True)
    ]


def _bench_rollout(args: argparse.Namespace) -> None:
    """Whole episodes: Rollout against pymdp's jitted rollout, both with their environments."""
    n, steps = int(args.rollout_batch), int(args.rollout_steps)
    print(
        f"\nrollout: {n} agents x {steps} steps (infer states, evaluate policies, act, step the "
        "environments); time per rollout"
    )
    for name, sizes in MODELS.items():
        for own in (False, True):
            models = [
                CategoricalPOMDP.random(**sizes, seed=args.seed + (k if own else 0))
                for k in range(n if own else 1)
            ]
            label = f"{name.split(' ')[0]}, {'each agent its own model' if own else 'one model'}"
            _rollout_rows(label, models, n, steps, args, float32=own and "medium" in name)


def _rollout_rows(
    label: str,
    models: list[CategoricalPOMDP],
    n: int,
    steps: int,
    args: argparse.Namespace,
    float32: bool,
) -> None:
    """Time one rollout setting: build (compile) times, then run times in alternation."""
    own = len(models) > 1
    env_parts = [_stack_models(models, k) if own else getattr(models[0], k) for k in "ABD"]
    env = CategoricalEnv(*env_parts, batch_size=n, seed=args.seed)
    model: Any = models if own else models[0]
    agent = DiscreteAgent(model, batch_size=n, info_gain="per_modality", seed=args.seed)
    start = time.perf_counter()
    plan = Rollout(agent)
    t_build = time.perf_counter() - start
    ours: dict[str, Callable[[], Any]] = {"Rollout.run": lambda: plan.run(env, steps, seed=0)}
    builds = {"Rollout.run": t_build}
    agents = {"": agent}
    if float32:
        agents[", float32 (pymdp's dtype here)"] = DiscreteAgent(
            model, batch_size=n, info_gain="per_modality", seed=args.seed, dtype=torch.float32
        )
    for suffix, each in agents.items():
        for compiled in (False, True) if args.compile else (False,):
            key = "Rollout.run" + (", compiled step (AOTInductor)" if compiled else "") + suffix
            if key in ours:
                continue
            start = time.perf_counter()
            built = Rollout(each, compile=compiled)
            builds[key] = time.perf_counter() - start
            ours[key] = partial(built.run, env, steps, seed=0)

    def by_hand() -> None:
        agent.reset()
        obs = env.reset(seed=0)
        for _ in range(steps):
            obs = env.step(agent.step(obs))

    ref = _pymdp_rollout(models, n, steps)
    print(f"  {label}:")
    if ref is not None:
        run_pm, t_compile, block = ref
        print(
            f"    {'pymdp 1.x jitted rollout: compile (first call less one run)':66s} {t_compile:8.2f} s"
        )
    for key, seconds in builds.items():
        what = "compile" if "compiled" in key else "build (tables, validation)"
        print(f"    {key + ': ' + what:66s} {seconds:8.2f} s")
    t_hand = _time(by_hand, max(2, args.rollout_repeats // 5))
    if ref is None:
        for key, fn in ours.items():
            print(f"    {key:66s} {_time(fn, args.rollout_repeats) * 1e3:8.1f} ms")
        print(f"    {'DiscreteAgent.step by hand (before)':66s} {t_hand * 1e3:8.1f} ms")
        return
    t_pm_block = _time(run_pm, max(2, args.rollout_repeats // 5), block)
    print(
        f"    {'DiscreteAgent.step by hand (before)':66s} {t_hand * 1e3:8.1f} ms"
        f"  x{t_hand / t_pm_block:6.2f} vs pymdp {t_pm_block * 1e3:8.1f} ms"
    )
    for key, fn in ours.items():
        t_ours, t_pm = _paired(fn, run_pm, args.rollout_repeats, block, warmup=2)
        print(
            f"    {key + ', in alternation':66s} {t_ours * 1e3:8.1f} ms"
            f"  x{t_ours / t_pm:6.2f} vs pymdp {t_pm * 1e3:8.1f} ms"
        )


def _pymdp_rollout(
    models: list[CategoricalPOMDP], n: int, steps: int
) -> tuple[Callable[[], Any], float, Callable[[Any], Any]] | None:
    """pymdp 1.x ``rollout`` of a batched Agent in a PymdpEnv, jitted; and its compile time."""
    try:
        import jax
        import jax.numpy as jnp
        import jax.random as jr
        from pymdp.agent import Agent
        from pymdp.envs.env import PymdpEnv
        from pymdp.envs.rollout import rollout as pymdp_rollout
    except ImportError:
        return None
    own = len(models) > 1
    first = models[0]
    assert first.policies is not None and first.C is not None and first.D is not None

    def arrays(attr: str) -> list[Any]:
        if own:
            return [jnp.asarray(x.numpy()) for x in _stack_models(models, attr)]
        return [jnp.asarray(x.numpy()) for x in getattr(first, attr)]

    E_all = [m.E for m in models]
    assert all(e is not None for e in E_all)
    E = torch.stack(E_all) if own else E_all[0]  # type: ignore[arg-type]
    assert E is not None
    agent = Agent(
        A=arrays("A"),
        B=arrays("B"),
        C=arrays("C"),
        D=arrays("D"),
        E=jnp.asarray(E.numpy()),
        policies=jnp.asarray(first.policies.numpy()),
        policy_len=first.policy_len,
        gamma=16.0,
        batch_size=n,
    )
    A0 = [jnp.asarray(a.numpy()) for a in first.A]
    B0 = [jnp.asarray(b.numpy()) for b in first.B]
    D0 = [jnp.asarray(d.numpy()) for d in first.D]
    env = PymdpEnv(A=A0, B=B0, D=D0)
    env_params = {"A": arrays("A"), "B": arrays("B"), "D": arrays("D")} if own else None
    # pymdp's rollout runs num_timesteps + 1 steps.
    run = jax.jit(lambda key: pymdp_rollout(agent, env, steps - 1, key, env_params=env_params))
    key = jr.PRNGKey(0)
    start = time.perf_counter()
    jax.block_until_ready(run(key))
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(run(key))
    one_run = time.perf_counter() - start
    return (lambda: run(key)), first_call - one_run, jax.block_until_ready


if __name__ == "__main__":
    main()
