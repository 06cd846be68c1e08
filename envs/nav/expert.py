"""Greedy geodesic expert: turn toward the best 15-degree heading, then step forward.

At each step it scores the 24 headings by the geodesic distance at the point where a 0.25 m forward
step along that heading would land (with wall sliding when the backend can predict it), picks the
lowest, and turns toward it by the shortest rotation, or moves forward when it already faces it.

Why it never oscillates or loops:
- While the agent turns, its position does not change, so the expert commits to the absolute heading
  it chose and keeps turning the same way until it faces it (no left-right-left).
- It moves forward only when the predicted landing is strictly closer to the goal (by `min_progress`),
  so with an exact landing prediction the geodesic distance strictly decreases at every forward step:
  no cycles, and at most 12 turns between forward steps.
- STOP when within `goal_radius` of the goal, or when no heading makes progress (only happens within
  a step of the goal, or if the goal is unreachable).
- Heading slack (`heading_slack_deg`, default 20): it keeps walking straight while the current
  heading's forward step gains at least cos(slack) x the best heading's gain. Without it, a path
  whose direction falls between two 15-degree headings is walked as L F R F L F R ... (the best
  heading flips after every step), labels no learner can predict from a frame (found in issue 7:
  46% of the quick start's expert labels were turns). 0 restores the strict greedy choice.

Default goal_radius 0.25 m (one forward step): the expert ends at most one step from the goal point,
well inside VLN-CE's 3.0 m success radius, and can always make progress outside it (a step of 0.25 m
toward the goal from d > 0.25 lands closer). VLN-CE's ShortestPathFollower uses 0.5 m.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from envs.actions import FORWARD_STEP_M, TURN_ANGLE_DEG, Action
from envs.backend import AgentState, SimulatorBackend
from envs.geometry import forward_vector, quat_from_yaw, wrap_angle, yaw_from_quat

DistanceFn = Callable[[np.ndarray], float]
LandingFn = Callable[[np.ndarray, float], np.ndarray]  # (position, yaw) -> position after MOVE_FORWARD


@dataclass(frozen=True)
class ExpertConfig:
    goal_radius: float = 0.25  # metres (geodesic) at which the expert calls STOP
    min_progress: float = 1e-3  # metres a forward step must gain to be taken
    forward_step: float = FORWARD_STEP_M
    turn_angle_deg: float = TURN_ANGLE_DEG
    heading_slack_deg: float = 20.0  # keep the current heading while it is this close to the best gain

    def validate(self) -> None:
        if not self.goal_radius >= 0.0:
            raise ValueError(f"ExpertConfig.goal_radius must be >= 0, got {self.goal_radius}")
        if not self.min_progress > 0.0:
            raise ValueError(f"ExpertConfig.min_progress must be > 0, got {self.min_progress}")
        if not self.forward_step > 0.0:
            raise ValueError(f"ExpertConfig.forward_step must be > 0, got {self.forward_step}")
        if not 0.0 <= self.heading_slack_deg < 90.0:
            raise ValueError(f"ExpertConfig.heading_slack_deg must be in [0, 90), got {self.heading_slack_deg}")
        turns = 360.0 / self.turn_angle_deg if self.turn_angle_deg > 0 else 0.0
        if self.turn_angle_deg <= 0.0 or abs(turns - round(turns)) > 1e-6:
            raise ValueError(f"ExpertConfig.turn_angle_deg must divide 360, got {self.turn_angle_deg}")


class GeodesicExpert:
    """Expert over a distance function (to the goal) and a forward-landing predictor."""

    def __init__(self, distance_to_goal: DistanceFn, forward_landing: LandingFn | None = None,
                 config: ExpertConfig | None = None):
        self.config = config or ExpertConfig()
        self.config.validate()
        self._distance = distance_to_goal
        self._landing = forward_landing or self._straight_landing
        self._num_headings = int(round(360.0 / self.config.turn_angle_deg))
        self._turn_rad = math.radians(self.config.turn_angle_deg)
        self._committed: tuple[tuple[float, float], float] | None = None  # (position xz, target yaw)

    @classmethod
    def for_backend(cls, backend: SimulatorBackend, goals, config: ExpertConfig | None = None) -> GeodesicExpert:
        """Expert toward `goals` ((3,) or (K, 3)) using the backend's geodesic distance and step prediction."""
        goals = np.asarray(goals, dtype=np.float64)
        return cls(lambda p: backend.geodesic_distance(p, goals), backend.forward_landing, config)

    def reset(self) -> None:
        """Forget the committed turn (call at the start of every episode)."""
        self._committed = None

    def _straight_landing(self, position: np.ndarray, yaw: float) -> np.ndarray:
        return np.asarray(position, dtype=np.float64) + self.config.forward_step * forward_vector(yaw)

    def act(self, state: AgentState) -> Action:
        position = np.asarray(state.position, dtype=np.float64)
        yaw = yaw_from_quat(state.rotation)
        here = self._distance(position)
        if not math.isfinite(here) or here <= self.config.goal_radius:
            self._committed = None
            return Action.STOP
        key = (round(float(position[0]), 6), round(float(position[2]), 6))
        if self._committed is None or self._committed[0] != key:
            target = self._best_heading(position, yaw, here)
            if target is None:
                self._committed = None
                return Action.STOP
            self._committed = (key, target)
        return self._toward(yaw, self._committed[1])

    def plan(self, state: AgentState, steps: int) -> list[Action]:
        """The expert's next `steps` actions from `state` if it drove alone (open loop; nothing moves).

        Used to label a policy's action chunk: a model that emits `steps` actions from one frame must
        learn the expert's plan from that frame, not the expert's corrections at states its own
        earlier actions reached. Ends early at STOP. The expert's own state is left as it was.
        """
        saved = self._committed
        position = np.asarray(state.position, dtype=np.float64)
        yaw = yaw_from_quat(state.rotation)
        actions: list[Action] = []
        try:
            for _ in range(steps):
                action = self.act(AgentState(position, quat_from_yaw(yaw)))
                actions.append(action)
                if action == Action.STOP:
                    break
                if action == Action.MOVE_FORWARD:
                    position = np.asarray(self._landing(position, yaw), dtype=np.float64)
                else:
                    yaw += self._turn_rad if action == Action.TURN_LEFT else -self._turn_rad
        finally:
            self._committed = saved
        return actions

    def _best_heading(self, position: np.ndarray, yaw: float, here: float) -> float | None:
        """Absolute yaw of the heading whose forward step lands closest to the goal (None: no progress).

        Ties go to the smallest rotation from the current heading, then to the left (a fixed rule).
        The current heading wins while its gain is within the heading slack of the best gain.
        """
        best_value, best_turns, straight_value = math.inf, 0, math.inf
        for turns in _turn_order(self._num_headings):
            landing = self._landing(position, yaw + turns * self._turn_rad)
            value = self._distance(landing)
            if turns == 0:
                straight_value = value
            if value < best_value - 1e-9:
                best_value, best_turns = value, turns
        if not best_value < here - self.config.min_progress:
            return None
        keep = math.cos(math.radians(self.config.heading_slack_deg)) * (here - best_value)
        if here - straight_value >= max(keep, self.config.min_progress):
            return yaw
        return yaw + best_turns * self._turn_rad

    def _toward(self, yaw: float, target: float) -> Action:
        remaining = wrap_angle(target - yaw)
        if abs(remaining) < self._turn_rad / 2.0:
            return Action.MOVE_FORWARD
        # Exactly opposite headings wrap to +pi: that turns left, consistently on every call.
        return Action.TURN_LEFT if remaining > 0 else Action.TURN_RIGHT


def _turn_order(num_headings: int) -> list[int]:
    """0, +1, -1, +2, -2, ... (+ is left): scanning in this order makes ties favour small rotations."""
    order = [0]
    for k in range(1, num_headings // 2 + 1):
        order.append(k)
        if -k != k - num_headings and len(order) < num_headings:
            order.append(-k)
    return order[:num_headings]
