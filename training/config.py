"""Typed configuration of the learner, loaded from YAML (configs/*.yaml).

One `TrainConfig` holds everything that decides a run: model, optimisation, schedule, data mix,
DeepSpeed settings and the speed levers. Every section validates itself and names the bad field.
The DeepSpeed JSON (configs/deepspeed/*.json) is merged with these values in training/deepspeed_config.py.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TUNABLE_PARTS = ("mm_vision_tower", "mm_mlp_adapter", "mm_language_model")
SOURCE_KINDS = ("store", "streamvln", "llava_qa", "interleaved", "scene_qa")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flex_attention", "sdpa_varlen")
COMPILE_SHAPES = ("static", "auto", "dynamic")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")
OPTIMIZER_IMPLS = ("fused", "foreach")


@dataclass
class OptimConfig:
    """AdamW with the original recipe's per-part learning rates (lr 2e-5, vision tower 5e-6)."""

    lr: float = 2e-5
    vision_tower_lr: float = 5e-6
    projector_lr: float | None = None  # None: same as lr
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def validate(self) -> None:
        for name in ("lr", "vision_tower_lr"):
            _require(getattr(self, name) > 0, f"optim.{name} must be > 0, got {getattr(self, name)}")
        _require(self.projector_lr is None or self.projector_lr > 0, "optim.projector_lr must be > 0")
        _require(self.weight_decay >= 0, f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"optim.betas must be two values in [0, 1), got {self.betas}")
        _require(self.eps > 0, "optim.eps must be > 0")


@dataclass
class ScheduleConfig:
    """Linear warmup then cosine decay to `min_lr_ratio` x the peak lr of each group."""

    kind: str = "cosine"  # "cosine" or "constant" (after warmup)
    warmup_steps: int | None = None  # wins over warmup_ratio when set
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0

    def validate(self) -> None:
        _require(self.kind in ("cosine", "constant"), f"schedule.kind must be cosine|constant, got {self.kind!r}")
        _require(self.warmup_steps is None or self.warmup_steps >= 0, "schedule.warmup_steps must be >= 0")
        _require(0 <= self.warmup_ratio < 1, f"schedule.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        _require(0 <= self.min_lr_ratio <= 1, f"schedule.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def warmup_for(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(math.ceil(self.warmup_ratio * total_steps))


@dataclass
class DataSourceConfig:
    """One data source of the mix; `kind` names what rollout/ builds from `path`."""

    # "store" (episode store), "streamvln" (StreamVLN-layout folder), "llava_qa" (LLaVA video/image QA
    # json; options: media_root, num_frames, image_size, task_type), "interleaved" (image-text jsonl;
    # options: image_root, max_images, image_size), "scene_qa" (msgpack of `streamvln collect-scene-qa`;
    # options: image_size)
    kind: str
    path: str
    weight: float = 1.0
    name: str = ""  # label for logs (samples seen per source); defaults to kind:path-stem
    options: dict[str, Any] = field(default_factory=dict)  # passed to rollout's builder for this kind

    def validate(self, index: int) -> None:
        _require(self.kind in SOURCE_KINDS,
                 f"data.sources[{index}].kind must be one of {SOURCE_KINDS}, got {self.kind!r}")
        _require(bool(self.path), f"data.sources[{index}].path is empty")
        _require(self.weight > 0, f"data.sources[{index}].weight must be > 0, got {self.weight}")

    @property
    def label(self) -> str:
        return self.name or f"{self.kind}:{Path(self.path).stem}"


@dataclass
class DataConfig:
    sources: list[DataSourceConfig] = field(default_factory=list)
    num_frames: int = 32
    num_future_steps: int = 4
    num_history: int = 8
    group_by_task: bool = False
    num_workers: int = 0
    pin_memory: bool = False
    prefetch_factor: int = 2  # used only with num_workers > 0
    refresh_every: int = 0  # online mode: re-read the growing store every N global batches (0: never)
    # The mixture draws with replacement; an epoch is this many global batches (one per optimizer step).
    batches_per_epoch: int = 1000
    blank_instructions: bool = False  # instruction-blind ablation: navigation prompts without the instruction
    # DAgger windows end at the first turn whose executed chunk differs from its labels
    # (rollout.samples.SampleConfig.consistent_history); false: label history, as before issue 8's fix
    consistent_history: bool = True
    # ... and the turns after that one are trained by further samples of the window
    # (rollout.samples.SampleConfig.train_all_turns); false: they are never targets, as in session 4
    train_all_turns: bool = True

    def validate(self) -> None:
        for index, source in enumerate(self.sources):
            source.validate(index)
        for name in ("num_frames", "num_future_steps", "num_history", "prefetch_factor", "batches_per_epoch"):
            _require(getattr(self, name) > 0, f"data.{name} must be > 0")
        _require(self.num_workers >= 0, "data.num_workers must be >= 0")
        _require(self.refresh_every >= 0, "data.refresh_every must be >= 0")
        for name in ("consistent_history", "train_all_turns"):
            value = getattr(self, name)
            _require(isinstance(value, bool), f"data.{name} must be true or false, got {value!r}")


@dataclass
class SpeedConfig:
    """Levers measured by `streamvln bench learner`; all switchable, defaults are the safe ones."""

    gradient_checkpointing: bool = True
    checkpoint_every_n_layers: int = 1  # selective checkpointing: 2 = every other LM layer
    assistant_only_logits: bool = True  # lm_head + CE only at label != -100 positions (never full logits)
    ce_chunk_tokens: int = 4096  # rows of the assistant-only CE done at once
    packing: bool = False  # padding-free: one row per micro batch, block-diagonal causal attention
    compile_blocks: bool = False  # torch.compile each LM decoder layer
    compile_vision_tower: bool = False  # torch.compile each vision tower block (frames vary: dynamic shapes)
    attn_implementation: str = "sdpa"  # LM attention: sdpa | eager | flex_attention | sdpa_varlen (needs packing)
    # Pad the packed row up to a multiple of this many tokens (0: no padding). With compile_shapes
    # "static" every distinct length is a compile: buckets keep that to a few (the padding is masked).
    pack_multiple: int = 0
    # torch.compile shapes: "static" (dynamic=False: specialised kernels, one compile per length
    # bucket), "auto" (dynamic=None: static first, one recompile with symbolic lengths), "dynamic".
    compile_shapes: str = "auto"
    compile_backend: str = "inductor"  # "eager" / "aot_eager" trace without code generation (tests)
    # fp32 trainable weights + torch.autocast(bf16) compute instead of DeepSpeed's bf16 engine: the torch
    # optimizer updates the weights with a few multi-tensor kernels, no per-parameter copies into ZeRO's
    # buckets, fp32 partitions and back (needs bf16: true; ZeRO stage 0 gets the learner's foreach clipping).
    torch_autocast: bool = False
    optimizer_impl: str = "fused"  # torch AdamW kernels on CUDA: fused | foreach

    def validate(self) -> None:
        _require(self.checkpoint_every_n_layers >= 1, "speed.checkpoint_every_n_layers must be >= 1")
        _require(self.optimizer_impl in OPTIMIZER_IMPLS,
                 f"speed.optimizer_impl must be one of {OPTIMIZER_IMPLS}, got {self.optimizer_impl!r}")
        _require(self.ce_chunk_tokens >= 1, "speed.ce_chunk_tokens must be >= 1")
        _require(self.attn_implementation in ATTENTION_IMPLEMENTATIONS,
                 f"speed.attn_implementation must be one of {ATTENTION_IMPLEMENTATIONS}, got {self.attn_implementation!r}")
        _require(self.attn_implementation != "sdpa_varlen" or self.packing,
                 "speed.attn_implementation sdpa_varlen attends within packed samples: set speed.packing: true")
        _require(self.pack_multiple >= 0, f"speed.pack_multiple must be >= 0, got {self.pack_multiple}")
        _require(self.compile_shapes in COMPILE_SHAPES,
                 f"speed.compile_shapes must be one of {COMPILE_SHAPES}, got {self.compile_shapes!r}")
        _require(self.compile_backend in COMPILE_BACKENDS,
                 f"speed.compile_backend must be one of {COMPILE_BACKENDS}, got {self.compile_backend!r}")


@dataclass
class TrainConfig:
    """A whole training run. Paths are relative to the working directory."""

    model_preset: str = "tiny"  # agent.config.SlowFastConfig.preset name, used when model_path is empty
    model_path: str = ""  # a save_pretrained folder to start from
    # SlowFastConfig fields set on the preset (random init only), e.g. {pooled_grid_size: 7}
    model_overrides: dict[str, Any] = field(default_factory=dict)
    tunable_parts: tuple[str, ...] = ("mm_mlp_adapter", "mm_language_model")
    deepspeed_config: str = "configs/deepspeed/zero2.json"
    zero_stage: int | None = None  # overrides the JSON's zero_optimization.stage when set
    # Deep-merged into the JSON last, e.g. {"zero_optimization": {"round_robin_gradients": true}}
    deepspeed_overrides: dict[str, Any] = field(default_factory=dict)
    micro_batch_size: int = 1
    grad_accum_steps: int = 1
    grad_clip: float = 1.0
    bf16: bool = True
    steps: int = 100
    seed: int = 0
    out_dir: str = "runs/train"
    checkpoint_every: int = 0  # 0: only at the end / on SIGTERM / on divergence
    keep_checkpoints: int = 2
    log_every: int = 1
    publish_every: int = 0  # online mode: call on_publish(step, model) every K steps
    progress: bool = True
    peak_flops: float = 989e12  # per GPU, for the logged MFU (H100 bf16 dense)
    # "global_tokens": every labelled token of the optimizer step (all micro batches, all ranks) weighs
    # the same, so results do not depend on grad accumulation or GPU count; "micro_batch": each micro
    # batch's mean weighs the same (Hugging Face Trainer's default).
    loss_normalization: str = "global_tokens"
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    data: DataConfig = field(default_factory=DataConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)

    def validate(self) -> None:
        unknown = set(self.tunable_parts) - set(TUNABLE_PARTS)
        _require(not unknown, f"tunable_parts has unknown parts {sorted(unknown)}; known: {TUNABLE_PARTS}")
        _require(bool(self.tunable_parts), "tunable_parts is empty: nothing would train")
        _require(self.zero_stage in (None, 0, 1, 2, 3), f"zero_stage must be 0-3, got {self.zero_stage}")
        for name in ("micro_batch_size", "grad_accum_steps", "steps", "log_every", "keep_checkpoints"):
            _require(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "publish_every"):
            _require(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        _require(self.peak_flops > 0, f"peak_flops must be > 0, got {self.peak_flops}")
        _require(self.loss_normalization in ("global_tokens", "micro_batch"),
                 f"loss_normalization must be global_tokens|micro_batch, got {self.loss_normalization!r}")
        _require(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        _require(bool(self.model_preset or self.model_path), "set model_preset or model_path")
        _require(not (self.model_overrides and self.model_path),
                 "model_overrides apply to a preset's random init; a model_path brings its own config")
        self.optim.validate()
        self.schedule.validate()
        self.data.validate()
        self.speed.validate()
        _require(not self.speed.torch_autocast or self.bf16,
                 "speed.torch_autocast computes in bf16 under torch.autocast: it needs bf16: true")
        _require(isinstance(self.deepspeed_overrides, dict), "deepspeed_overrides must be a mapping")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def config_from_dict(data: dict[str, Any], cls: type = TrainConfig, where: str = "config") -> Any:
    """Build a (nested) config dataclass from plain data; unknown keys are errors, not silently dropped."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(fields)}")
    values: dict[str, Any] = {}
    nested = {"optim": OptimConfig, "schedule": ScheduleConfig, "data": DataConfig, "speed": SpeedConfig}
    for key, value in data.items():
        if cls is TrainConfig and key in nested:
            values[key] = config_from_dict(value or {}, nested[key], f"{where}.{key}")
        elif cls is DataConfig and key == "sources":
            values[key] = [config_from_dict(s, DataSourceConfig, f"{where}.sources[{i}]")
                           for i, s in enumerate(value or [])]
        elif key in ("tunable_parts", "betas") and isinstance(value, (list, str)):
            values[key] = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
        else:
            values[key] = value
    try:
        return cls(**values)
    except TypeError as error:  # a required field is missing
        raise ValueError(f"{where}: {error}") from error


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config, apply top-level `overrides` (e.g. from the CLI) and validate."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"train config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    config = config_from_dict(data, TrainConfig, str(path))
    config.validate()
    return config


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
