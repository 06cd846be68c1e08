"""`streamvln sim view`: a PNG of one episode (RGB, depth, top-down map with reference and agent paths)."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamvln.commands.eval import add_sensor_arguments, make_backend


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sim", help="embedded simulator tools")
    actions = parser.add_subparsers(dest="sim_command", required=True)
    view = actions.add_parser("view", help="write a PNG of one episode")
    view.add_argument("--data", required=True)
    view.add_argument("--split", default="val_unseen")
    view.add_argument("--episode", required=True, help="episode id")
    view.add_argument("--out", required=True, help="PNG file")
    view.add_argument("--policy", default="expert")
    view.add_argument("--seed", type=int, default=0)
    add_sensor_arguments(view)
    view.set_defaults(handler=run_view)


def run_view(args: argparse.Namespace) -> int:
    from PIL import Image

    from envs.episode_view import episode_view
    from envs.episodes.io import load_split
    from envs.policies import make_policy
    from envs.task import VLNTask

    episodes, gt = load_split(args.data, args.split)
    matches = [e for e in episodes if e.key == str(args.episode)]
    if not matches:
        raise ValueError(f"episode {args.episode!r} is not in split {args.split!r} of {args.data}")
    episode = matches[0]
    task = VLNTask(make_backend(args, sensors=True))
    image, run = episode_view(task, make_policy(args.policy, seed=args.seed), episode, gt.get(episode.key))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(args.out)
    m = run.metrics
    print(f"episode {episode.episode_id}: {args.policy} SR {m.SR:.0f} NE {m.NE:.2f} m, {m.steps} steps -> {args.out}")
    return 0
