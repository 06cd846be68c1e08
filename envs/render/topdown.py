"""Top-down map of a house: floors by room type, dark walls, furniture in its colours, doorways,
paths as polylines, the agent as an arrow and the goal as a ring. Image up is -Z (yaw 0 faces up).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from envs.geometry import forward_vector
from envs.scene.house import CellKind, House

WALL_RGB = (45, 45, 50)
OUTSIDE_RGB = (255, 255, 255)
DOOR_RGB = (250, 235, 190)
AGENT_RGB = (220, 30, 30)
GOAL_RGB = (20, 170, 60)
OUTLINE_RGB = (20, 20, 20)


def cell_colors(house: House) -> np.ndarray:
    """uint8 (rows, cols, 3): one colour per grid cell."""
    grid = house.grid
    floor_lut = np.array([house.materials[room.room_type][1] for room in house.rooms] + [OUTSIDE_RGB], dtype=np.uint8)
    image = floor_lut[np.where(grid.room >= 0, grid.room, len(house.rooms))]
    image[grid.kind == CellKind.WALL] = WALL_RGB
    image[grid.kind == CellKind.OUTSIDE] = OUTSIDE_RGB
    image[grid.kind == CellKind.DOOR] = DOOR_RGB
    if house.furniture:
        object_lut = np.array([piece.rgb for piece in house.furniture], dtype=np.uint8)
        objects = grid.kind == CellKind.OBJECT
        image[objects] = object_lut[grid.obj[objects]]
    return image


def topdown_map(house: House, paths: Sequence[tuple[np.ndarray, tuple[int, int, int]]] = (),
                agent: tuple[np.ndarray, float] | None = None, goal: np.ndarray | None = None,
                scale_px_per_m: float = 40.0) -> np.ndarray:
    """uint8 (H, W, 3) map; `paths` are ((N, 3) world points, rgb) drawn in order."""
    if scale_px_per_m <= 0:
        raise ValueError(f"scale_px_per_m must be positive, got {scale_px_per_m}")
    grid = house.grid
    rows, cols = grid.shape
    size = (max(1, round(cols * grid.cell_size * scale_px_per_m)), max(1, round(rows * grid.cell_size * scale_px_per_m)))
    image = Image.fromarray(cell_colors(house)).resize(size, Image.NEAREST)
    draw = ImageDraw.Draw(image)

    def to_px(x: float, z: float) -> tuple[float, float]:
        return ((x - grid.origin_x) * scale_px_per_m, (z - grid.origin_z) * scale_px_per_m)

    for piece in house.furniture:
        draw.rectangle([to_px(piece.x0, piece.z0), to_px(piece.x1, piece.z1)], outline=OUTLINE_RGB)
    line_width = max(1, round(scale_px_per_m / 15))
    for points, rgb in paths:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if len(points) >= 2:
            draw.line([to_px(p[0], p[2]) for p in points], fill=tuple(rgb), width=line_width, joint="curve")
        elif len(points) == 1:
            x, y = to_px(points[0][0], points[0][2])
            draw.ellipse([x - line_width, y - line_width, x + line_width, y + line_width], fill=tuple(rgb))
    if goal is not None:
        x, y = to_px(float(goal[0]), float(goal[2]))
        radius = 0.25 * scale_px_per_m
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=GOAL_RGB, width=max(2, line_width))
    if agent is not None:
        draw.polygon(_arrow(agent[0], agent[1], to_px, scale_px_per_m), fill=AGENT_RGB, outline=OUTLINE_RGB)
    return np.asarray(image, dtype=np.uint8).copy()


def _arrow(position: np.ndarray, yaw: float, to_px, scale: float) -> list[tuple[float, float]]:
    """A triangle 0.4 m long pointing where the agent faces."""
    forward = forward_vector(yaw)
    right = np.array([-forward[2], 0.0, forward[0]])
    centre = np.asarray(position, dtype=np.float64)
    tip = centre + 0.25 * forward
    left_corner = centre - 0.15 * forward - 0.12 * right
    right_corner = centre - 0.15 * forward + 0.12 * right
    return [to_px(p[0], p[2]) for p in (tip, left_corner, right_corner)]
