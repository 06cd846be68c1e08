"""Durable episode store: one checksummed msgpack file per finished episode.

Layout of a store directory:
    episodes/   committed episodes, `v<policy version>-<time ns>-<uuid>.svep`; sorting the names
                sorts by policy version, then age (the eviction order)
    tmp/        files being written, `<pid>-<uuid>.part`; never read
    lock        fcntl lock file serialising eviction among writer processes

A file is MAGIC, a fixed prefix (header length, header crc32), a small msgpack header (episode id,
policy version, source, instructions, label actions, payload length and sha256) and the msgpack
payload (JPEG frames as stored, zlib uint16 depth, poses, executed actions, metrics). Since format 2
the header also holds each frame's (offset, length, crc32) inside the payload, so a reader can fetch
only the frames a sample needs (`read_frames`); format-1 files are still read (whole payload). Writers write
to tmp/, fsync, then os.replace into episodes/, so an episode is visible only when complete and a
kill -9 mid-write leaves at most an orphan in tmp/. Readers verify the checksums: a corrupt or
truncated file raises CorruptEpisodeError naming it (or is skipped and logged when lenient).
`read_frames` checks the payload sha256 once per process and file version (name, size, mtime_ns):
committed files are never rewritten, so a later change of content is corruption, and any write to
the file changes its mtime and makes the next read verify again. Each frame read alone is also
checked against its crc32, so damage that leaves size and mtime alone is still caught.
No pickle anywhere.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from rollout.episode_file import (  # noqa: F401  (MAGIC, _PREFIX, FORMAT_VERSION: re-exported for readers/tests)
    _PREFIX,
    FORMAT_VERSION,
    MAGIC,
    CorruptEpisodeError,
    EpisodeHeader,
    _read_header,
    _serialise,
    _unpack_payload,
    trajectory_from_payload,
)
from rollout.records import Trajectory
from rollout.samples import SampleConfig, count_samples

log = logging.getLogger(__name__)

EPISODE_SUFFIX = ".svep"
VERIFIED_CACHE_ENTRIES = 200_000  # file versions read_frames remembers as verified (then starts over)


@dataclass(frozen=True)
class StoreConfig:
    max_episodes: int | None = None  # capacity; None = unbounded
    max_bytes: int | None = None
    fsync: bool = True  # False only for throwaway stores (benchmarks, tests)

    def validate(self) -> None:
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"StoreConfig.max_episodes must be >= 1 or None, got {self.max_episodes}")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise ValueError(f"StoreConfig.max_bytes must be >= 1 or None, got {self.max_bytes}")


@dataclass
class VerifyReport:
    ok: list[str] = field(default_factory=list)
    corrupt: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    orphans_removed: int = 0


class EpisodeStore:
    """Append-only episode store safe for concurrent writer and reader processes."""

    def __init__(self, root: str | Path, config: StoreConfig | None = None, create: bool = True):
        self.root = Path(root)
        self.config = config or StoreConfig()
        self.config.validate()
        self.episodes_dir = self.root / "episodes"
        self.tmp_dir = self.root / "tmp"
        if create:
            self.episodes_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        elif not self.episodes_dir.is_dir():
            raise FileNotFoundError(f"{self.root} is not an episode store (no episodes/ folder)")
        # name -> (size, mtime_ns) of the file version whose payload checksum read_frames has checked.
        self._verified: dict[str, tuple[int, int]] = {}

    # ------------------------------------------------------------------ writing
    def add(self, trajectory: Trajectory) -> str:
        """Validate, write atomically and commit one episode; returns its file name."""
        trajectory.validate()
        header, payload = _serialise(trajectory)
        name = f"v{trajectory.policy_version:010d}-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{EPISODE_SUFFIX}"
        tmp_path = self.tmp_dir / f"{os.getpid()}-{uuid.uuid4().hex}.part"
        header_bytes = msgpack.packb(header, use_bin_type=True)
        with open(tmp_path, "wb") as handle:
            handle.write(_PREFIX.pack(MAGIC, len(header_bytes), zlib.crc32(header_bytes)))
            handle.write(header_bytes)
            handle.write(payload)
            if self.config.fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp_path, self.episodes_dir / name)
        if self.config.fsync:
            _fsync_dir(self.episodes_dir)
        if self.config.max_episodes is not None or self.config.max_bytes is not None:
            self.evict()
        return name

    def evict(self) -> list[str]:
        """Delete the oldest episodes (lowest policy version first) until within capacity."""
        removed: list[str] = []
        with self._lock():
            names = self.list_names()
            sizes = {name: _size_or_zero(self.episodes_dir / name) for name in names}
            total = sum(sizes.values())
            while names and (
                (self.config.max_episodes is not None and len(names) > self.config.max_episodes)
                or (self.config.max_bytes is not None and total > self.config.max_bytes and len(names) > 1)
            ):
                victim = names.pop(0)
                total -= sizes[victim]
                (self.episodes_dir / victim).unlink(missing_ok=True)
                removed.append(victim)
        if removed:
            log.info("store %s: evicted %d episode(s)", self.root, len(removed))
        return removed

    def remove_orphans(self) -> int:
        """Delete tmp files left by writers that died (their pid no longer runs)."""
        removed = 0
        for path in self.tmp_dir.glob("*.part"):
            pid = int(path.name.split("-", 1)[0]) if path.name.split("-", 1)[0].isdigit() else -1
            if pid > 0 and _pid_alive(pid):
                continue
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    # ------------------------------------------------------------------ reading
    def list_names(self) -> list[str]:
        """Committed episode file names in eviction order (oldest policy version first)."""
        return sorted(entry.name for entry in os.scandir(self.episodes_dir) if entry.name.endswith(EPISODE_SUFFIX))

    def __len__(self) -> int:
        return len(self.list_names())

    def path_of(self, name: str) -> Path:
        return self.episodes_dir / name

    def read_header(self, name: str) -> EpisodeHeader:
        path = self.path_of(name)
        with open(path, "rb") as handle:
            header, _ = _read_header(handle, name, os.fstat(handle.fileno()).st_size)
        return header

    def iter_headers(self, lenient: bool = False, names: list[str] | None = None) -> Iterator[EpisodeHeader]:
        """Headers of committed episodes; a corrupt one raises (or is logged and skipped if lenient).

        An episode evicted between listing and reading is skipped silently.
        """
        for name in self.list_names() if names is None else names:
            try:
                yield self.read_header(name)
            except FileNotFoundError:
                continue
            except CorruptEpisodeError as error:
                if not lenient:
                    raise
                log.warning("skipping %s", error)

    def read_payload(self, name: str, verify: bool = True) -> tuple[EpisodeHeader, dict[str, Any]]:
        """Header and decoded payload dict of one episode (frames stay JPEG bytes)."""
        path = self.path_of(name)
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            header, offset = _read_header(handle, name, size)
            payload_bytes = handle.read(header.payload_len)
        if len(payload_bytes) != header.payload_len:
            raise CorruptEpisodeError(f"{path}: truncated payload ({len(payload_bytes)} of {header.payload_len} bytes)")
        if verify and hashlib.sha256(payload_bytes).digest() != header.payload_sha256:
            raise CorruptEpisodeError(f"{path}: payload checksum mismatch")
        return header, _unpack_payload(payload_bytes, path)

    def read_frames(self, header: EpisodeHeader, steps: list[int]) -> list[bytes]:
        """JPEG bytes of the given steps of one episode (a header from read_header / iter_headers).

        The payload checksum is verified on the first read of each file version in this process;
        later reads fetch only the requested frames (format 2) with os.pread.
        """
        path = self.path_of(header.name)
        if any(not 0 <= step < header.num_steps for step in steps):
            raise ValueError(f"{path}: steps {steps} outside the episode's {header.num_steps} steps")
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            version = (stat.st_size, stat.st_mtime_ns)
            if stat.st_size != header.file_bytes:
                raise CorruptEpisodeError(f"{path}: size {stat.st_size} bytes, its header says {header.file_bytes}")
            payload_bytes = None
            if self._verified.get(header.name) != version:
                payload_bytes = self._read_verified_payload(handle, header, path)
                if len(self._verified) >= VERIFIED_CACHE_ENTRIES:  # evicted names pile up in a long run
                    self._verified.clear()
                self._verified[header.name] = version
            if header.frame_spans is None:  # format 1: frames only from the whole payload
                if payload_bytes is None:
                    handle.seek(header.header_bytes)
                    payload_bytes = handle.read(header.payload_len)
                frames = _unpack_payload(payload_bytes, path)["rgb_jpeg"]
                return [frames[step] for step in steps]
            return [self._frame(handle.fileno(), header, step, payload_bytes, path) for step in steps]

    def _read_verified_payload(self, handle, header: EpisodeHeader, path: Path) -> bytes:
        handle.seek(header.header_bytes)
        payload_bytes = handle.read(header.payload_len)
        if len(payload_bytes) != header.payload_len:
            raise CorruptEpisodeError(f"{path}: truncated payload ({len(payload_bytes)} of {header.payload_len} bytes)")
        if hashlib.sha256(payload_bytes).digest() != header.payload_sha256:
            raise CorruptEpisodeError(f"{path}: payload checksum mismatch")
        return payload_bytes

    @staticmethod
    def _frame(fd: int, header: EpisodeHeader, step: int, payload_bytes: bytes | None, path: Path) -> bytes:
        offset, length, crc = (int(v) for v in header.frame_spans[step])
        if payload_bytes is not None:  # just verified as a whole
            return payload_bytes[offset : offset + length]
        data = os.pread(fd, length, header.header_bytes + offset)
        if len(data) != length or zlib.crc32(data) != crc:
            raise CorruptEpisodeError(f"{path}: frame {step} is truncated or fails its crc32")
        return data

    def read(self, name: str, verify: bool = True) -> Trajectory:
        header, payload = self.read_payload(name, verify)
        return trajectory_from_payload(header, payload)

    def __iter__(self) -> Iterator[Trajectory]:
        for name in self.list_names():
            try:
                yield self.read(name)
            except FileNotFoundError:
                continue

    def stats(self, sample_config: SampleConfig | None = None, lenient: bool = True) -> dict[str, Any]:
        """Counts from the headers only: episodes, steps, instructions, samples at the window, bytes."""
        sample_config = sample_config or SampleConfig()
        episodes = steps = instructions = samples = total_bytes = 0
        versions: set[int] = set()
        sources: dict[str, int] = {}
        for header in self.iter_headers(lenient=lenient):
            episodes += 1
            steps += header.num_steps
            instructions += len(header.instructions)
            samples += sum(count_samples(text, header.label_actions, sample_config) for text in header.instructions)
            total_bytes += header.file_bytes
            versions.add(header.policy_version)
            sources[header.source] = sources.get(header.source, 0) + 1
        return {
            "episodes": episodes,
            "steps": steps,
            "instructions": instructions,
            "samples": samples,
            "num_frames": sample_config.num_frames,
            "bytes": total_bytes,
            "bytes_per_step": (total_bytes / steps) if steps else 0.0,
            "policy_versions": sorted(versions),
            "sources": sources,
        }

    def verify(self, remove_orphans: bool = False) -> VerifyReport:
        """Check every committed file's checksums; never stops at the first bad one."""
        report = VerifyReport()
        for name in self.list_names():
            try:
                self.read(name, verify=True)
                report.ok.append(name)
            except FileNotFoundError:
                continue
            except (CorruptEpisodeError, ValueError) as error:
                report.corrupt.append((name, str(error)))
        if remove_orphans:
            report.orphans_removed = self.remove_orphans()
        return report

    def _lock(self):
        return _FileLock(self.root / "lock")


class _FileLock:
    """Exclusive fcntl lock on a file for the duration of a with-block (between processes)."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = None

    def __enter__(self):
        self._handle = open(self.path, "a+")
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
        self._handle.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
