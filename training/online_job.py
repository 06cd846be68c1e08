"""`streamvln train --online`: the online learner and N actor processes on one machine.

The learner runs in this process (training/online.py, the same code as `streamvln learner`); the
actors are `streamvln actor` processes (rollout/actor_processes.py) connected to its loopback
sockets. A monitor thread watches them: an actor that dies is logged and restarted (up to
`max_restarts` times each; the learner keeps training on the store meanwhile). SIGTERM / Ctrl-C:
before training starts the wait is aborted; during training the learner saves a checkpoint after the
current step; then the actors are told to stop (weights PUB "stop", then SIGTERM, then SIGKILL).

Exit code (`OnlineJobResult.exit_code`): 0 when training finished and every actor exited 0;
128 + signal when stopped by a signal (state saved); 1 when an actor failed or training could not run.
"""

from __future__ import annotations

import logging
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rollout.actor_processes import ActorProcessConfig, actor_id, spawn_actor, wait_or_terminate
from training.config import TrainConfig
from training.online import OnlineConfig, OnlineLearner, OnlineResult, StopRequested

log = logging.getLogger(__name__)


@dataclass
class OnlineJobResult:
    result: OnlineResult | None
    actor_codes: dict[str, int] = field(default_factory=dict)  # final exit code per actor
    failures: list[str] = field(default_factory=list)  # "actor-1 exited with -9 (restarted)"
    stopped_by_signal: int | None = None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.stopped_by_signal is not None and self.error is None:
            return 128 + self.stopped_by_signal
        if self.result is None or self.error is not None or self.failures:
            return 1
        return 0 if all(code == 0 for code in self.actor_codes.values()) else 1


class _ActorMonitor(threading.Thread):
    """Restarts actors that die while the job runs; aborts the wait for data when none is left."""

    def __init__(self, spawn, count: int, learner: OnlineLearner, max_restarts: int):
        super().__init__(name="actor-monitor", daemon=True)
        self.spawn, self.learner, self.max_restarts = spawn, learner, max_restarts
        self.processes: list[subprocess.Popen] = [spawn(index) for index in range(count)]
        self.restarts = [0] * count
        self.failures: list[str] = []
        self.given_up: set[int] = set()  # actors out of restarts (reported once)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for index, process in enumerate(self.processes):
                code = process.poll()
                stopping = self.stopping.is_set() or self.learner.shared.stop_actors  # actors were told to stop
                if code is None or stopping or index in self.given_up:
                    continue
                restart = self.restarts[index] < self.max_restarts
                self.failures.append(f"{actor_id(index)} exited with {code}" + (" (restarted)" if restart else ""))
                log.error("actor %s exited with %s during the run%s", actor_id(index), code,
                          "; restarting it" if restart else "")
                if restart:
                    self.restarts[index] += 1
                    self.processes[index] = self.spawn(index)
                else:
                    self.given_up.add(index)
            if all(p.poll() is not None for p in self.processes) and self.learner.learner is None:
                log.error("every actor has exited before training started: stopping")
                self.learner.stop_event.set()


def run_online_job(train_config: TrainConfig, online: OnlineConfig, actors: ActorProcessConfig, num_actors: int,
                   log_dir: str | Path, max_restarts: int = 2) -> OnlineJobResult:
    if num_actors < 1:
        raise ValueError(f"train --online needs at least one actor, got {num_actors}")
    actors.validate()
    online.token = online.token or secrets.token_hex(16)
    learner = OnlineLearner(train_config, online)
    addresses = learner.start_transport()
    log.info("online learner listening on %s", addresses)
    monitor = _ActorMonitor(lambda index: spawn_actor(actors, index, addresses, online.token, Path(log_dir)),
                            num_actors, learner, max_restarts)
    signals: list[int] = []

    def on_signal(signum, _frame) -> None:  # the learner installs its own handlers while training
        signals.append(signum)
        learner.stop_event.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    job = OnlineJobResult(result=None)
    monitor.start()
    try:
        job.result = learner.run()
        if learner.learner is not None and learner.learner.stopped_by_signal is not None:
            signals.append(learner.learner.stopped_by_signal)
    except StopRequested as error:
        job.error = None if signals else str(error)
    except Exception as error:  # reported as the job's failure after the actors are stopped
        log.exception("online learner failed")
        job.error = f"{type(error).__name__}: {error}"
    finally:
        monitor.stopping.set()
        monitor.join()
        learner.stop()
        deadline = time.monotonic() + 60.0
        for index, process in enumerate(monitor.processes):
            job.actor_codes[actor_id(index)] = wait_or_terminate(process, max(1.0, deadline - time.monotonic()))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    job.failures = monitor.failures
    job.stopped_by_signal = signals[0] if signals else None
    return job
