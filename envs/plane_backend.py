"""An obstacle-free plane SimulatorBackend: geodesic distance is the straight line.

For fast tests of everything written above the backend interface (episodes, task, metrics, the
gymnasium env, rollout code) without building a house. Observations are small synthetic images
whose content depends on the pose, so tests can tell frames apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.actions import FORWARD_STEP_M, TURN_ANGLE_DEG, Action, validate_action
from envs.backend import AgentState, SimulatorBackend, StepResult
from envs.geometry import forward_vector, quat_from_yaw, yaw_from_quat


@dataclass
class PlaneConfig:
    half_size_m: float = 20.0  # navigable square [-half, half] in x and z
    width: int = 16
    height: int = 16

    def validate(self) -> None:
        if self.half_size_m <= 0:
            raise ValueError(f"PlaneConfig.half_size_m must be > 0, got {self.half_size_m}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"PlaneConfig width/height must be > 0, got {self.width}x{self.height}")


class PlaneBackend(SimulatorBackend):
    """A square plane; every scene id except ones starting with "missing/" is known."""

    def __init__(self, config: PlaneConfig | None = None):
        self.config = config or PlaneConfig()
        self.config.validate()
        self.scene_id: str | None = None
        self._position = np.zeros(3)
        self._yaw = 0.0

    def reset_scene(self, scene_id: str) -> None:
        if scene_id.startswith("missing/"):
            raise ValueError(f"unknown scene id {scene_id!r}")
        self.scene_id = scene_id

    def set_agent_state(self, state: AgentState) -> dict[str, np.ndarray]:
        position = np.asarray(state.position, dtype=np.float64)
        if not self.is_navigable(position):
            raise ValueError(f"agent position {position.tolist()} is off the navmesh")
        self._position = position.copy()
        self._yaw = yaw_from_quat(state.rotation)
        return self.observe()

    def get_agent_state(self) -> AgentState:
        return AgentState(position=self._position.copy(), rotation=quat_from_yaw(self._yaw))

    def step(self, action: int) -> StepResult:
        action = validate_action(action)
        collided = False
        if action == Action.MOVE_FORWARD:
            target = self._position + FORWARD_STEP_M * forward_vector(self._yaw)
            half = self.config.half_size_m
            clipped = np.clip(target, -half, half)
            clipped[1] = self._position[1]
            collided = not np.allclose(clipped, target)
            self._position = clipped
        elif action == Action.TURN_LEFT:
            self._yaw += math.radians(TURN_ANGLE_DEG)
        elif action == Action.TURN_RIGHT:
            self._yaw -= math.radians(TURN_ANGLE_DEG)
        return StepResult(observations=self.observe(), collided=collided)

    def observe(self) -> dict[str, np.ndarray]:
        h, w = self.config.height, self.config.width
        shade = int((math.degrees(self._yaw) % 360) / 360 * 255)
        rgb = np.full((h, w, 3), shade, dtype=np.uint8)
        rgb[..., 1] = int(abs(self._position[0]) * 10) % 256
        depth = np.full((h, w, 1), 0.5, dtype=np.float32)
        return {"rgb": rgb, "depth": depth}

    def geodesic_distance(self, start, goals) -> float:
        goals = np.asarray(goals, dtype=np.float64).reshape(-1, 3)
        start = np.asarray(start, dtype=np.float64)
        if not self.is_navigable(start):
            return math.inf
        reachable = [g for g in goals if self.is_navigable(g)]
        if not reachable:
            return math.inf
        return float(min(np.linalg.norm(g - start) for g in reachable))

    def shortest_path(self, start, goal) -> np.ndarray:
        start, goal = np.asarray(start, float), np.asarray(goal, float)
        if not (self.is_navigable(start) and self.is_navigable(goal)):
            return np.zeros((0, 3))
        return np.stack([start, goal])

    def is_navigable(self, point) -> bool:
        point = np.asarray(point, dtype=np.float64)
        half = self.config.half_size_m
        return bool(np.all(np.isfinite(point)) and abs(point[0]) <= half and abs(point[2]) <= half)

    def snap_point(self, point) -> np.ndarray:
        half = self.config.half_size_m
        snapped = np.asarray(point, dtype=np.float64).copy()
        snapped[[0, 2]] = np.clip(snapped[[0, 2]], -half, half)
        return snapped

    def sample_navigable_point(self, rng: np.random.Generator) -> np.ndarray:
        half = self.config.half_size_m
        return np.array([rng.uniform(-half, half), 0.0, rng.uniform(-half, half)])


def plane_episodes(count: int, goal_distance_m: float = 4.0) -> list:
    """`count` straight-ahead episodes on the plane (start at the origin facing -Z, goal ahead)."""
    from envs.episodes.io import Episode, Goal, Instruction

    return [
        Episode(
            episode_id=i, trajectory_id=i, scene_id=f"plane/{i % 2}",
            start_position=[0.0, 0.0, 0.0], start_rotation=quat_from_yaw(0.0).tolist(),
            goals=[Goal([0.0, 0.0, -goal_distance_m], 3.0)],
            reference_path=[[0.0, 0.0, 0.0], [0.0, 0.0, -goal_distance_m]],
            instruction=Instruction(f"instruction {i}"),
            info={"geodesic_distance": goal_distance_m},
        )
        for i in range(count)
    ]
