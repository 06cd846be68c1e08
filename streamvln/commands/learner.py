"""`streamvln learner --config train.yaml --store DIR`: the online learner (actors connect to it).

Binds loopback by default; pass --episodes tcp://0.0.0.0:5601 --weights tcp://0.0.0.0:5602 to accept
actors from other hosts (with --curve-keys DIR so only actors holding an authorized key connect).
The run token comes from $STREAMVLN_TOKEN or --token-file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("learner", help="online learner: train on actors' episodes, publish weights")
    parser.add_argument("--config", required=True, help="train config YAML (its store source is replaced by --store)")
    parser.add_argument("--store", required=True, help="episode store the received episodes are committed to")
    parser.add_argument("--out", help="output folder (overrides out_dir): weights/, checkpoints/")
    parser.add_argument("--steps", type=int, help="optimizer steps (overrides steps)")
    parser.add_argument("--episodes", default="tcp://127.0.0.1:5601", help="bind address for actors' episodes")
    parser.add_argument("--weights", default="tcp://127.0.0.1:5602", help="bind address for weight announcements")
    parser.add_argument("--token-file", help="file holding the run token (else $STREAMVLN_TOKEN)")
    parser.add_argument("--min-episodes", type=int, default=1, help="start training when the store holds N")
    parser.add_argument("--publish-every", type=int, default=50)
    parser.add_argument("--max-policy-lag", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--curve-keys", help="CURVE key directory (`streamvln serve keygen DIR --clients actor-0 ...`): "
                                             "only actors holding an authorized key can connect")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=run)


def read_token(token_file: str | None) -> str:
    """The run token from a file, else $STREAMVLN_TOKEN (never a command-line value: `ps` shows those)."""
    return Path(token_file).read_text().strip() if token_file else os.environ.get("STREAMVLN_TOKEN", "")


def online_train_config(args: argparse.Namespace):
    """The train config of an online run: the YAML with its store source replaced by --store."""
    from training.config import DataSourceConfig, load_train_config

    config = load_train_config(args.config, {"out_dir": args.out, "steps": args.steps,
                                             "progress": False if args.no_progress else None})
    config.data.sources = [s for s in config.data.sources if s.kind != "store"]
    config.data.sources.insert(0, DataSourceConfig(kind="store", path=args.store, name="nav"))
    return config


def run(args: argparse.Namespace) -> int:
    from training.online import OnlineConfig, OnlineLearner

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = online_train_config(args)
    online = OnlineConfig(store=args.store, episodes_address=args.episodes, weights_address=args.weights,
                          token=read_token(args.token_file), min_episodes=args.min_episodes,
                          publish_every=args.publish_every, max_policy_lag=args.max_policy_lag,
                          curve_keys=args.curve_keys)
    learner = OnlineLearner(config, online, resume=args.resume)
    addresses = learner.start_transport()
    print(json.dumps({"listening": addresses}), flush=True)
    result = learner.run()
    print(json.dumps(result.as_dict()), flush=True)
    return 0
