"""`generate_house(scene_id)`: a reproducible procedural house from ids like `procedural/house_000042`.

Steps: draw a footprint and a room count from the seed, split it into rooms (layout.py), rasterise
walls, floors and doorways into the 5 cm LayoutGrid with numpy slices, furnish each room
(furniture.py), then check that the free floor (eroded by the agent radius) joins every room and
doorway; a piece that breaks that is dropped. The same id gives the same arrays bit for bit.
"""

from __future__ import annotations

import re

import numpy as np

from envs.scene.catalog import PALETTE, ROOM_TYPES
from envs.scene.connectivity import erode_disk, label_components
from envs.scene.furniture import DOOR_CLEARANCE_M, PlacedPiece, furnish_room
from envs.scene.house import CELL_SIZE_M, WALL_HEIGHT_M, CellKind, Door, Furniture, House, LayoutGrid, Room
from envs.scene.layout import CellRect, DoorCells, FloorPlan, cells, make_floor_plan

SCENE_PREFIX = "procedural/house_"
_SCENE_ID = re.compile(r"^procedural/house_(\d{6})$")
MARGIN_CELLS = 4  # OUTSIDE cells around the footprint so rays and erosion never index past the array
OUTER_WALL_CELLS = 3  # 0.15 m outer walls (the whole width is inside the footprint)
INNER_WALL_HALF_CELLS = 1  # 0.10 m interior walls, centred on the partition line
AGENT_RADIUS_CELLS = 2  # 0.1 m agent radius at 5 cm cells
ROOM_AREA_M2 = (12.0, 22.0)
MAX_SIDE_M = 20.0
MIN_SIDE_M = 6.0
PLAN_ATTEMPTS = 50


def scene_id_for(seed: int) -> str:
    if not 0 <= seed <= 999_999:
        raise ValueError(f"procedural house seed {seed} is outside 0..999999")
    return f"{SCENE_PREFIX}{seed:06d}"


def parse_scene_id(scene_id: str) -> int:
    """The seed of a procedural scene id; ValueError naming the id and the expected form otherwise."""
    match = _SCENE_ID.match(scene_id) if isinstance(scene_id, str) else None
    if match is None:
        raise ValueError(f"unknown scene id {scene_id!r}: expected 'procedural/house_NNNNNN' (six digits, e.g. procedural/house_000042)")
    return int(match.group(1))


def generate_house(scene_id: str) -> House:
    seed = parse_scene_id(scene_id)
    rng = np.random.default_rng(seed)
    plan = _connected_plan(rng, scene_id)
    grid, interiors, door_rects = _rasterise_structure(plan)
    zones = [_expand(rect, cells(DOOR_CLEARANCE_M)) for rect in door_rects]
    used_colors: dict[str, set[str]] = {}
    pieces: list[tuple[int, PlacedPiece]] = []
    for index, (room_type, interior) in enumerate(zip(plan.room_types, interiors)):
        pieces += [(index, piece) for piece in furnish_room(rng, room_type, interior, zones, used_colors)]
    structure = _copy_grid(grid)
    while True:
        grid = _copy_grid(structure)
        _stamp_furniture(grid, pieces)
        if _all_rooms_connected(grid, len(plan.rects), door_rects) or not pieces:
            break
        pieces.pop()  # the last piece placed blocked a passage: drop it (deterministic)
    return House(
        scene_id=scene_id,
        seed=seed,
        rooms=[_room(i, t, r, grid) for i, (t, r) in enumerate(zip(plan.room_types, interiors))],
        doors=[_door(i, d, r, grid) for i, (d, r) in enumerate(zip(plan.doors, door_rects))],
        furniture=[_furniture(i, room, piece, grid) for i, (room, piece) in enumerate(pieces)],
        grid=grid,
        materials={t: (ROOM_TYPES[t].wall_rgb, ROOM_TYPES[t].floor_rgb) for t in sorted(set(plan.room_types))},
    )


def _connected_plan(rng: np.random.Generator, scene_id: str) -> FloorPlan:
    for _ in range(PLAN_ATTEMPTS):
        num_rooms = int(rng.integers(4, 11))
        area = num_rooms * rng.uniform(*ROOM_AREA_M2)
        aspect = rng.uniform(0.6, 1.6)
        width = float(np.clip(np.sqrt(area * aspect), MIN_SIDE_M, MAX_SIDE_M))
        depth = float(np.clip(area / width, MIN_SIDE_M, MAX_SIDE_M))
        plan = make_floor_plan(rng, num_rooms, cells(depth), cells(width))
        if len(plan.rects) >= 4 and len(plan.doors) >= len(plan.rects) - 1 and _doors_span(plan):
            return plan
    raise RuntimeError(f"could not lay out {scene_id} as a connected house in {PLAN_ATTEMPTS} attempts")


def _doors_span(plan: FloorPlan) -> bool:
    reached, frontier = {0}, [0]
    while frontier:
        room = frontier.pop()
        for door in plan.doors:
            if room in door.rooms:
                other = door.rooms[1] if door.rooms[0] == room else door.rooms[0]
                if other not in reached:
                    reached.add(other)
                    frontier.append(other)
    return len(reached) == len(plan.rects)


def _expand(rect: CellRect, by: int) -> CellRect:
    return CellRect(rect.r0 - by, rect.c0 - by, rect.r1 + by, rect.c1 + by)


def _interior(rect: CellRect, plan: FloorPlan) -> CellRect:
    """Absolute cells of a room's floor: the partition rectangle minus its share of the walls."""
    def inset(outer: bool) -> int:
        return OUTER_WALL_CELLS if outer else INNER_WALL_HALF_CELLS
    m = MARGIN_CELLS
    return CellRect(
        m + rect.r0 + inset(rect.r0 == 0), m + rect.c0 + inset(rect.c0 == 0),
        m + rect.r1 - inset(rect.r1 == plan.rows), m + rect.c1 - inset(rect.c1 == plan.cols),
    )


def _rasterise_structure(plan: FloorPlan) -> tuple[LayoutGrid, list[CellRect], list[CellRect]]:
    m = MARGIN_CELLS
    shape = (plan.rows + 2 * m, plan.cols + 2 * m)
    kind = np.full(shape, CellKind.OUTSIDE, dtype=np.uint8)
    room = np.full(shape, -1, dtype=np.int16)
    height = np.full(shape, WALL_HEIGHT_M, dtype=np.float32)
    kind[m:m + plan.rows, m:m + plan.cols] = CellKind.WALL
    interiors = [_interior(rect, plan) for rect in plan.rects]
    for index, r in enumerate(interiors):
        kind[r.r0:r.r1, r.c0:r.c1] = CellKind.FLOOR
        room[r.r0:r.r1, r.c0:r.c1] = index
        height[r.r0:r.r1, r.c0:r.c1] = 0.0
    door_rects = []
    for door in plan.doors:
        a, b = door.rooms
        lo, hi, line = m + door.start, m + door.start + door.width, m + door.line
        if door.vertical:
            rect = CellRect(lo, line - INNER_WALL_HALF_CELLS, hi, line + INNER_WALL_HALF_CELLS)
            room[lo:hi, rect.c0:line], room[lo:hi, line:rect.c1] = a, b
        else:
            rect = CellRect(line - INNER_WALL_HALF_CELLS, lo, line + INNER_WALL_HALF_CELLS, hi)
            room[rect.r0:line, lo:hi], room[line:rect.r1, lo:hi] = a, b
        kind[rect.r0:rect.r1, rect.c0:rect.c1] = CellKind.DOOR
        height[rect.r0:rect.r1, rect.c0:rect.c1] = 0.0
        door_rects.append(rect)
    obj = np.full(shape, -1, dtype=np.int16)
    origin = -m * CELL_SIZE_M  # the footprint starts at x = z = 0
    return LayoutGrid(origin, origin, CELL_SIZE_M, kind, room, obj, height), interiors, door_rects


def _copy_grid(grid: LayoutGrid) -> LayoutGrid:
    return LayoutGrid(grid.origin_x, grid.origin_z, grid.cell_size, grid.kind.copy(), grid.room.copy(),
                      grid.obj.copy(), grid.height.copy())


def _stamp_furniture(grid: LayoutGrid, pieces: list[tuple[int, PlacedPiece]]) -> None:
    for index, (_, piece) in enumerate(pieces):
        r = piece.rect
        grid.kind[r.r0:r.r1, r.c0:r.c1] = CellKind.OBJECT
        grid.obj[r.r0:r.r1, r.c0:r.c1] = index
        grid.height[r.r0:r.r1, r.c0:r.c1] = piece.height


def _all_rooms_connected(grid: LayoutGrid, num_rooms: int, door_rects: list[CellRect]) -> bool:
    """One component of the eroded free floor reaches every room and every doorway."""
    free = (grid.kind == CellKind.FLOOR) | (grid.kind == CellKind.DOOR)
    eroded = erode_disk(free, AGENT_RADIUS_CELLS)
    labels, count = label_components(eroded)
    if count == 0:
        return False
    main = int(np.argmax(np.bincount(labels[labels >= 0])))
    in_main = labels == main
    rooms_reached = np.unique(grid.room[in_main])
    if len(rooms_reached[rooms_reached >= 0]) < num_rooms:
        return False
    return all(in_main[(r.r0 + r.r1) // 2, (r.c0 + r.c1) // 2] for r in door_rects)


def _world_rect(rect: CellRect, grid: LayoutGrid) -> tuple[float, float, float, float]:
    cs = grid.cell_size
    return (grid.origin_x + rect.c0 * cs, grid.origin_z + rect.r0 * cs, grid.origin_x + rect.c1 * cs, grid.origin_z + rect.r1 * cs)


def _room(index: int, room_type: str, interior: CellRect, grid: LayoutGrid) -> Room:
    return Room(index, room_type, *_world_rect(interior, grid))


def _door(index: int, door: DoorCells, rect: CellRect, grid: LayoutGrid) -> Door:
    x0, z0, x1, z1 = _world_rect(rect, grid)
    return Door(index, (x0 + x1) / 2.0, (z0 + z1) / 2.0, door.width * grid.cell_size, door.rooms)


def _furniture(index: int, room: int, piece: PlacedPiece, grid: LayoutGrid) -> Furniture:
    return Furniture(index, piece.category, piece.color_name, PALETTE[piece.color_name], room,
                     *_world_rect(piece.rect, grid), piece.height)
