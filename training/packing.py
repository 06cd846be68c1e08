"""Padding-free packing: the valid tokens of a padded micro batch laid end to end in one row.

Position ids restart at 0 for each sample. With attention_mask=None, transformers (masking_utils
`find_packed_sequence_indices`) turns restarting position ids into a block-diagonal causal mask for
SDPA / FlexAttention, so no sample attends to another and no FLOP is spent on padding; the
sdpa_varlen attention (training/attention.py) reads `cu_seqlens` instead.

Bucketing (`multiple` > 0): the packed row is padded up to a multiple of `multiple` tokens, so
torch.compile with static shapes sees a few lengths instead of a new one every step. (The LM's packed
attention runs the flash varlen kernel, which builds nothing per shape; buckets gave no measured speed-up
of the 1.5b learner, session 15.) The padding is one extra trailing "sample" (its own causal block: no
real token attends to it), label -100 (no loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from agent.multimodal import nonzero_indices
from training.loss import IGNORE_INDEX


@dataclass
class Packed:
    inputs_embeds: torch.Tensor  # (1, N, H), N = real tokens + bucket padding
    position_ids: torch.Tensor  # (1, N)
    labels: torch.Tensor  # (1, N); the first token of each sample and all padding are IGNORE_INDEX
    sample_of_token: torch.Tensor  # (N,) batch row each packed token came from (padding: the last row)
    bounds: tuple[int, ...]  # start of each sample and the real total, as Python ints (0, n0, n0 + n1, ...)
    cu_seqlens: torch.Tensor  # int32 (S + 1,), (S + 2,) with buckets (padding block, maybe empty): starts and N
    # An upper bound of any block's length. Flash varlen kernels size their grid and softmax buffers as
    # (samples x max_seqlen), so the packed total N would cost O(samples x N), quadratic in the micro
    # batch: it is the longest sample rounded up to a power of two, a few distinct values for a compiled
    # layer to see. With buckets it also covers the longest possible padding block (multiple - 1), so
    # the padding's length, which changes every step, never changes it.
    max_seqlen: int

    @property
    def real_tokens(self) -> int:
        return self.bounds[-1]


def bucketed_length(tokens: int, multiple: int) -> int:
    """`tokens` rounded up to a multiple of `multiple` (0 or 1: unchanged)."""
    if multiple <= 1:
        return tokens
    return -(-tokens // multiple) * multiple


def next_power_of_two(value: int) -> int:
    """The smallest power of two >= value (value >= 1)."""
    return 1 << (value - 1).bit_length()


def packed_label_count(labels: torch.Tensor, attention_mask: torch.Tensor | None) -> int:
    """Labelled positions the loss sees after `pack_padded`, counted on the CPU batch: each sample's
    labels except its first valid token's (packing ignores it; the model's visual-token insertion keeps
    the order and labels no inserted token). Known on the host, it sizes the loss's index tensors
    without a device->host sync."""
    valid = attention_mask.bool() if attention_mask is not None else torch.ones_like(labels, dtype=torch.bool)
    labelled = (labels != IGNORE_INDEX) & valid
    if labelled.shape[0]:
        labelled[torch.arange(labelled.shape[0]), valid.int().argmax(dim=1)] = False
    return int(labelled.sum())


def pack_padded(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                multiple: int = 0, lengths: Sequence[int] | None = None) -> Packed:
    """Keep tokens where attention_mask is 1 (left or right padding), in order, one sample after another;
    then pad the row to a multiple of `multiple` tokens (0: no padding). `lengths`: each sample's valid
    tokens, known on the host (the learner measures the CPU batch); None reads them from the mask (a sync)."""
    valid = attention_mask.bool()
    device_lengths = valid.sum(dim=1)
    host_lengths = list(lengths) if lengths is not None else device_lengths.tolist()
    if len(host_lengths) != valid.shape[0]:
        raise ValueError(f"pack_padded: {len(host_lengths)} host lengths for a batch of {valid.shape[0]}")
    if min(host_lengths) == 0:
        raise ValueError("cannot pack a micro batch with an empty sample (attention_mask all zero)")
    bounds = [0]
    for length in host_lengths:
        bounds.append(bounds[-1] + length)
    real = bounds[-1]
    total = bucketed_length(real, multiple)
    pad = total - real
    rows, cols = nonzero_indices(valid, real)  # sized on the host: no sync
    starts = torch.cumsum(device_lengths, 0) - device_lengths
    positions = torch.arange(real, device=rows.device) - starts[rows]
    packed_labels = labels[rows, cols]  # advanced indexing copies: labels stays untouched
    # A sample's first token would otherwise be "predicted" from the previous sample's last token.
    # index_fill_ takes the value as a Python scalar: `x[idx] = v` copies v to the GPU and syncs.
    packed_labels.index_fill_(0, starts, IGNORE_INDEX)
    embeds = inputs_embeds[rows, cols]
    # With buckets the padding block is always there (maybe empty): the cu_seqlens shape stays fixed.
    cu_bounds = bounds + ([total] if multiple > 1 else [])
    if pad:
        embeds = torch.cat([embeds, embeds.new_zeros(pad, embeds.shape[-1])])
        positions = torch.cat([positions, torch.arange(pad, device=rows.device)])
        packed_labels = torch.cat([packed_labels, packed_labels.new_full((pad,), IGNORE_INDEX)])
        rows = torch.cat([rows, rows.new_full((pad,), len(host_lengths) - 1)])
    return Packed(
        inputs_embeds=embeds.unsqueeze(0),
        position_ids=positions.unsqueeze(0),
        labels=packed_labels.unsqueeze(0),
        sample_of_token=rows,
        bounds=tuple(bounds),
        cu_seqlens=torch.tensor(cu_bounds, dtype=torch.int32).to(inputs_embeds.device, non_blocking=True),
        max_seqlen=next_power_of_two(max(*host_lengths, multiple - 1)),
    )
