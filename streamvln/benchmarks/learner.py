"""`streamvln bench learner`: training throughput of our learner vs the Hugging Face baseline, one run.

Runs (same synthetic batches, same LM shape, same FLOP formula: training/flops.py):
- `baseline_hf`: a plain transformers Qwen2ForCausalLM + deepspeed.initialize (ZeRO-2, bf16, SDPA,
  activation checkpointing, DeepSpeed's AdamW), `engine(**batch).loss` on padded token batches
  (full logits). What a user gets from Hugging Face + DeepSpeed out of the box.
- `baseline_hf_packed` (--baseline-packed): the same, padding-free as transformers'
  DataCollatorWithFlattening lays batches out (one row, restarting position ids): no FLOPs on padding.
- `learner_lm[:<levers>]`: our Learner on the same HF LM and the same token batches, per lever set.
- `learner_slowfast[:<levers>]`: our Learner on the full SlowFast model (vision tower + projector +
  LM) with frames whose visual tokens give the same LM lengths; its MFU counts the vision tower.
Lever sets are `+`-joined names: aolog (assistant-only logits), pack (padding-free packing),
compile (torch.compile of the LM blocks), vcompile (of the vision tower blocks), ckpt<N> (checkpoint every N-th layer; ckpt0 = none), mb<N> (this variant's micro batch),
flex (FlexAttention instead of SDPA), varlen (packing + one fused varlen flash-attention call per layer
on CUDA), bucket<N> (pad the packed row to a multiple of N tokens), static / dynamic (compile shapes;
default automatic), zero<N> (this variant's ZeRO stage), ga<N> (N micro batches per optimizer step; tokens/s
and MFU over all of them), autocast (fp32 weights + torch.autocast bf16, no DeepSpeed bf16 wrapper), foreach,
and DeepSpeed config knobs (cg0, ovl0, rr, rb<N>, ab<N>, igu, noof, gafp32): the full list is in
learner_variants.py. Tokens are real LM tokens (no padding) per second.
Robust for one timed GPU call: the JSON file (--json FILE) is rewritten after every run ("partial":
true until the end), one summary line per run goes to stderr as it finishes, --run-budget-s stops a
run's timed steps early (reported as steps_timed / budget_hit), warmup_s shows the compile time and
compiled_graphs / graph_breaks what torch.compile built during the run (a later run with the same LM
shapes reuses the graphs of an earlier one).
Each run also reports `mfu_lm_head_all_tokens` (lm_head counted on every token, the 6 x params x tokens
convention of DESIGN.md's reference numbers); --profile-dir adds a torch.profiler table per run and
`gpu_busy_fraction` (the share of wall time in which some kernel runs: low means host-bound). A run that
runs out of GPU memory is reported as {"error": ...} and the benchmark goes on.
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
from functools import partial
from typing import TYPE_CHECKING

from streamvln.benchmarks.learner_runners import BaselineRunner, LearnerRunner, flatten_like_hf  # noqa: F401 (re-export)
from streamvln.benchmarks.learner_variants import (  # noqa: F401 (re-export)
    LEVER_NAMES,
    parse_levers,
    plan_variant,
    split_micro_batch,
    split_zero_stage,
)
from training.flops import H100_BF16_DENSE_FLOPS, mfu  # standard library only

if TYPE_CHECKING:  # torch, yaml and the learner are imported where used: `streamvln --help` stays fast
    from training.synthetic import SyntheticShape

NAME = "learner"
HELP = "learner tokens/s, samples/s, MFU, peak memory vs the Hugging Face + DeepSpeed ZeRO-2 baseline"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="tiny", help="SlowFast preset whose shapes are used (tiny, small, 1.5b, 7b)")
    parser.add_argument("--steps", type=int, default=5, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--seq", type=int, default=512, help="longest LM sequence of a sample (tokens)")
    parser.add_argument("--min-seq-fraction", type=float, default=0.5, help="sample lengths in [f*seq, seq]")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--zero-stage", type=int, default=2, choices=(0, 1, 2, 3),
                        help="ZeRO stage of our learner (the baseline is always ZeRO-2)")
    parser.add_argument("--variants", default="aolog+varlen",
                        help=f"comma-separated lever sets for our learner, e.g. aolog+pack,aolog+pack+compile ({LEVER_NAMES})")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the Hugging Face + DeepSpeed baseline (default on)")
    parser.add_argument("--lm", action=argparse.BooleanOptionalAction, default=True,
                        help="run our learner on the text-only LM (same batches as the baseline)")
    parser.add_argument("--slowfast", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the full SlowFast model (vision tower counted)")
    parser.add_argument("--grad-ckpt", action=argparse.BooleanOptionalAction, default=True,
                        help="activation checkpointing (baseline; our default unless a ckpt<N> lever says otherwise)")
    parser.add_argument("--peak-flops", type=float, default=H100_BF16_DENSE_FLOPS, help="peak FLOP/s for MFU")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                        help="bf16 (default: on with CUDA, off on the CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-packed", action=argparse.BooleanOptionalAction, default=False,
                        help="also run the baseline padding-free (Hugging Face's DataCollatorWithFlattening layout)")
    parser.add_argument("--profile-dir", default="",
                        help="write a torch.profiler table and the GPU-busy fraction of 2 extra steps per run here")
    parser.add_argument("--profile-runs", default="",
                        help="comma-separated variants (or baseline_hf) to profile with --profile-dir (default: all)")
    parser.add_argument("--baseline-last", action=argparse.BooleanOptionalAction, default=False,
                        help="run the baselines after our variants (a timeout then costs a baseline, not ours)")
    parser.add_argument("--run-budget-s", type=float, default=0.0,
                        help="stop a run's timed steps once they took this long (0: all --steps)")


def run(args: argparse.Namespace) -> dict:
    import torch

    from agent.config import SlowFastConfig
    from training.distributed import init_distributed, world_size
    from training.synthetic import SyntheticShape

    if args.steps < 1 or args.warmup < 0:
        raise ValueError("bench learner needs --steps >= 1 and --warmup >= 0")
    cuda = torch.cuda.is_available()
    bf16 = cuda if args.bf16 is None else args.bf16
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    plans = {v: plan_variant(v, args.micro_batch, args.zero_stage) for v in variants}
    speeds = {v: parse_levers(plan.levers, args.grad_ckpt) for v, plan in plans.items()}  # fail before any work
    shapes = {mb: SyntheticShape(mb, args.seq, args.min_seq_fraction) for mb in {args.micro_batch} | {
        plan.micro_batch for plan in plans.values()}}
    for shape in shapes.values():
        shape.validate()
    preset = SlowFastConfig.preset(args.preset)
    init_distributed()  # one process, or every rank under torchrun / the deepspeed launcher
    world = world_size()
    most_accum = max([plan.grad_accum for plan in plans.values()] + [1])
    pools_by_mb = {mb: _batch_pools(preset, shape, args.seed, (args.steps + args.warmup) * most_accum)
                   for mb, shape in shapes.items()}
    pools = pools_by_mb[args.micro_batch]
    result = {"preset": args.preset, "seq": args.seq, "micro_batch": args.micro_batch, "bf16": bf16,
              "zero_stage": args.zero_stage, "steps": args.steps, "warmup": args.warmup,
              "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "peak_flops": args.peak_flops, "world_size": world, "runs": {}}
    result["padding_fraction"] = _padding_fraction(pools["tokens"])
    planned = []  # (name, runner factory, batch pool), in run order
    if args.baseline:
        planned.append(("baseline_hf", partial(BaselineRunner, preset, args, bf16), pools["tokens"]))
    if args.baseline and args.baseline_packed:
        planned.append(("baseline_hf_packed", partial(BaselineRunner, preset, args, bf16, packed=True),
                        pools["tokens"]))
    for variant, speed in speeds.items():
        plan = plans[variant]
        own = pools_by_mb[plan.micro_batch]
        for slowfast, enabled in ((False, args.lm), (True, args.slowfast)):
            if enabled:
                name = f"learner_{'slowfast' if slowfast else 'lm'}:{variant}"
                factory = partial(LearnerRunner, preset, args, bf16, speed, slowfast=slowfast, micro_batch=plan.micro_batch,
                                  zero_stage=plan.zero_stage, grad_accum=plan.grad_accum,
                                  deepspeed_overrides=plan.deepspeed_overrides)
                planned.append((name, factory, own["slowfast" if slowfast else "tokens"]))
    if args.baseline_last:
        planned.sort(key=lambda run_plan: run_plan[0].startswith("baseline"))  # stable: order otherwise kept
    result["partial"] = True
    for name, factory, pool in planned:
        result["runs"][name] = _guarded(factory, pool, args, world, name.replace(":", "_"))
        _add_speedups(result["runs"])
        _report_run(name, result["runs"][name], args)
        if name != planned[-1][0]:
            _write_partial(result, args)
    result.pop("partial")
    return result


def _add_speedups(runs: dict[str, dict]) -> None:
    base = runs.get("baseline_hf")
    if not base or "tokens_per_s" not in base:
        return
    for name, run_result in runs.items():
        if name != "baseline_hf" and "tokens_per_s" in run_result:
            run_result["speedup_vs_baseline"] = run_result["tokens_per_s"] / base["tokens_per_s"]


def _report_run(name: str, run_result: dict, args: argparse.Namespace) -> None:
    """One line per finished run on stderr (stdout carries the final JSON)."""
    import sys

    keys = ("tokens_per_s", "mfu", "speedup_vs_baseline", "step_s", "warmup_s", "steps_timed", "compiled_graphs", "graph_breaks",
            "peak_memory_gib", "gpu_busy_fraction", "error")
    shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in run_result.items() if k in keys}
    print(f"[bench learner] {name}: {shown}", file=sys.stderr, flush=True)


def _write_partial(result: dict, args: argparse.Namespace) -> None:
    """Rewrite --json FILE with the runs so far: a timeout or crash later still leaves these numbers."""
    import json
    from pathlib import Path

    target = getattr(args, "json", None)
    if target in (None, "-", ""):
        return
    Path(target).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


def _batch_pools(preset, shape: SyntheticShape, seed: int, count: int) -> dict[str, list[dict]]:
    from training.synthetic import slowfast_batch, token_batch_like

    vocab = min(int(preset.vocab_size), 2048)  # ids the local tokenizer could produce; any id < vocab works
    slowfast = [slowfast_batch(shape, vocab, preset.tokens_per_frame, preset.image_size, seed=seed + i)
                for i in range(min(count, 4))]
    tokens = [token_batch_like(b, preset.tokens_per_frame, vocab, seed=seed + i) for i, b in enumerate(slowfast)]
    return {"slowfast": slowfast, "tokens": tokens}


def _padding_fraction(pool: list[dict]) -> float:
    real = sum(int(b["attention_mask"].sum()) for b in pool)
    total = sum(b["attention_mask"].numel() for b in pool)
    return 1.0 - real / total


def _guarded(make_runner, pool: list[dict], args: argparse.Namespace, world: int, label: str) -> dict:
    """One run; a failure (out of GPU memory, a compile error) is that run's result ({"error": ...}),
    not the end of the benchmark: the other runs' numbers still come back."""
    import torch

    # No torch._dynamo.reset() between runs: a later run with the same LM shapes reuses compiled layers.
    graphs_before, breaks_before = _compiled_graphs(), _graph_breaks()
    try:
        runner = make_runner()
    except Exception as error:  # noqa: BLE001 - reported in the result, the benchmark goes on
        return _error_result(error)
    try:
        result = _measure(runner, pool, args, world, label)
    except Exception as error:  # noqa: BLE001
        result = _error_result(error)
    result["compiled_graphs"] = _compiled_graphs() - graphs_before
    result["graph_breaks"] = _graph_breaks() - breaks_before
    try:
        runner.close()
    except Exception as error:  # noqa: BLE001 - a failed run may leave a half-built engine
        result.setdefault("close_error", f"{type(error).__name__}: {error}"[:200])
    del runner
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _error_result(error: Exception) -> dict:
    import logging

    import torch

    logging.getLogger(__name__).exception("bench learner: run failed")
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    first_line = (str(error).splitlines() or [""])[0][:200]
    kind = "out of memory" if isinstance(error, torch.OutOfMemoryError) else type(error).__name__
    return {"error": f"{kind}: {first_line}", "peak_memory_gib": peak}


def _measure(runner, pool: list[dict], args: argparse.Namespace, world: int = 1, label: str = "run") -> dict:
    """Warm up, then time `args.steps` steps; tokens, FLOPs and memory from the same batches.

    With several ranks every rank trains on the same batches (data parallel): throughput is world x
    one rank's, MFU is per GPU, memory is this rank's peak."""
    import torch

    from training.stats import StepStats
    from training.synthetic import CyclingBatches

    cuda = torch.cuda.is_available()
    batches = CyclingBatches(pool, pin_memory=cuda)
    warmup_started = time.perf_counter()
    for _ in range(args.warmup):
        runner.step(_step_input(runner, batches))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    warmup_s = time.perf_counter() - warmup_started
    stats = StepStats()
    losses = []
    budget = getattr(args, "run_budget_s", 0.0) or 0.0
    started = time.perf_counter()
    for _ in range(args.steps):
        step_input = _step_input(runner, batches)
        for batch in step_input if isinstance(step_input, list) else [step_input]:
            stats.add_batch(batch, runner.tokens_per_frame)
        losses.append(runner.step(step_input))
        if budget and time.perf_counter() - started > budget:
            break  # an upper bound on wall time (the GPU may still be running this step: timed below)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    steps = len(losses)
    flops = runner.counter.step_flops(stats.sample_lengths, stats.labelled_tokens, stats.frames)
    # DESIGN.md's reference MFU (6 x params x tokens) counts lm_head on every token: reported for comparison.
    flops_all_logits = runner.counter.step_flops(stats.sample_lengths, stats.tokens, stats.frames)
    result = {
        "tokens_per_s": world * stats.tokens / seconds, "samples_per_s": world * stats.samples / seconds,
        "step_s": seconds / steps, "mfu": mfu(flops, seconds, 1, args.peak_flops),
        "mfu_lm_head_all_tokens": mfu(flops_all_logits, seconds, 1, args.peak_flops),
        "model_tflop_per_step": flops / steps / 1e12, "loss_last": float(torch.as_tensor(losses[-1]).detach()),
        "micro_batch": stats.samples // steps // _batches_per_step(runner), "warmup_s": warmup_s,
        "grad_accum": _batches_per_step(runner), "steps_timed": steps,
        "budget_hit": steps < args.steps,
        "peak_memory_gib": (torch.cuda.max_memory_allocated() if cuda else _cpu_peak_bytes()) / 2**30,
    }
    if getattr(runner, "optimizer_name", None):
        result["optimizer"] = runner.optimizer_name
    if args.profile_dir and _wants_profile(label, args):
        try:  # a profiler failure (CUPTI) must not cost the measured numbers
            result["gpu_busy_fraction"] = _profile(runner, batches, args.profile_dir, label)
        except (RuntimeError, OSError) as error:
            result["profile_error"] = f"{type(error).__name__}: {error}"[:300]
    return result


def _wants_profile(label: str, args: argparse.Namespace) -> bool:
    """label: the run name with ':' as '_' (learner_slowfast_<variant>, baseline_hf)."""
    wanted = {v.strip() for v in (getattr(args, "profile_runs", "") or "").split(",") if v.strip()}
    return not wanted or label in wanted or label.split("_", 2)[-1] in wanted


def _batches_per_step(runner) -> int:
    return int(getattr(runner, "batches_per_step", 1))


def _step_input(runner, batches):
    """One optimizer step's input: a batch, or a list of grad-accumulation micro batches."""
    count = _batches_per_step(runner)
    return next(batches) if count == 1 else [next(batches) for _ in range(count)]


def _profile(runner, batches, out_dir: str, label: str, steps: int = 2) -> float | None:
    """Profile `steps` more steps; writes the op table to out_dir/<label>.txt and returns the fraction
    of wall time in which some GPU kernel runs (the union over streams; low = host-bound: syncs,
    launches, Python between kernels); None on the CPU, which has no device timeline."""
    from pathlib import Path

    import torch

    from streamvln.benchmarks.profiling import device_busy_ms, profiled

    cuda = torch.cuda.is_available()
    prof, wall_ms = profiled(lambda: runner.step(_step_input(runner, batches)), steps, cuda)
    kernel_ms = device_busy_ms(prof.events())
    busy = kernel_ms / wall_ms if wall_ms > 0 and cuda else None
    path = Path(out_dir) / f"{''.join(c if c.isalnum() or c in '-_' else '_' for c in label)}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    sort_key = "self_device_time_total" if cuda else "self_cpu_time_total"
    header = f"{label}: {steps} steps, wall {wall_ms:.1f} ms, kernels {kernel_ms:.1f} ms, busy {busy}\n"
    path.write_text(header + prof.key_averages().table(sort_by=sort_key, row_limit=30, max_name_column_width=60))
    return busy


def _compiled_graphs() -> int:
    """Graphs torch.compile built since the last torch._dynamo.reset() (one per shape bucket / recompile)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _graph_breaks() -> int:
    from torch._dynamo.utils import counters

    return int(sum(counters["graph_break"].values()))


def _cpu_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process peak RSS (Linux: KiB)
