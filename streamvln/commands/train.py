"""`streamvln train --config configs/x.yaml [--out DIR] [--resume] [--steps N]`: offline training.

Multi-GPU: `deepspeed --no_local_rank --num_gpus 2 --module streamvln.cli train --config ...` or
`torchrun --nproc_per_node 2 -m streamvln.cli train --config ...` (rank from the environment).
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train the SlowFast model with the DeepSpeed learner")
    parser.add_argument("--config", required=True, help="train config YAML (see configs/)")
    parser.add_argument("--out", help="output folder (overrides out_dir): checkpoints/, tensorboard/, model/")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output folder")
    parser.add_argument("--steps", type=int, help="total optimizer steps (overrides steps)")
    parser.add_argument("--zero-stage", type=int, choices=(0, 1, 2, 3), help="override the DeepSpeed ZeRO stage")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs and TensorBoard only)")
    parser.add_argument("--no-export", action="store_true", help="skip save_pretrained of the final model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from training.config import load_train_config
    from training.learner import TrainingDiverged
    from training.run import run_training

    overrides = {"out_dir": args.out, "steps": args.steps, "zero_stage": args.zero_stage,
                 "progress": False if args.no_progress else None}
    config = load_train_config(args.config, overrides)
    try:
        result = run_training(config, resume=args.resume, export=not args.no_export)
    except TrainingDiverged as error:
        print(f"streamvln train: training diverged: {error}", file=sys.stderr)
        return 3
    if result.rank != 0:
        return 0
    summary = {"steps": result.steps, "loss": result.last_scalars.get("loss"),
               "checkpoint": str(result.checkpoint) if result.checkpoint else None,
               "model": str(result.export_dir) if result.export_dir else None,
               "stopped_by_signal": result.stopped_by_signal}
    print(json.dumps(summary))
    return 0
