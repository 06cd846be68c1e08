"""Geodesic fields solved on a coarser grid than the navmesh (GeodesicField(..., cell_size=0.1)).

Accuracy is measured against the default 5 cm order-2 field on generated houses. Measured on houses
0-5 (3 goals x 3000 points each): median abs error 1.4 cm (worst goal 4.3 cm), p99 11 cm, max 19 cm,
so 10 cm does NOT meet a 2 cm median / 10 cm max bar and the default stays at the navmesh resolution.
These bounds guard the opt-in coarse option against regressions (a lost doorway shows as inf or as
metres of error).
"""

import math

import numpy as np
import pytest
from nav_layouts import l_corridor, two_rooms

from envs.embedded import EmbeddedBackend, EmbeddedConfig
from envs.nav.geodesic import GeodesicCache, GeodesicField, line_of_sight
from envs.nav.occupancy import NavGrid

COARSE_M = 0.1


def generated_grid(index: int) -> NavGrid:
    generator = pytest.importorskip("envs.scene.generator")
    return NavGrid.from_layout(generator.generate_house(f"procedural/house_{index:06d}").grid)


def grid_uv(grid: NavGrid, point) -> tuple[float, float]:
    return (point[2] - grid.origin_z) / grid.cell_size, (point[0] - grid.origin_x) / grid.cell_size


def errors_against_fine(grid: NavGrid, goal, points) -> np.ndarray:
    """coarse - fine at each point; asserts both agree on which points are reachable."""
    fine, coarse = GeodesicField(grid, goal), GeodesicField(grid, goal, cell_size=COARSE_M)
    errors = []
    for point in points:
        a, b = fine.distance(point), coarse.distance(point)
        assert math.isfinite(a) == math.isfinite(b), f"reachability differs at {point.round(3)}: {a} vs {b}"
        if math.isfinite(a):
            errors.append(b - a)
    return np.array(errors)


def test_coarse_field_close_to_the_5cm_field_on_generated_houses():
    errors = []
    for index in (0, 5):
        grid = generated_grid(index)
        rng = np.random.default_rng(index)
        for _ in range(2):
            goal = grid.sample_navigable_point(rng)
            points = [grid.sample_navigable_point(rng, largest_component_only=False) for _ in range(1500)]
            errors.append(errors_against_fine(grid, goal, points))
    errors = np.abs(np.concatenate(errors))
    assert errors.size > 2000
    assert np.median(errors) <= 0.03  # measured 2.1 cm on these houses
    assert errors.max() <= 0.25


def test_coarse_field_hand_made_houses_doors_stay_open():
    for house, goal in [(two_rooms(), [5.3, 0, 0.5]), (l_corridor(), [4.6, 0, 4.6])]:
        grid = NavGrid.from_layout(house.grid)
        points = [grid.cell_center(int(r), int(c)) for r, c in np.argwhere(grid.navigable)[::7]]
        errors = errors_against_fine(grid, np.array(goal), points)
        assert len(errors) == len(points)  # every navigable cell reaches the goal through the door
        assert np.abs(errors).max() <= 0.06


def test_coarse_distance_is_exact_at_the_goal_and_inf_off_the_navmesh():
    grid = NavGrid.from_layout(two_rooms().grid)
    field = GeodesicField(grid, [1.537, 0, 1.512], cell_size=COARSE_M)
    assert field.distance([1.537, 0, 1.512]) == pytest.approx(0.0, abs=1e-9)
    assert field.distance([1.537, 0, 1.612]) == pytest.approx(0.1, abs=1e-6)
    assert math.isinf(field.distance([3.15, 0, 0.5]))  # inside the wall, though its coarse block is solved
    assert math.isinf(GeodesicField(NavGrid.from_layout(two_rooms(door=False).grid), [5.3, 0, 0.5],
                                    cell_size=COARSE_M).distance([1.0, 0, 0.5]))


def test_coarse_shortest_path_matches_the_distance_and_stays_on_the_navmesh():
    for house, start, goal in [(l_corridor(), [0.6, 0, 0.6], [4.6, 0, 4.6]), (two_rooms(), [1.0, 0, 0.5], [5.3, 0, 2.9])]:
        grid = NavGrid.from_layout(house.grid)
        cache = GeodesicCache(grid, cell_size=COARSE_M)
        path = cache.shortest_path(np.array(start), np.array(goal))
        assert len(path) >= 3  # at least one corner
        np.testing.assert_allclose(path[[0, -1]], [start, goal], atol=1e-9)
        for a, b in zip(path, path[1:]):
            assert line_of_sight(grid.navigable, *grid_uv(grid, a), *grid_uv(grid, b))
        length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        assert cache.distance(start, goal) * 0.97 <= length <= cache.distance(start, goal) * 1.03


def test_coarse_shortest_paths_on_a_generated_house_reach_the_goal():
    grid = generated_grid(1)
    cache = GeodesicCache(grid, cell_size=COARSE_M)
    rng = np.random.default_rng(3)
    for _ in range(10):
        start, goal = grid.sample_navigable_point(rng), grid.sample_navigable_point(rng)
        path = cache.shortest_path(start, goal)
        np.testing.assert_allclose(path[[0, -1]], [start, goal], atol=1e-9)
        assert all(grid.is_navigable(p) for p in path)
        length = float(np.linalg.norm(np.diff(path, axis=0), axis=1).sum())
        # FMM overestimates around obstacle tips (seen: 1.30 m field, 1.25 m at 5 cm, 1.20 m path).
        assert cache.distance(start, goal) * 0.9 <= length <= cache.distance(start, goal) * 1.03 + 0.05


def test_cell_size_must_be_a_multiple_of_the_navmesh_cell():
    grid = NavGrid.from_layout(two_rooms().grid)
    for bad in (0.07, 0.0, -0.1, 0.025, math.nan):
        with pytest.raises(ValueError, match="cell_size"):
            GeodesicCache(grid, cell_size=bad)
    with pytest.raises(ValueError, match="field_cell_size"):
        EmbeddedConfig(field_cell_size=0.0).validate()


def test_embedded_backend_passes_the_field_cell_size():
    house = two_rooms()
    backend = EmbeddedBackend(EmbeddedConfig(rgb=False, depth=False, field_cell_size=COARSE_M),
                              house_factory={house.scene_id: house}.__getitem__)
    backend.reset_scene(house.scene_id)
    assert backend.scene.geodesic.field([5.3, 0, 0.5]).factor == 2
    assert backend.geodesic_distance(np.array([1.0, 0, 0.5]), np.array([5.3, 0, 0.5])) > 4.3
