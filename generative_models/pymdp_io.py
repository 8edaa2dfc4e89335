"""Conversion between :class:`CategoricalPOMDP` and pymdp agents (1.x JAX API and ``pymdp.legacy``).

pymdp is optional: it is imported only inside :func:`to_pymdp`, and :func:`from_pymdp` reads
arrays duck-typed from either API (or from a plain mapping of arrays).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from generative_models.categorical import CategoricalPOMDP

__all__ = ["from_pymdp", "to_pymdp"]


def _to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _as_list(x: Any) -> list[Any] | None:
    """A list of arrays from a list/tuple or a NumPy object array (pymdp.legacy's container)."""
    if x is None:
        return None
    if isinstance(x, np.ndarray) and x.dtype == object:
        return list(x)
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _expand_to_all_factors(
    A_m: np.ndarray, deps: Sequence[int], num_states: Sequence[int], m: int
) -> np.ndarray:
    """Broadcast a likelihood over a subset of factors (pymdp ``A_dependencies``) to all factors."""
    expected = (A_m.shape[0], *[num_states[f] for f in deps])
    if tuple(A_m.shape) != expected:
        raise ValueError(
            f"from_pymdp: A[{m}] has shape {tuple(A_m.shape)}; expected {expected} from its dependencies {list(deps)}"
        )
    order = sorted(range(len(deps)), key=lambda i: deps[i])
    A_sorted = np.transpose(A_m, [0] + [1 + i for i in order])
    sorted_deps = [deps[i] for i in order]
    shape = [A_m.shape[0]] + [
        num_states[f] if f in sorted_deps else 1 for f in range(len(num_states))
    ]
    return np.broadcast_to(A_sorted.reshape(shape), (A_m.shape[0], *num_states)).copy()


def _unbatch(xs: list[Any] | None, batched: bool, index: int) -> list[np.ndarray] | None:
    if xs is None:
        return None
    return [_to_numpy(x)[index] if batched else _to_numpy(x) for x in xs]


def from_pymdp(
    agent_or_arrays: Any,
    policy_len: int | None = None,
    batch_index: int = 0,
    dtype: torch.dtype = torch.float64,
) -> CategoricalPOMDP:
    """Build a :class:`CategoricalPOMDP` from a pymdp agent or from pymdp-layout arrays.

    Parameters
    ----------
    agent_or_arrays : pymdp.agent.Agent, pymdp.legacy.agent.Agent or mapping
        A 1.x agent (JAX arrays with a leading batch axis), a legacy agent (NumPy object
        arrays), or a mapping with keys ``A``, ``B`` and optionally ``C``, ``D``, ``E``,
        ``pA``, ``pB``, ``policies``, ``policy_len``, ``A_dependencies`` (legacy
        ``A_factor_list`` is also read), all in pymdp layout.
    policy_len : int, optional
        Overrides the agent's policy length.
    batch_index : int, default 0
        Which batch element of a 1.x agent to read.
    dtype : torch.dtype, default torch.float64

    Returns
    -------
    CategoricalPOMDP

    Notes
    -----
    pymdp 1.x stores time-indexed preferences as ``(T, n_o)``; this engine (like SPM and
    pymdp.legacy) stores ``(n_o, T)``, so 2-D ``C[m]`` of a 1.x agent are transposed.
    Likelihoods over a subset of factors (``A_dependencies``) are broadcast over the others.
    Transitions that depend on other factors (``B_dependencies``) are not supported.
    """
    src: Mapping[str, Any]
    if isinstance(agent_or_arrays, Mapping):
        src = agent_or_arrays
        batched = False
        legacy = False
    else:
        agent = agent_or_arrays
        legacy = type(agent).__module__.startswith("pymdp.legacy")
        batched = not legacy
        src = {
            "A": agent.A,
            "B": agent.B,
            "C": getattr(agent, "C", None),
            "D": getattr(agent, "D", None),
            "E": getattr(agent, "E", None),
            "pA": getattr(agent, "pA", None),
            "pB": getattr(agent, "pB", None),
            "policies": getattr(agent, "policies", None),
            "policy_len": getattr(agent, "policy_len", None),
            "A_dependencies": getattr(agent, "A_dependencies", None)
            or getattr(agent, "A_factor_list", None),
            "B_dependencies": getattr(agent, "B_dependencies", None)
            or getattr(agent, "B_factor_list", None),
        }
    A = _unbatch(_as_list(src["A"]), batched, batch_index)
    B = _unbatch(_as_list(src["B"]), batched, batch_index)
    if A is None or B is None:
        raise ValueError("from_pymdp: A and B are required; got None")
    F = len(B)
    b_deps = src.get("B_dependencies")
    if b_deps is not None and [list(d) for d in b_deps] != [[f] for f in range(F)]:
        raise ValueError(
            f"from_pymdp: B_dependencies={[list(d) for d in b_deps]}; expected {[[f] for f in range(F)]} "
            "(each factor's transition depends only on itself)"
        )
    num_states = [int(b.shape[0]) for b in B]
    a_deps = src.get("A_dependencies")
    if a_deps is not None:
        A = [
            _expand_to_all_factors(a, list(d), num_states, m)
            for m, (a, d) in enumerate(zip(A, a_deps, strict=True))
        ]
    C = _unbatch(_as_list(src.get("C")), batched, batch_index)
    if C is not None and not legacy and not isinstance(agent_or_arrays, Mapping):
        C = [c.T if c.ndim == 2 else c for c in C]
    D = _unbatch(_as_list(src.get("D")), batched, batch_index)
    E_raw = src.get("E")
    E = None if E_raw is None else (_to_numpy(E_raw)[batch_index] if batched else _to_numpy(E_raw))
    pA = _unbatch(_as_list(src.get("pA")), batched, batch_index)
    pB = _unbatch(_as_list(src.get("pB")), batched, batch_index)
    if pA is not None and a_deps is not None:
        pA = [
            _expand_to_all_factors(p, list(d), num_states, m)
            for m, (p, d) in enumerate(zip(pA, a_deps, strict=True))
        ]
    policies_raw = src.get("policies")
    policies = None
    if policies_raw is not None:
        arr = getattr(policies_raw, "policy_arr", policies_raw)
        if isinstance(arr, list):
            arr = np.stack([np.asarray(p) for p in arr])
        policies = torch.as_tensor(np.array(arr, dtype=np.int64), dtype=torch.long)
    if policy_len is None:
        policy_len = (
            int(src["policy_len"])
            if src.get("policy_len") is not None
            else (int(policies.shape[1]) if policies is not None else 1)
        )
    if policies is not None and policies.shape[1] != policy_len:
        policies = None

    def t(xs: list[np.ndarray] | None) -> list[Tensor] | None:
        # A copy: pymdp's (JAX) arrays are read-only, and the tensors must own their memory.
        return None if xs is None else [torch.tensor(np.array(x), dtype=dtype) for x in xs]

    A_t, B_t = t(A), t(B)
    assert A_t is not None and B_t is not None
    return CategoricalPOMDP(
        A=A_t,
        B=B_t,
        C=t(C),
        D=t(D),
        E=None if E is None else torch.tensor(np.array(E), dtype=dtype),
        policy_len=int(policy_len),
        pA=t(pA),
        pB=t(pB),
        policies=policies,
        dtype=dtype,
    )


def _require_pymdp(api: str) -> None:
    """Import pymdp (and JAX for the 1.x API) or say how to install them."""
    try:
        import pymdp  # noqa: F401

        if api == "1.x":
            import jax  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"to_pymdp(api={api!r}) needs the optional pymdp dependency (inferactively-pymdp "
            f"1.0.4, with JAX); install it with `pip install 'aif-offload[pymdp]'` "
            f"(import failed: {err})"
        ) from err


def to_pymdp(
    pomdp: CategoricalPOMDP, api: Literal["1.x", "legacy"] = "1.x", **agent_kwargs: Any
) -> Any:
    """Build a pymdp agent holding the same model.

    Parameters
    ----------
    pomdp : CategoricalPOMDP
    api : {"1.x", "legacy"}, default "1.x"
        ``"1.x"``: ``pymdp.agent.Agent`` (JAX; arrays in the default JAX float precision).
        ``"legacy"``: ``pymdp.legacy.agent.Agent`` (NumPy object arrays).
    **agent_kwargs
        Passed to the agent constructor (e.g. ``gamma``, ``use_param_info_gain``,
        ``action_selection``).

    Returns
    -------
    pymdp.agent.Agent or pymdp.legacy.agent.Agent

    Notes
    -----
    The policies are passed explicitly, so policy ``k`` is the same in both codes. pymdp
    scores outcomes with the raw ``C`` (1.x) or ``log_softmax(C)`` (legacy); see
    :func:`aif.planning.preference_offset` for the resulting constant offset.
    """

    def np_list(xs: Sequence[Tensor] | None) -> list[np.ndarray] | None:
        return None if xs is None else [x.detach().cpu().numpy() for x in xs]

    assert pomdp.policies is not None and pomdp.E is not None and pomdp.C is not None
    A, B, D = np_list(pomdp.A), np_list(pomdp.B), np_list(pomdp.D)
    C = np_list(pomdp.C)
    pA, pB = np_list(pomdp.pA), np_list(pomdp.pB)
    E = pomdp.E.detach().cpu().numpy()
    policies = pomdp.policies.cpu().numpy()
    if api not in ("1.x", "legacy"):
        raise ValueError(f"to_pymdp: api={api!r}; expected '1.x' or 'legacy'")
    _require_pymdp(api)
    if api == "1.x":
        import jax.numpy as jnp
        from pymdp.agent import Agent

        def j(xs: list[np.ndarray] | None) -> list[Any] | None:
            return None if xs is None else [jnp.asarray(x) for x in xs]

        assert C is not None
        C_1x = [c.T if c.ndim == 2 else c for c in C]
        kwargs: dict[str, Any] = dict(
            A=j(A),
            B=j(B),
            C=j(C_1x),
            D=j(D),
            E=jnp.asarray(E),
            pA=j(pA),
            pB=j(pB),
            policy_len=pomdp.policy_len,
            policies=jnp.asarray(policies),
        )
        kwargs.update(agent_kwargs)
        return Agent(**kwargs)
    if api == "legacy":
        from pymdp.legacy import utils as legacy_utils
        from pymdp.legacy.agent import Agent as LegacyAgent

        def obj(xs: list[np.ndarray] | None) -> Any:
            return None if xs is None else legacy_utils.obj_array_from_list(xs)

        kwargs = dict(
            A=obj(A),
            B=obj(B),
            C=obj(C),
            D=obj(D),
            E=E,
            pA=obj(pA),
            pB=obj(pB),
            policy_len=pomdp.policy_len,
            policies=[p for p in policies],
        )
        kwargs.update(agent_kwargs)
        return LegacyAgent(**kwargs)
    raise ValueError(f"to_pymdp: api={api!r}; expected '1.x' or 'legacy'")
