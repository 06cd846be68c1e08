"""`streamvln bench model`: forward+backward tokens/s and peak memory of the SlowFast model per preset.

Each sample is a StreamVLN-shaped sequence of --seq tokens after expansion: --memory history frames
at one `<memory>`, --frames window frames each followed by a short assistant answer, the rest text.
Random weights, synthetic token ids. Times encode_frames + insertion + LM forward + backward
(assistant-only loss); also times the insertion alone to show it is not a bottleneck. GPU when
available (bf16), else CPU (fp32); works on the CPU with the tiny preset.
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import TYPE_CHECKING

from streamvln import cli_defaults

if TYPE_CHECKING:  # torch and the model are imported where used: `streamvln --help` stays fast
    import torch

    from agent.config import SlowFastConfig

NAME = "model"
HELP = "SlowFast model forward+backward tokens/s and peak memory per preset"
ANSWER_TOKENS = 5  # labelled tokens after each window frame (4 actions + <|im_end|>)
H100_BF16_DENSE_FLOPS = 989e12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", nargs="+", default=["tiny"], choices=cli_defaults.MODEL_PRESETS)
    parser.add_argument("--seq", type=int, default=4096, help="tokens per sample after frame expansion")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=8, help="window frames per sample")
    parser.add_argument("--memory", type=int, default=8, help="history frames per sample")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp32"), default="auto")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    parser.add_argument("--optimizer", choices=("none", "adamw"), default="none",
                        help="also time a torch AdamW step (fused on CUDA) per step")
    parser.add_argument("--tunable", nargs="+", default=list(cli_defaults.TUNABLE_PARTS),
                        choices=cli_defaults.TUNABLE_PARTS,
                        help="mm_tunable_parts to train (frozen parts get no gradients)")


def run(args: argparse.Namespace) -> dict:
    import torch

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
        args.dtype, torch.bfloat16 if device.type == "cuda" else torch.float32)
    results = {}
    for name in args.preset:
        results[name] = _bench_preset(name, args, device, dtype)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the previous preset's model is gone; give its memory back
    return {"benchmark": NAME, "device": _device_name(device), "dtype": str(dtype).removeprefix("torch."),
            "seq": args.seq, "batch": args.batch, "frames": args.frames, "memory": args.memory,
            "grad_checkpointing": args.grad_checkpointing, "optimizer": args.optimizer,
            "tunable": sorted(args.tunable), "presets": results}


def synthetic_batch(config: SlowFastConfig, seq: int, batch: int, frames: int, memory: int,
                    device: torch.device) -> dict:
    """A batch whose samples expand to exactly `seq` tokens (placeholders -> frame tokens)."""
    import torch

    from agent.config import IGNORE_INDEX, IMAGE_TOKEN_INDEX, MEMORY_TOKEN_INDEX

    per_frame = config.tokens_per_frame
    placeholders = frames + (1 if memory else 0)
    text = seq - (frames + memory) * per_frame
    if text < placeholders + frames * (ANSWER_TOKENS + 1) + 8:
        raise ValueError(f"--seq {seq} leaves {text} text tokens for {frames + memory} frames of "
                         f"{per_frame} tokens; raise --seq or lower --frames/--memory")
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(8, config.vocab_size, (batch, text + placeholders), generator=generator)
    labels = torch.full_like(ids, IGNORE_INDEX)
    if memory:
        ids[:, 4] = MEMORY_TOKEN_INDEX
    # window frames spread over the rest, each followed by a labelled answer
    stride = (ids.shape[1] - 8) // frames
    for k in range(frames):
        at = 8 + k * stride
        ids[:, at] = IMAGE_TOKEN_INDEX
        labels[:, at + 2: at + 2 + ANSWER_TOKENS] = ids[:, at + 2: at + 2 + ANSWER_TOKENS]
    images = torch.randint(0, 256, (batch * (frames + memory), config.image_size, config.image_size, 3),
                           dtype=torch.uint8, generator=generator)
    return {
        "input_ids": ids.to(device), "labels": labels.to(device),
        "attention_mask": torch.ones_like(ids).to(device), "images": images.to(device),
        "image_counts": torch.full((batch,), frames + memory, device=device),
        "num_memory": torch.full((batch,), memory, device=device),
    }


def _bench_preset(name: str, args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> dict:
    import torch

    from agent.config import SlowFastConfig
    from agent.modeling import SlowFastForCausalLM

    config = SlowFastConfig.preset(name)
    config._attn_implementation = args.attn
    torch.manual_seed(0)
    model = SlowFastForCausalLM(config).to(device=device, dtype=dtype).train()
    model.set_tunable_parts(args.tunable)
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    batch = synthetic_batch(config, args.seq, args.batch, args.frames, args.memory, device)
    optimizer = None
    if args.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameter_groups(lr=1e-5, weight_decay=0.0),
                                      fused=device.type == "cuda")

    def train_step() -> None:
        model(**batch, return_logits=False).loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    step_s = _time_steps(train_step, args, device)
    peak_gb = _peak_memory_gb(device)  # of the training steps (before the insertion-only timing)
    with torch.no_grad():
        frames = model.encode_frames(batch["images"])
        insert_s = _time_steps(lambda: model.embed_multimodal(
            batch["input_ids"], batch["attention_mask"], batch["labels"], frames, batch["num_memory"],
            batch["image_counts"]), args, device)
    tokens = args.seq * args.batch
    lm_params = sum(p.numel() for p in model.language_model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = {
        "tokens_per_s": round(tokens / step_s, 1),
        "step_ms": round(step_s * 1e3, 2),
        "insertion_ms": round(insert_s * 1e3, 3),
        "insertion_share": round(insert_s / step_s, 4),
        "tokens_per_frame": config.tokens_per_frame,
        "trainable_parameters": trainable,
        "parameters": {part: sum(p.numel() for p in module.parameters()) for part, module in
                       (("vision_tower", model.vision_tower), ("projector", model.projector),
                        ("language_model", model.language_model))},
        "peak_memory_gb": round(peak_gb, 3),
    }
    if device.type == "cuda":
        # 6 N flops per token for the LM (+ attention), vision tower counted the same way per patch.
        flops = 6 * lm_params * tokens + 12 * config.text_config.num_hidden_layers * config.hidden_size * args.seq * tokens
        result["lm_mfu_h100_bf16"] = round(flops / step_s / H100_BF16_DENSE_FLOPS, 4)
    return result


def _time_steps(step, args: argparse.Namespace, device: torch.device) -> float:
    import torch

    for _ in range(args.warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / max(args.steps, 1)


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_gb(device: torch.device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (KiB -> GiB)


def _device_name(device: torch.device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
