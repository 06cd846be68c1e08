"""ZMQ ROUTER server: one socket thread (wire, validation, timeouts) + one engine thread.

Sessions are keyed by (client identity, session id); each has its own engine session (KV cache).
The socket thread decodes and validates every request (a malformed one gets an error reply and
touches no session), queues the rest for the engine thread (agent/serving/worker.py), and sends
back the replies it gets over an inproc socket. Requests that wait in the queue longer than
`request_timeout_s` get a timeout error.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator

from agent.serving.auth import load_server_keys
from agent.serving.engine import SessionEngine
from agent.serving.protocol import ErrorCode, ProtocolError, Reply, decode_request, encode_reply, error_reply
from agent.serving.worker import STOP, EngineWorker, Work

log = logging.getLogger(__name__)
DEFAULT_BIND = "tcp://127.0.0.1:5555"
_POLL_TICK_MS = 50  # how often the socket thread checks stop and queue deadlines when idle
_server_ids = itertools.count()


@dataclass
class ServerConfig:
    bind: str = DEFAULT_BIND
    allow_remote: bool = False  # a non-loopback bind must be asked for explicitly
    max_sessions: int = 16
    idle_timeout_s: float = 300.0  # sessions unused this long are closed
    request_timeout_s: float = 10.0  # longest a request may wait for the engine
    max_batch: int = 16  # most requests taken from the queue at once
    batch_wait_ms: float = 0.0  # after a first request, wait up to this long for others to batch with it
    max_message_bytes: int = 64 * 1024 * 1024
    curve_keys_dir: Path | None = None  # see agent/serving/auth.py for the layout

    def validate(self) -> None:
        if not is_local_endpoint(self.bind) and not self.allow_remote:
            raise ValueError(f"refusing to bind {self.bind}: not a loopback address. Pass --allow-remote "
                             "(and preferably --curve-keys DIR) to serve other machines")
        for name in ("max_sessions", "max_batch", "max_message_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"ServerConfig.batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
        for name in ("idle_timeout_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ServerConfig.{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.curve_keys_dir is not None and not Path(self.curve_keys_dir).is_dir():
            raise FileNotFoundError(f"CURVE key directory {self.curve_keys_dir} does not exist "
                                    "(create one with `streamvln serve keygen DIR`)")


def is_local_endpoint(endpoint: str) -> bool:
    """True for tcp on a loopback address (127.0.0.0/8, ::1, localhost) and for ipc/inproc."""
    scheme, _, rest = endpoint.partition("://")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp" or ":" not in rest:
        return False
    host = rest.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", "0.0.0.0"-like wildcards and interface names are not loopback
        return False


class AgentServer:
    """`start()` binds and runs in background threads; `stop()` finishes in-flight work and closes."""

    def __init__(self, engine: SessionEngine, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.config.validate()
        self.engine = engine
        max_sessions = min(self.config.max_sessions, getattr(engine, "max_sessions", None) or self.config.max_sessions)
        self._replies_endpoint = f"inproc://agent-server-replies-{next(_server_ids)}"
        self.worker = EngineWorker(engine, self._send_from_worker, max_sessions, self.config.idle_timeout_s,
                                   self.config.request_timeout_s, self.config.max_batch,
                                   self.config.batch_wait_ms / 1000.0)
        self.endpoint: str | None = None
        self._stop_requested = threading.Event()
        self._stopped = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Bind and start serving; returns the bound endpoint (a `*` port resolved)."""
        if self._threads:
            raise RuntimeError("server already started")
        self._context = zmq.Context()
        self._auth = None
        self._router = self._context.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.MAXMSGSIZE, self.config.max_message_bytes)
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting client keeps its identity
        try:
            if self.config.curve_keys_dir is not None:
                self._enable_curve(Path(self.config.curve_keys_dir))
            elif not is_local_endpoint(self.config.bind):
                log.warning("serving %s without CURVE: any machine that reaches it can drive the agent", self.config.bind)
            self._router.bind(self.config.bind)
        except zmq.ZMQError as error:
            self._close_sockets()
            raise ValueError(f"cannot bind {self.config.bind}: {error}") from None
        except Exception:
            self._close_sockets()
            raise
        self.endpoint = self._router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._replies_pull = self._context.socket(zmq.PULL)
        self._replies_pull.bind(self._replies_endpoint)
        self._replies_push = self._context.socket(zmq.PUSH)  # used by the engine thread only
        self._replies_push.connect(self._replies_endpoint)
        self._threads = [threading.Thread(target=self._worker_main, name="agent-server-engine", daemon=True),
                         threading.Thread(target=self._socket_main, name="agent-server-socket", daemon=True)]
        for thread in self._threads:
            thread.start()
        log.info("agent server listening on %s (max %d sessions)", self.endpoint, self.worker.max_sessions)
        return self.endpoint

    def request_stop(self) -> None:
        """Ask for a graceful stop without waiting (safe from a signal handler)."""
        self._stop_requested.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking requests, answer those in flight, close sessions and sockets."""
        self._stop_requested.set()
        for thread in self._threads:
            thread.join(timeout_s)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the server has stopped (e.g. after a signal); True if it did."""
        return self._stopped.wait(timeout_s)

    def __enter__(self) -> AgentServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _enable_curve(self, directory: Path) -> None:
        public, secret, authorized = load_server_keys(directory)
        self._auth = ThreadAuthenticator(self._context)
        self._auth.start()
        self._auth.configure_curve(domain="*", location=str(authorized))
        self._router.curve_secretkey = secret
        self._router.curve_publickey = public
        self._router.curve_server = True

    # ------------------------------------------------------------ threads
    def _worker_main(self) -> None:
        try:
            self.worker.run()
        finally:
            self._replies_push.send_multipart([b"__stopped__"])
            self._replies_push.close(linger=0)

    def _socket_main(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._replies_pull, zmq.POLLIN)
        pending: deque[Work] = deque()  # queued requests, oldest first, for deadline checks
        draining = False
        try:
            while True:
                events = dict(poller.poll(self._poll_timeout_ms(pending)))
                if self._replies_pull in events and self._forward_replies():
                    break  # the engine thread has answered everything and closed its sessions
                if self._router in events and not draining:
                    self._receive(pending)
                self._expire(pending)
                if self._stop_requested.is_set() and not draining:
                    draining = True
                    poller.unregister(self._router)
                    self.worker.inbox.put(STOP)
        finally:
            self._close_sockets()
            self._stopped.set()

    def _poll_timeout_ms(self, pending: deque[Work]) -> int:
        if not pending:
            return _POLL_TICK_MS
        due_s = pending[0].received_at + self.config.request_timeout_s - time.perf_counter()
        return max(1, min(_POLL_TICK_MS, int(due_s * 1000) + 1))

    def _receive(self, pending: deque[Work]) -> None:
        """Read every message waiting on the socket (so they reach the engine as one batch)."""
        for _ in range(self.config.max_batch * 4):
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            received_at = time.perf_counter()
            envelope, payload = frames[:-1], frames[-1]
            try:
                request = decode_request(payload)
            except ProtocolError as error:
                self._router.send_multipart([*envelope, encode_reply(error_reply(error, self.engine.model_version))])
                continue
            request.decode_ms = (time.perf_counter() - received_at) * 1000.0
            if request.type == "ping":
                reply = Reply(ok=True, request_id=request.request_id, session=request.session or None,
                              model_version=self.engine.model_version, extra={"sessions": len(self.worker.sessions)})
                self._router.send_multipart([*envelope, encode_reply(reply)])
                continue
            work = Work(envelope=envelope, request=request, received_at=received_at)
            pending.append(work)
            self.worker.inbox.put(work)

    def _expire(self, pending: deque[Work]) -> None:
        """Answer requests that waited past the deadline while the engine was busy."""
        now = time.perf_counter()
        while pending and (pending[0].claimed or now - pending[0].received_at > self.config.request_timeout_s):
            work = pending.popleft()
            if work.claim():
                waited = now - work.received_at
                error = ProtocolError(ErrorCode.TIMEOUT, f"request waited {waited:.3f} s for the engine "
                                      f"(limit {self.config.request_timeout_s} s)", work.request.request_id,
                                      work.request.session)
                self._router.send_multipart([*work.envelope, encode_reply(error_reply(error, self.engine.model_version))])

    def _forward_replies(self) -> bool:
        while True:
            try:
                frames = self._replies_pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return False
            if frames == [b"__stopped__"]:
                return True
            self._router.send_multipart(frames)

    def _send_from_worker(self, work: Work, reply: Reply) -> None:
        self._replies_push.send_multipart([*work.envelope, encode_reply(reply)])

    def _close_sockets(self) -> None:
        for name in ("_router", "_replies_pull"):
            sock = getattr(self, name, None)
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
        self._context.term()
