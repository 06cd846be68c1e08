"""`streamvln bench data` end to end on a tiny synthetic store; eviction between draw and load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rollout_fixtures import make_trajectory

from rollout.dataset import StoreNavSource
from rollout.store import EpisodeStore
from rollout.view import FrameCache, StoreView, ViewConfig
from streamvln.cli import main


def test_bench_data_prints_throughput_and_bytes_per_step(capsys):
    argv = ["bench", "data", "--episodes", "3", "--steps", "40", "--frame-size", "32", "--image-size", "32",
            "--batches", "2", "--workers", "1", "--encoder", "none"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 3 and result["steps"] == 120
    assert result["bytes_per_step"] > 0 and set(result["samples_per_s"]) == {"0", "1"}
    assert all(value > 0 for value in result["samples_per_s"].values())
    split = result["cpu_ms_per_sample"]
    assert split["load"] > 0 and split["collate"] >= 0 and split["encode"] >= 0
    assert split["total"] == pytest.approx(split["load"] + split["encode"] + split["collate"], abs=2e-3)


def test_evicted_episode_is_replaced_not_fatal(tmp_path):
    store = EpisodeStore(tmp_path)
    names = [store.add(make_trajectory(num_steps=12, episode_id=f"e{i}")) for i in range(3)]
    source = StoreNavSource(store)
    key = next(ref for ref in source.view.refs if ref.episode == names[0])
    store.path_of(names[0]).unlink()
    sample = source.load(key)
    assert sample.images.shape[0] > 0 and len(source) == 2


def test_frame_cache_decodes_each_frame_once_and_respects_its_budget(tmp_path):
    store = EpisodeStore(tmp_path)
    store.add(make_trajectory(num_steps=70, size=16))
    view = StoreView(store, ViewConfig(frame_cache_mb=1))
    view.refresh()
    first = [view.load(ref) for ref in view.refs]
    distinct_steps = {step for sample in first for step in sample.time_ids.tolist()}
    assert view._frames.misses == len(distinct_steps)
    again = [view.load(ref) for ref in view.refs]
    assert all(np.array_equal(a.images, b.images) for a, b in zip(first, again))
    assert view._frames.misses == len(distinct_steps) and view._frames.hits > 0
    cache = FrameCache(max_bytes=100)
    for i in range(5):
        cache.get(i, lambda: np.zeros(40, np.uint8))
    assert cache.bytes <= 100 and cache.misses == 5 and cache.get(4, lambda: None) is not None

