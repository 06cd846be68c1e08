"""The episode file format of rollout.store (see its docstring for the layout): header, payload,
frame spans, and their checks. Pure functions of bytes; the store does the file handling."""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from rollout.records import Trajectory

MAGIC = b"SVLNEP01"
_PREFIX = struct.Struct(">8sII")  # magic, header length, header crc32
FORMAT_VERSION = 2  # 2: header "frame_spans"; 1: without (still readable)
DEPTH_SCALE = 65535.0  # normalised depth [0, 1] -> uint16


class CorruptEpisodeError(ValueError):
    """A stored episode file fails its checks (bad magic, truncated, checksum mismatch)."""


@dataclass(frozen=True)
class EpisodeHeader:
    """What a reader needs to index an episode without reading its frames."""

    name: str  # file name inside episodes/
    episode_id: str
    policy_version: int
    source: str
    num_steps: int
    instructions: tuple[str, ...]
    label_actions: np.ndarray
    payload_len: int
    payload_sha256: bytes
    file_bytes: int
    header_bytes: int = 0  # payload offset in the file (prefix + header)
    frame_spans: np.ndarray | None = None  # uint64 (T, 3) offset, length, crc32 of each JPEG in the payload (v2)
    # int8 (T,) under DAgger (also in the payload); in the header so the sample builder can show the
    # executed actions as dialogue history without reading the payload. None for expert data / older files.
    executed_actions: np.ndarray | None = None


def _serialise(trajectory: Trajectory) -> tuple[dict[str, Any], bytes]:
    frames = trajectory.rgb_jpeg()
    height, width = _frame_hw(trajectory)
    payload: dict[str, Any] = {
        "episode": trajectory.episode,
        "rgb_jpeg": frames,
        "frame_hw": [height, width],
        "metrics": {key: float(value) for key, value in trajectory.metrics.items()},
        "poses": None if trajectory.poses is None else np.asarray(trajectory.poses, np.float32).tobytes(),
        "executed_actions": None if trajectory.executed_actions is None else trajectory.executed_actions.tobytes(),
        "depth": None,
        "depth_hw": None,
    }
    if trajectory.depth is not None:
        quantised = np.round(trajectory.depth[..., 0] * DEPTH_SCALE).astype("<u2")
        payload["depth"] = zlib.compress(quantised.tobytes(), 1)
        payload["depth_hw"] = list(quantised.shape[1:])
    payload_bytes, frame_spans = _pack_payload(payload)
    header = {
        "format": FORMAT_VERSION,
        "episode_id": trajectory.episode_id,
        "policy_version": int(trajectory.policy_version),
        "source": trajectory.source,
        "num_steps": trajectory.num_steps,
        "instructions": list(trajectory.instructions),
        "label_actions": trajectory.label_actions.astype(np.int8).tobytes(),
        "payload_len": len(payload_bytes),
        "payload_sha256": hashlib.sha256(payload_bytes).digest(),
        "frame_spans": frame_spans.astype("<u8").tobytes(),
        "executed_actions": None if trajectory.executed_actions is None else trajectory.executed_actions.tobytes(),
        "created": time.time(),
    }
    return header, payload_bytes


def _pack_payload(payload: dict[str, Any]) -> tuple[bytes, np.ndarray]:
    """msgpack.packb(payload) built piece by piece (same bytes), with each JPEG frame's (offset,
    length) inside it, so readers can fetch single frames."""
    packer = msgpack.Packer(use_bin_type=True)
    pieces = [packer.pack_map_header(len(payload))]
    position = len(pieces[0])
    spans = np.zeros((len(payload["rgb_jpeg"]), 3), dtype=np.uint64)
    for key, value in payload.items():
        pieces.append(packer.pack(key))
        if key == "rgb_jpeg":
            pieces.append(packer.pack_array_header(len(value)))
            position += len(pieces[-2]) + len(pieces[-1])
            for index, frame in enumerate(value):
                pieces.append(packer.pack(frame))
                # the bin data follows its 2-5 byte header
                spans[index] = (position + len(pieces[-1]) - len(frame), len(frame), zlib.crc32(frame))
                position += len(pieces[-1])
        else:
            pieces.append(packer.pack(value))
            position += len(pieces[-2]) + len(pieces[-1])
    return b"".join(pieces), spans


def _unpack_payload(payload_bytes: bytes, path: Path) -> dict[str, Any]:
    try:
        return msgpack.unpackb(payload_bytes, raw=False)
    except Exception as error:  # msgpack raises several types for malformed data
        raise CorruptEpisodeError(f"{path}: payload is not valid msgpack ({error})") from None


def _frame_hw(trajectory: Trajectory) -> tuple[int, int]:
    if isinstance(trajectory.rgb, np.ndarray):
        return int(trajectory.rgb.shape[1]), int(trajectory.rgb.shape[2])
    frame = trajectory.rgb_frame(0)
    return int(frame.shape[0]), int(frame.shape[1])


def _read_header(handle, name: str, file_size: int) -> tuple[EpisodeHeader, int]:
    prefix = handle.read(_PREFIX.size)
    if len(prefix) != _PREFIX.size:
        raise CorruptEpisodeError(f"episode file {name}: truncated ({file_size} bytes)")
    magic, header_len, header_crc = _PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise CorruptEpisodeError(f"episode file {name}: not an episode file (bad magic {magic!r})")
    header_bytes = handle.read(header_len)
    if len(header_bytes) != header_len or zlib.crc32(header_bytes) != header_crc:
        raise CorruptEpisodeError(f"episode file {name}: header truncated or corrupt")
    raw = msgpack.unpackb(header_bytes, raw=False)
    version = raw.get("format", 1)
    if version > FORMAT_VERSION:
        raise CorruptEpisodeError(
            f"episode file {name}: format {version} is newer than this reader's ({FORMAT_VERSION}); update streamvln"
        )
    offset = _PREFIX.size + header_len
    if offset + raw["payload_len"] != file_size:
        raise CorruptEpisodeError(
            f"episode file {name}: size {file_size} bytes, expected {offset + raw['payload_len']} (truncated?)"
        )
    header = EpisodeHeader(
        name=name,
        episode_id=raw["episode_id"],
        policy_version=int(raw["policy_version"]),
        source=raw["source"],
        num_steps=int(raw["num_steps"]),
        instructions=tuple(raw["instructions"]),
        label_actions=np.frombuffer(raw["label_actions"], dtype=np.int8),
        payload_len=int(raw["payload_len"]),
        payload_sha256=raw["payload_sha256"],
        file_bytes=file_size,
        header_bytes=offset,
        frame_spans=_frame_spans(raw, name),
        executed_actions=_executed_actions(raw, name),
    )
    return header, offset


def _executed_actions(raw: dict[str, Any], name: str) -> np.ndarray | None:
    if raw.get("executed_actions") is None:
        return None
    executed = np.frombuffer(raw["executed_actions"], dtype=np.int8)
    if executed.size != int(raw["num_steps"]):
        raise CorruptEpisodeError(f"episode file {name}: executed_actions do not match {raw['num_steps']} steps")
    return executed


def _frame_spans(raw: dict[str, Any], name: str) -> np.ndarray | None:
    if raw.get("frame_spans") is None:
        return None
    spans = np.frombuffer(raw["frame_spans"], dtype="<u8")
    steps = int(raw["num_steps"])
    if spans.size != 3 * steps:
        raise CorruptEpisodeError(f"episode file {name}: frame_spans do not match {steps} frames")
    spans = spans.reshape(steps, 3)
    if steps and int((spans[:, 0] + spans[:, 1]).max()) > int(raw["payload_len"]):
        raise CorruptEpisodeError(f"episode file {name}: frame_spans point past the payload")
    return spans


def trajectory_from_payload(header: EpisodeHeader, payload: dict[str, Any]) -> Trajectory:
    steps = header.num_steps
    depth = None
    if payload["depth"] is not None:
        height, width = payload["depth_hw"]
        raw = np.frombuffer(zlib.decompress(payload["depth"]), dtype="<u2").reshape(steps, height, width, 1)
        depth = (raw.astype(np.float32) / DEPTH_SCALE).astype(np.float32)
    poses = None if payload["poses"] is None else np.frombuffer(payload["poses"], np.float32).reshape(steps, -1).copy()
    executed = None
    if payload["executed_actions"] is not None:
        executed = np.frombuffer(payload["executed_actions"], np.int8).copy()
    return Trajectory(
        episode=payload["episode"],
        instructions=header.instructions,
        rgb=list(payload["rgb_jpeg"]),
        label_actions=header.label_actions.copy(),
        depth=depth,
        poses=poses,
        executed_actions=executed,
        policy_version=header.policy_version,
        metrics=dict(payload["metrics"]),
        source=header.source,
    )
