"""Where a batched round of the streaming agent spends its time (issue 6): N staggered sessions (session
i starts i calls ahead, so one of them opens a window each round, as in `streamvln bench agent`'s
batched measurement), a few warm rounds, then ROUNDS rounds under torch.profiler.

Prints each round's timings and cache lengths, the wall time against the summed device-kernel time (the
difference is host time the GPU waits through), and the kernels by device time.

Usage (repo root): python3 scripts/profile_batched_round.py [--preset 7b] [--device cuda] [--sessions 8]
[--rounds 8] [--warm-rounds 4]
"""

import argparse
import itertools

from agent.streaming import Observation, StreamingAgent, StreamingConfig
from agent.streaming.engine import random_model
from streamvln.benchmarks.agent import FrameSource, staggered_sessions
from streamvln.benchmarks.profiling import profiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--warm-rounds", type=int, default=4)
    args = parser.parse_args()
    on_cuda = args.device.startswith("cuda")
    model, processor = random_model(args.preset, args.device, "bf16" if on_cuda else "fp32", 0)
    config = StreamingConfig(full_chunks=True, decode_graph=on_cuda, encode_graph=on_cuda, decoding="tree")
    agent = StreamingAgent(model, processor, config)
    frames = FrameSource(int(model.config.image_size), 0)
    sessions = staggered_sessions(agent, frames, args.sessions)
    for _ in range(args.warm_rounds):
        agent.act_batch(sessions, [Observation(frames.next()) for _ in sessions])
    counter = itertools.count()

    def one_round() -> None:
        out = agent.act_batch(sessions, [Observation(frames.next()) for _ in sessions])[0]
        timings = {key: round(value, 1) for key, value in out.timings_ms.items()}
        print(f"round {next(counter)}: {timings}, cache lengths {[s.cache.length for s in sessions]}")

    prof, wall_ms = profiled(one_round, args.rounds, on_cuda)
    events = prof.key_averages()
    kernel_ms = sum(event.self_device_time_total for event in events) / 1e3
    print(f"{args.rounds} rounds: wall {wall_ms:.0f} ms, summed device kernels {kernel_ms:.0f} ms")
    sort = "self_cuda_time_total" if on_cuda else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=30, max_name_column_width=70))


if __name__ == "__main__":
    main()
