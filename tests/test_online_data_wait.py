"""The learner's data-wait measurement: time inside next(batches) over the training wall time."""

from __future__ import annotations

import time

from training.data_wait import DataWaitLogger, DataWaitTotals, TimedBatches


class SlowStream:
    """A batch stream whose every next() blocks for `wait_s` (an empty store / slow loader)."""

    def __init__(self, wait_s: float):
        self.wait_s, self.served, self.loaded = wait_s, 0, None

    def __next__(self):
        time.sleep(self.wait_s)
        self.served += 1
        return {"batch": self.served}

    def state_dict(self):
        return {"served": self.served}

    def load_state_dict(self, state):
        self.loaded = state


class RecordingLogger:
    def __init__(self):
        self.logged, self.closed = [], False

    def log(self, step, scalars):
        self.logged.append((step, dict(scalars)))

    def close(self):
        self.closed = True


def train_steps(batches: TimedBatches, logger, steps: int, compute_s: float) -> None:
    for step in range(1, steps + 1):
        next(batches)
        time.sleep(compute_s)  # the step's compute
        logger.log(step, {"loss": 1.0})


def test_wait_fraction_matches_the_blocked_share():
    totals = DataWaitTotals()
    batches = TimedBatches(SlowStream(0.03), totals)
    logger = DataWaitLogger(RecordingLogger(), batches)
    train_steps(batches, logger, steps=4, compute_s=0.03)
    batches.finish()
    assert totals.batches == 4
    assert 0.35 < totals.data_wait_frac < 0.65  # half of every step waits
    fractions = [scalars["data_wait_frac"] for _, scalars in logger._logger.logged]
    assert len(fractions) == 4 and all(0.3 < f < 0.7 for f in fractions)
    assert all(scalars["loss"] == 1.0 for _, scalars in logger._logger.logged)


def test_fast_data_is_a_small_fraction_and_state_is_delegated():
    stream = SlowStream(0.0)
    batches = TimedBatches(stream)
    logger = DataWaitLogger(RecordingLogger(), batches)
    train_steps(batches, logger, steps=3, compute_s=0.05)
    batches.finish()
    assert batches.totals.data_wait_frac < 0.05
    assert batches.state_dict() == {"served": 3}
    batches.load_state_dict({"served": 1})
    assert stream.loaded == {"served": 1}
    logger.close()  # other logger methods pass through
    assert logger._logger.closed
    assert set(batches.totals.as_dict()) == {"startup_wait_s", "data_wait_s", "train_s", "batches", "first_batch_s",
                                             "data_wait_frac", "steady_wait_frac"}


def test_steady_fraction_leaves_out_a_slow_first_batch():
    class ColdStart(SlowStream):
        def __next__(self):
            self.wait_s = 0.2 if self.served == 0 else 0.0
            return super().__next__()

    batches = TimedBatches(ColdStart(0.0))
    train_steps(batches, RecordingLogger(), steps=4, compute_s=0.05)
    batches.finish()
    totals = batches.totals
    assert totals.first_batch_s >= 0.2 and totals.data_wait_frac > 0.4
    assert totals.steady_wait_frac < 0.1
