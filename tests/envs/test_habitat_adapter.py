import math
import os
import sys

import numpy as np
import pytest

from envs.actions import Action
from envs.backend import AgentState
from envs.habitat.adapter import HabitatBackend, HabitatConfig
from envs.sensors import SensorConfig


def test_without_habitat_sim_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "habitat_sim", None)  # makes `import habitat_sim` raise ImportError
    with pytest.raises(ImportError, match=r"conda install habitat-sim -c conda-forge -c aihabitat.*embedded backend"):
        HabitatBackend()


def test_config_is_validated_before_importing():
    with pytest.raises(ValueError, match="hfov_deg"):
        HabitatBackend(HabitatConfig(sensors=SensorConfig(hfov_deg=0.0)))


TEST_SCENE = os.environ.get("STREAMVLN_HABITAT_TEST_SCENE", "data/scene_datasets/habitat-test-scenes/skokloster-castle.glb")


@pytest.mark.habitat
def test_habitat_backend_end_to_end():
    if not os.path.exists(TEST_SCENE):
        pytest.skip(f"habitat test scene not found at {TEST_SCENE} (set STREAMVLN_HABITAT_TEST_SCENE)")
    backend = HabitatBackend(HabitatConfig(sensors=SensorConfig(width=64, height=64)))
    backend.reset_scene(TEST_SCENE)
    rng = np.random.default_rng(0)
    start, goal = backend.sample_navigable_point(rng), backend.sample_navigable_point(rng)
    obs = backend.set_agent_state(AgentState(start, np.array([0.0, 0.0, 0.0, 1.0])))
    assert obs["rgb"].shape == (64, 64, 3) and obs["depth"].shape == (64, 64, 1)
    assert obs["depth"].min() >= 0.0 and obs["depth"].max() <= 1.0
    distance = backend.geodesic_distance(start, goal)
    path = backend.shortest_path(start, goal)
    if math.isfinite(distance):
        assert np.linalg.norm(np.diff(path, axis=0), axis=1).sum() == pytest.approx(distance, rel=1e-3)
    assert backend.geodesic_distance(start, np.stack([goal, start])) == pytest.approx(0.0, abs=1e-3)
    assert isinstance(backend.step(Action.MOVE_FORWARD).collided, bool)
    with pytest.raises(ValueError, match="outside the action space"):
        backend.step(7)
    with pytest.raises(ValueError, match="off the navmesh"):
        backend.set_agent_state(AgentState(start + np.array([0.0, 10.0, 0.0]), np.array([0.0, 0.0, 0.0, 1.0])))
    follower = backend.greedy_follower(goal_radius=0.5)
    assert HabitatBackend.greedy_action(follower, goal) in set(Action)
    backend.close()
