"""LLaVA-style conversation JSON -> QA Samples (ChatDialogue).

    [{"id": ..., "video": "<folder of frames>" | "image": "<file>" | ["<file>", ...],
      "conversations": [{"from": "human", "value": "<image>\\nWhat ...?"}, {"from": "gpt", "value": "..."}, ...]}]

Paths are relative to media_root. A video is a folder of frames sampled evenly to num_frames. The
Sample contract needs one `<image>` per frame: a video's single `<image>` becomes num_frames
placeholders (or they are put at the start of the first question when the text has none); an
image record without `<image>` gets one there too. time_ids are the frame indices in the video
(-1 for still images). Roles: human -> user, gpt -> assistant, alternating, starting with human.
The task type defaults to VIDEO_QA; ScanQA-style data in this format can be read as SCENE_QA.
Bad records raise ValueError naming the id (logged and skipped when lenient).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rollout.dataset import ListSource
from rollout.dialogue import IMAGE_PLACEHOLDER, ChatDialogue, ChatTurn, Sample, TaskType
from rollout.qa.frames import load_image, load_video

log = logging.getLogger(__name__)

ROLES = {"human": "user", "gpt": "assistant"}


@dataclass(frozen=True)
class LlavaQAConfig:
    num_frames: int = 8
    image_size: int | None = 224  # frames of one sample must share a size; None keeps the files' size
    task_type: TaskType = TaskType.VIDEO_QA
    lenient: bool = False

    def validate(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"LlavaQAConfig.num_frames must be >= 1, got {self.num_frames}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"LlavaQAConfig.image_size must be >= 1 or None, got {self.image_size}")


def read_llava_json(path: str | Path, lenient: bool = False) -> list[dict]:
    """The records of a LLaVA JSON file, checked for structure."""
    path = Path(path)
    records = json.loads(path.read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of records")
    valid = []
    for position, record in enumerate(records):
        try:
            check_record(record, position)
            valid.append(record)
        except ValueError as error:
            if not lenient:
                raise ValueError(f"{path}: {error}") from None
            log.warning("skipping %s: %s", path, error)
    return valid


def check_record(record: dict, position: int) -> None:
    name = f"record {record.get('id', position)!r}" if isinstance(record, dict) else f"record #{position}"
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list) or not record["conversations"]:
        raise ValueError(f"{name}: needs a non-empty 'conversations' list")
    for index, turn in enumerate(record["conversations"]):
        expected = "human" if index % 2 == 0 else "gpt"
        if not isinstance(turn, dict) or turn.get("from") != expected or not isinstance(turn.get("value"), str):
            raise ValueError(f"{name}: conversations[{index}] must be {{'from': '{expected}', 'value': str}}")
    if "video" in record and "image" in record:
        raise ValueError(f"{name}: has both 'video' and 'image'")


class LlavaJsonSource(ListSource):
    def __init__(self, json_path: str | Path, media_root: str | Path, config: LlavaQAConfig | None = None,
                 name: str = "video_qa"):
        self.config = config or LlavaQAConfig()
        self.config.validate()
        self.media_root = Path(media_root)
        records = [r for r in read_llava_json(json_path, self.config.lenient) if self._media_present(r, json_path)]
        super().__init__(name, self.config.task_type, records, self.to_sample)

    def _media_present(self, record: dict, json_path) -> bool:
        """Check media at load time of the file, not in a DataLoader worker mid-training."""
        files = record.get("image", [])
        paths = [self.media_root / f for f in (files if isinstance(files, list) else [files])]
        if "video" in record:
            paths.append(self.media_root / record["video"])
        missing = [str(path) for path in paths if not path.exists()]
        if not missing:
            return True
        message = f"{json_path}: record {record.get('id', '?')!r}: missing media {missing}"
        if not self.config.lenient:
            raise FileNotFoundError(message)
        log.warning("skipping %s", message)
        return False

    def to_sample(self, record: dict) -> Sample:
        name = f"record {record.get('id', '?')!r}"
        size = self.config.image_size
        if "video" in record:
            images, indices = load_video(self.media_root / record["video"], self.config.num_frames, size)
            time_ids = indices.astype(np.int64)
        elif "image" in record:
            files = record["image"] if isinstance(record["image"], list) else [record["image"]]
            images = np.stack([load_image(self.media_root / file, size) for file in files])
            time_ids = np.full(len(files), -1, dtype=np.int64)
        else:
            images = np.zeros((0, size or 1, size or 1, 3), dtype=np.uint8)
            time_ids = np.zeros(0, dtype=np.int64)
        texts = [turn["value"] for turn in record["conversations"]]
        texts = place_images(texts, len(images), is_video="video" in record, name=name)
        turns = tuple(ChatTurn(ROLES[turn["from"]], text) for turn, text in zip(record["conversations"], texts))
        return Sample(ChatDialogue(turns), images, 0, time_ids, self.config.task_type, source=f"llava:{self.name}")


def place_images(texts: list[str], num_images: int, is_video: bool, name: str) -> list[str]:
    """Make the user texts carry exactly num_images `<image>` placeholders (see module doc)."""
    texts = list(texts)
    found = sum(text.count(IMAGE_PLACEHOLDER) for text in texts[0::2])
    if any(IMAGE_PLACEHOLDER in text for text in texts[1::2]):
        raise ValueError(f"{name}: an answer (gpt turn) contains {IMAGE_PLACEHOLDER}")
    if found == num_images:
        return texts
    if is_video and found == 1:
        for index in range(0, len(texts), 2):
            texts[index] = texts[index].replace(IMAGE_PLACEHOLDER, IMAGE_PLACEHOLDER * num_images)
        return texts
    if found == 0:
        texts[0] = IMAGE_PLACEHOLDER * num_images + "\n" + texts[0]
        return texts
    raise ValueError(f"{name}: {found} {IMAGE_PLACEHOLDER} placeholders for {num_images} images")
