"""Grid helpers shared by the generator's checks: disk erosion and 4-connected component labels."""

from __future__ import annotations

import numba
import numpy as np


def erode_disk(mask: np.ndarray, radius_cells: int) -> np.ndarray:
    """Cells of `mask` whose whole disk of `radius_cells` lies inside `mask` (outside the array = False)."""
    if radius_cells <= 0:
        return mask.copy()
    rows, cols = mask.shape
    pad = radius_cells
    padded = np.zeros((rows + 2 * pad, cols + 2 * pad), dtype=bool)
    padded[pad:pad + rows, pad:pad + cols] = mask
    out = mask.copy()
    for dr in range(-pad, pad + 1):
        for dc in range(-pad, pad + 1):
            if dr * dr + dc * dc <= radius_cells * radius_cells:
                out &= padded[pad + dr:pad + dr + rows, pad + dc:pad + dc + cols]
    return out


@numba.njit(cache=True, nogil=True)
def _label_4connected(mask: np.ndarray, labels: np.ndarray) -> int:
    rows, cols = mask.shape
    stack = np.empty(rows * cols, dtype=np.int64)
    count = 0
    for start in range(rows * cols):
        r0, c0 = start // cols, start % cols
        if not mask[r0, c0] or labels[r0, c0] >= 0:
            continue
        labels[r0, c0] = count
        top = 0
        stack[top] = start
        top += 1
        while top > 0:
            top -= 1
            cell = stack[top]
            r, c = cell // cols, cell % cols
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < rows and 0 <= cc < cols and mask[rr, cc] and labels[rr, cc] < 0:
                    labels[rr, cc] = count
                    stack[top] = rr * cols + cc
                    top += 1
        count += 1
    return count


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels int32 with -1 off the mask, number of 4-connected components)."""
    labels = np.full(mask.shape, -1, dtype=np.int32)
    count = _label_4connected(np.ascontiguousarray(mask, dtype=np.bool_), labels)
    return labels, int(count)
