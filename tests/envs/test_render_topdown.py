"""Top-down map: size from the scale, room floors, walls, furniture, paths, agent arrow, goal ring."""

from __future__ import annotations

import numpy as np
import pytest

from envs.render.topdown import AGENT_RGB, GOAL_RGB, WALL_RGB, cell_colors, topdown_map
from envs.scene.generator import generate_house
from envs.scene.house import CellKind


@pytest.fixture(scope="module")
def house():
    return generate_house("procedural/house_000005")


def pixel(image, grid, x, z, scale):
    return image[int((z - grid.origin_z) * scale), int((x - grid.origin_x) * scale)]


def test_size_follows_scale_and_cells_take_their_colours(house):
    grid = house.grid
    image = topdown_map(house, scale_px_per_m=20.0)  # 1 pixel per 5 cm cell
    assert image.shape == (grid.shape[0], grid.shape[1], 3) and image.dtype == np.uint8
    assert topdown_map(house, scale_px_per_m=40.0).shape[:2] == (2 * grid.shape[0], 2 * grid.shape[1])
    colours = cell_colors(house)
    walls = grid.kind == CellKind.WALL
    assert np.all(colours[walls] == WALL_RGB)
    room = house.rooms[0]
    floor_rgb = house.materials[room.room_type][1]
    row, col = grid.cell_of(*room.center)
    if grid.kind[row, col] == CellKind.FLOOR:
        assert tuple(colours[row, col]) == floor_rgb
    for piece in house.furniture:
        row, col = grid.cell_of(*piece.center)
        assert tuple(colours[row, col]) == piece.rgb


def test_paths_agent_and_goal_are_drawn(house):
    grid, scale = house.grid, 40.0
    room = house.rooms[0]
    x, z = room.center
    path = np.array([[room.x0 + 0.3, 0.0, room.z0 + 0.3], [room.x1 - 0.3, 0.0, room.z0 + 0.3]])
    path_rgb = (0, 0, 255)
    goal = np.array([room.x1 - 0.5, 0.0, room.z1 - 0.5])
    image = topdown_map(house, paths=[(path, path_rgb)], agent=(np.array([x, 0.0, z]), 0.0), goal=goal, scale_px_per_m=scale)
    mid = (path[0] + path[1]) / 2
    assert tuple(pixel(image, grid, mid[0], mid[2], scale)) == path_rgb
    assert tuple(pixel(image, grid, x, z - 0.1, scale)) == AGENT_RGB  # the arrow points to -Z (up) at yaw 0
    assert tuple(pixel(image, grid, x, z + 0.3, scale)) != AGENT_RGB
    assert tuple(pixel(image, grid, goal[0] + 0.25, goal[2], scale)) == GOAL_RGB  # on the 0.25 m ring


def test_bad_scale_raises(house):
    with pytest.raises(ValueError, match="scale_px_per_m"):
        topdown_map(house, scale_px_per_m=0.0)
