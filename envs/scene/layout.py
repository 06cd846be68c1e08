"""Floor plans in grid cells: split a rectangular footprint into rooms, pick room types, place doors.

All coordinates here are integer cells of the footprint (row = z, col = x, 5 cm each), so walls and
doors land exactly on cell boundaries. A room's partition rectangle runs to the centre line of its
walls; the generator turns it into interior floor, walls and doorways.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.scene.house import CELL_SIZE_M

MIN_ROOM_SIDE_M = 2.6
HALLWAY_WIDTH_M = (1.4, 1.9)
DOOR_WIDTH_M = (0.9, 1.1)
DOOR_CORNER_MARGIN_M = 0.4  # keeps doorways clear of the perpendicular walls
EXTRA_DOOR_PROBABILITY = 0.2  # doors beyond the spanning tree make loops


def cells(metres: float) -> int:
    return int(round(metres / CELL_SIZE_M))


@dataclass(frozen=True)
class CellRect:
    r0: int
    c0: int
    r1: int
    c1: int

    @property
    def area(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)

    def transposed(self) -> CellRect:
        return CellRect(self.c0, self.r0, self.c1, self.r1)


@dataclass(frozen=True)
class DoorCells:
    vertical: bool  # True: the wall runs along z (a boundary at column `line`); False: along x (row `line`)
    line: int  # the wall's centre line in cells
    start: int  # first cell of the opening along the wall
    width: int  # cells
    rooms: tuple[int, int]  # (room before the line, room after it)


@dataclass(frozen=True)
class FloorPlan:
    rows: int
    cols: int
    rects: list[CellRect]
    room_types: list[str]
    doors: list[DoorCells]


def make_floor_plan(rng: np.random.Generator, num_rooms: int, rows: int, cols: int) -> FloorPlan:
    rects, hallway = _partition(rng, num_rooms, rows, cols)
    room_types = _assign_room_types(rng, rects, hallway)
    doors = _place_doors(rng, rects, hallway)
    return FloorPlan(rows, cols, rects, room_types, doors)


def _partition(rng: np.random.Generator, num_rooms: int, rows: int, cols: int) -> tuple[list[CellRect], int | None]:
    """A hallway with rooms on both sides when the footprint allows one, else recursive splitting."""
    transpose = rows > cols  # build with the long axis along columns, then turn back
    short, long = (cols, rows) if transpose else (rows, cols)
    hallway_width = cells(rng.uniform(*HALLWAY_WIDTH_M))
    min_side = cells(MIN_ROOM_SIDE_M)
    fits_hallway = num_rooms >= 5 and short >= 2 * min_side + hallway_width
    if fits_hallway and rng.random() < 0.8:
        rects = _hallway_plan(rng, num_rooms, short, long, hallway_width)
        hallway = 0
    else:
        rects = _split_plan(rng, num_rooms, short, long)
        hallway = None
    if transpose:
        rects = [rect.transposed() for rect in rects]
    return rects, hallway


def _hallway_plan(rng: np.random.Generator, num_rooms: int, short: int, long: int, width: int) -> list[CellRect]:
    min_side = cells(MIN_ROOM_SIDE_M)
    top = int(rng.integers(min_side, short - min_side - width + 1))
    bottom_start = top + width
    capacity = (long // min_side, long // min_side)
    side_rooms = num_rooms - 1
    share = top / (top + short - bottom_start)
    n_top = int(np.clip(round(side_rooms * share), max(1, side_rooms - capacity[1]), min(capacity[0], side_rooms - 1)))
    n_bottom = min(side_rooms - n_top, capacity[1])
    rects = [CellRect(top, 0, bottom_start, long)]
    for (r0, r1), count in (((0, top), n_top), ((bottom_start, short), n_bottom)):
        for c0, c1 in _random_cuts(rng, long, count, min_side):
            rects.append(CellRect(r0, c0, r1, c1))
    return rects


def _random_cuts(rng: np.random.Generator, length: int, count: int, min_side: int) -> list[tuple[int, int]]:
    """`count` consecutive intervals covering [0, length), each at least `min_side` long."""
    spare = length - count * min_side
    weights = rng.dirichlet(np.ones(count))
    extra = np.floor(weights * spare).astype(int)
    extra[-1] += spare - int(extra.sum())
    edges = np.concatenate([[0], np.cumsum(min_side + extra)])
    return [(int(edges[i]), int(edges[i + 1])) for i in range(count)]


def _split_plan(rng: np.random.Generator, num_rooms: int, short: int, long: int) -> list[CellRect]:
    min_side = cells(MIN_ROOM_SIDE_M)
    rects = [CellRect(0, 0, short, long)]
    while len(rects) < num_rooms:
        for rect in sorted(rects, key=lambda r: -r.area):
            height, width = rect.r1 - rect.r0, rect.c1 - rect.c0
            length = max(height, width)
            if length < 2 * min_side:
                continue
            lo, hi = max(min_side, int(0.35 * length)), min(length - min_side, int(0.65 * length))
            cut = int(rng.integers(lo, hi + 1))
            rects.remove(rect)
            if width >= height:
                rects += [CellRect(rect.r0, rect.c0, rect.r1, rect.c0 + cut), CellRect(rect.r0, rect.c0 + cut, rect.r1, rect.c1)]
            else:
                rects += [CellRect(rect.r0, rect.c0, rect.r0 + cut, rect.c1), CellRect(rect.r0 + cut, rect.c0, rect.r1, rect.c1)]
            break
        else:
            break  # nothing left to split: the footprint is too small for more rooms
    return rects


def _assign_room_types(rng: np.random.Generator, rects: list[CellRect], hallway: int | None) -> list[str]:
    """Big rooms become living rooms and kitchens, the smallest a bathroom; the rest vary."""
    types = [""] * len(rects)
    if hallway is not None:
        types[hallway] = "hallway"
    others = sorted((i for i in range(len(rects)) if i != hallway), key=lambda i: (-rects[i].area, i))
    core = ["living room", "kitchen", "bedroom"]
    extras = ["bedroom", "office", "dining room", "bathroom", "laundry room", "bedroom", "office", "dining room"]
    rng.shuffle(extras)
    types[others[-1]] = "bathroom"
    for position, index in enumerate(others[:-1]):
        types[index] = core[position] if position < len(core) else extras[(position - len(core)) % len(extras)]
    return types


def _shared_edge(a: CellRect, b: CellRect) -> tuple[bool, int, int, int] | None:
    """(vertical, line, lo, hi) of the wall segment `a` and `b` share with `a` before the line, else None."""
    if a.c1 == b.c0:
        lo, hi = max(a.r0, b.r0), min(a.r1, b.r1)
        return (True, a.c1, lo, hi) if hi > lo else None
    if a.r1 == b.r0:
        lo, hi = max(a.c0, b.c0), min(a.c1, b.c1)
        return (False, a.r1, lo, hi) if hi > lo else None
    return None


def _place_doors(rng: np.random.Generator, rects: list[CellRect], hallway: int | None) -> list[DoorCells]:
    """A random spanning tree over rooms that share enough wall (hallway links first), plus a few loops."""
    margin = cells(DOOR_CORNER_MARGIN_M)
    candidates = []
    for i, a in enumerate(rects):
        for j, b in enumerate(rects):
            edge = _shared_edge(a, b)
            if edge is None:
                continue
            vertical, line, lo, hi = edge
            width = cells(rng.uniform(*DOOR_WIDTH_M))
            if hi - lo < width + 2 * margin:
                continue
            start = int(rng.integers(lo + margin, hi - margin - width + 1))
            priority = rng.random() + (0.0 if hallway in (i, j) else 1.0)
            candidates.append((priority, DoorCells(vertical, line, start, width, (i, j))))
    candidates.sort(key=lambda item: item[0])
    parent = list(range(len(rects)))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    doors = []
    for _, door in candidates:
        a, b = root(door.rooms[0]), root(door.rooms[1])
        if a != b:
            parent[a] = b
            doors.append(door)
        elif rng.random() < EXTRA_DOOR_PROBABILITY:
            doors.append(door)
    return doors
