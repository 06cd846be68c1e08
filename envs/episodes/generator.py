"""Procedural R2R-CE splits: episodes, expert ground truth and templated instructions.

House seeds per split (disjoint ranges, so val_unseen houses never appear in train):
    train, val_seen : procedural/house_000000 .. house_799999 (val_seen reuses train houses)
    val_unseen      : procedural/house_800000 .. house_899999
    test            : procedural/house_900000 .. house_999999
A split of N episodes uses the first ceil(N / episodes_per_house) houses of its range (more if a
house yields too few episodes), so a smaller val_seen uses a prefix of the train houses. The
episodes of a house come from an rng seeded by (seed, split, house), so train and val_seen draw
different episodes in the same houses.

An episode: a goal object (furniture piece) and a navigable goal point next to it; a start in another
room at geodesic GeneratorConfig.min/max_geodesic_m; the reference path is the backend's shortest path;
the gt is the GeodesicExpert's actions and locations from the start. Episodes whose expert does not
reach the goal point are discarded.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from envs.backend import AgentState, SimulatorBackend
from envs.episodes.io import DEFAULT_GOAL_RADIUS_M, Episode, Goal, GroundTruth, Instruction
from envs.geometry import quat_from_yaw
from envs.instructions import instruction_for_path
from envs.metrics import MAX_EPISODE_STEPS
from envs.policies import make_expert
from envs.scene.house import Furniture, House

SPLIT_HOUSE_SEEDS: dict[str, range] = {
    "train": range(0, 800_000),
    "val_seen": range(0, 800_000),
    "val_unseen": range(800_000, 900_000),
    "test": range(900_000, 1_000_000),
}
GOAL_OFFSETS_M = (0.35, 0.5, 0.7)  # goal point distance from the goal object's footprint


@dataclass
class GeneratorConfig:
    episodes_per_house: int = 10
    min_geodesic_m: float = 4.0
    max_geodesic_m: float = 16.0
    goal_radius_m: float = DEFAULT_GOAL_RADIUS_M  # success radius stored in the episode (R2R-CE: 3.0)
    expert_goal_radius_m: float = 0.25  # the gt expert walks to the goal point itself
    start_candidates: int = 40
    attempts_per_episode: int = 4
    max_steps: int = MAX_EPISODE_STEPS

    def validate(self) -> None:
        if self.episodes_per_house < 1:
            raise ValueError(f"GeneratorConfig.episodes_per_house must be >= 1, got {self.episodes_per_house}")
        if not 0 < self.min_geodesic_m < self.max_geodesic_m:
            raise ValueError("GeneratorConfig needs 0 < min_geodesic_m < max_geodesic_m, got "
                             f"{self.min_geodesic_m}, {self.max_geodesic_m}")
        if self.goal_radius_m <= 0 or self.expert_goal_radius_m < 0:
            raise ValueError("GeneratorConfig goal radii must be positive")


def house_seeds_for(split: str) -> range:
    if split not in SPLIT_HOUSE_SEEDS:
        raise ValueError(f"unknown split {split!r}: expected one of {', '.join(SPLIT_HOUSE_SEEDS)}")
    return SPLIT_HOUSE_SEEDS[split]


def make_generation_backend() -> SimulatorBackend:
    """An embedded backend without sensors: generation needs geometry only, never a frame."""
    from envs.embedded import EmbeddedBackend, EmbeddedConfig

    return EmbeddedBackend(EmbeddedConfig(rgb=False, depth=False, width=8, height=8))


@dataclass
class _Draft:
    goal_piece: Furniture
    goal: np.ndarray
    start: np.ndarray
    rotation: np.ndarray
    geodesic: float


def _goal_points(house: House, backend: SimulatorBackend, piece: Furniture) -> list[np.ndarray]:
    """Navigable points in the piece's room, a short offset out from the middle of each side."""
    points = []
    cx, cz = piece.center
    for offset in GOAL_OFFSETS_M:
        for x, z in ((piece.x0 - offset, cz), (piece.x1 + offset, cz), (cx, piece.z0 - offset), (cx, piece.z1 + offset)):
            point = np.array([x, 0.0, z])
            room = house.room_at(x, z)
            if room is not None and room.index == piece.room and backend.is_navigable(point):
                points.append(point)
    return points


def _has_distractors(house: House, goal: Furniture) -> bool:
    """The instruction is needed: the object's category recurs (colour matters) or its room holds more."""
    same_category = sum(1 for f in house.furniture if f.category == goal.category and f.index != goal.index)
    same_room = sum(1 for f in house.furniture if f.room == goal.room and f.index != goal.index)
    return same_category >= 1 or same_room >= 1


def _draft_episode(house: House, backend: SimulatorBackend, rng: np.random.Generator,
                   config: GeneratorConfig) -> _Draft | None:
    if len(house.rooms) < 2 or not house.furniture:
        return None
    piece = house.furniture[int(rng.integers(len(house.furniture)))]
    goals = _goal_points(house, backend, piece)
    if not goals or not _has_distractors(house, piece):
        return None
    goal = goals[int(rng.integers(len(goals)))]
    candidates = []
    for _ in range(config.start_candidates):
        start = backend.sample_navigable_point(rng)
        room = house.room_at(float(start[0]), float(start[2]))
        if room is None or room.index == piece.room:
            continue
        distance = backend.geodesic_distance(start, goal)
        if config.min_geodesic_m <= distance <= config.max_geodesic_m:
            candidates.append((start, distance))
    if not candidates:
        return None
    start, distance = candidates[int(rng.integers(len(candidates)))]
    rotation = quat_from_yaw(float(rng.uniform(-math.pi, math.pi)))
    return _Draft(piece, goal, np.asarray(start, float), rotation, float(distance))


def run_expert(backend: SimulatorBackend, start: np.ndarray, rotation: np.ndarray, goal: np.ndarray,
               goal_radius: float, max_steps: int) -> GroundTruth | None:
    """The expert's actions and locations from start (None if it fails to stop near the goal)."""
    from envs.nav.expert import ExpertConfig

    backend.set_agent_state(AgentState(np.asarray(start, float), np.asarray(rotation, float)))
    expert = make_expert(backend, goal, ExpertConfig(goal_radius=goal_radius))
    locations = [backend.get_agent_state().position.tolist()]
    actions: list[int] = []
    while len(actions) < max_steps:
        action = int(expert.act(backend.get_agent_state()))
        actions.append(action)
        if action == 0:
            break
        backend.step(action)
        locations.append(backend.get_agent_state().position.tolist())
    final = backend.geodesic_distance(np.asarray(locations[-1]), goal)
    if not actions or actions[-1] != 0 or final > goal_radius + 0.25:
        return None
    return GroundTruth(locations=locations, actions=actions)


def _finish_episode(draft: _Draft, house: House, backend: SimulatorBackend, rng: np.random.Generator,
                    config: GeneratorConfig, episode_id: int) -> tuple[Episode, GroundTruth] | None:
    path = backend.shortest_path(draft.start, draft.goal)
    if len(path) < 2:
        return None
    gt = run_expert(backend, draft.start, draft.rotation, draft.goal, config.expert_goal_radius_m, config.max_steps)
    if gt is None:
        return None
    # Phrasing draws from its own stream (one draw here), so template edits never move episodes.
    phrasing_rng = np.random.default_rng(int(rng.integers(2**63)))
    text = instruction_for_path(house, path, draft.rotation, draft.goal_piece, phrasing_rng)
    start_room = house.room_at(float(draft.start[0]), float(draft.start[2]))
    episode = Episode(
        episode_id=episode_id,
        trajectory_id=episode_id,
        scene_id=house.scene_id,
        start_position=[float(v) for v in draft.start],
        start_rotation=[float(v) for v in draft.rotation],
        goals=[Goal(position=[float(v) for v in draft.goal], radius=config.goal_radius_m)],
        reference_path=[[float(v) for v in p] for p in path],
        instruction=Instruction(instruction_text=text),
        info={"geodesic_distance": draft.geodesic, "goal_object": draft.goal_piece.name,
              "goal_room": house.rooms[draft.goal_piece.room].room_type,
              "start_room": start_room.room_type if start_room else None},
    )
    return episode, gt


def generate_house_episodes(backend: SimulatorBackend, scene_id: str, count: int, rng: np.random.Generator,
                            config: GeneratorConfig, first_episode_id: int) -> list[tuple[Episode, GroundTruth]]:
    backend.reset_scene(scene_id)
    house: House = backend.house  # type: ignore[attr-defined]  # embedded backends expose their House
    made: list[tuple[Episode, GroundTruth]] = []
    for _ in range(count * config.attempts_per_episode):
        if len(made) == count:
            break
        draft = _draft_episode(house, backend, rng, config)
        if draft is None:
            continue
        finished = _finish_episode(draft, house, backend, rng, config, first_episode_id + len(made))
        if finished is not None:
            made.append(finished)
    return made


def house_episodes(backend: SimulatorBackend, seed: int, split: str, house_seed: int, count: int,
                   config: GeneratorConfig, first_episode_id: int = 1) -> list[tuple[Episode, GroundTruth]]:
    """Up to `count` episodes of one house of `split`, from the house's own rng (seed, split, house)."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode()), house_seed])  # crc32: stable across runs
    return generate_house_episodes(backend, f"procedural/house_{house_seed:06d}", count, rng, config,
                                   first_episode_id)


def generate_split(split: str, num_episodes: int, seed: int = 0, config: GeneratorConfig | None = None,
                   backend: SimulatorBackend | None = None, on_house=None,
                   workers: int = 1) -> tuple[list[Episode], dict[str, GroundTruth]]:
    """`num_episodes` episodes of `split` and their gt ({episode_id: GroundTruth}); ids are 1..N.
    workers > 1 (without a backend): houses generated in that many processes, same result
    (envs/episodes/parallel.py)."""
    config = config or GeneratorConfig()
    config.validate()
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and backend is None:
        from envs.episodes.parallel import generate_split_parallel

        return generate_split_parallel(split, num_episodes, seed, config, workers, on_house)
    seeds = house_seeds_for(split)
    backend = backend or make_generation_backend()
    episodes: list[Episode] = []
    gt: dict[str, GroundTruth] = {}
    for house_seed in seeds:
        if len(episodes) >= num_episodes:
            break
        count = min(config.episodes_per_house, num_episodes - len(episodes))
        for episode, truth in house_episodes(backend, seed, split, house_seed, count, config, len(episodes) + 1):
            episodes.append(episode)
            gt[episode.key] = truth
        if on_house is not None:
            on_house(f"procedural/house_{house_seed:06d}", len(episodes))
    return episodes, gt
