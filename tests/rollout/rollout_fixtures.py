"""Hand-made trajectories whose frames encode their step, so tests can see which frames were used."""

from __future__ import annotations

import numpy as np

from rollout.records import Trajectory


def step_frame(step: int, size: int = 32) -> np.ndarray:
    """A flat frame whose red channel is 3 * step (JPEG keeps flat colours within +-2)."""
    frame = np.zeros((size, size, 3), dtype=np.uint8)
    frame[..., 0] = (3 * step) % 256
    frame[..., 1] = 128
    return frame


def step_of(frame: np.ndarray) -> int:
    return int(round(float(frame[..., 0].mean()) / 3.0))


def make_labels(num_steps: int, prefix: tuple[int, ...] = ()) -> np.ndarray:
    """prefix, then a forward/left/right pattern, ending with STOP."""
    pattern = [1, 1, 2, 1, 3, 1]
    body = [pattern[i % len(pattern)] for i in range(num_steps - 1 - len(prefix))]
    return np.asarray(list(prefix) + body + [0], dtype=np.int8)


def make_trajectory(
    num_steps: int = 40,
    episode_id: str = "ep0",
    policy_version: int = 0,
    source: str = "expert",
    size: int = 32,
    instructions: tuple[str, ...] = ("walk to the kitchen and stop by the red sofa",),
    with_depth: bool = True,
) -> Trajectory:
    rgb = np.stack([step_frame(step, size) for step in range(num_steps)])
    depth = np.linspace(0, 1, num_steps * size * size, dtype=np.float32).reshape(num_steps, size, size, 1)
    poses = np.tile(np.arange(7, dtype=np.float32), (num_steps, 1)) + np.arange(num_steps, dtype=np.float32)[:, None]
    return Trajectory(
        episode={"episode_id": episode_id, "scene_id": "procedural/house_000001", "start_position": [0.0, 0.0, 0.0]},
        instructions=instructions,
        rgb=rgb,
        label_actions=make_labels(num_steps),
        depth=depth if with_depth else None,
        poses=poses,
        policy_version=policy_version,
        metrics={"success": 1.0, "spl": 0.5},
        source=source,
    )


