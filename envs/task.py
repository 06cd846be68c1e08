"""The VLN task, written once over any SimulatorBackend (embedded or habitat).

reset(episode) places the agent at the episode start and returns the first observation; step(action)
applies it; STOP ends the episode (terminated), the step limit truncates it. When an episode ends the
outcome carries the VLN-CE metrics (envs.metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.actions import Action, validate_action
from envs.backend import AgentState, SimulatorBackend
from envs.episodes.io import Episode, GroundTruth
from envs.metrics import MAX_EPISODE_STEPS, SUCCESS_DISTANCE_M, EpisodeMetrics, MetricsTracker

# Goals are placed next to objects, off their footprint; one this far from any navigable point is an error.
MAX_GOAL_SNAP_M = 1.0


@dataclass
class TaskConfig:
    max_steps: int = MAX_EPISODE_STEPS
    success_distance: float = SUCCESS_DISTANCE_M

    def validate(self) -> None:
        if self.max_steps < 1:
            raise ValueError(f"TaskConfig.max_steps must be >= 1, got {self.max_steps}")
        if self.success_distance <= 0:
            raise ValueError(f"TaskConfig.success_distance must be > 0, got {self.success_distance}")


@dataclass
class StepOutcome:
    observations: dict  # rgb, depth, instruction, pose
    terminated: bool  # STOP was called
    truncated: bool  # the step limit was reached without STOP
    collided: bool = False
    distance_to_goal: float = math.inf
    metrics: EpisodeMetrics | None = None  # set once the episode is over

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


def pose_vector(state: AgentState) -> np.ndarray:
    """(7,) float32: position x, y, z then quaternion x, y, z, w."""
    return np.concatenate([np.asarray(state.position, float), np.asarray(state.rotation, float)]).astype(np.float32)


class VLNTask:
    def __init__(self, backend: SimulatorBackend, config: TaskConfig | None = None):
        self.backend = backend
        self.config = config or TaskConfig()
        self.config.validate()
        self.episode: Episode | None = None
        self._tracker: MetricsTracker | None = None
        self._done = True
        self._scene_id: str | None = None

    # ------------------------------------------------------------------ episode lifecycle
    def reset(self, episode: Episode, gt: GroundTruth | None = None) -> dict:
        """Load the episode's scene, place the agent at its start, return the first observations."""
        label = f"episode {episode.episode_id!r} (scene {episode.scene_id})"
        if self._scene_id != episode.scene_id:
            try:
                self.backend.reset_scene(episode.scene_id)
            except (ValueError, KeyError) as error:
                raise ValueError(f"{label}: cannot load scene: {error}") from None
            self._scene_id = episode.scene_id
        start = np.asarray(episode.start_position, dtype=np.float64)
        try:
            observations = self.backend.set_agent_state(AgentState(start, np.asarray(episode.start_rotation, float)))
        except ValueError as error:
            raise ValueError(f"{label}: field 'start_position' {start.tolist()} is not navigable: {error}") from None
        goals = np.asarray(episode.goal_positions, dtype=np.float64)
        self._check_goals_on_navmesh(goals, label)
        shortest = self.backend.geodesic_distance(start, goals)
        if not math.isfinite(shortest):
            raise ValueError(f"{label}: field 'goals' is unreachable from the start position")
        reference = gt.locations if gt is not None and gt.locations else episode.reference_path or [start]
        self._tracker = MetricsTracker(
            lambda p: self.backend.geodesic_distance(p, goals), reference,
            episode.info.get("geodesic_distance", shortest), self.config.success_distance,
        )
        self._tracker.start(start)
        self.episode = episode
        self._done = False
        return self._observations(observations)

    def _check_goals_on_navmesh(self, goals: np.ndarray, label: str) -> None:
        """Backends snap goals onto the navmesh (like habitat); a goal far from it is a bad episode."""
        for index, goal in enumerate(goals):
            snapped = self.backend.snap_point(goal)
            offset = float(np.hypot(snapped[0] - goal[0], snapped[2] - goal[2]))
            if not np.all(np.isfinite(snapped)) or offset > MAX_GOAL_SNAP_M:
                raise ValueError(f"{label}: field 'goals[{index}].position' {goal.tolist()} is "
                                 f"{offset:.2f} m from the navmesh (more than {MAX_GOAL_SNAP_M} m)")

    def step(self, action: int) -> StepOutcome:
        if self._done or self._tracker is None:
            raise RuntimeError("step() called on a finished episode: call reset(episode) first")
        action = validate_action(action)
        collided = False
        if action == Action.STOP:
            observations = self.backend.observe()
        else:
            result = self.backend.step(int(action))
            observations, collided = result.observations, result.collided
        distance = self._tracker.record(int(action), self.backend.get_agent_state().position)
        terminated = action == Action.STOP
        truncated = not terminated and self._tracker.steps >= self.config.max_steps
        self._done = terminated or truncated
        return StepOutcome(
            observations=self._observations(observations),
            terminated=terminated,
            truncated=truncated,
            collided=collided,
            distance_to_goal=distance,
            metrics=self._tracker.result() if self._done else None,
        )

    # ------------------------------------------------------------------ state
    @property
    def done(self) -> bool:
        return self._done

    @property
    def steps(self) -> int:
        return self._tracker.steps if self._tracker else 0

    @property
    def agent_positions(self) -> np.ndarray:
        return np.stack(self._tracker.positions) if self._tracker else np.zeros((0, 3))

    @property
    def distance_to_goal(self) -> float:
        return self._tracker.distance if self._tracker else math.inf

    def _observations(self, observations: dict) -> dict:
        assert self.episode is not None
        # A backend without sensors (fast evaluation of blind baselines) returns no frames: None.
        return {
            "rgb": observations.get("rgb"),
            "depth": observations.get("depth"),
            "instruction": self.episode.instruction.instruction_text,
            "pose": pose_vector(self.backend.get_agent_state()),
        }

    def close(self) -> None:
        self.backend.close()
