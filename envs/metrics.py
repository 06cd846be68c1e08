"""VLN-CE metrics (DESIGN.md 3.3): pure functions over arrays, plus a per-episode tracker.

NE  geodesic distance to the goal at the end.
SR  STOP called and NE < success distance (3.0 m, strict).
OS  geodesic distance < success distance at any step (oracle success).
TL  sum of straight-line step lengths.
SPL SR * l / max(l, p), l = geodesic start-to-goal, p = TL.
nDTW exp(-DTW(Q, R) / (|R| * 3.0)); Q the agent positions with consecutive duplicates removed,
     R the gt locations, exact DTW over Euclidean 3D distances.
SDTW SR * nDTW.
steps every action including STOP; reaching the step limit (500) without STOP fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numba
import numpy as np

SUCCESS_DISTANCE_M = 3.0
MAX_EPISODE_STEPS = 500
METRIC_NAMES = ("NE", "OS", "SR", "SPL", "TL", "nDTW", "SDTW", "steps")


def success(called_stop: bool, final_distance: float, success_distance: float = SUCCESS_DISTANCE_M) -> float:
    return 1.0 if called_stop and final_distance < success_distance else 0.0


def oracle_success(distances: Sequence[float], success_distance: float = SUCCESS_DISTANCE_M) -> float:
    return 1.0 if len(distances) and float(np.min(distances)) < success_distance else 0.0


def trajectory_length(positions: np.ndarray) -> float:
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if len(positions) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(positions, axis=0), axis=1).sum())


def spl(success_value: float, shortest_distance: float, path_length: float) -> float:
    denominator = max(shortest_distance, path_length)
    if success_value == 0.0 or denominator <= 0.0:
        return float(success_value)  # already at the goal with a zero-length path
    return float(success_value * shortest_distance / denominator)


def remove_consecutive_duplicates(positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if len(positions) < 2:
        return positions
    keep = np.ones(len(positions), dtype=bool)
    keep[1:] = np.any(positions[1:] != positions[:-1], axis=1)
    return positions[keep]


@numba.njit(cache=True)
def _dtw_kernel(query: np.ndarray, reference: np.ndarray) -> float:
    n, m = query.shape[0], reference.shape[0]
    cost = np.full((n + 1, m + 1), np.inf)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d = 0.0
            for k in range(3):
                diff = query[i - 1, k] - reference[j - 1, k]
                d += diff * diff
            best = min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
            cost[i, j] = math.sqrt(d) + best
    return cost[n, m]


def dtw(query: np.ndarray, reference: np.ndarray) -> float:
    """Exact dynamic time warping distance, O(n*m), Euclidean 3D point costs."""
    query = np.ascontiguousarray(query, dtype=np.float64).reshape(-1, 3)
    reference = np.ascontiguousarray(reference, dtype=np.float64).reshape(-1, 3)
    if len(query) == 0 or len(reference) == 0:
        raise ValueError("dtw needs at least one point in the query and in the reference")
    return float(_dtw_kernel(query, reference))


def ndtw(positions: np.ndarray, reference: np.ndarray, success_distance: float = SUCCESS_DISTANCE_M) -> float:
    query = remove_consecutive_duplicates(positions)
    reference = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
    return float(math.exp(-dtw(query, reference) / (len(reference) * success_distance)))


@dataclass
class EpisodeMetrics:
    NE: float
    OS: float
    SR: float
    SPL: float
    TL: float
    nDTW: float
    SDTW: float
    steps: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def episode_metrics(
    positions: np.ndarray,
    distances: Sequence[float],
    called_stop: bool,
    steps: int,
    shortest_distance: float,
    reference: np.ndarray,
    success_distance: float = SUCCESS_DISTANCE_M,
) -> EpisodeMetrics:
    """All metrics of one finished episode.

    positions: (T+1, 3) agent positions, start first; distances: geodesic distance to the goal at
    each of them; reference: the gt locations (or the reference path when no gt exists).
    """
    sr = success(called_stop, distances[-1], success_distance)
    tl = trajectory_length(positions)
    n = ndtw(positions, reference, success_distance)
    return EpisodeMetrics(
        NE=float(distances[-1]),
        OS=oracle_success(distances, success_distance),
        SR=sr,
        SPL=spl(sr, shortest_distance, tl),
        TL=tl,
        nDTW=n,
        SDTW=sr * n,
        steps=int(steps),
    )


class MetricsTracker:
    """Accumulates one episode's positions and distances step by step.

    `distance_to_goal` maps a position to its geodesic distance to the episode's goal(s) (the
    backend's geodesic_distance, bound to the goals).
    """

    def __init__(
        self,
        distance_to_goal: Callable[[np.ndarray], float],
        reference: np.ndarray,
        shortest_distance: float,
        success_distance: float = SUCCESS_DISTANCE_M,
    ):
        self._distance_to_goal = distance_to_goal
        self.reference = np.asarray(reference, dtype=np.float64).reshape(-1, 3)
        self.shortest_distance = float(shortest_distance)
        self.success_distance = success_distance
        self.positions: list[np.ndarray] = []
        self.distances: list[float] = []
        self.steps = 0
        self.called_stop = False

    def start(self, position: np.ndarray) -> None:
        self.positions = [np.asarray(position, dtype=np.float64).copy()]
        self.distances = [self._distance_to_goal(self.positions[0])]
        self.steps = 0
        self.called_stop = False

    def record(self, action: int, position: np.ndarray) -> float:
        """Record an action and the position after it; returns the new distance to the goal."""
        self.steps += 1
        if action == 0:
            self.called_stop = True
            return self.distances[-1]  # STOP does not move
        self.positions.append(np.asarray(position, dtype=np.float64).copy())
        self.distances.append(self._distance_to_goal(self.positions[-1]))
        return self.distances[-1]

    @property
    def distance(self) -> float:
        return self.distances[-1]

    def result(self) -> EpisodeMetrics:
        return episode_metrics(
            np.stack(self.positions), self.distances, self.called_stop, self.steps,
            self.shortest_distance, self.reference, self.success_distance,
        )


def aggregate(per_episode: Sequence[EpisodeMetrics | dict]) -> dict[str, float]:
    """Mean of every metric over episodes (VLN-CE reports means); {} for no episodes."""
    rows = [m.as_dict() if isinstance(m, EpisodeMetrics) else m for m in per_episode]
    if not rows:
        return {}
    return {name: float(np.mean([row[name] for row in rows])) for name in METRIC_NAMES}
