"""Preparing a model for training: tunable parts, optimiser parameter groups, activation
checkpointing (optionally selective), torch.compile of the LM blocks.

The SlowFast model offers `set_tunable_parts` and `parameter_groups` itself (agent/); a plain Hugging
Face LM (the benchmark baseline, tests) gets the generic equivalents here: every parameter trains,
no weight decay on biases and norms.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from training.config import OptimConfig, SpeedConfig

log = logging.getLogger(__name__)


def apply_tunable_parts(model: nn.Module, parts: Sequence[str]) -> None:
    """Freeze everything not in `parts` (mm_vision_tower, mm_mlp_adapter, mm_language_model)."""
    if hasattr(model, "set_tunable_parts"):
        model.set_tunable_parts(list(parts))
    elif "mm_language_model" not in parts:
        raise ValueError(f"{type(model).__name__} is a text-only model: tunable_parts must include "
                         f"mm_language_model, got {list(parts)}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"tunable_parts {list(parts)} leave no trainable parameter in {type(model).__name__}")


def parameter_groups(model: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
    """Optimiser groups with their own peak `lr` (the schedule scales all groups alike)."""
    if hasattr(model, "parameter_groups"):
        groups = model.parameter_groups(
            lr=optim.lr, vision_tower_lr=optim.vision_tower_lr,
            projector_lr=optim.projector_lr if optim.projector_lr is not None else optim.lr,
            weight_decay=optim.weight_decay)
    else:
        groups = _generic_groups(model, optim)
    groups = [g for g in groups if len(g["params"]) > 0]
    for index, group in enumerate(groups):
        group.setdefault("lr", optim.lr)
        group.setdefault("name", f"group{index}")
    if not groups:
        raise ValueError("no trainable parameters: check tunable_parts")
    return groups


def merge_equal_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One optimizer group per distinct set of hyperparameters (lr, weight_decay, ...), in first-seen order.

    The same update as the separate groups, with fewer of them: DeepSpeed's ZeRO optimizer keeps a flat
    buffer per group and per group takes a norm, checks it on the host (a GPU sync), clips, steps and
    copies back, so a host-bound step pays for every group. The merged name joins the parts
    ("vision_tower+projector+language_model.no_decay", or without a suffix where the suffixes differ).
    """
    merged: dict[tuple, dict[str, Any]] = {}
    names: dict[tuple, list[str]] = {}
    for group in groups:
        settings = tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                for k, v in group.items() if k not in ("params", "name")))
        merged.setdefault(settings, {**group, "params": []})["params"].extend(group["params"])
        names.setdefault(settings, []).append(group["name"])
    for settings, group in merged.items():
        parts = list(dict.fromkeys(name.split(".")[0] for name in names[settings]))
        suffixes = {name.partition(".")[2] for name in names[settings]}
        suffix = suffixes.pop() if len(suffixes) == 1 else ""
        group["name"] = "+".join(parts) + (f".{suffix}" if suffix else "")
    return list(merged.values())


def _generic_groups(model: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    return [
        {"params": decay, "weight_decay": optim.weight_decay, "lr": optim.lr, "name": "lm"},
        {"params": no_decay, "weight_decay": 0.0, "lr": optim.lr, "name": "lm_no_decay"},
    ]


def language_model_of(model: nn.Module) -> nn.Module:
    """The Hugging Face LM inside the model (SlowFast: `language_model`; a plain LM: itself)."""
    return getattr(model, "language_model", model)


def enable_activation_checkpointing(model: nn.Module, every_n_layers: int = 1) -> int:
    """Checkpoint every `every_n_layers`-th decoder layer of the LM, and the blocks of other parts
    (the vision tower) only when they train; returns how many blocks are checkpointed.

    Selective (every_n_layers > 1) keeps the other LM layers' activations: faster when memory allows.
    """
    target = model if getattr(model, "supports_gradient_checkpointing", False) else language_model_of(model)
    kwargs = {"use_reentrant": False}
    if hasattr(target, "activation_checkpointing_enable"):  # transformers >= 5.2x name
        target.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif hasattr(target, "gradient_checkpointing_enable"):
        target.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        raise ValueError(f"{type(target).__name__} does not support activation checkpointing")
    lm = language_model_of(model)
    if hasattr(lm, "config"):
        lm.config.use_cache = False
    lm_layers = decoder_layers(lm)
    for index, layer in enumerate(lm_layers):
        layer.gradient_checkpointing = index % every_n_layers == 0
    in_lm = {id(layer) for layer in lm_layers}
    others = [layer for layer in decoder_layers(target) if id(layer) not in in_lm]
    for layer in others:  # a frozen tower stores no activations for backward: nothing to save
        layer.gradient_checkpointing = any(p.requires_grad for p in layer.parameters())
    return sum(1 for layer in lm_layers + others if layer.gradient_checkpointing)


def decoder_layers(lm: nn.Module) -> list[nn.Module]:
    """The repeated blocks transformers can checkpoint (GradientCheckpointingLayer instances)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in lm.modules() if isinstance(m, GradientCheckpointingLayer)]


# SpeedConfig.compile_shapes -> torch.compile(dynamic=...)
_DYNAMIC = {"static": False, "auto": None, "dynamic": True}


def compile_decoder_layers(model: nn.Module, shapes: str = "auto", backend: str = "inductor") -> int:
    """torch.compile each LM decoder layer in place (regional compilation: one code object shared by
    all layers, so every layer reuses the same compiled graph for a given input shape)."""
    layers = decoder_layers(language_model_of(model))
    for layer in layers:
        layer.compile(dynamic=_DYNAMIC[shapes], backend=backend)
    return len(layers)


def compile_vision_layers(model: nn.Module, backend: str = "inductor") -> int:
    """torch.compile each block outside the LM (the vision tower's encoder layers) in place; the frame
    count varies per batch, so shapes are automatic (static first, symbolic after one change)."""
    in_lm = {id(layer) for layer in decoder_layers(language_model_of(model))}
    layers = [layer for layer in decoder_layers(model) if id(layer) not in in_lm]
    for layer in layers:
        layer.compile(dynamic=None, backend=backend)
    return len(layers)


# LM attention implementations that see a packed micro batch as one sequence with a block-diagonal mask.
DENSE_MASK_ATTENTION = ("sdpa", "eager")


def prepare_model(model: nn.Module, tunable_parts: Sequence[str], speed: SpeedConfig) -> dict[str, int]:
    """Apply tunable parts and the speed levers that change the model; returns counts for the log."""
    from training.attention import set_language_model_attention

    apply_tunable_parts(model, tunable_parts)
    set_language_model_attention(language_model_of(model), speed.attn_implementation)
    if speed.packing and speed.attn_implementation in DENSE_MASK_ATTENTION:
        log.warning("speed.packing with attn_implementation %r attends through an (N x N) mask over all N "
                    "tokens of a packed micro batch: its cost grows with the square of the micro batch. "
                    "sdpa_varlen computes the same attention per sample (README, Measured: packed "
                    "micro batch)", speed.attn_implementation)
    info = {"checkpointed_layers": 0, "compiled_layers": 0}
    if speed.gradient_checkpointing:
        info["checkpointed_layers"] = enable_activation_checkpointing(model, speed.checkpoint_every_n_layers)
    if speed.compile_blocks:
        info["compiled_layers"] = compile_decoder_layers(model, speed.compile_shapes, speed.compile_backend)
    if speed.compile_vision_tower:
        info["compiled_layers"] += compile_vision_layers(model, speed.compile_backend)
    info["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info["total_params"] = sum(p.numel() for p in model.parameters())
    return info


def set_seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
