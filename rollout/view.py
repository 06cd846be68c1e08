"""The learner's in-memory view of an episode store: window index, weighted sampling, frame loading.

refresh() picks up episodes committed since the last call (and forgets evicted ones) by reading
only file headers. The index holds one WindowRef per (episode, instruction, window start, segment):
a DAgger window whose executed actions diverge from its labels is split into segments that each
train part of its turns (rollout/samples.py, train_all_turns), weighted by their share of its turns.
Sampling is uniform over windows or weighted per episode: source weights (e.g. DAgger data x2) times
recency_decay ** (newest policy version - the episode's version).

Loading a sample reads and decodes only the frames it needs: EpisodeStore.read_frames verifies a
file's checksum on its first read in the process, then preads single frames (format-2 files;
format-1 files are read whole, with a small per-process cache of recent payloads). Since the view
holds only a path, DataLoader workers each open files themselves (nothing is shared across processes).
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rollout.dialogue import Sample
from rollout.records import decode_jpeg
from rollout.samples import (
    SampleConfig,
    build_nav_sample,
    initial_turns_to_drop,
    window_segments,
    window_starts,
)
from rollout.store import EpisodeHeader, EpisodeStore

log = logging.getLogger(__name__)


class NotEnoughDataError(RuntimeError):
    """The store holds fewer episodes or samples than the view's minimum."""


@dataclass(frozen=True)
class WindowRef:
    """A stable key of one sample: valid across processes as long as the episode is not evicted."""

    episode: str  # store file name
    instruction_index: int
    start: int
    segment: int = 0  # DAgger windows: which of the window's segments (samples.train_all_turns)


@dataclass(frozen=True)
class ViewConfig:
    sample: SampleConfig = field(default_factory=SampleConfig)
    weighting: str = "uniform"  # "uniform" over windows, or "weighted" (source weights x recency)
    source_weights: dict[str, float] = field(default_factory=dict)  # by source kind: "expert", "dagger", "streamvln"
    recency_decay: float = 1.0  # weight factor per policy version behind the newest
    min_episodes: int = 1
    min_samples: int = 1
    image_size: int | None = None  # resize frames to (size, size) on load; None keeps the stored size
    lenient: bool = True  # skip (and log) corrupt files instead of failing the whole view
    cache_episodes: int = 64  # format-1 episode payloads (compressed, ~0.5-1 MB each) kept per process
    # Decoded frames kept per process (MiB); 0 = off. With the default recipe every frame a sample
    # uses is at a multiple of num_future_steps, so a cache that holds the store's working set
    # decodes each frame once per worker.
    frame_cache_mb: int = 0

    def validate(self) -> None:
        self.sample.validate()
        if self.weighting not in ("uniform", "weighted"):
            raise ValueError(f"ViewConfig.weighting must be 'uniform' or 'weighted', got {self.weighting!r}")
        if not 0.0 < self.recency_decay <= 1.0:
            raise ValueError(f"ViewConfig.recency_decay must be in (0, 1], got {self.recency_decay}")
        if any(weight < 0 for weight in self.source_weights.values()):
            raise ValueError(f"ViewConfig.source_weights must be >= 0, got {self.source_weights}")
        if self.min_episodes < 0 or self.min_samples < 0:
            raise ValueError("ViewConfig.min_episodes and min_samples must be >= 0")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"ViewConfig.image_size must be >= 1 or None, got {self.image_size}")
        if self.cache_episodes < 0 or self.frame_cache_mb < 0:
            raise ValueError("ViewConfig.cache_episodes and frame_cache_mb must be >= 0")


def source_kind(source: str) -> str:
    """'streamvln:r2r' -> 'streamvln'; 'dagger' -> 'dagger'."""
    return source.split(":", 1)[0]


class StoreView:
    def __init__(self, store: EpisodeStore | str | os.PathLike, config: ViewConfig | None = None):
        self.store = store if isinstance(store, EpisodeStore) else EpisodeStore(store, create=False)
        self.config = config or ViewConfig()
        self.config.validate()
        self._headers: dict[str, EpisodeHeader] = {}
        self._windows: dict[str, list[tuple[WindowRef, float]]] = {}  # refs with their share of a window
        self._refs: list[WindowRef] = []
        self._shares: list[float] = []
        self._weights: np.ndarray | None = None
        self._cache: OrderedDict[str, tuple[EpisodeHeader, dict[str, Any]]] = OrderedDict()
        self._cache_pid = os.getpid()
        self._frames = FrameCache(self.config.frame_cache_mb * 2**20)

    # ------------------------------------------------------------------ index
    def refresh(self) -> int:
        """Index newly committed episodes and drop evicted ones; returns the number of new episodes."""
        names = self.store.list_names()
        present = set(names)
        for gone in [name for name in self._headers if name not in present]:
            del self._headers[gone]
            del self._windows[gone]
        new_names = [name for name in names if name not in self._headers]
        for header in self.store.iter_headers(lenient=self.config.lenient, names=new_names):
            self._headers[header.name] = header
            self._windows[header.name] = self._episode_windows(header)
        indexed = [entry for name in sorted(self._windows) for entry in self._windows[name]]
        self._refs = [ref for ref, _ in indexed]
        self._shares = [share for _, share in indexed]
        self._weights = self._compute_weights()
        return len(new_names)

    def _episode_windows(self, header: EpisodeHeader) -> list[tuple[WindowRef, float]]:
        entries = []
        sample = self.config.sample
        for index, instruction in enumerate(header.instructions):
            offset = initial_turns_to_drop(instruction, header.label_actions, sample)
            labels = np.asarray(header.label_actions[offset:])
            executed = None if header.executed_actions is None else np.asarray(header.executed_actions[offset:])
            for start in window_starts(header.num_steps - offset, sample):
                shares = window_segments(labels, start, sample, executed)
                entries += [(WindowRef(header.name, index, start, segment), share)
                            for segment, share in enumerate(shares)]
        return entries

    def _compute_weights(self) -> np.ndarray | None:
        """None (uniform) when every window is one sample; else each ref's probability: its share of
        its window times, when weighted, the episode's source weight and recency factor."""
        if not self._refs:
            return None
        shares = np.asarray(self._shares, dtype=np.float64)
        if self.config.weighting == "uniform":
            return None if np.all(shares == 1.0) else shares / shares.sum()
        newest = max(header.policy_version for header in self._headers.values())
        weights = np.empty(len(self._refs), dtype=np.float64)
        for i, ref in enumerate(self._refs):
            header = self._headers[ref.episode]
            source_weight = self.config.source_weights.get(source_kind(header.source), 1.0)
            weights[i] = source_weight * self.config.recency_decay ** (newest - header.policy_version)
        weights *= shares
        total = weights.sum()
        if total <= 0:
            raise ValueError(f"all sample weights are zero (source_weights={self.config.source_weights})")
        return weights / total

    def __len__(self) -> int:
        return len(self._refs)

    @property
    def num_episodes(self) -> int:
        return len(self._headers)

    @property
    def refs(self) -> list[WindowRef]:
        return self._refs

    def is_ready(self) -> bool:
        return self.num_episodes >= self.config.min_episodes and len(self) >= max(self.config.min_samples, 1)

    def wait_until_ready(self, timeout_s: float = 0.0, poll_s: float = 1.0) -> None:
        """Refresh until min_episodes / min_samples are met; NotEnoughDataError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.refresh()
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                raise NotEnoughDataError(
                    f"store {self.store.root}: {self.num_episodes} episodes / {len(self)} samples, need at least "
                    f"{self.config.min_episodes} episodes and {self.config.min_samples} samples"
                )
            time.sleep(poll_s)

    def draw(self, rng: np.random.Generator, count: int) -> list[WindowRef]:
        """count window refs drawn with replacement by the configured weighting."""
        if not self.is_ready():
            raise NotEnoughDataError(
                f"store {self.store.root}: {self.num_episodes} episodes / {len(self)} samples indexed, need "
                f"{self.config.min_episodes} episodes and {self.config.min_samples} samples (call wait_until_ready)"
            )
        picks = rng.choice(len(self._refs), size=count, replace=True, p=self._weights)
        return [self._refs[i] for i in picks]

    # ------------------------------------------------------------------ loading
    def load(self, ref: WindowRef) -> Sample:
        self._start_caches_after_fork()
        header = self._headers.get(ref.episode) or self.store.read_header(ref.episode)
        size = self.config.image_size

        def load_frames(steps: list[int]) -> np.ndarray:
            needed = [step for step in dict.fromkeys(steps) if (ref.episode, step, size) not in self._frames]
            jpegs = dict(zip(needed, self._jpegs(header, needed)))
            return np.stack([
                self._frames.get((ref.episode, step, size), lambda step=step: decode_jpeg(jpegs[step], size))
                for step in steps
            ])

        return build_nav_sample(
            load_frames,
            header.instructions[ref.instruction_index],
            header.label_actions,
            ref.start,
            self.config.sample,
            episode_key=header.episode_id + "/" + ref.episode,
            instruction_index=ref.instruction_index,
            source=f"store:{header.source}",
            executed=header.executed_actions,
            segment=ref.segment,
        )

    def _jpegs(self, header: EpisodeHeader, steps: list[int]) -> list[bytes]:
        if not steps:
            return []
        if header.frame_spans is not None:  # format 2: only these frames are read
            return self.store.read_frames(header, steps)
        frames = self._payload(header.name)[1]["rgb_jpeg"]
        return [frames[step] for step in steps]

    def _start_caches_after_fork(self) -> None:
        if self._cache_pid != os.getpid():  # forked into a DataLoader worker: start private caches
            self._cache = OrderedDict()
            self._frames = FrameCache(self.config.frame_cache_mb * 2**20)
            self._cache_pid = os.getpid()

    def _payload(self, name: str) -> tuple[EpisodeHeader, dict[str, Any]]:
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        entry = self.store.read_payload(name, verify=True)
        self._cache[name] = entry
        while len(self._cache) > self.config.cache_episodes:
            self._cache.popitem(last=False)
        return entry


class FrameCache:
    """LRU of decoded frames bounded in bytes (0 = disabled); hits and misses are counted."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._frames: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def __contains__(self, key: tuple) -> bool:
        return key in self._frames

    def get(self, key: tuple, decode) -> np.ndarray:
        frame = self._frames.get(key)
        if frame is not None:
            self._frames.move_to_end(key)
            self.hits += 1
            return frame
        self.misses += 1
        frame = decode()
        if self.max_bytes <= 0 or frame.nbytes > self.max_bytes:
            return frame
        self._frames[key] = frame
        self.bytes += frame.nbytes
        while self.bytes > self.max_bytes:
            _, evicted = self._frames.popitem(last=False)
            self.bytes -= evicted.nbytes
        return frame
