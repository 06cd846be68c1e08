"""torch Dataset over sample sources: the learner's way from stored data to collated batches.

A sample source (the store view, each QA reader) answers `draw(rng, count) -> keys` in the main
process and `load(key) -> Sample` in a DataLoader worker. Keys are stable references (a WindowRef
names the episode file; QA keys are record indices), so a worker whose copy of the index is older
than the main process's still loads the right sample. SampleDataset maps (source name, key) ->
Sample -> encoder.encode(...) (the model's processor), and collate is encoder.collate; images stay
uint8 until the model moves them to the GPU.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Hashable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from rollout.dialogue import Sample, TaskType
from rollout.store import EpisodeStore
from rollout.view import StoreView, ViewConfig, WindowRef

log = logging.getLogger(__name__)


@runtime_checkable
class SampleSource(Protocol):
    name: str
    task_type: TaskType

    def __len__(self) -> int: ...

    def draw(self, rng: np.random.Generator, count: int) -> list[Hashable]: ...

    def load(self, key: Any) -> Sample: ...

    def refresh(self) -> None: ...


@runtime_checkable
class Encoder(Protocol):
    """What the dataset needs from the model's processor (agent.processor.SlowFastProcessor)."""

    def encode(self, sample: Sample) -> Any: ...

    def collate(self, samples: list) -> dict: ...


class StoreNavSource:
    """Navigation windows of an episode store (grows while training; see rollout.view)."""

    task_type = TaskType.NAV

    def __init__(self, store: EpisodeStore | str, config: ViewConfig | None = None, name: str = "nav"):
        self.name = name
        self.view = StoreView(store, config)
        self.view.refresh()

    def __len__(self) -> int:
        return len(self.view)

    def refresh(self) -> None:
        self.view.refresh()

    def draw(self, rng: np.random.Generator, count: int) -> list[WindowRef]:
        return self.view.draw(rng, count)

    def load(self, key: WindowRef) -> Sample:
        try:
            return self.view.load(key)
        except FileNotFoundError:
            # Evicted between draw and load: take a replacement chosen from the key, so it is reproducible.
            self.view.refresh()
            if not len(self.view):
                raise
            replacement = self.view.refs[zlib.crc32(repr(key).encode()) % len(self.view)]
            log.info("episode %s was evicted; loading %s instead", key.episode, replacement.episode)
            return self.view.load(replacement)


class ListSource:
    """A fixed list of records and a function record -> Sample (the QA readers build these)."""

    def __init__(self, name: str, task_type: TaskType, records: list, loader):
        self.name = name
        self.task_type = task_type
        self.records = records
        self.loader = loader

    def __len__(self) -> int:
        return len(self.records)

    def refresh(self) -> None:
        pass

    def draw(self, rng: np.random.Generator, count: int) -> list[int]:
        if not self.records:
            raise ValueError(f"source {self.name!r} has no records")
        return [int(i) for i in rng.integers(0, len(self.records), size=count)]

    def load(self, key: int) -> Sample:
        return self.loader(self.records[key])


class SampleDataset(torch.utils.data.Dataset):
    """Map-style dataset whose indices are (source name, key) pairs from a mixture batch sampler."""

    def __init__(self, sources: Mapping[str, SampleSource], encoder: Encoder | None = None):
        if not sources:
            raise ValueError("SampleDataset needs at least one source")
        self.sources = dict(sources)
        self.encoder = encoder

    def __len__(self) -> int:
        return sum(len(source) for source in self.sources.values())

    def __getitem__(self, index: tuple[str, Hashable]):
        name, key = index
        if name not in self.sources:
            raise KeyError(f"unknown source {name!r}; known: {sorted(self.sources)}")
        sample = self.sources[name].load(key)
        return sample if self.encoder is None else self.encoder.encode(sample)

    def collate(self, batch: list) -> dict:
        return collate_samples(batch) if self.encoder is None else self.encoder.collate(batch)


def collate_samples(samples: list[Sample]) -> dict:
    """Batch un-tokenized Samples (no encoder): frames concatenated uint8, time_ids padded with -1.

    Same image layout as the processor's collate; the dialogues are passed through as a list.
    """
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    max_frames = max(s.images.shape[0] for s in samples)
    time_ids = torch.full((len(samples), max_frames), -1, dtype=torch.long)
    for row, sample in enumerate(samples):
        time_ids[row, : len(sample.time_ids)] = torch.as_tensor(sample.time_ids, dtype=torch.long)
    return {
        "images": torch.from_numpy(np.concatenate([s.images for s in samples])),
        "image_counts": torch.tensor([s.images.shape[0] for s in samples], dtype=torch.long),
        "num_memory": torch.tensor([s.num_memory for s in samples], dtype=torch.long),
        "time_ids": time_ids,
        "task_type": [s.task_type.value for s in samples],
        "dialogues": [s.dialogue for s in samples],
    }
