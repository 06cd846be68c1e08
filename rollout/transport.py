"""ZMQ transport between actors and the learner (DESIGN.md 3.8). msgpack only, never pickle.

Episodes, actor -> learner: PUSH (actor, connects) / PULL (learner, binds). The PUSH socket's send
high-water mark bounds the episodes in flight: when the learner falls behind, `send` blocks (up to
its timeout) instead of buffering without limit. A message is
    {"type": "episode", "protocol": 1, "sender": actor id, "token": run token, "incarnation": uuid,
     "seq": n, "policy_version": v, "trajectory": {...}}
The receiver rejects and logs (counted per reason) messages of another protocol, an unknown sender
(wrong token, or an id outside the allowed set), a stale policy version (older than the newest
published version minus the allowed lag; expert-only episodes never are), a repeated sequence number, or an invalid trajectory.
Only complete, validated episodes are accepted: a killed actor never delivers half an episode.

CURVE (opt-in, rollout/curve.py): the learner is the CURVE server of both sockets, actors are clients;
a peer without an authorized key cannot complete the handshake, so its messages are never delivered.

Weights, learner -> actors: PUB (learner, binds) / SUB (actors). An announcement is
    {"type": "weights", "protocol": 1, "version": v, "path": save_pretrained folder, "sha256": ...}
or {"type": "stop"} at the end of a run. The publisher repeats the newest announcement (`heartbeat`)
so actors that connect late still learn it (PUB/SUB drops messages sent before a subscriber joined).
"""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack
import numpy as np
import zmq

from rollout.curve import CurveClientKeys, CurveServer, secure_client
from rollout.records import Trajectory

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
DEPTH_SCALE = 65535.0
WEIGHTS_TOPIC = b"weights"


# ---------------------------------------------------------------------- trajectory <-> wire
def trajectory_to_wire(trajectory: Trajectory) -> dict:
    """A msgpack-able dict: JPEG frames as stored, uint16 zlib depth, raw bytes for the arrays."""
    trajectory.validate()
    depth = None
    if trajectory.depth is not None:
        quantised = np.round(trajectory.depth[..., 0] * DEPTH_SCALE).astype("<u2")
        depth = {"hw": list(quantised.shape[1:]), "data": zlib.compress(quantised.tobytes(), 1)}
    return {
        "episode": trajectory.episode,
        "instructions": list(trajectory.instructions),
        "rgb_jpeg": trajectory.rgb_jpeg(),
        "label_actions": trajectory.label_actions.astype(np.int8).tobytes(),
        "executed_actions": None if trajectory.executed_actions is None else trajectory.executed_actions.tobytes(),
        "poses": None if trajectory.poses is None else np.asarray(trajectory.poses, "<f4").tobytes(),
        "depth": depth,
        "policy_version": int(trajectory.policy_version),
        "metrics": {key: float(value) for key, value in trajectory.metrics.items()},
        "source": trajectory.source,
    }


def trajectory_from_wire(data: dict) -> Trajectory:
    """Inverse of trajectory_to_wire; ValueError naming the field when something is missing or off."""
    try:
        labels = np.frombuffer(data["label_actions"], dtype=np.int8).copy()
        steps = labels.shape[0]
        executed = data["executed_actions"]
        poses = data["poses"]
        depth = None
        if data["depth"] is not None:
            height, width = data["depth"]["hw"]
            raw = np.frombuffer(zlib.decompress(data["depth"]["data"]), dtype="<u2")
            depth = (raw.reshape(steps, height, width, 1).astype(np.float32) / DEPTH_SCALE).astype(np.float32)
        trajectory = Trajectory(
            episode=dict(data["episode"]),
            instructions=tuple(data["instructions"]),
            rgb=list(data["rgb_jpeg"]),
            label_actions=labels,
            depth=depth,
            poses=None if poses is None else np.frombuffer(poses, "<f4").reshape(steps, -1).copy(),
            executed_actions=None if executed is None else np.frombuffer(executed, np.int8).copy(),
            policy_version=int(data["policy_version"]),
            metrics=dict(data["metrics"]),
            source=str(data["source"]),
        )
    except KeyError as error:
        raise ValueError(f"trajectory message lacks field {error}") from None
    except (TypeError, zlib.error) as error:
        raise ValueError(f"trajectory message is malformed: {error}") from None
    trajectory.validate()
    return trajectory


# ---------------------------------------------------------------------- episodes: actor -> learner
@dataclass(frozen=True)
class SenderConfig:
    address: str = "tcp://127.0.0.1:5601"
    actor_id: str = "actor-0"
    token: str = ""
    send_hwm: int = 4  # episodes queued in the actor before send blocks (backpressure)
    send_timeout_ms: int = 60_000  # a learner gone for this long makes send() return False
    curve: CurveClientKeys | None = None  # CURVE client keys when the learner requires them

    def validate(self) -> None:
        if not self.actor_id:
            raise ValueError("SenderConfig.actor_id must not be empty")
        if self.send_hwm < 1:
            raise ValueError(f"SenderConfig.send_hwm must be >= 1, got {self.send_hwm}")


class EpisodeSender:
    def __init__(self, config: SenderConfig, context: zmq.Context | None = None):
        config.validate()
        self.config = config
        self.incarnation = uuid.uuid4().hex  # a restarted actor is a new incarnation: its seq restarts
        self.seq = 0
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.PUSH)
        self.socket.setsockopt(zmq.SNDHWM, config.send_hwm)
        self.socket.setsockopt(zmq.SNDTIMEO, config.send_timeout_ms)
        self.socket.setsockopt(zmq.LINGER, 2000)
        self.socket.setsockopt(zmq.IMMEDIATE, 1)  # queue only on a live connection: no learner, no send
        secure_client(self.socket, config.curve)
        self.socket.connect(config.address)

    def send(self, trajectory: Trajectory, abort: Callable[[], bool] = lambda: False) -> bool:
        """Send one finished episode; False if the learner did not take it within the timeout, or
        `abort()` became true while waiting (e.g. the actor was told to stop)."""
        message = {"type": "episode", "protocol": PROTOCOL_VERSION, "sender": self.config.actor_id,
                   "token": self.config.token, "incarnation": self.incarnation, "seq": self.seq,
                   "policy_version": int(trajectory.policy_version), "source": trajectory.source,
                   "trajectory": trajectory_to_wire(trajectory)}
        payload = msgpack.packb(message, use_bin_type=True)
        deadline = time.monotonic() + self.config.send_timeout_ms / 1000.0
        # Wait for room in short polls rather than one blocking send, so a stop request is noticed.
        while not self.socket.poll(200, zmq.POLLOUT):
            if abort() or time.monotonic() > deadline:
                log.warning("actor %s: learner did not take episode seq %d (%s)", self.config.actor_id, self.seq,
                            "stopping" if abort() else f"{self.config.send_timeout_ms} ms")
                return False
        try:
            self.socket.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            log.warning("actor %s: learner did not take episode seq %d", self.config.actor_id, self.seq)
            return False
        self.seq += 1
        return True

    def close(self) -> None:
        self.socket.close()


@dataclass(frozen=True)
class ReceiverConfig:
    address: str = "tcp://127.0.0.1:5601"  # bind address; port 0 or "*" picks a free port
    token: str = ""
    allowed_senders: frozenset[str] | None = None  # None: any id with the right token
    max_policy_lag: int | None = 2  # reject episodes of weights older than newest - lag
    receive_hwm: int = 16

    def validate(self) -> None:
        if self.max_policy_lag is not None and self.max_policy_lag < 0:
            raise ValueError(f"ReceiverConfig.max_policy_lag must be >= 0 or None, got {self.max_policy_lag}")
        if self.receive_hwm < 1:
            raise ValueError(f"ReceiverConfig.receive_hwm must be >= 1, got {self.receive_hwm}")


@dataclass
class Received:
    sender: str
    seq: int
    trajectory: Trajectory


@dataclass
class ReceiverStats:
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> count
    per_sender: Counter = field(default_factory=Counter)


class EpisodeReceiver:
    """The learner's end: `poll(timeout_ms)` returns accepted episodes; everything else is logged."""

    def __init__(self, config: ReceiverConfig, newest_version: Callable[[], int] = lambda: 0,
                 context: zmq.Context | None = None, curve: CurveServer | None = None):
        config.validate()
        self.config = config
        self.newest_version = newest_version
        self.stats = ReceiverStats()
        self._last_seq: dict[tuple[str, str], int] = {}
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.PULL)
        self.socket.setsockopt(zmq.RCVHWM, config.receive_hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve is not None:
            curve.secure(self.socket)
        self.address = bind_socket(self.socket, config.address)

    def poll(self, timeout_ms: int = 0, max_messages: int = 64) -> list[Received]:
        accepted: list[Received] = []
        while len(accepted) < max_messages and self.socket.poll(timeout_ms if not accepted else 0):
            received = self._accept(self.socket.recv())
            if received is not None:
                accepted.append(received)
            timeout_ms = 0
        return accepted

    def _accept(self, payload: bytes) -> Received | None:
        try:
            message = msgpack.unpackb(payload, raw=False)
        except Exception as error:  # msgpack raises several types for malformed data
            return self._reject("malformed", f"undecodable message ({error})")
        if not isinstance(message, dict) or message.get("type") != "episode":
            return self._reject("malformed", "not an episode message")
        sender = str(message.get("sender", "?"))
        if message.get("protocol") != PROTOCOL_VERSION:
            return self._reject("protocol", f"sender {sender!r}: protocol {message.get('protocol')!r}, "
                                            f"expected {PROTOCOL_VERSION}")
        allowed = self.config.allowed_senders
        if message.get("token") != self.config.token or (allowed is not None and sender not in allowed):
            return self._reject("unknown_sender", f"sender {sender!r}: unknown sender or wrong token")
        version = int(message.get("policy_version", -1))
        lag = self.config.max_policy_lag
        newest = self.newest_version()
        # Expert-only episodes (DAgger iteration 0) do not depend on any weights: never stale.
        if lag is not None and message.get("source") != "expert" and version < newest - lag:
            return self._reject("stale", f"sender {sender!r}: policy version {version} is more than {lag} "
                                         f"behind the newest {newest}")
        key = (sender, str(message.get("incarnation", "")))
        seq = int(message.get("seq", -1))
        if seq <= self._last_seq.get(key, -1):
            return self._reject("duplicate", f"sender {sender!r}: sequence number {seq} seen before")
        try:
            trajectory = trajectory_from_wire(message["trajectory"])
        except (ValueError, KeyError) as error:
            return self._reject("invalid", f"sender {sender!r} seq {seq}: {error}")
        self._last_seq[key] = seq
        self.stats.accepted += 1
        self.stats.per_sender[sender] += 1
        return Received(sender, seq, trajectory)

    def _reject(self, reason: str, detail: str) -> None:
        self.stats.rejected[reason] += 1
        log.warning("rejected episode message (%s): %s", reason, detail)
        return None

    def close(self) -> None:
        self.socket.close()


# ---------------------------------------------------------------------- weights: learner -> actors
@dataclass(frozen=True)
class Announcement:
    version: int
    path: str
    sha256: str
    stop: bool = False


class WeightPublisher:
    def __init__(self, address: str = "tcp://127.0.0.1:5602", context: zmq.Context | None = None,
                 curve: CurveServer | None = None):
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 500)
        if curve is not None:
            curve.secure(self.socket)
        self.address = bind_socket(self.socket, address)
        self.latest: Announcement | None = None

    def announce(self, version: int, path: str, sha256: str) -> None:
        self.latest = Announcement(int(version), str(path), sha256)
        self.heartbeat()

    def heartbeat(self) -> None:
        """Repeat the newest announcement (late subscribers miss earlier ones)."""
        if self.latest is not None:
            self._send({"type": "weights", "protocol": PROTOCOL_VERSION, "version": self.latest.version,
                        "path": self.latest.path, "sha256": self.latest.sha256})

    def stop(self) -> None:
        self._send({"type": "stop", "protocol": PROTOCOL_VERSION})

    def _send(self, message: dict) -> None:
        self.socket.send_multipart([WEIGHTS_TOPIC, msgpack.packb(message, use_bin_type=True)])

    def close(self) -> None:
        self.socket.close()


class WeightSubscriber:
    def __init__(self, address: str, context: zmq.Context | None = None, curve: CurveClientKeys | None = None):
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.SUBSCRIBE, WEIGHTS_TOPIC)
        self.socket.setsockopt(zmq.LINGER, 0)
        secure_client(self.socket, curve)
        self.socket.connect(address)

    def poll(self, timeout_ms: int = 0) -> Announcement | None:
        """The newest announcement received (a stop wins), or None when nothing came."""
        newest: Announcement | None = None
        while self.socket.poll(timeout_ms):
            timeout_ms = 0
            _topic, payload = self.socket.recv_multipart()
            try:
                message = msgpack.unpackb(payload, raw=False)
            except Exception:  # msgpack raises several types for malformed data
                log.warning("ignored an undecodable weights announcement")
                continue
            if not isinstance(message, dict) or message.get("protocol") != PROTOCOL_VERSION:
                log.warning("ignored a weights announcement of another protocol: %r", message)
                continue
            if message.get("type") == "stop":
                return Announcement(-1, "", "", stop=True)
            if message.get("type") == "weights":
                announcement = Announcement(int(message["version"]), str(message["path"]), str(message["sha256"]))
                if newest is None or announcement.version >= newest.version:
                    newest = announcement
        return newest

    def wait(self, timeout_s: float) -> Announcement | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            announcement = self.poll(200)
            if announcement is not None:
                return announcement
        return None

    def close(self) -> None:
        self.socket.close()


def bind_socket(socket: zmq.Socket, address: str) -> str:
    """Bind; "tcp://HOST:0" picks a free port. Returns the bound endpoint (with the real port)."""
    if address.startswith("tcp://") and address.endswith(":0"):
        address = address[:-2] + ":*"
    socket.bind(address)
    return socket.getsockopt_string(zmq.LAST_ENDPOINT)
