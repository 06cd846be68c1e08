"""Wire protocol of the agent server: msgpack maps (never pickle), validated field by field.

Request  {v: 1, type: "act" | "reset" | "close" | "ping", session: str, request_id: int | str,
          instruction: str (reset),
          frame: {data: bytes, encoding: "raw" | "jpeg", shape: [H, W, 3], dtype: "uint8"} (act),
          depth: {data: bytes, shape: [H, W, 1], dtype: "float32"} (act, optional),
          pose: [x, y, z, qx, qy, qz, qw] (act, optional),
          executed: [int] (act, optional: the actions the env executed since the session's previous
                    act, where they differ from that reply, e.g. a DAgger expert step; one per action)}
Reply    {v: 1, ok: bool, request_id, session, actions: [int], model_version: int,
          timings_ms: {decode, queue, model, server}, notes: [str], error: {code, message} | None}

Every problem with a request raises `ProtocolError` with a typed `ErrorCode`; the server turns it
into an error reply to that request only.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import msgpack
import numpy as np
from PIL import Image, UnidentifiedImageError

PROTOCOL_VERSION = 1
MESSAGE_TYPES = ("act", "reset", "close", "ping")
MAX_SIDE_PX = 4096  # larger frames are refused before decoding (decompression bombs)
MAX_SESSION_CHARS = 128
MAX_EXECUTED = 64  # executed actions per act (a reply holds at most num_future_steps of them)
MAX_INSTRUCTION_CHARS = 65536  # the engine truncates to its token budget; this only bounds the wire


class ErrorCode(str, Enum):
    BAD_MESSAGE = "bad_message"
    WRONG_SHAPE = "wrong_shape"
    WRONG_DTYPE = "wrong_dtype"
    WRONG_SIZE = "wrong_size"  # data length does not match the declared shape
    UNKNOWN_SESSION = "unknown_session"
    MISSING_INSTRUCTION = "missing_instruction"
    TOO_MANY_SESSIONS = "too_many_sessions"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A request the server refuses; carries what is known of the request for the error reply."""

    def __init__(self, code: ErrorCode, message: str, request_id: Any = None, session: str | None = None):
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.session = session


@dataclass
class Request:
    type: str
    session: str
    request_id: Any = None
    instruction: str | None = None
    rgb: np.ndarray | None = None
    depth: np.ndarray | None = None
    pose: np.ndarray | None = None
    executed: list[int] | None = None
    decode_ms: float = 0.0  # set by the server: time spent decoding this request


@dataclass
class Reply:
    ok: bool
    request_id: Any = None
    session: str | None = None
    actions: list[int] = field(default_factory=list)
    model_version: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error_code: ErrorCode | None = None
    error_message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. ping: open sessions


# ---------------------------------------------------------------- encoding (client side)

def encode_frame(rgb: np.ndarray, jpeg: bool = True, quality: int = 90) -> dict[str, Any]:
    """Frame map for a (H, W, 3) uint8 image, JPEG-compressed or raw bytes."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got shape {rgb.shape} dtype {rgb.dtype}")
    shape = [int(s) for s in rgb.shape]
    if not jpeg:
        return {"data": np.ascontiguousarray(rgb).tobytes(), "encoding": "raw", "shape": shape, "dtype": "uint8"}
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return {"data": buffer.getvalue(), "encoding": "jpeg", "shape": shape, "dtype": "uint8"}


def encode_depth(depth: np.ndarray) -> dict[str, Any]:
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim == 2:
        depth = depth[:, :, None]
    if depth.ndim != 3 or depth.shape[2] != 1:
        raise ValueError(f"depth must be (H, W, 1) float32, got shape {depth.shape}")
    return {"data": np.ascontiguousarray(depth).tobytes(), "shape": [int(s) for s in depth.shape], "dtype": "float32"}


def encode_request(type: str, session: str, request_id: Any = None, **fields: Any) -> bytes:
    """Pack a request map; `fields` are the optional keys (instruction, frame, depth, pose, executed)."""
    message = {"v": PROTOCOL_VERSION, "type": type, "session": session, "request_id": request_id}
    message.update({key: value for key, value in fields.items() if value is not None})
    return msgpack.packb(message, use_bin_type=True)


def encode_reply(reply: Reply) -> bytes:
    message = {
        "v": PROTOCOL_VERSION, "ok": reply.ok, "request_id": reply.request_id, "session": reply.session,
        "actions": [int(a) for a in reply.actions], "model_version": reply.model_version,
        "timings_ms": {k: round(float(v), 4) for k, v in reply.timings_ms.items()},
        "notes": list(reply.notes),
        "error": None if reply.ok else {"code": reply.error_code.value, "message": reply.error_message},
    }
    message.update(reply.extra)
    return msgpack.packb(message, use_bin_type=True)


def error_reply(error: ProtocolError, model_version: int | None = None) -> Reply:
    return Reply(ok=False, request_id=error.request_id, session=error.session, model_version=model_version,
                 error_code=error.code, error_message=error.message)


def decode_reply(payload: bytes) -> Reply:
    message = msgpack.unpackb(payload, raw=False)
    error = message.get("error") or {}
    known = {"v", "ok", "request_id", "session", "actions", "model_version", "timings_ms", "notes", "error"}
    return Reply(
        ok=bool(message["ok"]), request_id=message.get("request_id"), session=message.get("session"),
        actions=list(message.get("actions") or []), model_version=message.get("model_version"),
        timings_ms=dict(message.get("timings_ms") or {}), notes=list(message.get("notes") or []),
        error_code=ErrorCode(error["code"]) if error else None, error_message=error.get("message"),
        extra={k: v for k, v in message.items() if k not in known},
    )


# ---------------------------------------------------------------- decoding (server side)

def decode_request(payload: bytes) -> Request:
    """Parse and validate one request; raises ProtocolError naming the bad field."""
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as error:  # msgpack raises several unrelated types for garbage input
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"not a msgpack message ({type(error).__name__})") from None
    if not isinstance(message, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"a request is a msgpack map, got {type(message).__name__}")
    request_id = message.get("request_id")
    if not isinstance(request_id, (int, str, type(None))) or isinstance(request_id, bool):
        request_id = None
    session = message.get("session")
    context = {"request_id": request_id, "session": session if isinstance(session, str) else None}

    def fail(code: ErrorCode, text: str) -> ProtocolError:
        return ProtocolError(code, text, **context)

    if message.get("v") != PROTOCOL_VERSION:
        raise fail(ErrorCode.BAD_MESSAGE, f"protocol version v={message.get('v')!r} is not supported (expected {PROTOCOL_VERSION})")
    kind = message.get("type")
    if kind not in MESSAGE_TYPES:
        raise fail(ErrorCode.BAD_MESSAGE, f"type {kind!r} is not one of {', '.join(MESSAGE_TYPES)}")
    if kind != "ping" and (not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION_CHARS):
        raise fail(ErrorCode.BAD_MESSAGE, f"session must be a non-empty string of at most {MAX_SESSION_CHARS} characters")
    request = Request(type=kind, session=session if isinstance(session, str) else "", request_id=request_id)
    try:
        if kind == "reset":
            request.instruction = _instruction(message)
        elif kind == "act":
            request.rgb = decode_frame(message.get("frame"))
            if message.get("depth") is not None:
                request.depth = decode_depth(message["depth"], request.rgb.shape[:2])
            if message.get("pose") is not None:
                request.pose = decode_pose(message["pose"])
            if message.get("executed") is not None:
                request.executed = decode_executed(message["executed"])
    except ProtocolError as error:
        raise fail(error.code, error.message) from None
    return request


def _instruction(message: dict) -> str:
    instruction = message.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise ProtocolError(ErrorCode.MISSING_INSTRUCTION, "reset needs a non-empty 'instruction' string")
    if len(instruction) > MAX_INSTRUCTION_CHARS:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"instruction has {len(instruction)} characters (max {MAX_INSTRUCTION_CHARS})")
    return instruction


def _shape(obj: dict, field_name: str, channels: int) -> tuple[int, int, int]:
    shape = obj.get("shape")
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)):
        raise ProtocolError(ErrorCode.WRONG_SHAPE, f"{field_name}.shape must be [H, W, {channels}], got {shape!r}")
    height, width, depth = shape
    if depth != channels or not (0 < height <= MAX_SIDE_PX and 0 < width <= MAX_SIDE_PX):
        raise ProtocolError(ErrorCode.WRONG_SHAPE,
                            f"{field_name}.shape must be [H, W, {channels}] with 1 <= H, W <= {MAX_SIDE_PX}, got {list(shape)}")
    return height, width, depth


def _data(obj: dict, field_name: str) -> bytes:
    data = obj.get("data")
    if not isinstance(data, bytes):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{field_name}.data must be msgpack bin (bytes), got {type(data).__name__}")
    return data


def decode_frame(obj: Any) -> np.ndarray:
    """(H, W, 3) uint8 from a frame map (raw bytes or JPEG)."""
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "act needs a 'frame' map {data, encoding, shape, dtype}")
    shape = _shape(obj, "frame", 3)
    if obj.get("dtype") != "uint8":
        raise ProtocolError(ErrorCode.WRONG_DTYPE, f"frame.dtype must be 'uint8', got {obj.get('dtype')!r}")
    data = _data(obj, "frame")
    encoding = obj.get("encoding")
    if encoding == "raw":
        expected = shape[0] * shape[1] * 3
        if len(data) != expected:
            raise ProtocolError(ErrorCode.WRONG_SIZE,
                                f"frame.data has {len(data)} bytes, shape {list(shape)} uint8 needs {expected}")
        return np.frombuffer(data, dtype=np.uint8).reshape(shape)
    if encoding == "jpeg":
        return _decode_jpeg(data, shape)
    raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame.encoding must be 'raw' or 'jpeg', got {encoding!r}")


def _decode_jpeg(data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data), formats=["JPEG"])
        # The header is read lazily: check the size before decoding any pixels.
        if (image.height, image.width) != shape[:2]:
            raise ProtocolError(ErrorCode.WRONG_SHAPE,
                                f"frame JPEG is {image.height}x{image.width}, shape says {shape[0]}x{shape[1]}")
        rgb = np.asarray(image.convert("RGB"))
    except ProtocolError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"frame.data is not a decodable JPEG ({error})") from None
    return rgb


def decode_depth(obj: Any, frame_hw: tuple[int, int]) -> np.ndarray:
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "depth must be a map {data, shape, dtype}")
    shape = _shape(obj, "depth", 1)
    if tuple(shape[:2]) != tuple(frame_hw):
        raise ProtocolError(ErrorCode.WRONG_SHAPE, f"depth is {shape[0]}x{shape[1]}, the frame is {frame_hw[0]}x{frame_hw[1]}")
    if obj.get("dtype") != "float32":
        raise ProtocolError(ErrorCode.WRONG_DTYPE, f"depth.dtype must be 'float32', got {obj.get('dtype')!r}")
    data = _data(obj, "depth")
    expected = shape[0] * shape[1] * 4
    if len(data) != expected:
        raise ProtocolError(ErrorCode.WRONG_SIZE, f"depth.data has {len(data)} bytes, shape {list(shape)} float32 needs {expected}")
    return np.frombuffer(data, dtype="<f4").reshape(shape)


def decode_executed(obj: Any) -> list[int]:
    """1..MAX_EXECUTED action ids (0 STOP .. 3 TURN_RIGHT)."""
    if (not isinstance(obj, (list, tuple)) or not 0 < len(obj) <= MAX_EXECUTED
            or not all(isinstance(a, int) and not isinstance(a, bool) and 0 <= a <= 3 for a in obj)):
        raise ProtocolError(ErrorCode.BAD_MESSAGE,
                            f"executed must be 1 to {MAX_EXECUTED} action ids in 0..3, got {obj!r:.80}")
    return [int(a) for a in obj]


def decode_pose(obj: Any) -> np.ndarray:
    if not isinstance(obj, (list, tuple)) or len(obj) != 7:
        raise ProtocolError(ErrorCode.WRONG_SHAPE, f"pose must be 7 numbers [x, y, z, qx, qy, qz, qw], got {obj!r:.80}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in obj):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "pose values must be finite numbers")
    return np.asarray(obj, dtype=np.float64)
