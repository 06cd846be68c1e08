import math

import numpy as np
import pytest

from envs.actions import Action
from envs.episodes import Episode, Goal, GroundTruth, Instruction
from envs.geometry import quat_from_yaw
from envs.plane_backend import PlaneBackend
from envs.task import TaskConfig, VLNTask


def straight_episode(goal_z=-2.0, scene="plane/a", start=(0.0, 0.0, 0.0)):
    return Episode(
        episode_id=3, trajectory_id=3, scene_id=scene,
        start_position=list(start), start_rotation=quat_from_yaw(0.0).tolist(),  # facing -Z
        goals=[Goal([0.0, 0.0, goal_z], 3.0)],
        reference_path=[list(start), [0.0, 0.0, goal_z]],
        instruction=Instruction("walk forward and stop"),
        info={"geodesic_distance": abs(goal_z)},
    )


def test_reset_returns_observations_with_pose_and_instruction():
    task = VLNTask(PlaneBackend())
    obs = task.reset(straight_episode())
    assert obs["instruction"] == "walk forward and stop"
    assert obs["rgb"].dtype == np.uint8 and obs["depth"].dtype == np.float32
    assert obs["pose"].shape == (7,) and obs["pose"].dtype == np.float32
    np.testing.assert_allclose(obs["pose"][3:], [0, 0, 0, 1], atol=1e-6)


def test_stop_terminates_with_metrics():
    task = VLNTask(PlaneBackend())
    gt = GroundTruth(locations=[[0, 0, 0], [0, 0, -0.25], [0, 0, -0.5]], actions=[1, 1, 0])
    task.reset(straight_episode(goal_z=-4.0), gt)
    for _ in range(8):
        outcome = task.step(Action.MOVE_FORWARD)
        assert not outcome.done and outcome.metrics is None
    outcome = task.step(Action.STOP)
    assert outcome.terminated and not outcome.truncated
    m = outcome.metrics
    assert m.steps == 9 and m.SR == 1.0
    assert m.NE == pytest.approx(2.0) and m.TL == pytest.approx(2.0) and m.SPL == pytest.approx(1.0)  # noqa: SIM300 (upper-case metric names are not constants)
    with pytest.raises(RuntimeError, match="finished episode"):
        task.step(Action.STOP)


def test_step_limit_truncates_and_fails():
    task = VLNTask(PlaneBackend(), TaskConfig(max_steps=5))
    task.reset(straight_episode(goal_z=-1.0))
    outcomes = [task.step(Action.TURN_LEFT) for _ in range(5)]
    assert [o.truncated for o in outcomes] == [False] * 4 + [True]
    last = outcomes[-1]
    assert not last.terminated and last.metrics.SR == 0.0 and last.metrics.OS == 1.0 and last.metrics.steps == 5


def test_default_step_limit_is_500():
    task = VLNTask(PlaneBackend())
    task.reset(straight_episode())
    steps = 0
    while not task.done:
        outcome = task.step(Action.TURN_RIGHT)
        steps += 1
    assert steps == 500 and outcome.truncated


@pytest.mark.parametrize("action", [4, -1, "left", None])
def test_action_outside_space(action):
    task = VLNTask(PlaneBackend())
    task.reset(straight_episode())
    with pytest.raises(ValueError, match="outside the action space"):
        task.step(action)


def test_bad_episodes_get_clear_errors():
    task = VLNTask(PlaneBackend())
    with pytest.raises(ValueError, match=r"episode 3 .*cannot load scene.*unknown scene id"):
        task.reset(straight_episode(scene="missing/x"))
    with pytest.raises(ValueError, match="'start_position'.*not navigable"):
        task.reset(straight_episode(start=(100.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match=r"'goals\[0\].position' \[0.0, 0.0, -500.0\] is 480.00 m from the navmesh"):
        task.reset(straight_episode(goal_z=-500.0))


def test_unreachable_goal(monkeypatch):
    backend = PlaneBackend()
    monkeypatch.setattr(backend, "geodesic_distance", lambda start, goals: math.inf)  # a disconnected goal
    with pytest.raises(ValueError, match="episode 3 .*'goals' is unreachable from the start"):
        VLNTask(backend).reset(straight_episode())


def test_reference_falls_back_to_reference_path_without_gt():
    task = VLNTask(PlaneBackend())
    task.reset(straight_episode(goal_z=-0.5))
    task.step(Action.MOVE_FORWARD)
    task.step(Action.MOVE_FORWARD)
    m = task.step(Action.STOP).metrics
    # Q = (0,0,0),(0,0,-.25),(0,0,-.5); R = (0,0,0),(0,0,-.5): DTW = 0.25 (middle point to either end).
    assert m.nDTW == pytest.approx(math.exp(-0.25 / (2 * 3.0)))
