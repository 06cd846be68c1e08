"""Hand-made houses for navigation tests: small, exact layouts whose distances can be computed by hand."""

from __future__ import annotations

import numpy as np

from envs.scene.house import CELL_SIZE_M, WALL_HEIGHT_M, CellKind, House, LayoutGrid, Room


def house_from_kind(kind: np.ndarray, scene_id: str = "test/hand_made", origin=(0.0, 0.0)) -> House:
    """A House whose grid is `kind` (rows along z, cols along x) at 5 cm, origin at (x, z) = origin."""
    kind = kind.astype(np.uint8)
    solid = (kind == CellKind.WALL) | (kind == CellKind.OUTSIDE)
    grid = LayoutGrid(
        origin_x=origin[0], origin_z=origin[1], cell_size=CELL_SIZE_M, kind=kind,
        room=np.where(solid, -1, 0).astype(np.int16), obj=np.full(kind.shape, -1, np.int16),
        height=np.where(solid, WALL_HEIGHT_M, 0.0).astype(np.float32),
    )
    rows, cols = kind.shape
    room = Room(0, "living room", origin[0], origin[1], origin[0] + cols * CELL_SIZE_M, origin[1] + rows * CELL_SIZE_M)
    return House(scene_id=scene_id, seed=0, rooms=[room], doors=[], furniture=[], grid=grid)


def boxed(rows: int, cols: int) -> np.ndarray:
    """Floor of rows x cols cells inside a 2-cell wall border."""
    kind = np.full((rows + 4, cols + 4), CellKind.WALL, dtype=np.uint8)
    kind[2:-2, 2:-2] = CellKind.FLOOR
    return kind


def corridor() -> House:
    """A 1 m wide (z), 6 m long (x) corridor: floor cells x in [0.1, 6.1), z in [0.1, 1.1)."""
    return house_from_kind(boxed(20, 120), "test/corridor")


def two_rooms(door: bool = True) -> House:
    """Two 3 x 3 m rooms side by side along x, a 10 cm wall between them (x in [3.1, 3.2)).

    With `door`, a 1 m doorway in that wall at z in [1.1, 2.1) (DOOR cells).
    """
    kind = boxed(60, 122)  # floor x in [0.1, 6.2), z in [0.1, 3.1)
    kind[:, 62:64] = CellKind.WALL
    if door:
        kind[2 + 20 : 2 + 40, 62:64] = CellKind.DOOR
    return house_from_kind(kind, "test/two_rooms" if door else "test/two_rooms_closed")


def l_corridor() -> House:
    """An L: a 1 m corridor along x (z in [0.1, 1.1), x in [0.1, 5.1)) turning up along z at its end
    (x in [4.1, 5.1), z in [0.1, 5.1))."""
    kind = np.full((104, 104), CellKind.WALL, dtype=np.uint8)
    kind[2:22, 2:102] = CellKind.FLOOR
    kind[2:102, 82:102] = CellKind.FLOOR
    return house_from_kind(kind, "test/l_corridor")


def open_room(size_m: float = 20.0) -> House:
    """A square room of size_m with a grid of interior walls and doorways (a 20 x 20 m benchmark house)."""
    n = int(round(size_m / CELL_SIZE_M))
    kind = boxed(n - 4, n - 4)
    for line in range(80, n - 4, 80):  # walls every 4 m, each with two 1 m doorways
        kind[line : line + 2, 2:-2] = CellKind.WALL
        kind[2:-2, line : line + 2] = CellKind.WALL
        for start in range(20, n - 4, 80):
            kind[line : line + 2, start : start + 20] = CellKind.DOOR
            kind[start + 40 : start + 60, line : line + 2] = CellKind.DOOR
    return house_from_kind(kind, "test/open_room")
