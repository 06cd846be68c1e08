"""Advancing several sessions' caches in one batched forward (ragged lengths), and greedy decoding.

Sessions differ in cache length and in the length of the new segment. The ragged batch left-pads
the caches to a common length, right-pads the new embeddings, gives each row its own position ids
(its cache length onward) and passes an explicit 4D additive mask: a column is visible to a row when
it is a real token of that row and not in its future. Decode steps append one column per row; rows
that already finished append a masked column. At the end each session gets back exactly its valid
columns, so its cache is what a single-session run would have built.

One session takes the `SingleStepper` path: no padding, no copies, the default causal mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from agent.streaming.cache import SessionCache, TextModel
from agent.streaming.tree import DraftTree, tree_block


class SingleStepper:
    """One session: prefill and decode directly on its cache."""

    def __init__(self, cache: SessionCache):
        self.cache = cache
        self.text_model = cache.text_model

    def prefill(self, embeds: Sequence[torch.Tensor], tail: int | None = None,
                tree: DraftTree | None = None) -> torch.Tensor:
        """Last hidden state (1, hidden), or the last `tail` ones (1, tail, hidden). With `tree` the
        row's last tree.size tokens are that draft tree's nodes (tree.py)."""
        if tree is None:
            hidden = self.cache.prefill(embeds[0])
        else:
            count = embeds[0].shape[0]
            offsets, visible = tree_block(tree, [count], count)
            hidden = self.cache.prefill(embeds[0], offsets[0], visible[0])
        return hidden[-1:].clone() if tail is None else hidden[-tail:].unsqueeze(0).clone()

    def advance(self, tokens: Sequence[int], active: Sequence[bool]) -> torch.Tensor:
        del active  # a single row only advances while it is active
        return self.cache.advance(tokens[0]).unsqueeze(0)

    def extend(self, tokens: Sequence[Sequence[int]]) -> torch.Tensor:
        """Feed several tokens in one forward; returns their hidden states (1, T, hidden)."""
        return self.cache.prefill(self.text_model.embed(tokens[0])).unsqueeze(0)

    def rollback(self, drops: Sequence[int]) -> None:
        """Forget the last drops[0] tokens (rejected speculative drafts)."""
        self.cache.truncate_to(self.cache.length - drops[0])

    def keep_tree(self, paths: Sequence[Sequence[int]], size: int) -> None:
        """Of the last `size` tokens (a draft tree's nodes) keep those on paths[0], in order."""
        start = self.cache.length - size
        self.cache.keep_columns(start, [start + node for node in paths[0]])

    def finish(self) -> None:
        """Nothing to write back: the session's cache was used in place."""


class RaggedStepper:
    """Several sessions: one batched forward per step over padded caches with a 4D mask."""

    def __init__(self, caches: Sequence[SessionCache]):
        self.caches = list(caches)
        self.text_model: TextModel = caches[0].text_model
        self.kv = None
        self.valid: torch.Tensor | None = None  # (B, columns) real tokens of each row
        self.next_pos = torch.tensor([c.length for c in caches], device=self.text_model.device)

    def _padded_cache(self) -> int:
        lengths = [c.length for c in self.caches]
        longest = max(lengths)
        kv = self.text_model.new_cache()
        per_session = [c.layer_tensors() for c in self.caches]
        for layer in range(len(per_session[0])):
            keys = [self._left_pad(t[layer][0], longest) for t in per_session]
            values = [self._left_pad(t[layer][1], longest) for t in per_session]
            kv.update(torch.cat(keys), torch.cat(values), layer)
        self.kv = kv
        cols = torch.arange(longest, device=self.text_model.device)
        self.valid = cols.unsqueeze(0) >= (longest - torch.tensor(lengths, device=cols.device)).unsqueeze(1)
        return longest

    @staticmethod
    def _left_pad(tensor: torch.Tensor, length: int) -> torch.Tensor:
        missing = length - tensor.shape[-2]
        if missing == 0:
            return tensor
        pad = tensor.new_zeros(*tensor.shape[:-2], missing, tensor.shape[-1])
        return torch.cat([pad, tensor], dim=-2)

    def _forward(self, embeds: torch.Tensor, new_valid: torch.Tensor,
                 block: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Run (B, T, hidden) new embeddings; new_valid (B, T) marks real tokens. `block` (a draft
        tree's tree_block: position offsets (B, T), visibility among the new tokens (B, T, T))
        replaces in-order positions and causal attention among the new tokens."""
        count = embeds.shape[1]
        past = self.valid.shape[1]
        self.valid = torch.cat([self.valid, new_valid], dim=1)
        cols = torch.arange(past + count, device=embeds.device)
        rows = torch.arange(count, device=embeds.device) + past
        causal = (cols.unsqueeze(0) <= rows.unsqueeze(1)).unsqueeze(0)  # (1, T, columns)
        offsets = torch.arange(count, device=embeds.device).unsqueeze(0)
        if block is not None:
            offsets, among_new = (part.to(embeds.device) for part in block)
            causal = causal.repeat(len(self.caches), 1, 1)
            causal[:, :, past:] = among_new
        visible = causal & self.valid.unsqueeze(1)  # (B, T, columns)
        visible |= (cols.unsqueeze(0) == rows.unsqueeze(1)).unsqueeze(0)  # padded rows see themselves
        mask = torch.zeros(visible.shape, dtype=embeds.dtype, device=embeds.device)
        mask.masked_fill_(~visible, torch.finfo(embeds.dtype).min)
        positions = self.next_pos.unsqueeze(1) + offsets
        hidden = self.text_model.run(embeds, self.kv, positions, mask.unsqueeze(1))
        self.next_pos = self.next_pos + new_valid.sum(dim=1)
        return hidden

    def prefill(self, embeds: Sequence[torch.Tensor], tail: int | None = None,
                tree: DraftTree | None = None) -> torch.Tensor:
        self._padded_cache()
        counts = [e.shape[0] for e in embeds]
        width = max(counts)
        batch = embeds[0].new_zeros(len(embeds), width, embeds[0].shape[-1])
        for row, e in enumerate(embeds):
            batch[row, : e.shape[0]] = e
        new_valid = torch.arange(width, device=batch.device).unsqueeze(0) < torch.tensor(
            counts, device=batch.device).unsqueeze(1)
        block = None if tree is None else tree_block(tree, counts, width)
        return last_hidden(self._forward(batch, new_valid, block), counts, tail)

    def advance(self, tokens: Sequence[int], active: Sequence[bool]) -> torch.Tensor:
        embeds = self.text_model.embed(tokens).unsqueeze(1)
        new_valid = torch.tensor(list(active), device=embeds.device).unsqueeze(1)
        return self._forward(embeds, new_valid)[:, 0]

    def extend(self, tokens: Sequence[Sequence[int]]) -> torch.Tensor:
        """Feed each row's tokens (rows may have none) in one forward; (B, max tokens, hidden) hidden
        states, right-padded (padding columns stay invalid)."""
        width = max(len(row) for row in tokens)
        ids = [list(row) + [0] * (width - len(row)) for row in tokens]
        embeds = self.text_model.embed([i for row in ids for i in row]).view(len(ids), width, -1)
        counts = torch.tensor([len(row) for row in tokens], device=embeds.device)
        return self._forward(embeds, torch.arange(width, device=embeds.device).unsqueeze(0) < counts.unsqueeze(1))

    def rollback(self, drops: Sequence[int]) -> None:
        """Forget each row's last drops[r] real tokens: their columns become padding (masked, never
        written back) and the row's next token takes the first forgotten position."""
        for row, drop in enumerate(drops):
            if drop:
                columns = self.valid[row].nonzero().squeeze(1)[-drop:]
                self.valid[row, columns] = False
        self.next_pos = self.next_pos - torch.tensor(list(drops), device=self.next_pos.device)

    def keep_tree(self, paths: Sequence[Sequence[int]], size: int) -> None:
        """Each row's last `size` real tokens are a draft tree's nodes: keep those on paths[row] (their
        columns stay valid, in order) and forget the others, as rollback does."""
        for row, path in enumerate(paths):
            columns = self.valid[row].nonzero().squeeze(1)[-size:]
            dropped = torch.ones(size, dtype=torch.bool, device=columns.device)
            dropped[torch.tensor(list(path), dtype=torch.long)] = False
            self.valid[row, columns[dropped]] = False
        self.next_pos = self.next_pos - torch.tensor([size - len(p) for p in paths], device=self.next_pos.device)

    def finish(self) -> None:
        """Write each session's valid columns back into its own cache."""
        layers = [(layer.keys, layer.values) for layer in self.kv.layers]
        for row, cache in enumerate(self.caches):
            cols = self.valid[row].nonzero().squeeze(1)
            cache.replace([(k[row:row + 1].index_select(-2, cols), v[row:row + 1].index_select(-2, cols))
                           for k, v in layers])


def last_hidden(hidden: torch.Tensor, counts: Sequence[int], tail: int | None = None) -> torch.Tensor:
    """From right-padded (B, W, hidden) states: each row's last real one (B, hidden), or with `tail`
    its last `tail` real ones (B, tail, hidden) (a copy either way)."""
    rows = torch.arange(len(counts), device=hidden.device)
    last = torch.tensor([c - 1 for c in counts], device=hidden.device)
    if tail is None:
        return hidden[rows, last]
    if min(counts) < tail:
        raise ValueError(f"asked for the last {tail} hidden states of rows with {list(counts)} new tokens")
    index = last.unsqueeze(1) - torch.arange(tail - 1, -1, -1, device=hidden.device).unsqueeze(0)
    return hidden[rows.unsqueeze(1), index]


def make_stepper(caches: Sequence[SessionCache]):
    return SingleStepper(caches[0]) if len(caches) == 1 else RaggedStepper(caches)


@dataclass
class DecodeRules:
    """Greedy decoding restricted to the action symbols and the end marker."""

    allowed_ids: list[int]
    end_id: int
    stop_id: int
    max_actions: int
    full_chunks: bool = False  # benchmarks: no end marker or STOP before max_actions symbols
    stop_bias: float = 0.0  # added to STOP's logit for the choice only (StreamingConfig.stop_bias)


@dataclass
class Decoded:
    tokens: list[int] = field(default_factory=list)  # generated ids, the end marker included
    fed: int = 0  # how many of them went into the cache (the rest is the caller's to append)
    logits: list[torch.Tensor] = field(default_factory=list)  # (A,) float32 per decode step
    passes: int = 1  # forwards this row took part in (weight passes): the turn's prefill + decode steps
    drafted: int = 0  # speculative drafts fed with the turn
    accepted: int = 0  # drafts greedy decoding agreed with (kept in the cache)


def pick_tokens(logits: torch.Tensor, rules: DecodeRules) -> list:
    """Greedy choice over the allowed ids for (..., A) logits (full_chunks: no end marker or STOP; the
    recorded logits stay unbiased, only the choice sees stop_bias)."""
    choice = logits
    if rules.full_chunks:
        choice = logits.clone()
        choice[..., [rules.allowed_ids.index(rules.end_id), rules.allowed_ids.index(rules.stop_id)]] = float("-inf")
    elif rules.stop_bias:
        choice = logits.clone()
        choice[..., rules.allowed_ids.index(rules.stop_id)] += rules.stop_bias
    allowed = torch.tensor(rules.allowed_ids, device=logits.device)
    return allowed[choice.argmax(dim=-1)].tolist()


def record_pick(result: Decoded, token: int, logits: torch.Tensor, rules: DecodeRules) -> bool:
    """Append one decoded token; a row must end after max_actions symbols or after STOP, so that end
    marker is appended without running the model. Returns whether the row is done."""
    result.tokens.append(token)
    result.logits.append(logits)
    if token != rules.end_id and (len(result.tokens) >= rules.max_actions or token == rules.stop_id):
        result.tokens.append(rules.end_id)  # the only token allowed here
    return result.tokens[-1] == rules.end_id


def decode_rest(stepper, results: list[Decoded], done: list[bool], picked: list[int], rules: DecodeRules) -> None:
    """Greedy steps until every row is done: feed each active row's last pick, decode the next one."""
    while not all(done):
        active = [not d for d in done]
        for row, is_active in enumerate(active):
            results[row].fed += is_active
            results[row].passes += is_active
        hidden = stepper.advance([p if a else rules.end_id for p, a in zip(picked, active)], active)
        logits = stepper.text_model.allowed_logits(hidden)  # (B, A)
        picked = pick_tokens(logits, rules)
        for row in range(len(results)):
            if active[row]:
                done[row] = record_pick(results[row], picked[row], logits[row], rules)


def greedy_decode(stepper, first_hidden: torch.Tensor, rules: DecodeRules) -> list[Decoded]:
    """Decode every row until its end marker (one forward per further token; the forced end marker
    after max_actions symbols or STOP costs none).

    The last generated token of each row (its end marker) is NOT fed back: the caller appends the
    canonical answer tail with the next turn.
    """
    logits = stepper.text_model.allowed_logits(first_hidden)  # (B, A)
    picked = pick_tokens(logits, rules)
    results = [Decoded() for _ in picked]
    done = [record_pick(result, token, logits[row], rules) for row, (result, token) in enumerate(zip(results, picked))]
    decode_rest(stepper, results, done, picked, rules)
    stepper.finish()
    return results
