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

from streamvln.benchmarks.profiling import device_busy_ms, host_sync_counts, profiled
from training.config import load_train_config
from training.run import build_learner


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
    prof, wall_ms = profiled(learner.train_step, args.steps, cuda=learner.device.type == "cuda")
    wall_ms /= args.steps
    if int(os.environ.get("RANK", "0")):
        return
    world = int(os.environ.get("WORLD_SIZE", "1"))
    print(f"{world} rank(s), micro batch {config.micro_batch_size} x {config.grad_accum_steps} accumulated: "
          f"{wall_ms:.1f} ms per step (wall)")
    events = prof.events()
    if learner.device.type == "cuda":
        busy = device_busy_ms(events) / args.steps
        print(f"GPU busy {busy:.1f} ms per step, idle {100 * (1 - busy / wall_ms):.0f}% of the wall time")
    for name, (calls, ms) in host_sync_counts(events).items():
        print(f"host sync {name}: {calls / args.steps:.1f} per step, {ms / args.steps:.1f} ms per step")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=60))


if __name__ == "__main__":
    main()
