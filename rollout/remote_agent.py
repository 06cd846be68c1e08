"""`RemoteAgent`: the policy of a DaggerActor served by another process (agent/serving AgentServer).

One inference process owns the GPU and batches act requests from many actor processes (the server's
engine thread runs every waiting session's frame in one engine call); each actor runs the embedded
simulator and the DAgger logic and asks for actions over ZMQ. The RemoteAgent has the two methods a
DaggerActor uses (`open`, `act_batch`) plus `release` (close the server's session when an episode
ends, so sessions do not pile up until idle eviction). The act requests of all of this actor's
envs are pipelined (AgentClient.act_many) so they reach the server together.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from agent.serving.client import AgentClient


@dataclass
class RemoteSession:
    session_id: str
    model_version: int | None = None  # the server's weights when the session was opened


@dataclass
class RemoteOutput:
    actions: list[int]
    batch_size: int = 0  # how many requests the server's engine call held
    timings_ms: dict[str, float] = field(default_factory=dict)


class RemoteAgent:
    def __init__(self, client: AgentClient, prefix: str):
        self.client = client
        self.prefix = prefix
        self._ids = itertools.count()
        self.batch_sizes: list[int] = []  # server batch size of every act reply (benchmarks)

    def open(self, instruction: str, name: str | None = None) -> RemoteSession:
        session_id = f"{self.prefix}-{next(self._ids)}"
        reply = self.client.reset(session_id, instruction)
        return RemoteSession(session_id, reply.model_version)

    def act_batch(self, sessions: list[RemoteSession], observations: list) -> list[RemoteOutput]:
        frames = [(session.session_id, obs.rgb, obs.depth, obs.pose, obs.executed)
                  for session, obs in zip(sessions, observations)]
        replies = self.client.act_many(frames)
        outputs = [RemoteOutput(list(reply.actions), int(reply.extra.get("batch_size", 0)), reply.timings_ms)
                   for reply in replies]
        self.batch_sizes += [output.batch_size for output in outputs]
        return outputs

    def release(self, session: RemoteSession) -> None:
        self.client.close_session(session.session_id)
