"""Mixing by weights, single-task batches, and the DataLoader path with workers and the real processor."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from rollout_fixtures import make_trajectory

from rollout.dataset import ListSource, SampleDataset, StoreNavSource
from rollout.dialogue import ChatDialogue, ChatTurn, Sample, TaskType
from rollout.mixing import MixtureBatchSampler, MixtureConfig, build_dataloader
from rollout.samples import SampleConfig
from rollout.store import EpisodeStore
from rollout.view import NotEnoughDataError, StoreView, ViewConfig


def chat_sample(index: int, task: TaskType) -> Sample:
    dialogue = ChatDialogue((ChatTurn("user", "<image>\nwhat is it?"), ChatTurn("assistant", f"thing {index}")))
    return Sample(dialogue, np.full((1, 16, 16, 3), index % 255, np.uint8), 0, np.array([-1]), task, source="fake")


def list_source(name: str, task: TaskType, size: int = 50) -> ListSource:
    return ListSource(name, task, list(range(size)), lambda i, task=task: chat_sample(i, task))


@pytest.fixture
def store(tmp_path):
    store = EpisodeStore(tmp_path / "store")
    for i in range(4):
        store.add(make_trajectory(num_steps=40, episode_id=f"e{i}", policy_version=i, size=24))
    return store


def test_observed_ratios_follow_the_weights(store):
    sources = {
        "nav": StoreNavSource(store),
        "vqa": list_source("vqa", TaskType.VIDEO_QA),
        "vqa2": list_source("vqa2", TaskType.VIDEO_QA),
        "mmc4": list_source("mmc4", TaskType.INTERLEAVED),
    }
    weights = {"nav": 0.5, "vqa": 0.2, "vqa2": 0.1, "mmc4": 0.2}
    sampler = MixtureBatchSampler(sources, MixtureConfig(weights=weights, batch_size=8, num_batches=1500, seed=3))
    counts: Counter = Counter()
    for batch in sampler:
        assert len(batch) == 8
        assert len({sources[name].task_type for name, _ in batch}) == 1  # grouped by task
        counts.update(name for name, _ in batch)
    total = sum(counts.values())
    for name, weight in weights.items():
        assert counts[name] / total == pytest.approx(weight, abs=0.03)
    again = list(MixtureBatchSampler(sources, MixtureConfig(weights=weights, batch_size=8, num_batches=5, seed=3)))
    assert again == list(MixtureBatchSampler(sources, MixtureConfig(weights=weights, batch_size=8, num_batches=5, seed=3)))


def test_ungrouped_batches_mix_tasks():
    sources = {"a": list_source("a", TaskType.VIDEO_QA), "b": list_source("b", TaskType.INTERLEAVED)}
    sampler = MixtureBatchSampler(sources, MixtureConfig(weights={"a": 1, "b": 1}, batch_size=16, num_batches=20, group_by_task=False))
    assert any(len({name for name, _ in batch}) == 2 for batch in sampler)


def test_mixture_config_errors_name_the_problem():
    sources = {"a": list_source("a", TaskType.VIDEO_QA)}
    with pytest.raises(ValueError, match="unknown sources \\['zz'\\]"):
        MixtureBatchSampler(sources, MixtureConfig(weights={"a": 1, "zz": 1}))
    with pytest.raises(ValueError, match="positive weight"):
        MixtureBatchSampler(sources, MixtureConfig(weights={"a": 0}))


def test_view_sees_new_episodes_and_waits_for_min_size(tmp_path):
    store = EpisodeStore(tmp_path)
    view = StoreView(store, ViewConfig(min_episodes=2))
    with pytest.raises(NotEnoughDataError, match="0 episodes"):
        view.wait_until_ready(timeout_s=0)
    store.add(make_trajectory(num_steps=70, episode_id="a"))
    view.refresh()
    with pytest.raises(NotEnoughDataError, match="need 2 episodes"):
        view.draw(np.random.default_rng(0), 1)
    store.add(make_trajectory(num_steps=10, episode_id="b"))
    view.wait_until_ready(timeout_s=0)
    assert view.num_episodes == 2 and len(view) == 3 + 1
    sample = view.load(view.refs[1])
    assert sample.num_memory == 8 and sample.images.shape[0] == 16


def test_weighted_view_prefers_new_versions_and_dagger(tmp_path):
    store = EpisodeStore(tmp_path)
    store.add(make_trajectory(num_steps=8, episode_id="old", policy_version=0))
    store.add(make_trajectory(num_steps=8, episode_id="new", policy_version=1))
    store.add(make_trajectory(num_steps=8, episode_id="dag", policy_version=1, source="dagger"))
    config = ViewConfig(weighting="weighted", recency_decay=0.5, source_weights={"dagger": 2.0})
    view = StoreView(store, config)
    view.refresh()
    names = Counter(store.read_header(ref.episode).episode_id for ref in view.draw(np.random.default_rng(0), 7000))
    # weights 0.5 : 1 : 2
    assert names["old"] / 7000 == pytest.approx(0.5 / 3.5, abs=0.02)
    assert names["dag"] / 7000 == pytest.approx(2 / 3.5, abs=0.02)
    assert view.load(view.refs[0]).source.startswith("store:")


def test_dataloader_with_two_workers_and_the_processor(store):
    processor_module = pytest.importorskip("agent.processor")
    tokenizer_module = pytest.importorskip("agent.tokenizer")
    processor = processor_module.SlowFastProcessor(
        tokenizer_module.build_local_tokenizer(), processor_module.ProcessorSettings(image_size=24)
    )
    sources = {
        "nav": StoreNavSource(store, ViewConfig(sample=SampleConfig(num_frames=16))),
        "vqa": list_source("vqa", TaskType.VIDEO_QA),
    }
    dataset = SampleDataset(sources, encoder=processor)
    mixture = MixtureConfig(weights={"nav": 0.7, "vqa": 0.3}, batch_size=4, num_batches=12, seed=1)
    loader = build_dataloader(dataset, mixture, num_workers=2, prefetch_factor=2)
    tasks = []
    for batch in loader:
        assert batch["images"].dtype == torch.uint8 and batch["images"].shape[1:] == (24, 24, 3)
        assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
        assert batch["time_ids"].shape[0] == 4 and int(batch["image_counts"].sum()) == batch["images"].shape[0]
        assert len(set(batch["task_type"])) == 1
        tasks.append(batch["task_type"][0])
    assert set(tasks) == {"nav", "video_qa"} and len(tasks) == 12
