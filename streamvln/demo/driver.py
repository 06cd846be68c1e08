"""Drive VLN episodes of the embedded simulator through the agent server (used by `client` and `demo`).

The loop: reset the task and the server session with the instruction, send the frame (+ depth and
pose), execute the returned actions one env step each, repeat until the task ends, then report the
episode's VLN-CE metrics. Observers see every step (the demo's live page is one).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from agent.serving.client import AgentClient, ServingError
from envs.actions import Action
from envs.episodes.io import Episode, GroundTruth
from envs.task import StepOutcome, VLNTask


@dataclass
class CallRecord:
    """One model call seen from the client."""

    step: int  # env step at which the frame was sent
    actions: list[int]
    round_trip_ms: float  # send -> reply on the client, JPEG encoding included
    timings_ms: dict[str, float]  # the server's: decode, queue, model, server (+ engine details)
    notes: list[str]


@dataclass
class EpisodeRun:
    episode_id: str
    instruction: str
    calls: list[CallRecord] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    empty_replies: int = 0  # replies without actions (STOP is sent in their place)


@dataclass
class StepView:
    """What an observer gets after every env step (and once right after reset, with outcome None)."""

    run: EpisodeRun
    episode: Episode
    observations: dict
    positions: np.ndarray  # (N, 3) agent positions so far
    outcome: StepOutcome | None
    call: CallRecord | None  # the call whose action was just executed


StepObserver = Callable[[StepView], None]


def drive_episode(client: AgentClient, task: VLNTask, episode: Episode, gt: GroundTruth | None = None,
                  session: str = "episode", jpeg: bool = True, send_depth: bool = True,
                  observer: StepObserver | None = None) -> EpisodeRun:
    """Run one episode to its end through the server; returns calls and metrics."""
    observations = task.reset(episode, gt)
    run = EpisodeRun(episode_id=str(episode.episode_id), instruction=observations["instruction"])
    client.reset(session, run.instruction)
    if observer:
        observer(StepView(run, episode, observations, task.agent_positions, None, None))
    outcome = None
    try:
        while not task.done:
            call = _call(client, session, observations, task.steps, jpeg, send_depth)
            run.calls.append(call)
            if not call.actions:
                run.empty_replies += 1
            for action in call.actions or [int(Action.STOP)]:
                outcome = task.step(action)
                observations = outcome.observations
                if observer:
                    observer(StepView(run, episode, observations, task.agent_positions, outcome, call))
                if outcome.done:
                    break
    finally:
        # Best effort (the session may be gone already); never hide the episode's own error.
        with contextlib.suppress(ServingError):
            client.close_session(session)
    if outcome is not None and outcome.metrics is not None:
        run.metrics = outcome.metrics.as_dict()
    return run


def _call(client: AgentClient, session: str, observations: dict, step: int, jpeg: bool, send_depth: bool) -> CallRecord:
    start = time.perf_counter()
    reply = client.act(session, observations["rgb"], depth=observations["depth"] if send_depth else None,
                       pose=observations["pose"], jpeg=jpeg)
    round_trip_ms = (time.perf_counter() - start) * 1000.0
    return CallRecord(step=step, actions=[int(a) for a in reply.actions], round_trip_ms=round_trip_ms,
                      timings_ms=dict(reply.timings_ms), notes=list(reply.notes))


def call_latency_summary(runs: list[EpisodeRun]) -> dict[str, float]:
    """Median / p90 / max round trip and model time over every call of the runs."""
    round_trips = [c.round_trip_ms for r in runs for c in r.calls]
    model = [c.timings_ms.get("model", 0.0) for r in runs for c in r.calls]
    if not round_trips:
        return {}
    return {
        "calls": len(round_trips),
        "round_trip_ms_median": float(np.median(round_trips)),
        "round_trip_ms_p90": float(np.percentile(round_trips, 90)),
        "round_trip_ms_max": float(np.max(round_trips)),
        "model_ms_median": float(np.median(model)),
    }


def load_episodes(data_dir: str | None, split: str, count: int, seed: int = 0) -> tuple[list[Episode], dict[str, GroundTruth]]:
    """`count` episodes of `split`: from `data_dir` when given (R2R-CE files), else generated procedurally."""
    if count < 1:
        raise ValueError(f"--episodes must be >= 1, got {count}")
    if data_dir is not None:
        from envs.episodes.io import load_split

        episodes, gt = load_split(data_dir, split)
        if not episodes:
            raise ValueError(f"split {split!r} in {data_dir} holds no episodes")
        return episodes[:count], gt
    from envs.episodes.generator import generate_split

    return generate_split(split, count, seed=seed)
