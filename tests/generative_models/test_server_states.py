"""Tests of the worked server-state model of the offloading problem."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from aif.planning import select_action
from generative_models.server_states import (
    OUTCOME_LABELS,
    ServerStateSpec,
    build_server_state_model,
)


@pytest.fixture(scope="module")
def small():
    return build_server_state_model(
        ServerStateSpec(
            num_servers=3, latency_probs=[[0.6, 0.3, 0.1]] + [[0.2, 0.5, 0.3]] * 2, policy_len=2
        )
    )


def test_shapes_labels_and_policies(small) -> None:
    p = small.pomdp
    assert p.num_states == [3, 3, 3, 3]
    assert p.num_obs == [3, len(OUTCOME_LABELS)]
    assert small.factor_names == ("load_0", "load_1", "load_2", "target")
    assert p.num_policies == 9 and small.policy_targets.shape == (9, 2)
    for k, targets in enumerate(small.policy_targets.tolist()):
        for t, j in enumerate(targets):
            assert p.policies[k, t].tolist() == small.action_for_server(j).tolist()


def test_observations_depend_only_on_the_targeted_server(small) -> None:
    A_out = small.pomdp.A[1]
    # Target server 1: changing the loads of servers 0 and 2 leaves the outcome unchanged.
    ref = A_out[:, 0, 2, 0, 1]
    for l0 in range(3):
        for l2 in range(3):
            assert torch.equal(A_out[:, l0, 2, l2, 1], ref)
    # A busier server fails more often and is slower.
    assert A_out[0, 2, 0, 0, 0] > A_out[0, 0, 0, 0, 0]
    assert A_out[3, 0, 2, 0, 1] > A_out[3, 0, 0, 0, 1]


def test_a_task_raises_load_in_expectation(small) -> None:
    B = small.pomdp.B[0]
    levels = torch.arange(3, dtype=torch.float64)
    for s in range(3):
        assert float(levels @ B[:, s, 1]) >= float(levels @ B[:, s, 0])
    assert float(levels @ B[:, 0, 1]) > float(levels @ B[:, 0, 0])


def test_a_failure_points_to_a_loaded_server(small) -> None:
    p = small.pomdp
    # The last task went to server 2; its queue reads "high" and the task failed.
    D = list(p.D)
    D[3] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    post = p.infer_states([2, OUTCOME_LABELS.index("failed")], prior=D)
    assert float(post.qs[2][2]) > float(D[2][2])
    assert torch.allclose(post.qs[0], D[0])


def test_planning_avoids_a_saturated_server() -> None:
    model = build_server_state_model(
        ServerStateSpec(num_servers=3, latency_probs=[[0.3, 0.4, 0.3]] * 3)
    )
    p = model.pomdp
    busy, idle = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0])
    qs = [busy.double(), idle.double(), busy.double(), torch.ones(3, dtype=torch.float64) / 3]
    res = p.efe(qs)
    q_pi = p.policy_posterior(res.efe)
    action = select_action(q_pi, p.policies, sampling="full")
    assert action.tolist() == model.action_for_server(1).tolist()


def test_spec_validation_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"latency_probs has shape \(5, 3\); expected \(2, 3\)"):
        ServerStateSpec(num_servers=2)
    with pytest.raises(ValueError, match=r"drain_prob=1.5"):
        ServerStateSpec(drain_prob=1.5)
    with pytest.raises(ValueError, match=r"fail_probs has shape \(2,\)"):
        ServerStateSpec(fail_probs=[0.1, 0.2])


def test_module_does_not_import_the_environment() -> None:
    code = "import sys, generative_models.server_states; print(any(m.startswith('environments') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
