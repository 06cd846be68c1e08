"""Env loop helpers: the streaming agent as an envs policy (one action per env step).

`StreamingPolicy` follows envs.policies.Policy: reset(episode, task) opens a session with the
episode's instruction; act(observations) returns the next action of the current chunk and calls the
model again only when the chunk is used up (a chunk ends at STOP, so STOP ends the episode). Between
env steps of a chunk it lets the agent prefetch the next window (prefix + memory prefill).
`run_episode(agent, task, episode)` runs one episode through envs.evaluation.
"""

from __future__ import annotations

from agent.streaming.agent import StreamingAgent
from agent.streaming.session import ActOutput, AgentSession


class StreamingPolicy:
    name = "streaming"
    uses_sensors = True

    def __init__(self, agent: StreamingAgent, use_depth_pose: bool = True, prefetch: bool = True):
        self.agent = agent
        self.use_depth_pose = use_depth_pose  # pass depth + pose (voxel pruning) when the env has them
        self.prefetch = prefetch  # prepare the next window's prefix + memory while the chunk executes
        self.session: AgentSession | None = None
        self.queue: list[int] = []
        self.calls: list[ActOutput] = []

    def reset(self, episode, task) -> None:
        del task  # the agent sees observations only
        self.session = self.agent.open(episode.instruction.instruction_text, name=str(episode.episode_id))
        self.queue, self.calls = [], []

    def act(self, observations: dict) -> int:
        if self.session is None:
            raise RuntimeError("StreamingPolicy.act before reset(episode, task)")
        if not self.queue:
            depth = observations.get("depth") if self.use_depth_pose else None
            pose = observations.get("pose") if self.use_depth_pose else None
            output = self.agent.act(self.session, observations["rgb"], depth, pose)
            self.calls.append(output)
            self.queue = list(output.actions)
        elif self.prefetch and len(self.queue) == 1:  # the chunk's earlier actions are executing
            self.agent.prefetch(self.session)
        return self.queue.pop(0)


def run_episode(agent: StreamingAgent, task, episode, gt=None):
    """One episode with the streaming agent; returns (envs.evaluation.EpisodeRun, the policy)."""
    from envs.evaluation import run_episode as run_policy_episode

    policy = StreamingPolicy(agent)
    return run_policy_episode(task, policy, episode, gt), policy
