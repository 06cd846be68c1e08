"""Batches for the learner: a resumable stream over a DataLoader, and building it from rollout/.

`BatchStream` turns any batch sampler (rollout.mixing.MixtureBatchSampler, or a plain list-of-batches
sampler in tests) into an endless iterator whose position (epoch, batches consumed) is part of the
learner checkpoint. Batches are counted when the learner takes them, not when DataLoader workers
prefetch them, so a resumed run sees exactly the batches the uninterrupted run would have seen.

`build_mixed_stream` wires rollout's sources (episode stores, StreamVLN-layout folders, QA data) into
a SampleDataset encoded by the model's processor, mixed by the configured weights.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from training.config import DataConfig, DataSourceConfig

log = logging.getLogger(__name__)


class SkippingBatchSampler(torch.utils.data.Sampler):
    """Wraps a batch sampler: `epoch` is passed to it (set_epoch) and the first `skip` batches dropped."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.epoch = 0
        self.skip = 0

    def __iter__(self) -> Iterator[list]:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(self.epoch)
        return itertools.islice(iter(self.inner), self.skip, None)

    def __len__(self) -> int:
        return max(len(self.inner) - self.skip, 0)


class RankSlice(torch.utils.data.Sampler):
    """Rank r of W takes samples r, r+W, ... of each global batch drawn by `inner` (the same draw on
    every rank) and yields them as `micro_batches` consecutive micro batches. With one global batch per
    optimizer step (micro batch x W x accumulation), a step sees the same samples on any number of ranks:
    2 ranks x 1 micro batch of B = 1 rank x 2 micro batches of B = 1 rank x 1 micro batch of 2B."""

    def __init__(self, inner: Any, rank: int, world_size: int, micro_batches: int = 1):
        if not 0 <= rank < world_size or micro_batches < 1:
            raise ValueError(f"RankSlice needs 0 <= rank < world_size and micro_batches >= 1, got rank {rank}, "
                             f"world_size {world_size}, micro_batches {micro_batches}")
        self.inner, self.rank, self.world_size, self.micro_batches = inner, rank, world_size, micro_batches

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner) * self.micro_batches

    def __iter__(self) -> Iterator[list]:
        for batch in self.inner:
            mine = list(batch)[self.rank::self.world_size]
            if len(mine) % self.micro_batches:
                raise ValueError(f"a global batch gives rank {self.rank} {len(mine)} samples, not a multiple "
                                 f"of its {self.micro_batches} micro batches")
            size = len(mine) // self.micro_batches
            for start in range(0, len(mine), size):
                yield mine[start:start + size]


class BatchStream:
    """Endless, resumable batches: `next(stream)`; `state_dict()` = {epoch, position}."""

    def __init__(self, dataset: torch.utils.data.Dataset, batch_sampler: Any, collate_fn,
                 num_workers: int = 0, pin_memory: bool = False, prefetch_factor: int = 2, seed: int = 0):
        if len(batch_sampler) == 0:
            raise ValueError("the batch sampler yields no batches (no samples?)")
        self._sampler = SkippingBatchSampler(batch_sampler)
        # Every iter(loader) draws the workers' base seed from the loader's generator. Without one of its
        # own that draw comes from torch's global RNG, and a resumed run restarts the loader where the
        # uninterrupted run did not: its dropout etc. would run one draw off the uninterrupted run's.
        # Reseeded from (seed, epoch) at each start, so the base seed does not depend on restarts either.
        self.seed = seed
        self._generator = torch.Generator()
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self._sampler, collate_fn=collate_fn, num_workers=num_workers,
            pin_memory=pin_memory, prefetch_factor=prefetch_factor if num_workers > 0 else None,
            persistent_workers=False, generator=self._generator)
        self.epoch = 0
        self.position = 0  # batches of this epoch handed to the learner
        self._iterator: Iterator | None = None
        self.sources: dict[str, Any] = {}  # rollout sources by name, when built from rollout/

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> dict[str, Any]:
        for _attempt in range(2):
            if self._iterator is None:
                self._sampler.epoch, self._sampler.skip = self.epoch, self.position
                self._generator.manual_seed(((self.seed % 2**32) << 32) | (self.epoch % 2**32))
                self._iterator = iter(self.loader)
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator = None
                self.epoch, self.position = self.epoch + 1, 0
                continue
            self.position += 1
            return batch
        raise RuntimeError(f"epoch {self.epoch} of the batch sampler is empty")

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._iterator = None  # restart the loader at the restored position

    def refresh(self) -> None:
        """Re-read growing sources now (the mixture sampler also does it every data.refresh_every batches)."""
        for source in self.sources.values():
            source.refresh()


class SourceTaggedDataset(torch.utils.data.Dataset):
    """rollout's SampleDataset, plus the mixture source name of each sample in the batch ("source"),
    so the learner can count samples seen per configured source."""

    def __init__(self, dataset: Any):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: tuple[str, Any]) -> tuple[str, Any]:
        return index[0], self.dataset[index]

    def collate(self, items: list[tuple[str, Any]]) -> dict[str, Any]:
        batch = self.dataset.collate([sample for _, sample in items])
        batch["source"] = [name for name, _ in items]
        return batch


def build_sources(data: DataConfig, sample_config=None) -> dict[str, Any]:
    """rollout sample sources for each configured entry, checked to be non-empty before training."""
    from rollout.samples import SampleConfig

    if sample_config is None:
        sample_config = SampleConfig(num_frames=data.num_frames, num_future_steps=data.num_future_steps,
                                     num_history=data.num_history, blank_instruction=data.blank_instructions,
                                     consistent_history=data.consistent_history,
                                     train_all_turns=data.train_all_turns)
    sources: dict[str, Any] = {}
    for index, entry in enumerate(data.sources):
        if entry.label in sources:
            raise ValueError(f"data.sources[{index}]: duplicate source name {entry.label!r}; set `name`")
        try:
            source = _build_source(entry, index, sample_config)
        except TypeError as error:  # an unknown key in `options`
            raise ValueError(f"data.sources[{index}] ({entry.kind}): bad options {entry.options}: {error}") from None
        if len(source) == 0:
            raise ValueError(f"data.sources[{index}] ({entry.kind} {entry.path}) holds no samples")
        sources[entry.label] = source
    if not sources:
        raise ValueError("data.sources is empty: configure at least one store, streamvln folder or QA set")
    return sources


def _build_source(entry: DataSourceConfig, index: int, sample_config) -> Any:
    from rollout.dataset import StoreNavSource
    from rollout.view import ViewConfig

    if entry.kind == "store":
        view_config = ViewConfig(**_view_options(entry, sample_config))
        return StoreNavSource(_existing(entry, index), view_config, name=entry.label)
    if entry.kind == "streamvln":
        return _streamvln_source(entry, index, sample_config)
    return _qa_source(entry, index)


def _existing(entry: DataSourceConfig, index: int) -> str:
    if not Path(entry.path).exists():
        raise FileNotFoundError(f"data.sources[{index}].path does not exist: {entry.path}")
    return entry.path


def _view_options(entry: DataSourceConfig, sample_config) -> dict[str, Any]:
    options = dict(entry.options)
    if sample_config is not None:
        options.setdefault("sample", sample_config)
    return options


def _streamvln_source(entry: DataSourceConfig, index: int, sample_config):
    """A StreamVLN-layout folder is imported into a store next to it once, then read as a store."""
    from rollout.dataset import StoreNavSource
    from rollout.store import EpisodeStore, StoreConfig
    from rollout.streamvln_layout import import_streamvln
    from rollout.view import ViewConfig

    root = Path(_existing(entry, index))
    store_dir = Path(entry.options.get("store_dir", root / ".streamvln_store"))
    if not store_dir.is_dir() or not any((store_dir / "episodes").glob("*")):
        store = EpisodeStore(store_dir, StoreConfig(fsync=False))
        report = import_streamvln(root, store)
        log.info("imported %s into %s: %s", root, store_dir, report)
    options = {k: v for k, v in _view_options(entry, sample_config).items() if k != "store_dir"}
    return StoreNavSource(str(store_dir), ViewConfig(**options), name=entry.label)


def _qa_source(entry: DataSourceConfig, index: int):
    """LLaVA-style QA json (media under options.media_root) or interleaved jsonl (options.image_root)."""
    from rollout.dialogue import TaskType

    path = Path(_existing(entry, index))
    options = dict(entry.options)
    if entry.kind == "scene_qa":
        from rollout.qa.scene_qa import SceneQASource

        return SceneQASource(path, name=entry.label, **options)
    if entry.kind == "llava_qa":
        from rollout.qa.llava_json import LlavaJsonSource, LlavaQAConfig

        media_root = options.pop("media_root", str(path.parent))
        if "task_type" in options:
            options["task_type"] = TaskType(options["task_type"])
        return LlavaJsonSource(path, media_root, LlavaQAConfig(**options), name=entry.label)
    from rollout.qa.interleaved import InterleavedConfig, InterleavedSource

    image_root = options.pop("image_root", str(path.parent))
    return InterleavedSource(path, image_root, InterleavedConfig(**options), name=entry.label)


def build_mixed_stream(data: DataConfig, encoder, micro_batch_size: int, seed: int, rank: int = 0,
                       world_size: int = 1, sources: dict[str, Any] | None = None,
                       grad_accum_steps: int = 1) -> BatchStream:
    """The offline/online stream: sources mixed by weight, encoded by the model's processor.

    Every rank draws the same global batch per optimizer step (micro_batch_size x world_size x
    grad_accum_steps) and keeps its slice as grad_accum_steps micro batches, so a step's samples do not
    depend on how the global batch is split over GPUs and accumulation (1 GPU x 2 accumulated micro
    batches trains on what 2 GPUs do). An epoch (data.batches_per_epoch) counts global batches.
    `sources` (from build_sources) lets a caller check the data before building the model.
    """
    from rollout.dataset import SampleDataset
    from rollout.mixing import MixtureBatchSampler, MixtureConfig

    sources = sources if sources is not None else build_sources(data)
    weights = {entry.label: entry.weight for entry in data.sources}
    mixture = MixtureConfig(weights=weights, batch_size=micro_batch_size * world_size * grad_accum_steps,
                            group_by_task=data.group_by_task, seed=seed,
                            refresh_every=data.refresh_every or 10**9,  # 0: a static store, never re-read
                            num_batches=data.batches_per_epoch)
    dataset = SourceTaggedDataset(SampleDataset(sources, encoder))
    sampler = RankSlice(MixtureBatchSampler(sources, mixture), rank, world_size, grad_accum_steps)
    stream = BatchStream(dataset, sampler, dataset.collate, num_workers=data.num_workers,
                         pin_memory=data.pin_memory, prefetch_factor=data.prefetch_factor, seed=seed)
    stream.sources = sources
    return stream
