"""2D pooling of each frame's patch grid (LLaVA-Video's spatial pooling of projected SigLIP tokens)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POOLERS = {
    "bilinear": lambda x, size: F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False),
    "avg": lambda x, size: F.adaptive_avg_pool2d(x, size),
    "max": lambda x, size: F.adaptive_max_pool2d(x, size),
}


def pool_frame_tokens(tokens: torch.Tensor, mode: str, grid: int) -> torch.Tensor:
    """(N, n*n, D) patch tokens of n x n grids -> (N, grid*grid, D), pooled per frame in row-major order.

    bilinear interpolates to the target grid (LLaVA-Video: ceil(n / 2), 27 -> 14); avg / max pool
    adaptively, which equals kernel-2 stride-2 pooling when n is even and grid = n / 2.
    """
    if mode not in POOLERS:
        raise ValueError(f"pooling mode {mode!r} is not one of {sorted(POOLERS)}")
    frames, count, dim = tokens.shape
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{count} tokens per frame do not form a square patch grid")
    if grid == side:
        return tokens
    grid_first = tokens.transpose(1, 2).reshape(frames, dim, side, side)
    pooled = POOLERS[mode](grid_first, grid)
    return pooled.flatten(2).transpose(1, 2)
