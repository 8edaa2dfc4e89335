"""Speed of the engine's categorical paths now against an earlier revision, side by side.

Run ``python benchmarks/engine_regression.py --base <git revision>`` from the repository root.
The engine (``aif``) of the base revision is extracted with ``git archive`` into a temporary
directory under another package name, so both versions run in this one process on the same
seeded models. Calls alternate (base, now, base, now, ...) so machine load falls on both alike;
the ratio is now / base (above 1 means slower than before).
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

import aif.exact as new_exact
import aif.planning as new_planning
from generative_models.categorical import CategoricalPOMDP

MODELS: dict[str, dict[str, Any]] = {
    "small": dict(num_states=[3, 2], num_obs=[4, 3, 2], num_controls=[2, 3], policy_len=2),
    "medium": dict(num_states=[4, 3, 3], num_obs=[5, 4], num_controls=[3, 2, 1], policy_len=3),
}


def _import_base(revision: str, root: Path) -> tuple[Any, Any]:
    """The base revision's ``aif.exact`` and ``aif.planning``, imported as ``aif_base``."""
    archive = subprocess.run(
        ["git", "archive", revision, "aif"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    package = root / "aif_base"
    (root / "aif").rename(package)
    for path in package.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\baif\.", "aif_base.", text), encoding="utf-8")
    sys.path.insert(0, str(root))
    import aif_base.exact as base_exact  # type: ignore[import-not-found]
    import aif_base.planning as base_planning  # type: ignore[import-not-found]

    return base_exact, base_planning


def _svi_rows(pomdp: CategoricalPOMDP, pairs: int) -> None:
    """Belief fitting and Monte Carlo EFE of the base revision and now (a few pairs)."""
    import warnings

    import aif_base.free_energy as base_fe  # type: ignore[import-not-found]
    import aif_base.inference as base_inf  # type: ignore[import-not-found]
    import pyro

    import aif.free_energy as new_fe
    import aif.inference as new_inf

    assert pomdp.C is not None and pomdp.policies is not None and pomdp.D is not None
    obs = [[1] * len(pomdp.A)]
    qs = list(pomdp.D)
    log_C = [torch.log_softmax(c, 0) for c in pomdp.C]
    pyro.settings.set(module_local_params=True)
    warnings.simplefilter("ignore")

    def fit(module: Any) -> Any:
        guide = pomdp.make_guide(T=1)
        return module.fit_beliefs(pomdp.model, guide, obs, num_steps=50, lr=0.1, early_stop=False)

    def efe(module: Any) -> Any:
        return module.efe_mc(
            pomdp.model,
            pomdp.policies,
            prior=qs,
            observe_initial=False,
            log_C=log_C,
            num_particles=200,
        )

    for label, call, mods in (
        ("fit_beliefs, 50 steps", fit, (base_inf, new_inf)),
        ("efe_mc, 200 particles", efe, (base_fe, new_fe)),
    ):
        before, now = _paired(partial(call, mods[0]), partial(call, mods[1]), pairs)
        print(f"  {label:34s} {before * 1e3:8.1f} -> {now * 1e3:8.1f} ms  x{now / before:5.2f}")


def _paired(before: Callable[[], Any], now: Callable[[], Any], pairs: int) -> tuple[float, float]:
    """Median seconds of each, timed in alternation, the order swapped every pair."""
    for _ in range(max(10, pairs // 10)):
        before()
        now()
    a, b = [], []
    clock = time.perf_counter
    for i in range(pairs):
        first, second, out_first, out_second = (before, now, a, b) if i % 2 else (now, before, b, a)
        start = clock()
        first()
        out_first.append(clock() - start)
        start = clock()
        second()
        out_second.append(clock() - start)
    return statistics.median(a), statistics.median(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--svi-pairs", type=int, default=10, help="pairs of the SVI/MC rows")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        base_exact, base_planning = _import_base(args.base, Path(tmp))
        print(f"torch {torch.__version__}, 1 thread; now / base {args.base}, {args.pairs} pairs")
        for name, sizes in MODELS.items():
            print(f"\n{name} model")
            pomdp = CategoricalPOMDP.random(**sizes, seed=0)
            _compare(pomdp, base_exact, base_planning, args.pairs)
            _svi_rows(pomdp, args.svi_pairs)


def _compare(pomdp: CategoricalPOMDP, base_exact: Any, base_planning: Any, pairs: int) -> None:
    """Time every categorical path of one model in the base revision and now."""
    assert pomdp.D is not None and pomdp.C is not None and pomdp.policies is not None
    A, B, C, D, pol = pomdp.A, pomdp.B, pomdp.C, pomdp.D, pomdp.policies
    obs = [1] * len(A)
    qs = new_exact.infer_states_fpi(A, obs, D)
    actions = [[0] * len(D)] * 2
    engines = (base_exact.ExactStateInference(A), new_exact.ExactStateInference(A))
    evaluators = tuple(
        mod.PolicyEvaluator(A, B, C, pol, 16.0, pomdp.log_E, info_gain="per_modality")
        for mod in (base_planning, new_planning)
    )
    q_pi = evaluators[1].evaluate(qs).q_pi
    modules = ((base_exact, base_planning), (new_exact, new_planning))
    calls: dict[str, Callable[[int], Any]] = {
        "infer_states_exact": lambda k: modules[k][0].infer_states_exact(A, obs, D),
        "infer_states_fpi": lambda k: modules[k][0].infer_states_fpi(A, obs, D),
        "filter_states, 3 steps": lambda k: modules[k][0].filter_states(
            A, B, D, [obs] * 3, actions
        ),
        "efe_categorical, per modality": lambda k: modules[k][1].efe_categorical(
            qs, A, B, C, pol, info_gain="per_modality"
        ),
        "efe_categorical, joint": lambda k: modules[k][1].efe_categorical(qs, A, B, C, pol),
        "select_action": lambda k: modules[k][1].select_action(q_pi, pol),
        "ExactStateInference.update": lambda k: engines[k].update(obs, D),
        "PolicyEvaluator.evaluate": lambda k: evaluators[k].evaluate(qs),
    }
    for label, call in calls.items():
        before, now = _paired(partial(call, 0), partial(call, 1), pairs)
        print(f"  {label:34s} {before * 1e3:8.4f} -> {now * 1e3:8.4f} ms  x{now / before:5.2f}")


if __name__ == "__main__":
    main()
