"""Trajectory records: one finished episode in columnar form (DESIGN.md 3.4).

A step t holds the observation (rgb, depth, pose) and the label action to take at that frame (the
expert's action; under DAgger the executed action too). The last label is STOP. RGB is kept as JPEG
bytes once encoded so that the store, export and import never re-encode a frame (lossless copies).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from envs.actions import NUM_ACTIONS, Action

JPEG_QUALITY = 92
POSE_DIM = 7  # position xyz + quaternion [x, y, z, w]


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of one uint8 (H, W, 3) frame."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# Start-of-frame markers libjpeg decodes (baseline, extended, progressive Huffman); others take Image.open.
_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2))
_STANDALONE_MARKERS = frozenset((0x01, *range(0xD0, 0xD9)))
_SOF_FIELDS = struct.Struct(">BHHB")  # precision, height, width, components


def jpeg_shape(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from the SOF marker of 8-bit Huffman JPEG bytes, else None."""
    if data[:2] != b"\xff\xd8":
        return None
    position, end = 2, len(data) - 4
    while position <= end:
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in _STANDALONE_MARKERS:
            position += 2
        elif marker in _SOF_MARKERS:
            if position + 4 + _SOF_FIELDS.size > len(data):
                return None
            precision, height, width, components = _SOF_FIELDS.unpack_from(data, position + 4)
            return (height, width, components) if precision == 8 else None
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # other SOF kinds
            return None
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return None


def _decode_rgb_direct(data: bytes, height: int, width: int) -> np.ndarray | None:
    """Pillow's own JPEG decoder and raw packer run once on whole buffers: no Image.open marker
    parsing in Python, no chunked ImageFile.load feeding, no chunked tobytes join (together about a
    third of the time of a 224 px frame).

    Same decoder and arguments as Image.open(...).load() for a 3-component JPEG, so the pixels are
    identical (tests/rollout pin this). None on any complaint (bad data, or a Pillow whose internals
    differ): the caller then takes the public path, which raises Pillow's usual error for bad data.
    """
    try:
        image = Image.core.new("RGB", (width, height))
        decoder = Image._getdecoder("RGB", "jpeg", ("RGB", ""))
        try:
            decoder.setimage(image, (0, 0, width, height))
            consumed, error = decoder.decode(data)
        finally:
            decoder.cleanup()
        if consumed >= 0 or error < 0:  # not finished (truncated) or failed
            return None
        packer = Image._getencoder("RGB", "raw", ("RGB", 0, 1))
        packer.setimage(image, (0, 0, width, height))
        size = height * width * 3
        _, status, packed = packer.encode(size + 1)  # one chunk holds the whole frame
        packer.cleanup()
    except (AttributeError, TypeError, ValueError, OSError):
        return None
    if status == 0 or len(packed) != size:
        return None
    return np.frombuffer(packed, dtype=np.uint8).reshape(height, width, 3)


def decode_jpeg(data: bytes, size: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) of JPEG bytes, optionally resized to (size, size).

    A colour JPEG already at the requested size (the common case: frames stored at the model's size)
    is decoded by the direct path above; anything else goes through Image.open.

    draft() lets libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is much smaller than the
    stored frame, which is most of the decoding cost saved for free. tobytes + frombuffer is about a
    third cheaper than np.asarray(image) (which goes through the array interface); the result is
    read-only, callers stack or copy it.
    """
    shape = jpeg_shape(data)
    if shape is not None and shape[2] == 3 and (size is None or shape[:2] == (size, size)):
        frame = _decode_rgb_direct(data, shape[0], shape[1])
        if frame is not None:
            return frame
    image = Image.open(io.BytesIO(data))
    if size is not None and (image.width != size or image.height != size):
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(image.height, image.width, 3)


@dataclass
class Trajectory:
    """One episode. `rgb` is uint8 (T, H, W, 3) or a list of T JPEG byte strings.

    episode: the R2R-CE episode dict (episode_id, scene_id, ...; see envs).
    instructions: one or more instructions for the same path (R2R has three per path); samples are
      built per instruction.
    depth: float32 (T, H, W, 1) normalised to [0, 1] (habitat convention) or None.
    poses: float32 (T, 7) position xyz + quaternion [x, y, z, w] or None.
    label_actions: int8 (T,), the expert action at each frame; the last one is STOP.
    executed_actions: int8 (T,) under DAgger (what the policy did), else None.
    source: "expert", "dagger" or "streamvln:<name>" for imported data.
    """

    episode: dict[str, Any]
    instructions: tuple[str, ...]
    rgb: np.ndarray | list[bytes]
    label_actions: np.ndarray
    depth: np.ndarray | None = None
    poses: np.ndarray | None = None
    executed_actions: np.ndarray | None = None
    policy_version: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    source: str = "expert"

    def __post_init__(self) -> None:
        if isinstance(self.instructions, str):
            self.instructions = (self.instructions,)
        self.instructions = tuple(self.instructions)
        self.label_actions = np.asarray(self.label_actions, dtype=np.int8)
        if self.executed_actions is not None:
            self.executed_actions = np.asarray(self.executed_actions, dtype=np.int8)

    @property
    def episode_id(self) -> str:
        return str(self.episode.get("episode_id", "?"))

    @property
    def instruction(self) -> str:
        return self.instructions[0]

    @property
    def num_steps(self) -> int:
        return int(self.label_actions.shape[0])

    def rgb_jpeg(self) -> list[bytes]:
        """The frames as JPEG bytes (encoded once if given as pixels)."""
        if isinstance(self.rgb, np.ndarray):
            return [encode_jpeg(frame) for frame in self.rgb]
        return list(self.rgb)

    def rgb_frame(self, step: int, size: int | None = None) -> np.ndarray:
        if isinstance(self.rgb, np.ndarray):
            return self.rgb[step]
        return decode_jpeg(self.rgb[step], size)

    def validate(self) -> None:
        """Raise ValueError naming the episode and the field when shapes, dtypes or values are off."""
        where = f"episode {self.episode_id!r}"
        steps = self.num_steps
        if steps == 0:
            raise ValueError(f"{where}: label_actions is empty")
        if self.label_actions.ndim != 1:
            raise ValueError(f"{where}: label_actions must be 1-D (T,), got shape {self.label_actions.shape}")
        _check_actions(self.label_actions, where, "label_actions")
        if int(self.label_actions[-1]) != Action.STOP:
            raise ValueError(f"{where}: the last label action must be STOP (0), got {int(self.label_actions[-1])}")
        if not self.instructions or not all(isinstance(t, str) and t.strip() for t in self.instructions):
            raise ValueError(f"{where}: instructions must be one or more non-empty strings")
        self._validate_rgb(where, steps)
        if self.depth is not None:
            depth = self.depth
            if depth.dtype != np.float32 or depth.ndim != 4 or depth.shape[0] != steps or depth.shape[3] != 1:
                raise ValueError(f"{where}: depth must be float32 (T={steps}, H, W, 1), got {depth.dtype} {depth.shape}")
            if depth.size and (float(depth.min()) < 0.0 or float(depth.max()) > 1.0):
                raise ValueError(f"{where}: depth must be normalised to [0, 1] (habitat convention)")
        if self.poses is not None and (self.poses.shape != (steps, POSE_DIM)):
            raise ValueError(f"{where}: poses must be (T={steps}, {POSE_DIM}), got {self.poses.shape}")
        if self.executed_actions is not None:
            if self.executed_actions.shape != (steps,):
                raise ValueError(f"{where}: executed_actions must be (T={steps},), got {self.executed_actions.shape}")
            _check_actions(self.executed_actions, where, "executed_actions")

    def _validate_rgb(self, where: str, steps: int) -> None:
        if isinstance(self.rgb, np.ndarray):
            if self.rgb.dtype != np.uint8 or self.rgb.ndim != 4 or self.rgb.shape[3] != 3:
                raise ValueError(f"{where}: rgb must be uint8 (T, H, W, 3), got {self.rgb.dtype} {self.rgb.shape}")
            count = self.rgb.shape[0]
        else:
            if not all(isinstance(frame, (bytes, bytearray)) for frame in self.rgb):
                raise ValueError(f"{where}: rgb must be a uint8 array or a list of JPEG bytes")
            count = len(self.rgb)
        if count != steps:
            raise ValueError(f"{where}: {count} rgb frames but {steps} label actions")


def _check_actions(actions: np.ndarray, where: str, name: str) -> None:
    bad = (actions < 0) | (actions >= NUM_ACTIONS)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: {name}[{index}] = {int(actions[index])} is not an action id (0..{NUM_ACTIONS - 1})")
