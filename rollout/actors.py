"""DAgger actors: N VLN tasks stepped in lockstep by one process, one batched agent call per step.

At every step the geodesic expert's action is the LABEL. The EXECUTED action is the expert's with
probability beta = p ** iteration (VLN-CE DAgger; beta 1 = pure expert collection, the model is never
called), otherwise the policy's next action. Interventions (the original StreamVLN does the same):
- the policy's STOP away from the goal is replaced by the expert's action (a trajectory must end
  with its only STOP label, so an episode ends when the expert says STOP);
- except (`accept_stop_m` > 0, off by default) a policy STOP within that geodesic distance of the
  goal: it ends the episode and is recorded as the label. Why: the expert stops at 0.25 m while the
  benchmark counts a STOP within 3 m as success, so replacing such a STOP labels "go on" exactly
  where the policy judged it had arrived. A margin under the success distance keeps an accepted
  STOP a clear success. (Measured on the benchmark it did not help: README, issue 8 rows.)
- after `intervene_after` consecutive steps where the executed policy action differs from the label,
  the expert drives for `intervention_steps` steps.
Chunk labels (`label_chunk`, default 4 = the agent's actions per model call): the labels of steps
t..t+3 (t a multiple of the chunk) are the expert's open-loop plan from the frame at t, the frame the
model answers from. Per-step labels would make a chunk's later labels the expert's corrections at
states the policy's own earlier actions reached: an answer no model can give from frame t (issue 7:
with them DAgger lowered the expert agreement from 0.62 to 0.41). Where the plan runs out (STOP in
the plan away from the goal) the per-step expert label is used; only a real STOP ends an episode.
Chunk mixing (`chunk_mixing`, default on, issue 8): beta picks who drives a whole chunk (drawn at each
chunk start), not each step. The agent answers a chunk per call and keeps its answer in context, and
the sample builder shows executed actions as history (rollout/samples.py): with per-step draws
almost every policy chunk was a mix (at beta 0.56 only 0.44**4 = 4% ran as the policy answered), so
the policy collected from contexts it never sees at inference and nearly every DAgger turn's executed
chunk differed from its label. An expert chunk executes the labels (the plan), a policy chunk the
policy's answer (interventions still apply).
The policy is a StreamingAgent session per env. By default every action it returns is assumed
executed in its context (the agent's KV cache holds its own answer even when the expert overrode a
step), the usual DAgger approximation. With `executed_in_context` the actor tells the agent, at its
next call, the chunk that was really executed, and the agent's context shows that chunk, as the
training samples do: without it, after every expert-driven chunk or intervention the policy acts
from a history its frames contradict, a context it never has at inference. (On 60 CPU episodes it
did not change the collected labels: README, issue 8.) Finished episodes are Trajectories (source
"dagger", the executed actions recorded next to the labels) handed to a callback: the transport
sender or a store.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from envs.actions import Action
from envs.episodes.io import Episode, episode_to_json
from envs.policies import make_expert
from envs.task import TaskConfig, VLNTask
from rollout.records import Trajectory, encode_jpeg

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaggerConfig:
    p: float = 0.75  # beta = p ** iteration
    iteration: int = 0  # 0: pure expert
    intervene_after: int | None = None  # consecutive divergent policy steps before the expert takes over
    intervention_steps: int = 4  # steps the expert then drives
    seed: int = 0
    label_chunk: int = 4  # steps labelled by one open-loop expert plan (1: per-step expert labels)
    chunk_mixing: bool = True  # beta picks the driver per label chunk (False: per step, the old way)
    accept_stop_m: float = 0.0  # a policy STOP this close to the goal (geodesic m) ends the episode (0: never)
    executed_in_context: bool = False  # the policy's context shows the executed chunk, not its own answer

    def validate(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"DaggerConfig.p must be in [0, 1], got {self.p}")
        if self.iteration < 0:
            raise ValueError(f"DaggerConfig.iteration must be >= 0, got {self.iteration}")
        if self.intervene_after is not None and self.intervene_after < 1:
            raise ValueError(f"DaggerConfig.intervene_after must be >= 1 or None, got {self.intervene_after}")
        if self.intervention_steps < 1:
            raise ValueError(f"DaggerConfig.intervention_steps must be >= 1, got {self.intervention_steps}")
        if self.label_chunk < 1:
            raise ValueError(f"DaggerConfig.label_chunk must be >= 1, got {self.label_chunk}")
        if not isinstance(self.chunk_mixing, bool):
            raise ValueError(f"DaggerConfig.chunk_mixing must be true or false, got {self.chunk_mixing!r}")
        if not isinstance(self.executed_in_context, bool):
            raise ValueError(f"DaggerConfig.executed_in_context must be true or false, "
                             f"got {self.executed_in_context!r}")
        if not 0.0 <= self.accept_stop_m < math.inf:
            raise ValueError(f"DaggerConfig.accept_stop_m must be a finite distance >= 0, got {self.accept_stop_m}")

    @property
    def beta(self) -> float:
        return float(self.p ** self.iteration)


@dataclass
class _EnvSlot:
    """One env's episode in progress: the recorded columns and the DAgger bookkeeping."""

    task: VLNTask
    episode: Episode | None = None
    observations: dict | None = None
    expert: object | None = None
    session: object | None = None  # the agent's AgentSession
    agent: object | None = None  # the agent (weights) this episode started with
    policy_version: int = 0
    beta: float = 1.0
    queue: list[int] = field(default_factory=list)  # the policy's remaining chunk
    answered: list[int] = field(default_factory=list)  # the policy's last chunk as it answered it
    answered_at: int = 0  # the step that chunk started at
    plan: list[int] = field(default_factory=list)  # the expert's open-loop labels for the rest of the chunk
    expert_drives: bool = False  # chunk mixing: the expert executes the current chunk
    rgb: list[bytes] = field(default_factory=list)
    depth: list[np.ndarray] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    executed: list[int] = field(default_factory=list)
    divergent: int = 0
    takeover_left: int = 0
    interventions: int = 0
    accepted_stop: bool = False  # the episode ended on the policy's STOP within accept_stop_m
    proposed: int = 0  # steps where the policy proposed an action
    agreed: int = 0  # ... and it equalled the expert's label

    def clear(self) -> None:
        self.episode = self.observations = self.expert = self.session = self.agent = None
        self.queue, self.plan, self.rgb, self.depth, self.poses, self.labels, self.executed = [], [], [], [], [], [], []
        self.answered, self.answered_at = [], 0
        self.divergent = self.takeover_left = self.interventions = self.proposed = self.agreed = 0
        self.expert_drives = self.accepted_stop = False


@dataclass
class ActorStats:
    episodes: int = 0
    steps: int = 0
    policy_steps: int = 0  # steps whose executed action came from the policy
    interventions: int = 0
    accepted_stops: int = 0  # episodes ended by the policy's STOP within accept_stop_m of the goal
    discarded: int = 0  # truncated at the step limit (no STOP label)
    model_calls: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class DaggerActor:
    """Steps `tasks` in lockstep; `agent` is a StreamingAgent (None: expert only, beta must be 1)."""

    def __init__(self, tasks: list[VLNTask], agent=None, config: DaggerConfig | None = None,
                 policy_version: int = 0):
        if not tasks:
            raise ValueError("DaggerActor needs at least one task")
        self.config = config or DaggerConfig()
        self.config.validate()
        _check_accept_stop(self.config, tasks)
        if agent is None and self.config.beta < 1.0:
            raise ValueError(f"DaggerActor: beta {self.config.beta:.3f} < 1 needs an agent (weights)")
        self.slots = [_EnvSlot(task) for task in tasks]
        self.agent = agent
        self.policy_version = policy_version
        self.stats = ActorStats()
        self._rng = np.random.default_rng(self.config.seed)

    def set_policy(self, agent, policy_version: int, config: DaggerConfig) -> None:
        """New weights / iteration; takes effect for episodes started from now on."""
        config.validate()
        _check_accept_stop(config, [slot.task for slot in self.slots])
        self.agent, self.policy_version, self.config = agent, policy_version, config

    # ------------------------------------------------------------------ the loop
    def run(self, episodes: Iterable[Episode], on_trajectory: Callable[[Trajectory], None],
            should_stop: Callable[[], bool] = lambda: False) -> ActorStats:
        """Run every episode (N at a time); each finished one goes to on_trajectory."""
        pending: Iterator[Episode] = iter(episodes)
        for slot in self.slots:
            self._start_next(slot, pending)
        while any(slot.episode is not None for slot in self.slots):
            if should_stop():
                break
            active = [slot for slot in self.slots if slot.episode is not None]
            self._fill_policy_queues(active)
            for slot in active:
                trajectory = self._step(slot)
                if trajectory is not None:
                    on_trajectory(trajectory)
                if slot.episode is None:  # finished or discarded: the next episode
                    self._start_next(slot, pending)
        for slot in self.slots:  # stopped early: episodes in progress are dropped
            self._release(slot)
        return self.stats

    @staticmethod
    def _release(slot: _EnvSlot) -> None:
        """Close the policy session of an agent that holds sessions elsewhere (a RemoteAgent)."""
        release = getattr(slot.agent, "release", None)
        if slot.session is not None and release is not None:
            release(slot.session)
        slot.session = None

    def _start_next(self, slot: _EnvSlot, pending: Iterator[Episode]) -> None:
        self._release(slot)
        slot.clear()
        episode = next(pending, None)
        if episode is None:
            return
        slot.observations = slot.task.reset(episode)
        slot.episode = episode
        slot.expert = make_expert(slot.task.backend, episode.goal_positions)
        slot.expert.reset()
        slot.agent, slot.policy_version, slot.beta = self.agent, self.policy_version, self.config.beta
        if slot.beta < 1.0:
            slot.session = slot.agent.open(episode.instruction.instruction_text, name=f"ep-{episode.episode_id}")

    def _fill_policy_queues(self, active: list[_EnvSlot]) -> None:
        """One batched model call per agent (weights version) for the envs whose chunk is used up."""
        from agent.streaming.session import Observation

        needy = [slot for slot in active if slot.session is not None and not slot.queue]
        by_agent: dict[int, list[_EnvSlot]] = {}
        for slot in needy:
            by_agent.setdefault(id(slot.agent), []).append(slot)
        for group in by_agent.values():
            observations = [Observation(s.observations["rgb"], s.observations.get("depth"),
                                        s.observations.get("pose"), self._executed_chunk(s)) for s in group]
            outputs = group[0].agent.act_batch([s.session for s in group], observations)
            self.stats.model_calls += 1
            for slot, output in zip(group, outputs):
                slot.queue = list(output.actions)
                slot.answered, slot.answered_at = list(output.actions), len(slot.executed)

    def _executed_chunk(self, slot: _EnvSlot) -> list[int] | None:
        """What the env executed of the policy's last chunk, when the agent must be told (it differs)."""
        if not self.config.executed_in_context or not slot.answered:
            return None
        executed = [int(a) for a in slot.executed[slot.answered_at:]]
        return None if executed == slot.answered else executed

    def _step(self, slot: _EnvSlot) -> Trajectory | None:
        """Record the frame, choose and execute one action; a Trajectory when the episode ends."""
        observations = slot.observations
        if observations["rgb"] is None:
            raise ValueError(f"episode {slot.episode.episode_id!r}: the backend returned no rgb (enable rendering)")
        slot.rgb.append(encode_jpeg(observations["rgb"]))
        if observations.get("depth") is not None:
            slot.depth.append(np.asarray(observations["depth"], dtype=np.float32))
        slot.poses.append(observations["pose"])
        label = self._expert_and_label(slot)
        policy_action = slot.queue.pop(0) if slot.queue else None
        if policy_action is not None:
            slot.proposed += 1
            slot.agreed += int(policy_action == label)
        action = self._choose(slot, label, policy_action)
        if action == Action.STOP:  # the expert's STOP, or the policy's accepted one: it is the label
            label = int(Action.STOP)
        slot.labels.append(label)
        slot.executed.append(action)
        self.stats.steps += 1
        outcome = slot.task.step(action)
        slot.observations = outcome.observations
        if outcome.terminated:
            return self._finish(slot, outcome)
        if outcome.truncated:
            log.warning("episode %s: step limit reached without STOP; discarded", slot.episode.episode_id)
            self.stats.discarded += 1
            slot.episode = None
        return None

    def _expert_and_label(self, slot: _EnvSlot) -> int:
        """The label recorded for this step (the expert executes it when it drives): see chunk labels."""
        state = slot.task.backend.get_agent_state()
        if len(slot.labels) % self.config.label_chunk == 0:
            slot.plan = [int(a) for a in slot.expert.plan(state, self.config.label_chunk)]
            slot.expert_drives = self.config.chunk_mixing and self._rng.random() < slot.beta
        expert_action = int(slot.expert.act(state))
        planned = slot.plan.pop(0) if slot.plan else None
        if expert_action == Action.STOP or planned is None or planned == Action.STOP:
            slot.plan = []
            return expert_action
        return planned

    def _expert_drives(self, slot: _EnvSlot) -> bool:
        if self.config.chunk_mixing:
            return slot.expert_drives
        return bool(self._rng.random() < slot.beta)

    def _choose(self, slot: _EnvSlot, label: int, policy_action: int | None) -> int:
        if label == Action.STOP or policy_action is None or slot.takeover_left > 0:
            slot.takeover_left = max(slot.takeover_left - 1, 0)
            return label
        if self._expert_drives(slot):
            return label
        if policy_action == Action.STOP and slot.task.distance_to_goal <= self.config.accept_stop_m:
            slot.accepted_stop = True
            self.stats.accepted_stops += 1
            return int(Action.STOP)
        if policy_action == Action.STOP:  # premature STOP: the expert's action instead
            slot.interventions += 1
            self.stats.interventions += 1
            return label
        slot.divergent = slot.divergent + 1 if policy_action != label else 0
        limit = self.config.intervene_after
        if limit is not None and slot.divergent >= limit:
            slot.divergent, slot.takeover_left = 0, self.config.intervention_steps - 1
            slot.interventions += 1
            self.stats.interventions += 1
            return label
        self.stats.policy_steps += 1
        return int(policy_action)

    def _finish(self, slot: _EnvSlot, outcome) -> Trajectory:
        episode = slot.episode
        depth = np.clip(np.stack(slot.depth), 0.0, 1.0) if len(slot.depth) == len(slot.rgb) else None
        metrics = outcome.metrics.as_dict() if outcome.metrics is not None else {}
        metrics["interventions"] = float(slot.interventions)
        metrics["accepted_stop"] = float(slot.accepted_stop)
        # How well the policy imitates the expert on its own state distribution (the DAgger learning curve).
        metrics["policy_agreement"] = slot.agreed / slot.proposed if slot.proposed else float("nan")
        metrics["executed_not_label"] = float(np.mean(np.asarray(slot.executed) != np.asarray(slot.labels)))
        trajectory = Trajectory(
            episode=episode_to_json(episode),
            instructions=(episode.instruction.instruction_text,),
            rgb=slot.rgb,
            label_actions=np.asarray(slot.labels, dtype=np.int8),
            depth=depth,
            poses=np.stack(slot.poses).astype(np.float32),
            executed_actions=np.asarray(slot.executed, dtype=np.int8),
            policy_version=slot.policy_version,
            metrics=metrics,
            source="dagger" if slot.beta < 1.0 else "expert",
        )
        self.stats.episodes += 1
        slot.episode = None
        return trajectory


def _check_accept_stop(config: DaggerConfig, tasks: list[VLNTask]) -> None:
    """An accepted STOP must be a success: accept_stop_m at most every task's success distance."""
    for task in tasks:
        if config.accept_stop_m > task.config.success_distance:
            raise ValueError(f"DaggerConfig.accept_stop_m {config.accept_stop_m} m exceeds the task's success "
                             f"distance {task.config.success_distance} m: an accepted STOP would be a failure")


def make_tasks(num_envs: int, width: int, height: int, hfov_deg: float = 90.0,
               max_steps: int = TaskConfig.max_steps) -> list[VLNTask]:
    """num_envs VLN tasks over their own embedded backends (each caches its houses)."""
    from envs.embedded import EmbeddedBackend, EmbeddedConfig

    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    return [VLNTask(EmbeddedBackend(EmbeddedConfig(width=width, height=height, hfov_deg=hfov_deg)),
                    TaskConfig(max_steps=max_steps)) for _ in range(num_envs)]


def episode_cycle(episodes: list[Episode], seed: int) -> Iterator[Episode]:
    """Endless shuffled passes over the episodes (a fresh order per pass, seeded)."""
    if not episodes:
        raise ValueError("no episodes to collect from")
    rng = np.random.default_rng(seed)
    while True:
        for index in rng.permutation(len(episodes)):
            yield episodes[int(index)]
