"""Procedural houses: reproducible ids, room/furniture variety, unique colours, connected free floor."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from envs.scene.catalog import FURNITURE, PALETTE, ROOM_TYPE_LIST, ROOM_TYPES
from envs.scene.connectivity import erode_disk, label_components
from envs.scene.generator import generate_house, parse_scene_id, scene_id_for
from envs.scene.house import CellKind

SEEDS = range(60)


@pytest.fixture(scope="module")
def houses():
    return [generate_house(scene_id_for(seed)) for seed in SEEDS]


def test_same_id_gives_identical_house():
    a, b = generate_house("procedural/house_000042"), generate_house("procedural/house_000042")
    for name in ("kind", "room", "obj", "height"):
        assert np.array_equal(getattr(a.grid, name), getattr(b.grid, name))
    assert a.rooms == b.rooms and a.doors == b.doors and a.furniture == b.furniture
    assert a.materials == b.materials and a.seed == 42 and a.scene_id == "procedural/house_000042"


def test_different_seeds_differ():
    a, b = generate_house("procedural/house_000001"), generate_house("procedural/house_000002")
    assert a.grid.shape != b.grid.shape or not np.array_equal(a.grid.kind, b.grid.kind)


@pytest.mark.parametrize("bad", ["house_000042", "procedural/house_42", "procedural/house_0000042", "mp3d/abc", "", 42])
def test_bad_scene_ids_raise_naming_the_id_and_form(bad):
    with pytest.raises(ValueError, match="procedural/house_NNNNNN") as error:
        parse_scene_id(bad)
    assert repr(bad) in str(error.value)
    with pytest.raises(ValueError):
        generate_house(bad)


def test_room_counts_types_and_furniture_variety(houses):
    assert all(4 <= len(house.rooms) <= 10 for house in houses)
    room_types = {room.room_type for house in houses for room in house.rooms}
    categories = {piece.category for house in houses for piece in house.furniture}
    assert len(room_types) >= 7 and room_types <= set(ROOM_TYPES)
    assert len(categories) >= 12 and categories <= set(FURNITURE)
    heights = [piece.height for house in houses for piece in house.furniture]
    assert min(heights) < 1.0 and max(heights) > 1.5  # seen over and not seen over from 1.25 m


def test_furniture_matches_its_room_type(houses):
    for house in houses:
        for piece in house.furniture:
            room_type = ROOM_TYPES[house.rooms[piece.room].room_type]
            assert piece.category in room_type.required + room_type.optional
            room = house.rooms[piece.room]
            assert room.x0 - 1e-9 <= piece.x0 < piece.x1 <= room.x1 + 1e-9
            assert room.z0 - 1e-9 <= piece.z0 < piece.z1 <= room.z1 + 1e-9


def test_colour_unique_per_category_within_house(houses):
    for house in houses:
        names = Counter(piece.name for piece in house.furniture)
        assert max(names.values()) == 1, f"{house.scene_id}: {names.most_common(1)}"
        assert all(piece.rgb == PALETTE[piece.color_name] for piece in house.furniture)


def test_materials_distinct_per_room_type(houses):
    walls = [room_type.wall_rgb for room_type in ROOM_TYPE_LIST]
    floors = [room_type.floor_rgb for room_type in ROOM_TYPE_LIST]
    assert len(set(walls)) == len(walls) and len(set(floors)) == len(floors)
    for a in range(len(walls)):
        for b in range(a + 1, len(walls)):  # far enough apart to tell on screen
            assert np.abs(np.subtract(walls[a], walls[b])).sum() > 60
            assert np.abs(np.subtract(floors[a], floors[b])).sum() > 60
    for house in houses:
        assert set(house.materials) == {room.room_type for room in house.rooms}
        for name, (wall, floor) in house.materials.items():
            assert (wall, floor) == (ROOM_TYPES[name].wall_rgb, ROOM_TYPES[name].floor_rgb)


def test_all_rooms_connected_through_doors_on_free_floor(houses):
    for house in houses:
        grid = house.grid
        free = (grid.kind == CellKind.FLOOR) | (grid.kind == CellKind.DOOR)
        labels, count = label_components(erode_disk(free, 2))
        assert count >= 1
        main = np.argmax(np.bincount(labels[labels >= 0]))
        reached = set(np.unique(grid.room[labels == main]).tolist()) - {-1}
        assert reached == set(range(len(house.rooms))), house.scene_id
        for door in house.doors:
            row, col = grid.cell_of(door.x, door.z)
            assert labels[row, col] == main, f"{house.scene_id} door {door.index} blocked"
            assert 0.85 <= door.width <= 1.15


def test_furniture_keeps_clear_of_doorways(houses):
    for house in houses:
        for piece in house.furniture:
            for door in house.doors:
                dx = max(piece.x0 - door.x, 0.0, door.x - piece.x1)
                dz = max(piece.z0 - door.z, 0.0, door.z - piece.z1)
                assert np.hypot(dx, dz) >= 0.7, f"{house.scene_id}: {piece.name} blocks door {door.index}"


def test_grid_is_consistent_with_the_house(houses):
    for house in houses[:10]:
        grid = house.grid
        objects = grid.kind == CellKind.OBJECT
        assert np.array_equal(objects, grid.obj >= 0)
        for piece in house.furniture:
            cells = grid.obj == piece.index
            assert cells.any() and np.allclose(grid.height[cells], piece.height)
        solid = (grid.kind == CellKind.WALL) | (grid.kind == CellKind.OUTSIDE)
        assert np.all(grid.height[solid] > 2.0) and np.all(grid.height[grid.kind == CellKind.FLOOR] == 0.0)
        rows, cols = np.nonzero(grid.kind == CellKind.FLOOR)
        for row, col in list(zip(rows, cols))[::997]:
            x, z = grid.center_of(row, col)
            assert house.room_at(x, z).index == grid.room[row, col]
        assert grid.shape[0] * grid.cell_size <= 20.5 and grid.shape[1] * grid.cell_size <= 20.5


def test_generation_is_fast():
    generate_house("procedural/house_000007")  # numba compile/cache load excluded
    start = time.perf_counter()
    for seed in range(100, 110):
        generate_house(scene_id_for(seed))
    assert (time.perf_counter() - start) / 10 < 0.5
