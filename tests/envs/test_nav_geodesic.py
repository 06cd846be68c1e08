import math

import numpy as np
import pytest
from nav_layouts import corridor, l_corridor, two_rooms

from envs.nav.geodesic import GeodesicCache, GeodesicField, line_of_sight
from envs.nav.occupancy import NavGrid


def cache_for(house, **kwargs) -> GeodesicCache:
    return GeodesicCache(NavGrid.from_layout(house.grid), **kwargs)


def path_length(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def test_straight_corridor_distance_is_dx_within_a_cell():
    cache = cache_for(corridor())
    for x0, x1 in [(0.4, 5.8), (1.0, 1.6), (3.0, 0.3)]:
        assert cache.distance([x0, 0, 0.6], [x1, 0, 0.6]) == pytest.approx(abs(x1 - x0), abs=0.05)
    assert cache.distance([2.0, 0, 0.6], [2.0, 0, 0.6]) == pytest.approx(0.0, abs=0.05)


def test_around_the_corner_matches_the_taut_string_length():
    cache = cache_for(l_corridor())
    start, goal = np.array([0.6, 0, 0.6]), np.array([4.6, 0, 4.6])
    # Navigable inner corner: wall corner (4.1, 1.1) pushed in by the 0.1 m radius -> (4.2, 1.0).
    corner = np.array([4.2, 0, 1.0])
    expected = np.linalg.norm(corner - start) + np.linalg.norm(goal - corner)
    assert cache.distance(start, goal) == pytest.approx(expected, rel=0.02)
    assert cache.distance(start, goal) > np.linalg.norm(goal - start) * 1.2


def test_through_a_door_and_inf_through_a_closed_wall():
    start, goal = np.array([1.0, 0, 0.5]), np.array([5.3, 0, 0.5])
    open_cache, closed_cache = cache_for(two_rooms(door=True)), cache_for(two_rooms(door=False))
    # Door x in [3.1, 3.2], navigable z from 1.2 (1.1 + radius): pass its lower jamb corners.
    jamb_a, jamb_b = np.array([3.0, 0, 1.2]), np.array([3.3, 0, 1.2])
    expected = np.linalg.norm(jamb_a - start) + 0.3 + np.linalg.norm(goal - jamb_b)
    assert open_cache.distance(start, goal) == pytest.approx(expected, rel=0.03)
    assert math.isinf(closed_cache.distance(start, goal))
    assert closed_cache.shortest_path(start, goal).shape == (0, 3)


def test_goal_set_distance_is_the_minimum_over_goals():
    cache = cache_for(two_rooms())
    start = np.array([1.0, 0, 1.0])
    goals = np.array([[5.0, 0, 2.5], [2.5, 0, 2.8], [0.5, 0, 0.5]])
    single = [cache.distance(start, g) for g in goals]
    assert cache.distance(start, goals) == pytest.approx(min(single), abs=0.03)
    assert cache.distance(start, goals[::-1]) == cache.distance(start, goals)  # order-free key


def test_shortest_path_endpoints_monotonic_and_near_geodesic():
    for house, start, goal in [(l_corridor(), [0.6, 0, 0.6], [4.6, 0, 4.6]),
                               (two_rooms(), [1.0, 0, 0.5], [5.3, 0, 2.9])]:
        cache = cache_for(house)
        path = cache.shortest_path(np.array(start), np.array(goal))
        assert path.shape[1] == 3 and len(path) >= 3  # at least one corner
        np.testing.assert_allclose(path[0], start, atol=1e-9)
        np.testing.assert_allclose(path[-1], goal, atol=1e-9)
        assert np.all(path[:, 1] == 0.0)
        field = cache.field(np.array(goal))
        remaining = [field.distance(p) for p in path]
        assert all(a > b for a, b in zip(remaining, remaining[1:]))
        grid = cache.grid
        for a, b in zip(path, path[1:]):  # every segment stays on the navmesh
            ua, va = (a[2] - grid.origin_z) / grid.cell_size, (a[0] - grid.origin_x) / grid.cell_size
            ub, vb = (b[2] - grid.origin_z) / grid.cell_size, (b[0] - grid.origin_x) / grid.cell_size
            assert line_of_sight(grid.navigable, ua, va, ub, vb)
        geodesic = cache.distance(start, goal)
        assert geodesic * 0.98 <= path_length(path) <= geodesic * 1.03


def test_off_navmesh_inputs_are_snapped():
    cache = cache_for(corridor())
    in_wall_start = np.array([1.01, 0, 0.02])  # inside the wall border: snaps to (1.025, 0, 0.225)
    expected = math.hypot(3.0 - 1.025, 0.6 - 0.225)
    assert cache.distance(in_wall_start, [3.0, 0, 0.6]) == pytest.approx(expected, abs=0.02)


def test_point_query_off_navmesh_is_inf():
    grid = NavGrid.from_layout(corridor().grid)
    field = GeodesicField(grid, [3.0, 0, 0.6])
    assert math.isinf(field.distance([3.0, 0, 0.02]))
    assert math.isinf(field.distance([99.0, 0, 0.6]))


def test_cache_reuses_and_evicts_fields():
    cache = cache_for(corridor(), capacity=2)
    first = cache.field([1.0, 0, 0.6])
    assert cache.field(np.array([1.0, 0.0, 0.6])) is first
    cache.field([2.0, 0, 0.6])
    cache.field([3.0, 0, 0.6])
    assert cache.field([1.0, 0, 0.6]) is not first  # evicted as least recently used


@pytest.mark.parametrize("goals", [np.zeros((0, 3)), np.zeros((2, 2)), [np.nan, 0, 0]])
def test_bad_goals_are_rejected(goals):
    with pytest.raises(ValueError, match="goals"):
        cache_for(corridor()).distance([1.0, 0, 0.6], goals)


def test_bad_fmm_order_and_capacity():
    grid = NavGrid.from_layout(corridor().grid)
    with pytest.raises(ValueError, match="order"):
        GeodesicField(grid, [1.0, 0, 0.6], order=3)
    with pytest.raises(ValueError, match="capacity"):
        GeodesicCache(grid, capacity=0)
