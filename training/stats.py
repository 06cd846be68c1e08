"""Per-step bookkeeping: losses per task, tokens, samples per source, what the FLOP counter needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

IMAGE_TOKEN_INDEX = -200
MEMORY_TOKEN_INDEX = -300


def sample_lengths(batch: dict[str, Any], tokens_per_frame: int) -> list[int]:
    """LM sequence length of each sample after the model inserts visual tokens (no padding):
    each `<image>` becomes tokens_per_frame tokens, `<memory>` becomes num_memory x tokens_per_frame."""
    input_ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    valid = mask.bool() if mask is not None else torch.ones_like(input_ids, dtype=torch.bool)
    lengths = valid.sum(1)
    if tokens_per_frame and "image_counts" in batch:
        images = ((input_ids == IMAGE_TOKEN_INDEX) & valid).sum(1)
        memory = ((input_ids == MEMORY_TOKEN_INDEX) & valid).sum(1)
        num_memory = batch.get("num_memory", torch.zeros_like(lengths))
        lengths = lengths - images - memory + images * tokens_per_frame + (memory > 0) * num_memory * tokens_per_frame
    return [int(v) for v in lengths.tolist()]


def labelled_count(batch: dict[str, Any]) -> int:
    """Tokens that carry a loss: positions t whose label at t+1 is not -100 (as the loss counts them)."""
    return int((batch["labels"][:, 1:] != -100).sum())


@dataclass
class StepStats:
    losses: list[float] = field(default_factory=list)
    loss_sum: float = 0.0  # sum over labelled tokens (micro batch mean x its labelled tokens)
    task_sums: dict[str, tuple[float, int]] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    sample_lengths: list[int] = field(default_factory=list)
    labelled_tokens: int = 0
    frames: int = 0
    tokens: int = 0
    samples: int = 0
    seconds: float = 0.0
    steps: int = 1  # optimizer steps these counts cover

    def merge(self, other: StepStats) -> None:
        """Add another step's counts to this logging window (start a window with StepStats(steps=0))."""
        self.losses.extend(other.losses)
        self.loss_sum += other.loss_sum
        for name, (total, count) in other.task_sums.items():
            mine = self.task_sums.get(name, (0.0, 0))
            self.task_sums[name] = (mine[0] + total, mine[1] + count)
        for name, count in other.sources.items():
            self.sources[name] = self.sources.get(name, 0) + count
        self.sample_lengths.extend(other.sample_lengths)
        self.labelled_tokens += other.labelled_tokens
        self.frames += other.frames
        self.tokens += other.tokens
        self.samples += other.samples
        self.seconds += other.seconds
        self.steps += other.steps

    def add_batch(self, batch: dict[str, Any], tokens_per_frame: int) -> None:
        """Counts from the CPU batch (before it moves to the device: no synchronisation)."""
        lengths = sample_lengths(batch, tokens_per_frame)
        self.sample_lengths.extend(lengths)
        self.tokens += sum(lengths)
        self.samples += len(lengths)
        self.labelled_tokens += labelled_count(batch)
        images = batch.get("images")
        self.frames += int(images.shape[0]) if isinstance(images, torch.Tensor) and images.ndim == 4 else 0
        names = batch.get("source") or batch.get("task_type") or ["all"] * len(lengths)
        for name in names:
            self.sources[str(name)] = self.sources.get(str(name), 0) + 1

    def add_loss(self, out: Any, batch: dict[str, Any], labelled: int) -> None:
        self.losses.append(float(out.loss.detach()))
        self.loss_sum += self.losses[-1] * labelled
        tasks = batch.get("task_type")
        if tasks is None:
            return
        if out.token_losses is not None and out.rows is not None:
            names = sorted({str(t) for t in tasks})
            group = torch.tensor([names.index(str(t)) for t in tasks])  # batch row -> task index
            token_losses, rows = out.token_losses.float().cpu(), out.rows.cpu()
            for key, name in enumerate(names):
                chosen = token_losses[group[rows] == key]
                if chosen.numel():
                    total, count = self.task_sums.get(name, (0.0, 0))
                    self.task_sums[name] = (total + float(chosen.sum()), count + int(chosen.numel()))
        elif len(set(tasks)) == 1:  # plain path: the micro batch mean is the task's mean
            total, count = self.task_sums.get(str(tasks[0]), (0.0, 0))
            self.task_sums[str(tasks[0])] = (total + float(out.loss.detach()), count + 1)

    def loss_scalars(self) -> dict[str, float]:
        if self.labelled_tokens:  # the mean over every labelled token of the window
            scalars = {"loss": self.loss_sum / self.labelled_tokens}
        else:
            scalars = {"loss": sum(self.losses) / max(len(self.losses), 1)}
        for name, (total, count) in self.task_sums.items():
            scalars[f"loss/{name}"] = total / max(count, 1)
        return scalars
