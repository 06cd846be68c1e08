"""`generate_split` over several processes, with the serial result exactly (same episodes, ids, gt).

Houses are independent: a house's episodes come from its own rng (seed, split, house) and their ids
only number them. Worker processes generate whole houses (episodes_per_house each) in house order,
ahead of need; this process takes them in order and renumbers the ids. A house that must give fewer
episodes than a whole house (the split's last one) is generated here with that exact count, as the
serial loop does (its attempt budget depends on the count). Generation is geometry and expert
rollouts on the CPU: a 4,000-episode split takes minutes on one core.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace

from envs.episodes.generator import GeneratorConfig, house_episodes, house_seeds_for, make_generation_backend
from envs.episodes.io import Episode, GroundTruth

_WORKER: dict = {}  # the worker process's own generation backend (set by _init_worker)


def _init_worker() -> None:
    _WORKER["backend"] = make_generation_backend()


def _worker_house(seed: int, split: str, house_seed: int, config: GeneratorConfig):
    """A whole house, ids from 1 (the caller renumbers them)."""
    return house_episodes(_WORKER["backend"], seed, split, house_seed, config.episodes_per_house, config)


def generate_split_parallel(split: str, num_episodes: int, seed: int, config: GeneratorConfig, workers: int,
                            on_house=None) -> tuple[list[Episode], dict[str, GroundTruth]]:
    """generate_split's result with `workers` processes (spawned: never fork a process holding threads)."""
    seeds = iter(house_seeds_for(split))
    episodes: list[Episode] = []
    gt: dict[str, GroundTruth] = {}
    local_backend = None
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        ahead: deque[tuple[int, Future]] = deque()

        def submit(count: int) -> None:
            for house_seed in seeds:
                ahead.append((house_seed, pool.submit(_worker_house, seed, split, house_seed, config)))
                count -= 1
                if count == 0:
                    return

        submit(2 * workers)
        while ahead and len(episodes) < num_episodes:
            house_seed, future = ahead.popleft()
            needed = num_episodes - len(episodes)
            if needed >= config.episodes_per_house:
                made = future.result()
            else:  # the serial loop's exact count (and attempt budget) for a partial house
                future.cancel()
                local_backend = local_backend or make_generation_backend()
                made = house_episodes(local_backend, seed, split, house_seed, needed, config)
            for episode, truth in made:
                number = len(episodes) + 1
                episode = replace(episode, episode_id=number, trajectory_id=number)
                episodes.append(episode)
                gt[episode.key] = truth
            if on_house is not None:
                on_house(f"procedural/house_{house_seed:06d}", len(episodes))
            submit(1)
        for _, future in ahead:
            future.cancel()
    if local_backend is not None:
        local_backend.close()
    return episodes, gt
