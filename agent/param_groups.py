"""Tunable parts (mm_tunable_parts) and optimizer parameter groups of the SlowFast model.

Parts are the model's three sub-modules, found by module identity (not by name substrings):
"mm_vision_tower" -> model.vision_tower, "mm_mlp_adapter" -> model.projector,
"mm_language_model" -> model.language_model. Biases and normalisation weights get no weight decay.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

from agent.config import TUNABLE_PARTS


def part_modules(model: nn.Module) -> dict[str, nn.Module]:
    return {
        "mm_vision_tower": model.vision_tower,
        "mm_mlp_adapter": model.projector,
        "mm_language_model": model.language_model,
    }


def set_tunable_parts(model: nn.Module, parts: Iterable[str]) -> list[str]:
    """Make exactly the named parts trainable and freeze the rest; returns the sorted part names."""
    parts = sorted(set(parts))
    unknown = [p for p in parts if p not in TUNABLE_PARTS]
    if unknown:
        raise ValueError(f"unknown tunable parts {unknown}; known: {list(TUNABLE_PARTS)}")
    if not parts:
        raise ValueError("mm_tunable_parts is empty: nothing would be trained")
    model.requires_grad_(False)
    for name, module in part_modules(model).items():
        if name in parts:
            module.requires_grad_(True)
    return parts


NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, Qwen2RMSNorm)  # SigLIP uses nn.LayerNorm, Qwen2 its RMSNorm


def no_decay_parameter_ids(model: nn.Module) -> set[int]:
    """ids of biases and normalisation weights (never weight-decayed)."""
    skipped: set[int] = set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if name == "bias" or isinstance(module, NORM_TYPES):
                skipped.add(id(param))
    return skipped


def parameter_groups(
    model: nn.Module,
    lr: float,
    vision_tower_lr: float | None = None,
    projector_lr: float | None = None,
    weight_decay: float = 0.0,
) -> list[dict]:
    """Optimizer groups of the trainable parameters: (part x decay / no decay), empty groups dropped.

    Each group has params, lr, weight_decay and a `name` ("language_model.decay", ...). A part's lr
    falls back to `lr` when its own is None.
    """
    for label, value in (("lr", lr), ("vision_tower_lr", vision_tower_lr), ("projector_lr", projector_lr)):
        if value is not None and value < 0:
            raise ValueError(f"{label} must be >= 0, got {value}")
    part_lrs = {
        "mm_vision_tower": lr if vision_tower_lr is None else vision_tower_lr,
        "mm_mlp_adapter": lr if projector_lr is None else projector_lr,
        "mm_language_model": lr,
    }
    short = {"mm_vision_tower": "vision_tower", "mm_mlp_adapter": "projector", "mm_language_model": "language_model"}
    no_decay = no_decay_parameter_ids(model)
    groups = []
    for part, module in part_modules(model).items():
        params: list[torch.nn.Parameter] = [p for p in module.parameters() if p.requires_grad]
        decayed = [p for p in params if id(p) not in no_decay]
        plain = [p for p in params if id(p) in no_decay]
        for suffix, members, decay in (("decay", decayed, weight_decay), ("no_decay", plain, 0.0)):
            if members:
                groups.append({"params": members, "lr": part_lrs[part], "weight_decay": decay,
                               "name": f"{short[part]}.{suffix}"})
    return groups
