"""Habitat pose conventions: Y up, forward is -Z, quaternions [x, y, z, w], yaw about +Y.

A yaw of 0 faces -Z; TURN_LEFT adds +15 degrees (counter-clockwise seen from above, +Y up).
"""

from __future__ import annotations

import math

import numpy as np


def quat_from_yaw(yaw: float) -> np.ndarray:
    """Quaternion [x, y, z, w] of a rotation by `yaw` radians about +Y."""
    return np.array([0.0, math.sin(yaw / 2.0), 0.0, math.cos(yaw / 2.0)], dtype=np.float64)


def yaw_from_quat(q) -> float:
    """Yaw about +Y of a quaternion [x, y, z, w] (its heading projected on the floor)."""
    x, y, z, w = (float(v) for v in q)
    # Forward (-Z) rotated by q, projected onto XZ.
    fx = -(2.0 * (x * z + w * y))
    fz = -(1.0 - 2.0 * (x * x + y * y))
    return math.atan2(-fx, -fz)


def forward_vector(yaw: float) -> np.ndarray:
    """Unit vector (x, 0, z) the agent faces at `yaw`."""
    return np.array([-math.sin(yaw), 0.0, -math.cos(yaw)], dtype=np.float64)


def wrap_angle(angle: float) -> float:
    """Angle in (-pi, pi]."""
    return math.atan2(math.sin(angle), math.cos(angle))
