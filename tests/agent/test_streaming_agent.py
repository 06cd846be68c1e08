"""Streaming agent: cache equivalence with a full recompute, windows, decoding rules, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from streaming_support import FOUR_ACTIONS_SEED, MIXED_SEED, random_frame, tiny_model, tiny_processor

from agent.streaming import CacheScheme, StreamingAgent, StreamingConfig
from agent.streaming.check import max_abs_logit_diff

INSTRUCTION = "walk past the red sofa into the kitchen and stop next to the white fridge"


def make_agent(seed: int = FOUR_ACTIONS_SEED, **overrides) -> StreamingAgent:
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=4, **overrides)
    return StreamingAgent(tiny_model(seed), tiny_processor(), config)


def run_calls(agent, session, calls, seed=0, check=True):
    rng = np.random.default_rng(seed)
    outputs, diffs = [], []
    for _ in range(calls):
        out = agent.act(session, random_frame(rng))
        outputs.append(out)
        if check:
            diffs.append(max_abs_logit_diff(agent, session, out))
    return outputs, diffs


@pytest.mark.parametrize(("seed", "min_boundaries", "decode_graph"),
                         [(FOUR_ACTIONS_SEED, 3, False), (MIXED_SEED, 1, False), (FOUR_ACTIONS_SEED, 3, True)])
def test_streaming_logits_equal_full_recompute_across_window_boundaries(seed, min_boundaries, decode_graph):
    # decode_graph on the CPU runs the static-scratch decode path without capturing a CUDA graph.
    agent = make_agent(seed, decode_graph=decode_graph)
    session = agent.open(INSTRUCTION)
    outputs, diffs = run_calls(agent, session, calls=7)
    assert (1 in agent.graphs) == decode_graph  # the static-scratch decoder was used
    assert sum(out.window_start for out in outputs) >= min_boundaries
    for diff in diffs:
        assert diff["steps_compared"] >= 1
        assert diff["allowed"] < 1e-4
        assert diff["full_vocab_first_step"] < 1e-4


@pytest.mark.parametrize("scheme", [CacheScheme.ORIGINAL, CacheScheme.RECOMPUTE])
def test_other_schemes_decode_the_same_actions(scheme):
    ours = make_agent()
    other = make_agent(scheme=scheme)
    other.model.load_state_dict(ours.model.state_dict())
    other = StreamingAgent(other.model, tiny_processor(), other.config)
    a, b = ours.open(INSTRUCTION), other.open(INSTRUCTION)
    out_a, _ = run_calls(ours, a, calls=7, check=False)
    out_b, diffs = run_calls(other, b, calls=7)
    assert [o.actions for o in out_a] == [o.actions for o in out_b]
    for x, y in zip(out_a, out_b):
        torch.testing.assert_close(torch.stack(x.decoded.logits), torch.stack(y.decoded.logits), atol=1e-4, rtol=0)
    assert max(d["allowed"] for d in diffs) < 1e-4


def test_window_boundary_keeps_prefix_and_uses_stored_features():
    agent = make_agent()
    session = agent.open(INSTRUCTION)
    prefix_len = session.cache.prefix_length
    prefix_keys = session.cache.layer_tensors()[0][0][..., :prefix_len, :].clone()
    outputs, _ = run_calls(agent, session, calls=6, check=False)
    boundary_calls = [i for i, out in enumerate(outputs) if out.window_start]
    assert boundary_calls, "the run should cross a window boundary"
    # One vision-tower run per call, none for the memory (stored pooled features are reused).
    assert agent.model.encode_frames.frames == len(outputs) == agent.frames_encoded
    assert session.cache.prefix_length == prefix_len
    torch.testing.assert_close(session.cache.layer_tensors()[0][0][..., :prefix_len, :], prefix_keys)
    memory = session.window[0]
    assert memory.ids == tiny_processor().nav_memory_ids()
    stored = [session.bank.frames[s].features for s in sorted(session.bank.frames) if s < session.window_start]
    assert memory.visual.shape[0] == min(len(stored), 4) * agent.tokens_per_frame
    # The cache holds exactly prefix + the new window (old turns dropped).
    assert session.cache.length == sum(seg.length for seg in [session.prefix, *session.window]) - len(session.pending)


def test_original_scheme_reencodes_history_from_pixels():
    agent = make_agent(scheme=CacheScheme.ORIGINAL)
    session = agent.open(INSTRUCTION)
    outputs, _ = run_calls(agent, session, calls=6, check=False)
    boundaries = sum(out.window_start for out in outputs)
    assert boundaries >= 1
    assert agent.frames_encoded > len(outputs)  # history frames went through the tower again


def test_decoding_is_restricted_to_action_tokens():
    agent = make_agent()
    allowed = set(tiny_processor().action_token_ids)
    session = agent.open(INSTRUCTION)
    outputs, _ = run_calls(agent, session, calls=6, check=False)
    end_id = agent.prompt.end_id
    full_argmax_outside = 0
    for out in outputs:
        tokens = out.decoded.tokens
        assert set(tokens) <= allowed
        assert tokens[-1] == end_id and end_id not in tokens[:-1]
        assert len(tokens) - 1 <= 4
        assert out.decoded.fed == len(out.decoded.logits) - 1  # the last step's token is never fed
        if len(tokens) - 1 == 4 or agent.prompt.stop_id in tokens:  # a forced end costs no forward
            assert len(out.decoded.logits) == len(tokens) - 1
        if agent.prompt.stop_id in tokens:
            assert tokens.index(agent.prompt.stop_id) == len(tokens) - 2  # STOP is followed by the end
        full = agent.text_model.full_logits(out.first_hidden)
        full_argmax_outside += int(full.argmax()) not in allowed
        assert 1 <= len(out.actions) <= 4
    assert full_argmax_outside > 0  # the random model prefers other tokens: the restriction did work


def test_malformed_output_falls_back_and_is_counted(monkeypatch):
    agent = make_agent()
    session = agent.open(INSTRUCTION)
    end_col = agent.prompt.allowed_ids.index(agent.prompt.end_id)

    def end_first(hidden):
        logits = torch.zeros(*hidden.shape[:-1], len(agent.prompt.allowed_ids))
        logits[..., end_col] = 10.0
        return logits

    monkeypatch.setattr(agent.text_model, "allowed_logits", end_first)
    out = agent.act(session, random_frame(np.random.default_rng(0)))
    assert out.fallback and out.actions == [agent.config.fallback_action]
    assert session.stats.fallbacks == 1
    assert any("fallback" in note for note in out.notes)
    # The context holds the fallback's canonical answer, as a training sample would.
    assert session.window[-1].ids == tiny_processor().nav_answer_ids([agent.config.fallback_action])
    monkeypatch.undo()
    out2 = agent.act(session, random_frame(np.random.default_rng(1)))
    assert max_abs_logit_diff(agent, session, out2)["allowed"] < 1e-4


def test_long_instruction_is_truncated_with_a_note():
    agent = make_agent(max_context_tokens=400)
    long_instruction = " ".join(["go forward past the blue chair and turn left"] * 40)
    session = agent.open(long_instruction)
    assert session.open_notes and "truncated" in session.open_notes[0]
    assert len(session.prefix.ids) <= agent.context_budget() - agent.window_need()
    assert long_instruction.startswith(session.instruction) and len(session.instruction) < len(long_instruction)
    out = agent.act(session, random_frame(np.random.default_rng(0)))
    assert any("truncated" in note for note in out.notes)
    short = agent.open(INSTRUCTION)
    assert short.open_notes == [] and short.instruction == INSTRUCTION


def test_frame_of_another_resolution_is_resized_with_a_note():
    agent = make_agent(voxel_pruning=True)
    session = agent.open(INSTRUCTION)
    rng = np.random.default_rng(0)
    pose = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    agent.act(session, random_frame(rng, (32, 32)))
    depth = np.full((48, 64, 1), 0.3, dtype=np.float32)
    out = agent.act(session, random_frame(rng, (48, 64)), depth=depth, pose=pose)
    assert any("frame resized from 48x64 to 32x32" in note for note in out.notes)
    assert any("depth resized from 48x64 to 32x32" in note for note in out.notes)
    stored = session.bank.frames[session.step - len(out.actions)]
    assert stored.geometry is not None and stored.geometry[1].all()  # depth kept usable for pruning
    assert max_abs_logit_diff(agent, session, out)["allowed"] < 1e-4


def test_bad_frames_raise_naming_the_session():
    agent = make_agent()
    session = agent.open(INSTRUCTION, name="ep-7")
    with pytest.raises(ValueError, match="ep-7.*uint8"):
        agent.act(session, np.zeros((32, 32, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="ep-7.*pose"):
        agent.act(session, np.zeros((32, 32, 3), dtype=np.uint8), pose=np.zeros(3))


def test_config_validation():
    with pytest.raises(ValueError, match="multiple"):
        StreamingConfig(num_frames=10, num_future_steps=4).validate()
    with pytest.raises(ValueError, match="conjunction"):
        StreamingConfig(conjunction="behold ").validate()
    with pytest.raises(ValueError, match="stop_bias"):
        StreamingConfig(stop_bias=float("nan")).validate()


@pytest.mark.parametrize("decoding", ["greedy", "speculative", "tree"])
def test_stop_bias_moves_the_choice_not_the_logits(decoding):
    # The unbiased model never stops in these calls; a bias just above its largest STOP margin makes
    # the first pick STOP, and the recorded logits are the model's own in both runs.
    plain, biased = (StreamingAgent(tiny_model(MIXED_SEED), tiny_processor(), StreamingConfig(
        num_frames=8, num_future_steps=4, num_history=4, decoding=decoding, stop_bias=bias)) for bias in (0.0, 50.0))
    frame = random_frame(np.random.default_rng(0))
    ours, ref = (agent.act(agent.open(INSTRUCTION), frame) for agent in (biased, plain))
    stop = plain.prompt.allowed_ids.index(plain.prompt.stop_id)
    margin = float(ref.decoded.logits[0].max() - ref.decoded.logits[0][stop])
    assert 0 < margin < 50.0 and ref.actions[0] != 0
    assert ours.actions == [0] and ours.decoded.tokens == [plain.prompt.stop_id, plain.prompt.end_id]
    torch.testing.assert_close(ours.decoded.logits[0], ref.decoded.logits[0], atol=1e-5, rtol=0)


def test_prefetched_window_gives_the_same_logits_and_leaves_only_the_turn():
    plain, ahead = make_agent(), make_agent()
    a, b = plain.open(INSTRUCTION), ahead.open(INSTRUCTION)
    rng = np.random.default_rng(3)
    prepared_calls = 0
    for _ in range(6):
        frame = random_frame(rng)
        out_a = plain.act(a, frame)
        before = b.cache.length
        prepared = b.prepared is not None
        out_b = ahead.act(b, frame)
        assert out_a.actions == out_b.actions and out_a.window_start == out_b.window_start
        assert max_abs_logit_diff(ahead, b, out_b)["allowed"] < 1e-4
        if prepared:
            prepared_calls += 1
            assert out_b.window_start
            turn = b.window[1]  # [memory, turn, answer]
            assert b.cache.length - before != turn.length  # the cache was swapped, not extended
            assert b.cache.length == b.cache.prefix_length + b.window[0].length + turn.length + out_b.decoded.fed
        ahead.prefetch(b)
    assert prepared_calls >= 2
    assert a.stats.windows == b.stats.windows and a.stats.memory_tokens == b.stats.memory_tokens


@pytest.mark.parametrize("decode_graph", [False, True])
def test_executed_actions_replace_the_previous_answer_in_context(decode_graph):
    """DAgger: an expert step replaced part of the answer; the next call's context holds the executed
    chunk (cache and window alike), so streaming logits still equal a recompute of that context."""
    agent = make_agent(decode_graph=decode_graph)
    session = agent.open(INSTRUCTION)
    rng = np.random.default_rng(3)
    first = agent.act(session, random_frame(rng))
    executed = [2 if a != 2 else 3 for a in first.actions]  # every action replaced by a turn
    second = agent.act(session, random_frame(rng), executed=executed)
    assert not second.window_start
    answers = [seg.ids for seg in session.window if seg.visual is None]
    assert answers[0] == agent.prompt.answer_ids(executed) != agent.prompt.answer_ids(first.actions)
    diff = max_abs_logit_diff(agent, session, second)
    assert diff["steps_compared"] >= 1 and diff["allowed"] < 1e-4 and diff["full_vocab_first_step"] < 1e-4
    third = agent.act(session, random_frame(rng), executed=list(second.actions))  # as answered: nothing changes
    assert max_abs_logit_diff(agent, session, third)["allowed"] < 1e-4


def test_bad_executed_actions_are_clear_errors():
    agent = make_agent()
    session = agent.open(INSTRUCTION)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="executed actions given before its first call"):
        agent.act(session, random_frame(rng), executed=[1])
    out = agent.act(session, random_frame(rng))
    answered = len(out.actions)
    with pytest.raises(ValueError, match=f"{answered + 1} executed actions for a previous answer of {answered}"):
        agent.act(session, random_frame(rng), executed=[1] * (len(out.actions) + 1))
    with pytest.raises(ValueError, match="action 7 is outside the action space"):
        agent.act(session, random_frame(rng), executed=[7] * len(out.actions))
