"""Composition of a training run from a TrainConfig: model + processor, data stream, learner.

`streamvln train` is a thin wrapper over `run_training`; the online-training loop builds the same
Learner with `build_learner(config, on_publish=...)` and a store that keeps growing.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from training.checkpoint import latest_checkpoint
from training.config import TrainConfig, config_to_dict
from training.deepspeed_config import build_deepspeed_config
from training.flops import FlopCounter, LMShape, VisionShape
from training.learner import Learner, PublishHook
from training.model_setup import set_seed
from training.modules import parts_for

log = logging.getLogger(__name__)


def build_model_and_processor(config: TrainConfig) -> tuple[torch.nn.Module, Any]:
    """A SlowFast model (from model_path, or a random-init preset) and its processor."""
    from agent.config import SlowFastConfig
    from agent.modeling import SlowFastForCausalLM
    from agent.processor import SlowFastProcessor

    set_seed(config.seed)  # random init is part of the run's reproducibility
    if config.model_path:
        path = Path(config.model_path)
        if not path.is_dir():
            raise FileNotFoundError(f"model_path does not exist: {path}")
        # bf16: half the host memory per rank; speed.torch_autocast trains the fp32 weights themselves
        dtype = torch.bfloat16 if config.bf16 and not config.speed.torch_autocast else torch.float32
        model = SlowFastForCausalLM.from_pretrained(path, attn_implementation="sdpa", dtype=dtype)
        processor = SlowFastProcessor.from_pretrained(path)
    else:
        model_config = SlowFastConfig.preset(config.model_preset, **config.model_overrides)
        model = SlowFastForCausalLM(model_config)
        processor = SlowFastProcessor.from_config(model_config)
    return model, processor


def flop_counter_for(model: torch.nn.Module, tunable_parts) -> FlopCounter:
    """FLOP counter of a SlowFast model (vision tower, projector, LM) or of a plain causal LM."""
    config = model.config
    if hasattr(config, "text_config") and hasattr(config, "vision_config"):
        vision = config.vision_config
        shape = VisionShape(layers=config.vision_layers_kept, hidden=int(vision.hidden_size),
                            intermediate=int(vision.intermediate_size),
                            patches_per_frame=config.patches_per_side ** 2, patch_size=int(vision.patch_size),
                            projected_tokens_per_frame=config.patches_per_side ** 2)
        return FlopCounter(LMShape.from_qwen2_config(config.text_config), shape,
                           train_vision="mm_vision_tower" in tunable_parts,
                           train_projector="mm_mlp_adapter" in tunable_parts,
                           train_lm="mm_language_model" in tunable_parts)
    return FlopCounter(LMShape.from_qwen2_config(config))


@dataclass
class RunResult:
    steps: int
    last_scalars: dict[str, float]
    checkpoint: Path | None
    export_dir: Path | None
    stopped_by_signal: int | None
    rank: int = 0


def build_learner(config: TrainConfig, on_publish: PublishHook | None = None,
                  model: torch.nn.Module | None = None, processor: Any = None) -> Learner:
    """Check configs and data first (cheap, clear errors), then build the model and the learner."""
    from training.data import build_mixed_stream, build_sources
    from training.distributed import ensure_distributed_env

    config.validate()
    build_deepspeed_config(config)
    sources = build_sources(config.data)  # an empty or missing store fails here, before the model exists
    ensure_distributed_env()
    if model is None:
        model, processor = build_model_and_processor(config)
    stream = build_mixed_stream(config.data, processor, config.micro_batch_size, config.seed,
                                rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                                sources=sources, grad_accum_steps=config.grad_accum_steps)
    needs_parts = config.speed.assistant_only_logits or config.speed.packing
    return Learner(config, model, stream, parts=parts_for(model) if needs_parts else None,
                   processor=processor, flop_counter=flop_counter_for(model, config.tunable_parts),
                   on_publish=on_publish)


def run_training(config: TrainConfig, resume: bool = False, export: bool = True) -> RunResult:
    """Offline training: train to config.steps, checkpoint, export `<out_dir>/model` for the agent."""
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    learner = build_learner(config)
    if resume:
        path = learner.load_checkpoint()
        log.info("resumed from %s at step %d", path, learner.step)
    if learner.rank == 0:
        (out_dir / "train_config.json").write_text(json.dumps(config_to_dict(config), indent=1))
    scalars = learner.train()
    if learner.stopped_by_signal is None and not config.checkpoint_every:
        learner.save_checkpoint()  # train() saved it already when periodic checkpoints are on
    export_dir = learner.export(out_dir / "model") if export and learner.stopped_by_signal is None else None
    checkpoint = latest_checkpoint(out_dir / "checkpoints")
    return RunResult(learner.step, scalars, checkpoint, export_dir, learner.stopped_by_signal, learner.rank)
