"""Raycaster: shapes, depth against hand-computed ray geometry, occlusion, colours, semantics, config."""

from __future__ import annotations

import math

import numpy as np
import pytest

from envs.render.raycaster import RenderConfig, Renderer
from envs.scene.catalog import ROOM_TYPES
from envs.scene.generator import generate_house
from envs.scene.house import CELL_SIZE_M, WALL_HEIGHT_M, CellKind, Furniture, House, LayoutGrid, Room

ROOM_M = 8.0  # one square room, floor x, z in [0, 8], walls outside it
WALL_CELLS = 4


def box_house(pieces: list[tuple[str, tuple[int, int, int], tuple[float, float, float, float], float]] = ()) -> House:
    """A hand-built single-room house; pieces are (category, rgb, (x0, z0, x1, z1), height)."""
    n = int(round(ROOM_M / CELL_SIZE_M))
    size = n + 2 * WALL_CELLS
    origin = -WALL_CELLS * CELL_SIZE_M
    kind = np.full((size, size), CellKind.WALL, np.uint8)
    room = np.full((size, size), -1, np.int16)
    height = np.full((size, size), WALL_HEIGHT_M, np.float32)
    kind[WALL_CELLS:-WALL_CELLS, WALL_CELLS:-WALL_CELLS] = CellKind.FLOOR
    room[WALL_CELLS:-WALL_CELLS, WALL_CELLS:-WALL_CELLS] = 0
    height[WALL_CELLS:-WALL_CELLS, WALL_CELLS:-WALL_CELLS] = 0.0
    obj = np.full((size, size), -1, np.int16)
    grid = LayoutGrid(origin, origin, CELL_SIZE_M, kind, room, obj, height)
    furniture = []
    for index, (category, rgb, (x0, z0, x1, z1), top) in enumerate(pieces):
        r0, c0 = grid.cell_of(x0 + 1e-6, z0 + 1e-6)
        r1, c1 = grid.cell_of(x1 - 1e-6, z1 - 1e-6)
        kind[r0:r1 + 1, c0:c1 + 1] = CellKind.OBJECT
        obj[r0:r1 + 1, c0:c1 + 1] = index
        height[r0:r1 + 1, c0:c1 + 1] = top
        furniture.append(Furniture(index, category, "red", rgb, 0, x0, z0, x1, z1, top))
    spec = ROOM_TYPES["office"]
    return House("test/box", 0, [Room(0, "office", 0.0, 0.0, ROOM_M, ROOM_M)], [], furniture, grid,
                 {"office": (spec.wall_rgb, spec.floor_rgb)})


def metres(depth: np.ndarray) -> np.ndarray:
    return depth[..., 0] * 10.0


def test_shapes_dtypes_and_range():
    house = generate_house("procedural/house_000003")
    for config in (RenderConfig(), RenderConfig(width=160, height=120, hfov_deg=79.0, semantic=True)):
        renderer = Renderer(house, config)
        x, z = house.rooms[0].center
        obs = renderer.render(np.array([x, 0.0, z]), 0.3)
        assert obs["rgb"].shape == (config.height, config.width, 3) and obs["rgb"].dtype == np.uint8
        assert obs["depth"].shape == (config.height, config.width, 1) and obs["depth"].dtype == np.float32
        assert obs["depth"].min() >= 0.0 and obs["depth"].max() <= 1.0
        assert ("semantic" in obs) == config.semantic
        if config.semantic:
            assert obs["semantic"].shape == (config.height, config.width) and obs["semantic"].dtype == np.int16
        assert len(np.unique(obs["rgb"].reshape(-1, 3), axis=0)) > 20  # not a blank frame


def test_frames_are_new_arrays_and_render_into_matches():
    renderer = Renderer(box_house(), RenderConfig(width=64, height=48))
    first = renderer.render(np.array([4.0, 0.0, 4.0]), 0.0)
    second = renderer.render(np.array([4.0, 0.0, 2.0]), 0.0)
    assert not np.array_equal(first["depth"], second["depth"])  # the first frame was not overwritten
    out = renderer.allocate()
    renderer.render_into(np.array([4.0, 0.0, 4.0]), 0.0, out)
    assert np.array_equal(out["rgb"], first["rgb"]) and np.array_equal(out["depth"], first["depth"])
    with pytest.raises(ValueError, match="depth"):
        renderer.render_into(np.array([4.0, 0.0, 4.0]), 0.0, {"rgb": out["rgb"], "depth": np.zeros((48, 64), np.float32)})


def test_wall_face_on_has_constant_planar_depth():
    renderer = Renderer(box_house(), RenderConfig(width=128, height=128, hfov_deg=90.0))
    depth = metres(renderer.render(np.array([4.0, 0.0, 2.0]), 0.0)["depth"])  # facing -Z: wall at z = 0
    horizon = depth[63:65]
    assert np.allclose(horizon, 2.0, atol=CELL_SIZE_M)  # planar z, not ray length, across the whole row
    assert abs(depth[64, 64] - 2.0) < 1e-3


def test_depth_is_planar_at_an_angle_and_on_the_floor():
    config = RenderConfig(width=101, height=100, hfov_deg=90.0)
    renderer = Renderer(box_house(), config)
    yaw = math.radians(30.0)  # turned left: the wall z = 0 is hit obliquely
    depth = metres(renderer.render(np.array([4.0, 0.0, 3.0]), yaw)["depth"])
    focal = config.focal_px
    forward = np.array([-math.sin(yaw), -math.cos(yaw)])
    right = np.array([math.cos(yaw), -math.sin(yaw)])
    for col in (20, 50, 80):
        direction = forward + ((col + 0.5 - 50.5) / focal) * right  # unit forward component
        t = min(3.0 / -direction[1], 4.0 / abs(direction[0]))  # wall z = 0, or x = 0 / x = 8, whichever first
        assert abs(depth[49, col] - t) < 0.05, col
    for row in (70, 90, 99):  # floor rows: eye height / row offset, the same for every column
        expected = 1.25 / ((row + 0.5 - 50.0) / focal)
        assert np.allclose(depth[row, 45:56], min(expected, 10.0) , rtol=1e-4)


def test_yaw_convention_turn_left_moves_things_right():
    post = ("plant", (20, 200, 20), (6.9, 3.9, 7.1, 4.1), 2.0)
    renderer = Renderer(box_house([post]), RenderConfig(width=101, height=64, semantic=True))
    facing_x = renderer.render(np.array([4.0, 0.0, 4.0]), -math.pi / 2)["semantic"]  # forward = +X
    cols = np.nonzero(facing_x[32] == 1)[0]
    assert cols.size and abs(cols.mean() - 50) <= 1.5
    turned_left = renderer.render(np.array([4.0, 0.0, 4.0]), -math.pi / 2 + math.radians(15))["semantic"]
    assert np.nonzero(turned_left[32] == 1)[0].mean() > cols.mean() + 10


@pytest.mark.parametrize("hfov", [60.0, 90.0, 110.0])
def test_object_edges_land_on_the_projected_columns(hfov):
    config = RenderConfig(width=200, height=80, hfov_deg=hfov, semantic=True)
    shelf = ("shelf", (40, 40, 200), (4.5, 1.0, 5.5, 1.4), 1.9)
    semantic = Renderer(box_house([shelf]), config).render(np.array([4.0, 0.0, 4.0]), 0.0)["semantic"]
    cols = np.nonzero(semantic[40] == 1)[0]
    focal = config.focal_px
    # Left edge: the far corner of the side face seen from x = 4 (x 4.5, z 1.0); right: the near corner.
    expected = [100 + focal * 0.5 / (4.0 - 1.0), 100 + focal * 1.5 / (4.0 - 1.4)]
    assert abs(cols.min() - expected[0]) <= 1.0 and abs(cols.max() + 1 - expected[1]) <= 1.0


def test_low_table_shows_the_wall_above_it():
    red = (200, 40, 40)
    table = ("table", red, (3.5, 1.0, 4.5, 1.5), 0.75)
    renderer = Renderer(box_house([table]), RenderConfig(width=128, height=128, semantic=True))
    obs = renderer.render(np.array([4.0, 0.0, 3.0]), 0.0)
    depth, semantic, rgb = metres(obs["depth"]), obs["semantic"], obs["rgb"].astype(int)
    column = 64
    assert abs(depth[64, column] - 3.0) < 0.05 and semantic[64, column] == 0  # eye level: the wall, 3 m away
    table_rows = np.nonzero(semantic[:, column] == 1)[0]
    assert table_rows.size > 5 and table_rows.min() > 64  # below the horizon, with the wall above it
    front = table_rows.max()
    assert abs(depth[front, column] - 1.5) < 0.05  # the table's front face at z = 1.5
    top = table_rows.min()
    assert 1.5 < depth[top, column] < 2.1  # the top face recedes to the back edge (z = 1.0)
    pixels = rgb[semantic == 1]
    assert np.all(pixels[:, 0] > pixels[:, 1] + 60) and np.all(pixels[:, 0] > pixels[:, 2] + 60)  # red


def test_tall_shelf_hides_the_wall_and_ceiling_above_the_horizon():
    blue = (40, 70, 200)
    shelf = ("shelf", blue, (3.0, 1.0, 5.0, 1.4), 1.9)
    config = RenderConfig(width=128, height=128, semantic=True)
    obs = Renderer(box_house([shelf]), config).render(np.array([4.0, 0.0, 3.0]), 0.0)
    depth, semantic = metres(obs["depth"]), obs["semantic"]
    assert semantic[64, 64] == 1 and abs(depth[64, 64] - 1.6) < 0.05
    top_row = math.ceil(64 - (1.9 - 1.25) / 1.6 * config.focal_px - 0.5)
    assert semantic[top_row, 64] == 1 and semantic[top_row - 2, 64] == 0
    assert abs(depth[top_row - 2, 64] - 3.0) < 0.05  # the wall above the shelf


def test_generated_house_semantics_match_furniture_in_view():
    house = generate_house("procedural/house_000011")
    renderer = Renderer(house, RenderConfig(width=96, height=96, semantic=True))
    seen = 0
    for piece in house.furniture[:12]:
        room = house.rooms[piece.room]
        cx, cz = piece.center
        # Stand in the room centre (or 1.5 m from the piece if that is closer) and look at the piece.
        x, z = room.center
        yaw = math.atan2(-(cx - x), -(cz - z))
        obs = renderer.render(np.array([x, 0.0, z]), yaw)
        ids = obs["semantic"][:, 40:56]
        if (ids == piece.index + 1).any():
            seen += 1
            rows, cols = np.nonzero(obs["semantic"] == piece.index + 1)
            colour = obs["rgb"][rows, cols].astype(float).mean(axis=0)
            assert np.abs(colour - piece.rgb).max() < 90  # shading only darkens/brightens a little
    assert seen >= 6


def test_max_depth_clips_to_one():
    renderer = Renderer(box_house(), RenderConfig(width=32, height=32, max_depth=2.0))
    depth = renderer.render(np.array([4.0, 0.0, 6.0]), 0.0)["depth"]
    assert depth[16, 16, 0] == 1.0 and depth.max() == 1.0


@pytest.mark.parametrize("field,value", [("width", 0), ("height", -1), ("hfov_deg", 0.0), ("hfov_deg", 180.0),
                                         ("camera_height", 3.0), ("max_depth", 0.0)])
def test_config_validation_names_the_field(field, value):
    config = RenderConfig(**{field: value})
    with pytest.raises(ValueError, match=field.split("_")[0]):
        config.validate()


def test_non_finite_pose_raises_and_far_pose_renders():
    renderer = Renderer(box_house(), RenderConfig(width=16, height=16))
    with pytest.raises(ValueError, match="finite"):
        renderer.render(np.array([np.nan, 0.0, 1.0]), 0.0)
    with pytest.raises(ValueError, match="finite"):
        renderer.render(np.array([1.0, 0.0, 1.0]), float("inf"))
    outside = renderer.render(np.array([100.0, 0.0, -50.0]), 0.0)  # off the grid: a wall at the lens
    assert outside["depth"].max() < 0.01
