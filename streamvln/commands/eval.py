"""`streamvln eval`: run a policy over a split and print VLN-CE metrics (and write JSON)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from streamvln import cli_defaults

if TYPE_CHECKING:
    from rich.table import Table


def add_sensor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--hfov", type=float, default=90.0, help="horizontal field of view, degrees")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a policy on an episode split")
    parser.add_argument("--data", required=True, help="directory with {split}.json.gz")
    parser.add_argument("--split", default="val_unseen")
    parser.add_argument("--policy", default="expert",
                        help=f"one of {', '.join(cli_defaults.POLICY_NAMES)} (replay as replay:FILE), "
                             "or checkpoint:PATH (the streaming agent with save_pretrained weights)")
    parser.add_argument("--results", default=None, metavar="FILE.jsonl",
                        help="per-episode results appended as episodes finish; a rerun skips finished ones")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (with --results)")
    parser.add_argument("--episodes", type=int, default=None, help="first N episodes only")
    parser.add_argument("--json", default=None, metavar="FILE", help="write per-episode and mean metrics")
    parser.add_argument("--seed", type=int, default=0, help="seed of stochastic policies")
    parser.add_argument("--max-steps", type=int, default=cli_defaults.TASK_MAX_STEPS)
    parser.add_argument("--scheme", default="streaming", choices=("streaming", "original"),
                        help="checkpoint policies: our streaming window or the original StreamVLN window scheme")
    parser.add_argument("--voxel-pruning", action="store_true",
                        help="checkpoint policies: voxel-prune memory tokens (from depth + pose)")
    parser.add_argument("--stop-bias", type=float, default=0.0,
                        help="checkpoint policies: added to STOP's logit before each choice (> 0 stops more "
                             "readily; tune on val_seen)")
    parser.add_argument("--blank-instructions", action="store_true",
                        help="blank every instruction (evaluate an instruction-blind model)")
    add_sensor_arguments(parser)
    parser.set_defaults(handler=run_eval)


def make_backend(args: argparse.Namespace, sensors: bool):
    from envs.embedded import EmbeddedBackend, EmbeddedConfig

    return EmbeddedBackend(EmbeddedConfig(width=args.width, height=args.height, hfov_deg=args.hfov,
                                          rgb=sensors, depth=sensors))


def metrics_table(title: str, aggregate: dict[str, float]) -> Table:
    from rich.table import Table

    from envs.metrics import METRIC_NAMES

    table = Table(title=title)
    for name in METRIC_NAMES:
        table.add_column(name, justify="right")
    table.add_row(*(f"{aggregate[name]:.1f}" if name == "steps" else f"{aggregate[name]:.3f}" for name in METRIC_NAMES))
    return table


def run_eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    from envs.episodes.io import load_split
    from envs.evaluation import evaluate
    from envs.task import TaskConfig, VLNTask

    # envs' policies + checkpoint:PATH
    from streamvln.pipeline.evaluation import blank_instruction, make_policy

    if args.results:
        return run_resumable_eval(args)
    episodes, gt = load_split(args.data, args.split)
    if args.episodes is not None:
        if args.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
        episodes = episodes[: args.episodes]
    if args.blank_instructions:
        episodes = [blank_instruction(e) for e in episodes]
    policy = make_policy(args.policy, seed=args.seed, settings=eval_settings(args))
    task = VLNTask(make_backend(args, getattr(policy, "uses_sensors", True)), TaskConfig(max_steps=args.max_steps))
    started = time.perf_counter()
    result = evaluate(task, policy, episodes, gt)
    elapsed = time.perf_counter() - started
    title = f"{args.policy} on {args.split} ({len(episodes)} episodes, {elapsed:.1f} s)"
    Console().print(metrics_table(title, result.aggregate))
    if args.json:
        payload = {"policy": args.policy, "split": args.split, "seconds": elapsed, **result.as_dict()}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(payload, indent=1) + "\n")
    task.close()
    return 0


def eval_settings(args: argparse.Namespace):
    from envs.sensors import SensorConfig
    from streamvln.pipeline.evaluation import EvalSettings

    settings = EvalSettings(args.data, args.split, SensorConfig(args.width, args.height, args.hfov), args.max_steps,
                            args.seed, args.workers, args.episodes, scheme=args.scheme, voxel_pruning=args.voxel_pruning,
                            blank_instruction=args.blank_instructions, stop_bias=args.stop_bias)
    settings.validate()
    return settings


def run_resumable_eval(args: argparse.Namespace) -> int:
    """Several worker processes, per-episode JSONL (resumable); prints the same table."""
    from rich.console import Console

    from streamvln.pipeline.evaluation import evaluate_policy

    settings = eval_settings(args)
    started = time.perf_counter()
    summary = evaluate_policy(args.policy, settings, args.results)
    elapsed = time.perf_counter() - started
    Console().print(metrics_table(f"{args.policy} on {args.split} ({summary['num_episodes']} episodes, "
                                  f"{elapsed:.1f} s)", summary["aggregate"]))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0
