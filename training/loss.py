"""Causal-LM loss over assistant tokens only, without materialising full logits.

Only assistant turns carry labels (everything else is IGNORE_INDEX = -100), typically a few percent
of a StreamVLN sequence. `assistant_only_cross_entropy` gathers the hidden states that predict a
labelled token, runs lm_head + cross-entropy on those rows only, in chunks that are recomputed in the
backward pass (so at most one chunk of logits is alive). The result equals Hugging Face's
`ForCausalLMLoss` (mean over labelled tokens of the micro batch) to float tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from agent.multimodal import nonzero_indices

IGNORE_INDEX = -100


@dataclass
class TokenLosses:
    """Per labelled token: its loss and the batch row it came from (for per-task logging)."""

    loss: torch.Tensor  # scalar mean used for backward
    token_losses: torch.Tensor  # (N,) detached
    rows: torch.Tensor  # (N,) batch row of each labelled token
    cols: torch.Tensor | None = None  # (N,) column of the hidden state that predicts it (packed rows: maps to samples)


def shifted_label_positions(labels: torch.Tensor, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, positions, targets) for every hidden state at t that predicts a label at t+1. `count`: how
    many there are, known on the host (training.packing.packed_label_count); it saves the sync that
    nonzero needs to size its output, and must be exact (it is checked where that is free: on the CPU)."""
    next_labels = labels[:, 1:]
    keep = next_labels != IGNORE_INDEX
    if count is not None and keep.device.type == "cpu" and int(keep.sum()) != count:
        raise ValueError(f"host label count {count} != {int(keep.sum())} labelled positions in the micro batch")
    rows, cols = nonzero_indices(keep, count)
    return rows, cols, next_labels[rows, cols]


def _chunk_ce(lm_head: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor,
              targets: torch.Tensor) -> torch.Tensor:
    logits = lm_head(hidden).float()
    return F.cross_entropy(logits, targets, reduction="none")


def assistant_only_cross_entropy(hidden: torch.Tensor, labels: torch.Tensor,
                                 lm_head: Callable[[torch.Tensor], torch.Tensor],
                                 chunk_tokens: int = 4096, count: int | None = None) -> TokenLosses:
    """hidden (B, T, H) from the LM backbone, labels (B, T) unshifted; returns the mean CE. `count`: the
    labelled positions, if known on the host (see shifted_label_positions)."""
    rows, cols, targets = shifted_label_positions(labels, count)
    if targets.numel() == 0:
        # No labelled token in this micro batch: a zero loss that still touches the graph.
        zero = hidden.sum() * 0.0
        return TokenLosses(zero, hidden.new_zeros(0, dtype=torch.float32), rows, cols)
    selected = hidden[rows, cols]
    pieces = []
    for start in range(0, selected.shape[0], chunk_tokens):
        part = selected[start:start + chunk_tokens]
        part_targets = targets[start:start + chunk_tokens]
        if torch.is_grad_enabled() and part.requires_grad:
            pieces.append(checkpoint(_chunk_ce, lm_head, part, part_targets, use_reentrant=False))
        else:
            pieces.append(_chunk_ce(lm_head, part, part_targets))
    token_losses = torch.cat(pieces)
    return TokenLosses(token_losses.mean(), token_losses.detach(), rows, cols)


def full_logits_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> TokenLosses:
    """The reference path (full logits), used when the lever is off and in tests."""
    rows, cols, targets = shifted_label_positions(labels)
    token_losses = F.cross_entropy(logits[rows, cols].float(), targets, reduction="none")
    mean = token_losses.mean() if targets.numel() else logits.sum() * 0.0
    return TokenLosses(mean, token_losses.detach(), rows, cols)


def per_group_loss_sums(losses: TokenLosses, row_groups: list[str]) -> dict[str, tuple[float, int]]:
    """{group: (sum of token losses, token count)} for logging loss per task type or source."""
    result: dict[str, tuple[float, int]] = {}
    if losses.token_losses.numel() == 0:
        return result
    rows = losses.rows.tolist()
    values = losses.token_losses.tolist()
    for row, value in zip(rows, values):
        total, count = result.get(row_groups[row], (0.0, 0))
        result[row_groups[row]] = (total + value, count + 1)
    return result
