"""`streamvln bench nav`: geodesic field build time, point-query rate and expert step rate.

Field time is measured on a synthetic 20 x 20 m house (400 x 400 cells at 5 cm, a 5 x 5 grid of
4 m rooms joined by doorways: the largest house the generator makes, fully floored) and on
generated houses. Single thread, after a warm-up build (numba compilation excluded).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and envs (numba, scikit-fmm) are imported where used: `streamvln --help` stays fast
    import numpy as np

    from envs.nav.geodesic import GeodesicField
    from envs.nav.occupancy import NavGrid
    from envs.scene.house import LayoutGrid

NAME = "nav"
HELP = "geodesic field ms on a 20x20 m house, queries/s, expert actions/s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fields", type=int, default=20, help="goal fields built per house")
    parser.add_argument("--houses", type=int, default=4, help="generated houses to measure as well (0: none)")
    parser.add_argument("--order", type=int, default=2, choices=(1, 2), help="fast-marching order")
    parser.add_argument("--cell-size", type=float, default=None,
                        help="geodesic solve grid in metres, a multiple of the 5 cm navmesh (default: the navmesh)")
    parser.add_argument("--seed", type=int, default=0)


def synthetic_house_grid(size_m: float = 20.0, room_m: float = 4.0, door_m: float = 1.0) -> LayoutGrid:
    """A size_m square of room_m rooms with 10 cm walls and a door_m doorway in the middle of each wall."""
    import numpy as np

    from envs.scene.house import CELL_SIZE_M, CellKind, LayoutGrid

    n, room, door, wall = (int(round(v / CELL_SIZE_M)) for v in (size_m, room_m, door_m, 0.1))
    kind = np.full((n, n), CellKind.FLOOR, dtype=np.uint8)
    for line in range(0, n + 1, room):
        kind[max(line - wall // 2, 0) : line + wall // 2, :] = CellKind.WALL
        kind[:, max(line - wall // 2, 0) : line + wall // 2] = CellKind.WALL
    for line in range(room, n, room):
        for start in range(0, n, room):
            mid = start + (room - door) // 2
            kind[line - wall // 2 : line + wall // 2, mid : mid + door] = CellKind.DOOR
            kind[mid : mid + door, line - wall // 2 : line + wall // 2] = CellKind.DOOR
    shape = kind.shape
    return LayoutGrid(0.0, 0.0, CELL_SIZE_M, kind, np.zeros(shape, np.int16), np.full(shape, -1, np.int16),
                      np.zeros(shape, np.float32))


def _field_times_ms(grid: NavGrid, rng: np.random.Generator, count: int, order: int,
                    cell_size: float | None) -> tuple[list, list]:
    """Wall-clock and CPU milliseconds per field (CPU time is steadier on a shared machine)."""
    from envs.nav.geodesic import GeodesicField

    GeodesicField(grid, grid.sample_navigable_point(rng), order, cell_size)  # warm-up (numba, allocator)
    wall, cpu = [], []
    for _ in range(count):
        goal = grid.sample_navigable_point(rng)
        start, start_cpu = time.perf_counter(), time.process_time()
        GeodesicField(grid, goal, order, cell_size)
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return wall, cpu


def _query_rate(field: GeodesicField, rng: np.random.Generator, count: int = 20000) -> float:
    points = [field.grid.sample_navigable_point(rng) for _ in range(count)]
    start = time.perf_counter()
    for point in points:
        field.distance(point)
    return count / (time.perf_counter() - start)


def _expert_rate(grid: NavGrid, rng: np.random.Generator, order: int, cell_size: float | None,
                 episodes: int = 10) -> float:
    """Expert actions per second (field cached per goal; includes the 24-heading scoring)."""
    import numpy as np

    from envs.backend import AgentState
    from envs.geometry import forward_vector, quat_from_yaw
    from envs.nav.expert import GeodesicExpert
    from envs.nav.geodesic import GeodesicField
    from envs.nav.motion import move_with_sliding

    actions, elapsed = 0, 0.0
    for _ in range(episodes):
        field = GeodesicField(grid, grid.sample_navigable_point(rng), order, cell_size)
        expert = GeodesicExpert(field.distance, lambda p, yaw: move_with_sliding(grid, p, 0.25 * forward_vector(yaw))[0])
        position, yaw = grid.sample_navigable_point(rng), 0.0
        start = time.perf_counter()
        for _ in range(500):
            action = int(expert.act(AgentState(position, quat_from_yaw(yaw))))
            actions += 1
            if action == 0:
                break
            if action == 1:
                position = move_with_sliding(grid, position, 0.25 * forward_vector(yaw))[0]
            else:
                yaw += np.radians(15.0) * (1 if action == 2 else -1)
        elapsed += time.perf_counter() - start
    return actions / elapsed


def _summary(wall: list[float], cpu: list[float]) -> dict:
    import numpy as np

    return {"median_ms": round(float(np.median(wall)), 2), "p90_ms": round(float(np.percentile(wall, 90)), 2),
            "min_ms": round(float(np.min(wall)), 2), "cpu_median_ms": round(float(np.median(cpu)), 2)}


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    from envs.nav.geodesic import GeodesicField
    from envs.nav.occupancy import NavGrid
    from envs.scene.generator import generate_house

    rng = np.random.default_rng(args.seed)
    grid = NavGrid.from_layout(synthetic_house_grid())
    result = {
        "order": args.order,
        "field_cell_size_m": args.cell_size or grid.cell_size,
        "synthetic_20x20m": {"cells": list(grid.shape), "navigable_fraction": round(float(grid.navigable.mean()), 3),
                             **_summary(*_field_times_ms(grid, rng, args.fields, args.order, args.cell_size))},
    }
    field = GeodesicField(grid, grid.sample_navigable_point(rng), args.order, args.cell_size)
    result["queries_per_s"] = round(_query_rate(field, rng))
    result["expert_actions_per_s"] = round(_expert_rate(grid, rng, args.order, args.cell_size))
    if args.houses > 0:
        wall, cpu, shapes = [], [], []
        for index in range(args.houses):
            house_grid = NavGrid.from_layout(generate_house(f"procedural/house_{index:06d}").grid)
            shapes.append(list(house_grid.shape))
            house_wall, house_cpu = _field_times_ms(house_grid, rng, max(args.fields // 2, 1), args.order, args.cell_size)
            wall, cpu = wall + house_wall, cpu + house_cpu
        result["generated_houses"] = {"shapes": shapes, **_summary(wall, cpu)}
    return result
