"""Decode steps as a CUDA graph over a static K/V scratch (the launch-bound part of a call).

A 7B decode step in eager mode is ~20 ms of kernel launches for ~5 ms of weight reads. After a
call's prefill, the sessions' caches are copied into a static scratch of B rows x `max_len` tokens (a
fraction of a millisecond); each decode step then replays one captured graph: embed the B tokens,
run the decoder with the scratch as its cache (each row's new K/V scattered at its own position,
attention over the whole scratch with a static additive mask that opens one column per active row
per step), and leave the final hidden states in a static buffer. Afterwards each session's new
columns are appended to its own cache. One graph (and scratch) per batch size, built on first use.

The same code runs without a graph (`use_graph=False`) for CPU tests of the static path.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence

import torch

from agent.streaming.batching import RaggedStepper
from agent.streaming.cache import SessionCache, TextModel

log = logging.getLogger(__name__)


def capture_graph(body: Callable[[], torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Warm `body` up on a side stream, then capture it; returns the graph and its output buffer."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # allocations and autotuning happen outside the graph
            body()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = body()
    return graph, out


class StaticKV:
    """The cache surface Qwen2 attention uses: update(k, v, layer_idx) -> the full static buffers."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], position: torch.Tensor):
        self.keys, self.values = keys, values
        rows, heads, _, head_dim = keys[0].shape
        count = position.shape[1]  # new tokens per row: position is (rows, count)
        self.index = position.view(rows, 1, count, 1).expand(rows, heads, count, head_dim)  # follows position
        self.is_compileable = True

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx].scatter_(2, self.index, key_states)
        self.values[layer_idx].scatter_(2, self.index, value_states)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.keys[0].shape[-2]


class GraphedDecoder:
    """Decode steps for `rows` sessions at a time over a static scratch of `max_len` tokens per row."""

    def __init__(self, text_model: TextModel, max_len: int, rows: int = 1, use_graph: bool = True,
                 max_prefill: int = 0):
        config = text_model.config
        heads = config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        device, dtype = text_model.device, text_model.dtype
        self.text_model, self.max_len, self.rows = text_model, max_len, rows
        shape = (rows, heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.num_hidden_layers)]
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
        self.max_prefill = max_prefill if rows == 1 else 0  # graphed prefill: one row, short segments
        self.prefills: dict[int, ScratchPrefill] = {}
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

    def prefill_one(self, cache: SessionCache, embeds: torch.Tensor) -> torch.Tensor | None:
        """One row: load `cache`, then run the (T, hidden) new embeddings on the scratch (a graph per T).
        Returns the last hidden state (1, hidden), or None when T is too long for a graph."""
        count = embeds.shape[0]
        if count > self.max_prefill:
            return None
        if count not in self.prefills:
            try:
                self.prefills[count] = ScratchPrefill(self, count, self.use_graph)
            except RuntimeError as error:  # capture failed: prefill eagerly from now on
                log.warning("CUDA graph capture of a %d-token prefill failed (%s)", count, error)
                self.errors.append(f"prefill {count} tokens: {error}")
                self.max_prefill = 0
                return None
        self.load([cache])
        length = self.lengths[0]
        hidden = self.prefills[count].run(embeds, length)
        self.mask[0, ..., length:length + count] = 0.0
        self.lengths[0] = length + count
        return hidden

    def load(self, caches: Sequence[SessionCache]) -> None:
        """Copy each session's context into its row and open its columns in the mask."""
        self.mask.fill_(torch.finfo(self.mask.dtype).min)
        for row, cache in enumerate(caches):
            length = cache.length
            for index, (keys, values) in enumerate(cache.layer_tensors()):
                self.keys[index][row:row + 1, :, :length].copy_(keys)
                self.values[index][row:row + 1, :, :length].copy_(values)
            self.mask[row, ..., :length] = 0.0
        self.lengths = [c.length for c in caches]
        self.starts = list(self.lengths)

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

    def store(self, caches: Sequence[SessionCache]) -> None:
        """Append the columns each row wrote since load() to its session's cache."""
        for row, cache in enumerate(caches):
            new = slice(self.starts[row], self.lengths[row])
            if new.stop > new.start:
                cache.replace([(torch.cat([k, self.keys[i][row:row + 1, :, new]], dim=-2),
                                torch.cat([v, self.values[i][row:row + 1, :, new]], dim=-2))
                               for i, (k, v) in enumerate(cache.layer_tensors())])


class ScratchPrefill:
    """`count` new tokens of row 0 onto a GraphedDecoder's scratch, replayed as a graph."""

    def __init__(self, decoder: GraphedDecoder, count: int, use_graph: bool):
        text_model = decoder.text_model
        device, dtype = text_model.device, text_model.dtype
        self.decoder, self.count = decoder, count
        self.embeds = torch.zeros((1, count, text_model.config.hidden_size), dtype=dtype, device=device)
        self.position = torch.zeros((1, count), dtype=torch.long, device=device)
        self.mask = torch.full((1, 1, count, decoder.max_len), torch.finfo(dtype).min, dtype=dtype, device=device)
        self.kv = StaticKV(decoder.keys, decoder.values, self.position)
        self.extra = {"cache_position": self.position[0]} if decoder._extra else {}
        self.columns = torch.arange(decoder.max_len, device=device)
        self.offsets = torch.arange(count, device=device)
        self.graph, self.hidden = None, None
        if use_graph:
            with torch.no_grad():
                self.graph, self.hidden = capture_graph(self._body)

    def _body(self) -> torch.Tensor:
        text_model = self.decoder.text_model
        out = text_model.decoder(
            inputs_embeds=self.embeds, attention_mask={"full_attention": self.mask}, position_ids=self.position,
            use_cache=True, **{text_model._cache_arg: self.kv}, **self.extra)
        self.hidden = out.last_hidden_state[:, -1]
        return self.hidden

    @torch.no_grad()
    def run(self, embeds: torch.Tensor, length: int) -> torch.Tensor:
        """Tokens at positions length .. length+count-1, each seeing the context and the new tokens up to it."""
        self.embeds.copy_(embeds.unsqueeze(0))
        rows = self.offsets + length
        self.position.copy_(rows.unsqueeze(0))
        visible = self.columns.unsqueeze(0) <= rows.unsqueeze(1)
        self.mask.copy_(torch.where(visible, 0.0, torch.finfo(self.mask.dtype).min).view_as(self.mask))
        if self.graph is not None:
            self.graph.replay()
        else:
            self._body()
        return self.hidden.clone()


class GraphStepper:
    """Stepper whose prefill is eager (in place or ragged) and whose decode steps use a GraphedDecoder."""

    def __init__(self, caches: Sequence[SessionCache], decoder: GraphedDecoder):
        self.caches, self.decoder = list(caches), decoder
        self.text_model = caches[0].text_model

    def prefill(self, embeds) -> torch.Tensor:
        if len(self.caches) == 1:
            hidden = self.decoder.prefill_one(self.caches[0], embeds[0])
            if hidden is not None:  # the new tokens are in the scratch; finish() stores them
                return hidden
            hidden = self.caches[0].prefill(embeds[0])[-1:].clone()
        else:
            ragged = RaggedStepper(self.caches)
            hidden = ragged.prefill(embeds)
            ragged.finish()
        self.decoder.load(self.caches)
        return hidden

    def advance(self, tokens, active) -> torch.Tensor:
        return self.decoder.step(tokens, active)

    def finish(self) -> None:
        self.decoder.store(self.caches)


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
