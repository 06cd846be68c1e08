"""`streamvln bench data`: samples/s from an on-disk episode store to collated batches.

Measures the learner's data path end to end: DataLoader workers read checksummed episode files,
decode only the JPEG frames a window needs, build the StreamVLN sample, tokenize it with the model's
processor (or skip tokenization with --encoder none) and collate. Reports samples/s with 0, 1 and
--workers workers, samples/s per worker, and bytes per stored step. Without --store, a temporary
store of synthetic episodes (flat-shaded frames like the embedded renderer's) is written first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and rollout are imported where used: `streamvln --help` stays fast
    import numpy as np

    from rollout.records import Trajectory
    from rollout.store import EpisodeStore

NAME = "data"
HELP = "samples/s from the episode store to collated batches (workers 0/1/N), bytes per stored step"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="an existing store (default: a temporary synthetic one)")
    parser.add_argument("--episodes", type=int, default=48, help="synthetic episodes")
    parser.add_argument("--steps", type=int, default=96, help="steps per synthetic episode")
    parser.add_argument("--frame-size", type=int, default=224, help="stored frame size of synthetic episodes")
    parser.add_argument("--image-size", type=int, default=224, help="frame size of the batches")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=60, help="timed batches per configuration")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--frame-cache-mb", type=int, default=0,
                        help="decoded-frame cache per worker (MiB); 0 measures cold decoding of every frame")
    parser.add_argument("--encoder", choices=("processor", "none"), default="processor",
                        help="tokenize with agent.processor (default) or stop at Samples")


def run(args: argparse.Namespace) -> dict:
    from rollout.samples import SampleConfig
    from rollout.store import EpisodeStore

    with tempfile.TemporaryDirectory(prefix="streamvln-bench-data-") as tmp:
        store = EpisodeStore(args.store, create=False) if args.store else _synthetic_store(Path(tmp), args)
        stats = store.stats(SampleConfig())
        encoder = _encoder(args.image_size) if args.encoder == "processor" else None
        results = {}
        for workers in sorted({0, 1, args.workers}):
            results[workers] = _measure(store, encoder, workers, args)
        split = _stage_split(store, encoder, args)
    best = results[args.workers]
    return {
        "benchmark": NAME,
        "store": args.store or "synthetic",
        "episodes": stats["episodes"],
        "steps": stats["steps"],
        "bytes_per_step": round(stats["bytes_per_step"], 1),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "encoder": args.encoder,
        "images_per_sample": round(best["images_per_sample"], 2),
        "samples_per_s": {str(w): round(r["samples_per_s"], 1) for w, r in results.items()},
        "samples_per_s_per_worker": {str(w): round(r["samples_per_s"] / max(w, 1), 1) for w, r in results.items()},
        # Throughput of one core regardless of other load on the machine (in-process run, CPU time).
        "samples_per_cpu_s": round(results[0]["samples_per_cpu_s"], 1),
        # Where one sample's CPU time goes (in-process): read + decode + build, tokenize, batch.
        "cpu_ms_per_sample": split,
        "frame_cache_mb": args.frame_cache_mb,
        "frame_cache_hit_rate": round(results[0]["frame_cache_hit_rate"], 3),
        "workers": args.workers,
        "target_per_worker": 200,
    }


def _measure(store: EpisodeStore, encoder, workers: int, args: argparse.Namespace) -> dict:
    from rollout.dataset import SampleDataset, StoreNavSource
    from rollout.mixing import MixtureConfig, build_dataloader
    from rollout.view import ViewConfig

    view_config = ViewConfig(image_size=args.image_size, frame_cache_mb=args.frame_cache_mb)
    dataset = SampleDataset({"nav": StoreNavSource(store, view_config)}, encoder=encoder)
    warmup = max(2, 2 * workers)
    mixture = MixtureConfig(weights={"nav": 1.0}, batch_size=args.batch_size, num_batches=args.batches + warmup,
                            seed=workers)
    loader = build_dataloader(dataset, mixture, num_workers=workers, prefetch_factor=4)
    images = samples = 0
    start = cpu_start = None
    for index, batch in enumerate(loader):
        if index == warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        if index >= warmup:
            samples += len(batch["task_type"])
            images += int(batch["image_counts"].sum())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    frames = dataset.sources["nav"].view._frames  # meaningful for workers=0 (the in-process run)
    return {
        "samples_per_s": samples / elapsed,
        "samples_per_cpu_s": samples / max(cpu, 1e-9),
        "images_per_sample": images / max(samples, 1),
        "frame_cache_hit_rate": frames.hits / max(frames.hits + frames.misses, 1),
    }


def _stage_split(store: EpisodeStore, encoder, args: argparse.Namespace) -> dict:
    """CPU ms per sample of loading (read + JPEG decode + sample building), encoding and collating."""
    import numpy as np

    from rollout.dataset import StoreNavSource, collate_samples
    from rollout.view import ViewConfig

    source = StoreNavSource(store, ViewConfig(image_size=args.image_size, frame_cache_mb=args.frame_cache_mb))
    encode = encoder.encode if encoder is not None else (lambda sample: sample)
    collate = encoder.collate if encoder is not None else collate_samples
    keys = source.draw(np.random.default_rng(1), args.batch_size * (args.batches + 2))
    for key in keys[: 2 * args.batch_size]:  # warm up (headers, memoised prompt pieces)
        encode(source.load(key))
    keys = keys[2 * args.batch_size :]
    start = time.process_time()
    samples = [source.load(key) for key in keys]
    loaded = time.process_time()
    items = [encode(sample) for sample in samples]
    encoded = time.process_time()
    for first in range(0, len(items), args.batch_size):
        collate(items[first : first + args.batch_size])
    collated = time.process_time()
    per_sample = 1e3 / len(keys)
    split = {"load": (loaded - start) * per_sample, "encode": (encoded - loaded) * per_sample,
             "collate": (collated - encoded) * per_sample}
    split = {name: round(value, 3) for name, value in split.items()}
    split["total"] = round(sum(split.values()), 3)
    return split


def _encoder(image_size: int):
    from agent.processor import ProcessorSettings, SlowFastProcessor
    from agent.tokenizer import build_local_tokenizer

    return SlowFastProcessor(build_local_tokenizer(), ProcessorSettings(image_size=image_size))


def _synthetic_store(root: Path, args: argparse.Namespace) -> EpisodeStore:
    import numpy as np

    from rollout.store import EpisodeStore, StoreConfig

    store = EpisodeStore(root / "store", StoreConfig(fsync=False))
    rng = np.random.default_rng(0)
    for index in range(args.episodes):
        store.add(_synthetic_episode(rng, index, args.steps, args.frame_size))
    return store


def _synthetic_episode(rng: np.random.Generator, index: int, steps: int, size: int) -> Trajectory:
    """Flat-shaded walls / floor / furniture boxes drifting across the view, like rendered frames."""
    import numpy as np

    from rollout.records import Trajectory

    rows = np.arange(size, dtype=np.float32)[:, None, None]
    wall, floor = rng.integers(60, 230, 3), rng.integers(40, 200, 3)
    base = np.where(rows < size * 0.55, wall, floor * (0.6 + 0.4 * rows / size)).astype(np.float32)
    base = np.broadcast_to(base, (size, size, 3))
    rgb = np.empty((steps, size, size, 3), dtype=np.uint8)
    boxes = rng.integers(0, size, (4, 2)), rng.integers(20, 80, (4, 2)), rng.integers(0, 255, (4, 3))
    for step in range(steps):
        frame = base.copy()
        for (x, y), (w, h), colour in zip(*boxes):
            x0 = (x + 3 * step) % size
            frame[y : y + h, x0 : x0 + w] = colour
        rgb[step] = frame.astype(np.uint8)
    labels = rng.choice([1, 1, 1, 2, 3], size=steps).astype(np.int8)
    labels[-1] = 0
    depth = np.broadcast_to(np.linspace(0.1, 0.6, size, dtype=np.float32)[:, None, None], (size, size, 1))
    return Trajectory(
        episode={"episode_id": f"synthetic_{index}", "scene_id": "synthetic"},
        instructions=("walk past the sofa into the kitchen and stop next to the red fridge",),
        rgb=rgb, label_actions=labels, depth=np.ascontiguousarray(np.broadcast_to(depth, (steps, size, size, 1))),
        poses=np.zeros((steps, 7), np.float32),
    )
