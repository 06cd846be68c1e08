"""CUDA-only: the decode steps replayed as a CUDA graph give the logits of a full recompute."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streaming_support import FOUR_ACTIONS_SEED, random_frame, tiny_model, tiny_processor

from agent.streaming import Observation, StreamingAgent, StreamingConfig
from agent.streaming.check import max_abs_logit_diff


@pytest.mark.gpu
def test_cuda_graph_decode_matches_full_recompute():
    model = tiny_model(FOUR_ACTIONS_SEED).to("cuda")
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=4, decode_graph=True)
    graphed = StreamingAgent(model, tiny_processor(), config)
    eager = StreamingAgent(model, tiny_processor(), StreamingConfig(num_frames=8, num_future_steps=4, num_history=4))
    a, b = graphed.open("go to the kitchen"), eager.open("go to the kitchen")
    rng = np.random.default_rng(0)
    for _ in range(6):
        frame = random_frame(rng)
        out_a, out_b = graphed.act(a, frame), eager.act(b, frame)
        assert out_a.actions == out_b.actions
        assert max_abs_logit_diff(graphed, a, out_a)["allowed"] < 1e-3
    assert a.stats.windows >= 2
    assert graphed.graphs[1].graph is not None  # a captured CUDA graph did the decode steps
    prefills = graphed.graphs[1].prefills
    assert prefills and all(p.graph is not None for p in prefills.values())  # and the turn prefills
    assert not graphed.graph_errors


@pytest.mark.gpu
def test_cuda_graph_batched_decode_matches_single_sessions():
    model = tiny_model(FOUR_ACTIONS_SEED).to("cuda")
    make = lambda graph: StreamingAgent(model, tiny_processor(), StreamingConfig(  # noqa: E731
        num_frames=8, num_future_steps=4, num_history=4, decode_graph=graph))
    batched, single = make(True), make(False)
    texts = ["go to the kitchen", "find the red chair next to the bed in the bedroom", "stop at the door"]
    ours, refs = [batched.open(t) for t in texts], [single.open(t) for t in texts]
    rng = np.random.default_rng(0)
    for _ in range(5):
        frames = [random_frame(rng) for _ in texts]
        outs = batched.act_batch(ours, [Observation(f) for f in frames])
        for out, ref, frame, session in zip(outs, refs, frames, ours):
            expected = single.act(ref, frame)
            assert out.actions == expected.actions
            assert max_abs_logit_diff(batched, session, out)["allowed"] < 1e-3
    assert batched.graphs[3].graph is not None and not batched.graph_errors


@pytest.mark.gpu
def test_cuda_graph_encoder_matches_encode_frames():
    from agent.streaming.graph import EncoderGraphs

    model = tiny_model(FOUR_ACTIONS_SEED).to("cuda")
    graphs = EncoderGraphs(model)
    rng = np.random.default_rng(0)
    for count in (1, 3, 1):
        frames = torch.from_numpy(np.stack([random_frame(rng, (96, 128)) for _ in range(count)])).to("cuda")
        torch.testing.assert_close(graphs(frames), model.encode_frames(frames), atol=1e-4, rtol=1e-4)
    assert len(graphs.graphs) == 2  # one graph per input shape
