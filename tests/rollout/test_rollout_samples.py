"""The StreamVLN sample recipe pinned on hand-made episodes (DESIGN.md 3.5)."""

from __future__ import annotations

import numpy as np
import pytest
from rollout_fixtures import make_labels, step_frame, step_of

from rollout.dialogue import CONJUNCTIONS, TaskType
from rollout.samples import (
    SampleConfig,
    build_nav_sample,
    history_steps,
    initial_turns_to_drop,
    plan_window,
    window_starts,
)


def loader(steps: list[int]) -> np.ndarray:
    return np.stack([step_frame(step, 8) for step in steps])


def build(labels, start, config=None, instruction="go to the kitchen", key="ep"):
    return build_nav_sample(loader, instruction, labels, start, config or SampleConfig(), episode_key=key)


@pytest.mark.parametrize("steps, expected", [(3, []), (4, [0]), (32, [0]), (33, [0, 32]), (70, [0, 32, 64]), (96, [0, 32, 64])])
def test_window_starts_one_per_num_frames(steps, expected):
    assert window_starts(steps, SampleConfig()) == expected


def test_first_window_has_fast_frames_every_4_steps_and_no_memory():
    labels = make_labels(70)
    sample = build(labels, 0)
    assert sample.num_memory == 0 and not sample.dialogue.has_memory
    assert sample.time_ids.tolist() == list(range(0, 32, 4))
    assert [step_of(f) for f in sample.images] == list(range(0, 32, 4))
    assert [t.actions for t in sample.dialogue.turns] == [tuple(labels[s : s + 4]) for s in range(0, 32, 4)]
    assert sample.task_type is TaskType.NAV and sample.images.dtype == np.uint8


def test_later_window_puts_evenly_spaced_history_first():
    labels = make_labels(70)
    sample = build(labels, 32)
    assert sample.num_memory == 8 and sample.dialogue.has_memory
    assert sample.time_ids.tolist() == list(range(0, 32, 4)) + list(range(32, 64, 4))
    sample = build(labels, 64)
    assert sample.time_ids[:8].tolist() == list(range(0, 64, 8))  # stride 64 // 8
    assert sample.time_ids[8:].tolist() == [64, 68]
    assert [step_of(f) for f in sample.images] == sample.time_ids.tolist()


def test_last_chunk_is_shorter_and_ends_with_a_single_stop():
    labels = make_labels(70)
    sample = build(labels, 64)
    chunks = [t.actions for t in sample.dialogue.turns]
    assert chunks == [tuple(labels[64:68]), tuple(labels[68:70])]
    assert chunks[-1][-1] == 0
    all_actions = [a for t in sample.dialogue.turns for a in t.actions]
    assert all_actions.count(0) == 1
    # Every label of the episode appears exactly once across its windows, in order.
    seen = [a for start in window_starts(70, SampleConfig()) for t in build(labels, start).dialogue.turns for a in t.actions]
    assert seen == labels.tolist()


def test_history_is_capped_at_num_history():
    assert history_steps(12, 8) == [0, 2, 3, 5, 6, 8, 9, 11]
    assert len(history_steps(15, 8)) == 8
    assert history_steps(5, 8) == [0, 1, 2, 3, 4]
    config = SampleConfig(num_frames=12, num_future_steps=4, num_history=8)
    # The agent only has the turn frames (every 4 steps): each history step moves back to one.
    assert plan_window(make_labels(40), 12, config).history_steps == (0, 4, 8)


def test_conjunctions_are_seeded_per_episode_and_window():
    labels = make_labels(70)
    first = [t.conjunction for t in build(labels, 0).dialogue.turns]
    assert first == [t.conjunction for t in build(labels, 0).dialogue.turns]
    assert all(c in CONJUNCTIONS for c in first)
    variants = {tuple(t.conjunction for t in build(labels, 0, key=f"ep{i}").dialogue.turns) for i in range(5)}
    assert len(variants) > 1
    other_seed = SampleConfig(seed=1)
    assert first != [t.conjunction for t in build(labels, 0, other_seed).dialogue.turns]


def test_remove_init_turns_drops_unrequested_leading_turns():
    labels = make_labels(40, prefix=(2, 2, 3))
    config = SampleConfig(remove_init_turns=True)
    assert initial_turns_to_drop("walk to the kitchen", labels, config) == 3
    assert initial_turns_to_drop("Turn left and walk to the kitchen", labels, config) == 0
    assert initial_turns_to_drop("walk to the kitchen", labels, SampleConfig()) == 0
    sample = build(labels, 0, config, instruction="walk to the kitchen")
    assert sample.dialogue.turns[0].actions == tuple(labels[3:7])
    assert sample.time_ids.tolist() == list(range(0, 32, 4))  # counted from the trimmed start
    assert [step_of(f) for f in sample.images] == [3 + s for s in range(0, 32, 4)]
    kept = build(labels, 0, config, instruction="Turn left and walk to the kitchen")
    assert kept.dialogue.turns[0].actions == (2, 2, 3, 1)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="num_history"):
        SampleConfig(num_history=0).validate()
    with pytest.raises(ValueError, match="multiple of num_future_steps"):
        SampleConfig(num_frames=30).validate()
    with pytest.raises(ValueError, match="outside a trajectory"):
        plan_window(make_labels(10), 32, SampleConfig())


def test_blank_instruction_hides_the_instruction_but_keeps_frames_and_labels():
    from rollout.samples import BLANK_INSTRUCTION

    labels = make_labels(40)
    seen = build(labels, 0, instruction="turn left, stop by the red bed")
    blind = build(labels, 0, SampleConfig(blank_instruction=True), instruction="turn left, stop by the red bed")
    assert seen.dialogue.instruction == "turn left, stop by the red bed"
    assert blind.dialogue.instruction == BLANK_INSTRUCTION
    assert blind.dialogue.turns == seen.dialogue.turns and np.array_equal(blind.images, seen.images)
