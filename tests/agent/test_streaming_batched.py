"""Batched sessions at different steps (ragged caches) == the same sessions advanced one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streaming_support import (
    MIXED_SEED,
    assert_batched_matches_single,
    random_frame,
    tiny_model,
    tiny_processor,
)

from agent.streaming import Observation, StreamingAgent, StreamingConfig
from agent.streaming.check import max_abs_logit_diff

INSTRUCTIONS = [
    "go to the kitchen",
    "walk past the red sofa, turn right at the hallway and stop next to the white fridge in the kitchen",
    "find the bathroom",
]


def make_agent(seed: int, decode_graph: bool = False) -> StreamingAgent:
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=4, decode_graph=decode_graph)
    return StreamingAgent(tiny_model(seed), tiny_processor(), config)


@pytest.mark.parametrize("decode_graph", [False, True])
def test_batched_sessions_match_single_sessions(decode_graph):
    rng = np.random.default_rng(0)
    # Session i joins at call i, so caches differ in length and windows start at different calls.
    frames = [[random_frame(rng) for _ in range(6)] for _ in INSTRUCTIONS]
    # decode_graph on the CPU: batched decode steps on the static scratch (no CUDA graph capture).
    single, batched = make_agent(MIXED_SEED), make_agent(MIXED_SEED, decode_graph)
    singles = [single.open(text) for text in INSTRUCTIONS]
    batch = [batched.open(text) for text in INSTRUCTIONS]
    single_out = [[single.act(s, f) for f in fs[i:]] for i, (s, fs) in enumerate(zip(singles, frames))]
    batched_out = [[] for _ in INSTRUCTIONS]
    for call in range(6):
        active = [i for i in range(len(INSTRUCTIONS)) if call >= i]
        obs = [Observation(frames[i][call]) for i in active]
        for i, out in zip(active, batched.act_batch([batch[i] for i in active], obs)):
            batched_out[i].append(out)
            assert max_abs_logit_diff(batched, batch[i], out)["allowed"] < 1e-4
    assert sorted(batched.graphs) == ([1, 2, 3] if decode_graph else [])
    lengths = {s.cache.length for s in batch}
    assert len(lengths) == len(INSTRUCTIONS)  # genuinely ragged
    assert_batched_matches_single(batched_out, single_out, batch, singles)
    # The same turns whether batched or not; each call prefills at least its frame's pooled tokens.
    prefilled = [s.stats.prefilled_tokens for s in batch]
    assert prefilled == [s.stats.prefilled_tokens for s in singles]
    per_frame = batched.tokens_per_frame
    assert all(count >= (6 - i) * per_frame for i, count in enumerate(prefilled))
    for a, b in zip(batch, singles):
        torch.testing.assert_close(a.cache.layer_tensors()[1][0], b.cache.layer_tensors()[1][0], atol=1e-5, rtol=0)
