"""torch.profiler helpers shared by `streamvln bench learner --profile-dir` and the profile scripts.

`profiled` runs a callable under the profiler (CPU, plus CUDA when `cuda`), synchronising before the
clock starts and after the last call, so the wall time covers the device work too. `device_busy_ms`
is the time in which at least one device kernel runs (the union over streams: overlapped communication
and compute count once); wall time minus it is time the GPU waits for the host. `host_sync_counts`
finds the ops after which the host has waited for the device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

# Ops after which the host has waited for the device (`.item()`, `bool(tensor)`, explicit syncs).
HOST_SYNC_OPS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
                 "cudaEventSynchronize")


def profiled(call: Callable[[], Any], repeats: int, cuda: bool) -> tuple[profile, float]:
    """(the profiler, wall milliseconds of all repeats) of `call` run `repeats` times."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync()
    with profile(activities=activities) as prof:
        started = time.perf_counter()
        for _ in range(repeats):
            call()
        sync()
        wall_ms = (time.perf_counter() - started) * 1e3
    return prof, wall_ms


def device_busy_ms(events) -> float:
    """Milliseconds in which at least one device kernel runs (union of intervals over all streams)."""
    spans = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA)
    total, end = 0.0, float("-inf")
    for start, stop in spans:
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total / 1e3


def host_sync_counts(events) -> dict[str, tuple[int, float]]:
    """(calls, host milliseconds) of each op in HOST_SYNC_OPS."""
    counts: dict[str, tuple[int, float]] = {}
    for event in events:
        if event.name in HOST_SYNC_OPS:
            calls, ms = counts.get(event.name, (0, 0.0))
            counts[event.name] = (calls + 1, ms + event.cpu_time_total / 1e3)
    return counts
