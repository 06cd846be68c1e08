"""DAgger samples keep the dialogue history consistent with what was executed (issue 8).

An assistant turn is the target of the loss and the history of the window's later turns; at inference
that history is the agent's own (executed) answer. A DAgger window therefore ends with its first turn
whose executed chunk differs from the label chunk.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from rollout_fixtures import make_trajectory, step_of

from rollout.samples import SampleConfig, plan_window
from rollout.store import EpisodeStore
from rollout.view import StoreView, ViewConfig

CONFIG = SampleConfig(num_frames=16, num_future_steps=4, num_history=8)


def _dagger_trajectory(num_steps: int = 40, diverge_at: tuple[int, ...] = (9, 30)):
    """Executed == labels except at the given steps (the policy drove somewhere else there)."""
    trajectory = make_trajectory(num_steps, episode_id="dag", source="dagger", policy_version=1)
    executed = trajectory.label_actions.copy()
    for step in diverge_at:
        executed[step] = 2 if executed[step] != 2 else 3
    trajectory.executed_actions = executed
    return trajectory


def test_window_ends_at_first_divergent_turn():
    trajectory = _dagger_trajectory()
    labels, executed = trajectory.label_actions, trajectory.executed_actions
    plan = plan_window(labels, 0, CONFIG, executed)
    assert plan.frame_steps == (0, 4, 8)  # step 9 diverges: the turn at 8 is the window's last
    assert plan.chunks[-1] == tuple(int(a) for a in labels[8:12])  # its target is the label
    plan = plan_window(labels, 16, CONFIG, executed)
    assert plan.frame_steps == (16, 20, 24, 28)  # no divergence in 16..31 (step 30 is in the turn at 28)
    assert plan.chunks[-1] == tuple(int(a) for a in labels[28:32])
    plan = plan_window(labels, 32, CONFIG, executed)
    assert plan.frame_steps == (32, 36)  # the episode's end: unchanged


def test_label_history_kept_for_expert_data_and_when_disabled():
    trajectory = _dagger_trajectory()
    labels = trajectory.label_actions
    assert plan_window(labels, 0, CONFIG).frame_steps == (0, 4, 8, 12)
    legacy = dataclasses.replace(CONFIG, consistent_history=False)
    assert plan_window(labels, 0, legacy, trajectory.executed_actions).frame_steps == (0, 4, 8, 12)


def test_store_samples_show_only_executed_history(tmp_path):
    store = EpisodeStore(tmp_path / "store")
    store.add(_dagger_trajectory())
    store.add(make_trajectory(40, episode_id="exp"))
    view = StoreView(store, ViewConfig(sample=CONFIG))
    view.refresh()
    headers = {h.episode_id: h for h in store.iter_headers()}
    assert headers["exp"].executed_actions is None
    dagger = headers["dag"]
    np.testing.assert_array_equal(dagger.executed_actions, _dagger_trajectory().executed_actions)
    turn_counts = {}
    for ref in view.refs:
        sample = view.load(ref)
        header = headers["dag"] if ref.episode == dagger.name else headers["exp"]
        fast = [step_of(frame) for frame in sample.images[sample.num_memory:]]
        turns = sample.dialogue.turns
        for step, turn in zip(fast, turns):
            assert turn.actions == tuple(int(a) for a in header.label_actions[step : step + len(turn.actions)])
        if header.executed_actions is not None:  # every history turn reads what was executed
            for step, turn in zip(fast[:-1], turns[:-1]):
                assert turn.actions == tuple(int(a) for a in header.executed_actions[step : step + len(turn.actions)])
        turn_counts[(header.episode_id, ref.start)] = len(turns)
    assert turn_counts == {("dag", 0): 3, ("dag", 16): 4, ("dag", 32): 2,
                           ("exp", 0): 4, ("exp", 16): 4, ("exp", 32): 2}


def test_trajectory_round_trip_keeps_executed_actions(tmp_path):
    store = EpisodeStore(tmp_path / "store")
    name = store.add(_dagger_trajectory())
    back = store.read(name)
    np.testing.assert_array_equal(back.executed_actions, _dagger_trajectory().executed_actions)
