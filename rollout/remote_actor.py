"""A DAgger actor whose policy runs in a separate inference process (rollout/remote_agent.py).

Used by `streamvln bench actor --actors N`: N such processes feed one AgentServer that owns the
GPU. Each actor steps `envs` embedded simulators in lockstep, pipelines its envs' act requests, and
counts env steps inside a common wall-clock window: once warm it asks when the window opens (the
benchmark answers after every actor is warm), so the actors' rates add up to the concurrent throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rollout.actors import DaggerActor, DaggerConfig, episode_cycle, make_tasks


@dataclass(frozen=True)
class RemoteActorConfig:
    server: str  # the AgentServer endpoint
    actor_id: str
    data: str  # folder with {split}.json.gz
    split: str = "val_unseen"
    envs: int = 1
    size: int = 112
    iteration: int = 4  # DAgger iteration: beta = p ** iteration
    p: float = 0.75
    warmup_steps: int = 20  # steps before the actor is ready (numba compiled, first model calls done)
    measure_s: float = 20.0
    max_steps: int = 300
    timeout_s: float = 60.0  # a reply later than this is a failure
    seed: int = 0

    def validate(self) -> None:
        if self.envs < 1:
            raise ValueError(f"RemoteActorConfig.envs must be >= 1, got {self.envs}")
        if self.measure_s <= 0:
            raise ValueError(f"RemoteActorConfig.measure_s must be > 0, got {self.measure_s}")


class _Window:
    """should_stop for DaggerActor.run: after `warmup_steps` steps (numba compiled, sessions open) it
    asks `start_at()` when the window opens (blocking, e.g. until every actor is ready), notes the step
    count when it opens and stops the run when it closes."""

    def __init__(self, stats, start_at: Callable[[], float], measure_s: float, warmup_steps: int):
        self.stats, self.start_at, self.measure_s, self.warmup_steps = stats, start_at, measure_s, warmup_steps
        self.begin: float | None = None
        self.opened: tuple[float, int] | None = None
        self.closed: tuple[float, int] | None = None

    def __call__(self) -> bool:
        if self.begin is None:
            if self.stats.steps < self.warmup_steps:
                return False
            self.begin = self.start_at()
        now = time.time()
        if self.opened is None and now >= self.begin:
            self.opened = (now, self.stats.steps)
        if self.opened is not None and now >= self.begin + self.measure_s:
            self.closed = (now, self.stats.steps)
            return True
        return False


def run_remote_actor(config: RemoteActorConfig, start_at: Callable[[], float] | None = None) -> dict:
    """Run until the measured window closes; `start_at()` (default: now) is asked once warm."""
    from agent.serving.client import AgentClient
    from envs.episodes.io import load_split
    from rollout.remote_agent import RemoteAgent

    config.validate()
    episodes, _ = load_split(config.data, config.split)
    client = AgentClient(config.server, timeout_s=config.timeout_s, identity=config.actor_id.encode())
    agent = RemoteAgent(client, config.actor_id)
    dagger = DaggerConfig(config.p, config.iteration, intervene_after=6, seed=config.seed)
    actor = DaggerActor(make_tasks(config.envs, config.size, config.size, max_steps=config.max_steps), agent, dagger)
    window = _Window(actor.stats, start_at or time.time, config.measure_s, config.warmup_steps)
    try:
        stats = actor.run(episode_cycle(episodes, config.seed), lambda _trajectory: None, should_stop=window)
    finally:
        client.close()
    if window.opened is None or window.closed is None:
        raise RuntimeError(f"actor {config.actor_id}: stopped before the measured window closed")
    seconds = window.closed[0] - window.opened[0]
    steps = window.closed[1] - window.opened[1]
    return {"actor": config.actor_id, "envs": config.envs, "steps": steps, "seconds": seconds,
            "steps_per_s": steps / max(seconds, 1e-9), "episodes": stats.episodes, "model_calls": stats.model_calls,
            "mean_reply_batch": sum(agent.batch_sizes) / max(len(agent.batch_sizes), 1)}
