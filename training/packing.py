"""Padding-free packing: the valid tokens of a padded micro batch laid end to end in one row.

Position ids restart at 0 for each sample. With attention_mask=None, transformers (masking_utils
`find_packed_sequence_indices`) turns restarting position ids into a block-diagonal causal mask for
SDPA / FlexAttention, so no sample attends to another and no FLOP is spent on padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.loss import IGNORE_INDEX


@dataclass
class Packed:
    inputs_embeds: torch.Tensor  # (1, N, H)
    position_ids: torch.Tensor  # (1, N)
    labels: torch.Tensor  # (1, N); the first token of each sample is IGNORE_INDEX
    sample_of_token: torch.Tensor  # (N,) batch row each packed token came from
    bounds: tuple[int, ...]  # start of each sample and the total, as Python ints (0, n0, n0 + n1, ...)


def pack_padded(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> Packed:
    """Keep tokens where attention_mask is 1 (left or right padding), in order, one sample after another."""
    valid = attention_mask.bool()
    lengths = valid.sum(dim=1)
    host_lengths = lengths.tolist()  # one sync; packing has data-dependent shapes anyway
    if min(host_lengths) == 0:
        raise ValueError("cannot pack a micro batch with an empty sample (attention_mask all zero)")
    bounds = [0]
    for length in host_lengths:
        bounds.append(bounds[-1] + length)
    rows, _ = torch.nonzero(valid, as_tuple=True)
    starts = torch.cumsum(lengths, 0) - lengths
    positions = torch.arange(rows.numel(), device=rows.device) - starts[rows]
    packed_labels = labels[valid].clone()
    # A sample's first token would otherwise be "predicted" from the previous sample's last token.
    packed_labels[starts] = IGNORE_INDEX
    return Packed(
        inputs_embeds=inputs_embeds[valid].unsqueeze(0),
        position_ids=positions.unsqueeze(0),
        labels=packed_labels.unsqueeze(0),
        sample_of_token=rows,
        bounds=tuple(bounds),
    )
