"""`streamvln bench actor`: env steps/s of DAgger actors (embedded simulator + streaming agent).

In-process (default, --actors 0): one actor process steps --envs envs with the agent in the same
process (one torch thread), the per-actor CPU number of issue 7.

--actors N: one inference process (this one) owns the device and serves the model through the
agent server (agent/serving: AgentServer + StreamingEngine, which batches the waiting sessions of
all actors into one call); N actor processes (rollout/remote_actor.py) run the simulator and the
DAgger logic and request actions over ZMQ on loopback. Reports env steps/s in total and per actor
over a common wall-clock window, and the engine batch size achieved in that window.

Procedural val episodes; the preset with random weights (or --checkpoint PATH); beta = p ** iteration
decides how often the policy drives; the model is called whenever an env's action chunk is used up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAME = "actor"
HELP = "env steps/s of DAgger actors: one process, or N processes feeding one batched inference server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actors", type=int, default=0,
                        help="actor processes feeding one inference server (0: one in-process actor)")
    parser.add_argument("--envs", type=int, default=4, help="environments stepped by each actor")
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--size", type=int, default=112, help="square frame size, px")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint", help="save_pretrained folder instead of random weights")
    parser.add_argument("--iteration", type=int, default=4, help="DAgger iteration (beta = p ** iteration)")
    parser.add_argument("--p", type=float, default=0.75)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", help="fp32 | bf16 | fp16 (inference server)")
    parser.add_argument("--startup", type=float, default=300.0,
                        help="longest wait for every actor process to be warm (--actors)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window (--actors)")
    parser.add_argument("--eager", action="store_true",
                        help="inference server without CUDA graphs (default: the serving config of the device)")
    parser.add_argument("--warmup-steps", type=int, default=40,
                        help="env steps each actor takes before it reports ready (--actors)")
    parser.add_argument("--batch-wait-ms", type=float, default=0.0,
                        help="inference server: wait this long after a request for others to batch with it")
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


def _episodes(args: argparse.Namespace):
    from envs.episodes.generator import GeneratorConfig, generate_split

    return generate_split("val_unseen", args.episodes, seed=args.seed,
                          config=GeneratorConfig(min_geodesic_m=3.5, max_geodesic_m=6.0))


def run(args: argparse.Namespace) -> dict:
    if args.actors > 0:
        return run_multi(args)
    from rollout.actors import DaggerActor, DaggerConfig, make_tasks

    episodes, _ = _episodes(args)
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


class RecordingEngine:
    """SessionEngine wrapper that notes (epoch time, batch size, seconds) of every act() call."""

    def __init__(self, engine):
        self.engine = engine
        self.model_version = engine.model_version
        self.max_sessions = engine.max_sessions
        self.calls: list[tuple[float, int, float]] = []

    def open(self, session_id: str, instruction: str):
        return self.engine.open(session_id, instruction)

    def act(self, requests):
        started, clock = time.time(), time.perf_counter()
        results = self.engine.act(requests)
        self.calls.append((started, len(requests), time.perf_counter() - clock))
        return results

    def close(self, session_id: str) -> None:
        self.engine.close(session_id)


def _inference_engine(args: argparse.Namespace, sessions: int) -> RecordingEngine:
    import dataclasses

    from agent.streaming.engine import StreamingEngine, default_config

    if args.device == "cpu":
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 2) - args.actors))
    config = default_config(args.device, args.checkpoint)
    if args.eager:
        config = dataclasses.replace(config, decode_graph=False, encode_graph=False)
    kwargs = {"max_sessions": sessions, "max_batch": sessions, "config": config}
    if args.checkpoint:
        return RecordingEngine(StreamingEngine.from_checkpoint(args.checkpoint, args.device, args.dtype, **kwargs))
    return RecordingEngine(StreamingEngine.from_preset(args.preset, args.device, args.dtype, seed=args.seed, **kwargs))


def _spawn_actor(args: argparse.Namespace, index: int, endpoint: str, data: Path, log_dir: Path) -> subprocess.Popen:
    config = {"server": endpoint, "actor_id": f"actor-{index}", "data": str(data), "envs": args.envs,
              "size": args.size, "iteration": args.iteration, "p": args.p, "measure_s": args.seconds,
              "seed": args.seed * 1000 + index, "warmup_steps": args.warmup_steps}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # actors never touch the GPU
    with open(log_dir / f"actor-{index}.log", "w") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "streamvln.benchmarks.actor", json.dumps(config)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True)


def _open_window(actors: list[subprocess.Popen], timeout_s: float, log_dir: Path) -> float:
    """Wait until every actor printed "ready" (warm), then tell all the same start time."""
    deadline = time.monotonic() + timeout_s
    for index, process in enumerate(actors):
        line = process.stdout.readline()  # an actor that dies gives EOF: reported below
        if line.strip() != "ready" or time.monotonic() > deadline:
            tail = (log_dir / f"actor-{index}.log").read_text()[-2000:]
            raise RuntimeError(f"actor {index} was not ready within {timeout_s:.0f} s (got {line!r}):\n{tail}")
    start_at = time.time() + 0.5
    for process in actors:
        process.stdin.write(f"{start_at}\n")
        process.stdin.flush()
    return start_at


def run_multi(args: argparse.Namespace) -> dict:
    """One inference server (this process, --device) fed by --actors actor processes."""
    from agent.serving.server import AgentServer, ServerConfig
    from envs.episodes.io import save_split

    sessions = args.actors * args.envs
    with tempfile.TemporaryDirectory(prefix="bench-actor-") as tmp:
        tmp_dir = Path(tmp)
        episodes, gt = _episodes(args)
        save_split(tmp_dir, "val_unseen", episodes, gt)
        engine = _inference_engine(args, sessions)
        server = AgentServer(engine, ServerConfig(bind="tcp://127.0.0.1:*", max_sessions=sessions,
                                                  max_batch=sessions, request_timeout_s=60.0,
                                                  batch_wait_ms=args.batch_wait_ms))
        endpoint = server.start()
        actors = [_spawn_actor(args, index, endpoint, tmp_dir, tmp_dir) for index in range(args.actors)]
        try:
            start_at = _open_window(actors, args.startup, tmp_dir)
            outputs = [_actor_result(process, index, args.seconds + 120, tmp_dir)
                       for index, process in enumerate(actors)]
        finally:
            for process in actors:
                if process.poll() is None:
                    process.kill()
            server.stop()
    return _summary(args, outputs, engine.calls, start_at)


def _actor_result(process: subprocess.Popen, index: int, timeout_s: float, log_dir: Path) -> dict:
    try:
        stdout, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise RuntimeError(f"actor {index} did not finish within {timeout_s:.0f} s") from None
    if process.returncode != 0:
        tail = (log_dir / f"actor-{index}.log").read_text()[-2000:]
        raise RuntimeError(f"actor {index} exited with {process.returncode}:\n{tail}")
    return json.loads(stdout.strip().splitlines()[-1])


def _summary(args: argparse.Namespace, outputs: list[dict], calls: list, start_at: float) -> dict:
    in_window = [(size, seconds) for started, size, seconds in calls if start_at <= started < start_at + args.seconds]
    sizes = sorted(size for size, _ in in_window)
    busy = min(sum(seconds for _, seconds in in_window), args.seconds)  # the last call may end after the window
    per_actor = [output["steps_per_s"] for output in outputs]
    return {"actors": args.actors, "envs_per_actor": args.envs, "size": args.size, "preset": args.preset,
            "device": args.device, "dtype": args.dtype, "beta": args.p ** args.iteration,
            "batch_wait_ms": args.batch_wait_ms, "eager": args.eager,
            "window_s": args.seconds, "steps_per_s_total": sum(per_actor),
            "steps_per_s_per_actor_mean": sum(per_actor) / len(per_actor),
            "steps_per_s_per_actor_min": min(per_actor),
            "engine_calls": len(in_window), "batch_size_mean": sum(sizes) / max(len(sizes), 1),
            "batch_size_p50": sizes[len(sizes) // 2] if sizes else 0, "batch_size_max": max(sizes, default=0),
            "engine_busy_frac": busy / args.seconds, "per_actor": outputs,
            "weights": args.checkpoint or f"{args.preset} (random)"}


def _worker_main(config_json: str) -> int:
    """An actor process of run_multi: prints its measured window as one JSON line."""
    from rollout.remote_actor import RemoteActorConfig, run_remote_actor

    def start_at() -> float:  # warm: tell the benchmark, then wait for the common start time
        print("ready", flush=True)
        return float(sys.stdin.readline())

    result = run_remote_actor(RemoteActorConfig(**json.loads(config_json)), start_at)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1]))
