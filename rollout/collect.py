"""Fill an episode store from the simulator with the geodesic expert.

For each episode: reset the task, then at every frame record rgb, depth and pose, ask the expert for
its action (the label) and execute it, until the expert calls STOP. The frame after STOP is not a
decision point and is not recorded, so the last label is STOP (DESIGN.md 3.4). An episode the
expert cannot finish within the step limit is skipped with a warning (it would have no STOP label).
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from envs.actions import Action
from envs.episodes.io import Episode, episode_to_json
from envs.policies import make_expert
from envs.task import VLNTask
from rollout.records import Trajectory, encode_jpeg
from rollout.store import EpisodeStore

log = logging.getLogger(__name__)

_WORKER: dict = {}  # a collect worker process's own task (set by _init_worker)


@dataclass(frozen=True)
class CollectConfig:
    policy: str = "expert"  # the only policy recorded here; DAgger actors use the agent's policy
    policy_version: int = 0
    max_episodes: int | None = None
    workers: int = 1  # processes rendering episodes (collect_expert_parallel); the store is the same

    def validate(self) -> None:
        if self.policy != "expert":
            raise ValueError(f"CollectConfig.policy must be 'expert' (got {self.policy!r}); DAgger runs use actors")
        if self.policy_version < 0:
            raise ValueError(f"CollectConfig.policy_version must be >= 0, got {self.policy_version}")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise ValueError(f"CollectConfig.max_episodes must be >= 1 or None, got {self.max_episodes}")
        if self.workers < 1:
            raise ValueError(f"CollectConfig.workers must be >= 1, got {self.workers}")


def record_expert_episode(task: VLNTask, episode: Episode, policy_version: int = 0) -> Trajectory | None:
    """One expert trajectory (None if the expert hit the step limit without STOP)."""
    observations = task.reset(episode)
    expert = make_expert(task.backend, episode.goal_positions)
    expert.reset()
    rgb: list[bytes] = []
    depth: list[np.ndarray] = []
    poses: list[np.ndarray] = []
    labels: list[int] = []
    while True:
        if observations["rgb"] is None:
            raise ValueError(f"episode {episode.episode_id!r}: the backend returned no rgb (enable rendering)")
        rgb.append(encode_jpeg(observations["rgb"]))  # compress as we go: a long episode stays small
        if observations["depth"] is not None:
            depth.append(np.asarray(observations["depth"], dtype=np.float32))
        poses.append(observations["pose"])
        action = int(expert.act(task.backend.get_agent_state()))
        labels.append(action)
        outcome = task.step(action)
        if outcome.terminated:
            break
        if outcome.truncated:
            log.warning("episode %s: the expert reached the step limit without STOP; skipped", episode.episode_id)
            return None
        observations = outcome.observations
    assert labels[-1] == Action.STOP
    return Trajectory(
        episode=episode_to_json(episode),
        instructions=(episode.instruction.instruction_text,),
        rgb=rgb,
        label_actions=np.asarray(labels, dtype=np.int8),
        depth=np.clip(np.stack(depth), 0.0, 1.0) if len(depth) == len(rgb) else None,
        poses=np.stack(poses).astype(np.float32),
        policy_version=policy_version,
        metrics=outcome.metrics.as_dict() if outcome.metrics is not None else {},
        source="expert",
    )


def collect_expert(
    task: VLNTask,
    episodes: Iterable[Episode],
    store: EpisodeStore,
    config: CollectConfig | None = None,
    on_episode: Callable[[int, Trajectory], None] | None = None,
) -> list[str]:
    """Record expert trajectories of `episodes` into `store`; returns the committed file names."""
    config = config or CollectConfig()
    config.validate()
    recorded = (record_expert_episode(task, episode, config.policy_version) for episode in episodes)
    return _store_in_order(recorded, store, config, on_episode)


def _store_in_order(trajectories: Iterable[Trajectory | None], store: EpisodeStore, config: CollectConfig,
                    on_episode: Callable[[int, Trajectory], None] | None) -> list[str]:
    """Add the recorded trajectories (None: skipped) to the store until config.max_episodes."""
    names: list[str] = []
    for trajectory in trajectories:
        if trajectory is None:
            continue
        names.append(store.add(trajectory))
        if on_episode is not None:
            on_episode(len(names), trajectory)
        if config.max_episodes is not None and len(names) >= config.max_episodes:
            break  # pulls no further episode: a lazy source records nothing more
    return names


def _init_worker(width: int, height: int, hfov_deg: float) -> None:
    from rollout.actors import make_tasks

    _WORKER["task"] = make_tasks(1, width, height, hfov_deg)[0]


def _record_in_worker(episode: Episode, policy_version: int) -> Trajectory | None:
    return record_expert_episode(_WORKER["task"], episode, policy_version)


def collect_expert_parallel(
    episodes: list[Episode],
    store: EpisodeStore,
    sensors: tuple[int, int, float],
    config: CollectConfig | None = None,
    on_episode: Callable[[int, Trajectory], None] | None = None,
) -> list[str]:
    """collect_expert with config.workers spawned processes rendering the episodes (sensors: width, height,
    hfov_deg of their tasks; 1 worker: one task in this process). Trajectories come back in episode
    order and only this process writes the store, so it holds what a serial collect writes, in order."""
    config = config or CollectConfig()
    config.validate()
    if config.workers == 1:
        from rollout.actors import make_tasks

        task = make_tasks(1, *sensors)[0]
        try:
            return collect_expert(task, episodes, store, config, on_episode)
        finally:
            task.close()
    context = multiprocessing.get_context("spawn")  # never fork a process that holds threads
    with ProcessPoolExecutor(config.workers, mp_context=context, initializer=_init_worker, initargs=sensors) as pool:
        versions = [config.policy_version] * len(episodes)
        recorded = pool.map(_record_in_worker, episodes, versions, chunksize=4)  # in episode order
        names = _store_in_order(recorded, store, config, on_episode)
        pool.shutdown(cancel_futures=True)  # max_episodes reached: drop the episodes not started
    return names
