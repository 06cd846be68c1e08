"""Loading still images and frame folders ("videos") as uint8 arrays for QA samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rollout.streamvln_layout import natural_key

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def load_image(path: Path, size: int | None) -> np.ndarray:
    """uint8 (H, W, 3); resized to (size, size) when size is given (draft mode for JPEG)."""
    with Image.open(path) as image:
        if size is not None:
            image.draft("RGB", (size, size))
        image = image.convert("RGB")
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def video_frame_paths(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name)
    )


def sample_indices(total: int, count: int) -> np.ndarray:
    """count frame indices evenly spread over [0, total) (all of them if total <= count)."""
    if total <= count:
        return np.arange(total)
    return np.round(np.linspace(0, total - 1, count)).astype(np.int64)


def load_video(folder: Path, num_frames: int, size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 (N, H, W, 3), their indices in the folder) for a folder of frames."""
    paths = video_frame_paths(folder)
    if not paths:
        raise ValueError(f"video folder {folder} has no image frames")
    indices = sample_indices(len(paths), num_frames)
    frames = np.stack([load_image(paths[i], size) for i in indices])
    return frames, indices
