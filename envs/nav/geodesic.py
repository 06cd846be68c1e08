"""Geodesic distance fields by fast marching (scikit-fmm) over a NavGrid, cached per goal set.

A field holds the shortest navigable distance in metres to the nearest goal (inf where unreachable or
not navigable). Building one costs one FMM solve; every later query is an O(1) bilinear lookup, which is
what the expert (25 queries a step) and the metrics need.

The solve grid is the NavGrid itself by default (5 cm). `cell_size` (a whole multiple of the navmesh
cell) solves on a coarser grid instead: 10 cm has 4x fewer cells and solves ~4x faster (16 vs 63 ms
CPU on 20 x 20 m), but its error against the 5 cm field reaches ~15-25 cm on generated houses (median
~1.5-2 cm), because FMM's error around obstacle corners grows with the cell; so it is opt-in (see
tests/envs/test_nav_geodesic_coarse.py). Paths descend the field sampled at navmesh cell centres. A
coarse cell is solved if ANY of its fine cells is navigable and reaches a goal: every fine connection
survives (doorways and narrow gaps cannot close), and no component or obstacle can be bridged because
the agent-radius erosion makes every obstacle at least 5 fine cells thick. A query point is answered
only if its own fine cell is navigable and reachable, then interpolated in the solve grid (the point's
own solve cell is always solved).

The goals enter the solver as the zero level set of phi = |cell - goal| - r0 (a small circle of radius
r0 around each exact goal point), so distances are exact to within the solver's error rather than
rounded to goal cell centres; adding r0 back gives the distance to the goal point itself, and inside
the circle a query returns the straight-line distance exactly.
"""

from __future__ import annotations

from collections import OrderedDict

import numba
import numpy as np
import skfmm

from envs.nav.occupancy import NavGrid

_GOAL_CIRCLE_CELLS = 1.5  # r0 in solve cells: large enough that the goal's own cell lies inside the circle
_PHI_WINDOW_CELLS = 4  # phi is an exact signed distance this far around each goal, +1 beyond (sign only)


def _goal_points(goals) -> np.ndarray:
    goals = np.asarray(goals, dtype=np.float64)
    if goals.ndim == 1:
        goals = goals.reshape(1, -1)
    if goals.ndim != 2 or goals.shape[1] != 3 or goals.shape[0] == 0:
        raise ValueError(f"goals must be one (3,) point or a (K, 3) array with K >= 1, got shape {goals.shape}")
    if not np.all(np.isfinite(goals)):
        raise ValueError(f"goals must be finite, got {goals.tolist()}")
    return goals


def solve_factor(grid: NavGrid, cell_size: float | None) -> int:
    """Fine cells per solve cell along each axis: cell_size must be a whole multiple of the grid's."""
    if cell_size is None:
        return 1
    ratio = float(cell_size) / grid.cell_size
    factor = int(round(ratio)) if np.isfinite(ratio) else 0
    if factor < 1 or abs(ratio - factor) > 1e-6:
        raise ValueError(f"field cell_size must be a whole multiple (>= 1x) of the navmesh cell "
                         f"{grid.cell_size} m, got {cell_size!r}")
    return factor


def reachable_cells(grid: NavGrid, goals: np.ndarray) -> np.ndarray:
    """(rows, cols) bool: navigable fine cells in the connected components of the (navigable) goals."""
    rows = np.floor((goals[:, 2] - grid.origin_z) / grid.cell_size).astype(np.int64)
    cols = np.floor((goals[:, 0] - grid.origin_x) / grid.cell_size).astype(np.int64)
    labels = np.unique(grid.components[rows, cols])
    if labels.size == 1:
        return grid.components == labels[0]
    return np.isin(grid.components, labels)


def coarsen_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """Block-OR of a bool mask over factor x factor blocks (the last blocks padded with False)."""
    if factor == 1:
        return mask
    rows, cols = mask.shape
    pad_r, pad_c = -rows % factor, -cols % factor
    if pad_r or pad_c:
        mask = np.pad(mask, ((0, pad_r), (0, pad_c)))
    return mask.reshape(mask.shape[0] // factor, factor, mask.shape[1] // factor, factor).any(axis=(1, 3))


def compute_distance_field(grid: NavGrid, goals: np.ndarray, order: int = 2, factor: int = 1,
                           reachable: np.ndarray | None = None) -> np.ndarray:
    """Metres to the nearest goal on the solve grid (cells of factor x grid.cell_size, same origin).

    goals must be navigable points (snap them first). order 2 (default) is within ~0.2% of the Euclidean
    distance in open space at any angle; order 1 is ~20% faster but overestimates diagonals by ~1%.
    """
    if reachable is None:
        reachable = reachable_cells(grid, goals)
    # A solve cell is open if any of its fine cells is: no fine connection can close (see the module doc).
    solve_mask = coarsen_any(reachable, factor)
    cell = grid.cell_size * factor
    origin_x, origin_z = grid.origin_x, grid.origin_z
    rows, cols = solve_mask.shape
    # Solve only on the bounding box of the reachable cells (plus a one-cell border).
    hit_rows = np.flatnonzero(solve_mask.any(axis=1))
    hit_cols = np.flatnonzero(solve_mask.any(axis=0))
    r_lo, r_hi = max(hit_rows[0] - 1, 0), min(hit_rows[-1] + 2, rows)
    c_lo, c_hi = max(hit_cols[0] - 1, 0), min(hit_cols[-1] + 2, cols)
    phi = np.ones((r_hi - r_lo, c_hi - c_lo))
    for goal in goals:
        _stamp_goal_circle(phi, (goal[2] - origin_z) / cell - r_lo, (goal[0] - origin_x) / cell - c_lo)
    crop_mask = solve_mask[r_lo:r_hi, c_lo:c_hi]
    solved = skfmm.distance(np.ma.MaskedArray(phi, ~crop_mask), dx=cell, order=order)
    field = np.full((rows, cols), np.inf)
    field[r_lo:r_hi, c_lo:c_hi] = np.ma.filled(solved, np.inf) + _GOAL_CIRCLE_CELLS * cell
    return field


def _stamp_goal_circle(phi: np.ndarray, goal_row: float, goal_col: float) -> None:
    """Write the signed distance (in cells) to a circle around the goal into a window of phi (min-combined)."""
    r0 = max(int(np.floor(goal_row)) - _PHI_WINDOW_CELLS, 0)
    c0 = max(int(np.floor(goal_col)) - _PHI_WINDOW_CELLS, 0)
    r1 = min(int(np.floor(goal_row)) + _PHI_WINDOW_CELLS + 1, phi.shape[0])
    c1 = min(int(np.floor(goal_col)) + _PHI_WINDOW_CELLS + 1, phi.shape[1])
    rr, cc = np.mgrid[r0:r1, c0:c1]
    signed = np.hypot(rr + 0.5 - goal_row, cc + 0.5 - goal_col) - _GOAL_CIRCLE_CELLS
    phi[r0:r1, c0:c1] = np.minimum(phi[r0:r1, c0:c1], signed)


class GeodesicField:
    """Distances to one goal set over one NavGrid, with O(1) point queries and shortest paths.

    cell_size: metres of the solve grid, a whole multiple of grid.cell_size (None: the grid's own, the
    accurate default).
    `distances` is the solve-grid field (float32, inf off the reachable set), `factor` fine cells per
    solve cell, `reachable` the fine cells that reach a goal.
    """

    def __init__(self, grid: NavGrid, goals, order: int = 2, cell_size: float | None = None):
        if order not in (1, 2):
            raise ValueError(f"fast-marching order must be 1 or 2, got {order}")
        self.grid = grid
        self.factor = solve_factor(grid, cell_size)
        self.goals = np.array([grid.snap(g) for g in _goal_points(goals)])
        if np.isnan(self.goals).any():
            raise ValueError("cannot build a geodesic field: the navigation grid has no navigable cell")
        self.reachable = reachable_cells(grid, self.goals)
        # float32 halves the memory of cached fields; 20 m at float32 resolves micrometres.
        self.distances = compute_distance_field(grid, self.goals, order, self.factor, self.reachable).astype(np.float32)
        self._fine: np.ndarray | None = None
        # Scalars and goal (x, z) pairs in one array: numba's per-array dispatch cost dominates an O(1) query.
        self._query_params = np.concatenate([[_GOAL_CIRCLE_CELLS * grid.cell_size * self.factor, grid.origin_x,
                                              grid.origin_z, grid.cell_size, self.factor], self.goals[:, [0, 2]].ravel()])

    def distance(self, point) -> float:
        """Geodesic metres from a point to the nearest goal: bilinear over the finite neighbour samples.

        inf when the point's own cell is not navigable or cannot reach any goal.
        """
        return float(_query(self.distances, self.reachable, self._query_params, float(point[0]), float(point[2])))

    def _fine_distances(self) -> np.ndarray:
        """The field at every navmesh cell centre (the solve grid itself when it is the navmesh)."""
        if self.factor == 1:
            return self.distances
        if self._fine is None:  # built on the first path request: fields used only for distances skip it
            self._fine = _sample_fine(self.distances, self.reachable, self._query_params)
        return self._fine

    def shortest_path(self, start) -> np.ndarray:
        """(N, 3) points from start to the nearest goal (string-pulled descent); (0, 3) if unreachable."""
        start = np.asarray(start, dtype=np.float64).reshape(3)
        if not np.isfinite(self.distance(start)):
            return np.zeros((0, 3))
        g = self.grid
        start_uv = np.array([(start[2] - g.origin_z) / g.cell_size, (start[0] - g.origin_x) / g.cell_size])
        chain = _descend(self._fine_distances(), int(np.floor(start_uv[0])), int(np.floor(start_uv[1])))
        end_cell = g.cell_center(int(chain[-1, 0]), int(chain[-1, 1]))
        goal = self.goals[int(np.argmin(np.linalg.norm(self.goals - end_cell, axis=1)))]
        goal_uv = np.array([(goal[2] - g.origin_z) / g.cell_size, (goal[0] - g.origin_x) / g.cell_size])
        chain_uv = chain.astype(np.float64) + 0.5
        waypoints = np.concatenate([start_uv[None], chain_uv, goal_uv[None]])
        keep = _string_pull(g.navigable, waypoints)
        uv = waypoints[keep]
        points = np.zeros((len(uv), 3))
        points[:, 0] = g.origin_x + uv[:, 1] * g.cell_size
        points[:, 2] = g.origin_z + uv[:, 0] * g.cell_size
        return points


@numba.njit(cache=True)
def _query(field, reachable, params, x, z):
    """inf off the reachable fine cells; the straight-line distance inside a goal's circle (where the
    field is seeded with exactly that, but bilinear samples would blunt the cone's tip by up to half a
    sample diagonal); else bilinear over the finite solve samples around the point.

    params: goal circle radius, origin x, origin z (metres), fine cell (metres), fine cells per solve cell,
    then x, z of each goal.
    """
    goal_circle, origin_x, origin_z, fine_cell, factor = params[0], params[1], params[2], params[3], int(params[4])
    row, col = int(np.floor((z - origin_z) / fine_cell)), int(np.floor((x - origin_x) / fine_cell))
    if row < 0 or col < 0 or row >= reachable.shape[0] or col >= reachable.shape[1] or not reachable[row, col]:
        return np.inf
    nearest = np.inf
    for i in range(5, params.shape[0], 2):
        nearest = min(nearest, np.hypot(params[i] - x, params[i + 1] - z))
    if nearest <= goal_circle:
        return nearest
    # The point's own solve cell (one of the four samples around it) is always solved: finite.
    return _bilinear_finite(field, origin_x, origin_z, fine_cell * factor, x, z)


@numba.njit(cache=True)
def _sample_fine(field, reachable, params):
    """The solve-grid field queried at every reachable navmesh cell centre (inf elsewhere)."""
    out = np.full(reachable.shape, np.inf, dtype=np.float32)
    origin_x, origin_z, fine_cell = params[1], params[2], params[3]
    for r in range(reachable.shape[0]):
        for c in range(reachable.shape[1]):
            if reachable[r, c]:
                out[r, c] = _query(field, reachable, params, origin_x + (c + 0.5) * fine_cell,
                                   origin_z + (r + 0.5) * fine_cell)
    return out


@numba.njit(cache=True)
def _bilinear_finite(field, origin_x, origin_z, cell, x, z):
    u = (z - origin_z) / cell - 0.5  # row coordinate of cell centres
    v = (x - origin_x) / cell - 0.5
    rows, cols = field.shape
    r0, c0 = int(np.floor(u)), int(np.floor(v))
    fu, fv = u - r0, v - c0
    total, weight = 0.0, 0.0
    for dr in range(2):
        for dc in range(2):
            r, c = r0 + dr, c0 + dc
            if 0 <= r < rows and 0 <= c < cols and np.isfinite(field[r, c]):
                w = (fu if dr else 1.0 - fu) * (fv if dc else 1.0 - fv)
                total += w * field[r, c]
                weight += w
    if weight <= 1e-12:
        return np.inf  # no finite sample among the four around the point
    return total / weight


@numba.njit(cache=True)
def _descend(field, row, col):
    """Cells of steepest 8-neighbour descent from (row, col) until no neighbour is lower (the goal).

    FMM values are computed from strictly smaller upwind neighbours, so descent never stalls early.
    """
    rows, cols = field.shape
    out = np.empty((rows * cols, 2), dtype=np.int64)
    n = 0
    out[n, 0], out[n, 1] = row, col
    n += 1
    while True:
        best, br, bc = field[row, col], -1, -1
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = row + dr, col + dc
                if (dr or dc) and 0 <= r < rows and 0 <= c < cols and field[r, c] < best:
                    best, br, bc = field[r, c], r, c
        if br < 0:
            return out[:n]
        row, col = br, bc
        out[n, 0], out[n, 1] = row, col
        n += 1


@numba.njit(cache=True)
def line_of_sight(navigable, u0, v0, u1, v1):
    """True if every point of the segment (grid coords: u rows, v cols) lies on a navigable cell.

    Sampled every quarter cell, which catches any wall at least one cell thick.
    """
    length = np.hypot(u1 - u0, v1 - v0)
    steps = max(int(np.ceil(length * 4.0)), 1)
    rows, cols = navigable.shape
    for i in range(steps + 1):
        t = i / steps
        r, c = int(np.floor(u0 + t * (u1 - u0))), int(np.floor(v0 + t * (v1 - v0)))
        if r < 0 or c < 0 or r >= rows or c >= cols or not navigable[r, c]:
            return False
    return True


@numba.njit(cache=True)
def _string_pull(navigable, waypoints):
    """Indices of waypoints kept by greedy string pulling: from each anchor, jump to the last visible one."""
    n = waypoints.shape[0]
    keep = np.empty(n, dtype=np.int64)
    k = 0
    anchor = 0
    keep[k] = 0
    k += 1
    while anchor < n - 1:
        nxt = anchor + 1
        for j in range(anchor + 2, n):
            if line_of_sight(navigable, waypoints[anchor, 0], waypoints[anchor, 1], waypoints[j, 0], waypoints[j, 1]):
                nxt = j
            else:
                break
        anchor = nxt
        keep[k] = anchor
        k += 1
    return keep[:k]


def goal_key(goals) -> tuple:
    """Cache key of a goal set: order-free, millimetre resolution."""
    return tuple(sorted((round(float(g[0]), 3), round(float(g[1]), 3), round(float(g[2]), 3)) for g in _goal_points(goals)))


class GeodesicCache:
    """LRU of GeodesicFields for one NavGrid, keyed by goal set."""

    def __init__(self, grid: NavGrid, capacity: int = 32, order: int = 2,
                 cell_size: float | None = None):
        if capacity < 1:
            raise ValueError(f"GeodesicCache capacity must be >= 1, got {capacity}")
        solve_factor(grid, cell_size)  # fail here, not at the first query
        self.grid = grid
        self.order = order
        self.cell_size = cell_size
        self.capacity = capacity
        self._fields: OrderedDict[tuple, GeodesicField] = OrderedDict()

    def field(self, goals) -> GeodesicField:
        key = goal_key(goals)
        found = self._fields.get(key)
        if found is not None:
            self._fields.move_to_end(key)
            return found
        built = GeodesicField(self.grid, goals, self.order, self.cell_size)
        self._fields[key] = built
        if len(self._fields) > self.capacity:
            self._fields.popitem(last=False)
        return built

    def distance(self, start, goals) -> float:
        """Geodesic metres from start (snapped onto the grid) to the nearest goal; inf if unreachable."""
        snapped = self.grid.snap(start)
        if np.isnan(snapped).any():
            return float("inf")
        return self.field(goals).distance(snapped)

    def shortest_path(self, start, goal) -> np.ndarray:
        snapped = self.grid.snap(start)
        if np.isnan(snapped).any():
            return np.zeros((0, 3))
        return self.field(goal).shortest_path(snapped)
