"""Synthetic batches of a fixed shape for benchmarks and speed tests (no data on disk needed).

Token batches (text only, for the Hugging Face baseline and the LM-only learner) and SlowFast
batches (processor collate layout: -200 placeholders, uint8 frames, image_counts, num_memory) are
built so that both have the same LM sequence length per sample: a SlowFast sample's text tokens plus
its frames x tokens_per_frame equals the token sample's length. Labels mark a short assistant answer
after each window frame (StreamVLN answers are ~5 tokens per turn), about 1% of the tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IMAGE_TOKEN_INDEX = -200
MEMORY_TOKEN_INDEX = -300
IGNORE_INDEX = -100


@dataclass(frozen=True)
class SyntheticShape:
    micro_batch: int
    seq: int  # longest LM sequence (tokens after visual tokens are inserted)
    min_seq_fraction: float = 0.5  # sample lengths are uniform in [min_seq_fraction * seq, seq]
    answer_tokens: int = 5  # labelled tokens after each window frame (4 actions + <|im_end|>)

    def validate(self) -> None:
        if self.micro_batch < 1 or self.seq < 16:
            raise ValueError(f"synthetic batches need micro_batch >= 1 and seq >= 16, got {self}")
        if not 0 < self.min_seq_fraction <= 1 or self.answer_tokens < 1:
            raise ValueError(f"min_seq_fraction must be in (0, 1] and answer_tokens >= 1, got {self}")


def sample_lengths(shape: SyntheticShape, generator: torch.Generator) -> list[int]:
    low = max(int(shape.seq * shape.min_seq_fraction), 16)
    return [int(v) for v in torch.randint(low, shape.seq + 1, (shape.micro_batch,), generator=generator)]


def _pad(rows: list[torch.Tensor], value: int) -> torch.Tensor:
    out = torch.full((len(rows), max(r.numel() for r in rows)), value, dtype=torch.long)
    for index, row in enumerate(rows):
        out[index, : row.numel()] = row
    return out


def token_batch_like(batch: dict, tokens_per_frame: int, vocab: int, seed: int = 0) -> dict:
    """The text-only twin of a SlowFast batch: each placeholder becomes the same number of random text
    tokens (label -100), so LM lengths and labelled tokens are identical (the baseline's batch)."""
    gen = torch.Generator().manual_seed(seed + 1)
    ids, labels = [], []
    for row in range(batch["input_ids"].shape[0]):
        valid = batch["attention_mask"][row].bool()
        row_ids, row_labels = batch["input_ids"][row][valid], batch["labels"][row][valid]
        memory = int(batch["num_memory"][row])
        out_ids, out_labels = [], []
        for token, label in zip(row_ids.tolist(), row_labels.tolist()):
            width = {IMAGE_TOKEN_INDEX: tokens_per_frame, MEMORY_TOKEN_INDEX: memory * tokens_per_frame}.get(token, 0)
            if width:
                out_ids.append(torch.randint(0, vocab, (width,), generator=gen))
                out_labels.append(torch.full((width,), IGNORE_INDEX, dtype=torch.long))
            else:
                out_ids.append(torch.tensor([token]))
                out_labels.append(torch.tensor([label]))
        ids.append(torch.cat(out_ids))
        labels.append(torch.cat(out_labels))
    mask = _pad([torch.ones(r.numel(), dtype=torch.long) for r in ids], 0)
    return {"input_ids": _pad(ids, 0), "labels": _pad(labels, IGNORE_INDEX), "attention_mask": mask,
            "task_type": list(batch["task_type"])}


def slowfast_batch(shape: SyntheticShape, vocab: int, tokens_per_frame: int, image_size: int,
                   num_history: int = 8, seed: int = 0) -> dict:
    """A nav-like batch: num_history memory frames at one <memory>, window frames at <image>s.

    Each sample's LM length (text + frames x tokens_per_frame) is its drawn length (within one frame).
    """
    gen = torch.Generator().manual_seed(seed)
    ids, labels, counts, memory, images = [], [], [], [], []
    for length in sample_lengths(shape, gen):
        frames = max(2, (length * 9 // 10) // tokens_per_frame)  # ~10% text, as in StreamVLN samples
        history = min(num_history, frames - 1)
        window = frames - history
        text = max(length - frames * tokens_per_frame, (shape.answer_tokens + 3) * (window + 1) + 4)
        row = torch.randint(0, vocab, (text + window + (1 if history else 0),), generator=gen)
        label = torch.full_like(row, IGNORE_INDEX)
        step = text // (window + 1)
        cursor = 2
        if history:
            row[cursor] = MEMORY_TOKEN_INDEX
            cursor += 2
        for turn in range(window):
            position = cursor + turn * (step + 1)
            row[position] = IMAGE_TOKEN_INDEX
            answer = slice(position + 2, min(position + 2 + shape.answer_tokens, row.numel()))
            label[answer] = row[answer]
        ids.append(row)
        labels.append(label)
        counts.append(frames)
        memory.append(history)
        images.append(torch.randint(0, 256, (frames, image_size, image_size, 3), dtype=torch.uint8, generator=gen))
    mask = _pad([torch.ones(r.numel(), dtype=torch.long) for r in ids], 0)
    return {"input_ids": _pad(ids, 0), "labels": _pad(labels, IGNORE_INDEX), "attention_mask": mask,
            "images": torch.cat(images), "image_counts": torch.tensor(counts), "num_memory": torch.tensor(memory),
            "time_ids": _pad([torch.arange(c) for c in counts], -1), "task_type": ["nav"] * len(ids)}


class CyclingBatches:
    """An endless stream over a fixed pool of batches; resumable like training.data.BatchStream."""

    def __init__(self, pool: list[dict], pin_memory: bool = False):
        if not pool:
            raise ValueError("CyclingBatches needs at least one batch")
        if pin_memory:
            pool = [{k: v.pin_memory() if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in pool]
        self.pool = pool
        self.position = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        batch = self.pool[self.position % len(self.pool)]
        self.position += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": 0, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])
