"""How long the learner is blocked waiting for data (issue 7 target: <= 5% of training time online).

`TimedBatches` wraps the learner's batch stream and times every `next()` (store refresh, empty
queues, the loader's workers falling behind); everything else of a step is compute. `DataWaitLogger`
wraps the learner's TrainLogger and adds, to every logged step, the fraction of wall time since the
previous log spent waiting (`data_wait_frac`), so TensorBoard and metrics.jsonl carry it next to the
loss. The startup wait for the store minimum is counted separately (`startup_wait_s`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class DataWaitTotals:
    startup_wait_s: float = 0.0  # waiting for the store minimum before the first step
    data_wait_s: float = 0.0  # inside next(batches) while training
    train_s: float = 0.0  # wall time from the first batch request to the last step's end
    batches: int = 0
    first_batch_s: float = 0.0  # the first next(): loader workers starting, a cold store (a one-off)

    @property
    def data_wait_frac(self) -> float:
        return self.data_wait_s / self.train_s if self.train_s > 0 else 0.0

    @property
    def steady_wait_frac(self) -> float:
        """The wait fraction without the first batch (what a long run converges to)."""
        steady = self.train_s - self.first_batch_s
        return (self.data_wait_s - self.first_batch_s) / steady if steady > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {"startup_wait_s": self.startup_wait_s, "data_wait_s": self.data_wait_s, "train_s": self.train_s,
                "batches": self.batches, "first_batch_s": self.first_batch_s,
                "data_wait_frac": self.data_wait_frac, "steady_wait_frac": self.steady_wait_frac}


class TimedBatches:
    """Iterator over batches that times the wait; keeps the stream's state_dict() for checkpoints."""

    def __init__(self, stream: Any, totals: DataWaitTotals | None = None):
        self.stream = stream
        self.totals = totals or DataWaitTotals()
        self._started: float | None = None
        self._window_start = time.perf_counter()
        self._window_wait = 0.0

    def __iter__(self) -> TimedBatches:
        return self

    def __next__(self) -> Any:
        begin = time.perf_counter()
        if self._started is None:
            self._started = self._window_start = begin
        batch = next(self.stream)
        waited = time.perf_counter() - begin
        if self.totals.batches == 0:
            self.totals.first_batch_s = waited
        self.totals.data_wait_s += waited
        self.totals.batches += 1
        self._window_wait += waited
        return batch

    def window_scalars(self) -> dict[str, float]:
        """Wait fraction since the previous call (one logging window); starts a new window."""
        now = time.perf_counter()
        elapsed = now - self._window_start
        fraction = self._window_wait / elapsed if elapsed > 0 else 0.0
        self._window_start, self._window_wait = now, 0.0
        self.finish(now)
        return {"data_wait_frac": fraction}

    def finish(self, now: float | None = None) -> None:
        """Close the total at `now` (the end of training)."""
        if self._started is not None:
            self.totals.train_s = (now or time.perf_counter()) - self._started

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


class DataWaitLogger:
    """A TrainLogger that adds the data-wait fraction of the window to every logged step."""

    def __init__(self, logger: Any, batches: TimedBatches):
        self._logger = logger
        self._batches = batches

    def log(self, step: int, scalars: dict[str, float]) -> None:
        scalars.update(self._batches.window_scalars())  # the learner returns this dict too
        self._logger.log(step, scalars)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)
