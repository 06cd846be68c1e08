"""Baseline policies for evaluation: expert, random, forward-only and replay.

A policy is reset once per episode (with the episode and the task, so the expert can see the goal)
and then maps observations to an action. `POLICY_FACTORIES` maps a spec's name to a factory taking
the spec's argument ("replay:FILE" -> FILE); later issues add e.g. "checkpoint" there.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from envs.actions import NUM_ACTIONS, Action
from envs.backend import SimulatorBackend
from envs.episodes.io import Episode
from envs.nav.expert import ExpertConfig, GeodesicExpert
from envs.task import VLNTask


class Policy(Protocol):
    name: str
    uses_sensors: bool  # False: observations may come without rgb/depth (no rendering needed)

    def reset(self, episode: Episode, task: VLNTask) -> None: ...

    def act(self, observations: dict) -> int: ...


def make_expert(backend: SimulatorBackend, goals, config: ExpertConfig | None = None) -> GeodesicExpert:
    """GeodesicExpert toward goals over any backend (uses the backend's wall-sliding prediction if it has one)."""
    goals = np.asarray(goals, dtype=np.float64)
    landing = getattr(backend, "forward_landing", None)
    return GeodesicExpert(lambda p: backend.geodesic_distance(p, goals), landing, config)


class ExpertPolicy:
    name = "expert"
    uses_sensors = False  # acts without looking at frames: evaluation may skip rendering

    def __init__(self, config: ExpertConfig | None = None):
        self.config = config
        self._expert: GeodesicExpert | None = None
        self._task: VLNTask | None = None

    def reset(self, episode: Episode, task: VLNTask) -> None:
        self._task = task
        self._expert = make_expert(task.backend, episode.goal_positions, self.config)
        self._expert.reset()

    def act(self, observations: dict) -> int:
        assert self._expert is not None and self._task is not None, "call reset(episode, task) first"
        return int(self._expert.act(self._task.backend.get_agent_state()))


class RandomPolicy:
    """Uniform over the 4 actions (so it calls STOP after 4 steps on average), seeded per run."""

    name = "random"
    uses_sensors = False  # acts without looking at frames: evaluation may skip rendering

    def __init__(self, seed: int = 0):
        self._rng = np.random.default_rng(seed)

    def reset(self, episode: Episode, task: VLNTask) -> None:
        pass

    def act(self, observations: dict) -> int:
        return int(self._rng.integers(NUM_ACTIONS))


class ForwardPolicy:
    """Always MOVE_FORWARD: never stops, so every episode runs into the step limit and fails."""

    name = "forward"
    uses_sensors = False  # acts without looking at frames: evaluation may skip rendering

    def reset(self, episode: Episode, task: VLNTask) -> None:
        pass

    def act(self, observations: dict) -> int:
        return int(Action.MOVE_FORWARD)


def load_action_sequences(path: str | Path) -> dict[str, list[int]]:
    """{episode_id: actions} from a gt file ({id: {locations, actions}}) or JSON {id: [actions]} (.gz ok)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            payload = json.load(handle)
    except (OSError, EOFError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read replay actions ({error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: replay file must be an object {{episode_id: actions}}")
    sequences = {}
    for key, value in payload.items():
        actions = value.get("actions") if isinstance(value, dict) else value
        if not isinstance(actions, list) or not all(isinstance(a, int) and 0 <= a < NUM_ACTIONS for a in actions):
            raise ValueError(f"{path}: episode {key!r}: field 'actions' must be a list of actions in 0-3")
        sequences[str(key)] = actions
    return sequences


class ReplayPolicy:
    """Plays back recorded actions per episode id; STOP once they run out."""

    name = "replay"
    uses_sensors = False  # acts without looking at frames: evaluation may skip rendering

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._sequences = load_action_sequences(path)
        self._queue: list[int] = []

    def reset(self, episode: Episode, task: VLNTask) -> None:
        if episode.key not in self._sequences:
            raise ValueError(f"{self.path}: no actions for episode {episode.episode_id!r}")
        self._queue = list(self._sequences[episode.key])

    def act(self, observations: dict) -> int:
        return self._queue.pop(0) if self._queue else int(Action.STOP)


PolicyFactory = Callable[[str | None, int], Policy]

POLICY_FACTORIES: dict[str, PolicyFactory] = {
    "expert": lambda arg, seed: ExpertPolicy(),
    "random": lambda arg, seed: RandomPolicy(seed),
    "forward": lambda arg, seed: ForwardPolicy(),
    "replay": lambda arg, seed: ReplayPolicy(_require_argument("replay", arg)),
}


def _require_argument(name: str, argument: str | None) -> str:
    if not argument:
        raise ValueError(f"policy '{name}' needs an argument: '{name}:FILE'")
    return argument


def make_policy(spec: str, seed: int = 0) -> Policy:
    """A policy from a spec such as "expert", "random", "forward" or "replay:gt.json.gz"."""
    name, _, argument = spec.partition(":")
    factory = POLICY_FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"unknown policy {spec!r}: expected one of {', '.join(sorted(POLICY_FACTORIES))} "
                         "(replay as replay:FILE)")
    return factory(argument or None, seed)
