"""The engine thread: session table, batching, timeouts and idle eviction.

Only this thread touches the engine (models are not thread-safe). It takes every request the
socket thread has queued, answers resets/closes in arrival order, and runs the act requests of
distinct sessions that are waiting together as ONE `engine.act` call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.serving.engine import ActRequest, SessionEngine
from agent.serving.protocol import ErrorCode, ProtocolError, Reply, Request

log = logging.getLogger(__name__)
STOP = object()  # queued by the socket thread at shutdown: finish what is queued, then exit
_FORGET_EVICTED_AFTER = 1024  # evicted session keys remembered for a helpful error message


@dataclass
class Work:
    """One decoded request waiting for the engine thread."""

    envelope: list[bytes]  # ROUTER routing frames, echoed in the reply
    request: Request
    received_at: float  # time.perf_counter() when the socket thread read it
    _claim: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> tuple[bytes, str]:
        return (self.envelope[0], self.request.session)

    @property
    def claimed(self) -> bool:
        return self._claim.locked()

    def claim(self) -> bool:
        """True exactly once: whoever claims first (engine or timeout) answers the request."""
        return self._claim.acquire(blocking=False)


@dataclass
class Session:
    engine_id: str
    last_used: float
    calls: int = 0


class EngineWorker:
    """Runs in its own thread; `send(work, reply)` hands replies back to the socket thread."""

    def __init__(self, engine: SessionEngine, send: Callable[[Work, Reply], None], max_sessions: int,
                 idle_timeout_s: float, request_timeout_s: float, max_batch: int, batch_wait_s: float = 0.0) -> None:
        self.engine = engine
        self.send = send
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s  # after the first request, wait this long for more to batch
        self.inbox: queue.Queue = queue.Queue()
        self.sessions: dict[tuple[bytes, str], Session] = {}
        self._evicted: OrderedDict[tuple[bytes, str], str] = OrderedDict()
        self._opened = 0  # makes engine session ids unique over the server's life

    # ------------------------------------------------------------ loop
    def run(self) -> None:
        stopping = False
        while not stopping:
            items = self._take(wait_s=max(0.05, min(1.0, self.idle_timeout_s / 4)))
            stopping = any(item is STOP for item in items)
            self._process([item for item in items if item is not STOP])
            self._evict_idle()
        for key in list(self.sessions):
            self._close(key)

    def _take(self, wait_s: float) -> list:
        try:
            items = [self.inbox.get(timeout=wait_s)]
        except queue.Empty:
            return []
        # Many clients (e.g. actor processes) send at slightly different times: an optional short
        # wait lets their requests join one engine call (throughput) at the cost of that much latency.
        deadline = time.perf_counter() + self.batch_wait_s
        while len(items) < self.max_batch:
            try:
                remaining = deadline - time.perf_counter()
                items.append(self.inbox.get(timeout=remaining) if remaining > 0 else self.inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def _process(self, items: list[Work]) -> None:
        """Arrival order per session is kept: a control request or a second act flushes the batch."""
        batch: list[Work] = []
        for work in items:
            if not work.claim():
                continue  # already answered with a timeout by the socket thread
            waited_s = time.perf_counter() - work.received_at
            if waited_s > self.request_timeout_s:
                self._fail(work, ErrorCode.TIMEOUT,
                           f"request waited {waited_s:.3f} s in the queue (limit {self.request_timeout_s} s)")
                continue
            if work.request.type == "act" and all(work.key != other.key for other in batch):
                batch.append(work)
                continue
            self._act(batch)
            batch = []
            if work.request.type == "act":
                batch.append(work)
            else:
                self._control(work)
        self._act(batch)

    # ------------------------------------------------------------ requests
    def _control(self, work: Work) -> None:
        request = work.request
        if request.type == "reset":
            self._reset(work)
        elif request.type == "close":
            if work.key not in self.sessions:
                self._fail(work, *self._unknown(work.key))
                return
            self._close(work.key)
            self._reply(work, Reply(ok=True))

    def _reset(self, work: Work) -> None:
        if work.key in self.sessions:
            self._close(work.key)  # a reset starts a new episode: drop the old cache first
        elif len(self.sessions) >= self.max_sessions:
            self._fail(work, ErrorCode.TOO_MANY_SESSIONS,
                       f"{len(self.sessions)} sessions open (max {self.max_sessions}); close one or wait for idle eviction")
            return
        self._opened += 1
        engine_id = f"s{self._opened}:{work.request.session}"
        try:
            info = self.engine.open(engine_id, work.request.instruction)
        except Exception as error:
            log.exception("engine.open failed for session %r", work.request.session)
            self._fail(work, ErrorCode.INTERNAL, f"engine could not open the session: {type(error).__name__}: {error}")
            return
        self.sessions[work.key] = Session(engine_id=engine_id, last_used=time.monotonic())
        self._evicted.pop(work.key, None)
        self._reply(work, Reply(ok=True, notes=list(info.warnings)))

    def _act(self, batch: list[Work]) -> None:
        ready = []
        for work in batch:
            if work.key in self.sessions:
                ready.append(work)
            else:
                self._fail(work, *self._unknown(work.key))
        if not ready:
            return
        requests = [ActRequest(self.sessions[w.key].engine_id, w.request.rgb, w.request.depth, w.request.pose,
                               w.request.executed) for w in ready]
        start = time.perf_counter()
        try:
            results = self.engine.act(requests)
            if len(results) != len(requests):
                raise RuntimeError(f"engine returned {len(results)} results for {len(requests)} requests")
        except Exception as error:
            log.exception("engine.act failed on a batch of %d", len(requests))
            for work in ready:
                self._fail(work, ErrorCode.INTERNAL, f"engine failed: {type(error).__name__}: {error}")
            return
        model_ms = (time.perf_counter() - start) * 1000.0
        now = time.monotonic()
        for work, result in zip(ready, results):
            session = self.sessions[work.key]
            session.last_used, session.calls = now, session.calls + 1
            timings = {k: v for k, v in result.timings_ms.items() if k != "model"}
            timings["model"] = model_ms  # the batched call's wall time: what this request waited for
            reply = Reply(ok=True, actions=[int(a) for a in result.actions], timings_ms=timings,
                          notes=list(result.notes), extra={"batch_size": len(ready)})
            self._reply(work, reply, started_at=start)

    # ------------------------------------------------------------ sessions
    def _close(self, key: tuple[bytes, str]) -> None:
        session = self.sessions.pop(key)
        try:
            self.engine.close(session.engine_id)
        except Exception:
            log.exception("engine.close failed for session %r", key[1])

    def _evict_idle(self) -> None:
        now = time.monotonic()
        for key, session in list(self.sessions.items()):
            if now - session.last_used > self.idle_timeout_s:
                log.info("evicting session %r after %.0f s idle", key[1], now - session.last_used)
                self._close(key)
                self._evicted[key] = f"session {key[1]!r} was closed after {self.idle_timeout_s:g} s idle; send reset again"
                while len(self._evicted) > _FORGET_EVICTED_AFTER:
                    self._evicted.popitem(last=False)

    def _unknown(self, key: tuple[bytes, str]) -> tuple[ErrorCode, str]:
        message = self._evicted.get(key) or f"session {key[1]!r} is not open for this client; send reset with an instruction first"
        return ErrorCode.UNKNOWN_SESSION, message

    # ------------------------------------------------------------ replies
    def _reply(self, work: Work, reply: Reply, started_at: float | None = None) -> None:
        reply.request_id, reply.session = work.request.request_id, work.request.session
        reply.model_version = self.engine.model_version
        now = time.perf_counter()
        # received_at is taken before decoding, so the queue wait excludes the decode time.
        reply.timings_ms["decode"] = work.request.decode_ms
        reply.timings_ms["queue"] = ((started_at or now) - work.received_at) * 1000.0 - work.request.decode_ms
        reply.timings_ms["server"] = (now - work.received_at) * 1000.0
        self.send(work, reply)

    def _fail(self, work: Work, code: ErrorCode, message: str) -> None:
        error = ProtocolError(code, message, work.request.request_id, work.request.session)
        self._reply(work, Reply(ok=False, error_code=error.code, error_message=error.message))
