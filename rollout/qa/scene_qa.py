"""Scene QA generated from the embedded simulator (ScanQA-like), with frames along a walked path.

For each path: pick a target piece of furniture, walk the geodesic expert from a random navigable
start to it, keep frames_per_path frames evenly spread over the walk (the last one included), and
ask questions whose answers come from the house model, so they are exact:
- room_of:   "Which room is the red sofa in?"            -> "It is in the living room."
- colour_of: "What colour is the sofa in the living room?" -> "It is red."  (category unique in the room)
- count_in:  "How many chairs are in the kitchen?"        -> "There are 2."  (room type unique in the house)
- left_of:   "What is on your left?"                      -> "The green plant." (same room as the agent at
             the last frame, 20-110 degrees to the left, within 4 m)
Records (frames as JPEG bytes) are saved with msgpack; SceneQASource serves them as SCENE_QA Samples.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import msgpack
import numpy as np

from envs.backend import AgentState
from envs.geometry import forward_vector, quat_from_yaw, yaw_from_quat
from envs.policies import make_expert
from envs.scene.house import Furniture, House
from rollout.dataset import ListSource
from rollout.dialogue import IMAGE_PLACEHOLDER, ChatDialogue, ChatTurn, Sample, TaskType
from rollout.qa.frames import sample_indices
from rollout.records import decode_jpeg, encode_jpeg

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SceneQAConfig:
    frames_per_path: int = 8
    questions_per_path: int = 3
    max_path_steps: int = 300
    left_max_distance_m: float = 4.0
    seed: int = 0

    def validate(self) -> None:
        if self.frames_per_path < 1 or self.questions_per_path < 1 or self.max_path_steps < 1:
            raise ValueError("SceneQAConfig.frames_per_path, questions_per_path and max_path_steps must be >= 1")
        if self.left_max_distance_m <= 0:
            raise ValueError(f"SceneQAConfig.left_max_distance_m must be > 0, got {self.left_max_distance_m}")


@dataclass
class SceneQARecord:
    scene_id: str
    kind: str
    question: str
    answer: str
    frames_jpeg: list[bytes]
    time_ids: list[int]


def room_name(house: House, index: int) -> str:
    return house.rooms[index].room_type


def room_of(house: House, piece: Furniture) -> tuple[str, str]:
    return f"Which room is the {piece.name} in?", f"It is in the {room_name(house, piece.room)}."


def colour_of(house: House, piece: Furniture) -> tuple[str, str] | None:
    same = [f for f in house.furniture if f.room == piece.room and f.category == piece.category]
    if len(same) != 1:
        return None
    return f"What colour is the {piece.category} in the {room_name(house, piece.room)}?", f"It is {piece.color_name}."


def count_in(house: House, piece: Furniture, category: str) -> tuple[str, str] | None:
    """How many of `category` (any category of the house, so zero happens) are in the piece's room."""
    room_type = room_name(house, piece.room)
    if sum(room.room_type == room_type for room in house.rooms) != 1:
        return None
    count = sum(f.room == piece.room and f.category == category for f in house.furniture)
    number = NUMBER_WORDS[count] if count < len(NUMBER_WORDS) else str(count)
    verb = "is" if count == 1 else "are"
    return f"How many {plural(category)} are in the {room_type}?", f"There {verb} {number}."


IRREGULAR_PLURALS = {"shelf": "shelves"}


def plural(noun: str) -> str:
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    return noun + ("es" if noun.endswith(("s", "sh", "ch", "x")) else "s")


def left_of(house: House, state: AgentState, max_distance: float) -> tuple[str, str] | None:
    """The nearest piece 20-110 degrees to the agent's left in its room, if any."""
    x, z = float(state.position[0]), float(state.position[2])
    here = house.room_at(x, z)
    yaw = yaw_from_quat(state.rotation)
    forward, left = forward_vector(yaw), forward_vector(yaw + math.pi / 2)
    best: tuple[float, Furniture] | None = None
    for piece in house.furniture:
        if here is None or piece.room != here.index:
            continue
        offset = np.array([piece.center[0] - x, 0.0, piece.center[1] - z])
        distance = float(np.linalg.norm(offset))
        angle = math.degrees(math.atan2(float(offset @ left), float(offset @ forward)))
        if distance <= max_distance and 20.0 <= angle <= 110.0 and (best is None or distance < best[0]):
            best = (distance, piece)
    if best is None:
        return None
    return "What is on your left?", f"The {best[1].name}."


def walk_to(backend, piece: Furniture, rng: np.random.Generator, max_steps: int) -> tuple[list[np.ndarray], AgentState] | None:
    """rgb frames of an expert walk from a random start to the piece, and the final state (None if it fails)."""
    goal = backend.snap_point(np.array([piece.center[0], 0.0, piece.center[1]]))
    if not np.all(np.isfinite(goal)):
        return None
    start = backend.sample_navigable_point(rng)
    if not math.isfinite(backend.geodesic_distance(start, goal)):
        return None
    observations = backend.set_agent_state(AgentState(start, quat_from_yaw(float(rng.uniform(-math.pi, math.pi)))))
    expert = make_expert(backend, goal)
    expert.reset()
    frames = [observations["rgb"]]
    for _ in range(max_steps):
        action = int(expert.act(backend.get_agent_state()))
        if action == 0:
            return frames, backend.get_agent_state()
        frames.append(backend.step(action).observations["rgb"])
    return None


def generate_scene_qa(backend, scene_ids: list[str], paths_per_scene: int, config: SceneQAConfig | None = None
                      ) -> list[SceneQARecord]:
    """Records for paths_per_scene walks in each scene (backend: an EmbeddedBackend rendering rgb)."""
    config = config or SceneQAConfig()
    config.validate()
    records: list[SceneQARecord] = []
    for scene_index, scene_id in enumerate(scene_ids):
        rng = np.random.default_rng([config.seed, scene_index])
        backend.reset_scene(scene_id)
        house: House = backend.house
        categories = sorted({f.category for f in house.furniture})
        for _ in range(paths_per_scene):
            piece = house.furniture[int(rng.integers(len(house.furniture)))]
            walk = walk_to(backend, piece, rng, config.max_path_steps)
            if walk is None:
                continue
            frames, final_state = walk
            picks = sample_indices(len(frames), config.frames_per_path)
            if picks[-1] != len(frames) - 1:
                picks[-1] = len(frames) - 1
            jpeg = [encode_jpeg(frames[i]) for i in picks]
            candidates = {
                "room_of": room_of(house, piece),
                "colour_of": colour_of(house, piece),
                "count_in": count_in(house, piece, categories[int(rng.integers(len(categories)))]),
                "left_of": left_of(house, final_state, config.left_max_distance_m),
            }
            available = [kind for kind, qa in candidates.items() if qa is not None]
            for kind in rng.permutation(available)[: config.questions_per_path]:
                question, answer = candidates[str(kind)]
                records.append(SceneQARecord(scene_id, str(kind), question, answer, jpeg, [int(i) for i in picks]))
    return records


def save_scene_qa(records: list[SceneQARecord], path: str | Path) -> None:
    payload = {"format": FORMAT_VERSION, "records": [asdict(record) for record in records]}
    Path(path).write_bytes(msgpack.packb(payload, use_bin_type=True))


def load_scene_qa(path: str | Path) -> list[SceneQARecord]:
    payload = msgpack.unpackb(Path(path).read_bytes(), raw=False)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a scene QA file (format {FORMAT_VERSION})")
    return [SceneQARecord(**record) for record in payload["records"]]


def record_to_sample(record: SceneQARecord, image_size: int | None = None) -> Sample:
    images = np.stack([decode_jpeg(frame, image_size) for frame in record.frames_jpeg])
    question = IMAGE_PLACEHOLDER * len(images) + "\n" + record.question
    dialogue = ChatDialogue((ChatTurn("user", question), ChatTurn("assistant", record.answer)))
    time_ids = np.asarray(record.time_ids, dtype=np.int64)
    return Sample(dialogue, images, 0, time_ids, TaskType.SCENE_QA, source=f"scene_qa:{record.kind}")


class SceneQASource(ListSource):
    def __init__(self, path: str | Path, image_size: int | None = None, name: str = "scene_qa"):
        self.image_size = image_size
        super().__init__(name, TaskType.SCENE_QA, load_scene_qa(path), self.to_sample)

    def to_sample(self, record: SceneQARecord) -> Sample:
        return record_to_sample(record, self.image_size)


def kind_counts(records: list[SceneQARecord]) -> dict[str, int]:
    return dict(Counter(record.kind for record in records))
