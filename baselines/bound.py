"""An upper bound on the rewardless guidance and the completion of any policy in one episode.

Offline: it reads the realised episode (arrivals, problems, channel samples) through the env's
internals, as the look-ahead policy does, and bounds a time-indexed LP relaxation solved with HiGHS.

The relaxation (``docs/bound.md`` gives the argument in full). Every completed task ``i`` is
placed on a server ``j`` with a number of memory waves ``w`` and a compute share in a bin
``[c_lo, c_hi]``, and starts computing at a time ``s``. Each choice is a column:

- it may start no earlier than its request can reach the server over the whole bandwidth, and
  its guidance is counted at its best, ``1 / L_lo + P`` with the latency lower bound
  ``L_lo = (s - arrival) + t_c(w, c_hi) + (backhaul)``: no downlink time, compute at the
  bin's fastest share and without contention; it is a column only if ``L_lo <= t_max``;
- it holds, over ``[s, s + t_c(w, c_hi))`` (never longer than the real task holds its grant),
  the least compute share of its bin ``c_lo``, the least memory share giving ``w`` waves, and one
  of the server's parallel slots.

Per server and time slot, what the columns hold, integrated over the slot, is at most the
capacity times the slot length, for compute, memory and slots, and for the counts of "large"
grants given by dual feasible functions of compute and memory (Fekete and Schepers, Math. Prog.
91, 2001). Each task takes at most one column in total. Start times are continuous; the bound is
the Lagrangian dual value ``sum(cap * y) + sum_i max(0, max_col(value - price))`` at prices
``y >= 0`` that HiGHS (Huangfu and Hall, Math. Prog. Comp. 10, 2018) returns on a restricted
master problem, maximised exactly over every column: it is valid for any ``y >= 0``, whatever
the solver's accuracy.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy import optimize, sparse

from environments import CloudEdgeOffloadEnv
from environments.env import GRANT_TOLERANCE

__all__ = ["EpisodeBound", "dual_feasible", "episode_bound"]

#: Relative margin against rounding where a bound could otherwise be cut by one ulp.
_SLACK = 1e-9
#: Parameters ``k`` of the dual feasible functions applied to compute and memory shares.
DFF_ORDERS: tuple[int, ...] = (1, 2)


class EpisodeBound(NamedTuple):
    """Upper bounds on what any policy achieves in one realised episode.

    Attributes
    ----------
    rg : float
        Upper bound on the episode's total rewardless guidance ``sum tc (1/L + P)`` (equal to
        its total reward), over every policy and every grant in the continuous action space.
    completion : float
        Upper bound on the fraction of the episode's tasks completed.
    no_contention_rg : float
        The simple bound: every task scored at the best guidance any idle server could give it,
        from the same latency lower bounds, summed over tasks (``rg`` never exceeds it).
    n_tasks : int
        Tasks in the episode.
    """

    rg: float
    completion: float
    no_contention_rg: float
    n_tasks: int


def dual_feasible(x: np.ndarray, k: int) -> np.ndarray:
    """The dual feasible function ``u^(k)`` of Fekete and Schepers (Math. Prog. 91, 2001).

    ``u(x) = x`` where ``(k + 1) x`` is an integer, else ``floor((k + 1) x) / k``. For any
    numbers in [0, 1] that sum to at most 1, their images also sum to at most 1: with ``k = 1``
    at most one of them exceeds 1/2, with ``k = 2`` at most one exceeds 2/3 and at most two
    exceed 1/3, and so on.

    Parameters
    ----------
    x : numpy.ndarray
        Values in [0, 1], any shape.
    k : int
        Order, ``>= 1``.

    Returns
    -------
    numpy.ndarray
        ``u^(k)(x)``, the shape of ``x``.
    """
    if k < 1:
        raise ValueError(f"dual feasible function order k={k!r} must be >= 1")
    x = np.asarray(x, dtype=np.float64)
    scaled = (k + 1) * x
    whole = np.isclose(scaled, np.round(scaled), rtol=0.0, atol=1e-12)
    return np.where(whole, x, np.floor(scaled) / k)


def _conservative_dff(share: np.ndarray, k: int) -> np.ndarray:
    """``u^(k)`` of a least share, scaled so that grants summing to ``1 + GRANT_TOLERANCE`` fit.

    Grants on a server sum to at most ``1 + GRANT_TOLERANCE``; divided by that they sum to at
    most 1, and ``u^(k)`` is non-decreasing, so a slightly smaller argument stays a lower bound.
    """
    return dual_feasible(np.maximum(share / (1.0 + GRANT_TOLERANCE) - 1e-12, 0.0), k)


class _Families(NamedTuple):
    """One row per (task, server, memory waves, compute-share bin); every field shape (F,).

    ``release`` is the earliest start on the server (the request sent over the whole
    bandwidth), ``latest`` the latest start that still completes, ``duration`` the shortest
    compute time in the bin, ``offset`` what a start at ``s`` adds to ``s - arrival`` in the
    latency lower bound, and ``heights`` (F, R) what the family holds, per resource.
    """

    task: np.ndarray
    server: np.ndarray
    arrival: np.ndarray
    release: np.ndarray
    latest: np.ndarray
    duration: np.ndarray
    offset: np.ndarray
    accuracy: np.ndarray
    heights: np.ndarray


def _wave_modes(profile: Any, prompt_tokens: float) -> tuple[np.ndarray, np.ndarray]:
    """Full-share compute time and least memory share of every achievable number of waves.

    A task's compute time depends on its memory grant only through the batch ``B`` the grant
    holds, and on ``B`` only through the waves ``ceil(S / B)``; for each number of waves the
    least memory is that of the smallest batch giving it, ``ceil(S / waves)``.

    Returns
    -------
    t_full : numpy.ndarray, shape (n_modes,)
        Compute time (s) with the whole compute share.
    memory : numpy.ndarray, shape (n_modes,)
        Least memory share giving those waves.
    """
    samples = int(profile.samples_per_task)
    slot, pool = float(profile.slot_gib), float(profile.memory_pool_gib)
    b_max = min(samples, math.floor(pool / slot + 1e-9))
    times, memory = [], []
    waves_seen = set()
    for batch in range(b_max, 0, -1):
        waves = -(-samples // batch)
        if waves in waves_seen:
            continue
        waves_seen.add(waves)
        b_min = -(-samples // waves)
        # Half a sample slot more memory than b_min needs selects b_min without rounding doubt.
        share = min(1.0, (b_min + 0.5) * slot / pool)
        times.append(profile.compute_time(prompt_tokens, 1.0, share))
        memory.append(b_min * slot / pool * (1.0 - 1e-9))
    return np.asarray(times, dtype=np.float64), np.asarray(memory, dtype=np.float64)


def _share_bins(c_min: float, ratio: float) -> list[tuple[float, float]]:
    """Bins ``(lo, hi)`` covering the compute shares ``[c_min, 1]`` geometrically, top first."""
    bins = []
    hi = 1.0
    while hi > c_min and hi > 1e-4:
        lo = max(c_min, hi * ratio)
        bins.append((lo if lo > 1e-4 else 0.0, hi))
        hi = lo
    return bins


def _families(env: CloudEdgeOffloadEnv, share_ratio: float) -> _Families:
    """Every column family of the episode ``env`` was just reset to."""
    t_max = float(env.config.t_max)
    n = env.n_servers
    schedule = env.task_schedule()
    arrivals = np.asarray(schedule["arrival_time"], dtype=np.float64)
    problems = np.asarray(schedule["problem"], dtype=np.int64)
    at_reset = env.get_state()
    # Earliest start on each server: the request sent over the whole bandwidth (the rate
    # W log2(1 + S / (N0 W)) grows with the bandwidth W) and propagated, nothing ahead of it.
    earliest = np.full((arrivals.size, n), np.inf)
    for i in range(arrivals.size):
        env.set_state(at_reset._replace(step=i, clock=float(arrivals[i])))
        out = env.evaluate_actions(np.arange(n), np.ones((n, 3)), shadowing="realized")
        earliest[i] = np.where(out.joins, out.start, np.inf)
    env.set_state(at_reset)
    # After computing, the result crosses a cloud's backhaul; radio time is counted as zero.
    deliver = np.asarray(getattr(env, "backhaul_s", np.zeros(n)), dtype=np.float64)
    # A drift schedule may slow a server down for the episode: its compute time is multiplied.
    drift = getattr(env, "drift_state", None)
    scale = np.ones(n) if drift is None else np.asarray(drift["compute_scale"], np.float64)
    tokens_of = np.asarray(env.prompt_tokens, dtype=np.float64)[problems]
    modes = []
    for j in range(n):
        per_tokens = {}
        for tok in np.unique(tokens_of).tolist():
            t_full, memory = _wave_modes(env.profiles[j], tok)
            per_tokens[tok] = (t_full * max(float(scale[j]), 1.0), memory)
        modes.append(per_tokens)
    cols: dict[str, list[float]] = {
        key: []
        for key in ("task", "server", "arrival", "release", "latest", "duration", "offset",
                    "accuracy", "compute", "memory")
    }  # fmt: skip
    for i in range(arrivals.size):
        t0 = float(arrivals[i])
        for j in range(n):
            r = float(earliest[i, j])
            if not math.isfinite(r):
                continue
            k = float(env.profiles[j].share_k)
            budget = t0 + t_max - deliver[j] - r  # compute time that still completes
            t_full, memory = modes[j][float(tokens_of[i])]
            p = float(env.pass_table[j, problems[i]])
            for t1, m in zip(t_full.tolist(), memory.tolist(), strict=True):
                if not t1 <= budget * (1.0 + _SLACK):
                    continue
                # Least compute share that completes, t1 ((1 - k) + k / c) <= budget, lowered by
                # a rounding margin so that no share that completes is left out.
                c_min = k / max(budget / t1 - (1.0 - k), k) * (1.0 - _SLACK) if k > 0.0 else 0.0
                for c_lo, c_hi in _share_bins(c_min, share_ratio):
                    duration = t1 * ((1.0 - k) + k / c_hi)
                    for key, v in (
                        ("task", i), ("server", j), ("arrival", t0), ("release", r),
                        ("latest", t0 + t_max - deliver[j] - duration + _SLACK * t_max),
                        ("duration", duration),
                        ("offset", duration + deliver[j]), ("accuracy", p), ("compute", c_lo),
                        ("memory", m),
                    ):  # fmt: skip
                        cols[key].append(v)
    compute = np.asarray(cols["compute"], dtype=np.float64)
    memory_arr = np.asarray(cols["memory"], dtype=np.float64)
    heights = [compute, memory_arr, np.ones_like(compute)]
    for k in DFF_ORDERS:
        heights += [_conservative_dff(compute, k), _conservative_dff(memory_arr, k)]
    return _Families(
        task=np.asarray(cols["task"], dtype=np.int64),
        server=np.asarray(cols["server"], dtype=np.int64),
        arrival=np.asarray(cols["arrival"], dtype=np.float64),
        release=np.asarray(cols["release"], dtype=np.float64),
        # The rounding margins may put a latest start a hair before the release; a window of one
        # point there only adds a column, which keeps the relaxation a relaxation.
        latest=np.maximum(np.asarray(cols["latest"]), np.asarray(cols["release"])),
        duration=np.asarray(cols["duration"], dtype=np.float64),
        offset=np.asarray(cols["offset"], dtype=np.float64),
        accuracy=np.asarray(cols["accuracy"], dtype=np.float64),
        heights=np.stack(heights, axis=1).reshape(compute.size, len(heights)),
    )


def _capacities(env: CloudEdgeOffloadEnv) -> np.ndarray:
    """Capacity of every server in every resource of :func:`_families`, shape (n_servers, R)."""
    n = env.n_servers
    cap = [np.full(n, 1.0 + GRANT_TOLERANCE), np.full(n, 1.0 + GRANT_TOLERANCE)]
    cap.append(np.asarray(env.parallel_limit, dtype=np.float64))
    cap += [np.ones(n) for _ in range(2 * len(DFF_ORDERS))]
    return np.stack(cap, axis=1)


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every integer ``lo[f] <= q <= hi[f]`` with its owner ``f`` (none where ``hi < lo``)."""
    count = np.maximum(hi - lo + 1, 0)
    owner = np.repeat(np.arange(lo.size), count)
    first = np.cumsum(count) - count
    return owner, lo[owner] + (np.arange(owner.size) - first[owner])


class _Relaxation:
    """The relaxation of one episode at every candidate start, and its restricted masters.

    Under slot prices ``y >= 0`` a column's reduced value, its guidance minus the priced
    resources it holds, is convex in its start between consecutive times where its start or
    its end crosses a slot boundary (the guidance ``1 / (s + a)`` is convex, the priced holding
    linear there), so its maximum over a family's start window lies at the window's ends or at
    those crossings: the candidates enumerated here.
    """

    def __init__(
        self,
        fam: _Families,
        caps: np.ndarray,
        t_origin: float,
        n_slots: int,
        dt: float,
        n_tasks: int,
    ) -> None:
        lo, hi = fam.release, fam.latest
        owners, starts = [np.arange(lo.size), np.arange(lo.size)], [lo, hi]
        for shift in (np.zeros_like(lo), fam.duration):
            q_lo = np.ceil((lo + shift - t_origin) / dt).astype(np.int64)
            q_hi = np.floor((hi + shift - t_origin) / dt).astype(np.int64)
            f, q = _ranges(q_lo, q_hi)
            s = t_origin + q * dt - shift[f]
            inside = (s > lo[f]) & (s < hi[f])
            owners.append(f[inside])
            starts.append(s[inside])
        f = np.concatenate(owners)
        s = np.concatenate(starts)
        order = np.lexsort((s, f))  # families are in task order, so tasks are contiguous
        self.family, self.start = f[order], s[order]
        self.task = fam.task[self.family]
        self.server = fam.server[self.family]
        self.end = self.start + fam.duration[self.family]
        self.heights = fam.heights[self.family]
        self.fam = fam
        self.caps, self.t_origin, self.n_slots, self.dt = caps, t_origin, n_slots, dt
        self.n_tasks = n_tasks
        n = caps.shape[0]
        # Where each start and end falls in the slot grid: flat slot index, fraction of the slot.
        pos_s = (self.start - t_origin) / dt
        pos_e = (self.end - t_origin) / dt
        q_s = np.clip(np.floor(pos_s).astype(np.int64), 0, n_slots - 1)
        q_e = np.clip(np.floor(pos_e).astype(np.int64), 0, n_slots - 1)
        self._w_s, self._w_e = pos_s - q_s, pos_e - q_e
        self._idx_s = self.server * n_slots + q_s
        self._idx_e = self.server * n_slots + q_e
        self._task_first = np.flatnonzero(np.r_[True, self.task[1:] != self.task[:-1]])
        self._cap_grid = np.broadcast_to(caps[:, None, :], (n, n_slots, caps.shape[1]))

    def values(self, guidance: bool) -> np.ndarray:
        """Objective of every candidate: guidance at its latency lower bound, or 1 (completion)."""
        if not guidance:
            return np.ones(self.start.size)
        f = self.family
        lat = self.start - self.fam.arrival[f] + self.fam.offset[f]
        return 1.0 / lat + self.fam.accuracy[f]

    def priced(self, y: np.ndarray) -> np.ndarray:
        """Priced resources each candidate holds under slot prices ``y`` (n, n_slots, R), (C,)."""
        total = np.zeros(self.start.size)
        for r in range(y.shape[2]):
            y_r = np.ascontiguousarray(y[:, :, r]).ravel()
            if not y_r.any():
                continue
            before = np.cumsum(y_r) - y_r  # price of the whole slots before each slot
            # Price accumulated up to the end minus up to the start; the flat cumulative sum runs
            # across servers, but a candidate's start and end lie on the same server.
            held = (before[self._idx_e] + y_r[self._idx_e] * self._w_e) - (
                before[self._idx_s] + y_r[self._idx_s] * self._w_s
            )
            total += self.heights[:, r] * held
        return total

    def task_max(self, x: np.ndarray) -> np.ndarray:
        """Largest ``x`` over each task's candidates, shape (n_tasks,) (``-inf`` for none)."""
        best = np.full(self.n_tasks, -np.inf)
        if x.size:
            best[self.task[self._task_first]] = np.maximum.reduceat(x, self._task_first)
        return best

    def dual_bound(self, value: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        """Lagrangian bound at prices ``y >= 0`` and every candidate's reduced value."""
        reduced = value - self.priced(y)
        per_task = np.maximum(self.task_max(reduced), 0.0)
        return float(np.sum(self._cap_grid * y) + np.sum(per_task)), reduced

    def restricted(
        self, cols: np.ndarray, value: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Solve the relaxation over the candidates ``cols`` only.

        Returns
        -------
        value : float
            Its optimum (a lower bound on the relaxation's).
        task_duals : numpy.ndarray, shape (n_tasks,)
        prices : numpy.ndarray, shape (n_servers, n_slots, R)
            Slot prices ``y >= 0``.
        """
        n, n_res = self.caps.shape
        n_slots, dt, t_origin, n_tasks = self.n_slots, self.dt, self.t_origin, self.n_tasks
        s, e = self.start[cols], self.end[cols]
        q_lo = np.floor((s - t_origin) / dt).astype(np.int64)
        q_hi = np.minimum(np.floor((e - t_origin) / dt).astype(np.int64), n_slots - 1)
        k, q = _ranges(q_lo, q_hi)
        left = t_origin + q * dt
        overlap = (np.minimum(e[k], left + dt) - np.maximum(s[k], left)) / dt
        keep = overlap > 0
        k, q, overlap = k[keep], q[keep], overlap[keep]
        slot_row = self.server[cols][k] * n_slots + q
        h = self.heights[cols][k]
        n_cap = n * n_slots * n_res
        cap_rows = np.concatenate([slot_row * n_res + r for r in range(n_res)])
        cap_cols = np.tile(k, n_res)
        cap_vals = np.concatenate([h[:, r] * overlap for r in range(n_res)])
        cap_b = self._cap_grid.ravel()
        # A row that its columns cannot fill even all together never binds: left out, price 0.
        load = np.bincount(cap_rows, weights=cap_vals, minlength=n_cap)
        binding = np.flatnonzero(load > cap_b)
        local = np.full(n_cap, -1)
        local[binding] = np.arange(binding.size)
        sel = local[cap_rows] >= 0
        a = sparse.csr_matrix(
            (
                np.concatenate([np.ones(cols.size), cap_vals[sel]]),
                (
                    np.concatenate([self.task[cols], n_tasks + local[cap_rows[sel]]]),
                    np.concatenate([np.arange(cols.size), cap_cols[sel]]),
                ),
            ),
            shape=(n_tasks + binding.size, cols.size),
        )
        b = np.concatenate([np.ones(n_tasks), cap_b[binding]])
        res = optimize.linprog(-value[cols], A_ub=a, b_ub=b, bounds=(0, None), method="highs")
        if res.status != 0:
            raise RuntimeError(f"HiGHS failed on the restricted relaxation: {res.message}")
        duals = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0)
        y = np.zeros(n_cap)
        y[binding] = duals[n_tasks:]
        return float(-res.fun), duals[:n_tasks], y.reshape(n, n_slots, n_res)

    def solve(self, guidance: bool, max_iter: int, rel_gap: float) -> tuple[float, float]:
        """Column generation; returns (best dual bound, bound at zero prices)."""
        value = self.values(guidance)
        y = np.zeros(self._cap_grid.shape)
        at_zero, reduced = self.dual_bound(value, y)
        best = at_zero
        in_master = np.zeros(self.start.size, dtype=bool)
        task_duals = np.zeros(self.n_tasks)
        group = self.task * self.caps.shape[0] + self.server
        for _ in range(max_iter):
            new = _best_positive(reduced - task_duals[self.task], group)
            new = new[~in_master[new]]
            if new.size == 0:
                break
            in_master[new] = True
            lower, task_duals, y = self.restricted(np.flatnonzero(in_master), value)
            bound, reduced = self.dual_bound(value, y)
            best = min(best, bound)
            if best - lower <= rel_gap * max(lower, 1e-9):
                break
        return best, at_zero


def _best_positive(score: np.ndarray, group: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Index of the highest score above ``tol`` in each group (groups without one skipped)."""
    pos = np.flatnonzero(score > tol)
    if pos.size == 0:
        return pos
    order = np.lexsort((-score[pos], group[pos]))
    g = group[pos][order]
    first = np.r_[True, g[1:] != g[:-1]]
    return pos[order][first]


def episode_bound(
    env: CloudEdgeOffloadEnv,
    seed: int | None,
    options: dict[str, Any] | None = None,
    *,
    dt: float = 0.5,
    share_ratio: float = 0.95,
    max_iter: int = 60,
    rel_gap: float = 1e-3,
) -> EpisodeBound:
    """Upper bounds on the guidance and the completion any policy achieves in one episode.

    Resets ``env`` with ``seed`` and ``options`` and reads the realised episode from its
    internals (offline knowledge, never for a learner). The bounds hold for every policy over
    the native action space (any server, any shares in [0, 1]^3), see ``docs/bound.md``.

    Parameters
    ----------
    env : CloudEdgeOffloadEnv
        The unwrapped env; it is left at the start of the episode.
    seed : int or None
        Passed to ``env.reset``.
    options : dict, optional
        Passed to ``env.reset`` (e.g. ``{"episode": k}``).
    dt : float
        Slot length (s) over which resource use is integrated; smaller is tighter and slower.
    share_ratio : float
        Ratio between the ends of a compute-share bin, in (0, 1); closer to 1 is tighter and
        slower.
    max_iter : int
        Column-generation rounds per objective; fewer only loosen the bound.
    rel_gap : float
        Stop once the dual bound is within this fraction of the restricted optimum.

    Returns
    -------
    EpisodeBound
    """
    if not dt > 0.0:
        raise ValueError(f"dt={dt!r} must be positive")
    if not 0.0 < share_ratio < 1.0:
        raise ValueError(f"share_ratio={share_ratio!r} must lie in (0, 1)")
    env.reset(seed=seed, options=options)
    n_tasks = int(env.config.tasks_per_episode)
    fam = _families(env, share_ratio)
    if fam.task.size == 0:
        return EpisodeBound(0.0, 0.0, 0.0, n_tasks)
    arrivals = np.asarray(env.task_schedule()["arrival_time"], dtype=np.float64)
    t_origin = float(np.min(arrivals))
    horizon = float(np.max(arrivals)) + float(env.config.t_max) - t_origin
    n_slots = int(math.ceil(horizon / dt)) + 2
    relax = _Relaxation(fam, _capacities(env), t_origin, n_slots, dt, n_tasks)
    rg, no_contention = relax.solve(True, max_iter, rel_gap)
    completed, _ = relax.solve(False, max_iter, rel_gap)
    # Any policy completes a whole number of tasks: the bound on the count rounds down.
    count = min(math.floor(completed + 1e-6), n_tasks)
    return EpisodeBound(rg, count / n_tasks, no_contention, n_tasks)
