"""Interleaved image-text documents (MMC4-like JSONL) -> INTERLEAVED Samples.

One JSON object per line:
    {"id": ..., "text_list": ["sentence", ...],
     "image_info": [{"image_name": "<file under image_root>", "matched_text_index": i}, ...]}

The document becomes alternating turns so that every sentence is predicted with the images placed
before it in view: the images matched to sentence i (in order of i) form a user turn, and the
sentences from i up to the next image's sentence form the assistant turn after it. Sentences before
the first image are context in the first user turn. Only assistant text is a training target.
Bad lines raise ValueError naming the line and id (logged and skipped when lenient).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from rollout.dataset import ListSource
from rollout.dialogue import IMAGE_PLACEHOLDER, ChatDialogue, ChatTurn, Sample, TaskType
from rollout.qa.frames import load_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InterleavedConfig:
    image_size: int | None = 224
    max_images: int = 8  # longer documents keep their first max_images images (and all the text)
    lenient: bool = False

    def validate(self) -> None:
        if self.max_images < 1:
            raise ValueError(f"InterleavedConfig.max_images must be >= 1, got {self.max_images}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"InterleavedConfig.image_size must be >= 1 or None, got {self.image_size}")


def read_interleaved_jsonl(path: str | Path, lenient: bool = False) -> list[dict]:
    path = Path(path)
    records = []
    with open(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                check_document(record)
                records.append(record)
            except ValueError as error:  # json.JSONDecodeError is a ValueError
                message = f"{path}:{line_number}: {error}"
                if not lenient:
                    raise ValueError(message) from None
                log.warning("skipping %s", message)
    return records


def check_document(record: dict) -> None:
    name = f"document {record.get('id', '?')!r}" if isinstance(record, dict) else "document"
    if not isinstance(record, dict) or not isinstance(record.get("text_list"), list) or not record["text_list"]:
        raise ValueError(f"{name}: needs a non-empty 'text_list'")
    images = record.get("image_info")
    if not isinstance(images, list) or not images:
        raise ValueError(f"{name}: needs a non-empty 'image_info'")
    for index, info in enumerate(images):
        matched = info.get("matched_text_index") if isinstance(info, dict) else None
        if not isinstance(info, dict) or "image_name" not in info or not isinstance(matched, int):
            raise ValueError(f"{name}: image_info[{index}] needs 'image_name' and an int 'matched_text_index'")
        if not 0 <= matched < len(record["text_list"]):
            raise ValueError(f"{name}: image_info[{index}].matched_text_index {matched} is outside text_list")


def document_turns(texts: list[str], image_positions: list[int]) -> list[ChatTurn]:
    """Alternating user (images) / assistant (sentences) turns; image_positions sorted ascending."""
    turns: list[ChatTurn] = []
    groups = [(position, len(list(group))) for position, group in groupby(image_positions)]
    for group_index, (position, count) in enumerate(groups):
        context = " ".join(texts[:position]) + "\n" if group_index == 0 and position > 0 else ""
        end = groups[group_index + 1][0] if group_index + 1 < len(groups) else len(texts)
        turns.append(ChatTurn("user", context + IMAGE_PLACEHOLDER * count))
        turns.append(ChatTurn("assistant", " ".join(texts[position:end])))
    return turns


class InterleavedSource(ListSource):
    def __init__(self, jsonl_path: str | Path, image_root: str | Path, config: InterleavedConfig | None = None,
                 name: str = "interleaved"):
        self.config = config or InterleavedConfig()
        self.config.validate()
        self.image_root = Path(image_root)
        records = [r for r in read_interleaved_jsonl(jsonl_path, self.config.lenient) if self._images_present(r, jsonl_path)]
        super().__init__(name, TaskType.INTERLEAVED, records, self.to_sample)

    def _images_present(self, record: dict, jsonl_path) -> bool:
        """Check images when the file is read, not in a DataLoader worker mid-training."""
        missing = [info["image_name"] for info in record["image_info"] if not (self.image_root / info["image_name"]).exists()]
        if not missing:
            return True
        message = f"{jsonl_path}: document {record.get('id', '?')!r}: missing images {missing} under {self.image_root}"
        if not self.config.lenient:
            raise FileNotFoundError(message)
        log.warning("skipping %s", message)
        return False

    def to_sample(self, record: dict) -> Sample:
        infos = sorted(record["image_info"], key=lambda info: info["matched_text_index"])[: self.config.max_images]
        images = np.stack([load_image(self.image_root / info["image_name"], self.config.image_size) for info in infos])
        turns = document_turns(record["text_list"], [info["matched_text_index"] for info in infos])
        return Sample(
            ChatDialogue(tuple(turns)), images, 0, np.full(len(infos), -1, dtype=np.int64), TaskType.INTERLEAVED,
            source=f"interleaved:{self.name}",
        )
