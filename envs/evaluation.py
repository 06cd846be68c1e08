"""Run a policy over episodes through the VLN task and collect per-episode and mean metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from envs.episodes.io import Episode, GroundTruth
from envs.metrics import EpisodeMetrics, aggregate
from envs.task import VLNTask


@dataclass
class EpisodeRun:
    episode: Episode
    metrics: EpisodeMetrics
    actions: list[int]
    positions: np.ndarray  # (T+1, 3) agent positions, start first

    def as_dict(self) -> dict:
        return {"episode_id": self.episode.episode_id, "scene_id": self.episode.scene_id,
                **self.metrics.as_dict(), "actions": self.actions}


@dataclass
class EvalResult:
    runs: list[EpisodeRun] = field(default_factory=list)

    @property
    def aggregate(self) -> dict[str, float]:
        return aggregate([run.metrics for run in self.runs])

    def as_dict(self) -> dict:
        return {"num_episodes": len(self.runs), "aggregate": self.aggregate,
                "episodes": [run.as_dict() for run in self.runs]}


def run_episode(task: VLNTask, policy, episode: Episode, gt: GroundTruth | None = None) -> EpisodeRun:
    observations = task.reset(episode, gt)
    policy.reset(episode, task)
    actions: list[int] = []
    while True:
        action = int(policy.act(observations))
        outcome = task.step(action)
        actions.append(action)
        observations = outcome.observations
        if outcome.done:
            assert outcome.metrics is not None
            return EpisodeRun(episode, outcome.metrics, actions, task.agent_positions)


def evaluate(task: VLNTask, policy, episodes: Iterable[Episode], gt: dict[str, GroundTruth] | None = None,
             on_episode: Callable[[EpisodeRun], None] | None = None) -> EvalResult:
    result = EvalResult()
    for episode in episodes:
        run = run_episode(task, policy, episode, (gt or {}).get(episode.key))
        result.runs.append(run)
        if on_episode is not None:
            on_episode(run)
    return result
