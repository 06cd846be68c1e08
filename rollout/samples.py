"""The StreamVLN sample recipe (DESIGN.md 3.5): which frames and which actions make a sample.

For one instruction of a trajectory with T steps (labels[t] = the action to take at frame t, the
last one STOP):
- one sample per window start = n * num_frames, n = 0 .. ceil(T / num_frames) - 1;
- fast frames at steps start, start + num_future_steps, ... inside the window, one user turn each;
  the turn's assistant answer is the next num_future_steps labels (fewer at the end of the episode,
  whose last chunk therefore ends with the STOP label, exactly once);
- slow memory (start > 0): steps arange(0, start, max(start // num_history, 1)), at most
  num_history of them (with the defaults exactly 8; for other configs with more, an evenly spaced
  subset keeping the first and the last), each moved back to the turn frame at or before it (a
  multiple of num_future_steps), duplicates dropped: the streaming agent only ever sees the frames
  of its model calls (agent/streaming/memory.py FrameBank.history_frames), so the memory must not
  use a frame between two calls. With the defaults nothing moves (start // 8 is a multiple of 4);
  with e.g. num_frames=16 the window at 16 would otherwise hold 8 frames where the agent has 4;
- images: memory frames first, then the fast frames; time_ids: the step of each image.

DAgger episodes (executed actions recorded next to the labels, issue 8): an assistant turn is both
the answer the loss trains and the history every later turn of the window reads, and at inference
that history is the agent's own answer, i.e. what was executed. Where a turn's executed chunk differs
from its label chunk the two cannot be one text, so the window's sample ends with that turn (its
label is the target; the turns before it have executed == label). Showing the labels as history
taught the model text patterns that never happen at inference (e.g. turn-left chunks repeated while
the frames show the policy going elsewhere: DAgger label turn runs of up to 36 steps vs 12 in expert
data), and the benchmark's DAgger model spun in place (294/500 val_unseen episodes).
`consistent_history=False` restores the label history.
Ending the sample there alone never trains the turns after a window's first divergence: with a BC
policy at beta 0.32 only 52% of DAgger turns and 19 of 40 final STOP turns were ever a target, and
the DAgger model passed the goal without stopping more often (93 vs 56 of 500 val_unseen episodes).
So (`train_all_turns`, default) a window with divergent turns gives one sample per SEGMENT: segment
k shows the turns up to the window's k-th divergent turn as history only (executed chunks, no loss)
and trains the turns after it, up to and including the next divergent one. Every turn is a target
exactly once, always after a history of what was executed; the view weights a segment by its share
of the window's turns, so each DAgger turn is drawn as often as an expert turn.

remove_init_turns (off by default): drop the leading turn-in-place labels when the instruction does
not ask for a turn first. The trimmed trajectory then starts at the first non-turn step (frames,
labels and time_ids all count from there), as the original dataset's valid_idx does.

Nothing here tokenizes: the result is a rollout.dialogue.Sample for the model's processor.
"""

from __future__ import annotations

import functools
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from envs.actions import Action
from rollout.dialogue import (
    CONJUNCTIONS,
    NavDialogue,
    NavTurn,
    Sample,
    TaskType,
    history_steps,
    validate_window_recipe,
)

# First words of an instruction that ask for a rotation before moving (remove_init_turns keeps the turns).
TURN_VERBS = ("turn", "face", "rotate", "spin", "pivot", "veer")
_TURN_ACTIONS = (int(Action.TURN_LEFT), int(Action.TURN_RIGHT))
# What an instruction-blind model reads in place of every instruction (the prompt needs some text).
BLANK_INSTRUCTION = "no instruction"


@dataclass(frozen=True)
class SampleConfig:
    num_frames: int = 32
    num_future_steps: int = 4
    num_history: int = 8
    remove_init_turns: bool = False
    min_steps: int = 4  # shorter (trimmed) trajectories make no sample, as in StreamVLN
    seed: int = 0  # conjunction choice
    # The instruction-blind ablation (issue 8): every prompt holds BLANK_INSTRUCTION instead of the
    # instruction, so the model can only learn what vision and the action prior give (evaluate it
    # with the same blank instruction: streamvln eval --blank-instructions).
    blank_instruction: bool = False
    # DAgger windows end at the first turn whose executed actions differ from its labels (see above).
    consistent_history: bool = True
    # ... and the turns after it are trained by further samples (segments) of the same window.
    train_all_turns: bool = True

    def validate(self) -> None:
        validate_window_recipe("SampleConfig", self.num_frames, self.num_future_steps, self.num_history)
        if self.min_steps < 1:
            raise ValueError(f"SampleConfig.min_steps must be >= 1, got {self.min_steps}")


@dataclass(frozen=True)
class WindowPlan:
    """Steps (relative to the trimmed trajectory) that one sample uses; trained[i]: chunk i is a
    target (False: history only, a DAgger turn another segment trains)."""

    start: int
    history_steps: tuple[int, ...]
    frame_steps: tuple[int, ...]
    chunks: tuple[tuple[int, ...], ...]
    trained: tuple[bool, ...]


def asks_for_turn(instruction: str) -> bool:
    words = re.findall(r"[a-z]+", instruction.lower())
    return bool(words) and words[0] in TURN_VERBS


def initial_turns_to_drop(instruction: str, labels: Sequence[int] | np.ndarray, config: SampleConfig) -> int:
    """How many leading steps remove_init_turns drops (0 when disabled or the instruction turns first)."""
    if not config.remove_init_turns or asks_for_turn(instruction):
        return 0
    count = 0
    for action in labels:
        if int(action) not in _TURN_ACTIONS:
            break
        count += 1
    return count


def window_starts(num_steps: int, config: SampleConfig) -> list[int]:
    """Window starts of a (trimmed) trajectory of num_steps steps; none if shorter than min_steps."""
    if num_steps < config.min_steps:
        return []
    return list(range(0, num_steps, config.num_frames))


def count_samples(instruction: str, labels: np.ndarray, config: SampleConfig) -> int:
    offset = initial_turns_to_drop(instruction, labels, config)
    return len(window_starts(len(labels) - offset, config))


def observed_history_steps(start: int, config: SampleConfig) -> tuple[int, ...]:
    """history_steps(start, num_history), each moved back to the turn frame at or before it (the
    frames the streaming agent has), consecutive duplicates dropped."""
    stride = config.num_future_steps
    observed: list[int] = []
    for step in history_steps(start, config.num_history):
        turn_step = step - step % stride
        if not observed or observed[-1] != turn_step:
            observed.append(turn_step)
    return tuple(observed)


def plan_window(labels: np.ndarray, start: int, config: SampleConfig,
                executed: np.ndarray | None = None, segment: int = 0) -> WindowPlan:
    """Frames and action chunks of the window at `start` of a (trimmed) label sequence.

    executed (DAgger, same length as labels): with config.consistent_history the sample ends with a
    divergent turn (executed chunk != label chunk); `segment` k > 0 shows the turns up to the
    window's k-th divergent turn as executed history and trains the rest (module docstring)."""
    end = min(start + config.num_frames, len(labels))
    if not 0 <= start < end:
        raise ValueError(f"window start {start} is outside a trajectory of {len(labels)} steps")
    if executed is not None and len(executed) != len(labels):
        raise ValueError(f"executed actions ({len(executed)}) and labels ({len(labels)}) differ in length")
    consistent = config.consistent_history and executed is not None
    if segment and not (consistent and config.train_all_turns):
        raise ValueError(f"segment {segment} needs DAgger executed actions with consistent_history and train_all_turns")
    divergent_turns = _divergent_turns(labels, executed, start, config) if consistent else None
    frame_steps, chunks, trained = [], [], []
    passed = 0  # divergent turns before this one
    for turn, step in enumerate(range(start, end, config.num_future_steps)):
        stop = min(step + config.num_future_steps, end)
        divergent = consistent and divergent_turns[turn]
        history_only = passed < segment
        frame_steps.append(step)
        chunks.append(tuple(int(a) for a in (executed if history_only else labels)[step:stop]))
        trained.append(not history_only)
        passed += divergent
        if divergent and not history_only:
            break  # later turns would read this label as history, but the frames show the executed chunk
    if segment and passed < segment:
        raise ValueError(f"window at {start} has no segment {segment} ({passed} divergent turns)")
    if not any(trained):
        raise ValueError(f"window at {start}: segment {segment} trains no turn (its divergent turn ends the window)")
    return WindowPlan(start, observed_history_steps(start, config), tuple(frame_steps), tuple(chunks), tuple(trained))


def window_segments(labels: np.ndarray, start: int, config: SampleConfig,
                    executed: np.ndarray | None = None) -> tuple[float, ...]:
    """Each segment's share of the window's turns (one segment, share 1.0, unless DAgger windows are
    split: see train_all_turns). The shares sum to 1: every turn is trained by exactly one segment."""
    if executed is None or not (config.consistent_history and config.train_all_turns):
        return (1.0,)
    divergent = _divergent_turns(labels, executed, start, config)
    last = len(divergent) - 1
    bounds = [-1] + [i for i, flag in enumerate(divergent) if flag and i < last] + [last]
    return tuple((b - a) / len(divergent) for a, b in zip(bounds, bounds[1:]))


def _divergent_turns(labels: np.ndarray, executed: np.ndarray, start: int, config: SampleConfig) -> list[bool]:
    """Per turn of the window at `start`: does its executed chunk differ from its label chunk?"""
    end = min(start + config.num_frames, len(labels))
    return [bool(np.any(executed[step:min(step + config.num_future_steps, end)]
                        != labels[step:min(step + config.num_future_steps, end)]))
            for step in range(start, end, config.num_future_steps)]


def choose_conjunctions(count: int, episode_key: str, instruction_index: int, start: int, seed: int) -> list[str]:
    """Seeded per (seed, episode, instruction, window): the same sample always reads the same."""
    return list(_seeded_conjunctions(count, episode_key, instruction_index, start, seed))


@functools.lru_cache(maxsize=65536)  # a pure function of its arguments; seeding a Generator costs ~50 us
def _seeded_conjunctions(count: int, episode_key: str, instruction_index: int, start: int, seed: int) -> tuple[str, ...]:
    rng = np.random.default_rng([seed, zlib.crc32(episode_key.encode()), instruction_index, start])
    return tuple(CONJUNCTIONS[i] for i in rng.integers(0, len(CONJUNCTIONS), size=count))


FrameLoader = Callable[[list[int]], np.ndarray]  # absolute trajectory steps -> uint8 (N, H, W, 3)


def build_nav_sample(
    load_frames: FrameLoader,
    instruction: str,
    labels: np.ndarray,
    start: int,
    config: SampleConfig,
    episode_key: str,
    instruction_index: int = 0,
    source: str = "",
    executed: np.ndarray | None = None,
    segment: int = 0,
) -> Sample:
    """The Sample of one window (segment, see train_all_turns). `start` counts in the trimmed
    trajectory (see remove_init_turns). executed: the DAgger episode's executed actions (None for
    expert data)."""
    offset = initial_turns_to_drop(instruction, labels, config)
    trimmed = np.asarray(labels[offset:])
    plan = plan_window(trimmed, start, config, None if executed is None else np.asarray(executed[offset:]), segment)
    steps = list(plan.history_steps) + list(plan.frame_steps)
    images = load_frames([offset + step for step in steps])
    conjunctions = choose_conjunctions(len(plan.frame_steps), episode_key, instruction_index, start, config.seed)
    turns = tuple(NavTurn(conjunction, chunk, trained)
                  for conjunction, chunk, trained in zip(conjunctions, plan.chunks, plan.trained))
    shown = BLANK_INSTRUCTION if config.blank_instruction else instruction
    dialogue = NavDialogue(instruction=shown, turns=turns, has_memory=bool(plan.history_steps))
    return Sample(
        dialogue=dialogue,
        images=images,
        num_memory=len(plan.history_steps),
        time_ids=np.asarray(steps, dtype=np.int64),
        task_type=TaskType.NAV,
        source=source,
    )
