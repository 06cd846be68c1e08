"""`streamvln train --config configs/x.yaml [--out DIR] [--resume] [--steps N]`: offline training.

`streamvln train --online --config X --store DIR --data DIR [--actors N]`: the online learner and N
DAgger actor processes on this machine (training/online_job.py); Ctrl-C / SIGTERM stop all cleanly.

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
    add_online_arguments(parser)
    parser.set_defaults(handler=run)


def add_online_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("online (--online: learner + actor processes on this machine)")
    group.add_argument("--online", action="store_true", help="train online on DAgger episodes from local actors")
    group.add_argument("--store", help="episode store (received episodes are committed here; required)")
    group.add_argument("--data", help="folder with the actors' {split}.json.gz episodes (required)")
    group.add_argument("--split", default="train")
    group.add_argument("--actors", type=int, default=2, help="actor processes")
    group.add_argument("--envs-per-actor", type=int, default=1)
    group.add_argument("--size", type=int, default=112, help="square frame size of the actors' simulators, px")
    group.add_argument("--actor-max-steps", type=int, default=500, help="episode step limit in the actors")
    group.add_argument("--dagger-p", type=float, default=0.75, help="beta = p ** (weights version + 1)")
    group.add_argument("--chunk-mixing", action=argparse.BooleanOptionalAction, default=True,
                       help="beta picks the driver per label chunk (--no-chunk-mixing: per step, before issue 8's fix)")
    group.add_argument("--accept-stop-m", type=float, default=0.0,
                       help="a policy STOP this close to the goal (geodesic m) ends a DAgger episode (0: never)")
    group.add_argument("--executed-in-context", action=argparse.BooleanOptionalAction, default=False,
                       help="tell the DAgger policy which chunk was really executed (its context then shows it)")
    group.add_argument("--min-episodes", type=int, default=1, help="start training when the store holds N")
    group.add_argument("--publish-every", type=int, default=50)
    group.add_argument("--max-policy-lag", type=int, default=2)
    group.add_argument("--max-restarts", type=int, default=2, help="restarts of each actor that dies")
    group.add_argument("--curve-keys", help="CURVE key directory with client keys actor-0..actor-N-1")


def online_actor_config(args: argparse.Namespace, seed: int, has_model: bool):
    """The actor processes of `train --online` (rollout.actor_processes.ActorProcessConfig)."""
    from envs.sensors import SensorConfig
    from rollout.actor_processes import ActorProcessConfig

    # With a starting model the learner announces v0 at once: actors wait for it (DAgger from the
    # start); without one they collect with the expert until the first trained weights.
    return ActorProcessConfig(data=args.data, split=args.split, envs=args.envs_per_actor,
                              sensors=SensorConfig(args.size, args.size), max_steps=args.actor_max_steps,
                              dagger_p=args.dagger_p, chunk_mixing=args.chunk_mixing,
                              accept_stop_m=args.accept_stop_m, executed_in_context=args.executed_in_context,
                              max_policy_lag=args.max_policy_lag, seed=seed, curve_keys=args.curve_keys,
                              wait_weights_s=120.0 if has_model else 0.0)


def run_online(args: argparse.Namespace) -> int:
    import logging
    import sys
    from pathlib import Path

    from streamvln.commands.learner import online_train_config
    from training.online import OnlineConfig
    from training.online_job import run_online_job

    if not args.store or not args.data:
        print("streamvln train --online needs --store DIR and --data DIR", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = online_train_config(args)
    online = OnlineConfig(store=args.store, episodes_address="tcp://127.0.0.1:0", weights_address="tcp://127.0.0.1:0",
                          min_episodes=args.min_episodes, publish_every=args.publish_every,
                          max_policy_lag=args.max_policy_lag, curve_keys=args.curve_keys)
    actors = online_actor_config(args, config.seed, has_model=bool(config.model_path))
    job = run_online_job(config, online, actors, args.actors, Path(config.out_dir) / "actors", args.max_restarts)
    summary = {"online": job.result.as_dict() if job.result else None, "actor_exit_codes": job.actor_codes,
               "actor_failures": job.failures, "stopped_by_signal": job.stopped_by_signal, "error": job.error}
    print(json.dumps(summary), flush=True)
    return job.exit_code


def run(args: argparse.Namespace) -> int:
    import sys

    if args.online:
        return run_online(args)

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
