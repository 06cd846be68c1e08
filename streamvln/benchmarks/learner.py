"""`streamvln bench learner`: training throughput of our learner vs the Hugging Face baseline, one run.

Runs (same synthetic batches, same LM shape, same FLOP formula: training/flops.py):
- `baseline_hf`: a plain transformers Qwen2ForCausalLM + deepspeed.initialize (ZeRO-2, bf16, SDPA,
  activation checkpointing, DeepSpeed's AdamW), `engine(**batch).loss` on padded token batches
  (full logits). What a user gets from Hugging Face + DeepSpeed out of the box.
- `learner_lm[:<levers>]`: our Learner on the same HF LM and the same token batches, per lever set.
- `learner_slowfast[:<levers>]`: our Learner on the full SlowFast model (vision tower + projector +
  LM) with frames whose visual tokens give the same LM lengths; its MFU counts the vision tower.
Lever sets are `+`-joined names: aolog (assistant-only logits), pack (padding-free packing),
compile (torch.compile of the LM blocks), ckpt<N> (checkpoint every N-th layer; ckpt0 = none),
flex (FlexAttention instead of SDPA), varlen (packing + SDPA causal kernels per packed sample). Tokens are real LM tokens (no padding) per second.
"""

from __future__ import annotations

import argparse
import copy
import gc
import resource
import tempfile
import time
from typing import TYPE_CHECKING

from training.flops import H100_BF16_DENSE_FLOPS, FlopCounter, LMShape, mfu  # standard library only

if TYPE_CHECKING:  # torch, yaml and the learner are imported where used: `streamvln --help` stays fast
    from training.config import SpeedConfig
    from training.synthetic import SyntheticShape

NAME = "learner"
HELP = "learner tokens/s, samples/s, MFU, peak memory vs the Hugging Face + DeepSpeed ZeRO-2 baseline"
LEVER_NAMES = ("aolog", "pack", "compile", "flex", "varlen", "ckpt<N>")


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


def parse_levers(text: str, grad_ckpt: bool) -> SpeedConfig:
    from training.config import SpeedConfig

    speed = SpeedConfig(assistant_only_logits=False, packing=False, gradient_checkpointing=grad_ckpt)
    for lever in filter(None, text.split("+")):
        if lever == "aolog":
            speed.assistant_only_logits = True
        elif lever == "pack":
            speed.packing = True
        elif lever == "compile":
            speed.compile_blocks = True
        elif lever == "flex":
            speed.attn_implementation = "flex_attention"
        elif lever == "varlen":
            speed.attn_implementation, speed.packing = "sdpa_varlen", True
        elif lever.startswith("ckpt") and lever[4:].isdigit():
            every = int(lever[4:])
            speed.gradient_checkpointing = every > 0
            speed.checkpoint_every_n_layers = max(every, 1)
        else:
            raise ValueError(f"unknown lever {lever!r} in --variants; known: {LEVER_NAMES}")
    speed.validate()
    return speed


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
    speeds = {v: parse_levers(v, args.grad_ckpt) for v in variants}  # bad levers fail before any work
    shape = SyntheticShape(args.micro_batch, args.seq, args.min_seq_fraction)
    shape.validate()
    preset = SlowFastConfig.preset(args.preset)
    init_distributed()  # one process, or every rank under torchrun / the deepspeed launcher
    world = world_size()
    pools = _batch_pools(preset, shape, args.seed, args.steps + args.warmup)
    result = {"preset": args.preset, "seq": args.seq, "micro_batch": args.micro_batch, "bf16": bf16,
              "zero_stage": args.zero_stage, "steps": args.steps, "warmup": args.warmup,
              "device": torch.cuda.get_device_name() if cuda else "cpu", "torch": torch.__version__,
              "peak_flops": args.peak_flops, "world_size": world, "runs": {}}
    result["padding_fraction"] = _padding_fraction(pools["tokens"])
    if args.baseline:
        baseline = _BaselineRunner(preset, args, bf16)
        result["baseline_optimizer"] = baseline.optimizer_name
        result["runs"]["baseline_hf"] = _measure(baseline, pools["tokens"], args, world)
    for variant, speed in speeds.items():
        if args.lm:
            runner = _LearnerRunner(preset, args, bf16, speed, slowfast=False)
            result["runs"][f"learner_lm:{variant}"] = _measure(runner, pools["tokens"], args, world)
        if args.slowfast:
            runner = _LearnerRunner(preset, args, bf16, speed, slowfast=True)
            result["runs"][f"learner_slowfast:{variant}"] = _measure(runner, pools["slowfast"], args, world)
    base = result["runs"].get("baseline_hf")
    for name, run_result in result["runs"].items():
        if base and name != "baseline_hf":
            run_result["speedup_vs_baseline"] = run_result["tokens_per_s"] / base["tokens_per_s"]
    return result


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


class _BaselineRunner:
    """HF model + DeepSpeed as documented by both projects; nothing of ours in the step."""

    def __init__(self, preset, args: argparse.Namespace, bf16: bool):
        import deepspeed
        import torch
        from transformers import Qwen2ForCausalLM

        torch.manual_seed(args.seed)
        text_config = copy.deepcopy(preset.text_config)
        text_config._attn_implementation = "sdpa"
        model = Qwen2ForCausalLM(text_config)
        if args.grad_ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.counter = FlopCounter(LMShape.from_qwen2_config(text_config))
        self.tokens_per_frame = 0
        config = {"train_micro_batch_size_per_gpu": args.micro_batch, "gradient_accumulation_steps": 1,
                  "gradient_clipping": 1.0, "bf16": {"enabled": bf16},
                  "zero_optimization": {"stage": 2, "overlap_comm": True, "contiguous_gradients": True},
                  "steps_per_print": 10**9}
        self.optimizer_name = "deepspeed FusedAdam (AdamW)"
        if torch.cuda.is_available():
            try:
                ds_config = {**config, "optimizer": {"type": "AdamW", "params": {"lr": 2e-5, "weight_decay": 0.0}}}
                self.engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                                            config=ds_config)
                return
            except Exception as error:  # the fused op could not be built (nvcc/arch): say so, go on
                self.optimizer_name = f"torch AdamW fused (DeepSpeed FusedAdam failed: {type(error).__name__})"
        else:
            self.optimizer_name = "torch AdamW"  # DeepSpeed's fused AdamW needs CUDA
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=torch.cuda.is_available() or None)
        self.engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)

    def step(self, batch: dict) -> float:
        inputs = {k: batch[k].to(self.engine.device, non_blocking=True)
                  for k in ("input_ids", "labels", "attention_mask")}
        loss = self.engine(**inputs).loss
        self.engine.backward(loss)
        self.engine.step()
        return loss

    def close(self) -> None:
        if hasattr(self.engine, "destroy"):
            self.engine.destroy()
        del self.engine


class _LearnerRunner:
    def __init__(self, preset, args: argparse.Namespace, bf16: bool, speed: SpeedConfig, slowfast: bool):
        import torch

        from training.config import TrainConfig
        from training.learner import Learner
        from training.modules import parts_for
        from training.run import flop_counter_for

        torch.manual_seed(args.seed)
        model = _slowfast_model(preset, speed) if slowfast else _hf_lm(preset, speed)
        parts = ("mm_mlp_adapter", "mm_language_model") if slowfast else ("mm_language_model",)
        self._tmp = tempfile.TemporaryDirectory(prefix="bench_learner_")
        config = TrainConfig(tunable_parts=parts, zero_stage=args.zero_stage, micro_batch_size=args.micro_batch,
                             bf16=bf16, steps=10**6, out_dir=self._tmp.name, progress=False, speed=speed,
                             log_every=10**6)  # the benchmark times steps itself
        needs_parts = speed.assistant_only_logits or speed.packing
        self.feed = _Feed()
        self.learner = Learner(config, model, self.feed, parts=parts_for(model) if needs_parts else None,
                               flop_counter=flop_counter_for(model, parts))
        self.learner.logger.close()
        self.counter = self.learner.flop_counter
        self.tokens_per_frame = int(getattr(model.config, "tokens_per_frame", 0) or 0)

    def step(self, batch: dict) -> float:
        """The learner's real step (NaN check, bookkeeping included) on the given batch."""
        self.feed.batch = batch
        return self.learner.train_step()["loss"]

    def close(self) -> None:
        if hasattr(self.learner.engine, "destroy"):  # frees ZeRO buffers and hooks before the next run
            self.learner.engine.destroy()
        del self.learner
        self._tmp.cleanup()


class _Feed:
    """The benchmark hands each run the same batches: the learner's stream yields the one set here."""

    batch: dict | None = None

    def __next__(self) -> dict:
        return self.batch

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _hf_lm(preset, speed: SpeedConfig):
    """The LM is built with SDPA; the learner switches it to the lever's attention (model_setup)."""
    from transformers import Qwen2ForCausalLM

    text_config = copy.deepcopy(preset.text_config)
    text_config._attn_implementation = "sdpa"
    return Qwen2ForCausalLM(text_config)


def _slowfast_model(preset, speed: SpeedConfig):
    from agent.modeling import SlowFastForCausalLM

    return SlowFastForCausalLM(copy.deepcopy(preset))


def _measure(runner, pool: list[dict], args: argparse.Namespace, world: int = 1) -> dict:
    """Warm up, then time `args.steps` steps; tokens, FLOPs and memory from the same batches.

    With several ranks every rank trains on the same batches (data parallel): throughput is world x
    one rank's, MFU is per GPU, memory is this rank's peak."""
    import torch

    from training.stats import StepStats
    from training.synthetic import CyclingBatches

    cuda = torch.cuda.is_available()
    batches = CyclingBatches(pool, pin_memory=cuda)
    for _ in range(args.warmup):
        runner.step(next(batches))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    stats = StepStats()
    losses = []
    started = time.perf_counter()
    for _ in range(args.steps):
        batch = next(batches)
        stats.add_batch(batch, runner.tokens_per_frame)
        losses.append(runner.step(batch))
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    flops = runner.counter.step_flops(stats.sample_lengths, stats.labelled_tokens, stats.frames)
    result = {
        "tokens_per_s": world * stats.tokens / seconds, "samples_per_s": world * stats.samples / seconds,
        "step_s": seconds / args.steps, "mfu": mfu(flops, seconds, 1, args.peak_flops),
        "model_tflop_per_step": flops / args.steps / 1e12, "loss_last": float(losses[-1]),
        "peak_memory_gib": (torch.cuda.max_memory_allocated() if cuda else _cpu_peak_bytes()) / 2**30,
    }
    runner.close()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def _cpu_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process peak RSS (Linux: KiB)
