"""Bucketed scratch prefills (agent/streaming/prefill_graph.py): same results as the eager paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streaming_support import MIXED_SEED, random_frame, tiny_model, tiny_processor

from agent.streaming import Observation, StreamingAgent, StreamingConfig
from agent.streaming.cache import SessionCache, TextModel
from agent.streaming.check import max_abs_logit_diff
from agent.streaming.graph import GraphedDecoder, GraphStepper
from agent.streaming.prefill_graph import LONG_BUCKET, TURN_BUCKET, mask_fold, prefill_bucket


def test_prefill_bucket_rounds_turns_finely_and_long_segments_coarsely():
    assert prefill_bucket(1, 80) == TURN_BUCKET
    assert prefill_bucket(33, 80) == 48
    assert prefill_bucket(80, 80) == 80
    assert prefill_bucket(81, 80) == LONG_BUCKET
    assert prefill_bucket(LONG_BUCKET + 1, 80) == 2 * LONG_BUCKET


@pytest.mark.parametrize("gqa", [True, False])
def test_graphed_rows_prefill_matches_the_eager_rows_prefill(gqa):
    """Ragged rows (different cache lengths and turn lengths) padded to one bucket give the hidden
    states and scratch K/V of the eager batched prefill; with GQA the mask goes in pre-folded."""
    agent = StreamingAgent(tiny_model(MIXED_SEED), tiny_processor(), StreamingConfig(gqa_attention=gqa))
    text = TextModel(agent.model.language_model, [0, 1])
    assert (mask_fold(text) > 1) == gqa
    torch.manual_seed(0)
    hidden = text.config.hidden_size
    caches = []
    for past in (5, 11, 2):
        cache = SessionCache(text)
        cache.prefill(torch.randn(past, hidden))
        caches.append(cache)
    new = [torch.randn(count, hidden) for count in (7, 3, 9)]
    graphed = GraphedDecoder(text, 64, rows=3, use_graph=False, max_prefill=16)
    eager = GraphedDecoder(text, 64, rows=3, use_graph=False, max_prefill=0)
    assert graphed.prefill_graph([c.length for c in caches], [e.shape[0] for e in new]) is not None
    graphed.load(caches)
    eager.load(caches)
    ours, ref = graphed.prefill_rows(new), eager.prefill_rows(new)
    assert list(graphed.prefills) == [16] and not eager.prefills  # one bucketed width, padded rows
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert graphed.lengths == eager.lengths == [12, 14, 11]
    for row, length in enumerate(graphed.lengths):
        torch.testing.assert_close(graphed.keys_all[:, row, :, :length], eager.keys_all[:, row, :, :length],
                                   atol=1e-5, rtol=0)
    torch.testing.assert_close(graphed.mask, eager.mask)  # the same columns open afterwards


def test_rows_that_do_not_fit_a_bucket_run_eagerly():
    agent = StreamingAgent(tiny_model(MIXED_SEED), tiny_processor())
    text = TextModel(agent.model.language_model, [0])
    cache = SessionCache(text)
    cache.prefill(torch.randn(20, text.config.hidden_size))
    decoder = GraphedDecoder(text, 32, rows=1, use_graph=False, max_prefill=16, max_long=64)
    assert decoder.prefill_one(cache, torch.randn(10, text.config.hidden_size)) is None  # 20 + 16 > 32
    assert decoder.prefill_one(cache, torch.randn(65, text.config.hidden_size)) is None  # > max_long
    assert not decoder.prefills


def make_agent(decode_graph: bool, device: str = "cpu") -> StreamingAgent:
    # 8 memory frames of 16 tokens: a memory segment is longer than a turn (80 tokens), so a row
    # starting a window prefills its head alone.
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=8, decode_graph=decode_graph,
                             full_chunks=True)
    return StreamingAgent(tiny_model(MIXED_SEED).to(device), tiny_processor(), config)


def test_memory_heads_and_prefetch_go_through_the_scratch_graphs_with_equal_logits(monkeypatch):
    check_memory_heads_and_prefetch("cpu", 1e-4, monkeypatch)


@pytest.mark.gpu
def test_cuda_graphed_memory_heads_turns_and_prefetch_match(monkeypatch):
    """The same on CUDA with captured graphs (a capture must not disturb loaded rows)."""
    graphed = check_memory_heads_and_prefetch("cuda", 1e-3, monkeypatch)
    assert all(p.graph is not None for d in graphed.graphs.values() for p in d.prefills.values())
    assert not graphed.graph_errors


def check_memory_heads_and_prefetch(device: str, tolerance: float, monkeypatch) -> StreamingAgent:
    """Batched rounds whose rows start windows at different calls: a row's memory head goes to the
    one-row decoder, turns to the batched bucket, a prefetched window to the one-row long bucket; no
    call prefills a session cache eagerly, logits stay those of a full recompute and actions those
    of the eager agent."""
    rng = np.random.default_rng(1)
    graphed, eager = make_agent(True, device), make_agent(False, device)
    texts = ["go to the kitchen", "find the red chair next to the bed", "stop at the door"]
    ours, refs = [graphed.open(t) for t in texts], [eager.open(t) for t in texts]
    eager_prefills = []
    original = SessionCache.prefill

    def counting(cache, embeds):
        if cache.text_model is graphed.text_model:
            eager_prefills.append(embeds.shape[0])
        return original(cache, embeds)

    monkeypatch.setattr(SessionCache, "prefill", counting)
    heads = []
    original_head = GraphStepper._prefill_head
    monkeypatch.setattr(GraphStepper, "_prefill_head",
                        lambda stepper, cache, embeds: heads.append(1) or original_head(stepper, cache, embeds))
    first = random_frame(rng)  # stagger: windows start in different rounds
    graphed.act(ours[0], first)
    eager.act(refs[0], first)
    for _ in range(5):
        frames = [random_frame(rng) for _ in texts]
        outs = graphed.act_batch(ours, [Observation(f) for f in frames])
        refs_out = eager.act_batch(refs, [Observation(f) for f in frames])
        for out, ref, session in zip(outs, refs_out, ours):
            assert out.actions == ref.actions
            assert max_abs_logit_diff(graphed, session, out)["allowed"] < tolerance
    assert sum(s.stats.windows for s in ours) >= 6
    assert graphed.graphs[1].prefills and graphed.graphs[3].prefills
    assert all(w % TURN_BUCKET == 0 for w in graphed.graphs[3].prefills)
    session = ours[0]  # prefetch on the graph: the next boundary call prefills only its turn
    while not graphed.prefetch(session):
        graphed.act(session, random_frame(rng))
    long_widths = [w for w in graphed.graphs[1].prefills if w > graphed.graphs[1].max_prefill]
    assert long_widths and all(w % LONG_BUCKET == 0 for w in long_widths)
    out = graphed.act(session, random_frame(rng))
    assert out.window_start and max_abs_logit_diff(graphed, session, out)["allowed"] < tolerance
    assert eager_prefills == [] and len(heads) >= 2
    return graphed


def test_sessions_stay_in_their_scratch_rows_and_get_a_copy_before_reuse(monkeypatch):
    """store() leaves a session as a view of its scratch row: its next call loads nothing. Before another
    session takes the row, the first gets its own copy (same values) and still decodes correctly."""
    agent = make_agent(True)
    decoder = agent.graph_decoder(1)
    a, b = agent.open("go to the kitchen"), agent.open("find the red chair next to the bed")
    rng = np.random.default_rng(2)
    copies = []
    original = torch._foreach_copy_
    monkeypatch.setattr(torch, "_foreach_copy_", lambda targets, sources: copies.append(1) or original(targets, sources))
    in_place_calls = 0
    for _ in range(4):
        widths, copies[:] = len(decoder.prefills), []
        out = agent.act(a, random_frame(rng))
        assert decoder._holds(a.cache, 0) and max_abs_logit_diff(agent, a, out)["allowed"] < 1e-4
        if len(decoder.prefills) == widths:  # no new graph (whose capture evicts every row)
            in_place_calls += 1
            assert copies == []
    assert in_place_calls >= 1
    before = [t.clone() for t in a.cache.stacked()]
    agent.act(b, random_frame(rng))
    assert decoder._holds(b.cache, 0) and not decoder._holds(a.cache, 0)
    for kept, old in zip(a.cache.stacked(), before):
        torch.testing.assert_close(kept, old, atol=0, rtol=0)
    out = agent.act(a, random_frame(rng))
    assert max_abs_logit_diff(agent, a, out)["allowed"] < 1e-4
