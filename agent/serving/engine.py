"""The seam between the ZMQ server and a model: the `SessionEngine` protocol.

The server owns sessions, the wire and timing; an engine owns model state (one KV cache per
session) and turns a batch of frames from several sessions into actions in ONE call. The
streaming agent (agent/streaming/engine.py) implements this protocol; `ScriptedEngine` below is a
model-free implementation used to measure the server's own overhead and to run the plumbing
without weights.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class OpenInfo:
    """What opening a session reports back to the client (e.g. "instruction truncated to 512 tokens")."""

    warnings: list[str] = field(default_factory=list)


@dataclass
class ActRequest:
    session_id: str
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray | None = None  # (H, W, 1) float32, habitat-normalised to [0, 1]
    pose: np.ndarray | None = None  # (7,) float64: position xyz + quaternion xyzw
    executed: list[int] | None = None  # actions executed since the previous act where they differ from its reply


@dataclass
class ActResult:
    actions: list[int]  # up to num_future_steps actions, 0 STOP .. 3 TURN_RIGHT
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "frame resized from 480x640"


@runtime_checkable
class SessionEngine(Protocol):
    """A model that serves several sessions; every method is called from one thread only."""

    model_version: int
    max_sessions: int  # a hint: the server caps its own limit at this value

    def open(self, session_id: str, instruction: str) -> OpenInfo: ...

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        """One batched call; requests name distinct open sessions; results in request order."""
        ...

    def close(self, session_id: str) -> None: ...


class ScriptedEngine:
    """Model-free engine: each session replays `pattern` in chunks of `actions_per_call`.

    Deterministic and cheap, so server benchmarks measure the server and not a model;
    `delay_s` simulates model time per batched call.
    """

    def __init__(self, pattern: tuple[int, ...] = (1, 1, 2, 1, 3, 1), actions_per_call: int = 4,
                 delay_s: float = 0.0, max_sessions: int = 64, model_version: int = 0) -> None:
        if not pattern or any(a not in (0, 1, 2, 3) for a in pattern):
            raise ValueError(f"ScriptedEngine pattern must be non-empty actions in 0..3, got {pattern!r}")
        self.pattern = tuple(pattern)
        self.actions_per_call = actions_per_call
        self.delay_s = delay_s
        self.max_sessions = max_sessions
        self.model_version = model_version
        self._cursor: dict[str, int] = {}
        self.batch_sizes: list[int] = []  # one entry per act() call, for tests and benchmarks

    def open(self, session_id: str, instruction: str) -> OpenInfo:
        self._cursor[session_id] = 0
        return OpenInfo()

    def act(self, requests: list[ActRequest]) -> list[ActResult]:
        start = time.perf_counter()
        if self.delay_s:
            time.sleep(self.delay_s)
        self.batch_sizes.append(len(requests))
        results = []
        for request in requests:
            cursor = self._cursor[request.session_id]
            actions = [self.pattern[(cursor + i) % len(self.pattern)] for i in range(self.actions_per_call)]
            self._cursor[request.session_id] = cursor + self.actions_per_call
            results.append(ActResult(actions=actions))
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        for result in results:
            result.timings_ms["model"] = elapsed_ms
        return results

    def close(self, session_id: str) -> None:
        self._cursor.pop(session_id, None)

    @property
    def open_sessions(self) -> int:
        return len(self._cursor)
