import math

import numpy as np
import pytest

from envs import metrics


def test_success_is_strict_and_needs_stop():
    assert metrics.success(True, 2.999) == 1.0
    assert metrics.success(True, 3.0) == 0.0  # strict <
    assert metrics.success(False, 0.5) == 0.0  # no STOP, no success


def test_oracle_success():
    assert metrics.oracle_success([8.0, 2.9, 6.0]) == 1.0
    assert metrics.oracle_success([8.0, 3.0, 6.0]) == 0.0


def test_trajectory_length_sums_steps():
    path = np.array([[0, 0, 0], [3, 0, 4], [3, 0, 4], [3, 1, 4]], float)
    assert metrics.trajectory_length(path) == pytest.approx(6.0)
    assert metrics.trajectory_length(path[:1]) == 0.0


def test_spl():
    assert metrics.spl(1.0, 8.0, 10.0) == pytest.approx(0.8)
    assert metrics.spl(1.0, 8.0, 6.0) == pytest.approx(1.0)  # shorter than geodesic: capped at 1
    assert metrics.spl(0.0, 8.0, 8.0) == 0.0


def test_dtw_exact_on_hand_case():
    # Q = (0,0,0),(1,0,0),(2,0,0); R = (0,0,0),(2,0,0).
    # Cost matrix d: [[0,2],[1,1],[2,0]]; DTW: C[1,1]=0, C[2,1]=1, C[3,1]=3, C[1,2]=2, C[2,2]=1, C[3,2]=1.
    q = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], float)
    r = np.array([[0, 0, 0], [2, 0, 0]], float)
    assert metrics.dtw(q, r) == pytest.approx(1.0)
    # A non-greedy case: the best alignment is not the diagonal.
    q2 = np.array([[0, 0, 0], [0, 0, 3], [0, 4, 3]], float)
    r2 = np.array([[0, 0, 0], [0, 4, 3]], float)
    # d = [[0,5],[3,4],[5,0]]: C11=0 C21=3 C31=8 C12=5 C22=min(0,3,5)+4=4 C32=min(3,4,8)+0=3.
    assert metrics.dtw(q2, r2) == pytest.approx(3.0)


def test_ndtw_removes_consecutive_duplicates():
    q = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [2, 0, 0]], float)
    r = np.array([[0, 0, 0], [2, 0, 0]], float)
    # Without removal DTW would be 1 + 1 = 2 (the duplicate (1,0,0) costs again); with it, 1.
    assert metrics.ndtw(q, r) == pytest.approx(math.exp(-1.0 / (2 * 3.0)))
    assert metrics.ndtw(r, r) == pytest.approx(1.0)


def test_episode_metrics_and_sdtw():
    positions = np.array([[0, 0, 0], [0, 0, -1], [0, 0, -2]], float)
    distances = [4.0, 3.0, 2.0]
    reference = np.array([[0, 0, 0], [0, 0, -2]], float)
    m = metrics.episode_metrics(positions, distances, True, 3, 4.0, reference)
    assert (m.NE, m.OS, m.SR, m.TL, m.steps) == (2.0, 1.0, 1.0, 2.0, 3)
    assert m.SPL == pytest.approx(1.0)  # noqa: SIM300 (upper-case metric names are not constants)
    assert m.nDTW == pytest.approx(math.exp(-1.0 / 6.0))
    assert m.SDTW == pytest.approx(m.nDTW)  # noqa: SIM300 (upper-case metric names are not constants)
    failed = metrics.episode_metrics(positions, distances, False, 500, 4.0, reference)
    assert failed.SR == 0.0 and failed.SDTW == 0.0 and failed.SPL == 0.0 and failed.OS == 1.0


def test_tracker_counts_stop_and_does_not_move_on_stop():
    goal = np.array([0.0, 0.0, -3.0])
    tracker = metrics.MetricsTracker(lambda p: float(np.linalg.norm(p - goal)), [[0, 0, 0], goal], 3.0)
    tracker.start(np.zeros(3))
    tracker.record(2, np.zeros(3))  # a turn: same position, duplicates removed in nDTW
    tracker.record(1, np.array([0, 0, -0.25]))
    tracker.record(0, np.array([0, 0, -0.25]))
    result = tracker.result()
    assert result.steps == 3 and result.SR == 1.0
    assert result.TL == pytest.approx(0.25)  # noqa: SIM300 (upper-case metric names are not constants)
    assert result.NE == pytest.approx(2.75)  # noqa: SIM300 (upper-case metric names are not constants)
    assert len(tracker.positions) == 3


def test_aggregate_means():
    rows = [
        metrics.EpisodeMetrics(1, 1, 1, 1, 1, 1, 1, 10),
        metrics.EpisodeMetrics(3, 0, 0, 0, 3, 0.5, 0, 20),
    ]
    agg = metrics.aggregate(rows)
    assert agg["NE"] == 2 and agg["SR"] == 0.5 and agg["steps"] == 15 and agg["nDTW"] == 0.75
    assert metrics.aggregate([]) == {}
