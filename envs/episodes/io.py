"""R2R-CE / VLN-CE episode files: `{split}.json.gz` and `{split}_gt.json.gz` (DESIGN.md 3.2).

Reading validates every field and names the file, the episode (id, else index) and the field on
error. Writing is atomic: a temp file in the target directory, fsync, then os.replace, so a crash
or a bad value never leaves a partial file nor clobbers the previous one.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_GOAL_RADIUS_M = 3.0  # R2R-CE goals carry the success distance as their radius


@dataclass
class Goal:
    position: list[float]
    radius: float = DEFAULT_GOAL_RADIUS_M


@dataclass
class Instruction:
    instruction_text: str
    instruction_tokens: list[int] | None = None


@dataclass
class Episode:
    episode_id: int | str
    trajectory_id: int | str
    scene_id: str
    start_position: list[float]
    start_rotation: list[float]  # quaternion [x, y, z, w]
    goals: list[Goal]
    reference_path: list[list[float]]
    instruction: Instruction
    info: dict[str, Any] = field(default_factory=dict)  # at least {"geodesic_distance": float}

    @property
    def key(self) -> str:
        """The episode's key in the gt file (JSON object keys are strings)."""
        return str(self.episode_id)

    @property
    def goal_positions(self) -> list[list[float]]:
        return [goal.position for goal in self.goals]


@dataclass
class GroundTruth:
    locations: list[list[float]]  # start, then the position after each expert action
    actions: list[int]  # the expert's actions, the last one STOP


def split_paths(data_dir: str | Path, split: str) -> tuple[Path, Path]:
    data_dir = Path(data_dir)
    return data_dir / f"{split}.json.gz", data_dir / f"{split}_gt.json.gz"


# ----------------------------------------------------------------------------------- writing


def episode_to_json(episode: Episode) -> dict[str, Any]:
    instruction: dict[str, Any] = {"instruction_text": episode.instruction.instruction_text}
    if episode.instruction.instruction_tokens is not None:
        instruction["instruction_tokens"] = list(episode.instruction.instruction_tokens)
    return {
        "episode_id": episode.episode_id,
        "trajectory_id": episode.trajectory_id,
        "scene_id": episode.scene_id,
        "start_position": [float(v) for v in episode.start_position],
        "start_rotation": [float(v) for v in episode.start_rotation],
        "goals": [{"position": [float(v) for v in g.position], "radius": float(g.radius)} for g in episode.goals],
        "reference_path": [[float(v) for v in p] for p in episode.reference_path],
        "instruction": instruction,
        "info": dict(episode.info),
    }


def write_json_gz_atomic(path: str | Path, payload: Any) -> None:
    """Serialise first (so a bad value raises before touching disk), then temp file + os.replace."""
    path = Path(path)
    data = gzip.compress(json.dumps(payload, allow_nan=False).encode("utf-8"), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def save_split(
    data_dir: str | Path,
    split: str,
    episodes: list[Episode],
    gt: dict[str, GroundTruth] | None = None,
    instruction_vocab: dict[str, Any] | None = None,
) -> tuple[Path, Path | None]:
    """Write `{split}.json.gz` (and `{split}_gt.json.gz` when gt is given); returns the paths."""
    episodes_path, gt_path = split_paths(data_dir, split)
    ids = [e.key for e in episodes]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{episodes_path}: episode id {duplicate} appears more than once")
    payload: dict[str, Any] = {"episodes": [episode_to_json(e) for e in episodes]}
    if instruction_vocab is not None:
        payload["instruction_vocab"] = instruction_vocab
    gt_payload = None
    if gt is not None:
        gt_payload = {
            str(k): {"locations": [[float(v) for v in p] for p in g.locations], "actions": [int(a) for a in g.actions]}
            for k, g in gt.items()
        }
    # Serialise both before writing either, so a bad value leaves both files untouched.
    write_json_gz_atomic(episodes_path, payload)
    if gt_payload is not None:
        write_json_gz_atomic(gt_path, gt_payload)
        return episodes_path, gt_path
    return episodes_path, None


# ----------------------------------------------------------------------------------- reading


class _Where:
    """Builds error messages that name the file, the episode and the field."""

    def __init__(self, path: Path, episode: str):
        self.path, self.episode = path, episode

    def error(self, field_name: str, problem: str) -> ValueError:
        return ValueError(f"{self.path}: {self.episode}: field '{field_name}' {problem}")

    def get(self, raw: dict, key: str, label: str | None = None) -> Any:
        if key not in raw:
            raise self.error(label or key, "is missing")
        return raw[key]

    def vector(self, value: Any, label: str, size: int) -> list[float]:
        ok = isinstance(value, list) and len(value) == size
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        if not ok:
            raise self.error(label, f"must be a list of {size} finite numbers, got {value!r:.80}")
        return [float(v) for v in value]

    def number(self, value: Any, label: str) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self.error(label, f"must be a finite number, got {value!r:.80}")
        return float(value)


def _read_json_gz(path: Path) -> Any:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a valid gzip-compressed JSON file ({error})") from None


def _episode_label(raw: Any, index: int) -> str:
    if isinstance(raw, dict) and "episode_id" in raw:
        return f"episode {raw['episode_id']!r} (index {index})"
    return f"episode at index {index}"


def episode_from_json(raw: Any, where: _Where) -> Episode:
    if not isinstance(raw, dict):
        raise where.error("episode", f"must be an object, got {type(raw).__name__}")
    episode_id = where.get(raw, "episode_id")
    if not isinstance(episode_id, (int, str)) or isinstance(episode_id, bool):
        raise where.error("episode_id", f"must be an int or a string, got {episode_id!r}")
    scene_id = where.get(raw, "scene_id")
    if not isinstance(scene_id, str) or not scene_id:
        raise where.error("scene_id", f"must be a non-empty string, got {scene_id!r}")
    goals_raw = where.get(raw, "goals")
    if not isinstance(goals_raw, list) or not goals_raw:
        raise where.error("goals", "must be a non-empty list")
    goals = []
    for i, goal in enumerate(goals_raw):
        if not isinstance(goal, dict):
            raise where.error(f"goals[{i}]", "must be an object")
        position = where.vector(where.get(goal, "position", f"goals[{i}].position"), f"goals[{i}].position", 3)
        radius = where.number(goal.get("radius", DEFAULT_GOAL_RADIUS_M), f"goals[{i}].radius")
        goals.append(Goal(position=position, radius=radius))
    path_raw = where.get(raw, "reference_path")
    if not isinstance(path_raw, list):
        raise where.error("reference_path", "must be a list of [x, y, z] points")
    reference_path = [where.vector(p, f"reference_path[{i}]", 3) for i, p in enumerate(path_raw)]
    return Episode(
        episode_id=episode_id,
        trajectory_id=raw.get("trajectory_id", episode_id),
        scene_id=scene_id,
        start_position=where.vector(where.get(raw, "start_position"), "start_position", 3),
        start_rotation=where.vector(where.get(raw, "start_rotation"), "start_rotation", 4),
        goals=goals,
        reference_path=reference_path,
        instruction=_instruction_from_json(where.get(raw, "instruction"), where),
        info=_info_from_json(where.get(raw, "info"), where),
    )


def _instruction_from_json(raw: Any, where: _Where) -> Instruction:
    if not isinstance(raw, dict):
        raise where.error("instruction", "must be an object with 'instruction_text'")
    text = where.get(raw, "instruction_text", "instruction.instruction_text")
    if not isinstance(text, str) or not text.strip():
        raise where.error("instruction.instruction_text", "must be a non-empty string")
    tokens = raw.get("instruction_tokens")
    if tokens is not None and not (isinstance(tokens, list) and all(isinstance(t, int) for t in tokens)):
        raise where.error("instruction.instruction_tokens", "must be a list of ints")
    return Instruction(instruction_text=text, instruction_tokens=tokens)


def _info_from_json(raw: Any, where: _Where) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise where.error("info", "must be an object with 'geodesic_distance'")
    info = dict(raw)
    info["geodesic_distance"] = where.number(where.get(raw, "geodesic_distance", "info.geodesic_distance"),
                                             "info.geodesic_distance")
    return info


def _gt_from_json(raw: Any, key: str, path: Path) -> GroundTruth:
    where = _Where(path, f"gt of episode {key!r}")
    if not isinstance(raw, dict):
        raise where.error("gt", "must be an object with 'locations' and 'actions'")
    locations_raw = where.get(raw, "locations")
    actions = where.get(raw, "actions")
    if not isinstance(locations_raw, list) or not locations_raw:
        raise where.error("locations", "must be a non-empty list of [x, y, z] points")
    locations = [where.vector(p, f"locations[{i}]", 3) for i, p in enumerate(locations_raw)]
    if not isinstance(actions, list) or not all(isinstance(a, int) and 0 <= a <= 3 for a in actions):
        raise where.error("actions", "must be a list of actions in 0-3")
    return GroundTruth(locations=locations, actions=list(actions))


def load_episodes(path: str | Path) -> tuple[list[Episode], dict[str, Any] | None]:
    """Episodes (and instruction_vocab, if present) of one `{split}.json.gz` file."""
    path = Path(path)
    payload = _read_json_gz(path)
    if not isinstance(payload, dict) or not isinstance(payload.get("episodes"), list):
        raise ValueError(f"{path}: field 'episodes' is missing or not a list")
    episodes, seen = [], set()
    for index, raw in enumerate(payload["episodes"]):
        episode = episode_from_json(raw, _Where(path, _episode_label(raw, index)))
        if episode.key in seen:
            raise ValueError(f"{path}: {_episode_label(raw, index)}: field 'episode_id' is a duplicate")
        seen.add(episode.key)
        episodes.append(episode)
    return episodes, payload.get("instruction_vocab")


def load_ground_truth(path: str | Path) -> dict[str, GroundTruth]:
    path = Path(path)
    payload = _read_json_gz(path)
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: must be an object {{episode_id: {{locations, actions}}}}")
    return {str(k): _gt_from_json(v, str(k), path) for k, v in payload.items()}


def load_split(data_dir: str | Path, split: str) -> tuple[list[Episode], dict[str, GroundTruth]]:
    """Episodes and gt of a split; gt is {} when `{split}_gt.json.gz` does not exist."""
    episodes_path, gt_path = split_paths(data_dir, split)
    if not episodes_path.exists():
        raise FileNotFoundError(f"no episode file for split {split!r}: {episodes_path} does not exist")
    episodes, _ = load_episodes(episodes_path)
    gt = load_ground_truth(gt_path) if gt_path.exists() else {}
    return episodes, gt
