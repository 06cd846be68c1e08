"""Furniture placement inside one room, in absolute grid cells.

Pieces stand mostly against walls (snapped into a corner when close to one, so no thin dead gaps),
tables stand free with a walkway around them, and every piece keeps a gap to the others and stays
clear of doorways; the generator still verifies the free floor is connected afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from envs.scene.catalog import FURNITURE, PALETTE, ROOM_TYPES, FurnitureSpec
from envs.scene.layout import CellRect, cells

PIECE_GAP_M = 0.45  # between two pieces: the 0.2 m wide agent passes with room to spare
DOOR_CLEARANCE_M = 0.7  # no furniture this close to a doorway
CORNER_SNAP_M = 0.45  # closer than this to a corner: pushed into it
FREE_STANDING_CLEARANCE_M = 0.6  # walkway around a table
ATTEMPTS_PER_PIECE = 25


@dataclass(frozen=True)
class PlacedPiece:
    category: str
    color_name: str
    rect: CellRect  # absolute grid cells
    height: float


def _overlaps(a: CellRect, b: CellRect, gap: int = 0) -> bool:
    return a.r0 < b.r1 + gap and b.r0 < a.r1 + gap and a.c0 < b.c1 + gap and b.c0 < a.c1 + gap


def choose_categories(rng: np.random.Generator, room_type: str, interior: CellRect) -> list[str]:
    """Required pieces first, then a few optional ones, more in bigger rooms."""
    spec = ROOM_TYPES[room_type]
    area_m2 = interior.area * (cells(1.0) ** -2)
    extra = int(np.clip(round(area_m2 / 5.0), 1, 5))
    optional = list(spec.optional)
    rng.shuffle(optional)
    return list(spec.required) + optional[:extra]


def _against_wall(rng: np.random.Generator, spec: FurnitureSpec, room: CellRect) -> CellRect | None:
    """A footprint flush with a random wall of the room (width along the wall)."""
    width, depth = cells(spec.width), cells(spec.depth)
    side = int(rng.integers(4))
    along_lo, along_hi = (room.c0, room.c1) if side < 2 else (room.r0, room.r1)
    if along_hi - along_lo < width:
        return None
    pos = int(rng.integers(along_lo, along_hi - width + 1))
    snap = cells(CORNER_SNAP_M)
    if pos - along_lo < snap:
        pos = along_lo
    elif along_hi - (pos + width) < snap:
        pos = along_hi - width
    if side == 0:  # north wall (low z)
        return CellRect(room.r0, pos, room.r0 + depth, pos + width)
    if side == 1:  # south wall
        return CellRect(room.r1 - depth, pos, room.r1, pos + width)
    if side == 2:  # west wall (low x)
        return CellRect(pos, room.c0, pos + width, room.c0 + depth)
    return CellRect(pos, room.c1 - depth, pos + width, room.c1)


def _free_standing(rng: np.random.Generator, spec: FurnitureSpec, room: CellRect) -> CellRect | None:
    width, depth = cells(spec.width), cells(spec.depth)
    if rng.random() < 0.5:
        width, depth = depth, width
    clear = cells(FREE_STANDING_CLEARANCE_M)
    r_lo, r_hi = room.r0 + clear, room.r1 - clear - depth
    c_lo, c_hi = room.c0 + clear, room.c1 - clear - width
    if r_hi < r_lo or c_hi < c_lo:
        return None
    r, c = int(rng.integers(r_lo, r_hi + 1)), int(rng.integers(c_lo, c_hi + 1))
    return CellRect(r, c, r + depth, c + width)


def _fits(candidate: CellRect, room: CellRect, placed: list[PlacedPiece], door_zones: list[CellRect]) -> bool:
    inside = room.r0 <= candidate.r0 and candidate.r1 <= room.r1 and room.c0 <= candidate.c0 and candidate.c1 <= room.c1
    if not inside:
        return False
    # A walkway of at least one gap must stay across the room in front of the piece.
    if min(room.r1 - room.r0 - (candidate.r1 - candidate.r0), room.c1 - room.c0 - (candidate.c1 - candidate.c0)) < cells(PIECE_GAP_M):
        return False
    gap = cells(PIECE_GAP_M)
    if any(_overlaps(candidate, piece.rect, gap) for piece in placed):
        return False
    return not any(_overlaps(candidate, zone) for zone in door_zones)


def furnish_room(rng: np.random.Generator, room_type: str, interior: CellRect, door_zones: list[CellRect],
                 used_colors: dict[str, set[str]]) -> list[PlacedPiece]:
    """Pieces for one room; `used_colors` (category -> colour names) keeps colours unique in the house."""
    placed: list[PlacedPiece] = []
    for category in choose_categories(rng, room_type, interior):
        spec = FURNITURE[category]
        free_colors = [name for name in PALETTE if name not in used_colors.setdefault(category, set())]
        if not free_colors:
            continue
        for _ in range(ATTEMPTS_PER_PIECE):
            propose = _against_wall if spec.against_wall else _free_standing
            candidate = propose(rng, spec, interior)
            if candidate is not None and _fits(candidate, interior, placed, door_zones):
                color = free_colors[int(rng.integers(len(free_colors)))]
                used_colors[category].add(color)
                placed.append(PlacedPiece(category, color, candidate, spec.height))
                break
    return placed
