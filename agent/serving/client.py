"""`AgentClient`: a DEALER client for the agent server with typed exceptions per error code."""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import zmq

from agent.serving.auth import CurveCredentials
from agent.serving.protocol import ErrorCode, Reply, decode_reply, encode_depth, encode_frame, encode_request


class ServingError(Exception):
    """The server refused a request; `code` says why (see protocol.ErrorCode)."""

    code: ErrorCode | None = None

    def __init__(self, message: str, reply: Reply | None = None):
        super().__init__(message)
        self.reply = reply


class BadMessage(ServingError):
    code = ErrorCode.BAD_MESSAGE


class WrongShape(ServingError):
    code = ErrorCode.WRONG_SHAPE


class WrongDtype(ServingError):
    code = ErrorCode.WRONG_DTYPE


class WrongSize(ServingError):
    code = ErrorCode.WRONG_SIZE


class UnknownSession(ServingError):
    code = ErrorCode.UNKNOWN_SESSION


class MissingInstruction(ServingError):
    code = ErrorCode.MISSING_INSTRUCTION


class TooManySessions(ServingError):
    code = ErrorCode.TOO_MANY_SESSIONS


class RequestTimeout(ServingError):
    code = ErrorCode.TIMEOUT


class InternalServerError(ServingError):
    code = ErrorCode.INTERNAL




class ClientTimeout(ServingError):
    """No reply within the client's timeout (server down, overloaded, or CURVE handshake refused)."""


ERROR_TYPES: dict[ErrorCode, type[ServingError]] = {
    cls.code: cls for cls in (BadMessage, WrongShape, WrongDtype, WrongSize, UnknownSession, MissingInstruction,
                              TooManySessions, RequestTimeout, InternalServerError)
}


class AgentClient:
    """Talks to `AgentServer`. One client may drive several sessions (session ids are per client).

    `identity` keeps sessions across reconnects (the server keys sessions by client identity).
    """

    def __init__(self, address: str, timeout_s: float = 30.0, curve: CurveCredentials | None = None,
                 identity: bytes | None = None, context: zmq.Context | None = None) -> None:
        self.address = address
        self.timeout_s = timeout_s
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self._socket.setsockopt(zmq.ROUTING_ID, identity)
        if curve is not None:
            self._socket.curve_serverkey = curve.server_public
            self._socket.curve_publickey = curve.client_public
            self._socket.curve_secretkey = curve.client_secret
        self._socket.connect(address)
        self._ids = itertools.count(1)

    # ------------------------------------------------------------ requests
    def ping(self, timeout_s: float | None = None) -> Reply:
        return self.request("ping", "", timeout_s=timeout_s)

    def reset(self, session: str, instruction: str) -> Reply:
        """Start (or restart) a session's episode with an instruction; notes carry engine warnings."""
        return self.request("reset", session, instruction=instruction)

    def act(self, session: str, rgb: np.ndarray, depth: np.ndarray | None = None, pose: np.ndarray | None = None,
            jpeg: bool = True, quality: int = 90, executed: list[int] | None = None) -> Reply:
        """Send one frame; the reply's `actions` are the next actions to execute, one per env step.
        `executed`: what the env executed of the previous reply, where it differs (DAgger)."""
        return self.request("act", session, **_act_fields(rgb, depth, pose, executed, jpeg, quality))

    def act_many(self, frames: list[tuple[str, np.ndarray, np.ndarray | None, np.ndarray | None, list[int] | None]],
                 jpeg: bool = True, quality: int = 90) -> list[Reply]:
        """Pipelined act for several sessions: (session, rgb, depth, pose, executed) each, all sent before
        any reply is awaited, so the server can batch them into one engine call. Replies in input order;
        the first error raises its typed exception (after every reply has arrived)."""
        ids = []
        for session, rgb, depth, pose, executed in frames:
            fields = _act_fields(rgb, depth, pose, executed, jpeg, quality)
            ids.append(next(self._ids))
            self._socket.send(encode_request("act", session, ids[-1], **fields))
        replies: dict[Any, Reply] = {}
        deadline = time.monotonic() + self.timeout_s
        while len(replies) < len(ids):
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self._socket.poll(remaining_ms, zmq.POLLIN):
                raise ClientTimeout(f"{len(ids) - len(replies)} of {len(ids)} replies from {self.address} "
                                    f"missing after {self.timeout_s:g} s")
            reply = decode_reply(self._socket.recv())
            if reply.request_id in ids:  # late replies to earlier, timed-out requests are dropped
                replies[reply.request_id] = reply
        ordered = [replies[request_id] for request_id in ids]
        for reply in ordered:
            if not reply.ok:
                error_type = ERROR_TYPES.get(reply.error_code, ServingError)
                raise error_type(f"{reply.error_code.value if reply.error_code else 'error'}: {reply.error_message}",
                                 reply)
        return ordered

    def close_session(self, session: str) -> Reply:
        return self.request("close", session)

    def request(self, type: str, session: str, timeout_s: float | None = None, **fields: Any) -> Reply:
        request_id = next(self._ids)
        return self.send_raw(encode_request(type, session, request_id, **fields), request_id, timeout_s)

    def send_raw(self, payload: bytes, request_id: Any = None, timeout_s: float | None = None) -> Reply:
        """Send any bytes (tests use it for malformed messages) and wait for the matching reply."""
        self._socket.send(payload)
        reply = self._await(request_id, self.timeout_s if timeout_s is None else timeout_s)
        if not reply.ok:
            error_type = ERROR_TYPES.get(reply.error_code, ServingError)
            raise error_type(f"{reply.error_code.value if reply.error_code else 'error'}: {reply.error_message}", reply)
        return reply

    def _await(self, request_id: Any, timeout_s: float) -> Reply:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not self._socket.poll(remaining_ms, zmq.POLLIN):
                raise ClientTimeout(f"no reply from {self.address} within {timeout_s:g} s")
            reply = decode_reply(self._socket.recv())
            # A late reply to an earlier, timed-out request is dropped; None matches anything.
            if request_id is None or reply.request_id in (request_id, None):
                return reply

    def close(self) -> None:
        self._socket.close(linger=0)
        if self._own_context:
            self._context.term()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _act_fields(rgb: np.ndarray, depth: np.ndarray | None, pose: np.ndarray | None, executed: list[int] | None,
                jpeg: bool, quality: int) -> dict[str, Any]:
    """The optional keys of one act request (protocol.py)."""
    fields: dict[str, Any] = {"frame": encode_frame(rgb, jpeg=jpeg, quality=quality)}
    if depth is not None:
        fields["depth"] = encode_depth(depth)
    if pose is not None:
        fields["pose"] = [float(v) for v in np.asarray(pose).reshape(-1)]
    if executed is not None:
        fields["executed"] = [int(a) for a in executed]
    return fields
