"""QA readers: LLaVA-style JSON (video folders and images) and MMC4-like interleaved JSONL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from rollout_fixtures import step_frame, step_of

from rollout.dialogue import IMAGE_PLACEHOLDER, ChatDialogue, TaskType
from rollout.qa.interleaved import InterleavedConfig, InterleavedSource, document_turns
from rollout.qa.llava_json import LlavaJsonSource, LlavaQAConfig


def save_frame(path, step, size=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(step_frame(step, size)).save(path, quality=95)


@pytest.fixture
def llava_data(tmp_path):
    for step in range(20):
        save_frame(tmp_path / "media" / "vid1" / f"{step}.jpg", step)
    save_frame(tmp_path / "media" / "pic.png", 5)
    records = [
        {"id": "v1", "video": "vid1", "conversations": [
            {"from": "human", "value": "<image>\nWhat room is this?"}, {"from": "gpt", "value": "A kitchen."},
            {"from": "human", "value": "Any sofa?"}, {"from": "gpt", "value": "No."}]},
        {"id": "i1", "image": "pic.png", "conversations": [
            {"from": "human", "value": "Describe it."}, {"from": "gpt", "value": "Flat red."}]},
    ]
    (tmp_path / "qa.json").write_text(json.dumps(records))
    return tmp_path


def test_llava_video_is_sampled_and_gets_one_placeholder_per_frame(llava_data):
    source = LlavaJsonSource(llava_data / "qa.json", llava_data / "media", LlavaQAConfig(num_frames=5, image_size=16))
    assert len(source) == 2 and source.task_type is TaskType.VIDEO_QA
    video = source.load(0)
    assert isinstance(video.dialogue, ChatDialogue)
    assert [t.role for t in video.dialogue.turns] == ["user", "assistant", "user", "assistant"]
    assert video.dialogue.turns[0].text == IMAGE_PLACEHOLDER * 5 + "\nWhat room is this?"
    assert video.time_ids.tolist() == [0, 5, 10, 14, 19]
    assert [step_of(f) for f in video.images] == [0, 5, 10, 14, 19]  # natural order of 0.jpg..19.jpg
    assert video.images.shape == (5, 16, 16, 3) and video.images.dtype == np.uint8
    image = source.load(1)
    assert image.dialogue.turns[0].text == IMAGE_PLACEHOLDER + "\nDescribe it."
    assert image.time_ids.tolist() == [-1] and step_of(image.images[0]) == 5


def test_llava_bad_records_are_named_or_skipped(tmp_path):
    records = [
        {"id": "ok", "image": "a.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
        {"id": "bad", "image": "a.png", "conversations": [{"from": "gpt", "value": "a"}]},
        {"id": "lost", "video": "nowhere", "conversations": [{"from": "human", "value": "q"}]},
    ]
    save_frame(tmp_path / "a.png", 1)
    (tmp_path / "qa.json").write_text(json.dumps(records))
    with pytest.raises(ValueError, match="record 'bad'.*conversations\\[0\\]"):
        LlavaJsonSource(tmp_path / "qa.json", tmp_path)
    (tmp_path / "qa.json").write_text(json.dumps([records[0], records[2]]))
    with pytest.raises(FileNotFoundError, match="record 'lost': missing media"):
        LlavaJsonSource(tmp_path / "qa.json", tmp_path)
    (tmp_path / "qa.json").write_text(json.dumps(records))
    lenient = LlavaJsonSource(tmp_path / "qa.json", tmp_path, LlavaQAConfig(lenient=True))
    assert [r["id"] for r in lenient.records] == ["ok"]


def test_interleaved_turns_put_images_before_their_sentences():
    turns = document_turns(["intro.", "s1.", "s2.", "s3."], [1, 1, 3])
    assert [(t.role, t.text) for t in turns] == [
        ("user", "intro.\n" + IMAGE_PLACEHOLDER * 2),
        ("assistant", "s1. s2."),
        ("user", IMAGE_PLACEHOLDER),
        ("assistant", "s3."),
    ]


def test_interleaved_reader_builds_samples_and_names_bad_lines(tmp_path):
    for step in (1, 2):
        save_frame(tmp_path / f"img{step}.jpg", step)
    docs = [
        {"id": "d1", "text_list": ["a.", "b.", "c."], "image_info": [
            {"image_name": "img2.jpg", "matched_text_index": 2}, {"image_name": "img1.jpg", "matched_text_index": 0}]},
        {"id": "d2", "text_list": ["a."], "image_info": [{"image_name": "img1.jpg", "matched_text_index": 4}]},
    ]
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    with pytest.raises(ValueError, match=r"docs.jsonl:2: document 'd2'.*matched_text_index 4"):
        InterleavedSource(tmp_path / "docs.jsonl", tmp_path)
    source = InterleavedSource(tmp_path / "docs.jsonl", tmp_path, InterleavedConfig(lenient=True, image_size=16))
    sample = source.load(0)
    assert sample.task_type is TaskType.INTERLEAVED
    assert [step_of(f) for f in sample.images] == [1, 2]  # in document order
    assert [t.text for t in sample.dialogue.turns] == [IMAGE_PLACEHOLDER, "a. b.", IMAGE_PLACEHOLDER, "c."]


def test_interleaved_missing_image_is_named_at_load_time(tmp_path):
    doc = {"id": "d9", "text_list": ["a."], "image_info": [{"image_name": "gone.jpg", "matched_text_index": 0}]}
    (tmp_path / "docs.jsonl").write_text(json.dumps(doc) + "\n")
    with pytest.raises(FileNotFoundError, match="document 'd9': missing images \\['gone.jpg'\\]"):
        InterleavedSource(tmp_path / "docs.jsonl", tmp_path)
    assert len(InterleavedSource(tmp_path / "docs.jsonl", tmp_path, InterleavedConfig(lenient=True))) == 0
