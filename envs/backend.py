"""The simulator backend interface: exactly what the task, the expert and the metrics need.

Two implementations: envs.embedded (procedural houses, default everywhere) and envs.habitat
(raw habitat_sim, imported lazily). Everything above this interface (task, episodes, metrics,
expert, gymnasium env) is written once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from envs.actions import FORWARD_STEP_M
from envs.geometry import forward_vector


@dataclass
class AgentState:
    position: np.ndarray  # (3,) float64 metres, y = floor height
    rotation: np.ndarray  # (4,) quaternion [x, y, z, w]


@dataclass
class StepResult:
    observations: dict[str, np.ndarray]  # "rgb" uint8 (H, W, 3), "depth" float32 (H, W, 1) in [0, 1]
    collided: bool


class SimulatorBackend(ABC):
    """One scene at a time; `reset_scene` switches scenes."""

    @abstractmethod
    def reset_scene(self, scene_id: str) -> None: ...

    @abstractmethod
    def set_agent_state(self, state: AgentState) -> dict[str, np.ndarray]:
        """Place the agent (raises ValueError off the navmesh) and return observations there."""

    @abstractmethod
    def get_agent_state(self) -> AgentState: ...

    @abstractmethod
    def step(self, action: int) -> StepResult:
        """Apply MOVE_FORWARD / TURN_LEFT / TURN_RIGHT (STOP is the task's business: it does not move)."""

    @abstractmethod
    def observe(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def geodesic_distance(self, start: np.ndarray, goals: np.ndarray | list) -> float:
        """Shortest navigable distance from start to the nearest of goals (one (3,) point or (K, 3)); inf if unreachable."""

    @abstractmethod
    def shortest_path(self, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """(N, 3) points from start to goal along the navmesh; empty (0, 3) if unreachable."""

    @abstractmethod
    def is_navigable(self, point: np.ndarray) -> bool: ...

    @abstractmethod
    def snap_point(self, point: np.ndarray) -> np.ndarray:
        """Nearest navigable point (NaN-filled if none)."""

    @abstractmethod
    def sample_navigable_point(self, rng: np.random.Generator) -> np.ndarray: ...

    def forward_landing(self, position: np.ndarray, yaw: float) -> np.ndarray:
        """Where MOVE_FORWARD from (position, yaw) would leave the agent, without moving it.

        The expert uses it to score headings. Default: the straight 0.25 m step (no collision);
        backends override it with their real sliding motion.
        """
        return np.asarray(position, dtype=np.float64) + FORWARD_STEP_M * forward_vector(yaw)

    def close(self) -> None:  # noqa: B027 - optional hook: backends without resources keep the no-op
        """Release simulator resources."""
