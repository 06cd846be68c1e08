"""Decode steps as a CUDA graph over a static K/V scratch (the launch-bound part of a call).

A 7B decode step in eager mode is ~20 ms of kernel launches for ~5 ms of weight reads. The sessions'
caches are copied into a static scratch of B rows x `max_len` tokens (one copy per K/V per row when
the cache came from the scratch last time: all layers live in one tensor); each decode step then
replays one captured graph: embed the B tokens, run the decoder with the scratch as its cache (each
row's new K/V scattered at its own position, attention over the whole scratch with a static additive
mask that opens one column per active row per step), and leave the final hidden states in a static
buffer. Afterwards each session's cache becomes a view of its whole row (no copy); the row stays
its own until another session is loaded there, which first gives it a copy (`evict`). One graph (and
scratch) per batch size, built on first use.

Prefill (prefill_graph.py): one session replays a graph per bucketed turn length, or per bucketed
long segment (a window's memory); several sessions prefill their turns together on the scratch as
one graph per bucketed width (`GraphedDecoder.prefill_rows`: right-padded rows at their own
positions; eager when a turn does not fit). A row with a long segment (~8x a turn) first prefills its
head alone (on the one-row decoder's graph when given), so the batch is not padded to it (at 7b x 8
sessions that padding made a round ~600 ms instead of ~170).

The same code runs without a graph (`use_graph=False`) for CPU tests of the static path.
"""

from __future__ import annotations

import gc
import inspect
import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch

from agent.streaming.batching import SingleStepper, last_hidden
from agent.streaming.cache import SessionCache, TextModel
from agent.streaming.prefill_graph import ScratchPrefill, prefill_bucket
from agent.streaming.tree import DraftTree, scratch_visibility, tree_block

log = logging.getLogger(__name__)


@contextmanager
def collection_paused() -> Iterator[None]:
    """Collect Python garbage now, then no automatic collection until the block ends.

    A dead CUDA graph that the cyclic collector frees during another graph's capture destroys its
    executable there, which CUDA forbids while a stream captures: the capture fails ("operation
    failed due to a previous error during capture"). torch.cuda.graph used to collect before each
    capture; pytorch/pytorch#158193 made that opt-in (torch.compiler.config.force_cudagraph_gc), so a
    server that drops agents, or a test process, failed captures at random (session 17: one prefill
    graph of the GPU suite). GC stays off if the caller had turned it off."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def capture_graph(body: Callable[[], torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Warm `body` up on a side stream, then capture it; returns the graph and its output buffer."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # allocations and autotuning happen outside the graph
            body()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with collection_paused(), torch.cuda.graph(graph):
        out = body()
    return graph, out


class StaticKV:
    """The cache surface Qwen2 attention uses: update(k, v, layer_idx) -> the full static buffers."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], slots: torch.Tensor,
                 columns: int | None = None):
        self.keys, self.values = keys, values
        rows, heads, _, head_dim = keys[0].shape
        count = slots.shape[1]  # new tokens per row: slots is (rows, count), the columns they are written to
        self.index = slots.view(rows, 1, count, 1).expand(rows, heads, count, head_dim)  # follows slots
        # Attention reads only the first `columns` tokens (an eager prefill need not scan the whole scratch).
        self.columns = columns or keys[0].shape[-2]
        self.is_compileable = True

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx].scatter_(2, self.index, key_states)
        self.values[layer_idx].scatter_(2, self.index, value_states)
        return self.keys[layer_idx][:, :, :self.columns], self.values[layer_idx][:, :, :self.columns]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.columns


class GraphedDecoder:
    """Decode steps for `rows` sessions at a time over a static scratch of `max_len` tokens per row."""

    def __init__(self, text_model: TextModel, max_len: int, rows: int = 1, use_graph: bool = True,
                 max_prefill: int = 0, max_long: int = 0):
        config = text_model.config
        heads = config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        device, dtype = text_model.device, text_model.dtype
        self.text_model, self.max_len, self.rows = text_model, max_len, rows
        # One tensor per K/V for all layers, so a row's whole context moves in one copy (load / store).
        shape = (config.num_hidden_layers, rows, heads, max_len, head_dim)
        self.keys_all = torch.zeros(shape, device=device, dtype=dtype)
        self.values_all = torch.zeros(shape, device=device, dtype=dtype)
        self.keys, self.values = list(self.keys_all.unbind(0)), list(self.values_all.unbind(0))
        self.tokens = torch.zeros((rows,), dtype=torch.long, device=device)
        self.position = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.mask = torch.full((rows, 1, 1, max_len), torch.finfo(dtype).min, dtype=dtype, device=device)
        self.kv = StaticKV(self.keys, self.values, self.position)
        params = inspect.signature(text_model.decoder.forward).parameters
        self._extra = {"cache_position": self.position[0]} if "cache_position" in params else {}
        self.hidden: torch.Tensor | None = None  # the graph's output buffer once captured
        self.lengths: list[int] = []
        self.starts: list[int] = []
        self.use_graph = use_graph
        # Graphed prefills (prefill_graph.py): turns of every row (<= max_prefill new tokens each) and,
        # on one row, long segments such as a window's memory (<= max_long).
        self.max_prefill = max_prefill
        self.max_long = max_long if rows == 1 else 0
        self.prefills: dict[int, ScratchPrefill] = {}  # by bucketed width
        self.owners: list[weakref.ref | None] = [None] * rows  # the session viewing each row (store())
        self.errors: list[str] = []
        self.graph = None
        if use_graph:
            with torch.no_grad():
                self.graph, self.hidden = capture_graph(self._body)

    def _body(self) -> torch.Tensor:
        embeds = self.text_model.embeddings(self.tokens).unsqueeze(1)
        out = self.text_model.decoder(
            inputs_embeds=embeds, attention_mask={"full_attention": self.mask}, position_ids=self.position,
            use_cache=True, **{self.text_model._cache_arg: self.kv}, **self._extra)
        self.hidden = out.last_hidden_state[:, -1]
        return self.hidden

    def prefill_one(self, cache: SessionCache, embeds: torch.Tensor, tail: int | None = None,
                    tree: DraftTree | None = None) -> torch.Tensor | None:
        """One row: load `cache`, then run the (T, hidden) new embeddings on the scratch (a graph per
        bucketed T). Returns the last hidden state (1, hidden) (with `tail`: the last `tail` ones,
        (1, tail, hidden)), or None when T is too long for a graph."""
        if self.rows != 1 or self.prefill_graph([cache.length], [embeds.shape[0]]) is None:
            return None
        self.load([cache])
        return self.prefill_rows([embeds], tail, tree)

    def prefill_graph(self, lengths: Sequence[int], counts: Sequence[int]) -> ScratchPrefill | None:
        """The prefill graph for rows of these cache lengths and new-token counts, captured now if new;
        None when they do not fit one. Call it BEFORE load(): a capture's warm-up runs write scratch columns."""
        width = prefill_bucket(max(counts), self.max_prefill)
        limit = self.max_long if max(counts) > self.max_prefill else self.max_prefill
        if len(counts) != self.rows or max(counts) > limit or max(lengths) + width > self.max_len:
            return None
        if width not in self.prefills:
            self.evict()  # a capture's warm-up runs write columns of every row
            try:
                self.prefills[width] = ScratchPrefill(self, width, self.use_graph)
            except RuntimeError as error:  # capture failed: prefill eagerly from now on
                log.warning("CUDA graph capture of a %d x %d-token prefill failed (%s)", self.rows, width, error)
                self.errors.append(f"prefill {self.rows} x {width} tokens: {error}")
                self.max_prefill = self.max_long = 0
                return None
        return self.prefills[width]

    def _holds(self, cache: SessionCache, row: int) -> bool:
        """Whether `cache` is a view of this scratch's `row` (stored there by store() and not rebuilt)."""
        stacked = cache.stacked()
        return stacked is not None and stacked[0].data_ptr() == self.keys_all[0, row].data_ptr() and (
            stacked[1].data_ptr() == self.values_all[0, row].data_ptr())

    def evict(self, rows: Sequence[int] | None = None) -> None:
        """Give the sessions that are views of these rows (all: None) their own copy before the rows are
        overwritten. One clone per K/V, as store() did before rows were kept in place."""
        for row in range(self.rows) if rows is None else rows:
            owner = self.owners[row]() if self.owners[row] is not None else None
            if owner is not None and self._holds(owner, row):
                keys, values = owner.stacked()
                owner.adopt(keys.clone(), values.clone())
            self.owners[row] = None

    def load(self, caches: Sequence[SessionCache]) -> None:
        """Bring each session's context into its row and open its columns in the mask. A session that
        is already a view of its row (stored there last call) needs no copy; any other owner of a row
        being overwritten gets its own copy first."""
        in_place = [self._holds(cache, row) for row, cache in enumerate(caches)]
        self.evict([row for row, kept in enumerate(in_place) if not kept])  # clones queue before copies
        targets, sources = [], []
        for row, cache in enumerate(caches):
            length = cache.length
            if length == 0 or in_place[row]:
                continue
            stacked = cache.stacked()
            if stacked is not None:  # stored by store(): one copy per K/V for all layers
                targets += [self.keys_all[:, row:row + 1, :, :length], self.values_all[:, row:row + 1, :, :length]]
                sources += list(stacked)
                continue
            for index, (keys, values) in enumerate(cache.layer_tensors()):
                targets += [self.keys[index][row:row + 1, :, :length], self.values[index][row:row + 1, :, :length]]
                sources += [keys, values]
        if targets:
            torch._foreach_copy_(targets, sources)  # a few multi-tensor kernels, not 2 x layers x rows
        self.lengths = [c.length for c in caches]
        self.starts = list(self.lengths)
        self._open_columns()

    def _open_columns(self) -> None:
        """Mask: row r sees columns [0, lengths[r]) (one op; later steps open one column each)."""
        lengths = torch.tensor(self.lengths, dtype=torch.long).to(self.mask.device, non_blocking=True)
        columns = torch.arange(self.max_len, device=self.mask.device)
        visible = (columns.unsqueeze(0) < lengths.unsqueeze(1)).view_as(self.mask)
        self.mask.copy_(torch.where(visible, 0.0, torch.finfo(self.mask.dtype).min))

    @torch.no_grad()
    def prefill_rows(self, embeds: Sequence[torch.Tensor], tail: int | None = None,
                     tree: DraftTree | None = None) -> torch.Tensor:
        """Batched prefill after load(): the graph of the bucketed width when prefill_graph() made one
        that fits, else eager. Each row's last hidden state (B, hidden), or last `tail` (B, tail, hidden).
        With `tree` each row's last tree.size tokens are a draft tree's nodes (tree.py)."""
        counts = [e.shape[0] for e in embeds]
        width = prefill_bucket(max(counts), self.max_prefill)
        graph = self.prefills.get(width) if len(counts) == self.rows and max(counts) <= max(
            self.max_prefill, self.max_long) and max(self.lengths) + width <= self.max_len else None
        if graph is None:
            return self._eager_prefill_rows(embeds, tail, tree)
        hidden = graph.run(embeds, self.lengths, tail, tree)
        self.lengths = [length + count for length, count in zip(self.lengths, counts)]
        self._open_columns()
        return hidden

    def _eager_prefill_rows(self, embeds: Sequence[torch.Tensor], tail: int | None = None,
                            tree: DraftTree | None = None) -> torch.Tensor:
        """Eager batched prefill on the scratch after load(): row r's (T_r, hidden) new embeddings go
        right-padded at positions lengths[r] onward, each token seeing its row's context and the new
        tokens up to itself. Padding tokens write columns past the row's end that stay masked (the next
        decode step of the row overwrites the first). Returns the last real hidden state per row (B, hidden)
        (with `tail`: the last `tail` ones, (B, tail, hidden))."""
        text_model = self.text_model
        device = self.mask.device
        counts = [e.shape[0] for e in embeds]
        width = max(counts)
        span = max(self.lengths) + width
        if span > self.max_len:
            raise ValueError(f"batched prefill needs {span} scratch tokens, the scratch holds {self.max_len}")
        batch = torch.nn.utils.rnn.pad_sequence(list(embeds), batch_first=True)
        starts = torch.tensor(self.lengths, dtype=torch.long).to(device, non_blocking=True)
        slots = starts.unsqueeze(1) + torch.arange(width, device=device).unsqueeze(0)  # (B, W)
        columns = torch.arange(span, device=device)
        if tree is None:
            position = slots
            visible = columns.view(1, 1, span) <= position.unsqueeze(2)  # (B, W, span)
        else:
            offsets, block = (part.to(device) for part in tree_block(tree, counts, width))
            position = starts.unsqueeze(1) + offsets
            visible = scratch_visibility(columns, starts, block)
        mask = torch.where(visible, 0.0, torch.finfo(self.mask.dtype).min).to(self.mask.dtype).unsqueeze(1)
        kv = StaticKV(self.keys, self.values, slots, columns=span)
        extra = {"cache_position": position[0]} if self._extra else {}
        out = text_model.decoder(
            inputs_embeds=batch, attention_mask={"full_attention": mask}, position_ids=position,
            use_cache=True, **{text_model._cache_arg: kv}, **extra)
        hidden = last_hidden(out.last_hidden_state, counts, tail)
        self.lengths = [length + count for length, count in zip(self.lengths, counts)]
        self._open_columns()
        return hidden

    @torch.no_grad()
    def step(self, tokens: Sequence[int], active: Sequence[bool]) -> torch.Tensor:
        """Feed one token per row at its next position; inactive rows write a column nobody sees."""
        device = self.tokens.device
        self.tokens.copy_(torch.tensor(list(tokens), dtype=torch.long), non_blocking=True)
        self.position.copy_(torch.tensor(self.lengths, dtype=torch.long).unsqueeze(1), non_blocking=True)
        open_rows = [row for row, is_active in enumerate(active) if is_active]
        cols = torch.tensor([self.lengths[row] for row in open_rows], device=device)
        self.mask[torch.tensor(open_rows, device=device), 0, 0, cols] = 0.0
        if self.graph is not None:
            self.graph.replay()
        else:
            self._body()
        for row in open_rows:
            self.lengths[row] += 1
        return self.hidden.clone()

    def rollback(self, drops: Sequence[int]) -> None:
        """Forget each row's last drops[r] tokens (rejected speculative drafts): the row ends earlier and
        its mask closes those columns; the next token written to the row overwrites the first of them."""
        self.lengths = [length - drop for length, drop in zip(self.lengths, drops)]
        self._open_columns()

    def keep_tree(self, paths: Sequence[Sequence[int]], size: int) -> None:
        """Each row's last `size` tokens are a draft tree's nodes: move those on paths[row] to the
        columns right after the turn (their K/V already carry the right positions), forget the rest."""
        rows, sources, targets = [], [], []
        for row, path in enumerate(paths):
            first = self.lengths[row] - size
            for offset, node in enumerate(path):
                if node != offset:
                    rows.append(row)
                    sources.append(first + node)
                    targets.append(first + offset)
            self.lengths[row] = first + len(path)
        if rows:  # one gather + one scatter per K/V for all rows and layers
            device = self.keys_all.device
            row_index, source, target = (torch.tensor(x, device=device) for x in (rows, sources, targets))
            for buffer in (self.keys_all, self.values_all):
                buffer[:, row_index, :, target] = buffer[:, row_index, :, source]
        self._open_columns()

    def store(self, caches: Sequence[SessionCache]) -> None:
        """Each session whose row changed since load() becomes a view of its whole row (context + new
        columns), no copy: the row stays its own until another session is loaded there (evict()).
        Decode steps and padded prefills only write columns past a row's length, which no view covers.
        (A row rolled back below a cache that was prefilled before load() changed too.)"""
        for row, cache in enumerate(caches):
            length = self.lengths[row]
            if length > self.starts[row] or length != cache.length:
                cache.adopt(self.keys_all[:, row:row + 1, :, :length], self.values_all[:, row:row + 1, :, :length])
                self.owners[row] = weakref.ref(cache)


class GraphStepper:
    """Stepper whose prefill is eager (in place or ragged) and whose decode steps use a GraphedDecoder."""

    def __init__(self, caches: Sequence[SessionCache], decoder: GraphedDecoder, turn_tokens: int = 256,
                 head_decoder: GraphedDecoder | None = None):
        self.caches, self.decoder = list(caches), decoder
        self.text_model = caches[0].text_model
        self.turn_tokens = turn_tokens  # segments up to this long are batched whole
        self.head_decoder = head_decoder  # one row: long segment heads as a graph (else eagerly)

    def prefill(self, embeds, tail: int | None = None, tree: DraftTree | None = None) -> torch.Tensor:
        """Each row's last hidden state (B, hidden), or its last `tail` ones (B, tail, hidden). With a
        tail (speculative decoding) the smallest prefill graph is captured first for extend(). With
        `tree` each row's last tree.size tokens are a draft tree's nodes (tree.py)."""
        if tail is not None:  # a capture writes scratch columns: now, before any row is loaded
            self.decoder.prefill_graph([c.length for c in self.caches], [1] * len(self.caches))
        if len(self.caches) == 1:
            hidden = self.decoder.prefill_one(self.caches[0], embeds[0], tail, tree)
            if hidden is not None:  # the new tokens are in the scratch; finish() stores them
                return hidden
            hidden = SingleStepper(self.caches[0]).prefill(embeds, tail, tree)
            self.decoder.load(self.caches)
            return hidden
        # Several rows: one batched prefill on the scratch (no padded copies of the caches). A row with
        # a long segment (a window's memory) prefills its head alone first, so the batch is not padded
        # to its length: one such row would otherwise make every row's prefill ~8x longer.
        width = batch_width([e.shape[0] for e in embeds], self.turn_tokens)
        embeds = prefill_long_heads(self.caches, embeds, width, self._prefill_head)
        self.decoder.prefill_graph([c.length for c in self.caches], [e.shape[0] for e in embeds])
        self.decoder.load(self.caches)
        return self.decoder.prefill_rows(embeds, tail, tree)

    def _prefill_head(self, cache: SessionCache, embeds: torch.Tensor) -> None:
        head = self.head_decoder
        if head is not None and head.prefill_one(cache, embeds) is not None:
            head.store([cache])  # the row (context + head) back to the session, one copy per K/V
        else:
            cache.prefill(embeds)

    def advance(self, tokens, active) -> torch.Tensor:
        return self.decoder.step(tokens, active)

    def extend(self, tokens: Sequence[Sequence[int]]) -> torch.Tensor:
        """Feed each row's tokens (rows may have none) in one forward on the scratch, as the prefill graph
        of the smallest width (captured in prefill(), before the rows were loaded) when they fit. Rows are
        padded to one width with throwaway tokens that are rolled back. Returns (B, width, hidden)."""
        width = max(len(row) for row in tokens)
        padded = [list(row) + [0] * (width - len(row)) for row in tokens]
        hidden = self.decoder.prefill_rows([self.text_model.embed(row) for row in padded], tail=width)
        self.decoder.rollback([width - len(row) for row in tokens])
        return hidden

    def rollback(self, drops: Sequence[int]) -> None:
        self.decoder.rollback(drops)

    def keep_tree(self, paths: Sequence[Sequence[int]], size: int) -> None:
        self.decoder.keep_tree(paths, size)

    def finish(self) -> None:
        self.decoder.store(self.caches)


def batch_width(counts: Sequence[int], turn_tokens: int) -> int:
    """New tokens per row in a batched prefill: the longest turn-sized segment (longer rows are split)."""
    short = [c for c in counts if c <= turn_tokens]
    return max(short) if short else turn_tokens


def scratch_need(lengths: Sequence[int], counts: Sequence[int], turn_tokens: int) -> int:
    """Scratch columns a batched prefill uses: a row ends at length + max(count, width), the width
    padded to its graph bucket (a graph that would not fit runs eagerly on max(counts) instead)."""
    width = batch_width(counts, turn_tokens) if len(counts) > 1 else max(counts)
    width = prefill_bucket(width, turn_tokens)
    return max(length + max(count, width) for length, count in zip(lengths, counts))


def prefill_long_heads(caches: Sequence[SessionCache], embeds, width: int,
                       prefill: Callable[[SessionCache, torch.Tensor], object] | None = None) -> list[torch.Tensor]:
    """Rows longer than `width` tokens: prefill all but their last `width` tokens first (one row
    each, with `prefill(cache, embeds)`, default eager in place: the same math split in two chunks);
    returns what is left to batch, at most `width` per row."""
    rest = []
    for cache, row in zip(caches, embeds):
        if row.shape[0] > width:
            head = row[: row.shape[0] - width]
            if prefill is None:
                cache.prefill(head)
            else:
                prefill(cache, head)
            row = row[row.shape[0] - width:]
        rest.append(row)
    return rest


class EncoderGraphs:
    """`encode_frames` with the vision tower + projector + pooling replayed as CUDA graphs.

    Mirrors SlowFastForCausalLM.encode_frames: the normalisation runs eagerly (a few kernels; it
    builds small tensors from Python lists, which a capture cannot), the rest is one graph per input
    shape, captured on first use.
    """

    def __init__(self, model):
        from agent.pooling import pool_frame_tokens
        from agent.processor import preprocess_on_device

        self.model, self.pool, self.preprocess = model, pool_frame_tokens, preprocess_on_device
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}

    def _body(self, pixels: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        return self.pool(self.model.projector(self.model.vision_tower(pixels)), config.pooling, config.pooled_grid)

    @torch.no_grad()
    def _capture(self, pixels: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_in = pixels.clone()
        graph, static_out = capture_graph(lambda: self._body(static_in))
        return graph, static_in, static_out

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        config = self.model.config
        pixels = self.preprocess(images, config.image_size, config.image_mean, config.image_std,
                                 dtype=self.model.vision_tower.dtype)
        key = tuple(pixels.shape)
        if key not in self.graphs:
            self.graphs[key] = self._capture(pixels)
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(pixels)
        graph.replay()
        return static_out.clone()
