"""Variant names of `streamvln bench learner --variants`: `+`-joined tokens -> one run's settings.

Speed levers (training.config.SpeedConfig): aolog, pack, compile, vcompile, flex, varlen, bucket<N>,
static, dynamic, ckpt<N>, autocast (fp32 weights + torch.autocast bf16, no DeepSpeed bf16 wrapper),
foreach (foreach AdamW instead of fused).
Run shape: mb<N> (micro batch), ga<N> (N micro batches per optimizer step), zero<N> (ZeRO stage).
DeepSpeed config (deep-merged into configs/deepspeed/zero2.json): cg0/cg1 (contiguous_gradients),
ovl0/ovl1 (overlap_comm), rr (round_robin_gradients), rb<N> / ab<N> (reduce / allgather bucket of N
million elements), igu (bf16.immediate_grad_update), noof (bf16.check_grad_overflow off), gafp32
(data_types.grad_accum_dtype fp32: with zero1, DeepSpeed's BF16_Optimizer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from training.config import SpeedConfig

LEVER_NAMES = ("aolog", "pack", "compile", "vcompile", "flex", "varlen", "ckpt<N>", "mb<N>", "ga<N>", "bucket<N>",
               "static", "dynamic", "zero<N>", "autocast", "foreach", "cg0", "cg1", "ovl0", "ovl1", "rr", "rb<N>",
               "ab<N>", "igu", "noof", "gafp32")

DEEPSPEED_TOKENS: dict[str, dict[str, Any]] = {
    "cg0": {"zero_optimization": {"contiguous_gradients": False}},
    "cg1": {"zero_optimization": {"contiguous_gradients": True}},
    "ovl0": {"zero_optimization": {"overlap_comm": False}},
    "ovl1": {"zero_optimization": {"overlap_comm": True}},
    "rr": {"zero_optimization": {"round_robin_gradients": True}},
    "igu": {"bf16": {"immediate_grad_update": True}},
    "noof": {"bf16": {"check_grad_overflow": False}},
    "gafp32": {"data_types": {"grad_accum_dtype": "fp32"}},
}
DEEPSPEED_BUCKETS = {"rb": "reduce_bucket_size", "ab": "allgather_bucket_size"}


@dataclass
class VariantPlan:
    levers: str  # the SpeedConfig levers, `+`-joined (parse_levers)
    micro_batch: int
    zero_stage: int
    grad_accum: int = 1
    deepspeed_overrides: dict[str, Any] = field(default_factory=dict)


def _count(token: str, prefix: str) -> int | None:
    """`ga4` with prefix "ga" -> 4; None when the token is not `<prefix><N>` with N >= 1."""
    rest = token[len(prefix):]
    if token.startswith(prefix) and rest.isdigit() and int(rest) >= 1:
        return int(rest)
    return None


def plan_variant(variant: str, micro_batch: int, zero_stage: int) -> VariantPlan:
    """Split the run-shape and DeepSpeed tokens off a variant; the rest are speed levers."""
    plan = VariantPlan("", micro_batch, zero_stage)
    levers = []
    for token in filter(None, variant.split("+")):
        if token in ("zero0", "zero1", "zero2", "zero3"):
            plan.zero_stage = int(token[4:])
        elif _count(token, "mb") is not None:
            plan.micro_batch = _count(token, "mb")
        elif _count(token, "ga") is not None:
            plan.grad_accum = _count(token, "ga")
        elif token in DEEPSPEED_TOKENS:
            _deep_merge(plan.deepspeed_overrides, DEEPSPEED_TOKENS[token])
        elif token[:2] in DEEPSPEED_BUCKETS and _count(token, token[:2]) is not None:
            size = _count(token, token[:2]) * 10**6
            _deep_merge(plan.deepspeed_overrides, {"zero_optimization": {DEEPSPEED_BUCKETS[token[:2]]: size}})
        else:
            levers.append(token)
    plan.levers = "+".join(levers)
    return plan


def _deep_merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    from training.deepspeed_config import deep_update  # not at import time: the CLI imports stay light

    deep_update(target, update)


def split_zero_stage(variant: str, default: int) -> tuple[str, int]:
    """`aolog+varlen+zero0` -> ("aolog+varlen", 0): a variant may use its own ZeRO stage."""
    levers, stage = [], default
    for lever in filter(None, variant.split("+")):
        if lever in ("zero0", "zero1", "zero2", "zero3"):
            stage = int(lever[4:])
        else:
            levers.append(lever)
    return "+".join(levers), stage


def split_micro_batch(variant: str, default: int) -> tuple[str, int]:
    """`aolog+varlen+mb4` -> ("aolog+varlen", 4): a variant may train at its own micro batch (same
    sample-length distribution as the baseline's batches; tokens/s stays comparable)."""
    levers, micro_batch = [], default
    for lever in filter(None, variant.split("+")):
        if _count(lever, "mb") is not None:
            micro_batch = _count(lever, "mb")
        else:
            levers.append(lever)
    return "+".join(levers), micro_batch


def parse_levers(text: str, grad_ckpt: bool) -> SpeedConfig:
    from training.config import SpeedConfig

    speed = SpeedConfig(assistant_only_logits=False, packing=False, gradient_checkpointing=grad_ckpt)
    flags = {"aolog": "assistant_only_logits", "pack": "packing", "compile": "compile_blocks",
             "vcompile": "compile_vision_tower", "autocast": "torch_autocast"}
    for lever in filter(None, text.split("+")):
        if lever in flags:
            setattr(speed, flags[lever], True)
        elif lever == "flex":
            speed.attn_implementation = "flex_attention"
        elif lever == "varlen":
            speed.attn_implementation, speed.packing = "sdpa_varlen", True
        elif lever == "foreach":
            speed.optimizer_impl = "foreach"
        elif lever.startswith("bucket") and lever[6:].isdigit():
            speed.pack_multiple = int(lever[6:])
        elif lever in ("static", "dynamic"):
            speed.compile_shapes = lever
        elif lever.startswith("ckpt") and lever[4:].isdigit():
            every = int(lever[4:])
            speed.gradient_checkpointing = every > 0
            speed.checkpoint_every_n_layers = max(every, 1)
        else:
            raise ValueError(f"unknown lever {lever!r} in --variants; known: {LEVER_NAMES}")
    speed.validate()
    return speed
