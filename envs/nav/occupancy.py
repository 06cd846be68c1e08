"""NavGrid: the embedded navmesh, a 2D occupancy grid of cells the agent's centre may occupy.

Built from a scene LayoutGrid: walkable cells (FLOOR and DOOR) eroded by a disk of the agent radius,
so that a centre on a navigable cell keeps the whole agent body (a 0.1 m disk) off walls and furniture.
Cells follow the LayoutGrid convention: grid[row, col], row along z, col along x; the floor is y = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.scene.connectivity import erode_disk, label_components
from envs.scene.house import CellKind, LayoutGrid

# Like habitat's PathFinder.is_navigable(max_y_delta=0.5): points this far above/below the floor are off.
MAX_Y_DELTA_M = 0.5


@dataclass(frozen=True)
class NavGridConfig:
    agent_radius: float = 0.1  # metres (DESIGN 3.1)

    def validate(self) -> None:
        if not (self.agent_radius >= 0.0 and np.isfinite(self.agent_radius)):
            raise ValueError(f"NavGridConfig.agent_radius must be a finite value >= 0, got {self.agent_radius!r}")


class NavGrid:
    """Navigable cells of one house plus world <-> cell conversion, snapping and sampling."""

    def __init__(self, navigable: np.ndarray, origin_x: float, origin_z: float, cell_size: float):
        self.navigable = np.ascontiguousarray(navigable, dtype=bool)
        self.origin_x = float(origin_x)
        self.origin_z = float(origin_z)
        self.cell_size = float(cell_size)
        self.components, _ = label_components(self.navigable)
        sizes = np.bincount(self.components[self.components >= 0].ravel())
        self.component_sizes = sizes
        self.largest_component = int(np.argmax(sizes)) if sizes.size else -1
        self._nav_cells = np.argwhere(self.navigable)  # (M, 2) rows, cols: for exact nearest-cell snapping
        in_largest = self.components[self._nav_cells[:, 0], self._nav_cells[:, 1]] == self.largest_component
        self._largest_cells = self._nav_cells[in_largest]

    @classmethod
    def from_layout(cls, layout: LayoutGrid, config: NavGridConfig | None = None) -> NavGrid:
        config = config or NavGridConfig()
        config.validate()
        walkable = (layout.kind == CellKind.FLOOR) | (layout.kind == CellKind.DOOR)
        # The disk radius is rounded to whole cells (0.1 m = 2 cells at 5 cm).
        navigable = erode_disk(walkable, int(round(config.agent_radius / layout.cell_size)))
        return cls(navigable, layout.origin_x, layout.origin_z, layout.cell_size)

    @property
    def shape(self) -> tuple[int, int]:
        return self.navigable.shape  # type: ignore[return-value]

    # --- coordinates -------------------------------------------------------------------------------
    def cell_of(self, point) -> tuple[int, int]:
        """(row, col) of the cell holding a world point (x, y, z); may lie outside the grid."""
        x, z = float(point[0]), float(point[2])
        return (int(np.floor((z - self.origin_z) / self.cell_size)), int(np.floor((x - self.origin_x) / self.cell_size)))

    def cell_center(self, row: int, col: int) -> np.ndarray:
        """World point (x, 0, z) at the centre of a cell."""
        return np.array(
            [self.origin_x + (col + 0.5) * self.cell_size, 0.0, self.origin_z + (row + 0.5) * self.cell_size]
        )

    def in_grid(self, row: int, col: int) -> bool:
        return 0 <= row < self.navigable.shape[0] and 0 <= col < self.navigable.shape[1]

    # --- queries -----------------------------------------------------------------------------------
    def is_navigable(self, point) -> bool:
        """True if the agent's centre may stand at the point (floor-level, on a navigable cell)."""
        point = np.asarray(point, dtype=np.float64)
        if point.shape != (3,) or not np.all(np.isfinite(point)) or abs(point[1]) > MAX_Y_DELTA_M:
            return False
        row, col = self.cell_of(point)
        return self.in_grid(row, col) and bool(self.navigable[row, col])

    def component_of(self, point) -> int:
        """Component label of the point's cell, -1 if not navigable."""
        if not self.is_navigable(point):
            return -1
        row, col = self.cell_of(point)
        return int(self.components[row, col])

    def snap(self, point) -> np.ndarray:
        """The point itself (at floor height) if navigable, else the nearest navigable cell centre.

        NaN-filled when the grid has no navigable cell (SimulatorBackend.snap_point's contract).
        """
        point = np.asarray(point, dtype=np.float64).reshape(3)
        if self.is_navigable(np.array([point[0], 0.0, point[2]])):
            return np.array([point[0], 0.0, point[2]])
        if len(self._nav_cells) == 0:
            return np.full(3, np.nan)
        # Distances in cell units from the point to every navigable cell centre: exact and ~1 ms.
        col_f = (point[0] - self.origin_x) / self.cell_size - 0.5
        row_f = (point[2] - self.origin_z) / self.cell_size - 0.5
        d2 = (self._nav_cells[:, 0] - row_f) ** 2 + (self._nav_cells[:, 1] - col_f) ** 2
        row, col = self._nav_cells[int(np.argmin(d2))]
        return self.cell_center(int(row), int(col))

    def sample_navigable_point(self, rng: np.random.Generator, largest_component_only: bool = True) -> np.ndarray:
        """A uniformly random navigable point (a random navigable cell, a random spot inside it)."""
        if len(self._nav_cells) == 0:
            raise ValueError("the navigation grid has no navigable cell to sample from")
        cells = self._largest_cells if largest_component_only else self._nav_cells
        row, col = cells[int(rng.integers(len(cells)))]
        jitter = rng.uniform(0.05, 0.95, size=2) * self.cell_size
        return np.array([self.origin_x + col * self.cell_size + jitter[0], 0.0, self.origin_z + row * self.cell_size + jitter[1]])
