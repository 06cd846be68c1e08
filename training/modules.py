"""The module DeepSpeed wraps: model + loss strategy, so `engine(batch)` is the whole forward.

Two paths, chosen by SpeedConfig (not by model name):
- plain: `model(**batch).loss` (full logits, padded batch): the Hugging Face way, the baseline.
- split: embed (multimodal) -> optional padding-free packing -> LM backbone -> lm_head + CE on
  assistant tokens only (training/loss.py). Needs a `ModelParts` adapter for the model class.

Adapters implement three calls on the wrapped model: `embed(batch)` -> (inputs_embeds,
attention_mask, labels) with visual tokens already inserted; `backbone(...)` -> last hidden states;
`lm_head` -> the output projection module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn
from transformers.utils import ModelOutput

from training.config import SpeedConfig
from training.loss import TokenLosses, assistant_only_cross_entropy, full_logits_cross_entropy
from training.packing import pack_padded, packed_label_count


@dataclass
class Embedded:
    inputs_embeds: torch.Tensor  # (B, T, H)
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), visual tokens -100
    position_ids: torch.Tensor | None = None  # (B, T); needed for left padding


class ModelParts(Protocol):
    lm_head: nn.Module

    def embed(self, batch: dict[str, Any]) -> Embedded: ...

    def host_info(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Python-side facts about the CPU batch (before it moves to the device) that embed / packing
        would otherwise read back from the GPU: {"host_lengths": per-sample LM tokens, ...}."""
        ...

    def backbone(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                 position_ids: torch.Tensor | None, **attention_kwargs) -> torch.Tensor: ...


class CausalLMParts:
    """A Hugging Face *ForCausalLM (text only): token embeddings, `base_model`, output embeddings."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.lm_head = model.get_output_embeddings()

    def embed(self, batch: dict[str, Any]) -> Embedded:
        input_ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        return Embedded(self.model.get_input_embeddings()(input_ids), mask, batch["labels"])

    def host_info(self, batch: dict[str, Any]) -> dict[str, Any]:
        mask = batch.get("attention_mask")
        lengths = mask.sum(1) if mask is not None else torch.full((batch["input_ids"].shape[0],), batch["input_ids"].shape[1])
        return {"host_lengths": tuple(lengths.tolist()), "host_labelled": packed_label_count(batch["labels"], mask)}

    def backbone(self, inputs_embeds, attention_mask, position_ids, **attention_kwargs):
        out = self.model.base_model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                    position_ids=position_ids, use_cache=False, **attention_kwargs)
        return out.last_hidden_state


class SlowFastParts:
    """agent.modeling.SlowFastForCausalLM: frames -> vision tower + projector + pooling, inserted at
    the placeholders (model.embed_multimodal); the Qwen2 backbone and lm_head of its language_model."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.lm_head = model.language_model.get_output_embeddings()

    def embed(self, batch: dict[str, Any]) -> Embedded:
        frames = self.model.encode_frames(batch["images"])
        embeds, mask, labels, positions = self.model.embed_multimodal(
            batch["input_ids"], batch.get("attention_mask"), batch["labels"], frames,
            batch.get("num_memory"), batch.get("image_counts"), layout=batch.get("host_layout"))
        return Embedded(embeds, mask, labels, positions)

    def host_info(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Validates the placeholders against the frames on the CPU (clear errors, no GPU sync)."""
        from agent.multimodal import host_layout

        input_ids = batch["input_ids"]
        mask = batch.get("attention_mask")
        mask = torch.ones_like(input_ids) if mask is None else mask
        num_memory = batch.get("num_memory")
        num_memory = torch.zeros(input_ids.shape[0], dtype=torch.long) if num_memory is None else torch.as_tensor(num_memory)
        counts = batch.get("image_counts")
        if counts is None:  # as embed_multimodal defaults it: the <image> placeholders + history frames
            counts = ((input_ids == self.model.config.image_token_index) & mask.bool()).sum(1) + num_memory
        images = batch.get("images")
        frames = int(images.shape[0]) if isinstance(images, torch.Tensor) else 0
        layout = host_layout(input_ids, mask, counts, num_memory, frames, int(self.model.config.tokens_per_frame))
        return {"host_layout": layout, "host_lengths": layout.lengths,
                "host_labelled": packed_label_count(batch["labels"], mask)}

    def backbone(self, inputs_embeds, attention_mask, position_ids, **attention_kwargs):
        out = self.model.language_model.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                              position_ids=position_ids, use_cache=False, **attention_kwargs)
        return out.last_hidden_state


def parts_for(model: nn.Module) -> ModelParts:
    """The adapter for the model's capabilities (multimodal embedding or a plain causal LM)."""
    if hasattr(model, "embed_multimodal") and hasattr(model, "encode_frames"):
        return SlowFastParts(model)
    if hasattr(model, "get_output_embeddings") and hasattr(model, "base_model"):
        return CausalLMParts(model)
    raise ValueError(f"no ModelParts adapter for {type(model).__name__}: it needs embed_multimodal + "
                     "encode_frames (SlowFast) or get_output_embeddings + base_model (causal LM)")


@dataclass
class StepLoss(ModelOutput):
    """A ModelOutput (a dict) on purpose: DeepSpeed hooks the tensors it finds in the forward's output
    (dicts, lists, tensors; not dataclasses) to run its backward prologue, which starts the backward
    timers and gives the ZeRO optimizer this micro batch's accumulation boundary before its gradient
    hooks fire. Hidden in a plain dataclass, the loss got no hook: `wall_clock_breakdown` failed and
    ZeRO read the previous micro batch's boundary during backward."""

    loss: torch.Tensor | None = None
    token_losses: torch.Tensor | None = None  # per labelled token (detached), None on the plain path
    rows: torch.Tensor | None = None  # batch row of each token loss
    num_tokens: int | torch.Tensor | None = None  # LM tokens processed, padding excluded (a tensor: no sync)


class TrainingModule(nn.Module):
    """`forward(batch) -> StepLoss`; `self.model` is the user's model (exported as is)."""

    def __init__(self, model: nn.Module, speed: SpeedConfig, parts: ModelParts | None = None):
        super().__init__()
        self.model = model
        self.speed = speed
        self._parts = parts  # holds references into self.model only; not a separate submodule
        if (speed.assistant_only_logits or speed.packing) and parts is None:
            raise ValueError("assistant_only_logits / packing need a ModelParts adapter for "
                             f"{type(model).__name__}")

    def forward(self, batch: dict[str, Any]) -> StepLoss:
        if self._parts is None:
            return self._plain(batch)
        return self._split(batch)

    def _plain(self, batch: dict[str, Any]) -> StepLoss:
        model_inputs = {k: v for k, v in batch.items() if k not in NON_MODEL_KEYS}
        out = self.model(**model_inputs)
        mask = batch.get("attention_mask")
        tokens = mask.sum() if mask is not None else batch["input_ids"].numel()
        return StepLoss(out.loss, None, None, tokens)

    def _split(self, batch: dict[str, Any]) -> StepLoss:
        parts = self._parts
        embedded = parts.embed(batch)
        embedded.inputs_embeds = _to_autocast_dtype(embedded.inputs_embeds)
        if self.speed.packing:
            packed = pack_padded(embedded.inputs_embeds, embedded.attention_mask, embedded.labels,
                                 self.speed.pack_multiple, batch.get("host_lengths"))
            # The packed_* kwargs are read by the sdpa_varlen attention (training/attention.py); others ignore them.
            hidden = parts.backbone(packed.inputs_embeds, None, packed.position_ids,
                                    packed_cu_seqlens=packed.cu_seqlens, packed_max_seqlen=packed.max_seqlen)
            labels, sample_of = packed.labels, packed.sample_of_token
            num_tokens = packed.real_tokens
            label_count = batch.get("host_labelled")  # exact for the packed row only
        else:
            hidden = parts.backbone(embedded.inputs_embeds, embedded.attention_mask, embedded.position_ids)
            labels, sample_of = embedded.labels, None
            num_tokens = embedded.attention_mask.sum()
            label_count = None
        losses = self._loss(hidden, labels, parts, label_count)
        rows = losses.rows if sample_of is None else sample_of[losses.cols]  # no second nonzero (a sync)
        return StepLoss(losses.loss, losses.token_losses, rows, num_tokens)

    def _loss(self, hidden: torch.Tensor, labels: torch.Tensor, parts: ModelParts,
              label_count: int | None) -> TokenLosses:
        if self.speed.assistant_only_logits:
            return assistant_only_cross_entropy(hidden, labels, parts.lm_head, self.speed.ce_chunk_tokens, label_count)
        return full_logits_cross_entropy(parts.lm_head(hidden), labels)


def _to_autocast_dtype(embeds: torch.Tensor) -> torch.Tensor:
    """Under torch.autocast (SpeedConfig.torch_autocast) the fp32 embedding table gives fp32 embeddings;
    in the autocast dtype the residual stream, rotary q/k and attention stay bf16 as with a bf16 model
    (half the activation memory and bandwidth, and the fused varlen kernel takes them)."""
    device = embeds.device.type
    if not torch.is_autocast_enabled(device):
        return embeds
    return embeds.to(torch.get_autocast_dtype(device))


# Batch keys that describe the batch for logging and never go into the model.
NON_MODEL_KEYS = frozenset({"task_type", "source", "host_layout", "host_lengths", "host_labelled"})

