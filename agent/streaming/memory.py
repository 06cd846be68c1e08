"""Stored per-frame pooled features (the slow memory) and the history-frame rule.

Every frame the agent encodes is kept as its pooled tokens (P, hidden) keyed by its env step, so a
window boundary builds the memory tokens from stored features and never runs the vision tower again.
Only the ORIGINAL scheme (kept for comparison) also stores the pixels, to re-encode them as the
public StreamVLN code does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from agent.streaming.voxel import CameraModel, grid_side, token_world_points, voxel_keep_masks
from rollout.dialogue import history_steps


@dataclass
class StoredFrame:
    step: int
    features: torch.Tensor  # (P, hidden) pooled projected tokens, on the model device
    geometry: tuple[np.ndarray, np.ndarray] | None = None  # world points (P, 3) + valid (P,)
    pixels: np.ndarray | None = None  # uint8 (H, W, 3), ORIGINAL scheme only


@dataclass
class MemoryTokens:
    features: torch.Tensor  # (M, hidden), history order then token order
    steps: list[int]  # the stored step used for each history frame
    pruned_fraction: float  # 0.0 when pruning is off
    notes: list[str] = field(default_factory=list)


class FrameBank:
    """The frames a session has encoded, by step."""

    def __init__(self, camera: CameraModel, keep_pixels: bool):
        self.camera = camera
        self.keep_pixels = keep_pixels
        self.frames: dict[int, StoredFrame] = {}

    def add(self, step: int, features: torch.Tensor, rgb: np.ndarray,
            depth: np.ndarray | None, pose: np.ndarray | None) -> list[str]:
        """Store a frame's features (and geometry for pruning when depth + pose are given)."""
        notes: list[str] = []
        geometry = None
        side = grid_side(features.shape[0])
        if pose is not None and depth is None:
            notes.append("pruning off for this frame: pose without depth")
        elif depth is not None and pose is None:
            notes.append("pruning off for this frame: depth without pose")
        elif depth is not None and side is None:
            notes.append(f"pruning off: {features.shape[0]} tokens per frame is not a square grid")
        elif depth is not None:
            geometry = token_world_points(depth, pose, side, self.camera)
        pixels = rgb.copy() if self.keep_pixels else None
        self.frames[step] = StoredFrame(step, features, geometry, pixels)
        return notes

    def nearest_at_or_before(self, step: int) -> StoredFrame:
        """The stored frame for `step`, or the latest one before it (frames exist at call steps only)."""
        candidates = [s for s in self.frames if s <= step]
        if not candidates:
            raise KeyError(f"no stored frame at or before step {step}")
        return self.frames[max(candidates)]

    def history_frames(self, start: int, num_history: int) -> list[StoredFrame]:
        chosen: list[StoredFrame] = []
        for step in history_steps(start, num_history):
            frame = self.nearest_at_or_before(step)
            if not chosen or chosen[-1].step != frame.step:
                chosen.append(frame)
        return chosen

    def memory_tokens(self, start: int, num_history: int, voxel_size_m: float | None) -> MemoryTokens:
        """Memory for a window starting at `start`: the stored features of the history frames,
        optionally voxel-pruned (voxel_size_m=None: pruning off)."""
        frames = self.history_frames(start, num_history)
        features = [frame.features for frame in frames]
        steps = [frame.step for frame in frames]
        if voxel_size_m is None:
            return MemoryTokens(torch.cat(features), steps, 0.0)
        notes = []
        if any(frame.geometry is None for frame in frames):
            notes.append("pruning partial: some memory frames lack depth + pose (their tokens are kept)")
        masks = voxel_keep_masks([frame.geometry for frame in frames], voxel_size_m)
        kept = [feat if mask is None else feat[torch.as_tensor(mask, device=feat.device)]
                for feat, mask in zip(features, masks)]
        total = sum(feat.shape[0] for feat in features)
        remaining = sum(feat.shape[0] for feat in kept)
        return MemoryTokens(torch.cat(kept), steps, 1.0 - remaining / total, notes)
