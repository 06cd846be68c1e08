"""A draft tree: every possible action chunk verified in one forward (its structure and attention mask).

Speculative decoding (speculative.py) feeds ONE guessed chunk after the turn; a wrong guess costs a
further weight pass. But a chunk is at most num_future_steps symbols from an alphabet of three that can
continue it (STOP ends a chunk, so nothing after it needs checking): for 4 actions every prefix the
greedy walk can visit is one of 3 + 9 + 27 = 39 nodes of a tree. Feeding all of them after the turn, each
node at the RoPE position of its depth and seeing only the turn and its own ancestors (a tree attention
mask), one forward yields the greedy logits after every possible prefix: walking from the generation
prompt through the picked children gives exactly greedy decoding's chunk, always in ONE weight pass.
On a GPU a forward of ~60 new tokens per row costs about what one token does (the weights are read
once either way); on a CPU the extra tokens are real compute, which is why this is a choice
(`StreamingConfig.decoding`) and not the only way.

After the walk (speculative.tree_decode) the nodes on the picked path move to the columns right after
the turn (their K/V were computed at the right positions) and every other node is forgotten
(`stepper.keep_tree`). A tree shallower than the chunk (a node budget below the full tree) continues
with speculative rounds. Every stepper builds its masks from `tree_block` (and, on a static scratch,
`scratch_visibility`), so the three prefill paths share one definition of the tree's attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch


@dataclass(frozen=True)
class DraftTree:
    """Nodes in breadth-first order: tokens[i] at depth depths[i] (1-based) under parents[i] (-1: the
    generation prompt). An ancestor always comes before its descendants."""

    tokens: tuple[int, ...]
    parents: tuple[int, ...]
    depths: tuple[int, ...]
    children: dict[tuple[int, int], int] = field(compare=False, repr=False)  # (parent, token) -> node

    @classmethod
    def full(cls, symbols: Sequence[int], max_depth: int, max_nodes: int) -> DraftTree:
        """Every sequence of `symbols` up to the deepest level whose whole tree fits `max_nodes`."""
        if not symbols or max_depth < 1:
            raise ValueError(f"a draft tree needs symbols and a depth >= 1, got {list(symbols)}, {max_depth}")
        tokens: list[int] = []
        parents: list[int] = []
        depths: list[int] = []
        level = [-1]
        for depth in range(1, max_depth + 1):
            if len(tokens) + len(level) * len(symbols) > max_nodes:
                break
            next_level = []
            for parent in level:
                for symbol in symbols:
                    next_level.append(len(tokens))
                    tokens.append(int(symbol))
                    parents.append(parent)
                    depths.append(depth)
            level = next_level
        if not tokens:
            raise ValueError(f"max_nodes {max_nodes} is below one level of {len(symbols)} symbols")
        children = {(p, t): i for i, (p, t) in enumerate(zip(parents, tokens))}
        return cls(tuple(tokens), tuple(parents), tuple(depths), children)

    @property
    def size(self) -> int:
        return len(self.tokens)

    @cached_property
    def ancestry(self) -> torch.Tensor:
        """(N, N) bool: node i sees node j when j is i itself or one of its ancestors (built once: every
        call's mask uses it)."""
        sees = torch.eye(self.size, dtype=torch.bool)
        for node, parent in enumerate(self.parents):
            if parent >= 0:
                sees[node] |= sees[parent]  # a parent's row is complete before its children's
        return sees


def tree_block(tree: DraftTree, counts: Sequence[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How each row's new tokens [turn, tree nodes, padding up to `width`] see each other, on the CPU.

    counts[r]: row r's real new tokens, its last tree.size of them the tree. Returns position offsets
    (B, width) long (the turn and padding as usual, a node at the turn's end + its depth - 1) and
    visibility (B, width, width) bool (causal, except that a node sees the turn and its ancestors only).
    """
    offsets = torch.arange(width).repeat(len(counts), 1)
    visible = torch.ones(width, width, dtype=torch.bool).tril().repeat(len(counts), 1, 1)
    depths = torch.tensor(tree.depths) - 1
    ancestry = tree.ancestry
    for row, count in enumerate(counts):
        turn = count - tree.size
        if turn < 1:
            raise ValueError(f"row {row} has {count} new tokens, fewer than the tree's {tree.size} + a turn")
        offsets[row, turn:count] = turn + depths
        visible[row, turn:count, turn:count] = ancestry
    return offsets, visible


def scratch_visibility(columns: torch.Tensor, starts: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """(B, W, L) bool over scratch columns: row r's new token j sees its context (columns < starts[r])
    and new token k (column starts[r] + k) when block[r, j, k]. columns (L,), starts (B,), block (B, W, W)."""
    width = block.shape[-1]
    relative = columns.view(1, -1) - starts.view(-1, 1)  # (B, L): which new token a column holds
    inside = (relative >= 0) & (relative < width)
    within = block.gather(2, relative.clamp(0, width - 1).unsqueeze(1).expand(-1, width, -1))
    return (relative < 0).unsqueeze(1) | (inside.unsqueeze(1) & within)
