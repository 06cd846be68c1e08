"""The server's SessionEngine over the streaming agent, and the env loop helper."""

from __future__ import annotations

import numpy as np
import pytest
from streaming_support import always_forward, random_frame, tiny_model, tiny_processor

from agent.serving.engine import ActRequest, SessionEngine
from agent.streaming import StreamingAgent, StreamingConfig
from agent.streaming.engine import StreamingEngine
from agent.streaming.loop import run_episode
from envs.plane_backend import PlaneBackend, plane_episodes
from envs.task import TaskConfig, VLNTask


def make_engine(**kwargs) -> StreamingEngine:
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=4, max_context_tokens=400)
    return StreamingEngine(StreamingAgent(tiny_model(), tiny_processor(), config), **kwargs)


def test_engine_serves_sessions_in_one_batched_call():
    engine = make_engine(max_sessions=2)
    assert isinstance(engine, SessionEngine)
    assert engine.open("a", "go to the kitchen").warnings == []
    info = engine.open("b", " ".join(["walk past the sofa"] * 200))
    assert info.warnings and "truncated" in info.warnings[0]
    with pytest.raises(ValueError, match="2 sessions"):
        engine.open("c", "find the bed")
    rng = np.random.default_rng(0)
    results = engine.act([ActRequest("a", random_frame(rng)),
                          ActRequest("b", random_frame(rng, (48, 48)), depth=None, pose=np.array([0, 0, 0, 0, 0, 0, 1.0]))])
    assert len(results) == 2
    for result in results:
        assert 1 <= len(result.actions) <= 4 and all(a in (0, 1, 2, 3) for a in result.actions)
        assert {"encode", "prefill", "generate", "total"} <= set(result.timings_ms)
    assert engine.stats("a")["calls"] == 1
    with pytest.raises(KeyError, match="zzz"):
        engine.act([ActRequest("zzz", random_frame(rng))])
    engine.close("a")
    engine.open("c", "find the bed")  # a slot is free again
    engine.open("b", "find the bed")  # reopening resets the session
    assert engine.stats("b")["calls"] == 0


def test_run_episode_executes_chunks_one_action_per_step(monkeypatch):
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=4, voxel_pruning=True)
    agent = StreamingAgent(tiny_model(), tiny_processor(), config)
    always_forward(agent, monkeypatch)
    task = VLNTask(PlaneBackend(), TaskConfig(max_steps=18))
    run, policy = run_episode(agent, task, plane_episodes(1)[0])
    assert run.actions == [1] * 18  # truncated by the step limit
    assert len(policy.calls) == 5  # ceil(18 / 4) model calls, one per chunk
    assert sum(call.window_start for call in policy.calls) == 2  # steps 8 and 16
    assert policy.session.stats.pruned_fractions  # plane frames carry depth + pose
