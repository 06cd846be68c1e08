"""RGB-D (and semantic) frames of a procedural house by a numba column raycaster over its LayoutGrid.

Each image column casts one ray through the 5 cm grid (DDA, Amanatides-Woo) from the camera. The
direction vector has a forward component of exactly 1, so the ray parameter t *is* the planar
z-depth. Everything in the house is a column standing on the floor (walls to the ceiling, furniture
to its height), so, walking cells front to back, the pixels already covered in an image column are
always one contiguous block from the bottom of the screen up to row `ytop`: each new cell only has
to fill rows above it. A floor cell fills the floor rows between its entry and exit distances, a
solid cell its front face and (when lower than the camera) its top face; a wall ends the column
and the rows left above it are ceiling. Horizontal surfaces at height y project to the same row
for every column, so their per-row depth is (eye - y) / (row offset / focal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.render.kernels import COLUMN_BLOCK, empty_tables, render_frame, row_tables
from envs.scene.catalog import CEILING_RGB
from envs.scene.house import WALL_HEIGHT_M, House

_FALLBACK_MATERIAL = ((200, 200, 200), (120, 120, 120))  # a grid with no rooms still renders


@dataclass
class RenderConfig:
    width: int = 256
    height: int = 256
    hfov_deg: float = 90.0
    camera_height: float = 1.25
    max_depth: float = 10.0
    semantic: bool = False

    def validate(self) -> RenderConfig:
        if self.width < 1:
            raise ValueError(f"width must be a positive number of pixels, got {self.width}")
        if self.height < 1:
            raise ValueError(f"height must be a positive number of pixels, got {self.height}")
        if not 1.0 <= self.hfov_deg <= 170.0:
            raise ValueError(f"hfov_deg must be within [1, 170] degrees, got {self.hfov_deg}")
        if not 0.0 < self.camera_height < WALL_HEIGHT_M:
            raise ValueError(f"camera_height must be within (0, {WALL_HEIGHT_M}) m (below the ceiling), got {self.camera_height}")
        if self.max_depth <= 0.0:
            raise ValueError(f"max_depth must be positive, got {self.max_depth}")
        return self

    @property
    def focal_px(self) -> float:
        """Pinhole focal length in pixels (square pixels: the vertical FOV follows from the aspect)."""
        return (self.width / 2.0) / math.tan(math.radians(self.hfov_deg) / 2.0)


class Renderer:
    """Renders one house; build once per scene (it keeps lookup tables and scratch buffers).

    Not thread-safe (shared scratch); the kernels release the GIL, so use one Renderer per thread.
    """

    def __init__(self, house: House, config: RenderConfig | None = None):
        self.config = cfg = (config or RenderConfig()).validate()
        self.house = house
        grid = house.grid
        self._grid = (
            np.ascontiguousarray(grid.kind, dtype=np.uint8), np.ascontiguousarray(grid.room, dtype=np.int16),
            np.ascontiguousarray(grid.obj, dtype=np.int16), np.ascontiguousarray(grid.height, dtype=np.float32),
            float(grid.origin_x), float(grid.origin_z), 1.0 / grid.cell_size,
        )
        materials = [house.materials[room.room_type] for room in house.rooms] or [_FALLBACK_MATERIAL]
        self._colors = (
            np.array([wall for wall, _ in materials], dtype=np.float32),
            np.array([piece.rgb for piece in house.furniture] or [(0, 0, 0)], dtype=np.float32),
        )
        self._floor_rgb = np.array([floor for _, floor in materials], dtype=np.float32)
        focal = cfg.focal_px
        self._lens = (
            (np.arange(cfg.width) + 0.5 - cfg.width / 2.0) / focal,  # column -> right offset per unit forward
            (np.arange(cfg.height) + 0.5 - cfg.height / 2.0) / focal,  # row -> down offset per unit forward
            focal, float(cfg.max_depth),
        )
        self._tables = empty_tables(cfg.height, len(materials))
        self._tables_eye: float | None = None
        block = min(COLUMN_BLOCK, cfg.width)
        self._scratch = (
            np.zeros((block, cfg.height, 3), np.uint8), np.zeros((block, cfg.height), np.float32),
            np.zeros((block, cfg.height) if cfg.semantic else (1, 1), np.int16),
        )
        self._no_semantic = np.zeros((1, 1), dtype=np.int16)

    def allocate(self) -> dict[str, np.ndarray]:
        """Fresh output buffers for render_into."""
        h, w = self.config.height, self.config.width
        out = {"rgb": np.empty((h, w, 3), np.uint8), "depth": np.empty((h, w, 1), np.float32)}
        if self.config.semantic:
            out["semantic"] = np.empty((h, w), np.int16)
        return out

    def render(self, position, yaw: float) -> dict[str, np.ndarray]:
        """{"rgb": uint8 (H,W,3), "depth": float32 (H,W,1) in [0,1], "semantic": int16 (H,W) if enabled}.

        position (3,) is the agent's floor position (y = floor height); the eye is camera_height above.
        Semantic ids are furniture index + 1 (0 for walls, floor, ceiling). Returns new arrays each
        call, so callers may keep frames; render_into reuses buffers.
        """
        out = self.allocate()
        self.render_into(position, yaw, out)
        return out

    def _check_buffers(self, rgb: np.ndarray, depth: np.ndarray, semantic: np.ndarray) -> None:
        """The kernels do not bounds-check: a wrong buffer must fail here, not corrupt memory."""
        h, w = self.config.height, self.config.width
        expected = [(rgb, (h, w, 3), np.uint8, "rgb"), (depth, (h, w, 1), np.float32, "depth")]
        if self.config.semantic:
            expected.append((semantic, (h, w), np.int16, "semantic"))
        for array, shape, dtype, name in expected:
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(f"render_into: out[{name!r}] must be {np.dtype(dtype).name} {shape}, got {array.dtype} {array.shape}")

    def render_into(self, position, yaw: float, out: dict[str, np.ndarray]) -> None:
        """Render into buffers shaped like allocate()'s."""
        cfg = self.config
        x, y, z = (float(v) for v in position)
        yaw = float(yaw)
        if not all(math.isfinite(v) for v in (x, y, z, yaw)):
            raise ValueError(f"render pose must be finite, got position {(x, y, z)} and yaw {yaw}")
        eye = y + cfg.camera_height
        if eye != self._tables_eye:
            row_tables(self._lens[1], eye, WALL_HEIGHT_M, cfg.max_depth, self._floor_rgb, np.array(CEILING_RGB, np.float32),
                       *self._tables)
            self._tables_eye = eye
        semantic_out = out["semantic"] if cfg.semantic else self._no_semantic
        self._check_buffers(out["rgb"], out["depth"], semantic_out)
        camera = (x, z, eye, WALL_HEIGHT_M, math.sin(yaw), math.cos(yaw))
        render_frame(self._grid, self._colors, camera, self._lens, self._tables, self._scratch, cfg.semantic,
                     (out["rgb"], out["depth"], semantic_out))
