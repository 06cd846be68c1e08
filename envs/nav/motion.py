"""Agent motion on a NavGrid: forward steps that slide along walls, like habitat's navmesh sliding.

A step is cut into sub-steps (5 cm by default, one cell) so no wall, however thin, is crossed. Each
sub-step tries the full displacement, then, if blocked, its larger and then its smaller axis component
alone (the component parallel to the blocking wall survives: that is the slide). A sub-step where the
full displacement was blocked marks the step as collided, as habitat reports when the navmesh moved the
agent somewhere other than where it asked to go.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from envs.nav.occupancy import NavGrid


@numba.njit(cache=True)
def _free(navigable, origin_x, origin_z, cell, x, z):
    row = int(math.floor((z - origin_z) / cell))
    col = int(math.floor((x - origin_x) / cell))
    return 0 <= row < navigable.shape[0] and 0 <= col < navigable.shape[1] and navigable[row, col]


@numba.njit(cache=True)
def _slide(navigable, origin_x, origin_z, cell, x, z, dx, dz, substep):
    distance = math.hypot(dx, dz)
    n = max(int(math.ceil(distance / substep)), 1)
    sx, sz = dx / n, dz / n
    collided = False
    for _ in range(n):
        if _free(navigable, origin_x, origin_z, cell, x + sx, z + sz):
            x, z = x + sx, z + sz
            continue
        collided = True
        # Try the dominant axis first: sliding keeps as much of the intended motion as possible.
        if abs(sx) >= abs(sz):
            first_x, first_z, second_x, second_z = sx, 0.0, 0.0, sz
        else:
            first_x, first_z, second_x, second_z = 0.0, sz, sx, 0.0
        if (first_x != 0.0 or first_z != 0.0) and _free(navigable, origin_x, origin_z, cell, x + first_x, z + first_z):
            x, z = x + first_x, z + first_z
        elif (second_x != 0.0 or second_z != 0.0) and _free(navigable, origin_x, origin_z, cell, x + second_x, z + second_z):
            x, z = x + second_x, z + second_z
    return x, z, collided


def move_with_sliding(grid: NavGrid, position: np.ndarray, displacement: np.ndarray,
                      substep: float = 0.05) -> tuple[np.ndarray, bool]:
    """Move from a navigable `position` by `displacement` (x, _, z), sliding along walls.

    Returns (new position at floor height, collided). Never leaves the navigable cells.
    """
    if substep <= 0.0:
        raise ValueError(f"substep must be > 0, got {substep}")
    x, z, collided = _slide(grid.navigable, grid.origin_x, grid.origin_z, grid.cell_size,
                            float(position[0]), float(position[2]), float(displacement[0]),
                            float(displacement[2]), float(substep))
    return np.array([x, 0.0, z]), bool(collided)
