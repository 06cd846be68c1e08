"""Mixing sources by explicit weights, with batches grouped by task (the seed's CombineDataset +
group_by_task, but the ratio is a configured weight instead of a side effect of dataset sizes).

MixtureBatchSampler yields lists of (source name, key) for SampleDataset. Each batch:
- group_by_task: pick one task type with probability proportional to the summed weights of its
  sources, then each sample's source among that task's sources by weight: every batch is one task;
- otherwise: each sample's source by weight.
Seeded per (seed, epoch). Sources are refreshed every `refresh_every` batches so a growing store
contributes its new episodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from rollout.dataset import SampleDataset, SampleSource


@dataclass(frozen=True)
class MixtureConfig:
    weights: dict[str, float] = field(default_factory=dict)  # by source name; missing sources get 0
    batch_size: int = 8
    num_batches: int = 1000  # per epoch (an online learner never runs out)
    group_by_task: bool = True
    seed: int = 0
    refresh_every: int = 50

    def validate(self, source_names: list[str] | None = None) -> None:
        if self.batch_size < 1 or self.num_batches < 1 or self.refresh_every < 1:
            raise ValueError("MixtureConfig.batch_size, num_batches and refresh_every must be >= 1")
        if any(weight < 0 for weight in self.weights.values()):
            raise ValueError(f"MixtureConfig.weights must be >= 0, got {self.weights}")
        if not any(weight > 0 for weight in self.weights.values()):
            raise ValueError(f"MixtureConfig.weights needs at least one positive weight, got {self.weights}")
        if source_names is not None:
            unknown = sorted(set(self.weights) - set(source_names))
            if unknown:
                raise ValueError(f"MixtureConfig.weights names unknown sources {unknown}; sources: {sorted(source_names)}")


class MixtureBatchSampler(torch.utils.data.Sampler):
    def __init__(self, sources: Mapping[str, SampleSource], config: MixtureConfig):
        config.validate(list(sources))
        self.sources = dict(sources)
        self.config = config
        self.epoch = 0
        self._names = [name for name in self.sources if config.weights.get(name, 0.0) > 0]
        self._weights = np.array([config.weights[name] for name in self._names], dtype=np.float64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.config.num_batches

    def __iter__(self) -> Iterator[list[tuple[str, object]]]:
        rng = np.random.default_rng([self.config.seed, self.epoch])
        for batch_index in range(self.config.num_batches):
            if batch_index % self.config.refresh_every == 0:
                for name in self._names:
                    self.sources[name].refresh()
            yield self._batch(rng)

    def _batch(self, rng: np.random.Generator) -> list[tuple[str, object]]:
        candidates = np.arange(len(self._names))
        if self.config.group_by_task:
            tasks = [self.sources[name].task_type for name in self._names]
            unique = sorted(set(tasks), key=lambda task: task.value)
            task_weights = np.array([self._weights[[t == task for t in tasks]].sum() for task in unique])
            task = unique[rng.choice(len(unique), p=task_weights / task_weights.sum())]
            candidates = np.array([i for i, t in enumerate(tasks) if t == task])
        probabilities = self._weights[candidates] / self._weights[candidates].sum()
        picks = rng.choice(candidates, size=self.config.batch_size, p=probabilities)
        batch: list[tuple[str, object]] = []
        for source_index in sorted(set(picks.tolist())):
            name = self._names[source_index]
            count = int((picks == source_index).sum())
            batch.extend((name, key) for key in self.sources[name].draw(rng, count))
        order = rng.permutation(len(batch))
        return [batch[i] for i in order]


def build_dataloader(
    dataset: SampleDataset, mixture: MixtureConfig, num_workers: int = 2, prefetch_factor: int = 4,
    pin_memory: bool | None = None,
) -> torch.utils.data.DataLoader:
    """DataLoader over a mixture; each worker opens store files itself (nothing shared but paths).

    pin_memory None: pinned batches only when CUDA is available (pinning costs a copy on the CPU and
    helps nothing without a GPU to copy to).
    """
    sampler = MixtureBatchSampler(dataset.sources, mixture)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=dataset.collate,
        num_workers=num_workers,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
    )
