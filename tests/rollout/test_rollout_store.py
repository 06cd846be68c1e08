"""Durable episode store: round trip, atomic visibility, checksums, concurrency, eviction, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from rollout_fixtures import make_trajectory, step_of

from rollout.records import Trajectory
from rollout.samples import SampleConfig
from rollout.store import CorruptEpisodeError, EpisodeStore, StoreConfig

HERE = Path(__file__).parent


def test_round_trip_keeps_labels_frames_depth_poses(tmp_path):
    store = EpisodeStore(tmp_path)
    original = make_trajectory(num_steps=20)
    name = store.add(original)
    loaded = store.read(name)
    assert loaded.label_actions.tolist() == original.label_actions.tolist()
    assert loaded.instructions == original.instructions and loaded.episode == original.episode
    assert [step_of(loaded.rgb_frame(t)) for t in range(20)] == list(range(20))
    assert np.abs(loaded.depth - original.depth).max() < 1e-4
    assert np.array_equal(loaded.poses, original.poses)
    assert loaded.metrics == original.metrics and loaded.policy_version == 0
    # JPEG bytes are kept as-is: a second store copy is byte-identical.
    again = store.read(store.add(loaded))
    assert again.rgb == loaded.rgb


def test_invalid_trajectory_is_rejected_with_the_episode_named(tmp_path):
    store = EpisodeStore(tmp_path)
    bad = make_trajectory(num_steps=10, episode_id="bad7")
    bad.label_actions[-1] = 1
    with pytest.raises(ValueError, match="bad7.*STOP"):
        store.add(bad)
    bad = make_trajectory(num_steps=10, episode_id="bad8")
    bad.label_actions[3] = 9
    with pytest.raises(ValueError, match=r"bad8.*label_actions\[3\] = 9"):
        store.add(bad)
    assert len(store) == 0


def test_stats_count_steps_instructions_and_windows(tmp_path):
    store = EpisodeStore(tmp_path)
    store.add(make_trajectory(num_steps=70, instructions=("go to the bed", "walk to the bedroom")))
    store.add(make_trajectory(num_steps=10))
    stats = store.stats(SampleConfig())
    assert (stats["episodes"], stats["steps"], stats["instructions"]) == (2, 80, 3)
    assert stats["samples"] == 3 * 2 + 1
    assert stats["bytes"] == sum(p.stat().st_size for p in (tmp_path / "episodes").iterdir())
    assert stats["bytes_per_step"] == pytest.approx(stats["bytes"] / 80)


@pytest.mark.parametrize("damage", ["truncate", "flip_payload", "flip_header", "empty"])
def test_corrupt_file_is_named_and_the_rest_stays_readable(tmp_path, damage):
    store = EpisodeStore(tmp_path)
    names = [store.add(make_trajectory(num_steps=12, episode_id=f"e{i}")) for i in range(3)]
    path = store.path_of(names[1])
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "flip_payload":
        data[-50] ^= 0xFF
    elif damage == "flip_header":
        data[20] ^= 0xFF
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptEpisodeError, match=names[1]):
        store.read(names[1])
    report = store.verify()
    assert [name for name, _ in report.corrupt] == [names[1]]
    assert report.ok == [names[0], names[2]]
    assert [t.episode_id for t in (store.read(names[0]), store.read(names[2]))] == ["e0", "e2"]
    if damage != "flip_payload":  # headers alone cannot see payload bit flips
        with pytest.raises(CorruptEpisodeError):
            list(store.iter_headers())
        assert [h.episode_id for h in store.iter_headers(lenient=True)] == ["e0", "e2"]


def test_eviction_removes_oldest_policy_version_first(tmp_path):
    store = EpisodeStore(tmp_path, StoreConfig(max_episodes=3, fsync=False))
    for version in (2, 0, 1, 3):
        store.add(make_trajectory(num_steps=8, episode_id=f"v{version}", policy_version=version))
    assert sorted(h.policy_version for h in store.iter_headers()) == [1, 2, 3]
    one_file = store.path_of(store.list_names()[0]).stat().st_size
    by_bytes = EpisodeStore(tmp_path / "b", StoreConfig(max_bytes=int(one_file * 2.5), fsync=False))
    for version in range(4):
        by_bytes.add(make_trajectory(num_steps=8, policy_version=version))
    assert [h.policy_version for h in by_bytes.iter_headers()] == [2, 3]


def _write_episodes(args) -> list[str]:
    root, worker, count = args
    store = EpisodeStore(root)
    return [store.add(make_trajectory(num_steps=9, episode_id=f"w{worker}-{i}")) for i in range(count)]


def test_concurrent_writer_processes_and_a_reader(tmp_path):
    store = EpisodeStore(tmp_path)
    with ProcessPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(_write_episodes, (str(tmp_path), worker, 6)) for worker in range(3)]
        seen_during = set()
        while not all(f.done() for f in futures):  # a reader while writers run sees only whole episodes
            for header in store.iter_headers():
                seen_during.add(header.episode_id)
        written = [name for f in futures for name in f.result()]
    assert len(set(written)) == 18
    assert store.verify().corrupt == []
    assert {t.episode_id for t in store} == {f"w{w}-{i}" for w in range(3) for i in range(6)}


WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {here!r})
    from rollout_fixtures import make_trajectory
    from rollout.store import EpisodeStore
    import rollout.store as store_module

    store = EpisodeStore({root!r})
    store.add(make_trajectory(num_steps=10, episode_id="committed"))

    # Slow the writer's file writes down so the kill lands mid-episode.
    class SlowFile:
        def __init__(self, handle):
            self.handle = handle
        def write(self, data):
            for i in range(0, len(data), 64):
                self.handle.write(data[i:i + 64]); self.handle.flush()
                time.sleep(0.002)
        def __getattr__(self, name):
            return getattr(self.handle, name)
        def __enter__(self):
            return self
        def __exit__(self, *exc):
            self.handle.close()

    import builtins
    real_open = builtins.open
    store_module.open = lambda path, mode="r", *a, **k: SlowFile(real_open(path, mode, *a, **k)) if "w" in mode else real_open(path, mode, *a, **k)
    print("COMMITTED", flush=True)
    store.add(make_trajectory(num_steps=60, episode_id="partial", size=64))
    print("DONE", flush=True)
    """
)


def test_kill_minus_9_mid_write_loses_nothing_committed_and_shows_no_partial(tmp_path):
    script = WRITER.format(here=str(HERE), root=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "COMMITTED"
    tmp_dir = tmp_path / "tmp"
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 1000 for p in tmp_dir.glob("*.part")):  # mid-write, for sure
        assert time.monotonic() < deadline and proc.poll() is None, "writer never started the second episode"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = EpisodeStore(tmp_path)
    assert [t.episode_id for t in store] == ["committed"]
    assert store.verify().corrupt == []
    assert list(tmp_dir.glob("*.part"))  # the orphan is there until cleaned
    assert store.verify(remove_orphans=True).orphans_removed == 1
    assert not list(tmp_dir.glob("*.part"))


def test_trajectory_accepts_jpeg_frames(tmp_path):
    source = make_trajectory(num_steps=6)
    jpeg = Trajectory(source.episode, source.instructions, source.rgb_jpeg(), source.label_actions)
    jpeg.validate()
    name = EpisodeStore(tmp_path).add(jpeg)
    assert EpisodeStore(tmp_path).read(name).rgb == jpeg.rgb
