"""`streamvln actor --learner tcp://HOST:PORT --weights tcp://HOST:PORT --data DIR`: a DAgger actor process.

With --curve-keys DIR the sockets are CURVE clients (the learner runs with the same DIR).
The run token (shared secret of the learner's actors) comes from $STREAMVLN_TOKEN or --token-file,
never from the command line (visible to every user in `ps`).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("actor", help="collect DAgger episodes for an online learner")
    parser.add_argument("--learner", required=True, help="episode endpoint of the learner (tcp://HOST:PORT)")
    parser.add_argument("--weights", required=True, help="weight announcement endpoint (tcp://HOST:PORT)")
    parser.add_argument("--data", required=True, help="folder with {split}.json.gz")
    parser.add_argument("--split", default="train")
    parser.add_argument("--actor-id", default=f"actor-{os.getpid()}")
    parser.add_argument("--token-file", help="file holding the run token (else $STREAMVLN_TOKEN)")
    parser.add_argument("--envs", type=int, default=2, help="environments stepped by this process")
    parser.add_argument("--width", type=int, default=112)
    parser.add_argument("--height", type=int, default=112)
    parser.add_argument("--hfov", type=float, default=90.0)
    parser.add_argument("--max-steps", type=int, default=500, help="episode step limit")
    parser.add_argument("--dagger-p", type=float, default=0.75, help="beta = p ** (weights version + 1)")
    parser.add_argument("--intervene-after", type=int, help="expert takes over after N divergent steps")
    parser.add_argument("--chunk-mixing", action=argparse.BooleanOptionalAction, default=True,
                        help="beta picks the driver per label chunk (--no-chunk-mixing: per step, before issue 8's fix)")
    parser.add_argument("--accept-stop-m", type=float, default=0.0,
                        help="a policy STOP this close to the goal (geodesic m) ends the episode "
                             "(0: the expert's action instead)")
    parser.add_argument("--executed-in-context", action=argparse.BooleanOptionalAction, default=False,
                        help="tell the policy which chunk was really executed (its context then shows it)")
    parser.add_argument("--max-policy-lag", type=int, default=2)
    parser.add_argument("--max-episodes", type=int, help="stop after sending N episodes")
    parser.add_argument("--wait-weights", type=float, default=0.0,
                        help="seconds to wait for a first weights announcement (0: start with the expert)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curve-keys", help="CURVE key directory (`streamvln serve keygen DIR --clients NAME`)")
    parser.add_argument("--curve-client", default="client", help="this actor's key pair name in DIR/clients/")
    parser.set_defaults(handler=run)


def load_streaming_agent(path: str):
    """The streaming agent over published weights (one torch thread: actors share the CPU)."""
    import torch

    from streamvln.pipeline.evaluation import checkpoint_policy

    torch.set_num_threads(1)
    return checkpoint_policy(path).agent


def loop_config(args: argparse.Namespace, token: str):
    """The ActorLoopConfig of parsed `streamvln actor` arguments."""
    from envs.sensors import SensorConfig
    from rollout.actor_loop import ActorLoopConfig

    return ActorLoopConfig(
        episodes_address=args.learner, weights_address=args.weights, actor_id=args.actor_id, token=token,
        num_envs=args.envs, sensors=SensorConfig(args.width, args.height, args.hfov), max_steps=args.max_steps,
        dagger_p=args.dagger_p, intervene_after=args.intervene_after, chunk_mixing=args.chunk_mixing,
        accept_stop_m=args.accept_stop_m, executed_in_context=args.executed_in_context,
        max_policy_lag=args.max_policy_lag, max_episodes=args.max_episodes, wait_weights_s=args.wait_weights,
        seed=args.seed, curve_keys=args.curve_keys, curve_client=args.curve_client)


def run(args: argparse.Namespace) -> int:
    from envs.episodes.io import load_split
    from rollout.actor_loop import ActorLoop
    from training.online import verify_weights

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = Path(args.token_file).read_text().strip() if args.token_file else os.environ.get("STREAMVLN_TOKEN", "")
    config = loop_config(args, token)
    episodes, _ = load_split(args.data, args.split)
    loop = ActorLoop(config, episodes, load_streaming_agent, verify=verify_weights)
    terminated = []
    for signum in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C on `train --online` reaches the actors too
        signal.signal(signum, lambda *_: terminated.append(True))
    loop.stop_requested = lambda: bool(terminated)
    stats = loop.run()
    print(f"actor {args.actor_id}: sent {loop.sent} episode(s), {stats.as_dict()}, refused {loop.refused} time(s), "
          f"last weights v{loop.loaded_version}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m streamvln.commands.actor ...`: the actor without the whole CLI's imports (faster start)."""
    parser = argparse.ArgumentParser(prog="streamvln")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["actor", *(sys.argv[1:] if argv is None else argv)])
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
