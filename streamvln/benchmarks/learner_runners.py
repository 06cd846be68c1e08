"""The runs of `streamvln bench learner` (streamvln/benchmarks/learner.py): each builds one model +
engine and exposes step(batch) -> loss, counter (FLOPs), tokens_per_frame, close()."""

from __future__ import annotations

import argparse
import copy
import tempfile
from typing import TYPE_CHECKING

from training.flops import FlopCounter, LMShape

if TYPE_CHECKING:
    from training.config import SpeedConfig


class BaselineRunner:
    """HF model + DeepSpeed as documented by both projects; nothing of ours in the step."""

    def __init__(self, preset, args: argparse.Namespace, bf16: bool, packed: bool = False):
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
        self.packed = packed
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

    def step(self, batch: dict):
        host = flatten_like_hf(batch) if self.packed else {k: batch[k] for k in ("input_ids", "labels", "attention_mask")}
        inputs = {k: v.to(self.engine.device, non_blocking=True) for k, v in host.items()}
        # use_cache=False: transformers looks for packed position ids only without a cache
        loss = self.engine(**inputs, use_cache=False).loss
        self.engine.backward(loss)
        self.engine.step()
        return loss.detach()

    def close(self) -> None:
        if hasattr(self.engine, "destroy"):
            self.engine.destroy()
        del self.engine


def flatten_like_hf(batch: dict) -> dict:
    """The padded batch as transformers' DataCollatorWithFlattening lays it out: one row, no mask,
    position ids restarting per sample, each sample's first label -100 (done on the host, as the
    collator does). Call the model with use_cache=False, or transformers ignores the packing."""
    import torch

    valid = batch["attention_mask"].bool()
    lengths = valid.sum(dim=1).tolist()
    labels = batch["labels"][valid].clone()
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    labels[starts] = -100
    positions = torch.cat([torch.arange(n) for n in lengths])
    return {"input_ids": batch["input_ids"][valid][None], "labels": labels[None], "position_ids": positions[None]}


class LearnerRunner:
    def __init__(self, preset, args: argparse.Namespace, bf16: bool, speed: SpeedConfig, slowfast: bool,
                 micro_batch: int, zero_stage: int, grad_accum: int = 1, deepspeed_overrides: dict | None = None):
        import torch

        from training.config import TrainConfig
        from training.learner import Learner
        from training.modules import parts_for
        from training.run import flop_counter_for

        torch.manual_seed(args.seed)
        model = _slowfast_model(preset, speed) if slowfast else _hf_lm(preset, speed)
        parts = ("mm_mlp_adapter", "mm_language_model") if slowfast else ("mm_language_model",)
        self._tmp = tempfile.TemporaryDirectory(prefix="bench_learner_")
        config = TrainConfig(tunable_parts=parts, zero_stage=zero_stage, micro_batch_size=micro_batch,
                             grad_accum_steps=grad_accum, deepspeed_overrides=dict(deepspeed_overrides or {}),
                             bf16=bf16, steps=10**6, out_dir=self._tmp.name, progress=False, speed=speed,
                             log_every=10**6)  # the benchmark times steps itself
        self.batches_per_step = grad_accum
        needs_parts = speed.assistant_only_logits or speed.packing
        self.feed = Feed()
        self.learner = Learner(config, model, self.feed, parts=parts_for(model) if needs_parts else None,
                               flop_counter=flop_counter_for(model, parts))
        self.learner.logger.close()
        self.counter = self.learner.flop_counter
        self.tokens_per_frame = int(getattr(model.config, "tokens_per_frame", 0) or 0)

    def step(self, batch: dict | list[dict]) -> float:
        """The learner's real step (NaN check, bookkeeping included) on the given batch, or on the
        `batches_per_step` micro batches of one grad-accumulation step."""
        self.feed.queue = list(batch) if isinstance(batch, list) else [batch] * self.batches_per_step
        return self.learner.train_step()["loss"]

    def close(self) -> None:
        if hasattr(self.learner.engine, "destroy"):  # frees ZeRO buffers and hooks before the next run
            self.learner.engine.destroy()
        del self.learner
        self._tmp.cleanup()


class Feed:
    """The benchmark hands each run the same batches: the learner's stream yields the ones queued here."""

    def __init__(self):
        self.queue: list[dict] = []

    def __next__(self) -> dict:
        if not self.queue:
            raise RuntimeError("bench learner: the learner asked for more micro batches than one step holds")
        return self.queue.pop(0)

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
