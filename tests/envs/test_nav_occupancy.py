import numpy as np
import pytest
from nav_layouts import boxed, house_from_kind, two_rooms

from envs.nav.occupancy import NavGrid, NavGridConfig
from envs.scene.house import CellKind


def test_erosion_removes_cells_within_two_cells_of_walls():
    grid = NavGrid.from_layout(house_from_kind(boxed(20, 20)).grid)
    expected = np.zeros((24, 24), dtype=bool)
    expected[4:20, 4:20] = True  # floor is [2, 22): rows/cols 2 and 3 (and 20, 21) are within 2 cells
    np.testing.assert_array_equal(grid.navigable, expected)


def test_erosion_is_a_disk_around_an_interior_pillar():
    kind = boxed(20, 20)
    kind[12, 12] = CellKind.WALL
    grid = NavGrid.from_layout(house_from_kind(kind).grid)
    for dr, dc, free in [(0, 2, False), (2, 0, False), (1, 1, False), (2, 1, True), (0, 3, True), (-2, -1, True)]:
        assert grid.navigable[12 + dr, 12 + dc] == free, (dr, dc)


def test_objects_and_outside_are_not_walkable_but_doors_are():
    kind = boxed(20, 40)
    kind[2:22, 20:22] = CellKind.DOOR
    kind[2:8, 30:36] = CellKind.OBJECT
    grid = NavGrid.from_layout(house_from_kind(kind).grid)
    assert grid.navigable[12, 21]  # a door cell far from walls
    assert not grid.navigable[2:10, 30:36].any() and not grid.navigable[2:8, 28:38].any()
    assert grid.navigable[4:8, 38].all() and grid.navigable[10, 30:36].all()
    assert NavGrid.from_layout(house_from_kind(kind).grid, NavGridConfig(agent_radius=0.0)).navigable[2, 2]


def test_bad_radius_is_rejected():
    with pytest.raises(ValueError, match="agent_radius"):
        NavGrid.from_layout(house_from_kind(boxed(10, 10)).grid, NavGridConfig(agent_radius=-1.0))


def test_world_cell_round_trip_and_navigability():
    grid = NavGrid.from_layout(house_from_kind(boxed(20, 20), origin=(-1.0, 2.0)).grid)
    centre = grid.cell_center(10, 7)
    assert grid.cell_of(centre) == (10, 7)
    np.testing.assert_allclose(centre, [-1.0 + 7.5 * 0.05, 0.0, 2.0 + 10.5 * 0.05])
    assert grid.is_navigable(centre)
    assert not grid.is_navigable(centre + [0, 1.0, 0])  # too far above the floor
    assert not grid.is_navigable(grid.cell_center(1, 10))  # in the wall
    assert not grid.is_navigable([100.0, 0.0, 100.0])  # outside the grid
    assert not grid.is_navigable([np.nan, 0.0, 0.0])


def test_snap_returns_nearest_navigable_cell_centre_or_the_point_itself():
    grid = NavGrid.from_layout(house_from_kind(boxed(20, 20)).grid)
    inside = np.array([0.52, 0.3, 0.61])
    np.testing.assert_allclose(grid.snap(inside), [0.52, 0.0, 0.61])
    in_wall = grid.cell_center(1, 10)  # wall row 1 -> nearest navigable row is 4, same column
    np.testing.assert_allclose(grid.snap(in_wall), grid.cell_center(4, 10))
    far = np.array([-5.0, 0.0, -5.0])  # beyond the corner -> the corner cell
    np.testing.assert_allclose(grid.snap(far), grid.cell_center(4, 4))


def test_snap_on_an_empty_grid_is_nan():
    grid = NavGrid.from_layout(house_from_kind(np.full((8, 8), CellKind.WALL)).grid)
    assert np.isnan(grid.snap([0.1, 0.0, 0.1])).all()
    with pytest.raises(ValueError, match="no navigable cell"):
        grid.sample_navigable_point(np.random.default_rng(0))


def test_components_and_sampling_stay_on_the_largest_component():
    grid = NavGrid.from_layout(two_rooms(door=False).grid)
    kind = two_rooms(door=False).grid.kind.copy()
    kind[:, 100:102] = CellKind.WALL  # split the right room: three components of different sizes
    grid = NavGrid.from_layout(house_from_kind(kind).grid)
    assert len(grid.component_sizes) == 3
    rng = np.random.default_rng(0)
    for _ in range(200):
        point = grid.sample_navigable_point(rng)
        assert grid.is_navigable(point)
        assert grid.component_of(point) == grid.largest_component
    left = grid.cell_center(30, 30)
    assert grid.component_of(left) == grid.largest_component  # the left room is the biggest
