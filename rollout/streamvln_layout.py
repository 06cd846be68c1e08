"""Read and write the public StreamVLN trajectory layout (DESIGN.md 3.4).

    <root>/annotations.json   [{id, video: "images/<scene>_<ds>_<id:06d>", instructions: [...],
                                actions: [-1, a1, ..., an]}, ...]
    <root>/<video>/rgb/*.jpg  one frame per entry of actions, in natural sort order

Mapping (the same as StreamVLN's VLNActionDataset, `actions[1:] + [STOP]`): actions[i] is the
action that produced frame i, so the label at frame i is actions[i + 1] and the label at the last
frame is STOP. Export writes the inverse, actions = [-1] + labels[:-1], so a round trip is lossless.
If an annotation already ends with STOP (the frame after STOP is not a decision point), that final
frame is dropped on import so STOP is the last label exactly once.

Frames are sorted naturally (2.jpg before 10.jpg): plain string sorting scrambles the frame order
of unpadded names, the defect fixed upstream in Aug 2025. JPEG bytes are copied, never re-encoded.

Bad input (missing frame folder, frame count != len(actions), unknown action id, a -1 anywhere but
first) raises StreamVLNLayoutError naming the episode, or is logged and skipped when lenient.
Export also writes our extra keys (`streamvln_store`: the R2R-CE episode, policy version, source,
metrics, poses); the original loader ignores unknown keys.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from envs.actions import NUM_ACTIONS, Action
from rollout.records import Trajectory
from rollout.store import EpisodeStore

log = logging.getLogger(__name__)

ANNOTATIONS = "annotations.json"
FRAME_SUFFIXES = (".jpg", ".jpeg")
META_KEY = "streamvln_store"


class StreamVLNLayoutError(ValueError):
    """An annotation or its frames do not follow the StreamVLN layout."""


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)  # store file names
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (annotation id, reason)


def natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_frames(folder: Path) -> list[Path]:
    return sorted(
        (path for path in folder.iterdir() if path.suffix.lower() in FRAME_SUFFIXES), key=lambda p: natural_key(p.name)
    )


def read_annotations(root: Path) -> list[dict]:
    path = Path(root) / ANNOTATIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a StreamVLN data folder holds annotations.json")
    data = json.loads(path.read_text())
    if not isinstance(data, list):
        raise StreamVLNLayoutError(f"{path}: expected a list of episodes, got {type(data).__name__}")
    return data


def labels_from_actions(actions: list, where: str) -> np.ndarray:
    """StreamVLN `actions` ([-1, a1..an]) -> label per frame (see module doc)."""
    if not actions or actions[0] != -1:
        raise StreamVLNLayoutError(f"{where}: actions must start with -1 (no action produced frame 0)")
    for index, action in enumerate(actions[1:], start=1):
        if not isinstance(action, int) or not 0 <= action < NUM_ACTIONS:
            raise StreamVLNLayoutError(f"{where}: actions[{index}] = {action!r} is not an action id (0..3)")
    return np.asarray(list(actions[1:]) + [int(Action.STOP)], dtype=np.int8)


def trajectory_from_annotation(root: Path, item: dict, dataset_name: str) -> Trajectory:
    where = f"episode {item.get('id', '?')!r}"
    for key in ("id", "video", "instructions", "actions"):
        if key not in item:
            raise StreamVLNLayoutError(f"{where}: annotation has no {key!r}")
    labels = labels_from_actions(item["actions"], where)
    frame_dir = Path(root) / item["video"] / "rgb"
    if not frame_dir.is_dir():
        raise StreamVLNLayoutError(f"{where}: missing frames folder {frame_dir}")
    frames = list_frames(frame_dir)
    if len(frames) != len(item["actions"]):
        raise StreamVLNLayoutError(
            f"{where}: {len(frames)} frames in {frame_dir} but {len(item['actions'])} actions (must be equal)"
        )
    meta = item.get(META_KEY, {})
    # Public data ending with STOP: the frame after STOP is not a decision point. Our own exports
    # (META_KEY present) are exact inverses and keep every frame.
    if not meta and len(labels) > 1 and labels[-2] == Action.STOP:
        labels, frames = labels[:-1], frames[:-1]
    instructions = item["instructions"] if isinstance(item["instructions"], list) else [item["instructions"]]
    poses = meta.get("poses")
    return Trajectory(
        episode=meta.get("episode") or {"episode_id": str(item["id"]), "video": item["video"]},
        instructions=tuple(instructions),
        rgb=[path.read_bytes() for path in frames],
        label_actions=labels,
        poses=None if poses is None else np.asarray(poses, dtype=np.float32),
        policy_version=int(meta.get("policy_version", 0)),
        metrics=meta.get("metrics", {}),
        source=meta.get("source", f"streamvln:{dataset_name}"),
    )


def import_streamvln(src: str | Path, store: EpisodeStore, lenient: bool = False) -> ImportReport:
    """Add every annotated episode of a StreamVLN folder to the store."""
    root = Path(src)
    report = ImportReport()
    for item in read_annotations(root):
        try:
            trajectory = trajectory_from_annotation(root, item, root.name)
            report.imported.append(store.add(trajectory))
        except (StreamVLNLayoutError, ValueError, OSError) as error:
            if not lenient:
                raise StreamVLNLayoutError(str(error)) from None
            log.warning("skipping: %s", error)
            report.skipped.append((str(item.get("id", "?")), str(error)))
    return report


def export_streamvln(store: EpisodeStore, dst: str | Path, dataset_name: str = "store") -> int:
    """Write every committed episode in the StreamVLN layout; returns the number of episodes."""
    root = Path(dst)
    root.mkdir(parents=True, exist_ok=True)
    annotations = []
    for index, name in enumerate(store.list_names()):
        trajectory = store.read(name)
        scene = Path(str(trajectory.episode.get("scene_id", "scene"))).stem or "scene"
        video = f"images/{scene}_{dataset_name}_{index:06d}"
        frame_dir = root / video / "rgb"
        frame_dir.mkdir(parents=True, exist_ok=True)
        for step, jpeg in enumerate(trajectory.rgb_jpeg()):
            (frame_dir / f"{step:04d}.jpg").write_bytes(jpeg)
        annotations.append(_annotation(trajectory, index, video))
    (root / ANNOTATIONS).write_text(json.dumps(annotations))
    return len(annotations)


def _annotation(trajectory: Trajectory, index: int, video: str) -> dict:
    meta = {
        "episode": trajectory.episode,
        "policy_version": trajectory.policy_version,
        "source": trajectory.source,
        "metrics": trajectory.metrics,
    }
    if trajectory.poses is not None:
        meta["poses"] = trajectory.poses.tolist()
    return {
        "id": index,
        "video": video,
        "instructions": list(trajectory.instructions),
        "actions": [-1] + [int(a) for a in trajectory.label_actions[:-1]],
        META_KEY: meta,
    }
