"""`streamvln bench actor`: env steps/s of one DAgger actor process (N envs, batched streaming agent).

Procedural val episodes, the embedded simulator at the given resolution, and the tiny preset with
random weights (or --checkpoint PATH) on one torch thread. beta = p ** iteration decides how often
the policy drives; the model is called whenever an env's 4-action chunk is used up, batched over envs.
Reports wall-clock and process-CPU rates (the latter is robust to other processes on the machine).
"""

from __future__ import annotations

import argparse
import time

NAME = "actor"
HELP = "env steps/s of one DAgger actor process with the streaming agent (CPU or GPU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--envs", type=int, default=4, help="environments stepped by the actor")
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--size", type=int, default=112, help="square frame size, px")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint", help="save_pretrained folder instead of random weights")
    parser.add_argument("--iteration", type=int, default=4, help="DAgger iteration (beta = p ** iteration)")
    parser.add_argument("--p", type=float, default=0.75)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)


def _agent(args: argparse.Namespace):
    import torch

    from agent.streaming import StreamingAgent, StreamingConfig
    from agent.streaming.engine import random_model
    from streamvln.pipeline.evaluation import checkpoint_policy

    torch.set_num_threads(1)
    if args.checkpoint:
        return checkpoint_policy(args.checkpoint).agent
    model, processor = random_model(args.preset, args.device, "fp32", args.seed)
    return StreamingAgent(model, processor, StreamingConfig(num_frames=16))


def run(args: argparse.Namespace) -> dict:
    from envs.episodes.generator import GeneratorConfig, generate_split
    from rollout.actors import DaggerActor, DaggerConfig, make_tasks

    episodes, _ = generate_split("val_unseen", args.episodes, seed=args.seed,
                                 config=GeneratorConfig(min_geodesic_m=3.5, max_geodesic_m=6.0))
    agent = _agent(args)
    config = DaggerConfig(args.p, args.iteration, intervene_after=6, seed=args.seed)
    warm = DaggerActor(make_tasks(args.envs, args.size, args.size, max_steps=300), agent, config)
    warm.run(episodes[: args.envs], lambda _t: None)  # numba compile / cache load, first model calls
    actor = DaggerActor(make_tasks(args.envs, args.size, args.size, max_steps=300), agent, config)
    wall, cpu = time.perf_counter(), time.process_time()
    stats = actor.run(episodes, lambda _t: None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"envs": args.envs, "size": args.size, "beta": config.beta, "episodes": stats.episodes,
            "steps": stats.steps, "model_calls": stats.model_calls, "policy_steps": stats.policy_steps,
            "steps_per_s_wall": stats.steps / wall, "steps_per_s_cpu": stats.steps / max(cpu, 1e-9),
            "seconds": wall, "device": args.device, "weights": args.checkpoint or f"{args.preset} (random)"}
