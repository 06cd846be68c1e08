"""Training logs: TensorBoard scalars and a progress bar with ETA (rank 0 only).

Scalars per optimizer step: loss, loss/<task>, lr/<group>, grad_norm, tokens_per_s, samples_per_s,
mfu, samples_seen/<source>; also appended to `<out_dir>/metrics.jsonl` (one JSON object per step). The same dict goes to the progress bar (a few keys) and is returned by
the learner, so tests and benchmarks read what TensorBoard shows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger("training")

PROGRESS_KEYS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu")  # "lr": the first group's


class TrainLogger:
    def __init__(self, log_dir: Path | None, total_steps: int, start_step: int = 0,
                 progress: bool = True, enabled: bool = True):
        self.enabled = enabled
        self._writer = None
        self._bar = None
        self._jsonl = None
        if not enabled:
            return
        if log_dir is not None:
            # metrics.jsonl next to the event files: the same scalars, one JSON object per logged step.
            log_dir.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(log_dir.parent / "metrics.jsonl", "a")  # noqa: SIM115 - closed in close()
            from torch.utils.tensorboard import SummaryWriter

            log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(str(log_dir))
        if progress:
            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, step)
        if self._jsonl is not None:
            self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
            self._jsonl.flush()
        if self._bar is not None:
            first_lr = next((k for k in scalars if k.startswith("lr/")), None)
            values = {**scalars, "lr": scalars[first_lr]} if first_lr else scalars
            shown = {k: _short(values[k]) for k in PROGRESS_KEYS if k in values}
            self._bar.set_postfix(shown, refresh=False)

    def set_step(self, step: int) -> None:
        """After a resume: the bar continues from `step`."""
        if self._bar is not None:
            self._bar.n = step
            self._bar.refresh()

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            log.info(text)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _short(value: float) -> str:
    return f"{value:.3g}"
