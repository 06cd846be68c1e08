"""Where a learner step spends its time (issue 5): build the learner of a train config, run WARM steps,
then STEPS steps under torch.profiler.

Prints, for rank 0: wall time per step; on CUDA the time some kernel runs (the union of kernel intervals
over all streams, so overlapped communication is not counted twice) and the GPU's idle share; the host
syncs (ops that wait for the GPU: `.item()`, `bool(tensor)`, stream / device synchronise) per step;
and the ops by self host time. A step whose GPU idles for much of its wall time is host-bound: more
GPUs shorten its kernels, not its host work.

Usage (repo root): python3 scripts/profile_learner_step.py --config CONFIG.yaml [--steps 5] [--warm 5];
on 2 GPUs: python3 -m torch.distributed.run --nproc_per_node 2 scripts/profile_learner_step.py --config ...
"""

import argparse
import os
import tempfile
import time

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from training.config import load_train_config
from training.run import build_learner

# Ops after which the host has waited for the device.
HOST_SYNC_OPS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
                 "cudaEventSynchronize")


def busy_ms(events) -> float:
    """Milliseconds in which at least one device kernel runs (union of intervals, all streams)."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA)
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total / 1e3


def sync_counts(events) -> dict[str, tuple[int, float]]:
    """(calls, host ms) of each host-sync op."""
    counts: dict[str, tuple[int, float]] = {}
    for event in events:
        if event.name in HOST_SYNC_OPS:
            calls, ms = counts.get(event.name, (0, 0.0))
            counts[event.name] = (calls + 1, ms + event.cpu_time_total / 1e3)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="profile_learner_")
    config = load_train_config(args.config, {"out_dir": out, "steps": args.warm + args.steps, "progress": False,
                                             "checkpoint_every": 0, "log_every": 10**9})
    learner = build_learner(config)
    for _ in range(args.warm):
        learner.train_step()
    on_cuda = learner.device.type == "cuda"
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
    sync()
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            learner.train_step()
        sync()
    wall_ms = (time.perf_counter() - start) * 1e3 / args.steps
    if int(os.environ.get("RANK", "0")):
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    print(f"{world} rank(s), micro batch {config.micro_batch_size} x {config.grad_accum_steps} accumulated: "
          f"{wall_ms:.1f} ms per step (wall)")
    events = prof.events()
    if on_cuda:
        busy = busy_ms(events) / args.steps
        print(f"GPU busy {busy:.1f} ms per step, idle {100 * (1 - busy / wall_ms):.0f}% of the wall time")
    for name, (calls, ms) in sync_counts(events).items():
        print(f"host sync {name}: {calls / args.steps:.1f} per step, {ms / args.steps:.1f} ms per step")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
