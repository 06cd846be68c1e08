"""Voxel pruning of memory tokens (the StreamVLN paper's spatial pruning; the public code lacks it).

Each pooled token stands for a cell of the frame's pooled patch grid. Its cell centre is
back-projected with the depth there, the camera intrinsics (pinhole, square pixels, HFOV) and the
agent pose (Habitat conventions: Y up, camera looks along -Z, quaternion [x, y, z, w], camera
`camera_height_m` above the agent's position) into a world point, then into a voxel. Among the memory
frames, a token whose voxel is already covered by a token of a NEWER frame is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    hfov_deg: float = 90.0
    camera_height_m: float = 1.25
    max_depth_m: float = 10.0  # depth frames are normalised to [0, 1] of this


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """3x3 rotation of a unit quaternion [x, y, z, w]."""
    x, y, z, w = (float(v) for v in np.asarray(q, dtype=np.float64) / np.linalg.norm(q))
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def grid_side(tokens_per_frame: int) -> int | None:
    """Side of the square pooled grid, or None when the token count is not a square."""
    side = math.isqrt(tokens_per_frame)
    return side if side * side == tokens_per_frame else None


def token_world_points(depth: np.ndarray, pose: np.ndarray, side: int,
                       camera: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """World points (side*side, 3) of the pooled-token cell centres and a validity mask.

    depth: (H, W, 1) or (H, W) normalised planar depth; pose: (7,) position [x, y, z] + quat [x, y, z, w].
    A token is invalid where the depth is 0 (no return) or 1 (beyond the clip distance).
    """
    depth = np.asarray(depth, dtype=np.float32).reshape(depth.shape[0], depth.shape[1])
    height, width = depth.shape
    centre_v = (np.arange(side) + 0.5) * height / side  # cell centres in pixel coordinates
    centre_u = (np.arange(side) + 0.5) * width / side
    rows = centre_v.astype(np.int64).clip(0, height - 1)  # the pixel holding each centre
    cols = centre_u.astype(np.int64).clip(0, width - 1)
    sampled = depth[rows[:, None], cols[None, :]].reshape(-1)
    z = sampled.astype(np.float64) * camera.max_depth_m
    focal = (width / 2.0) / math.tan(math.radians(camera.hfov_deg) / 2.0)
    v, u = np.meshgrid(centre_v, centre_u, indexing="ij")
    x_cam = (u.reshape(-1) - width / 2.0) / focal * z
    y_cam = -(v.reshape(-1) - height / 2.0) / focal * z
    camera_points = np.stack([x_cam, y_cam, -z], axis=1)
    pose = np.asarray(pose, dtype=np.float64)
    origin = pose[:3] + np.array([0.0, camera.camera_height_m, 0.0])
    world = camera_points @ quat_to_matrix(pose[3:7]).T + origin
    valid = (sampled > 0.0) & (sampled < 1.0)
    return world, valid


def voxel_keep_masks(frames: list[tuple[np.ndarray, np.ndarray] | None], voxel_size_m: float) -> list[np.ndarray | None]:
    """Which tokens of each frame (oldest first) to keep.

    frames[i] is (points (P, 3), valid (P,)) or None for a frame without geometry (all of its tokens
    are kept and it covers nothing). Returns a bool mask per frame, None where the frame had none.
    """
    covered = np.zeros((0, 3), dtype=np.int64)
    masks: list[np.ndarray | None] = [None] * len(frames)
    for index in range(len(frames) - 1, -1, -1):  # newest first: newer tokens cover older ones
        if frames[index] is None:
            continue
        points, valid = frames[index]
        voxels = np.floor(points / voxel_size_m).astype(np.int64)
        seen = _rows_in(voxels, covered) & valid
        masks[index] = ~seen
        covered = np.unique(np.concatenate([covered, voxels[valid]]), axis=0)
    return masks


def _rows_in(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Bool (len(rows),): whether each integer row occurs in `table`."""
    if len(table) == 0:
        return np.zeros(len(rows), dtype=bool)
    table_set = {tuple(row) for row in table.tolist()}
    return np.array([tuple(row) in table_set for row in rows.tolist()], dtype=bool)
