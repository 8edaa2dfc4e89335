"""Tests of the discrete agent: batches, inference modes, learning, seeds, devices."""

from __future__ import annotations

import pytest
import torch

from aif.discrete_agent import DiscreteAgent
from aif.learning import update_pA, update_pB
from aif.maths import softmax, stable_log
from aif.planning import action_marginals
from aif.sequence import smooth_states
from generative_models.categorical import CategoricalPOMDP

T = 5


def _pomdp(seed: int = 1) -> CategoricalPOMDP:
    return CategoricalPOMDP.random([3, 2], [3, 2], [2, 2], policy_len=2, seed=seed, dirichlet=True)


def _observations(pomdp: CategoricalPOMDP, batch: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack(
        [
            torch.stack([torch.randint(n, (batch,), generator=g) for n in pomdp.num_obs], 1)
            for _ in range(T)
        ]
    )


@pytest.mark.parametrize("inference", ["fpi", "exact", "mmp", "smooth"])
def test_a_batch_is_a_population_of_independent_agents(inference: str) -> None:
    pomdp = _pomdp()
    obs = _observations(pomdp, 3)
    kwargs = dict(
        inference=inference,
        inference_horizon=3,
        learn_A=True,
        learn_B=True,
        use_param_info_gain=True,
    )
    batch = DiscreteAgent(pomdp, batch_size=3, **kwargs)  # type: ignore[arg-type]
    singles = [DiscreteAgent(pomdp, **kwargs) for _ in range(3)]  # type: ignore[arg-type]
    for t in range(T):
        actions = batch.step(obs[t])
        assert actions.shape == (3, 2)
        for b, agent in enumerate(singles):
            assert agent.step(obs[t, b].tolist())[0].tolist() == actions[b].tolist()
            assert agent.qs is not None and batch.qs is not None
            for f in range(2):
                assert torch.allclose(agent.qs[f][0], batch.qs[f][b], atol=1e-12)
    batch.end_episode()
    for b, agent in enumerate(singles):
        agent.end_episode()
        assert agent.pA is not None and batch.pA is not None
        assert agent.pB is not None and batch.pB is not None
        for m in range(2):
            assert torch.allclose(agent.pA[m][0], batch.pA[m][b], atol=1e-12)
        for f in range(2):
            assert torch.allclose(agent.pB[f][0], batch.pB[f][b], atol=1e-12)
    # Learning moved the counts.
    assert pomdp.pA is not None
    assert float((batch.pA[0][0] - pomdp.pA[0]).abs().max()) > 0.5


def test_one_model_per_batch_element() -> None:
    models = [_pomdp(seed) for seed in (2, 3)]
    obs = _observations(models[0], 2, seed=1)
    batch = DiscreteAgent(models, inference="exact")
    singles = [DiscreteAgent(m, inference="exact") for m in models]
    for t in range(T):
        actions = batch.step(obs[t])
        for b, agent in enumerate(singles):
            assert agent.step(obs[t, b].tolist())[0].tolist() == actions[b].tolist()
            assert agent._q_pi is not None and batch._q_pi is not None
            assert torch.allclose(agent._q_pi[0], batch._q_pi[b], atol=1e-12)


def test_exact_and_fpi_agree_with_one_factor_and_history_is_recorded() -> None:
    pomdp = CategoricalPOMDP.random([4], [3, 2], [3], policy_len=2, seed=5)
    obs = _observations(pomdp, 1, seed=2)
    exact, fpi = DiscreteAgent(pomdp, inference="exact"), DiscreteAgent(pomdp, inference="fpi")
    for t in range(T):
        assert exact.step(obs[t, 0].tolist()).tolist() == fpi.step(obs[t, 0].tolist()).tolist()
        assert exact.qs is not None and fpi.qs is not None
        assert torch.allclose(exact.qs[0], fpi.qs[0], atol=1e-12)
    assert [step.t for step in exact.history] == list(range(T))
    assert exact.history[-1].action is not None and exact.history[-1].q_pi is not None
    assert exact.history[0].efe is not None and exact.history[0].efe.efe.shape == (1, 9)
    # The prior of every later step is the last posterior pushed through B with the action.
    for t in range(1, T):
        prev, now = fpi.history[t - 1], fpi.history[t]
        assert prev.action is not None
        expected = pomdp.B[0][:, :, int(prev.action[0, 0])] @ prev.qs[0][0]
        assert torch.allclose(now.prior[0][0], expected, atol=1e-12)


def test_smoothing_window_learns_what_the_offline_smoother_says() -> None:
    pomdp = _pomdp(4)
    assert pomdp.pA is not None and pomdp.pB is not None and pomdp.D is not None
    obs = _observations(pomdp, 1, seed=3)[:, 0]
    smooth = DiscreteAgent(pomdp, inference="smooth", learn_A=True, learn_B=True)
    exact = DiscreteAgent(pomdp, inference="exact")
    actions = []
    for t in range(T):
        actions.append(smooth.step(obs[t].tolist())[0])
        exact.step(obs[t].tolist())
        assert smooth.qs is not None and exact.qs is not None
        for f in range(2):  # acting uses the exact filter
            assert torch.allclose(smooth.qs[f], exact.qs[f], atol=1e-12)
    smooth.end_episode()
    ref = smooth_states(
        pomdp.A, pomdp.B, pomdp.D, [o.tolist() for o in obs], torch.stack(actions[:-1])
    )
    pA, pB = list(pomdp.pA), list(pomdp.pB)
    for t in range(T):
        pA = update_pA(pA, obs[t].tolist(), ref.qs[t], joint=ref.joint[t])
    for t in range(T - 1):
        pB = update_pB(pB, ref.qs[t + 1], ref.qs[t], actions[t], pairwise=ref.pairwise[t])
    assert smooth.pA is not None and smooth.pB is not None
    for m in range(2):
        assert torch.allclose(smooth.pA[m][0], pA[m], atol=1e-12)
    for f in range(2):
        assert torch.allclose(smooth.pB[f][0], pB[f], atol=1e-12)


def test_initial_state_learning_counts_the_first_belief() -> None:
    pomdp = _pomdp(6)
    assert pomdp.D is not None
    agent = DiscreteAgent(pomdp, learn_D=True, lr_pD=2.0)
    agent.step([1, 0])
    assert agent._first_qs is not None
    first = [q.clone() for q in agent._first_qs]
    agent.step([2, 1])
    agent.end_episode()
    assert agent.pD is not None
    for f in range(2):
        assert torch.allclose(agent.pD[f][0], pomdp.D[f] + 2.0 * first[f][0])
        assert torch.allclose(agent.D[f][0], agent.pD[f][0] / agent.pD[f][0].sum())
    assert agent.t == 0 and agent.history == []


def test_stochastic_actions_are_seeded_and_follow_the_policy_posterior() -> None:
    pomdp = _pomdp(7)
    runs = []
    for _ in range(2):
        agent = DiscreteAgent(
            pomdp,
            batch_size=4000,
            action_selection="stochastic",
            sampling="marginal",
            alpha=2.0,
            seed=11,
        )
        runs.append(agent.step(torch.tensor([[1, 0]]).expand(4000, -1)))
    assert torch.equal(runs[0], runs[1])
    other = DiscreteAgent(pomdp, batch_size=4000, action_selection="stochastic", seed=12)
    assert not torch.equal(other.step(torch.tensor([[1, 0]]).expand(4000, -1)), runs[0])
    assert agent._q_pi is not None
    marginals = action_marginals(agent._q_pi[0], agent.policies, agent.num_controls)
    for f in range(2):
        expected = softmax(2.0 * stable_log(marginals[f]), dim=0)
        freq = torch.bincount(runs[0][:, f], minlength=2).double() / 4000
        # Four standard errors of a binomial proportion.
        assert torch.allclose(freq, expected, atol=4 * (0.25 / 4000) ** 0.5)


def test_errors_name_the_offending_value() -> None:
    pomdp = CategoricalPOMDP.random([3], [3], [2], seed=0)
    with pytest.raises(ValueError, match="learn_A=True needs pA"):
        DiscreteAgent(pomdp, learn_A=True)
    with pytest.raises(ValueError, match="inference='vmp'"):
        DiscreteAgent(pomdp, inference="vmp")  # type: ignore[arg-type]
    agent = DiscreteAgent(pomdp)
    with pytest.raises(ValueError, match=r"obs\[0\] = 1.9 is a float"):
        agent.step([1.9])
    batch = DiscreteAgent(pomdp, batch_size=2)
    with pytest.raises(ValueError, match=r"obs has shape \(2, 2\)"):
        batch.step(torch.tensor([[0, 1], [1, 1]]))
    with pytest.raises(ValueError, match="call infer_states first"):
        DiscreteAgent(pomdp).infer_policies()


def test_float32_agent_tracks_the_float64_one() -> None:
    pomdp = _pomdp(8)
    obs = _observations(pomdp, 1, seed=4)[:, 0]
    double = DiscreteAgent(pomdp, inference="exact")
    single = DiscreteAgent(pomdp, inference="exact", dtype=torch.float32)
    for t in range(T):
        double.step(obs[t].tolist())
        single.step(obs[t].tolist())
        assert single.qs is not None and double.qs is not None
        assert single.qs[0].dtype == torch.float32
        assert torch.allclose(single.qs[0].double(), double.qs[0], atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("inference", ["fpi", "exact", "mmp", "smooth"])
def test_cuda_agent_matches_the_cpu_agent(inference: str) -> None:
    pomdp = _pomdp(9)
    obs = _observations(pomdp, 8, seed=5)
    kwargs = dict(inference=inference, inference_horizon=3, learn_A=True, learn_B=True)
    cpu = DiscreteAgent(pomdp, batch_size=8, **kwargs)  # type: ignore[arg-type]
    gpu = DiscreteAgent(pomdp.to("cuda"), batch_size=8, **kwargs)  # type: ignore[arg-type]
    assert gpu.A[0].device.type == "cuda" and gpu.policies.device.type == "cuda"
    for t in range(T):
        a_cpu = cpu.step(obs[t])
        a_gpu = gpu.step(obs[t].to("cuda"))
        assert a_gpu.device.type == "cuda"
        assert torch.equal(a_cpu, a_gpu.cpu())
        assert cpu.qs is not None and gpu.qs is not None
        assert torch.allclose(cpu.qs[0], gpu.qs[0].cpu(), atol=1e-10)
    assert cpu.pA is not None and gpu.pA is not None
    assert torch.allclose(cpu.pA[0], gpu.pA[0].cpu(), atol=1e-10)
