"""DAgger samples keep the dialogue history consistent with what was executed (issue 8).

An assistant turn is the target of the loss and the history of the window's later turns; at inference
that history is the agent's own (executed) answer. A DAgger sample therefore ends with a turn whose
executed chunk differs from the label chunk; the window's later turns are trained by further samples
(segments) that show the earlier turns as executed, untrained history.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from rollout_fixtures import make_trajectory, step_of

from agent.config import IGNORE_INDEX, SlowFastConfig
from agent.processor import SlowFastProcessor
from envs.actions import Action
from rollout.samples import SampleConfig, build_nav_sample, plan_window, window_segments, window_starts
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
        for step, turn in zip(fast, turns):  # targets are labels, history-only turns what was executed
            source = header.label_actions if turn.trained else header.executed_actions
            assert turn.actions == tuple(int(a) for a in source[step : step + len(turn.actions)])
        if header.executed_actions is not None:  # every history turn reads what was executed
            for step, turn in zip(fast[:-1], turns[:-1]):
                assert turn.actions == tuple(int(a) for a in header.executed_actions[step : step + len(turn.actions)])
        turn_counts[(header.episode_id, ref.start, ref.segment)] = [turn.trained for turn in turns]
    assert turn_counts == {("dag", 0, 0): [True] * 3, ("dag", 0, 1): [False] * 3 + [True],
                           ("dag", 16, 0): [True] * 4, ("dag", 32, 0): [True] * 2,
                           ("exp", 0, 0): [True] * 4, ("exp", 16, 0): [True] * 4, ("exp", 32, 0): [True] * 2}


def test_segments_train_every_turn_once_after_executed_history():
    trajectory = _dagger_trajectory(diverge_at=(1, 9, 13))  # turns 0, 2 and 3 of the first window
    labels, executed = trajectory.label_actions, trajectory.executed_actions
    # segments: turn 0 | turns 1, 2 | turn 3; a divergent last turn ends the window, no segment follows
    assert window_segments(labels, 0, CONFIG, executed) == (0.25, 0.5, 0.25)
    first, second = plan_window(labels, 0, CONFIG, executed, 0), plan_window(labels, 0, CONFIG, executed, 1)
    assert (first.frame_steps, first.trained) == ((0,), (True,))
    assert (second.frame_steps, second.trained) == ((0, 4, 8), (False, True, True))
    assert second.chunks[0] == tuple(int(a) for a in executed[0:4]) != tuple(int(a) for a in labels[0:4])
    assert second.chunks[2] == tuple(int(a) for a in labels[8:12])  # the target of a divergent turn: its label
    assert plan_window(labels, 0, CONFIG, executed, 2).trained == (False, False, False, True)
    with pytest.raises(ValueError, match="segment 3 trains no turn"):
        plan_window(labels, 0, CONFIG, executed, 3)
    with pytest.raises(ValueError, match="has no segment 4"):
        plan_window(labels, 0, CONFIG, executed, 4)
    last_only = dataclasses.replace(CONFIG, train_all_turns=False)
    assert window_segments(labels, 0, last_only, executed) == (1.0,)
    with pytest.raises(ValueError, match="segment 1 needs DAgger executed actions"):
        plan_window(labels, 0, last_only, executed, 1)


@pytest.mark.parametrize("seed", range(5))
def test_every_dagger_turn_and_the_stop_is_a_target_exactly_once(seed):
    rng = np.random.default_rng(seed)
    num_steps = int(rng.integers(20, 90))
    labels = rng.integers(1, 4, size=num_steps).astype(np.int8)
    labels[-1] = Action.STOP
    executed = np.where(rng.random(num_steps) < 0.2, rng.integers(1, 4, size=num_steps), labels).astype(np.int8)
    executed[-1] = Action.STOP  # only the expert's STOP ends an episode
    trained_steps = []
    for start in window_starts(num_steps, CONFIG):
        shares = window_segments(labels, start, CONFIG, executed)
        assert sum(shares) == pytest.approx(1.0)
        for segment, share in enumerate(shares):
            plan = plan_window(labels, start, CONFIG, executed, segment)
            targets = [step for step, trained in zip(plan.frame_steps, plan.trained) if trained]
            window_turns = len(range(start, min(start + CONFIG.num_frames, num_steps), CONFIG.num_future_steps))
            assert share == pytest.approx(len(targets) / window_turns)
            for step, chunk, trained in zip(plan.frame_steps, plan.chunks, plan.trained):
                stop = min(step + CONFIG.num_future_steps, num_steps)
                history = np.asarray(labels if trained else executed)[step:stop]
                assert chunk == tuple(int(a) for a in history)
                if not trained or step != targets[-1]:  # every turn before the target was executed as shown
                    assert chunk == tuple(int(a) for a in executed[step:stop])
            trained_steps += targets
    assert sorted(trained_steps) == list(range(0, num_steps, CONFIG.num_future_steps))


def test_history_only_turns_carry_no_loss():
    trajectory = _dagger_trajectory(diverge_at=(9,))  # first window: turns 0 1 2 | 3
    processor = SlowFastProcessor.from_config(SlowFastConfig.preset("tiny"))

    def frames(steps):
        return np.stack([trajectory.rgb[step] for step in steps])

    args = (frames, "walk on", trajectory.label_actions, 0, CONFIG, "dag")
    whole = processor.encode(build_nav_sample(*args))  # as expert data: all 4 turns are targets
    second = processor.encode(build_nav_sample(*args, executed=trajectory.executed_actions, segment=1))
    per_turn = int((whole.labels != IGNORE_INDEX).sum()) // 4  # 4 actions + end marker each
    assert int((second.labels != IGNORE_INDEX).sum()) == per_turn  # only the segment's last turn is a target
    assert second.input_ids.shape == whole.input_ids.shape  # every turn is still shown
    last_answer = processor.nav_answer_ids(tuple(int(a) for a in trajectory.label_actions[12:16]))
    assert second.labels[second.labels != IGNORE_INDEX].tolist() == last_answer[:per_turn]


def test_view_draws_segments_by_their_share_of_the_window(tmp_path):
    store = EpisodeStore(tmp_path / "store")
    store.add(_dagger_trajectory(num_steps=16, diverge_at=(1,)))  # one window: turns 0 | 1 2 3
    view = StoreView(store, ViewConfig(sample=CONFIG))
    view.refresh()
    assert [(ref.start, ref.segment) for ref in view.refs] == [(0, 0), (0, 1)]
    picks = view.draw(np.random.default_rng(0), 4000)
    share_first = sum(ref.segment == 0 for ref in picks) / len(picks)
    assert share_first == pytest.approx(0.25, abs=0.03)


def test_trajectory_round_trip_keeps_executed_actions(tmp_path):
    store = EpisodeStore(tmp_path / "store")
    name = store.add(_dagger_trajectory())
    back = store.read(name)
    np.testing.assert_array_equal(back.executed_actions, _dagger_trajectory().executed_actions)
