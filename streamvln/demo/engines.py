"""Which SessionEngine a command serves: the streaming agent from a checkpoint or a preset with
random weights, or the model-free scripted engine (plumbing and server benchmarks)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when an engine is built: the CLI adds these arguments without numpy/torch
    from agent.serving.engine import SessionEngine

RANDOM_WEIGHTS_NOTICE = ("random weights (preset {preset}, no --checkpoint): the agent's actions are "
                         "meaningless; pass --checkpoint DIR to serve a trained model")
SCRIPTED_NOTICE = "scripted engine: no model, a fixed action pattern (server plumbing only)"
# agent.streaming.config.Decoding's values (kept here so parsing the CLI imports no torch; a test checks them)
DECODINGS = ("speculative", "tree", "greedy")


@dataclass
class EngineChoice:
    checkpoint: Path | None = None
    preset: str = "tiny"  # used without a checkpoint: random weights
    scripted: bool = False
    device: str = "cpu"
    dtype: str = "fp32"
    decoding: str | None = None  # None: the device's default (agent.streaming.engine.default_config)
    stop_bias: float = 0.0  # StreamingConfig.stop_bias: STOP calibration a checkpoint's README states

    def validate(self) -> None:
        if self.checkpoint is not None and not Path(self.checkpoint).is_dir():
            raise FileNotFoundError(f"checkpoint directory {self.checkpoint} not found")
        if self.dtype not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"--dtype must be fp32, bf16 or fp16, got {self.dtype!r}")
        if self.decoding is not None and self.decoding not in DECODINGS:
            raise ValueError(f"--decoding must be one of {DECODINGS}, got {self.decoding!r}")
        if not math.isfinite(self.stop_bias):
            raise ValueError(f"--stop-bias must be a finite number, got {self.stop_bias}")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--checkpoint", type=Path, help="saved model directory (save_pretrained layout)")
    choice.add_argument("--scripted", action="store_true", help="no model: a fixed action pattern (plumbing tests)")
    group.add_argument("--preset", default="tiny", help="model preset with random weights when no --checkpoint (default tiny)")
    group.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    group.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    group.add_argument("--decoding", choices=DECODINGS,
                       help="how a call's action chunk is decoded, same actions either way: speculative "
                            "(default on the CPU), tree (every chunk verified at once: one weight pass per "
                            "call; default on CUDA), greedy")
    group.add_argument("--stop-bias", type=float, default=0.0,
                       help="added to STOP's logit before each choice (STOP calibration, tuned on val_seen; "
                            "a shipped checkpoint's README gives its value)")


def engine_choice(args: argparse.Namespace) -> EngineChoice:
    choice = EngineChoice(checkpoint=args.checkpoint, preset=args.preset, scripted=args.scripted,
                          device=args.device, dtype=args.dtype, decoding=args.decoding,
                          stop_bias=args.stop_bias)
    choice.validate()
    return choice


def build_engine(choice: EngineChoice) -> tuple[SessionEngine, str]:
    """(engine, notice); the notice says when the weights are random or there is no model at all."""
    from agent.serving.engine import ScriptedEngine

    if choice.scripted:
        return ScriptedEngine(), SCRIPTED_NOTICE
    try:
        from agent.streaming.engine import StreamingEngine, default_config
    except ImportError as error:
        raise ValueError(f"the streaming agent engine is not available ({error}); use --scripted to run "
                         "the server without a model") from None
    config = default_config(choice.device, choice.checkpoint)
    if choice.decoding is not None:
        config.decoding = choice.decoding
    config.stop_bias = choice.stop_bias
    if choice.checkpoint is not None:
        engine = StreamingEngine.from_checkpoint(choice.checkpoint, device=choice.device, dtype=choice.dtype,
                                                 config=config)
        return engine, ""
    engine = StreamingEngine.from_preset(choice.preset, device=choice.device, dtype=choice.dtype, config=config)
    return engine, RANDOM_WEIGHTS_NOTICE.format(preset=choice.preset)
