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
