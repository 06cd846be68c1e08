"""Per-episode state of the streaming agent and input checks for one observation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from agent.streaming.batching import Decoded
from agent.streaming.cache import SessionCache
from agent.streaming.memory import FrameBank
from agent.streaming.prompt import Segment


@dataclass
class SessionStats:
    calls: int = 0
    fallbacks: int = 0  # empty or malformed model output replaced by the fallback action
    windows: int = 0
    frames_encoded: int = 0  # vision-tower runs for this session (history re-encodes included)
    memory_tokens: list[int] = field(default_factory=list)  # per window start
    pruned_fractions: list[float] = field(default_factory=list)  # per window start with pruning on
    passes: int = 0  # decoder forwards (weight passes) over all calls: prefill + decode steps
    drafted: int = 0  # speculative draft tokens fed
    accepted: int = 0  # of them, those greedy decoding agreed with
    prefilled_tokens: int = 0  # tokens the calls prefilled (turns, memory, answer tails, drafts / tree nodes)

    def count_decoding(self, decoded: Decoded) -> None:
        self.passes += decoded.passes
        self.drafted += decoded.drafted
        self.accepted += decoded.accepted

    def as_dict(self) -> dict:
        pruned = self.pruned_fractions
        return {
            "calls": self.calls, "fallbacks": self.fallbacks, "windows": self.windows,
            "frames_encoded": self.frames_encoded, "memory_tokens": list(self.memory_tokens),
            "pruned_fraction_mean": float(np.mean(pruned)) if pruned else 0.0,
            "passes": self.passes, "passes_per_call": self.passes / self.calls if self.calls else 0.0,
            "drafted": self.drafted, "accepted": self.accepted, "prefilled_tokens": self.prefilled_tokens,
            "acceptance_rate": self.accepted / self.drafted if self.drafted else None,
        }


@dataclass
class PreparedWindow:
    """Prefix + memory of the next window, prefilled ahead of the boundary call (see prefetch)."""

    start: int  # the step the window starts at
    cache: SessionCache
    memory: Segment
    pruned: float | None  # fraction of memory tokens pruned (None: pruning off)
    notes: list[str]


@dataclass
class AgentSession:
    """One episode: its cache, stored frames and the current window's segments."""

    name: str
    instruction: str  # as used (possibly truncated to the context budget)
    cache: SessionCache
    bank: FrameBank
    prefix: Segment
    rng: np.random.Generator | None
    window: list[Segment] = field(default_factory=list)  # after the prefix: memory, turns, answers
    step: int = 0  # env steps taken so far (every returned action is assumed executed)
    window_start: int = 0
    pending: list[int] = field(default_factory=list)  # answer-tail ids not in the cache yet
    frame_size: tuple[int, int] | None = None
    turn_end: int = 0  # context length up to the last turn's generation prompt
    open_notes: list[str] = field(default_factory=list)
    stats: SessionStats = field(default_factory=SessionStats)
    prepared: PreparedWindow | None = None
    last_actions: list[int] = field(default_factory=list)  # the previous call's actions (speculative drafts)


@dataclass
class Observation:
    rgb: np.ndarray  # uint8 (H, W, 3)
    depth: np.ndarray | None = None  # float32 (H, W, 1) normalised to [0, 1]
    pose: np.ndarray | None = None  # (7,) position + quaternion [x, y, z, w]
    # The actions the env executed since this session's previous call, where they differ from that call's
    # answer (a DAgger actor's expert step or intervention replaced some); None: executed as answered.
    executed: list[int] | None = None


@dataclass
class ActOutput:
    actions: list[int]
    timings_ms: dict[str, float]
    notes: list[str]
    fallback: bool
    window_start: bool
    decoded: Decoded
    first_hidden: torch.Tensor  # (hidden,) at the generation prompt, for checks


def check_observation(session: AgentSession, obs: Observation) -> tuple[Observation, list[str]]:
    """Validate one observation; resize a frame (and depth) of another resolution, with a note."""
    notes: list[str] = []
    rgb = np.asarray(obs.rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"session {session.name!r}: rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if session.frame_size is None:
        session.frame_size = (int(rgb.shape[0]), int(rgb.shape[1]))
    height, width = session.frame_size
    if rgb.shape[:2] != (height, width):
        notes.append(f"frame resized from {rgb.shape[0]}x{rgb.shape[1]} to {height}x{width}")
        rgb = np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))
    depth = obs.depth
    if depth is not None:
        depth = np.asarray(depth, dtype=np.float32)
        if depth.ndim == 3 and depth.shape[2] == 1:
            depth = depth[..., 0]
        if depth.ndim != 2:
            raise ValueError(f"session {session.name!r}: depth must be (H, W, 1), got {np.shape(obs.depth)}")
        if depth.shape != (height, width):
            notes.append(f"depth resized from {depth.shape[0]}x{depth.shape[1]} to {height}x{width}")
            depth = np.asarray(Image.fromarray(depth).resize((width, height), Image.NEAREST))
        depth = depth[..., None]
    pose = obs.pose
    if pose is not None:
        pose = np.asarray(pose, dtype=np.float64).reshape(-1)
        if pose.shape != (7,) or not np.all(np.isfinite(pose)):
            raise ValueError(f"session {session.name!r}: pose must be 7 finite floats (position + quat xyzw)")
    return Observation(rgb, depth, pose, obs.executed), notes
