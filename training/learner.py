"""The DeepSpeed learner: one optimizer step = grad_accum micro batches through `engine(batch)`.

    learner = Learner(config, model, batches, parts=..., processor=...)
    learner.train()            # until config.steps; checkpoints, SIGTERM, NaN handled
    learner.export("out/model")

Everything that decides the next step is saved by `save_checkpoint` (DeepSpeed engine: weights,
ZeRO optimizer partitions, lr scheduler; learner: step, data position, RNG) and restored by
`load_checkpoint`, so a resumed run reproduces the uninterrupted run's losses.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training import checkpoint as ckpt
from training.config import TrainConfig, config_to_dict
from training.deepspeed_config import build_deepspeed_config, learner_clips_gradients
from training.distributed import barrier, init_distributed, rank, world_size
from training.flops import FlopCounter, mfu
from training.logging import TrainLogger
from training.model_setup import merge_equal_groups, parameter_groups, prepare_model, set_seed
from training.modules import ModelParts, TrainingModule
from training.schedule import build_scheduler
from training.stats import StepStats, labelled_count

log = logging.getLogger(__name__)

PublishHook = Callable[[int, nn.Module], None]


def _token_mean_over_ranks(stats: StepStats, device: torch.device) -> float:
    import torch.distributed as dist

    tensor = torch.tensor([stats.loss_sum, stats.labelled_tokens, sum(stats.losses), len(stats.losses)],
                          dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    loss_sum, tokens, mean_sum, means = tensor.tolist()
    return loss_sum / tokens if tokens else mean_sum / max(means, 1)


def _require_fp32_trainable(model: nn.Module) -> None:
    """speed.torch_autocast has no DeepSpeed bf16 wrapper and so no fp32 master copy: the torch optimizer
    updates the module's own weights, which must be fp32 (bf16 weights would lose small updates)."""
    low = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32})
    if low:
        raise ValueError(f"speed.torch_autocast trains fp32 weights under torch.autocast, but trainable "
                         f"parameters are {', '.join(low)}: load the model in float32")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; a checkpoint of the last good state was saved first."""


class Learner:
    def __init__(self, config: TrainConfig, model: nn.Module, batches: Any, *,
                 parts: ModelParts | None = None, processor: Any = None,
                 flop_counter: FlopCounter | None = None, on_publish: PublishHook | None = None):
        """`batches`: iterator of batch dicts with state_dict()/load_state_dict() (training.data.BatchStream)."""
        config.validate()
        ds_config = build_deepspeed_config(config)  # bad JSON fails here, before any heavy work
        self.config = config
        self.out_dir = Path(config.out_dir)
        self.batches = batches
        self.processor = processor
        self.on_publish = on_publish
        self.flop_counter = flop_counter
        self.parts = parts
        self.step = 0
        self.samples_seen: dict[str, int] = {}
        self._stop_signal: int | None = None
        self._window = StepStats(steps=0)  # steps since the last log

        init_distributed()
        set_seed(config.seed)
        self.rank, self.world_size = rank(), world_size()
        self.fingerprint = ckpt.model_fingerprint(model)
        self.model_info = prepare_model(model, config.tunable_parts, config.speed)
        self.model = model
        if config.speed.torch_autocast:
            _require_fp32_trainable(model)
        self.zero_stage = int(ds_config["zero_optimization"]["stage"])
        self.engine_layout = ckpt.engine_layout(ds_config)
        self.engine, self.group_names = self._build_engine(model, parts, ds_config)
        self.device = self.engine.device
        if self.world_size == 1 and self.zero_stage == 0:
            # Nothing to all-reduce: skip DeepSpeed's flatten + copy-back of every gradient per step.
            self.engine.enable_backward_allreduce = False
        # The learner clips (one foreach norm) where DeepSpeed would take a norm per tensor.
        self._clip_params = ([p for p in model.parameters() if p.requires_grad]
                             if learner_clips_gradients(ds_config) and config.grad_clip > 0 else [])
        self._grad_norm: torch.Tensor | None = None
        self.logger = TrainLogger(self.out_dir / "tensorboard", config.steps, progress=config.progress,
                                  enabled=self.rank == 0)

    def _build_engine(self, model: nn.Module, parts: ModelParts | None, ds_config: dict) -> tuple[Any, list[str]]:
        import deepspeed

        groups = merge_equal_groups(parameter_groups(model, self.config.optim))
        names = [group.pop("name") for group in groups]
        optim = self.config.optim
        cuda = torch.cuda.is_available()
        impl = self.config.speed.optimizer_impl
        optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                                      fused=(cuda and impl == "fused") or None,
                                      foreach=(cuda and impl == "foreach") or None)
        scheduler = partial(build_scheduler, config=self.config.schedule, total_steps=self.config.steps)
        module = TrainingModule(model, self.config.speed, parts)
        engine, _, _, _ = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=ds_config)
        return engine, names

    # ------------------------------------------------------------------ the loop
    def train(self, steps: int | None = None) -> dict[str, float]:
        """Run until `config.steps` (or `steps` more steps); returns the last step's scalars."""
        target = self.config.steps if steps is None else self.step + steps
        scalars: dict[str, float] = {}
        with self._stop_on_signals():
            while self.step < target:
                scalars = self.train_step()
                self._after_step(scalars)
                if self._stop_signal is not None:
                    path = self.save_checkpoint()
                    self.logger.message(f"signal {self._stop_signal}: saved {path} at step {self.step}; stopping")
                    break
        every = self.config.checkpoint_every
        if self._stop_signal is None and every and self.step % every:  # the last step was not saved yet
            self.save_checkpoint()
        self.logger.close()
        return scalars

    def train_step(self) -> dict[str, float]:
        """One optimizer step over grad_accum micro batches.

        Returns all scalars on logging steps (averaged over the steps since the last log) and only
        {"loss": ...} otherwise, so the GPU is not synchronised for grad norms on other steps.
        """
        start_state = self._capture_state()  # what a divergence checkpoint must restore
        lrs = [float(group["lr"]) for group in self.engine.optimizer.param_groups]  # used by this step
        stats = StepStats()
        started = time.perf_counter()
        batches = [next(self.batches) for _ in range(self.config.grad_accum_steps)]
        counts = [labelled_count(batch) for batch in batches]
        step_tokens = self._tokens_over_ranks(sum(counts))
        for batch, count in zip(batches, counts):
            stats.add_batch(batch, self._tokens_per_frame())
            out = self.engine(self._to_device(batch))
            self.engine.backward(self._objective(out.loss, count, step_tokens))
            self._check_finite(out.loss, start_state)  # before the update, so the saved state is good
            # Read the losses while the GPU is drained by that check anyway: read after step(), they would
            # wait for the optimizer's kernels, which can instead run while the host prepares the next batch.
            stats.add_loss(out, batch, count)
            if self._clip_params and self.engine.is_gradient_accumulation_boundary():
                self._grad_norm = torch.nn.utils.clip_grad_norm_(self._clip_params, self.config.grad_clip,
                                                                 foreach=True)
            self.engine.step()
        self.step += 1
        stats.seconds = time.perf_counter() - started
        for source, count in stats.sources.items():
            self.samples_seen[source] = self.samples_seen.get(source, 0) + count
        self._window.merge(stats)
        if self.step % self.config.log_every:
            return stats.loss_scalars()
        scalars = self._scalars(self._window, lrs)
        self._window = StepStats(steps=0)
        return scalars

    def _objective(self, loss: torch.Tensor, count: int, step_tokens: int | torch.Tensor) -> torch.Tensor:
        """The micro batch mean rescaled so that, after DeepSpeed divides by grad_accum and averages
        over ranks, the gradient is the mean over all labelled tokens of the step."""
        if self.config.loss_normalization == "micro_batch":
            return loss
        scale = count * self.config.grad_accum_steps * self.world_size
        if isinstance(step_tokens, torch.Tensor):  # summed over ranks on the device: no host read
            return torch.where(step_tokens > 0, loss * scale / step_tokens.clamp(min=1), loss)
        return loss if step_tokens == 0 else loss * (scale / step_tokens)

    def _tokens_over_ranks(self, count: int) -> int | torch.Tensor:
        """The step's labelled tokens over all ranks; with several ranks a device tensor, so the step
        does not wait for the previous step's kernels to read it back."""
        if self.world_size == 1 or self.config.loss_normalization == "micro_batch":
            return count
        import torch.distributed as dist

        total = torch.tensor(count, dtype=torch.float32, device=self.device)
        dist.all_reduce(total)
        return total

    def _after_step(self, scalars: dict[str, float]) -> None:
        if self.step % self.config.log_every == 0:
            self.logger.log(self.step, scalars)
        self.logger.advance()
        every = self.config.checkpoint_every
        if every and self.step % every == 0:
            self.save_checkpoint()
        if self.on_publish is not None and self.config.publish_every and self.step % self.config.publish_every == 0:
            self.on_publish(self.step, self.model)

    # ------------------------------------------------------------------ pieces of a step
    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.parts is not None and hasattr(self.parts, "host_info"):
            batch = {**batch, **self.parts.host_info(batch)}  # read on the CPU: no GPU sync in the forward
        non_blocking = self.device.type == "cuda"
        return {k: v.to(self.device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def _tokens_per_frame(self) -> int:
        return int(getattr(getattr(self.model, "config", None), "tokens_per_frame", 0) or 0)

    def _check_finite(self, loss: torch.Tensor, start_state: dict[str, Any]) -> None:
        """Stop on NaN/inf. With several ranks the verdict is shared (saving is a collective)."""
        bad = (~torch.isfinite(loss.detach())).any().to(torch.float32).reshape(1)
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if not bool(bad):
            return
        path = self.save_checkpoint(state=start_state, step=self.step)
        self.logger.close()
        raise TrainingDiverged(f"loss is {loss.item()} at step {self.step + 1}; saved the state before this "
                               f"step to {path} (resume with a lower lr or skip the data)")

    def _scalars(self, stats: StepStats, lrs: list[float]) -> dict[str, float]:
        seconds = max(stats.seconds, 1e-9)
        scalars = stats.loss_scalars()
        if self.world_size > 1:  # the logged loss is over all ranks' tokens, not rank 0's share
            scalars["loss"] = _token_mean_over_ranks(stats, self.device)
        for name, lr in zip(self.group_names, lrs):
            scalars[f"lr/{name}"] = lr
        grad_norm = self._grad_norm if self._clip_params else self.engine.get_global_grad_norm()
        if grad_norm is not None:
            scalars["grad_norm"] = float(grad_norm)
        scalars["step_time_s"] = seconds / max(stats.steps, 1)
        scalars["tokens_per_s"] = stats.tokens * self.world_size / seconds
        scalars["samples_per_s"] = stats.samples * self.world_size / seconds
        if self.flop_counter is not None:
            flops = self.flop_counter.step_flops(stats.sample_lengths, stats.labelled_tokens, stats.frames)
            scalars["mfu"] = mfu(flops, seconds, 1, self.config.peak_flops)
        for source, count in self.samples_seen.items():
            scalars[f"samples_seen/{source}"] = float(count)
        return scalars

    # ------------------------------------------------------------------ state
    def _capture_state(self) -> dict[str, Any]:
        return {"data": dict(self.batches.state_dict()), "rng": ckpt.rng_state(),
                "samples_seen": dict(self.samples_seen)}

    def state_dict(self) -> dict[str, Any]:
        """The learner's own state (the engine's lives in the DeepSpeed checkpoint files)."""
        captured = self._capture_state()
        return {"step": self.step, "data": captured["data"], "samples_seen": captured["samples_seen"],
                "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ckpt.check_fingerprint(state["fingerprint"], self.fingerprint, Path("<state_dict>"))
        self.step = int(state["step"])
        self.batches.load_state_dict(state["data"])
        self.samples_seen = dict(state.get("samples_seen", {}))

    def save_checkpoint(self, state: dict[str, Any] | None = None, step: int | None = None) -> Path:
        """Save engine + learner state as `<out_dir>/checkpoints/step_XXXXXXXX` (all ranks call this)."""
        state = state or self._capture_state()
        step = self.step if step is None else step
        root = self.out_dir / "checkpoints"
        tag = ckpt.tag_for_step(step)
        self.engine.save_checkpoint(str(root), tag=tag, client_state={"learner_step": step})
        learner_state = {"step": step, "data": state["data"], "samples_seen": state["samples_seen"],
                         "fingerprint": self.fingerprint, "world_size": self.world_size,
                         "engine_layout": self.engine_layout, "optimizer_groups": self.group_names,
                         "config": config_to_dict(self.config)}
        ckpt.write_learner_state(root / tag, learner_state, self.rank, rng=state["rng"])
        barrier()
        if self.rank == 0:
            ckpt.prune_checkpoints(root, self.config.keep_checkpoints)
        return root / tag

    def load_checkpoint(self, path: str | Path | None = None) -> Path:
        """Restore from a checkpoint folder (default: the newest under out_dir/checkpoints)."""
        path = Path(path) if path is not None else ckpt.latest_checkpoint(self.out_dir / "checkpoints")
        if path is None:
            raise FileNotFoundError(f"no checkpoint under {self.out_dir / 'checkpoints'}")
        state = ckpt.read_learner_state(path)
        ckpt.check_fingerprint(state["fingerprint"], self.fingerprint, path)
        if state.get("world_size", 1) != self.world_size:
            raise ValueError(f"checkpoint {path} was saved with {state['world_size']} ranks, this run has "
                             f"{self.world_size} (ZeRO partitions differ)")
        ckpt.check_engine_layout(state.get("engine_layout"), self.engine_layout, path)
        ckpt.check_optimizer_groups(state.get("optimizer_groups"), self.group_names, path)
        loaded, _ = self.engine.load_checkpoint(str(path.parent), tag=path.name, load_optimizer_states=True,
                                                load_lr_scheduler_states=True)
        if loaded is None:
            raise FileNotFoundError(f"DeepSpeed found no engine checkpoint in {path}")
        self.load_state_dict(state)
        ckpt.restore_rng(path, self.rank)
        self.logger.set_step(self.step)
        return path

    def export(self, directory: str | Path) -> Path:
        """save_pretrained of the trained model (+ processor) for the agent; ZeRO-3 weights are gathered."""
        directory = Path(directory)
        state_dict = None
        if self.zero_stage == 3:
            full = self.engine._zero3_consolidated_16bit_state_dict()
            state_dict = {k.removeprefix("model."): v for k, v in (full or {}).items()}
        if self.rank == 0:
            directory.mkdir(parents=True, exist_ok=True)
            if state_dict is not None:
                self.model.save_pretrained(directory, state_dict=state_dict)
            else:
                self.model.save_pretrained(directory)
            if self.processor is not None:
                self.processor.save_pretrained(directory)
        barrier()
        return directory

    @contextmanager
    def _stop_on_signals(self):
        """SIGTERM (and SIGINT) set a flag; the loop saves a checkpoint after the current step and returns.
        A second SIGINT interrupts at once (KeyboardInterrupt), without saving."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, _frame):
            if signum == signal.SIGINT and self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signum

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def stopped_by_signal(self) -> int | None:
        return self._stop_signal
