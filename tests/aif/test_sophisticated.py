"""Sophisticated inference: the tree search against its exhaustive recursion, by-hand pruned
mass, the node budget, the agent shell, and parity with pymdp 1.0.4's ``si_policy_search``.

pymdp's tree search runs in JAX's float32 (its code mixes float32 constants into
``lax.cond`` branches and fails with 64-bit types on), so its calls run inside
``jax.enable_x64(False)`` whatever another test module has switched on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from aif.discrete_agent import DiscreteAgent
from aif.planning import construct_policies, efe_categorical
from aif.sophisticated import (
    SearchSettings,
    action_set,
    sophisticated_efe_recursive,
    sophisticated_search,
)
from generative_models.categorical import CategoricalPOMDP

PARITY_TOL = 1e-6


def _random_model(
    seed: int, ns: list[int], no: list[int], nu: list[int], sharp: float = 3.0
) -> dict[str, list[np.ndarray]]:
    """A random categorical model (columns drawn as u**sharp, normalised) and a belief."""
    rng = np.random.default_rng(seed)

    def cat(shape: tuple[int, ...]) -> np.ndarray:
        x = rng.random(shape) ** sharp + 1e-3
        return x / x.sum(0, keepdims=True)

    return {
        "A": [cat((o, *ns)) for o in no],
        "B": [cat((n, n, u)) for n, u in zip(ns, nu, strict=True)],
        "C": [rng.standard_normal(o) for o in no],
        "qs": [cat((n,)) for n in ns],
    }


def _torch(model: dict[str, list[np.ndarray]]) -> dict[str, list[torch.Tensor]]:
    return {k: [torch.tensor(x) for x in v] for k, v in model.items()}


# --------------------------------------------------------------------------------------------
# The search against the exhaustive recursion and the one-step EFE
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("info_gain", ["joint", "per_modality"])
def test_horizon_one_is_the_one_step_efe_of_every_action(info_gain: str) -> None:
    m = _torch(_random_model(0, [3, 2], [3, 2], [3, 2]))
    result = sophisticated_search(
        m["qs"], m["A"], m["B"], m["C"], SearchSettings(horizon=1), info_gain=info_gain
    )
    ref = efe_categorical(
        m["qs"], m["A"], m["B"], m["C"], action_set([3, 2]).unsqueeze(1), info_gain=info_gain
    )
    for part in ("efe", "risk", "ambiguity", "pragmatic_value", "state_info_gain"):
        assert torch.allclose(getattr(result.efe, part), getattr(ref, part), atol=1e-12), part
    assert torch.allclose(result.q_action, torch.softmax(-16.0 * ref.efe, 0), atol=1e-12)
    assert result.nodes_expanded == 1 and result.depth == 1
    assert torch.equal(result.pruned_mass, torch.zeros(6, dtype=torch.float64))


@pytest.mark.parametrize(
    ("horizon", "branching", "inference"),
    [
        (2, "joint", "exact"),
        (2, "per_modality", "fpi"),
        (3, "joint", "fpi"),
        (3, "per_modality", "exact"),
    ],
)
def test_no_threshold_and_no_budget_is_the_exhaustive_recursion(
    horizon: int, branching: str, inference: str
) -> None:
    m = _torch(_random_model(1, [3, 2], [3, 2], [2, 2]))
    settings = SearchSettings(horizon=horizon, branching=branching)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = dict(gamma=2.0, inference=inference, info_gain="per_modality")
    result = sophisticated_search(m["qs"], m["A"], m["B"], m["C"], settings, **kwargs)
    ref = sophisticated_efe_recursive(
        m["qs"], m["A"], m["B"], m["C"], horizon, branching=branching, **kwargs
    )
    assert torch.allclose(result.efe.efe, ref, atol=1e-10), (result.efe.efe, ref)
    assert torch.allclose(result.q_action, torch.softmax(-2.0 * ref, 0), atol=1e-12)
    # The identity of the parts holds through the recursion.
    parts = result.efe
    assert torch.allclose(parts.risk + parts.ambiguity, parts.efe, atol=1e-10)
    assert torch.allclose(-parts.pragmatic_value - parts.state_info_gain, parts.efe, atol=1e-10)
    # Every node of the full tree: sum over depths of (actions x outcomes)^depth.
    assert result.nodes_expanded == sum((4 * 6) ** d for d in range(horizon))
    assert float(result.pruned_mass.abs().max()) < 1e-12
    assert bool(result.expanded.all())


def test_recursion_is_deeper_than_a_policy_of_the_same_length() -> None:
    """Sophisticated scores differ from policy scores: later actions depend on outcomes."""
    m = _torch(_random_model(2, [4], [4], [3], sharp=1.0))
    tree = sophisticated_efe_recursive(m["qs"], m["A"], m["B"], m["C"], 2, gamma=4.0)
    pols = construct_policies([3], 2)
    flat = efe_categorical(m["qs"], m["A"], m["B"], m["C"], pols).efe.reshape(3, 3)
    assert not torch.allclose(tree, flat.min(1).values, atol=1e-3)
    # Choosing after seeing the outcome is never worse than the best fixed continuation would
    # be on average, up to the softmax's own spread at gamma = 4: a loose sanity bound.
    assert bool((tree <= flat.max(1).values + 1e-9).all())


# --------------------------------------------------------------------------------------------
# Pruning, budget and pruned mass
# --------------------------------------------------------------------------------------------


def _switch_world(p: float = 0.9, pref: float = 0.3) -> dict[str, list[torch.Tensor]]:
    """Two states seen exactly; action 0 stays, action 1 swaps; belief (p, 1 - p)."""
    A = [torch.eye(2, dtype=torch.float64)]
    B = [torch.stack([torch.eye(2), torch.eye(2).flip(0)], dim=-1).double()]
    C = [torch.tensor([pref, 0.0], dtype=torch.float64)]
    qs = [torch.tensor([p, 1.0 - p], dtype=torch.float64)]
    return {"A": A, "B": B, "C": C, "qs": qs}


@pytest.mark.parametrize("horizon", [2, 3])
def test_pruned_mass_by_hand_outcome_threshold(horizon: int) -> None:
    # Under either action one outcome has probability 0.1 < 0.2: it is pruned. After the other
    # outcome the state is known, so nothing below is ever uncertain again.
    w = _switch_world()
    settings = SearchSettings(horizon=horizon, outcome_threshold=0.2)
    result = sophisticated_search(w["qs"], w["A"], w["B"], w["C"], settings)
    assert torch.allclose(result.pruned_mass, torch.tensor([0.1, 0.1], dtype=torch.float64))
    # Root, then one node per action at each further depth (the certain branch).
    assert result.nodes_expanded == 1 + 2 * sum(2 ** (d - 1) for d in range(1, horizon))
    full = sophisticated_search(w["qs"], w["A"], w["B"], w["C"], SearchSettings(horizon=horizon))
    assert float(full.pruned_mass.max()) == 0.0


def test_pruned_mass_by_hand_budget() -> None:
    # Budget 2: the root and the most probable node to reach, the outcome 0 of "stay"
    # (preferred, probability 0.9). "stay" loses 0.1 of its mass, "swap" all of it.
    w = _switch_world()
    result = sophisticated_search(
        w["qs"], w["A"], w["B"], w["C"], SearchSettings(horizon=2, max_nodes=2)
    )
    assert result.nodes_expanded == 2
    assert torch.allclose(result.pruned_mass, torch.tensor([0.1, 1.0], dtype=torch.float64))


@pytest.mark.parametrize("budget", [1, 2, 7, 25, 60, 200])
def test_node_budget_is_honoured_exactly(budget: int) -> None:
    m = _torch(_random_model(3, [3, 2], [3, 2], [3, 2]))
    full = 1 + 36 + 36**2
    result = sophisticated_search(
        m["qs"], m["A"], m["B"], m["C"], SearchSettings(horizon=3, max_nodes=budget)
    )
    assert result.nodes_expanded == min(budget, full)
    assert 0.0 <= float(result.pruned_mass.min()) and float(result.pruned_mass.max()) <= 1.0
    if budget == 1:
        one = sophisticated_search(m["qs"], m["A"], m["B"], m["C"], SearchSettings(horizon=1))
        assert torch.allclose(result.q_action, one.q_action, atol=1e-12)
        assert torch.allclose(result.pruned_mass, torch.ones(6, dtype=torch.float64))


def test_a_budget_above_the_tree_size_changes_nothing() -> None:
    m = _torch(_random_model(4, [3], [3, 2], [2]))
    full = 1 + 12 + 12**2
    free = sophisticated_search(m["qs"], m["A"], m["B"], m["C"], SearchSettings(horizon=3))
    capped = sophisticated_search(
        m["qs"], m["A"], m["B"], m["C"], SearchSettings(horizon=3, max_nodes=full)
    )
    assert free.nodes_expanded == capped.nodes_expanded == full
    assert torch.equal(free.q_action, capped.q_action)


def test_action_threshold_prunes_but_keeps_the_best_action() -> None:
    m = _torch(_random_model(5, [4], [4], [5], sharp=4.0))
    settings = SearchSettings(horizon=3, action_threshold=0.3)
    result = sophisticated_search(m["qs"], m["A"], m["B"], m["C"], settings, gamma=4.0)
    assert 1 <= int(result.expanded.sum()) < 5
    assert bool(result.expanded[int(result.q_action.argmax())])
    # A pruned action has probability zero at the root, and costs fewer nodes.
    assert float(result.q_action[~result.expanded].abs().sum()) == 0.0
    full = sophisticated_search(
        m["qs"], m["A"], m["B"], m["C"], SearchSettings(horizon=3), gamma=4.0
    )
    assert result.nodes_expanded < full.nodes_expanded


def test_wide_trees_finish_within_the_budget() -> None:
    """25 actions and 5 x 5 x 4 = 100 joint outcomes: far past pymdp's max_branching of 10."""
    m = _torch(_random_model(6, [5, 5], [5, 5, 4], [5, 5]))
    settings = SearchSettings(horizon=4, max_nodes=300, outcome_threshold=0.01)
    result = sophisticated_search(m["qs"], m["A"], m["B"], m["C"], settings, gamma=4.0)
    assert result.nodes_expanded == 300
    assert result.q_action.shape == (25,)
    assert abs(float(result.q_action.sum()) - 1.0) < 1e-12
    assert 0.0 < float(result.pruned_mass.min()) <= float(result.pruned_mass.max()) <= 1.0


def test_settings_name_the_offending_value() -> None:
    with pytest.raises(ValueError, match="horizon=0"):
        SearchSettings(horizon=0)
    with pytest.raises(ValueError, match="outcome_threshold=1.5"):
        SearchSettings(outcome_threshold=1.5)
    with pytest.raises(ValueError, match="max_nodes=0"):
        SearchSettings(max_nodes=0)
    with pytest.raises(ValueError, match="topk_outcomes=3"):
        SearchSettings(topk_outcomes=3, branching="joint")
    m = _torch(_random_model(0, [3], [2], [2]))
    with pytest.raises(ValueError, match=r"qs has shapes \[\(1, 3\)\]"):
        sophisticated_search([m["qs"][0][None]], m["A"], m["B"], m["C"])


# --------------------------------------------------------------------------------------------
# The agent
# --------------------------------------------------------------------------------------------


def _pomdp(model: dict[str, list[np.ndarray]], policy_len: int = 1, E: Any = None) -> Any:
    t = _torch(model)
    return CategoricalPOMDP(A=t["A"], B=t["B"], C=t["C"], policy_len=policy_len, E=E)


def test_agent_runs_one_tree_per_batch_element() -> None:
    model = _random_model(7, [3, 2], [3, 2], [3, 1])
    settings = SearchSettings(horizon=2, outcome_threshold=0.05)
    agent = DiscreteAgent(
        _pomdp(model), batch_size=3, inference="exact", policy_search="sophisticated",
        search=settings, gamma=4.0,
    )  # fmt: skip
    obs = torch.tensor([[0, 1], [2, 0], [1, 1]])
    qs = agent.infer_states(obs)
    out = agent.infer_policies()
    assert out.q_pi.shape == (3, 3) and out.search is not None and len(out.search) == 3
    t = _torch(model)
    for b in range(3):
        ref = sophisticated_search(
            [q[b] for q in qs], t["A"], t["B"], t["C"], settings, gamma=4.0, inference="exact"
        )
        assert torch.allclose(out.q_pi[b], ref.q_action, atol=1e-12)
        assert torch.allclose(out.efe.efe[b], ref.efe.efe, atol=1e-12)
    action = agent.sample_action()
    assert action.shape == (3, 2) and torch.equal(action[:, 0], out.q_pi.argmax(-1))


def test_agent_habits_reweight_the_root_posterior() -> None:
    model = _random_model(8, [3], [3], [3])
    E = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    kwargs: dict[str, Any] = dict(policy_search="sophisticated", gamma=2.0)
    flat = DiscreteAgent(_pomdp(model, policy_len=2), **kwargs)
    habit_model = _pomdp(model, policy_len=1, E=E)
    habit = DiscreteAgent(habit_model, search=SearchSettings(horizon=2), **kwargs)
    assert flat.search.horizon == 2 and flat.actions.shape == (3, 1)
    q_flat = (flat.infer_states([1]), flat.infer_policies().q_pi)[1]
    q_habit = (habit.infer_states([1]), habit.infer_policies().q_pi)[1]
    expected = q_flat * E
    assert torch.allclose(q_habit, expected / expected.sum(-1, keepdim=True), atol=1e-12)


def test_agent_stochastic_actions_are_seeded() -> None:
    model = _random_model(9, [3], [3], [3])
    runs = []
    for _ in range(2):
        agent = DiscreteAgent(
            _pomdp(model), batch_size=4, policy_search="sophisticated",
            search=SearchSettings(horizon=2), action_selection="stochastic", alpha=1.0, seed=5,
        )  # fmt: skip
        runs.append(torch.stack([agent.step(torch.tensor([[0], [1], [2], [1]])) for _ in range(4)]))
    assert torch.equal(runs[0], runs[1])


def test_agent_rejects_novelty_in_the_tree() -> None:
    model = _random_model(0, [3], [2], [2])
    t = _torch(model)
    pomdp = CategoricalPOMDP(A=t["A"], B=t["B"], pA=[a * 5 for a in t["A"]])
    with pytest.raises(ValueError, match="use_param_info_gain=True with policy_search"):
        DiscreteAgent(pomdp, policy_search="sophisticated", use_param_info_gain=True)
    with pytest.raises(ValueError, match="policy_search='tree'"):
        DiscreteAgent(pomdp, policy_search="tree")  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_search_and_agent_match_the_cpu() -> None:
    m = _torch(_random_model(10, [3, 2], [3, 2], [3, 2]))
    settings = SearchSettings(horizon=3, outcome_threshold=0.02, max_nodes=150)
    cpu = sophisticated_search(m["qs"], m["A"], m["B"], m["C"], settings, inference="fpi")
    g = {k: [x.cuda() for x in v] for k, v in m.items()}
    gpu = sophisticated_search(g["qs"], g["A"], g["B"], g["C"], settings, inference="fpi")
    assert gpu.q_action.device.type == "cuda" and gpu.nodes_expanded == cpu.nodes_expanded
    assert torch.allclose(gpu.q_action.cpu(), cpu.q_action, atol=1e-9)
    assert torch.allclose(gpu.pruned_mass.cpu(), cpu.pruned_mass, atol=1e-9)
    model = _random_model(11, [3, 2], [3, 2], [3, 1])
    obs = torch.tensor([[0, 1], [2, 0]])
    actions = []
    for device in ("cpu", "cuda"):
        agent = DiscreteAgent(
            _pomdp(model), batch_size=2, policy_search="sophisticated", search=settings,
            device=device,
        )  # fmt: skip
        actions.append(agent.step(obs.to(device)).cpu())
        assert agent._q_pi is not None and agent._q_pi.device.type == device
    assert torch.equal(actions[0], actions[1])


# --------------------------------------------------------------------------------------------
# Parity with pymdp 1.0.4's si_policy_search
# --------------------------------------------------------------------------------------------


def _pymdp_search(
    model: dict[str, list[np.ndarray]], horizon: int, threshold: float, entropy_stop: float,
    gamma: float, max_nodes: int, max_branching: int, reps: int = 1,
) -> list[np.ndarray]:  # fmt: skip
    """q(pi) at the root from pymdp's jitted search (float32), as a list per belief given."""
    pytest.importorskip("pymdp")
    import jax
    import jax.numpy as jnp
    from pymdp.agent import Agent
    from pymdp.planning.si import si_policy_search

    with jax.enable_x64(False):

        def f32(xs: list[np.ndarray]) -> list[Any]:
            return [jnp.asarray(x, dtype=jnp.float32) for x in xs]

        agent = Agent(f32(model["A"]), f32(model["B"]), f32(model["C"]), policy_len=1)
        search = si_policy_search(
            horizon=horizon,
            max_nodes=max_nodes,
            max_branching=max_branching,
            policy_prune_threshold=threshold,
            observation_prune_threshold=threshold,
            entropy_stop_threshold=entropy_stop,
            gamma=gamma,
        )
        q_pi, _ = search(agent, [q[None] for q in f32(model["qs"])])
        return [np.asarray(q_pi, dtype=np.float64)[0]]


def _ours(
    model: dict[str, list[np.ndarray]], horizon: int, threshold: float, entropy_stop: float,
    gamma: float,
) -> torch.Tensor:  # fmt: skip
    t = _torch(model)
    settings = SearchSettings.pymdp(
        horizon,
        policy_prune_threshold=threshold,
        observation_prune_threshold=threshold,
        entropy_stop_threshold=entropy_stop,
    )
    result = sophisticated_search(
        t["qs"], t["A"], t["B"], t["C"], settings, gamma=gamma,
        info_gain="per_modality", preferences="raw", inference="fpi",
    )  # fmt: skip
    return result.q_action


def _parity(
    structure: tuple[list[int], list[int], list[int]], seeds: list[int], horizon: int,
    threshold: float = 1 / 16, entropy_stop: float = -1.0, gamma: float = 1.0,
    max_nodes: int = 3000, max_branching: int = 20,
) -> float:  # fmt: skip
    worst = 0.0
    for seed in seeds:
        model = _random_model(seed, *structure)
        (ref,) = _pymdp_search(
            model, horizon, threshold, entropy_stop, gamma, max_nodes, max_branching
        )
        ours = _ours(model, horizon, threshold, entropy_stop, gamma).numpy()
        worst = max(worst, float(np.abs(ours - ref).max()))
    return worst


def test_pymdp_parity_default_thresholds_two_factors() -> None:
    """Two factors, two modalities, horizon 2, pymdp's default pruning (1/16, penalty 512)."""
    worst = _parity(([3, 2], [3, 2], [3, 1]), seeds=[0, 1, 2], horizon=2, max_nodes=600)
    assert worst < PARITY_TOL, worst


@pytest.mark.slow
@pytest.mark.parametrize(
    ("structure", "horizon", "threshold", "entropy_stop", "gamma", "max_nodes"),
    [
        # two factors (one controlled), two modalities, three levels, pruning
        (([3, 2], [3, 2], [3, 1]), 3, 1 / 16, -1.0, 1.0, 3000),
        # one factor, three modalities (18 joint outcomes), pruning
        (([4], [3, 3, 2], [4]), 2, 1 / 16, -1.0, 1.0, 3000),
        # three factors (four actions), mean-field posteriors, pruning, gamma 4
        (([2, 2, 2], [3, 2], [2, 2, 1]), 3, 1 / 16, -1.0, 4.0, 4000),
        # exhaustive: thresholds zero, the whole tree
        (([3, 2], [3, 2], [3, 1]), 2, 0.0, -1.0, 1.0, 500),
        # pymdp's entropy stop at 0.5
        (([3], [3, 2], [3]), 3, 1 / 16, 0.5, 2.0, 3000),
    ],
)
def test_pymdp_parity(
    structure: tuple[list[int], list[int], list[int]], horizon: int, threshold: float,
    entropy_stop: float, gamma: float, max_nodes: int,
) -> None:  # fmt: skip
    worst = _parity(
        structure, seeds=[3, 4], horizon=horizon, threshold=threshold,
        entropy_stop=entropy_stop, gamma=gamma, max_nodes=max_nodes,
    )  # fmt: skip
    assert worst < PARITY_TOL, worst
