"""Learning-rate schedule: linear warmup, then cosine decay to min_lr_ratio x peak.

The schedule is a multiplier applied to every parameter group's own peak lr (a torch LambdaLR with
the same lambda for each group), so the projector and vision-tower lrs keep their ratio to the LM lr
at every step, as in the original recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from training.config import ScheduleConfig


@dataclass(frozen=True)
class WarmupCosine:
    """Callable step -> lr multiplier. A dataclass (not a closure) so LambdaLR can save its state."""

    warmup_steps: int
    total_steps: int
    min_lr_ratio: float = 0.0
    cosine: bool = True

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if not self.cosine:
            return 1.0
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine


def lr_multiplier(config: ScheduleConfig, total_steps: int) -> WarmupCosine:
    return WarmupCosine(
        warmup_steps=config.warmup_for(total_steps),
        total_steps=total_steps,
        min_lr_ratio=config.min_lr_ratio,
        cosine=config.kind == "cosine",
    )


def build_scheduler(optimizer: torch.optim.Optimizer, config: ScheduleConfig,
                    total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """One LambdaLR over all groups; each group's `initial_lr` is its own peak."""
    multiplier = lr_multiplier(config, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [multiplier] * len(optimizer.param_groups))
