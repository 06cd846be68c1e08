"""Tree decoding (every possible chunk drafted at once) gives greedy decoding's actions, logits and cache in
one weight pass per call, on every prefill path (in place, ragged batch, static scratch; the CUDA graph
test is test_streaming_speculative's test_cuda_graph_drafts_match_greedy)."""

from __future__ import annotations

import pytest
import torch
from streaming_support import (
    FOUR_ACTIONS_SEED,
    MIXED_SEED,
    staggered_batch_vs_single,
    tiny_model,
    tiny_processor,
)
from test_streaming_speculative import assert_same_decoding, episode, preferred_episodes

from agent.streaming import CacheScheme, Decoding, StreamingAgent, StreamingConfig
from agent.streaming.tree import DraftTree, scratch_visibility, tree_block
from envs.actions import Action

FORWARD, LEFT, RIGHT = (int(a) for a in (Action.MOVE_FORWARD, Action.TURN_LEFT, Action.TURN_RIGHT))


def make_agent(seed: int, decoding: Decoding, **overrides) -> StreamingAgent:
    config = StreamingConfig(num_frames=8, num_future_steps=4, num_history=4, decoding=decoding, **overrides)
    return StreamingAgent(tiny_model(seed), tiny_processor(), config)


def test_full_tree_holds_every_chunk_prefix():
    tree = DraftTree.full([7, 8, 9], max_depth=3, max_nodes=39)
    assert tree.size == 39 and tree.depths.count(1) == 3 and tree.depths.count(3) == 27
    node = tree.children[(tree.children[(-1, 9)], 7)]  # the prefix 9, 7
    assert tree.tokens[node] == 7 and tree.depths[node] == 2 and tree.tokens[tree.parents[node]] == 9
    assert all(parent < child for child, parent in enumerate(tree.parents))  # ancestors come first
    assert DraftTree.full([7, 8, 9], max_depth=3, max_nodes=38).size == 12  # the deepest whole level that fits
    with pytest.raises(ValueError, match="max_nodes"):
        DraftTree.full([7, 8, 9], max_depth=3, max_nodes=2)


def test_tree_block_positions_and_attention():
    tree = DraftTree.full([5, 6], max_depth=2, max_nodes=6)  # nodes: 5, 6, 5-5, 5-6, 6-5, 6-6
    offsets, visible = tree_block(tree, counts=[8, 9], width=10)  # row 0: turn of 2; row 1: turn of 3
    assert offsets[0].tolist() == [0, 1, 2, 2, 3, 3, 3, 3, 8, 9]  # padding keeps its column
    assert offsets[1, 3:9].tolist() == [3, 3, 4, 4, 4, 4]
    node_5_6 = 2 + 3  # row 0: the turn's 2 tokens, then node 3 (the prefix 5, 6)
    assert visible[0, node_5_6].tolist() == [True, True, True, False, False, True, False, False, False, False]
    assert visible[0, 1, :2].tolist() == [True, True] and not visible[0, 1, 2:].any()  # the turn stays causal
    with pytest.raises(ValueError, match="fewer than the tree"):
        tree_block(tree, counts=[6], width=6)


def test_scratch_visibility_places_the_block_after_each_rows_context():
    tree = DraftTree.full([5, 6], max_depth=2, max_nodes=6)
    _, block = tree_block(tree, counts=[8, 7], width=8)
    starts = torch.tensor([3, 5])
    seen = scratch_visibility(torch.arange(16), starts, block)
    for row, start in enumerate(starts.tolist()):
        assert seen[row, :, :start].all() and not seen[row, :, start + 8:].any()
        assert torch.equal(seen[row, :, start:start + 8], block[row])


@pytest.mark.parametrize(("seed", "decode_graph"), [(FOUR_ACTIONS_SEED, False), (MIXED_SEED, False),
                                                     (MIXED_SEED, True)])
def test_tree_decodes_as_greedy_in_one_pass_per_call(seed, decode_graph):
    ours = episode(make_agent(seed, Decoding.TREE, decode_graph=decode_graph))
    reference = episode(make_agent(seed, Decoding.GREEDY, decode_graph=decode_graph))
    assert_same_decoding(ours, reference)
    assert sum(o.window_start for o in ours[1]) >= 1
    stats = ours[0].stats
    assert stats.passes == stats.calls and reference[0].stats.passes > stats.calls
    assert stats.drafted == 39 * stats.calls


@pytest.mark.parametrize("decode_graph", [False, True])
@pytest.mark.parametrize("action", [LEFT, RIGHT])
def test_paths_off_the_first_branch_move_their_nodes(action, decode_graph, monkeypatch):
    # Greedy always picks `action`: its path is the last branch (RIGHT) or a middle one (LEFT) at every
    # depth, so the kept nodes sit far from the turn's end and must move there without leaking the rest.
    _, ours, _ = preferred_episodes(Decoding.TREE, action, decode_graph, monkeypatch)
    session = ours[0]
    assert session.stats.passes == session.stats.calls and session.cache.length == session.turn_end + 3


def test_a_shallow_tree_continues_speculatively():
    ours = episode(make_agent(MIXED_SEED, Decoding.TREE, tree_max_nodes=12))  # depth 2: 3 + 9 nodes
    reference = episode(make_agent(MIXED_SEED, Decoding.GREEDY))
    assert_same_decoding(ours, reference)
    stats = ours[0].stats
    assert stats.calls < stats.passes <= 2 * stats.calls  # a 4-action chunk needs one more round


@pytest.mark.parametrize("scheme", [CacheScheme.RECOMPUTE, CacheScheme.ORIGINAL])
def test_other_cache_schemes_decode_the_same(scheme):
    ours = episode(make_agent(MIXED_SEED, Decoding.TREE, scheme=scheme), calls=5)
    reference = episode(make_agent(MIXED_SEED, Decoding.GREEDY, scheme=scheme), calls=5)
    assert [o.actions for o in ours[1]] == [o.actions for o in reference[1]]
    assert ours[0].stats.passes == ours[0].stats.calls


@pytest.mark.parametrize("decode_graph", [False, True])
def test_batched_ragged_sessions_walk_their_own_trees(decode_graph):
    single = make_agent(MIXED_SEED, Decoding.GREEDY)
    batched = make_agent(MIXED_SEED, Decoding.TREE, decode_graph=decode_graph)
    per_call = staggered_batch_vs_single(batched, single)
    outputs = [out for outs in per_call for out in outs]
    assert all(out.decoded.passes == 1 for out in outputs)
    assert len({tuple(out.actions) for out in outputs}) > 1  # rows took different paths through the tree


def test_config_rejects_a_tree_below_one_level():
    with pytest.raises(ValueError, match="tree_max_nodes"):
        StreamingConfig(decoding="tree", tree_max_nodes=2).validate()
    assert StreamingConfig(decoding="tree").validate().decoding is Decoding.TREE
