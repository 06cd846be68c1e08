"""Prefills on a GraphedDecoder's static scratch, replayed as CUDA graphs with bucketed widths.

Why: an eager 7b prefill is launch/host bound (~58 ms of CPU time for ~60 ms of GPU work when 8
sessions prefill their turns together, and ~52 ms for one window's 1.6k memory tokens whose GEMMs
need ~25 ms). A graph per (rows, width) removes the host side. Widths are bucketed so a handful of
graphs covers every call: turns (new tokens <= `turn_tokens`) round up to 16, long segments (a
window's memory) to 128. Each row's new tokens are right-padded to the bucket: the padding comes
after the real tokens, so causal attention keeps it out of every real token's result; it writes
scratch columns past the row's end that stay masked (the next decode step overwrites the first).

With the folded GQA attention (attention.py) the mask is built already repeated over the query
heads of a KV head, once per call, instead of once per layer inside attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from agent.streaming.attention import NAME as GQA_ATTENTION
from agent.streaming.batching import last_hidden
from agent.streaming.tree import DraftTree, scratch_visibility, tree_block

if TYPE_CHECKING:
    from agent.streaming.graph import GraphedDecoder

TURN_BUCKET = 16
LONG_BUCKET = 128


def prefill_bucket(count: int, turn_tokens: int) -> int:
    """Padded width of a prefill of `count` new tokens per row (see the module docstring)."""
    step = TURN_BUCKET if count <= turn_tokens else LONG_BUCKET
    return -(-count // step) * step


def mask_fold(text_model) -> int:
    """Query heads per KV head when the folded GQA attention takes a pre-repeated mask, else 1."""
    config = text_model.config
    if getattr(config, "_attn_implementation", None) != GQA_ATTENTION:
        return 1
    return config.num_attention_heads // config.num_key_value_heads


class ScratchPrefill:
    """`width` new tokens on every row of a GraphedDecoder's scratch at once (a graph when captured)."""

    def __init__(self, decoder: GraphedDecoder, width: int, use_graph: bool):
        from agent.streaming.graph import StaticKV, capture_graph

        text_model = decoder.text_model
        device, dtype = text_model.device, text_model.dtype
        rows = decoder.rows
        self.decoder, self.width, self.rows = decoder, width, rows
        self.fold = mask_fold(text_model)
        self.embeds = torch.zeros((rows, width, text_model.config.hidden_size), dtype=dtype, device=device)
        self.position = torch.zeros((rows, width), dtype=torch.long, device=device)  # RoPE positions
        self.slots = torch.zeros((rows, width), dtype=torch.long, device=device)  # scratch columns written
        self.mask = torch.full((rows, 1, self.fold * width, decoder.max_len), torch.finfo(dtype).min,
                               dtype=dtype, device=device)
        self.kv = StaticKV(decoder.keys, decoder.values, self.slots)
        self.extra = {"cache_position": self.position[0]} if decoder._extra else {}
        self.columns = torch.arange(decoder.max_len, device=device)
        self.offsets = torch.arange(width, device=device)
        self.graph, self.hidden = None, None
        if use_graph:
            with torch.no_grad():
                self.graph, self.hidden = capture_graph(self._body)

    def _body(self, columns: int | None = None) -> torch.Tensor:
        """The forward on the static buffers; eagerly, attention may stop at `columns` scratch tokens."""
        text_model = self.decoder.text_model
        self.kv.columns = columns or self.decoder.max_len
        mask = self.mask[..., : self.kv.columns]
        out = text_model.decoder(
            inputs_embeds=self.embeds, attention_mask={"full_attention": mask}, position_ids=self.position,
            use_cache=True, **{text_model._cache_arg: self.kv}, **self.extra)
        self.hidden = out.last_hidden_state
        return self.hidden

    @torch.no_grad()
    def run(self, embeds: Sequence[torch.Tensor], lengths: Sequence[int], tail: int | None = None,
            tree: DraftTree | None = None) -> torch.Tensor:
        """Row r's (T_r, hidden) embeddings at positions lengths[r] onward, each token seeing its row's
        context and the new tokens up to itself (with `tree`: the row's last tree.size tokens are a draft
        tree's nodes, tree.py). Returns each row's last real hidden state (rows, hidden), or its last
        `tail` ones (rows, tail, hidden)."""
        counts = [e.shape[0] for e in embeds]
        if len(embeds) != self.rows or max(counts) > self.width:
            raise ValueError(f"prefill graph of {self.rows} rows x {self.width} tokens got counts {counts}")
        device = self.embeds.device
        batch = torch.nn.utils.rnn.pad_sequence(list(embeds), batch_first=True)
        self.embeds[:, : batch.shape[1]].copy_(batch)
        self.embeds[:, batch.shape[1]:].zero_()
        starts = torch.tensor(list(lengths), dtype=torch.long).to(device, non_blocking=True)
        self.slots.copy_(starts.unsqueeze(1) + self.offsets.unsqueeze(0))
        if tree is None:
            self.position.copy_(self.slots)
            visible = self.columns.view(1, 1, -1) <= self.position.unsqueeze(2)  # (rows, width, max_len)
        else:
            offsets, block = (part.to(device, non_blocking=True) for part in tree_block(tree, counts, self.width))
            self.position.copy_(starts.unsqueeze(1) + offsets)
            visible = scratch_visibility(self.columns, starts, block)
        base = torch.where(visible, 0.0, torch.finfo(self.mask.dtype).min).to(self.mask.dtype)
        # Folded GQA: query row g*width + t of a KV head is query head g's token t (attention.py).
        self.mask.view(self.rows, self.fold, self.width, -1).copy_(base.unsqueeze(1).expand(-1, self.fold, -1, -1))
        if self.graph is not None:
            self.graph.replay()
        else:  # eager (CPU tests): attention need not scan the scratch past the longest row
            self._body(min(max(lengths) + self.width, self.decoder.max_len))
        return last_hidden(self.hidden, counts, tail)
