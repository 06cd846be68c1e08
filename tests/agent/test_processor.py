"""SlowFastProcessor: DESIGN.md 3.5 rendering, labels, streaming parts == encode, errors, collate."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from slowfast_samples import chat_sample, nav_sample

from agent.config import IGNORE_INDEX, IMAGE_TOKEN_INDEX, MEMORY_TOKEN_INDEX, SlowFastConfig
from agent.processor import ProcessorSettings, SlowFastProcessor
from rollout.dialogue import NavDialogue, NavTurn, Sample

SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
FIRST_USER = (
    "<|im_start|>user\nYou are an autonomous navigation assistant. Your task is to walk to the kitchen. "
    "Devise an action sequence to follow the instruction using the four actions: TURN LEFT (←) or TURN "
    "RIGHT (→) by 15 degrees, MOVE FORWARD (↑) by 25 centimeters, or STOP."
)


@pytest.fixture(scope="module")
def processor() -> SlowFastProcessor:
    return SlowFastProcessor.from_config(SlowFastConfig.preset("tiny"))


def render(processor: SlowFastProcessor, ids) -> str:
    """Decode ids, showing the placeholder ids as their placeholder text."""
    tok = processor.tokenizer
    shown = {IMAGE_TOKEN_INDEX: tok.convert_tokens_to_ids("<image>"),
             MEMORY_TOKEN_INDEX: tok.convert_tokens_to_ids("<memory>")}
    return tok.decode([shown.get(int(i), int(i)) for i in ids], skip_special_tokens=False)


def test_nav_rendering_matches_design_text(processor):
    encoded = processor.encode(nav_sample(num_memory=2))
    expected = (
        SYSTEM + FIRST_USER + " These are your historical observations: <memory>. you can see <image>.<|im_end|>\n"
        "<|im_start|>assistant\n↑↑←↑<|im_end|>\n"
        "<|im_start|>user\nthere is <image>.<|im_end|>\n"
        "<|im_start|>assistant\n→STOP<|im_end|>\n"
    )
    assert render(processor, encoded.input_ids) == expected
    no_memory = processor.encode(nav_sample(num_memory=0))
    assert render(processor, no_memory.input_ids) == expected.replace(
        " These are your historical observations: <memory>.", "")


def test_labels_cover_assistant_symbols_and_end_marker_only(processor):
    encoded = processor.encode(nav_sample(num_memory=1))
    labelled = encoded.labels[encoded.labels != IGNORE_INDEX]
    assert processor.tokenizer.decode(labelled) == "↑↑←↑<|im_end|>→STOP<|im_end|>"
    # labels equal input ids wherever they are set
    keep = encoded.labels != IGNORE_INDEX
    assert torch.equal(encoded.labels[keep], encoded.input_ids[keep])


def test_streaming_parts_concatenate_to_encode(processor):
    answered = ((1, 1, 1, 2), (3, 3, 1, 1), (1, 0))
    sample = nav_sample(num_memory=3, actions=answered)
    unanswered = dataclasses.replace(
        sample, dialogue=NavDialogue(sample.dialogue.instruction,
                                     sample.dialogue.turns + (NavTurn("in front of you is ", ()),), True),
        images=np.concatenate([sample.images, sample.images[:1]]), time_ids=np.arange(7))
    parts = processor.nav_prefix_ids("walk to the kitchen.") + processor.nav_memory_ids()
    for index, turn in enumerate(sample.dialogue.turns):
        parts += processor.nav_turn_ids(turn.conjunction, first=index == 0)
        parts += processor.nav_answer_ids(turn.actions)
    assert processor.encode(sample).input_ids.tolist() == parts
    parts += processor.nav_turn_ids("in front of you is ", first=False)
    encoded = processor.encode(unanswered)
    assert encoded.input_ids.tolist() == parts
    assert render(processor, parts).endswith("<|im_start|>user\nin front of you is <image>.<|im_end|>\n"
                                             "<|im_start|>assistant\n")


def test_prefix_is_identical_with_and_without_memory(processor):
    prefix = processor.nav_prefix_ids("walk to the kitchen")
    with_memory = processor.encode(nav_sample(num_memory=2)).input_ids.tolist()
    without = processor.encode(nav_sample(num_memory=0)).input_ids.tolist()
    assert with_memory[: len(prefix)] == prefix == without[: len(prefix)]
    assert with_memory[len(prefix): len(prefix) + len(processor.nav_memory_ids())] == processor.nav_memory_ids()


def test_parse_actions_and_allowed_ids(processor):
    ids = processor.nav_answer_ids([1, 2, 3, 0])
    assert processor.parse_actions(ids) == ([1, 2, 3, 0], True)
    assert processor.parse_actions(processor.text_ids("↑↑")) == ([1, 1], False)  # no end marker
    assert processor.parse_actions(processor.text_ids("↑ kitchen") + [processor.im_end_id]) == ([1], False)
    assert processor.parse_actions([processor.im_end_id]) == ([], False)
    assert processor.parse_actions(processor.text_ids("STOP↑") + [processor.im_end_id]) == ([0], False)
    allowed = processor.action_token_ids
    assert len(allowed) == 5 and processor.im_end_id in allowed
    assert set(ids) - set(processor.text_ids("\n")) <= set(allowed)


def test_chat_dialogue_rendering_and_labels(processor):
    encoded = processor.encode(chat_sample())
    assert render(processor, encoded.input_ids) == (
        SYSTEM + "<|im_start|>user\n<image>\nWhat colour is the sofa?<|im_end|>\n"
        "<|im_start|>assistant\nThe sofa is red.<|im_end|>\n"
        "<|im_start|>user\nAnd the <image> lamp?<|im_end|>\n<|im_start|>assistant\nIt is blue.<|im_end|>\n"
    )
    labelled = encoded.labels[encoded.labels != IGNORE_INDEX]
    assert processor.tokenizer.decode(labelled) == "The sofa is red.<|im_end|>It is blue.<|im_end|>"
    assert encoded.task_type == "scene_qa"


def test_images_resized_on_cpu_and_kept_uint8(processor):
    encoded = processor.encode(nav_sample(size=100))
    assert encoded.images.dtype == torch.uint8 and encoded.images.shape == (2, 112, 112, 3)
    strict = SlowFastProcessor(processor.tokenizer, ProcessorSettings(image_size=112, resize_images=False))
    with pytest.raises(ValueError, match=r"source='test:nav'.*\(100, 100\)"):
        strict.encode(nav_sample(size=100))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: dataclasses.replace(s, images=s.images[:-1], time_ids=s.time_ids[:-1]), "2 <image> placeholders but 1"),
        (lambda s: dataclasses.replace(s, dialogue=dataclasses.replace(s.dialogue, has_memory=True)), "no history frames"),
        (lambda s: dataclasses.replace(s, num_memory=1), "but no <memory> placeholder"),
        (lambda s: dataclasses.replace(s, images=s.images.astype(np.float32)), "must be uint8"),
        (lambda s: dataclasses.replace(s, images=s.images.transpose(0, 3, 1, 2).copy()), r"shape \(N, H, W, 3\)"),
        (lambda s: dataclasses.replace(s, time_ids=s.time_ids[:1]), "time_ids has 1 entries"),
    ],
)
def test_bad_samples_name_the_sample(processor, change, message):
    sample: Sample = change(nav_sample(num_memory=0))
    with pytest.raises(ValueError, match=message) as info:
        processor.encode(sample)
    assert "source='test:nav'" in str(info.value)


def test_collate_pads_both_sides(processor):
    samples = [processor.encode(nav_sample(num_memory=2)), processor.encode(nav_sample(num_memory=0))]
    right = processor.collate(samples)
    left = processor.collate(samples, padding_side="left")
    short = samples[1].input_ids.numel()
    assert right["input_ids"].shape == left["input_ids"].shape
    assert torch.equal(right["input_ids"][1, :short], samples[1].input_ids)
    assert torch.equal(left["input_ids"][1, -short:], samples[1].input_ids)
    assert (right["input_ids"][1, short:] == processor.pad_token_id).all()
    assert (right["labels"][1, short:] == IGNORE_INDEX).all()
    assert right["attention_mask"][1].sum() == short and left["attention_mask"][1, -short:].all()
    assert right["images"].shape == (6, 112, 112, 3)
    assert right["image_counts"].tolist() == [4, 2] and right["num_memory"].tolist() == [2, 0]
    assert right["time_ids"][1].tolist() == [0, 1, -1, -1]
    assert right["task_type"] == ["nav", "nav"]


def test_processor_save_load_round_trip(processor, tmp_path):
    processor.save_pretrained(tmp_path)
    loaded = SlowFastProcessor.from_pretrained(tmp_path)
    sample = nav_sample(num_memory=2)
    assert torch.equal(loaded.encode(sample).input_ids, processor.encode(sample).input_ids)
    assert loaded.settings == processor.settings
    assert loaded.action_token_ids == processor.action_token_ids
