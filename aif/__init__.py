"""Active inference as probabilistic programs: free energy, inference, planning and diagnostics.

The engine knows nothing of servers or radios; models are plain Pyro callables.
"""

import importlib.metadata

from aif.agent import ModelBasedAgent
from aif.cem import CEMConfig, HybridCEM
from aif.discrete_agent import AgentStep, DiscreteAgent, PolicyInference
from aif.exact import ExactStateInference, filter_states, infer_states, vfe_categorical
from aif.expected_free_energy import efe_mc
from aif.fitting import fit_agent, fit_choice_weights
from aif.free_energy import VFEResult, vfe
from aif.inference import (
    BeliefResult,
    JointCategorical,
    MeanFieldCategorical,
    filter_beliefs,
    fit_beliefs,
)
from aif.learning import update_pA, update_pB, update_pD
from aif.planning import (
    EFEResult,
    PolicyEvaluator,
    construct_policies,
    efe_categorical,
    policy_posterior,
    select_action,
)
from aif.sequence import SmoothResult, infer_states_mmp, smooth_states

try:
    __version__ = importlib.metadata.version("aif-offload")
except importlib.metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AgentStep",
    "BeliefResult",
    "CEMConfig",
    "DiscreteAgent",
    "EFEResult",
    "ExactStateInference",
    "HybridCEM",
    "JointCategorical",
    "MeanFieldCategorical",
    "ModelBasedAgent",
    "PolicyEvaluator",
    "PolicyInference",
    "SmoothResult",
    "VFEResult",
    "construct_policies",
    "efe_categorical",
    "efe_mc",
    "filter_beliefs",
    "filter_states",
    "fit_agent",
    "fit_beliefs",
    "fit_choice_weights",
    "infer_states",
    "infer_states_mmp",
    "policy_posterior",
    "select_action",
    "smooth_states",
    "update_pA",
    "update_pB",
    "update_pD",
    "vfe",
    "vfe_categorical",
]
