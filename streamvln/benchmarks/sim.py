"""`streamvln bench sim`: RGB-D frames/s of the embedded raycaster on one CPU thread, and house
generation time.

Poses are random free floor cells (at least the agent radius from anything solid) with random yaw,
in a few procedural houses. The first frame per renderer (numba compile or cache load) is excluded.
Reports frames/s by wall clock, by the thread's CPU time, and of the fastest batch of BATCH frames
(the last two are robust to other processes sharing the machine), for render() (fresh output
arrays, what the backend does) and render_into() (reused buffers).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy, numba and envs are imported where used: `streamvln --help` stays fast
    import numpy as np

    from envs.scene.house import House

NAME = "sim"
BATCH = 20  # frames per batch for the best-batch rate (robust to other processes on the machine)
HELP = "RGB-D frames/s of the embedded renderer on one CPU thread (128/256/512 px) and house generation time"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512], help="square resolutions")
    parser.add_argument("--houses", type=int, default=3, help="procedural houses to render in")
    parser.add_argument("--poses", type=int, default=300, help="timed frames per house and size")
    parser.add_argument("--hfov", type=float, default=90.0)
    parser.add_argument("--semantic", action="store_true", help="also render semantic ids")
    parser.add_argument("--generate", type=int, default=20, help="houses timed for generation")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> dict:
    import numba
    import numpy as np

    from envs.scene.generator import generate_house, scene_id_for

    numba.set_num_threads(1)  # the kernels are serial; this pins any numba parallel pool to one thread too
    rng = np.random.default_rng(args.seed)
    houses = [generate_house(scene_id_for(args.seed + i)) for i in range(args.houses)]
    poses = [_random_poses(house, args.poses, rng) for house in houses]
    result = {
        "benchmark": NAME,
        "threads": 1,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "houses": [house.scene_id for house in houses],
        "frames_per_house": args.poses,
        "hfov_deg": args.hfov,
        "semantic": bool(args.semantic),
        "render": {str(size): _measure_size(size, houses, poses, args) for size in args.sizes},
        "generate_house": _measure_generation(args.generate, args.seed + 1000),
    }
    return result


def _random_poses(house: House, count: int, rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    import numpy as np

    from envs.scene.connectivity import erode_disk
    from envs.scene.house import CellKind

    grid = house.grid
    free = (grid.kind == CellKind.FLOOR) | (grid.kind == CellKind.DOOR)
    cells = np.argwhere(erode_disk(free, 2))
    picks = cells[rng.integers(0, len(cells), count)]
    poses = []
    for row, col in picks:
        x, z = grid.center_of(int(row), int(col))
        poses.append((np.array([x, 0.0, z]), float(rng.uniform(-np.pi, np.pi))))
    return poses


def _measure_size(size: int, houses: list[House], poses: list, args: argparse.Namespace) -> dict:
    from envs.render.raycaster import RenderConfig, Renderer

    config = RenderConfig(width=size, height=size, hfov_deg=args.hfov, semantic=args.semantic)
    wall = {"render": 0.0, "render_into": 0.0}
    cpu = dict(wall)
    warmup = []
    frames = 0
    best_batch_s = float("inf")  # fastest BATCH frames of render(): what an idle core does
    for house, house_poses in zip(houses, poses):
        renderer = Renderer(house, config)
        start = time.perf_counter()
        renderer.render(*house_poses[0])  # compile / cache load, excluded
        warmup.append(time.perf_counter() - start)
        out = renderer.allocate()
        for method in ("render", "render_into"):
            wall_start, cpu_start = time.perf_counter(), time.thread_time()
            for position, yaw in house_poses:
                if method == "render":
                    renderer.render(position, yaw)
                else:
                    renderer.render_into(position, yaw, out)
            wall[method] += time.perf_counter() - wall_start
            cpu[method] += time.thread_time() - cpu_start
        for first in range(0, len(house_poses) - BATCH + 1, BATCH):
            batch_start = time.perf_counter()
            for position, yaw in house_poses[first:first + BATCH]:
                renderer.render(position, yaw)
            best_batch_s = min(best_batch_s, time.perf_counter() - batch_start)
        frames += len(house_poses)
    return {
        "fps": round(frames / wall["render"], 1),
        "fps_cpu_time": round(frames / cpu["render"], 1),
        "fps_best_batch": round(BATCH / best_batch_s, 1) if best_batch_s < float("inf") else None,
        "fps_reused_buffers": round(frames / wall["render_into"], 1),
        "fps_reused_buffers_cpu_time": round(frames / cpu["render_into"], 1),
        "ms_per_frame": round(1e3 * wall["render"] / frames, 3),
        "first_frame_s": round(max(warmup), 3),
        "frames": frames,
    }


def _measure_generation(count: int, first_seed: int) -> dict:
    import numpy as np

    from envs.scene.generator import generate_house, scene_id_for

    generate_house(scene_id_for(first_seed))  # numba helpers compile / load once, excluded
    times = []
    for seed in range(first_seed + 1, first_seed + 1 + count):
        start = time.perf_counter()
        generate_house(scene_id_for(seed))
        times.append(time.perf_counter() - start)
    return {"houses": count, "mean_ms": round(1e3 * float(np.mean(times)), 2), "max_ms": round(1e3 * float(np.max(times)), 2)}
