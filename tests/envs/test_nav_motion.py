import math

import numpy as np
import pytest
from nav_layouts import boxed, house_from_kind, two_rooms

from envs.geometry import forward_vector
from envs.nav.motion import move_with_sliding
from envs.nav.occupancy import NavGrid


@pytest.fixture(scope="module")
def room() -> NavGrid:
    return NavGrid.from_layout(house_from_kind(boxed(60, 60)).grid)  # floor [0.1, 3.1)^2, navigable [0.2, 3.0)^2


def test_free_step_moves_exactly_and_does_not_collide(room):
    start = np.array([1.5, 0.0, 1.5])
    for yaw in np.radians([0, 15, 45, 90, 180, -135]):
        end, collided = move_with_sliding(room, start, 0.25 * forward_vector(yaw))
        assert not collided
        np.testing.assert_allclose(end, start + 0.25 * forward_vector(yaw), atol=1e-12)


def test_head_on_into_a_wall_stops_at_it_and_collides(room):
    start = np.array([1.5, 0.0, 0.3])  # 0.1 m from the navigable edge z = 0.2
    end, collided = move_with_sliding(room, start, 0.25 * forward_vector(0.0))  # yaw 0 faces -z
    assert collided
    assert room.is_navigable(end)
    assert 0.2 <= end[2] <= 0.25 and end[0] == pytest.approx(1.5)


def test_diagonal_into_a_wall_slides_along_it(room):
    start = np.array([1.5, 0.0, 0.22])
    displacement = 0.25 * forward_vector(math.radians(45))  # towards -x and -z (the wall is at -z)
    end, collided = move_with_sliding(room, start, displacement)
    assert collided
    assert room.is_navigable(end)
    assert end[0] == pytest.approx(start[0] + displacement[0], abs=1e-9)  # the x component survives
    assert end[2] >= 0.2


def test_random_steps_never_cross_a_wall():
    house = two_rooms(door=False)
    grid = NavGrid.from_layout(house.grid)
    rng = np.random.default_rng(0)
    position = np.array([2.5, 0.0, 1.5])
    collisions = 0
    for _ in range(2000):
        # Half the steps face +x (yaw -pi/2), into the wall between the rooms; the rest wander.
        yaw = -0.5 * math.pi if rng.random() < 0.5 else rng.uniform(-math.pi, math.pi)
        position, collided = move_with_sliding(grid, position, 0.25 * forward_vector(yaw))
        collisions += collided
        assert grid.is_navigable(position)
        assert position[0] < 3.1  # the wall between the rooms starts at x = 3.1
    assert collisions > 100


def test_bad_substep_is_rejected(room):
    with pytest.raises(ValueError, match="substep"):
        move_with_sliding(room, np.array([1.5, 0, 1.5]), np.array([0.25, 0, 0]), substep=0.0)
