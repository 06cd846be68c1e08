"""DAgger actor: labels are the expert's, execution mixes by beta, interventions, batching per step."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from envs.actions import Action
from envs.plane_backend import PlaneBackend, PlaneConfig, plane_episodes
from envs.task import TaskConfig, VLNTask
from rollout.actors import DaggerActor, DaggerConfig, episode_cycle


class FakeAgent:
    """Always proposes the same action; records how many sessions each batched call carried."""

    def __init__(self, action: int):
        self.action = action
        self.batch_sizes: list[int] = []

    def open(self, instruction: str, name: str | None = None):
        return SimpleNamespace(name=name, instruction=instruction)

    def act_batch(self, sessions, observations):
        assert all(obs.rgb.dtype == np.uint8 for obs in observations)
        self.batch_sizes.append(len(sessions))
        return [SimpleNamespace(actions=[self.action] * 4) for _ in sessions]


def tasks(count: int, max_steps: int = 500) -> list[VLNTask]:
    return [VLNTask(PlaneBackend(PlaneConfig(width=8, height=8)), TaskConfig(max_steps=max_steps))
            for _ in range(count)]


def collect(actor: DaggerActor, episodes) -> list:
    out = []
    actor.run(episodes, out.append)
    return out


def test_beta_one_is_pure_expert_without_model_calls():
    actor = DaggerActor(tasks(2), agent=None, config=DaggerConfig(iteration=0))
    trajectories = collect(actor, plane_episodes(3))
    assert len(trajectories) == 3
    for trajectory in trajectories:
        trajectory.validate()
        np.testing.assert_array_equal(trajectory.executed_actions, trajectory.label_actions)
        assert trajectory.source == "expert" and trajectory.label_actions[-1] == Action.STOP
        assert trajectory.metrics["SR"] == 1.0
    assert actor.stats.model_calls == 0


def test_beta_below_one_needs_an_agent():
    with pytest.raises(ValueError, match="needs an agent"):
        DaggerActor(tasks(1), agent=None, config=DaggerConfig(p=0.5, iteration=1))
    with pytest.raises(ValueError, match="p must be in"):
        DaggerConfig(p=1.5).validate()


def test_divergent_policy_is_recorded_with_expert_labels_and_interventions():
    agent = FakeAgent(int(Action.TURN_LEFT))
    config = DaggerConfig(p=0.0, iteration=1, intervene_after=3, intervention_steps=4)  # beta 0
    actor = DaggerActor(tasks(3), agent, config, policy_version=7)
    trajectories = collect(actor, plane_episodes(5))
    assert len(trajectories) == 5
    for trajectory in trajectories:
        trajectory.validate()
        executed, labels = trajectory.executed_actions, trajectory.label_actions
        assert trajectory.source == "dagger" and trajectory.policy_version == 7
        assert (executed == Action.TURN_LEFT).sum() > 0  # the policy drove some steps
        assert (labels == Action.STOP).sum() == 1 and labels[-1] == Action.STOP  # the expert ended it
        assert trajectory.metrics["interventions"] > 0
        assert trajectory.metrics["policy_agreement"] < 0.5
    assert max(agent.batch_sizes) > 1  # several envs share one model call


def test_premature_stop_is_replaced_by_the_expert():
    actor = DaggerActor(tasks(1), FakeAgent(int(Action.STOP)), DaggerConfig(p=0.0, iteration=1))
    (trajectory,) = collect(actor, plane_episodes(1))
    np.testing.assert_array_equal(trajectory.executed_actions, trajectory.label_actions)
    assert actor.stats.interventions == trajectory.num_steps - 1  # every step but the expert's own STOP


def test_policy_stop_within_accept_radius_ends_the_episode_as_its_label():
    """A STOP the benchmark counts as success is kept (label STOP), not replaced by the expert's "go on"."""
    radius = 2.0
    config = DaggerConfig(p=0.0, iteration=1, accept_stop_m=radius)
    accepted = DaggerActor(tasks(1), FakeAgent(int(Action.STOP)), config)
    (trajectory,) = collect(accepted, plane_episodes(1))
    (expert,) = collect(DaggerActor(tasks(1), agent=None), plane_episodes(1))
    trajectory.validate()
    labels, executed = trajectory.label_actions, trajectory.executed_actions
    assert labels[-1] == executed[-1] == Action.STOP and (labels == Action.STOP).sum() == 1
    # The expert drove (premature STOPs replaced) until the agent first came within the radius.
    assert 4.0 - radius <= 0.25 * (trajectory.num_steps - 1) < 4.0 - radius + 0.25
    np.testing.assert_array_equal(labels[:-1], expert.label_actions[: trajectory.num_steps - 1])
    assert trajectory.num_steps < expert.num_steps  # the expert alone walks on to 0.25 m
    assert trajectory.metrics["accepted_stop"] == 1.0 and trajectory.metrics["SR"] == 1.0
    assert radius - 0.25 < trajectory.metrics["NE"] <= radius
    assert accepted.stats.accepted_stops == 1 and expert.metrics["accepted_stop"] == 0.0


class RecordingAgent(FakeAgent):
    """FakeAgent that keeps every observation's `executed` (what the actor told it was executed)."""

    def __init__(self, action: int):
        super().__init__(action)
        self.executed: list = []

    def act_batch(self, sessions, observations):
        self.executed += [obs.executed for obs in observations]
        return super().act_batch(sessions, observations)


@pytest.mark.parametrize("in_context", [False, True])
def test_executed_chunk_is_told_to_the_policy_only_when_it_differs(in_context):
    agent = RecordingAgent(int(Action.TURN_LEFT))
    config = DaggerConfig(p=0.0, iteration=1, intervene_after=3, intervention_steps=4, executed_in_context=in_context)
    (trajectory,) = collect(DaggerActor(tasks(1), agent, config), plane_episodes(1))
    executed = trajectory.executed_actions.tolist()
    chunks = [executed[start:start + 4] for start in range(0, len(executed), 4)]
    # Call k (k >= 1) follows chunk k-1: told what it really was when the expert changed any of it.
    expected = [None] + [None if chunk == [int(Action.TURN_LEFT)] * 4 else chunk for chunk in chunks[:-1]]
    if not in_context:
        expected = [None] * len(expected)
    assert agent.executed == expected[: len(agent.executed)] and len(agent.executed) == len(chunks)
    assert any(e is not None for e in expected) is in_context  # interventions did change chunks


def test_accept_radius_beyond_the_success_distance_is_refused():
    with pytest.raises(ValueError, match="accept_stop_m 3.5 m exceeds the task's success distance 3.0 m"):
        DaggerActor(tasks(1), FakeAgent(0), DaggerConfig(p=0.0, iteration=1, accept_stop_m=3.5))
    with pytest.raises(ValueError, match="accept_stop_m must be a finite distance >= 0"):
        DaggerConfig(accept_stop_m=-1.0).validate()


def test_episode_hitting_the_step_limit_is_discarded():
    actor = DaggerActor(tasks(1, max_steps=10), FakeAgent(int(Action.TURN_LEFT)), DaggerConfig(p=0.0, iteration=1))
    assert collect(actor, plane_episodes(2)) == []
    assert actor.stats.discarded == 2


def test_episode_cycle_visits_every_episode_each_pass():
    episodes = plane_episodes(4)
    cycle = episode_cycle(episodes, seed=1)
    first, second = [next(cycle).episode_id for _ in range(4)], [next(cycle).episode_id for _ in range(4)]
    assert sorted(first) == sorted(second) == [0, 1, 2, 3]


def test_actor_loop_loads_new_weights_and_refuses_stale_ones(caplog):
    from rollout.actor_loop import ActorLoop, ActorLoopConfig
    from rollout.transport import WeightPublisher

    def load_agent(path: str):
        if path == "/broken":
            raise ValueError("no weights there")
        return FakeAgent(int(Action.MOVE_FORWARD))

    publisher = WeightPublisher("tcp://127.0.0.1:0")
    config = ActorLoopConfig(episodes_address="tcp://127.0.0.1:1", weights_address=publisher.address, num_envs=1,
                             dagger_p=0.5, max_policy_lag=1)
    loop = ActorLoop(config, plane_episodes(2), load_agent)

    def announce_until_seen(version: int, path: str) -> None:
        # PUB/SUB drops messages until the subscription has propagated (slow joiner), so repeat the
        # announcement for up to 20 s of wall time, as the learner's heartbeat does.
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            publisher.announce(version, path, "sha")
            time.sleep(0.02)
            loop._poll_weights()
            if loop.newest_seen == version:
                return
        raise AssertionError(f"announcement v{version} never arrived")

    announce_until_seen(1, "/good")
    assert loop.loaded_version == 1 and loop.actor.config.beta == 0.25  # iteration = version + 1
    announce_until_seen(3, "/broken")  # cannot load: still on v1, two versions behind
    assert loop.loaded_version == 1 and "cannot load weights v3" in caplog.text
    loop.stop_requested = lambda: loop.refused >= 1
    assert list(loop._episodes()) == []  # refused to start an episode, then stopped
    assert "refusing to collect" in caplog.text
    loop.sender.close()
    loop.subscriber.close()
    publisher.close()



def _chunks_matching_the_plan(trajectory, task: VLNTask, episode, size: int = 4) -> list[bool]:
    """For each full chunk away from the goal: do its labels equal a fresh expert's open-loop plan from its first frame?"""
    from envs.backend import AgentState
    from envs.policies import make_expert

    expert = make_expert(task.backend, episode.goal_positions)
    labels, poses = trajectory.label_actions, trajectory.poses.astype(np.float64)
    matches = []
    for start in range(0, len(labels) - size, size):
        state = AgentState(poses[start, :3], poses[start, 3:])
        plan = [int(a) for a in expert.plan(state, size)]
        if Action.STOP not in plan:  # near the goal the closed-loop expert labels (and STOPs) instead
            matches.append(plan == [int(a) for a in labels[start:start + size]])
    return matches


def test_chunk_labels_are_the_experts_plan_from_the_chunks_first_frame():
    # The policy always turns left (beta 0, the expert takes over after 2 divergent steps): per-step
    # labels would be the expert's corrections at states the policy's own turns reached; chunk labels
    # are the expert's plan from the frame the model answered from.
    def run(label_chunk: int) -> list[bool]:
        config = DaggerConfig(p=0.0, iteration=1, intervene_after=2, intervention_steps=8, label_chunk=label_chunk)
        (task,), (episode,) = tasks(1), plane_episodes(1)
        (trajectory,) = collect(DaggerActor([task], FakeAgent(int(Action.TURN_LEFT)), config), [episode])
        trajectory.validate()
        assert trajectory.label_actions[-1] == Action.STOP and (trajectory.label_actions == Action.STOP).sum() == 1
        matches = _chunks_matching_the_plan(trajectory, task, episode)
        assert len(matches) >= 2
        return matches

    assert all(run(label_chunk=4))
    assert not all(run(label_chunk=1))  # the per-step labels: some chunk is no plan from its first frame
    with pytest.raises(ValueError, match="label_chunk"):
        DaggerConfig(label_chunk=0).validate()


def test_chunk_mixing_lets_one_driver_execute_each_chunk():
    # Issue 8: beta picks who drives a whole label chunk; a per-step draw mixes the policy's chunk with
    # expert steps (the agent's context then holds an answer that was not executed).
    def mixed_chunks(chunk_mixing: bool) -> tuple[int, int]:
        config = DaggerConfig(p=0.5, iteration=1, seed=3, chunk_mixing=chunk_mixing)
        actor = DaggerActor(tasks(2), FakeAgent(int(Action.TURN_LEFT)), config)
        mixed = total = 0
        for trajectory in collect(actor, plane_episodes(3)):
            executed, labels = trajectory.executed_actions, trajectory.label_actions
            for start in range(0, trajectory.num_steps - 1, 4):  # the last chunk ends with the expert's STOP
                chunk, label = executed[start:start + 4], labels[start:start + 4]
                by_policy, by_label = chunk == Action.TURN_LEFT, chunk == label
                total += 1
                mixed += int(not (by_policy.all() or by_label.all()))
        return mixed, total

    mixed, total = mixed_chunks(True)
    assert total > 10 and mixed <= total // 10  # only at the episode's end (STOP inside a chunk)
    mixed_per_step, _ = mixed_chunks(False)
    assert mixed_per_step > total // 3


def test_real_streaming_policy_accepts_the_executed_chunks():
    """The tiny streaming agent (random weights, chunks of any length, STOPs replaced) as the policy: every
    executed chunk it is told about fits its previous answer, and its context then holds that chunk."""
    from agent.streaming.engine import StreamingEngine

    agent = StreamingEngine.from_preset("tiny", seed=1).agent
    config = DaggerConfig(p=0.0, iteration=1, intervene_after=2, intervention_steps=3, executed_in_context=True)
    actor = DaggerActor(tasks(2, max_steps=40), agent, config)
    told = []
    original = agent.act_batch

    def act_batch(sessions, observations):
        told.extend(obs.executed for obs in observations)
        outputs = original(sessions, observations)
        for session, obs, output in zip(sessions, observations, outputs):
            if obs.executed is not None and not output.window_start:  # a new window drops old answers
                answers = [seg.ids for seg in session.window if seg.visual is None]
                assert agent.prompt.answer_ids(obs.executed) in answers
        return outputs

    agent.act_batch = act_batch
    actor.run(plane_episodes(3), lambda trajectory: None)
    assert actor.stats.model_calls > 0 and any(e is not None for e in told)
