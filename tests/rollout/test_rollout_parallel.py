"""The CPU stages over several processes give the serial result: the same episodes (ids, gt) and the
same store, in the same order."""

from __future__ import annotations

import numpy as np
import pytest

from envs.embedded import EmbeddedBackend, EmbeddedConfig
from envs.episodes.generator import GeneratorConfig, generate_split
from envs.task import VLNTask
from rollout.collect import CollectConfig, collect_expert, collect_expert_parallel
from rollout.store import EpisodeStore
from streamvln.pipeline.config import MAX_AUTO_WORKERS, DataStage

SIDE, HFOV = 48, 90.0


def test_parallel_generation_equals_serial():
    config = GeneratorConfig(episodes_per_house=4)
    # 11 = two whole houses + a partial one generated with the serial loop's exact count
    serial = generate_split("val_unseen", 11, seed=3, config=config)
    made = []
    parallel = generate_split("val_unseen", 11, seed=3, config=config, workers=2,
                              on_house=lambda scene, count: made.append(count))
    assert parallel == serial
    assert [e.episode_id for e in parallel[0]] == list(range(1, 12)) and made[-1] == 11
    with pytest.raises(ValueError, match="workers"):
        generate_split("val_unseen", 3, workers=0)


def test_parallel_collect_writes_the_serial_store_in_order(tmp_path):
    episodes, _ = generate_split("train", 5, seed=4)
    serial = EpisodeStore(tmp_path / "serial")
    collect_expert(VLNTask(EmbeddedBackend(EmbeddedConfig(width=SIDE, height=SIDE, hfov_deg=HFOV))),
                   episodes, serial)
    parallel = EpisodeStore(tmp_path / "parallel")
    seen = []
    names = collect_expert_parallel(episodes, parallel, (SIDE, SIDE, HFOV), CollectConfig(workers=2),
                                    on_episode=lambda count, _: seen.append(count))
    assert len(names) == 5 and seen == [1, 2, 3, 4, 5]
    for ours, ref in zip(parallel, serial, strict=True):
        assert ours.episode == ref.episode and ours.rgb == ref.rgb
        assert np.array_equal(ours.label_actions, ref.label_actions) and np.array_equal(ours.depth, ref.depth)
    capped = collect_expert_parallel(episodes, EpisodeStore(tmp_path / "capped"), (SIDE, SIDE, HFOV),
                                     CollectConfig(max_episodes=2, workers=2))
    assert len(capped) == 2
    with pytest.raises(ValueError, match="workers"):
        CollectConfig(workers=0).validate()


def test_data_workers_setting():
    assert DataStage(workers=3).processes == 3
    assert 1 <= DataStage().processes <= MAX_AUTO_WORKERS
    with pytest.raises(ValueError, match="data.workers"):
        DataStage(workers=0).validate()
