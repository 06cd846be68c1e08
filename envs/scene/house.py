"""Data model of a procedural house: rooms, doors, furniture and the 2D layout grid.

Coordinates follow habitat: Y is up, the floor is the XZ plane at y = 0, metres. The layout grid
indexes cells as grid[row, col] with row = floor((z - origin_z) / cell_size) and
col = floor((x - origin_x) / cell_size). The grid is the single source of truth for rendering
(walls and furniture are extruded columns of given heights) and for navigation (occupancy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

CELL_SIZE_M = 0.05
WALL_HEIGHT_M = 2.6


class CellKind(IntEnum):
    OUTSIDE = 0  # beyond the house footprint: never navigable, rendered as wall
    FLOOR = 1
    WALL = 2
    DOOR = 3  # an open doorway: floor that joins two rooms
    OBJECT = 4  # furniture footprint (see cell_object for which one)


@dataclass(frozen=True)
class Room:
    index: int
    room_type: str  # one of scene.catalog.ROOM_TYPES, e.g. "kitchen"
    x0: float
    z0: float
    x1: float
    z1: float

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2.0, (self.z0 + self.z1) / 2.0)

    def contains(self, x: float, z: float) -> bool:
        return self.x0 <= x <= self.x1 and self.z0 <= z <= self.z1


@dataclass(frozen=True)
class Door:
    index: int
    x: float  # centre of the doorway
    z: float
    width: float
    rooms: tuple[int, int]  # the two room indices it joins


@dataclass(frozen=True)
class Furniture:
    index: int
    category: str  # one of scene.catalog.FURNITURE, e.g. "sofa"
    color_name: str  # unique per (category) within a house, e.g. "red"
    rgb: tuple[int, int, int]
    room: int  # room index
    x0: float
    z0: float
    x1: float
    z1: float
    height: float  # metres; the camera (1.25 m) sees over objects lower than it

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2.0, (self.z0 + self.z1) / 2.0)

    @property
    def name(self) -> str:
        return f"{self.color_name} {self.category}"


@dataclass
class LayoutGrid:
    """Rasterised house. Arrays share one shape (rows along z, cols along x)."""

    origin_x: float
    origin_z: float
    cell_size: float
    kind: np.ndarray  # uint8 CellKind
    room: np.ndarray  # int16 room index, -1 where no room (outside, walls)
    obj: np.ndarray  # int16 furniture index, -1 where none
    height: np.ndarray  # float32 top of the solid at the cell (0 for floor/door, wall height, object height)

    @property
    def shape(self) -> tuple[int, int]:
        return self.kind.shape  # type: ignore[return-value]

    def cell_of(self, x: float, z: float) -> tuple[int, int]:
        return (int(np.floor((z - self.origin_z) / self.cell_size)), int(np.floor((x - self.origin_x) / self.cell_size)))

    def center_of(self, row: int, col: int) -> tuple[float, float]:
        """World (x, z) of a cell centre."""
        return (self.origin_x + (col + 0.5) * self.cell_size, self.origin_z + (row + 0.5) * self.cell_size)


@dataclass
class House:
    scene_id: str  # e.g. "procedural/house_000042"
    seed: int
    rooms: list[Room]
    doors: list[Door]
    furniture: list[Furniture]
    grid: LayoutGrid
    # Per room type: (wall rgb, floor rgb); distinct across the room types present.
    materials: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = field(default_factory=dict)

    def room_at(self, x: float, z: float) -> Room | None:
        for room in self.rooms:
            if room.contains(x, z):
                return room
        return None
