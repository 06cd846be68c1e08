"""`streamvln eval`: run a policy over a split and print VLN-CE metrics (and write JSON)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from envs.episodes.io import load_split
from envs.evaluation import evaluate
from envs.metrics import METRIC_NAMES
from envs.policies import POLICY_FACTORIES, make_policy
from envs.task import TaskConfig, VLNTask


def add_sensor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--hfov", type=float, default=90.0, help="horizontal field of view, degrees")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a policy on an episode split")
    parser.add_argument("--data", required=True, help="directory with {split}.json.gz")
    parser.add_argument("--split", default="val_unseen")
    parser.add_argument("--policy", default="expert",
                        help=f"one of {', '.join(sorted(POLICY_FACTORIES))} (replay as replay:FILE)")
    parser.add_argument("--episodes", type=int, default=None, help="first N episodes only")
    parser.add_argument("--json", default=None, metavar="FILE", help="write per-episode and mean metrics")
    parser.add_argument("--seed", type=int, default=0, help="seed of stochastic policies")
    parser.add_argument("--max-steps", type=int, default=TaskConfig.max_steps)
    add_sensor_arguments(parser)
    parser.set_defaults(handler=run_eval)


def make_backend(args: argparse.Namespace, sensors: bool):
    from envs.embedded import EmbeddedBackend, EmbeddedConfig

    return EmbeddedBackend(EmbeddedConfig(width=args.width, height=args.height, hfov_deg=args.hfov,
                                          rgb=sensors, depth=sensors))


def metrics_table(title: str, aggregate: dict[str, float]) -> Table:
    table = Table(title=title)
    for name in METRIC_NAMES:
        table.add_column(name, justify="right")
    table.add_row(*(f"{aggregate[name]:.1f}" if name == "steps" else f"{aggregate[name]:.3f}" for name in METRIC_NAMES))
    return table


def run_eval(args: argparse.Namespace) -> int:
    episodes, gt = load_split(args.data, args.split)
    if args.episodes is not None:
        if args.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
        episodes = episodes[: args.episodes]
    policy = make_policy(args.policy, seed=args.seed)
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
