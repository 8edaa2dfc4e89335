"""Terminal mobility: constant-velocity motion reflected at the area borders, in closed form.

Positions at any time follow from the initial state without stepping, vectorised over terminals.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["initial_state", "positions_at", "reflect"]

FloatArray = NDArray[np.float64]


def reflect(x: ArrayLike, length: ArrayLike) -> FloatArray:
    """Fold unbounded coordinates into ``[0, length]`` as a ball bouncing off both walls.

    ``y = x mod 2L``; position ``L - |y - L|`` (a triangle wave of period ``2L``).

    Parameters
    ----------
    x : array_like, any shape
        Unfolded coordinate ``x0 + v t``.
    length : array_like, broadcastable to ``x``
        Side length (> 0).
    """
    lx = np.asarray(length, dtype=np.float64)
    y = np.mod(np.asarray(x, dtype=np.float64), 2.0 * lx)
    return lx - np.abs(y - lx)


def positions_at(p0: ArrayLike, velocity: ArrayLike, t: ArrayLike, area_m: ArrayLike) -> FloatArray:
    """Positions of terminals at time ``t`` under reflected constant-velocity motion (assumed model).

    Parameters
    ----------
    p0 : array_like, shape (..., 3)
        Positions at ``t = 0`` (x, y, height) in metres.
    velocity : array_like, shape (..., 3)
        Velocities in m/s (height component 0: UAVs cruise at a fixed altitude).
    t : array_like, shape broadcastable to ``p0[..., 0]``
        Time in seconds.
    area_m : array_like, shape (2,)
        Width and depth of the area.

    Returns
    -------
    numpy.ndarray, shape (..., 3)
    """
    p = np.asarray(p0, dtype=np.float64)
    v = np.asarray(velocity, dtype=np.float64)
    tt = np.asarray(t, dtype=np.float64)[..., None]
    out = p + v * tt
    area = np.asarray(area_m, dtype=np.float64)
    out[..., :2] = reflect(out[..., :2], area)
    return out


def initial_state(
    rng: np.random.Generator,
    speeds_mps: ArrayLike,
    heights_m: ArrayLike,
    area_m: ArrayLike,
) -> tuple[FloatArray, FloatArray]:
    """Uniform initial positions and uniform headings for terminals.

    Parameters
    ----------
    rng : numpy.random.Generator
    speeds_mps : array_like, shape (n_terminals,)
    heights_m : array_like, shape (n_terminals,)
    area_m : array_like, shape (2,)

    Returns
    -------
    p0 : numpy.ndarray, shape (n_terminals, 3)
    velocity : numpy.ndarray, shape (n_terminals, 3)
    """
    speeds = np.asarray(speeds_mps, dtype=np.float64)
    n = speeds.shape[0]
    area = np.asarray(area_m, dtype=np.float64)
    p0 = np.empty((n, 3))
    p0[:, :2] = rng.uniform(0.0, 1.0, size=(n, 2)) * area
    p0[:, 2] = np.asarray(heights_m, dtype=np.float64)
    heading = rng.uniform(0.0, 2.0 * np.pi, size=n)
    vel = np.zeros((n, 3))
    vel[:, 0] = speeds * np.cos(heading)
    vel[:, 1] = speeds * np.sin(heading)
    return p0, vel
