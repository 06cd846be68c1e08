"""Vectorised insertion of frame and memory tokens into a padded batch of text embeddings.

Each `<image>` placeholder (-200) expands to the P pooled tokens of its frame; the `<memory>`
placeholder (-300) expands to the concatenated pooled tokens of the sample's num_memory history
frames (the first frames of that sample). Every inserted position gets label -100. The whole batch
is scattered with index tensors (no Python loop over tokens or samples); the output keeps the
input's padding side, and position_ids count only real tokens, so left- and right-padded batches
give the same per-sample results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agent.config import IGNORE_INDEX, IMAGE_TOKEN_INDEX, MEMORY_TOKEN_INDEX


@dataclass
class MultimodalInputs:
    inputs_embeds: torch.Tensor  # (B, T, D)
    attention_mask: torch.Tensor  # (B, T) int64
    labels: torch.Tensor | None  # (B, T) int64, -100 on padding and inserted visual tokens
    position_ids: torch.Tensor  # (B, T) int64


def check_placeholder_counts(input_ids, attention_mask, image_counts, num_memory, num_frames) -> None:
    """Raise ValueError naming the sample whose placeholders do not match its frames."""
    valid = attention_mask.bool()
    image_tokens = ((input_ids == IMAGE_TOKEN_INDEX) & valid).sum(1).tolist()
    memory_tokens = ((input_ids == MEMORY_TOKEN_INDEX) & valid).sum(1).tolist()
    counts, memory = image_counts.tolist(), num_memory.tolist()
    if sum(counts) != num_frames:
        raise ValueError(f"image_counts sum to {sum(counts)} but {num_frames} frames were given")
    for sample, (n_img, n_mem, count, mem) in enumerate(zip(image_tokens, memory_tokens, counts, memory)):
        if not 0 <= mem <= count:
            raise ValueError(f"sample {sample}: num_memory {mem} is outside [0, {count}] (its frame count)")
        if n_img != count - mem:
            raise ValueError(
                f"sample {sample}: {n_img} <image> placeholders but {count - mem} non-memory frames"
            )
        if n_mem != (1 if mem else 0):
            raise ValueError(
                f"sample {sample}: {n_mem} <memory> placeholders with {mem} history frames "
                "(need exactly one when there are history frames, none otherwise)"
            )


@dataclass(frozen=True)
class HostLayout:
    """What insert_multimodal needs as Python ints, measured on the CPU batch (the collate's tensors)
    before it moves to the GPU, so the forward has no device->host synchronisation."""

    lengths: tuple[int, ...]  # expanded length of each sample (text + visual tokens, no padding)
    left_padded: bool
    text_tokens: int  # valid positions that are neither <image> nor <memory>
    image_placeholders: int
    memory_placeholders: int
    memory_frames: int  # history frames over all <memory> placeholders

    @property
    def total(self) -> int:
        return max(self.lengths, default=0)


def host_layout(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_counts: torch.Tensor,
                num_memory: torch.Tensor, num_frames: int, tokens_per_frame: int) -> HostLayout:
    """Validate the placeholders against the frames (ValueError naming the sample) and measure the
    layout. Pass CPU tensors (free); device tensors work too, at one copy each."""
    input_ids, attention_mask = input_ids.cpu(), attention_mask.cpu()
    image_counts, num_memory = image_counts.cpu(), num_memory.cpu().reshape(-1)
    check_placeholder_counts(input_ids, attention_mask, image_counts, num_memory, num_frames)
    valid = attention_mask.bool()
    is_image = (input_ids == IMAGE_TOKEN_INDEX) & valid
    is_memory = (input_ids == MEMORY_TOKEN_INDEX) & valid
    images, memories = is_image.sum(1), is_memory.sum(1)
    text = valid.sum(1) - images - memories
    lengths = text + (images + memories * num_memory) * tokens_per_frame
    return HostLayout(
        lengths=tuple(lengths.tolist()),
        left_padded=bool((~valid[:, 0]).any()) if valid.shape[0] else False,
        text_tokens=int(text.sum()),
        image_placeholders=int(images.sum()),
        memory_placeholders=int(memories.sum()),
        memory_frames=int((memories * num_memory).sum()),
    )


def nonzero_indices(mask: torch.Tensor, count: int | None) -> tuple[torch.Tensor, ...]:
    """`mask.nonzero(as_tuple=True)`; with the count known on the host, without the sync that
    nonzero needs to size its output (nonzero_static)."""
    if count is not None:
        try:
            return tuple(torch.nonzero_static(mask, size=count).unbind(1))
        except (NotImplementedError, RuntimeError):  # a backend without nonzero_static
            pass
    return torch.nonzero(mask, as_tuple=True)


def _exclusive_cumsum(values: torch.Tensor) -> torch.Tensor:
    return torch.cumsum(values, 0) - values


def insert_multimodal(
    text_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None,
    frame_features: torch.Tensor,
    image_counts: torch.Tensor,
    num_memory: torch.Tensor,
    layout: HostLayout | None = None,
) -> MultimodalInputs:
    """Scatter text embeddings, frame tokens and memory tokens into the expanded sequence.

    text_embeds: (B, L, D) embeddings of input_ids (placeholder rows are ignored);
    frame_features: (F, P, D) pooled tokens of all frames of the batch, sample after sample;
    layout: host_layout() of the CPU batch (validated there); None measures (and validates) here.
    """
    device = input_ids.device
    frames, per_frame, dim = frame_features.shape
    if layout is None:
        layout = host_layout(input_ids, attention_mask, image_counts, num_memory, frames, per_frame)
    batch = input_ids.shape[0]
    valid = attention_mask.bool()
    is_image = (input_ids == IMAGE_TOKEN_INDEX) & valid
    is_memory = (input_ids == MEMORY_TOKEN_INDEX) & valid
    is_text = valid & ~is_image & ~is_memory
    image_counts, num_memory = image_counts.to(device), num_memory.to(device)

    # How many output positions each input position becomes, and where each one starts.
    widths = is_text.long() + is_image.long() * per_frame + is_memory.long() * (num_memory * per_frame)[:, None]
    ends = torch.cumsum(widths, 1)
    lengths = ends[:, -1]
    total = layout.total if batch else 0
    shift = (total - lengths) if layout.left_padded else torch.zeros_like(lengths)
    starts = ends - widths + shift[:, None]

    embeds = text_embeds.new_zeros((batch, total, dim))
    out_labels = torch.full((batch, total), IGNORE_INDEX, dtype=torch.long, device=device)
    positions = torch.arange(total, device=device)[None, :]
    out_mask = ((positions >= shift[:, None]) & (positions < (shift + lengths)[:, None])).long()

    text_rows, text_cols = nonzero_indices(is_text, layout.text_tokens)
    text_dest = starts[text_rows, text_cols]
    embeds[text_rows, text_dest] = text_embeds[text_rows, text_cols]
    if labels is not None:
        out_labels[text_rows, text_dest] = labels[text_rows, text_cols]

    frame_offsets = _exclusive_cumsum(image_counts)
    _scatter_images(embeds, frame_features, is_image, starts, frame_offsets + num_memory, layout.image_placeholders)
    _scatter_memory(embeds, frame_features, is_memory, starts, frame_offsets, num_memory, layout)

    position_ids = (torch.cumsum(out_mask, 1) - 1).clamp_(min=0)
    return MultimodalInputs(embeds, out_mask, out_labels if labels is not None else None, position_ids)


def _scatter_images(embeds, frame_features, is_image, starts, first_window_frame, count: int) -> None:
    """Write frame k of sample b's window at that sample's k-th `<image>` position."""
    if count == 0:
        return
    rows, cols = nonzero_indices(is_image, count)  # row-major: sample order, then position order
    per_frame = frame_features.shape[1]
    rank = torch.cumsum(is_image.long(), 1)[rows, cols] - 1
    frame_index = first_window_frame[rows] + rank
    dest = starts[rows, cols][:, None] + torch.arange(per_frame, device=embeds.device)[None, :]
    embeds[rows[:, None].expand_as(dest), dest] = frame_features[frame_index]


def _scatter_memory(embeds, frame_features, is_memory, starts, frame_offsets, num_memory, layout: HostLayout) -> None:
    """Write the concatenated tokens of sample b's history frames at its `<memory>` position."""
    if layout.memory_placeholders == 0:
        return
    rows, cols = nonzero_indices(is_memory, layout.memory_placeholders)
    per_frame, dim = frame_features.shape[1:]
    counts = num_memory[rows]  # history frames per memory placeholder
    frames = layout.memory_frames  # output_size: repeat_interleave would otherwise sync to size its result
    frame_index = torch.repeat_interleave(frame_offsets[rows], counts, output_size=frames) + (
        torch.arange(frames, device=embeds.device)
        - torch.repeat_interleave(_exclusive_cumsum(counts), counts, output_size=frames)
    )
    tokens = frame_features[frame_index].reshape(-1, dim)
    token_counts = counts * per_frame
    size = frames * per_frame
    first = torch.repeat_interleave(starts[rows, cols], token_counts, output_size=size)
    within = torch.arange(size, device=embeds.device) - torch.repeat_interleave(
        _exclusive_cumsum(token_counts), token_counts, output_size=size
    )
    embeds[torch.repeat_interleave(rows, token_counts, output_size=size), first + within] = tokens
