"""Speculative (draft-and-verify) decoding gives greedy decoding's actions and logits, in fewer passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streaming_support import (
    FOUR_ACTIONS_SEED,
    MIXED_SEED,
    random_frame,
    staggered_batch_vs_single,
    tiny_model,
    tiny_processor,
)

import agent.streaming.agent as agent_module
import agent.streaming.speculative as speculative_module
from agent.streaming import Decoding, DraftPolicy, Observation, StreamingAgent, StreamingConfig
from agent.streaming.check import max_abs_logit_diff
from agent.streaming.speculative import draft_actions
from envs.actions import Action

INSTRUCTION = "walk past the red sofa into the kitchen and stop next to the white fridge"
FORWARD, LEFT, RIGHT, STOP = (int(a) for a in (Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT, Action.STOP))


def make_agent(seed: int, decoding: Decoding, **overrides) -> StreamingAgent:
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=4, decoding=decoding, **overrides)
    return StreamingAgent(tiny_model(seed), tiny_processor(), config)


def prefer(agent: StreamingAgent, action: int, monkeypatch) -> None:
    """A 'trained-like' head: the real logits plus a margin for one action, so greedy picks it every step
    while the logits still depend on the hidden states (the comparisons below stay meaningful)."""
    column = agent.prompt.allowed_ids.index(agent.prompt.symbol_ids[action])
    real = agent.text_model.allowed_logits

    def biased(hidden: torch.Tensor) -> torch.Tensor:
        logits = real(hidden).clone()
        logits[..., column] += 20.0
        return logits

    monkeypatch.setattr(agent.text_model, "allowed_logits", biased)


def episode(agent: StreamingAgent, calls: int = 7):
    session = agent.open(INSTRUCTION)
    rng = np.random.default_rng(0)
    outputs = []
    for _ in range(calls):
        out = agent.act(session, random_frame(rng))
        assert max_abs_logit_diff(agent, session, out)["allowed"] < 1e-4  # against a full recompute
        outputs.append(out)
    return session, outputs


def assert_same_decoding(ours, reference) -> None:
    (session, outputs), (ref_session, ref_outputs) = ours, reference
    assert [o.actions for o in outputs] == [o.actions for o in ref_outputs]
    for a, b in zip(outputs, ref_outputs):
        assert a.decoded.tokens == b.decoded.tokens and a.decoded.fed == b.decoded.fed
        torch.testing.assert_close(torch.stack(a.decoded.logits), torch.stack(b.decoded.logits), atol=1e-4, rtol=0)
    assert session.cache.length == ref_session.cache.length
    for (k, v), (rk, rv) in zip(session.cache.layer_tensors(), ref_session.cache.layer_tensors()):
        torch.testing.assert_close(k, rk, atol=1e-4, rtol=0)
        torch.testing.assert_close(v, rv, atol=1e-4, rtol=0)


def test_draft_policies():
    assert draft_actions(DraftPolicy.REPEAT_LAST, [FORWARD, LEFT], 3) == [LEFT] * 3
    assert draft_actions(DraftPolicy.PREVIOUS, [FORWARD, LEFT], 3) == [FORWARD, LEFT, LEFT]
    assert draft_actions(DraftPolicy.PREVIOUS, [RIGHT, FORWARD, LEFT, LEFT], 3) == [RIGHT, FORWARD, LEFT]
    assert draft_actions(DraftPolicy.REPEAT_LAST, [], 2) == [FORWARD] * 2  # first call
    assert draft_actions(DraftPolicy.REPEAT_LAST, [RIGHT, STOP], 2) == [RIGHT] * 2  # STOP is never drafted


def test_config_rejects_unknown_decoding():
    with pytest.raises(ValueError, match="decoding"):
        StreamingConfig(decoding="beam").validate()
    with pytest.raises(ValueError, match="draft"):
        StreamingConfig(draft="oracle").validate()
    assert StreamingConfig(decoding="greedy", draft="previous").validate().draft is DraftPolicy.PREVIOUS


@pytest.mark.parametrize(("seed", "decode_graph", "draft"), [
    (FOUR_ACTIONS_SEED, False, DraftPolicy.REPEAT_LAST), (MIXED_SEED, False, DraftPolicy.PREVIOUS),
    (MIXED_SEED, True, DraftPolicy.REPEAT_LAST)])
def test_random_weights_decode_as_greedy_across_windows(seed, decode_graph, draft):
    ours = episode(make_agent(seed, Decoding.SPECULATIVE, decode_graph=decode_graph, draft=draft))
    reference = episode(make_agent(seed, Decoding.GREEDY, decode_graph=decode_graph))
    assert_same_decoding(ours, reference)
    assert sum(o.window_start for o in ours[1]) >= 1
    stats, ref_stats = ours[0].stats, reference[0].stats
    assert stats.drafted >= 3 * stats.calls and ref_stats.drafted == 0  # + re-drafts after a rejection
    assert stats.passes == ref_stats.passes - stats.accepted  # every accepted draft saved one pass


def preferred_episodes(decoding: Decoding, action: int, decode_graph: bool, monkeypatch):
    """An episode with `decoding` and one greedy, both heads preferring `action`: checked to decode the
    same (every chunk `action` x 4). Returns (agent, ours, reference)."""
    drafting = make_agent(FOUR_ACTIONS_SEED, decoding, decode_graph=decode_graph)
    greedy = make_agent(FOUR_ACTIONS_SEED, Decoding.GREEDY, decode_graph=decode_graph)
    prefer(drafting, action, monkeypatch)
    prefer(greedy, action, monkeypatch)
    ours, reference = episode(drafting), episode(greedy)
    assert_same_decoding(ours, reference)
    assert all(o.actions == [action] * 4 for o in ours[1])
    return drafting, ours, reference


@pytest.mark.parametrize("decode_graph", [False, True])
def test_right_drafts_make_a_call_one_pass(decode_graph, monkeypatch):
    spec, ours, reference = preferred_episodes(Decoding.SPECULATIVE, FORWARD, decode_graph, monkeypatch)
    assert ours[0].stats.passes == ours[0].stats.calls  # one weight pass per call
    assert reference[0].stats.passes == 4 * reference[0].stats.calls
    assert ours[0].stats.as_dict()["acceptance_rate"] == 1.0
    # End marker folding: neither the 4th symbol nor the end marker cost a pass; they wait in `pending`
    # and are prefilled with the next turn, so the context is the canonical training answer.
    session = ours[0]
    canonical = spec.prompt.answer_ids([FORWARD] * 4)
    assert session.cache.length == session.turn_end + 3 and session.pending == canonical[3:]
    assert spec.prompt.end_id in session.pending and session.window[-1].ids == canonical


@pytest.mark.parametrize(("decode_graph", "redraft_right"), [(False, False), (True, False), (False, True), (True, True)])
def test_wrong_drafts_are_rolled_back_without_leaking(decode_graph, redraft_right, monkeypatch):
    # Greedy always picks TURN_LEFT; every first draft is TURN_RIGHT, so it is rejected and its K/V
    # (written to the cache or the static scratch) must not reach any later step. The re-drafts after
    # the rejection are either right (the pick repeated: TURN_LEFT) or wrong again (TURN_RIGHT).
    spec = make_agent(FOUR_ACTIONS_SEED, Decoding.SPECULATIVE, decode_graph=decode_graph)
    greedy = make_agent(FOUR_ACTIONS_SEED, Decoding.GREEDY, decode_graph=decode_graph)
    prefer(spec, LEFT, monkeypatch)
    prefer(greedy, LEFT, monkeypatch)
    monkeypatch.setattr(agent_module, "draft_actions", lambda policy, previous, count: [RIGHT] * count)
    if not redraft_right:
        right = spec.prompt.symbol_ids[RIGHT]
        monkeypatch.setattr(speculative_module, "redraft_tokens", lambda pick, count: [right] * count)
    ours, reference = episode(spec), episode(greedy)
    assert_same_decoding(ours, reference)
    stats = ours[0].stats
    if redraft_right:  # round 1 rejects all 3 drafts; round 2 feeds LEFT + 2 right re-drafts
        assert stats.accepted == 2 * stats.calls and stats.passes == 2 * stats.calls
    else:
        assert stats.accepted == 0 and stats.passes == reference[0].stats.passes


@pytest.mark.parametrize("decode_graph", [False, True])
def test_batched_sessions_accept_ragged_drafts(decode_graph):
    single = make_agent(MIXED_SEED, Decoding.GREEDY)
    batched = make_agent(MIXED_SEED, Decoding.SPECULATIVE, decode_graph=decode_graph)
    per_call = staggered_batch_vs_single(batched, single)
    assert any(len({o.decoded.accepted for o in outs}) > 1 for outs in per_call)  # rows accepted different numbers


@pytest.mark.gpu
@pytest.mark.parametrize("decoding", [Decoding.SPECULATIVE, Decoding.TREE])
@pytest.mark.parametrize("rows", [1, 3])
def test_cuda_graph_drafts_match_greedy(rows, decoding):
    model = tiny_model(FOUR_ACTIONS_SEED if decoding is Decoding.SPECULATIVE else MIXED_SEED).to("cuda")
    make = lambda decoding: StreamingAgent(model, tiny_processor(), StreamingConfig(  # noqa: E731
        num_frames=8, num_future_steps=4, num_history=4, decode_graph=True, decoding=decoding))
    drafting, greedy = make(decoding), make(Decoding.GREEDY)
    texts = ["go to the kitchen", "find the red chair next to the bed in the bedroom", "stop at the door"][:rows]
    ours, refs = [drafting.open(t) for t in texts], [greedy.open(t) for t in texts]
    rng = np.random.default_rng(0)
    for _ in range(10):  # crosses a window boundary
        observations = [Observation(random_frame(rng)) for _ in texts]
        outs, expected = drafting.act_batch(ours, observations), greedy.act_batch(refs, observations)
        for out, ref, session in zip(outs, expected, ours):
            assert out.actions == ref.actions
            assert decoding is not Decoding.TREE or out.decoded.passes == 1
            torch.testing.assert_close(torch.stack(out.decoded.logits), torch.stack(ref.decoded.logits),
                                       atol=1e-3, rtol=0)
            assert max_abs_logit_diff(drafting, session, out)["allowed"] < 1e-3
    assert drafting.graphs[rows].graph is not None and not drafting.graph_errors
    assert sum(s.stats.passes for s in ours) < sum(s.stats.passes for s in refs)
