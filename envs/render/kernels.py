"""numba kernels of the column raycaster (see raycaster.py for the method).

Layout: columns are cast in blocks of COLUMN_BLOCK into small column-major scratch buffers (a ray
writes contiguous memory), and each block is copied into the (H, W) outputs while still in cache.
All per-row quantities (planar depth of the floor and ceiling, their shaded colours) are tables
built once per eye height, and the 0.5 m floor tiles are whole cells (one parity test per cell), so
a floor pixel is a few byte copies.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from envs.scene.house import CellKind

_FLOOR, _DOOR, _OBJECT = int(CellKind.FLOOR), int(CellKind.DOOR), int(CellKind.OBJECT)
Z_FACE_SHADE = 0.78  # faces whose normal is along z are darker than x faces: corners stay readable
TOP_FACE_SHADE = 1.12  # tops of low furniture look lit from above
TILE_SHADE = 0.93  # every other 0.5 m floor tile is slightly darker: motion is visible on the floor
DISTANCE_FALLOFF = 0.05  # brightness 1 / (1 + falloff * metres)
COLUMN_BLOCK = 64
_TILE_OFFSET_M = 64.0  # keeps tile coordinates positive so int() truncation equals floor()

_jit = numba.njit(cache=True, fastmath=True, nogil=True, error_model="numpy")
_jit_inline = numba.njit(cache=True, fastmath=True, nogil=True, error_model="numpy", inline="always")


@_jit
def row_tables(row_offset, eye, ceiling_y, max_depth, floor_rgb, ceiling_rgb, row_depth, floor_rows, ceiling_rows):
    """Per image row, from the planar depth of the floor (below the horizon) or the ceiling (above it):
    the normalised depth and the shaded colours floor_rows[room, tile, row] and ceiling_rows[row]."""
    for r in range(row_offset.shape[0]):
        offset = row_offset[r]
        if offset > 0.0:
            z = eye / offset
            shade = 1.0 / (1.0 + DISTANCE_FALLOFF * z)
            for room in range(floor_rgb.shape[0]):
                for ch in range(3):
                    floor_rows[room, 0, r, ch] = min(255.0, floor_rgb[room, ch] * shade)
                    floor_rows[room, 1, r, ch] = min(255.0, floor_rgb[room, ch] * shade * TILE_SHADE)
        else:
            z = (ceiling_y - eye) / max(-offset, 1e-9)
            shade = 1.0 / (1.0 + 0.5 * DISTANCE_FALLOFF * z)
            for ch in range(3):
                ceiling_rows[r, ch] = min(255.0, ceiling_rgb[ch] * shade)
        row_depth[r] = min(z, max_depth) / max_depth


@_jit_inline
def _row_of(eye, y, t, n_rows, focal):
    """First pixel row whose centre lies at or below height y seen at planar depth t."""
    s = n_rows / 2.0 + (eye - y) / max(t, 1e-6) * focal
    if s < 0.0:
        return 0
    if s > n_rows:
        return n_rows
    return int(math.ceil(s - 0.5))


@_jit_inline
def _fill(rgb, depth, c, r0, r1, red, green, blue, shade, depth_norm):
    """Rows [r0, r1) of scratch column c in one shaded colour at one depth (a vertical face)."""
    r8, g8, b8 = min(255.0, red * shade), min(255.0, green * shade), min(255.0, blue * shade)
    for r in range(r0, r1):
        rgb[c, r, 0] = r8
        rgb[c, r, 1] = g8
        rgb[c, r, 2] = b8
        depth[c, r] = depth_norm


@_jit
def render_frame(grid, colors, camera, lens, tables, scratch, want_semantic, outputs):
    """grid = (kind, room, obj, height, origin_x, origin_z, inv_cell); colors = (wall_rgb, obj_rgb);
    camera = (x, z, eye, ceiling_y, sin_yaw, cos_yaw); lens = (col_u, row_offset, focal, max_depth);
    tables from row_tables; scratch = column-major (rgb, depth, semantic); outputs = (rgb, depth, semantic)."""
    cam_x, cam_z, _, _, sin_yaw, cos_yaw = camera
    col_u = lens[0]
    rgb = scratch[0]
    fwd_x, fwd_z = -sin_yaw, -cos_yaw
    right_x, right_z = cos_yaw, -sin_yaw
    n_cols, block = col_u.shape[0], rgb.shape[0]
    for c0 in range(0, n_cols, block):
        c1 = min(c0 + block, n_cols)
        for c in range(c0, c1):
            if want_semantic:
                scratch[2][c - c0, :] = 0
            _cast_column(c - c0, fwd_x + col_u[c] * right_x, fwd_z + col_u[c] * right_z,
                         grid, colors, camera, lens, tables, scratch, want_semantic)
        _copy_block(scratch, want_semantic, c0, c1, outputs)


@_jit
def _copy_block(scratch, want_semantic, c0, c1, outputs):
    """Scratch columns (still in cache) -> image columns [c0, c1) of the (H, W) outputs."""
    rgb, depth, semantic = scratch
    rgb_out, depth_out, semantic_out = outputs
    for r in range(depth.shape[1]):
        for c in range(c0, c1):
            rgb_out[r, c, 0] = rgb[c - c0, r, 0]
            rgb_out[r, c, 1] = rgb[c - c0, r, 1]
            rgb_out[r, c, 2] = rgb[c - c0, r, 2]
            depth_out[r, c, 0] = depth[c - c0, r]
    if want_semantic:
        for r in range(depth.shape[1]):
            for c in range(c0, c1):
                semantic_out[r, c] = semantic[c - c0, r]


@_jit_inline
def _floor_span(rgb, depth, c, r0, r1, colours, row_depth):
    for r in range(r0, r1):
        rgb[c, r, 0] = colours[r, 0]
        rgb[c, r, 1] = colours[r, 1]
        rgb[c, r, 2] = colours[r, 2]
        depth[c, r] = row_depth[r]


@_jit_inline
def _top_face(rgb, depth, c, r0, r1, red, green, blue, eye, h, row_offset, max_depth):
    """Rows [r0, r1): the horizontal top (height h) of a piece lower than the eye; depth per row."""
    for r in range(r0, r1):
        z = (eye - h) / row_offset[r]
        shade = TOP_FACE_SHADE / (1.0 + DISTANCE_FALLOFF * z)
        rgb[c, r, 0] = min(255.0, red * shade)
        rgb[c, r, 1] = min(255.0, green * shade)
        rgb[c, r, 2] = min(255.0, blue * shade)
        depth[c, r] = min(z, max_depth) / max_depth


@_jit_inline
def _floor_tile(ix, iz, origin_x, origin_z, inv_cell):
    """Parity of the 0.5 m floor tile of a cell (tiles are whole 5 cm cells: one test per cell)."""
    return (int((origin_x + (ix + 0.5) / inv_cell + _TILE_OFFSET_M) * 2.0)
            + int((origin_z + (iz + 0.5) / inv_cell + _TILE_OFFSET_M) * 2.0)) & 1


@_jit
def _cast_column(c, dx, dz, grid, colors, camera, lens, tables, scratch, want_semantic):
    """DDA of one ray (direction (dx, dz) with unit forward component: t is planar depth), front to back."""
    kind, room, obj, height, origin_x, origin_z, inv_cell = grid
    wall_rgb, obj_rgb = colors
    cam_x, cam_z, eye, ceiling_y, _, _ = camera
    _, row_offset, focal, max_depth = lens
    row_depth, floor_rows, ceiling_rows = tables
    rgb, depth, semantic = scratch
    n_rows = rgb.shape[1]
    grid_rows, grid_cols = kind.shape
    gx0, gz0 = (cam_x - origin_x) * inv_cell, (cam_z - origin_z) * inv_cell
    ix, iz = int(math.floor(gx0)), int(math.floor(gz0))
    step_x = 1 if dx > 0.0 else -1
    step_z = 1 if dz > 0.0 else -1
    vx, vz = abs(dx) * inv_cell, abs(dz) * inv_cell  # cells crossed per unit of t
    t_delta_x = 1.0 / vx if vx > 1e-12 else 1e30
    t_delta_z = 1.0 / vz if vz > 1e-12 else 1e30
    t_max_x = ((ix + 1 - gx0) if dx > 0.0 else (gx0 - ix)) * t_delta_x
    t_max_z = ((iz + 1 - gz0) if dz > 0.0 else (gz0 - iz)) * t_delta_z
    t_in = 1e-4
    floor_row_in = n_rows  # first row of the floor seen at t_in (carried over: one division per cell)
    x_face = True
    ytop = n_rows  # rows [ytop, n_rows) of this column are drawn: everything further shows above them
    cur_room = 0  # room of the last floor cell crossed: walls take its colour
    while ytop > 0:
        inside = 0 <= ix < grid_cols and 0 <= iz < grid_rows
        k = kind[iz, ix] if inside else 0
        t_out = min(t_max_x, t_max_z)
        floor_row_out = _row_of(eye, 0.0, t_out, n_rows, focal)
        if inside and (k == _FLOOR or k == _DOOR):  # noqa: SIM109 - plain compares in the numba hot loop
            if room[iz, ix] >= 0:
                cur_room = room[iz, ix]
            colours = floor_rows[cur_room, _floor_tile(ix, iz, origin_x, origin_z, inv_cell)]
            _floor_span(rgb, depth, c, floor_row_out, min(ytop, floor_row_in), colours, row_depth)
            ytop = min(ytop, floor_row_out)
        elif inside and k == _OBJECT:
            o = obj[iz, ix]
            h = height[iz, ix]
            red, green, blue = obj_rgb[o, 0], obj_rgb[o, 1], obj_rgb[o, 2]
            face_top = _row_of(eye, h, t_in, n_rows, focal)
            stop = min(ytop, floor_row_in)
            face_shade = (1.0 if x_face else Z_FACE_SHADE) / (1.0 + DISTANCE_FALLOFF * t_in)
            _fill(rgb, depth, c, face_top, stop, red, green, blue, face_shade, min(t_in, max_depth) / max_depth)
            if want_semantic and face_top < stop:
                semantic[c, face_top:stop] = o + 1
            ytop = min(ytop, face_top)
            if h < eye:  # the top of a low piece shows between its entry and exit distances
                top = _row_of(eye, h, t_out, n_rows, focal)
                _top_face(rgb, depth, c, top, ytop, red, green, blue, eye, h, row_offset, max_depth)
                if want_semantic and top < ytop:
                    semantic[c, top:ytop] = o + 1
                ytop = min(ytop, top)
        else:  # a wall (or outside the house): its face, then ceiling above it; the ray ends here
            face_top = _row_of(eye, ceiling_y, t_in, n_rows, focal)
            face_shade = (1.0 if x_face else Z_FACE_SHADE) / (1.0 + DISTANCE_FALLOFF * t_in)
            _fill(rgb, depth, c, face_top, min(ytop, floor_row_in), wall_rgb[cur_room, 0], wall_rgb[cur_room, 1],
                  wall_rgb[cur_room, 2], face_shade, min(t_in, max_depth) / max_depth)
            _floor_span(rgb, depth, c, 0, min(ytop, face_top), ceiling_rows, row_depth)
            return
        t_in = t_out
        floor_row_in = floor_row_out
        if t_max_x < t_max_z:
            t_max_x += t_delta_x
            ix += step_x
            x_face = True
        else:
            t_max_z += t_delta_z
            iz += step_z
            x_face = False


def empty_tables(n_rows: int, n_rooms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row_depth, floor_rows, ceiling_rows) buffers for row_tables."""
    return (np.zeros(n_rows, np.float32),
            np.zeros((n_rooms, 2, n_rows, 3), np.uint8), np.zeros((n_rows, 3), np.uint8))
