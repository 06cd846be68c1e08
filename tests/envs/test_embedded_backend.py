import math

import numpy as np
import pytest
from nav_layouts import corridor, two_rooms

from envs.actions import Action
from envs.backend import AgentState
from envs.embedded import EmbeddedBackend, EmbeddedConfig
from envs.geometry import quat_from_yaw, yaw_from_quat


class CountingFactory:
    """House factory over hand-made houses that counts builds (to check the per-scene cache)."""

    def __init__(self, *houses):
        self.houses = {house.scene_id: house for house in houses}
        self.builds = 0

    def __call__(self, scene_id):
        self.builds += 1
        if scene_id not in self.houses:
            raise ValueError(f"unknown scene id {scene_id!r}")
        return self.houses[scene_id]


class FakeRenderer:
    """Frames that encode the pose, so tests can check what the backend asked to render."""

    def __init__(self, house, config):
        self.shape = (config.height, config.width)

    def render(self, position, yaw):
        rgb = np.zeros((*self.shape, 3), np.uint8)
        depth = np.full((*self.shape, 1), (yaw % (2 * math.pi)) / 10.0, np.float32)
        return {"rgb": rgb, "depth": depth, "semantic": np.zeros(self.shape, np.int16)}


def backend_for(*houses, **config) -> EmbeddedBackend:
    backend = EmbeddedBackend(EmbeddedConfig(**config), CountingFactory(*houses), FakeRenderer)
    backend.reset_scene(houses[0].scene_id)
    return backend


def place(backend, position, yaw=0.0):
    return backend.set_agent_state(AgentState(np.asarray(position, dtype=float), quat_from_yaw(yaw)))


def test_forward_and_turns_follow_habitat_conventions():
    backend = backend_for(two_rooms())
    place(backend, [1.5, 0, 1.5])
    result = backend.step(Action.MOVE_FORWARD)  # yaw 0 faces -z
    assert not result.collided
    np.testing.assert_allclose(backend.get_agent_state().position, [1.5, 0, 1.25], atol=1e-12)
    backend.step(Action.TURN_LEFT)
    assert yaw_from_quat(backend.get_agent_state().rotation) == pytest.approx(math.radians(15))
    for _ in range(6):
        backend.step(Action.TURN_LEFT)  # now 105 degrees: facing -x (90) plus 15
    for _ in range(24):
        backend.step(Action.TURN_RIGHT)  # a full turn comes back to the same heading
    assert yaw_from_quat(backend.get_agent_state().rotation) == pytest.approx(math.radians(105))
    before = backend.get_agent_state().position
    assert not backend.step(Action.STOP).collided
    np.testing.assert_array_equal(backend.get_agent_state().position, before)


def test_walking_into_a_wall_collides_and_stays_on_the_navmesh():
    backend = backend_for(corridor())
    place(backend, [0.5, 0, 0.6], yaw=0.0)  # facing -z, the corridor wall 0.4 m away
    collided = [backend.step(Action.MOVE_FORWARD).collided for _ in range(4)]
    assert collided[0] is False and collided[-1] is True
    assert backend.is_navigable(backend.get_agent_state().position)


@pytest.mark.parametrize("action", [5, -1, 4, "left", None])
def test_actions_outside_the_space_are_rejected_by_name(action):
    backend = backend_for(corridor())
    with pytest.raises(ValueError, match="outside the action space"):
        backend.step(action)


def test_off_navmesh_start_names_the_position_and_the_nearest_point():
    backend = backend_for(corridor())
    with pytest.raises(ValueError, match=r"\[1.01, 0.0, 0.02\] is off the navmesh.*nearest navigable point: \[1.025, 0.0, 0.225\]"):
        place(backend, [1.01, 0, 0.02])
    with pytest.raises(ValueError, match="position must be 3 finite"):
        place(backend, [1.0, 0.0])
    with pytest.raises(ValueError, match="non-zero quaternion"):
        backend.set_agent_state(AgentState(np.array([1.0, 0, 0.6]), np.zeros(4)))


def test_navigation_queries_and_unreachable_goals():
    backend = backend_for(two_rooms(door=False))
    start, same_room, other_room = np.array([1.0, 0, 1.0]), np.array([2.0, 0, 1.0]), np.array([5.0, 0, 1.0])
    assert backend.geodesic_distance(start, same_room) == pytest.approx(1.0, abs=0.02)
    assert math.isinf(backend.geodesic_distance(start, other_room))
    assert backend.geodesic_distance(start, np.stack([other_room, same_room])) == pytest.approx(1.0, abs=0.02)
    assert backend.shortest_path(start, other_room).shape == (0, 3)
    assert backend.shortest_path(start, same_room).shape[1] == 3
    assert backend.is_navigable(start) and not backend.is_navigable([3.15, 0, 1.0])
    assert backend.is_navigable(backend.snap_point([3.15, 0, 1.0]))
    rng = np.random.default_rng(0)
    assert all(backend.is_navigable(backend.sample_navigable_point(rng)) for _ in range(20))


def test_forward_landing_predicts_the_step_without_moving():
    backend = backend_for(corridor())
    place(backend, [0.5, 0, 0.3])
    predicted = backend.forward_landing(np.array([0.5, 0, 0.3]), math.radians(30))
    np.testing.assert_array_equal(backend.get_agent_state().position, [0.5, 0, 0.3])
    backend.step(Action.TURN_LEFT), backend.step(Action.TURN_LEFT)
    backend.step(Action.MOVE_FORWARD)
    np.testing.assert_allclose(backend.get_agent_state().position, predicted, atol=1e-9)


def test_sensors_follow_the_config():
    both = backend_for(corridor(), width=32, height=24)
    obs = place(both, [0.5, 0, 0.6], yaw=0.5)
    assert obs["rgb"].shape == (24, 32, 3) and obs["depth"].shape == (24, 32, 1)
    assert obs["depth"][0, 0, 0] == pytest.approx(0.05)  # the fake renderer saw the agent's yaw
    assert "rgb" not in backend_for(corridor(), rgb=False).observe()
    assert backend_for(corridor(), rgb=False, depth=False).observe() == {}


def test_scenes_are_built_once_and_errors_are_clear():
    factory = CountingFactory(corridor(), two_rooms())
    backend = EmbeddedBackend(EmbeddedConfig(scene_cache_size=2), factory, FakeRenderer)
    with pytest.raises(RuntimeError, match="reset_scene"):
        backend.get_agent_state()
    for scene_id in ["test/corridor", "test/two_rooms", "test/corridor", "test/two_rooms"]:
        backend.reset_scene(scene_id)
    assert factory.builds == 2
    assert backend.house.scene_id == "test/two_rooms" and backend.nav.navigable.any()
    with pytest.raises(ValueError, match="unknown scene id 'nope'"):
        backend.reset_scene("nope")


@pytest.mark.parametrize("field,value", [("width", 0), ("hfov_deg", 180.0), ("forward_step", 0.0),
                                         ("field_order", 3), ("agent_radius", -0.1)])
def test_bad_config_is_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        EmbeddedBackend(EmbeddedConfig(**{field: value}))


def test_generated_house_with_the_real_renderer():
    pytest.importorskip("envs.render.raycaster")
    pytest.importorskip("envs.scene.generator")
    backend = EmbeddedBackend(EmbeddedConfig(width=64, height=48, hfov_deg=79.0))
    backend.reset_scene("procedural/house_000007")
    start = backend.sample_navigable_point(np.random.default_rng(3))
    obs = place(backend, start, yaw=1.0)
    assert obs["rgb"].shape == (48, 64, 3) and obs["rgb"].dtype == np.uint8
    assert obs["depth"].shape == (48, 64, 1) and obs["depth"].dtype == np.float32
    assert obs["depth"].min() >= 0.0 and obs["depth"].max() <= 1.0
    assert backend.step(Action.TURN_LEFT).observations["rgb"].shape == (48, 64, 3)
    with pytest.raises(ValueError, match="unknown scene id"):
        backend.reset_scene("procedural/house_x")
