"""Voxel pruning of memory tokens from depth + pose; pruning off (with a note) without depth."""

from __future__ import annotations

import math

import numpy as np
import torch
from streaming_support import always_forward, random_frame, tiny_model, tiny_processor

from agent.streaming import StreamingAgent, StreamingConfig
from agent.streaming.check import max_abs_logit_diff
from agent.streaming.memory import FrameBank, history_steps
from agent.streaming.voxel import CameraModel, token_world_points, voxel_keep_masks
from envs.geometry import quat_from_yaw

CAMERA = CameraModel(hfov_deg=90.0, camera_height_m=1.25, max_depth_m=10.0)


def pose(x=0.0, z=0.0, yaw=0.0) -> np.ndarray:
    return np.concatenate([[x, 0.0, z], quat_from_yaw(yaw)])


def flat_depth(metres: float, size: int = 4) -> np.ndarray:
    return np.full((size, size, 1), metres / CAMERA.max_depth_m, dtype=np.float32)


def test_back_projection_follows_habitat_conventions():
    # 4x4 frame, 2x2 grid: the top-left cell centre is at pixel coordinate (1, 1), the image centre
    # at (2, 2), focal = 2 px at HFOV 90: at 2 m the cell centre is 1 m left of and 1 m above the axis.
    points, valid = token_world_points(flat_depth(2.0), pose(), side=2, camera=CAMERA)
    assert valid.all()
    np.testing.assert_allclose(points[0], [-1.0, 2.25, -2.0], atol=1e-9)
    np.testing.assert_allclose(points[3], [1.0, 0.25, -2.0], atol=1e-9)
    # Turned left by 90 degrees the camera looks along -X; its left side lies towards +Z.
    turned, _ = token_world_points(flat_depth(2.0), pose(x=1.0, yaw=math.pi / 2), side=2, camera=CAMERA)
    np.testing.assert_allclose(turned[0], [-1.0, 2.25, 1.0], atol=1e-9)
    # Depth 0 (no return) and 1 (beyond the clip) are invalid; cells sample pixels (1|3, 1|3).
    depth = flat_depth(2.0)
    depth[1, 1] = 0.0
    depth[3, 3] = 1.0
    depth[0, 0] = 0.0  # not a sampled pixel
    assert token_world_points(depth, pose(), 2, CAMERA)[1].tolist() == [False, True, True, False]


def test_tokens_covered_by_a_newer_frame_are_dropped_exactly():
    newer = token_world_points(flat_depth(2.0), pose(), 2, CAMERA)
    older_depth = flat_depth(2.0)
    older_depth[2:, :] = 6.0 / CAMERA.max_depth_m  # bottom cells see further: other voxels
    older = token_world_points(older_depth, pose(), 2, CAMERA)
    behind = token_world_points(flat_depth(2.0), pose(yaw=math.pi), 2, CAMERA)  # opposite view
    masks = voxel_keep_masks([behind, older, newer, None], voxel_size_m=0.5)
    assert masks[2].tolist() == [True] * 4  # the newest geometry covers nothing newer than itself
    assert masks[1].tolist() == [False, False, True, True]
    assert masks[0].tolist() == [True] * 4
    assert masks[3] is None


def test_frame_bank_memory_pruned_fraction_and_stored_features():
    bank = FrameBank(CAMERA, keep_pixels=False)
    hidden = 8
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    for step in range(4):  # the same view four times: only the newest memory frame survives
        bank.add(step, torch.full((4, hidden), float(step)), rgb, flat_depth(2.0), pose())
    memory = bank.memory_tokens(start=4, num_history=4, voxel_size_m=0.5)
    assert memory.steps == [0, 1, 2, 3]
    assert memory.pruned_fraction == 0.75
    assert memory.features.shape == (4, hidden) and (memory.features == 3.0).all()
    unpruned = bank.memory_tokens(start=4, num_history=4, voxel_size_m=None)
    assert unpruned.features.shape == (16, hidden) and unpruned.pruned_fraction == 0.0


def test_history_steps_follow_the_training_rule():
    # One rule for training and inference: rollout.dialogue.history_steps, used by both.
    assert history_steps(0, 8) == []
    assert history_steps(32, 8) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert history_steps(64, 8) == list(range(0, 64, 8))
    assert history_steps(4, 8) == [0, 1, 2, 3]


def test_agent_prunes_memory_and_notes_pose_without_depth(monkeypatch):
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=4, voxel_pruning=True)
    agent = StreamingAgent(tiny_model(), tiny_processor(), config)
    always_forward(agent, monkeypatch)  # 4 actions per call: calls at steps 0, 4, 8, ...
    session = agent.open("go to the kitchen")
    rng = np.random.default_rng(0)
    full = agent.tokens_per_frame
    out = agent.act(session, random_frame(rng), depth=np.full((32, 32, 1), 0.2, np.float32), pose=pose())
    assert not any("pruning" in note for note in out.notes)
    out = agent.act(session, random_frame(rng), pose=pose())  # pose without depth: pruning off for it
    assert any("pruning off" in note and "pose without depth" in note for note in out.notes)
    out = agent.act(session, random_frame(rng), depth=np.full((32, 32, 1), 0.2, np.float32), pose=pose())
    assert out.window_start
    # Memory = frames of steps 0 and 4; step 4 has no geometry (kept whole, covers nothing), so the
    # same view at step 0 is not covered by anything newer: nothing is pruned yet.
    assert session.stats.memory_tokens[-1] == 2 * full
    assert session.stats.pruned_fractions[-1] == 0.0
    assert max_abs_logit_diff(agent, session, out)["full_vocab_first_step"] < 1e-4
    for _ in range(2):
        out = agent.act(session, random_frame(rng), depth=np.full((32, 32, 1), 0.2, np.float32), pose=pose())
    # Memory = steps 0, 4, 8, 12; 0, 8 and 12 share one view, so 12 covers 0 and 8 entirely.
    assert out.window_start and session.stats.pruned_fractions[-1] == 0.5
    assert session.stats.memory_tokens[-1] == 2 * full
    assert any("pruning dropped" in note for note in out.notes)
    assert max_abs_logit_diff(agent, session, out)["full_vocab_first_step"] < 1e-4
