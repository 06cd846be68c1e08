"""The slow memory of a training sample uses exactly the frames the streaming agent keeps.

The agent sees one frame per model call (every num_future_steps steps) and builds a window's memory
from those (agent/streaming/memory.py FrameBank.history_frames). A training sample whose memory held
frames between two calls would train on a context the agent can never reproduce.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rollout_fixtures import make_labels, step_frame, step_of

from agent.streaming.memory import FrameBank
from agent.streaming.voxel import CameraModel
from rollout.samples import SampleConfig, build_nav_sample, window_starts


def agent_memory_steps(start: int, config: SampleConfig) -> list[int]:
    """The steps of the memory frames the agent uses at a window starting at `start`."""
    bank = FrameBank(CameraModel(hfov_deg=90.0, camera_height_m=1.25, max_depth_m=10.0), keep_pixels=False)
    for call_step in range(0, start, config.num_future_steps):  # full chunks: one call every N steps
        bank.add(call_step, torch.zeros(4, 2), step_frame(call_step, 8), None, None)
    return [frame.step for frame in bank.history_frames(start, config.num_history)]


@pytest.mark.parametrize("num_frames, num_future_steps, num_history", [(16, 4, 8), (32, 4, 8), (12, 4, 8), (8, 2, 8)])
def test_sample_memory_equals_the_agents_memory(num_frames, num_future_steps, num_history):
    config = SampleConfig(num_frames=num_frames, num_future_steps=num_future_steps, num_history=num_history)
    labels = make_labels(5 * num_frames + 3)
    for start in window_starts(len(labels), config)[1:]:
        sample = build_nav_sample(lambda steps: np.stack([step_frame(s, 8) for s in steps]), "go to the kitchen",
                                  labels, start, config, episode_key="ep")
        memory = sample.time_ids[: sample.num_memory].tolist()
        assert memory == agent_memory_steps(start, config), f"window {start}"
        assert [step_of(frame) for frame in sample.images[: sample.num_memory]] == [step_of(step_frame(s, 8)) for s in memory]
        assert all(step % num_future_steps == 0 for step in memory)


def test_default_recipe_memory_is_unchanged():
    # StreamVLN's defaults (32 frames, 4 future steps, 8 history) keep their 8 evenly spaced frames.
    config = SampleConfig()
    labels = make_labels(200)
    for start in (32, 64, 96, 160):
        sample = build_nav_sample(lambda steps: np.stack([step_frame(s, 8) for s in steps]), "go",
                                  labels, start, config, episode_key="ep")
        assert sample.time_ids[: sample.num_memory].tolist() == list(range(0, start, start // 8))
