"""One fit, two stacks: aif.fitting (Pyro NUTS) against pymdp 1.x agents inside numpyro's NUTS.

Run ``python benchmarks/fit_vs_numpyro.py``. Simulated T-maze subjects (the recovery study's
task, ``examples/fit_recovery.py``) are fitted for policy precision, reward preference and cue
habit, with the same priors, the same agent (mean-field fixed-point inference, per-modality
information gain, two-step policies, actions drawn from ``softmax(alpha log q(pi))``), the same
data and the same NUTS budget on both sides. The program prints:

* the action log-likelihood of both codes at the same parameter values (their models agree);
* every subject's posterior mean and 90% interval from both fits, side by side;
* wall time of each fit and of one likelihood-and-gradient evaluation, with ratios
  (aif / numpyro: below 1 means aif is faster). numpyro's fit time includes its JIT
  compilation; how long compiling takes on its own (a one-step run) is printed beside it.

pymdp runs in float64 here (``jax_enable_x64``) so the two likelihoods can be compared to
rounding. Needs the ``pymdp`` extra (pymdp and numpyro).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from fit_recovery import (  # noqa: E402
    Population,
    directions,
    draw_population,
    free_parameters,
    simulate_subject,
    tmaze_known_payout,
)

from aif.fitting import (  # noqa: E402
    AgentTemplate,
    _FixedBeliefLikelihood,
    action_log_likelihood,
    agent_parameters,
    fit_agent,
    stack_subjects,
)


def numpyro_fit(
    pomdp: Any,
    batch: Any,
    population: Population,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    seed: int,
) -> tuple[dict[str, np.ndarray], float, float, Any]:
    """NUTS in numpyro over pymdp 1.x agents; returns samples, fit seconds, compile seconds."""
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as ndist
    from jax import lax
    from numpyro.infer import MCMC, NUTS
    from pymdp.agent import Agent
    from pymdp.maths import log_stable

    S = batch.n_subjects
    C_dir, E_dir = directions(pomdp)

    def batched(xs: list[torch.Tensor]) -> list[Any]:
        return [jnp.broadcast_to(jnp.asarray(x.numpy()), (S, *x.shape)) for x in xs]

    A, B, D = batched(pomdp.A), batched(pomdp.B), batched(pomdp.D)
    C_d = [jnp.asarray(c.numpy()) for c in C_dir]
    E_d = jnp.asarray(E_dir.numpy())
    from pymdp.control import Policies

    # Built outside the traced model: pymdp reads the policy table as concrete values.
    policies = Policies(jnp.asarray(pomdp.policies.numpy()))
    first = np.asarray(pomdp.policies[:, 0, :].numpy())
    obs = jnp.asarray(batch.obs.numpy()).swapaxes(0, 1)  # (K, S, T, M)
    act = jnp.asarray(batch.actions.numpy()).swapaxes(0, 1)  # (K, S, T, F)
    mask = jnp.asarray(batch.mask.numpy()).swapaxes(0, 1)  # (K, S, T)
    T, M = int(obs.shape[2]), int(obs.shape[3])

    def log_lik(gamma: Any, c: Any, e: Any) -> Any:
        """Summed log-probability of each subject's decisions, shape (S,)."""
        C = [c[:, None] * d[None, :] for d in C_d]
        E = jax.nn.softmax(e[:, None] * E_d[None, :], axis=-1)
        agent = Agent(
            A,
            B,
            C=C,
            D=D,
            E=E,
            policies=policies,
            policy_len=2,
            gamma=gamma,
            alpha=1.0,
            batch_size=S,
            inference_algo="fpi",
            num_iter=16,
            action_selection="stochastic",
            sampling_mode="full",
        )

        def trial(total: Any, xs: tuple[Any, Any, Any]) -> tuple[Any, None]:
            o, a, m = xs
            prior = agent.D
            for t in range(T):
                qs = agent.infer_states([o[:, t, j] for j in range(M)], prior)
                if t < T - 1:
                    q_pi, _ = agent.infer_policies(qs)
                    log_p = jax.nn.log_softmax(1.0 * log_stable(q_pi), axis=-1)
                    match = jnp.all(first[None] == a[:, t][:, None, :], axis=-1)
                    lp = jax.nn.logsumexp(jnp.where(match, log_p, -jnp.inf), axis=-1)
                    total = total + jnp.where(m[:, t], lp, 0.0)
                    prior = agent.update_empirical_prior(a[:, t], qs)
            return total, None

        total, _ = lax.scan(trial, jnp.zeros(S), (obs, act, mask))
        return total

    def model() -> None:
        with numpyro.plate("subject", S):
            gamma = numpyro.sample("gamma", ndist.LogNormal(*population.log_gamma))
            c = numpyro.sample("reward_pref", ndist.Normal(*population.reward_pref))
            e = numpyro.sample("cue_habit", ndist.Normal(*population.cue_habit))
            numpyro.factor("actions", log_lik(gamma, c, e))

    # Compilation on its own: one warm-up step and one draw.
    start = time.perf_counter()
    probe = MCMC(NUTS(model), num_warmup=1, num_samples=1, progress_bar=False)
    probe.run(jax.random.PRNGKey(seed))
    compile_s = time.perf_counter() - start
    mcmc = MCMC(
        NUTS(model, max_tree_depth=8),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method="sequential",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(jax.random.PRNGKey(seed))
    fit_s = time.perf_counter() - start
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples().items()}
    return samples, fit_s, compile_s, jax.jit(log_lik)


def _interval(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return x.mean(0), np.quantile(x, 0.05, axis=0), np.quantile(x, 0.95, axis=0)


def _time(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    torch.set_num_threads(1)

    population = Population()
    pomdp = tmaze_known_payout()
    truths = draw_population(args.subjects, population, args.seed)
    subjects = [
        simulate_subject(
            pomdp,
            {k: float(v[i]) for k, v in truths.items()},
            args.trials,
            1000 * args.seed + i,
            label=f"s{i:02d}",
        )
        for i in range(args.subjects)
    ]
    batch = stack_subjects(subjects)
    parameters = free_parameters(pomdp, population)
    template = AgentTemplate.from_model(
        pomdp, inference="fpi", info_gain="per_modality", gamma=1.0, alpha=1.0
    )
    print(
        f"{args.subjects} subjects x {args.trials} T-maze trials; NUTS {args.warmup} warm-up + "
        f"{args.samples} draws x {args.chains} chains on each side (sequential chains)"
    )

    # Numbers in alternation on both sides start with the same model: one likelihood.
    samples_np, fit_np, compile_np, log_lik_np = numpyro_fit(
        pomdp, batch, population, args.warmup, args.samples, args.chains, args.seed
    )
    values = {k: v.clone() for k, v in truths.items()}
    params = agent_parameters(template, parameters, values, args.subjects)
    ours = action_log_likelihood(template, params, batch).log_prob.sum((-1, -2))
    theirs = np.asarray(
        log_lik_np(
            *(jax.numpy.asarray(values[k].numpy()) for k in ("gamma", "reward_pref", "cue_habit"))
        )
    )
    print(
        "action log-likelihood at the true parameters, summed over subjects: "
        f"aif {float(ours.sum()):.6f}, pymdp {float(theirs.sum()):.6f}, largest per-subject "
        f"difference {float(np.abs(ours.numpy() - theirs).max()):.2e}"
    )

    start = time.perf_counter()
    fit = fit_agent(
        template,
        parameters,
        batch,
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        seed=args.seed,
    )
    fit_ours = time.perf_counter() - start
    post = fit.tree["posterior"].to_dataset()

    print()
    print(" parameter    subject   true    aif mean [90% interval]     numpyro mean [90% interval]")
    worst = {}
    for name in ("gamma", "reward_pref", "cue_habit"):
        a_mean, a_lo, a_hi = _interval(post[name].values.reshape(-1, args.subjects))
        n_mean, n_lo, n_hi = _interval(samples_np[name])
        sd = samples_np[name].std(0)
        worst[name] = float(np.max(np.abs(a_mean - n_mean) / sd))
        for i in range(args.subjects):
            print(
                f" {name:12s} {batch.subjects[i]:>6s} {float(truths[name][i]):6.2f}"
                f"   {a_mean[i]:6.2f} [{a_lo[i]:6.2f}, {a_hi[i]:6.2f}]"
                f"       {n_mean[i]:6.2f} [{n_lo[i]:6.2f}, {n_hi[i]:6.2f}]"
            )
    print(
        " largest |mean difference| / numpyro posterior sd: "
        + ", ".join(f"{k} {v:.2f}" for k, v in worst.items())
    )

    # One likelihood-and-gradient evaluation on each side, at the true parameters.
    fixed = _FixedBeliefLikelihood(template, parameters, batch)

    def grad_ours(cached: bool) -> Any:
        v = {k: x.clone().requires_grad_() for k, x in values.items()}
        p = agent_parameters(template, parameters, v, args.subjects)
        lp = fixed(p, v).log_prob if cached else action_log_likelihood(template, p, batch).log_prob
        lp.sum().backward()
        return v["gamma"].grad

    jnp = jax.numpy
    grad_fn = jax.jit(jax.grad(lambda g, c, e: log_lik_np(g, c, e).sum(), argnums=(0, 1, 2)))
    args_np = tuple(jnp.asarray(values[k].numpy()) for k in ("gamma", "reward_pref", "cue_habit"))

    def grad_theirs() -> Any:
        return jax.block_until_ready(grad_fn(*args_np))

    t_cached = _time(lambda: grad_ours(True), 20)
    t_loop = _time(lambda: grad_ours(False), 3)
    t_np = _time(grad_theirs, 20)
    print()
    print(" wall time                                            aif        numpyro    aif/numpyro")
    print(
        f" NUTS fit (numpyro's compiles first: {compile_np:5.1f} s alone) {fit_ours:8.1f} s "
        f"{fit_np:8.1f} s   {fit_ours / fit_np:8.2f}"
    )
    print(
        f" likelihood + gradient, beliefs cached (aif's fit)  {t_cached * 1e3:8.2f} ms"
        f" {t_np * 1e3:8.2f} ms   {t_cached / t_np:8.2f}"
    )
    print(
        f" likelihood + gradient, step by step (learning path) {t_loop * 1e3:7.1f} ms"
        f" {t_np * 1e3:8.2f} ms   {t_loop / t_np:8.2f}"
    )
    div = int(fit.tree["sample_stats"].to_dataset()["diverging"].values.sum())
    print(f" aif divergences: {div}")


if __name__ == "__main__":
    main()
