"""`streamvln client`: drive simulator episodes through a running agent server and print metrics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamvln.cli_defaults import DEFAULT_BIND


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("client", help="run episodes through a running `streamvln serve` and print metrics")
    parser.add_argument("--address", default=DEFAULT_BIND, help=f"server endpoint (default {DEFAULT_BIND})")
    parser.add_argument("--data", help="R2R-CE episode directory ({split}.json.gz); default: generate episodes")
    parser.add_argument("--split", default="val_unseen")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="generator seed when no --data")
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--hfov", type=float, default=90.0)
    parser.add_argument("--raw", action="store_true", help="send raw uint8 frames instead of JPEG")
    parser.add_argument("--no-depth", action="store_true", help="do not send depth")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each reply")
    parser.add_argument("--curve-keys", type=Path, help="CURVE key directory (server.key + clients/NAME.key_secret)")
    parser.add_argument("--curve-client", default="client", help="client key name in --curve-keys")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.set_defaults(handler=run_client)


def run_client(args: argparse.Namespace) -> int:
    from agent.serving.auth import CurveCredentials
    from agent.serving.client import AgentClient
    from envs.embedded import EmbeddedBackend, EmbeddedConfig
    from envs.metrics import aggregate
    from envs.task import TaskConfig, VLNTask
    from streamvln.demo.driver import call_latency_summary, drive_episode, load_episodes

    episodes, gt = load_episodes(args.data, args.split, args.episodes, args.seed)
    curve = CurveCredentials.from_dir(args.curve_keys, args.curve_client) if args.curve_keys else None
    task = VLNTask(EmbeddedBackend(EmbeddedConfig(width=args.width, height=args.height, hfov_deg=args.hfov)),
                   TaskConfig(max_steps=args.max_steps))
    runs = []
    with AgentClient(args.address, timeout_s=args.timeout, curve=curve) as client:
        reply = client.ping(timeout_s=min(args.timeout, 10.0))
        print(f"server {args.address}: model version {reply.model_version}, {reply.extra.get('sessions')} sessions open")
        for episode in episodes:
            run = drive_episode(client, task, episode, gt.get(episode.key), session=f"episode-{episode.episode_id}",
                                jpeg=not args.raw, send_depth=not args.no_depth)
            runs.append(run)
            metrics = " ".join(f"{k} {v:.2f}" for k, v in run.metrics.items())
            print(f"episode {run.episode_id}: {len(run.calls)} calls, {metrics}", flush=True)
    task.close()
    result = {"episodes": len(runs), "metrics": aggregate([r.metrics for r in runs]),
              "latency": call_latency_summary(runs), "empty_replies": sum(r.empty_replies for r in runs)}
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0
