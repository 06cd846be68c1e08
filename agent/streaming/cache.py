"""The explicit KV cache of one session (nanochat engine.py style) and the text-model handle it drives.

`SessionCache` owns a transformers DynamicCache plus the bookkeeping transformers does not keep for
us: the token count (= the next RoPE position, positions continue across turns) and the length of the
system/instruction prefix that survives a window boundary. Truncation slices the per-layer tensors
(transformers' own `crop` changed meaning between 5.x releases).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers import DynamicCache


class TextModel:
    """The parts of a causal LM the agent drives: token embeddings, the decoder stack, a sliced head.

    The head keeps only the rows of the lm_head weight for the ids allowed while decoding (the action
    symbols + the end marker), so a decode step computes A logits instead of the whole vocabulary.
    Build a new TextModel after loading new weights (the slice is a copy).
    """

    def __init__(self, language_model: torch.nn.Module, allowed_ids: Sequence[int]):
        self.language_model = language_model
        self.decoder = language_model.get_decoder()
        self.embeddings = language_model.get_input_embeddings()
        self.lm_head = language_model.get_output_embeddings()
        self.config = language_model.config
        self.allowed_ids = [int(i) for i in allowed_ids]
        index = torch.tensor(self.allowed_ids, device=self.lm_head.weight.device)
        self.head_weight = self.lm_head.weight.detach().index_select(0, index)
        bias = getattr(self.lm_head, "bias", None)
        self.head_bias = None if bias is None else bias.detach().index_select(0, index)
        # transformers 5.24 renamed the decoder's `past_key_values` argument to `cache`.
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"

    @property
    def device(self) -> torch.device:
        return self.head_weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.head_weight.dtype

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.config)

    def embed(self, ids: Sequence[int]) -> torch.Tensor:
        """(T, hidden) embeddings of text token ids (no placeholders)."""
        tensor = torch.as_tensor(list(ids), dtype=torch.long, device=self.device)
        return self.embeddings(tensor)

    @torch.no_grad()
    def run(self, embeds: torch.Tensor, cache: DynamicCache | None, position_ids: torch.Tensor,
            attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final-norm hidden states (B, T, hidden) of `embeds` (B, T, hidden) on top of `cache`."""
        out = self.decoder(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids,
                           use_cache=cache is not None, **{self._cache_arg: cache})
        return out.last_hidden_state

    def allowed_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits (..., A) for the allowed ids only."""
        logits = hidden.to(self.head_weight.dtype) @ self.head_weight.T
        if self.head_bias is not None:
            logits = logits + self.head_bias
        return logits.float()

    def full_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 logits over the whole vocabulary (for checks, not for decoding)."""
        return self.lm_head(hidden.to(self.lm_head.weight.dtype)).float()


class SessionCache:
    """One session's context in the LM: reset / prefill / advance / truncate_to / keep_prefix_then."""

    def __init__(self, text_model: TextModel):
        self.text_model = text_model
        self.kv = text_model.new_cache()
        self.length = 0  # tokens in the cache == the RoPE position of the next token
        self.prefix_length = 0  # the system/instruction prefix kept at window boundaries
        self._stacked: tuple[torch.Tensor, torch.Tensor] | None = None  # what adopt() installed

    def reset(self) -> None:
        self.kv = self.text_model.new_cache()
        self._stacked = None
        self.length = 0
        self.prefix_length = 0

    def positions(self, count: int) -> torch.Tensor:
        return torch.arange(self.length, self.length + count, device=self.text_model.device).unsqueeze(0)

    def prefill(self, embeds: torch.Tensor, offsets: torch.Tensor | None = None,
                visible: torch.Tensor | None = None) -> torch.Tensor:
        """Append (T, hidden) embeddings; returns their hidden states (T, hidden). Optionally (a draft
        tree, tree.py) token t sits at position length + offsets[t] and sees the context and the new
        tokens k with visible[t, k] (default: positions in order, causal)."""
        count = embeds.shape[0]
        if count == 0:
            raise ValueError("SessionCache.prefill got an empty segment")
        device = self.text_model.device
        positions = self.positions(count) if offsets is None else (self.length + offsets.to(device)).unsqueeze(0)
        mask = None
        if visible is not None:
            block = torch.where(visible.to(device), 0.0, torch.finfo(embeds.dtype).min).to(embeds.dtype)
            mask = torch.cat([block.new_zeros(count, self.length), block], dim=1).view(1, 1, count, -1)
        hidden = self.text_model.run(embeds.unsqueeze(0), self.kv, positions, mask)
        self.length += count
        return hidden[0]

    def advance(self, token_id: int) -> torch.Tensor:
        """Append one decoded token; returns its hidden state (hidden,)."""
        return self.prefill(self.text_model.embed([token_id]))[-1]

    def mark_prefix(self) -> None:
        self.prefix_length = self.length

    def truncate_to(self, length: int) -> None:
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {length}")
        for layer in self.kv.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys[..., :length, :]
                layer.values = layer.values[..., :length, :]
        self.length = length

    def keep_columns(self, start: int, columns: Sequence[int]) -> None:
        """Keep the tokens at `columns` (increasing, >= start) at start, start + 1, ... and drop every
        other token after `start` (a draft tree's path, tree.py). Their K/V keep their positions."""
        index = torch.tensor(list(columns), dtype=torch.long, device=self.text_model.device)
        for layer in self.kv.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                # The gather copies before the write, so an overlapping move is safe.
                layer.keys[..., start:start + len(columns), :] = layer.keys.index_select(-2, index)
                layer.values[..., start:start + len(columns), :] = layer.values.index_select(-2, index)
        self.truncate_to(start + len(columns))

    def keep_prefix_then(self, embeds: torch.Tensor) -> torch.Tensor:
        """Window boundary: drop everything after the prefix, then prefill `embeds`."""
        self.truncate_to(self.prefix_length)
        return self.prefill(embeds)

    def layer_tensors(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer (keys, values), each (1, kv_heads, length, head_dim)."""
        return [(layer.keys, layer.values) for layer in self.kv.layers]

    def adopt(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Install stacked (layers, 1, kv_heads, length, head_dim) keys and values without copying:
        each layer holds a view, so stacked() can hand the whole context back as one tensor. They
        may be views of a decoder's scratch row (graph.py), which then owns keeping them intact."""
        self._stacked = None
        kv = self.text_model.new_cache()
        if len(kv.layers) != keys.shape[0]:  # a cache class that creates its layers lazily
            self.replace(list(zip(keys.unbind(0), values.unbind(0))))
            return
        for layer, layer_keys, layer_values in zip(kv.layers, keys.unbind(0), values.unbind(0)):
            layer.lazy_initialization(layer_keys, layer_values)
            layer.keys, layer.values = layer_keys, layer_values
        self.kv = kv
        self.length = keys.shape[-2]
        self._stacked = (keys, values)

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(keys, values) as (layers, 1, kv_heads, length, head_dim) views when every layer is still a view
        of the adopt()ed tensors (truncation keeps that); None once a layer was rebuilt elsewhere."""
        if self._stacked is None:
            return None
        keys, values = self._stacked
        layers = self.kv.layers
        if len(layers) != keys.shape[0]:
            return None
        for index, layer in enumerate(layers):
            for tensor, base in ((getattr(layer, "keys", None), keys[index]), (getattr(layer, "values", None), values[index])):
                if (tensor is None or tensor.data_ptr() != base.data_ptr() or tensor.shape[-2] != self.length
                        or tensor.stride() != base.stride()):
                    return None
        return keys[..., : self.length, :], values[..., : self.length, :]

    def replace(self, tensors: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Install per-layer (keys, values) computed elsewhere (the ragged batch writes back here)."""
        kv = self.text_model.new_cache()
        for index, (keys, values) in enumerate(tensors):
            kv.update(keys, values, index)
        self.kv = kv
        self._stacked = None
        self.length = tensors[0][0].shape[-2]
