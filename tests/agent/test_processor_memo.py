"""The processor's memoised token pieces: same ids as tokenizing afresh, bounded, errors unchanged."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from slowfast_samples import chat_sample, nav_sample

import agent.processor as processor_module
from agent.config import SlowFastConfig
from agent.processor import SlowFastProcessor


@pytest.fixture(scope="module")
def tokenizer():
    return SlowFastProcessor.from_config(SlowFastConfig.preset("tiny")).tokenizer


def _fresh(tokenizer) -> SlowFastProcessor:
    return SlowFastProcessor.from_config(SlowFastConfig.preset("tiny"), tokenizer)


INSTRUCTIONS = ("walk to the kitchen.", "Turn left, then go past the red sofa!", "exit the bedroom (slowly)",
                "go up the stairs and stop", "walk to the kitchen")


def test_memoised_encoding_equals_a_fresh_processor_every_time(tokenizer):
    warm = _fresh(tokenizer)
    for _ in range(2):  # the second round is served from the memo
        for index, instruction in enumerate(INSTRUCTIONS):
            sample = nav_sample(num_memory=index % 2 * 3, instruction=instruction,
                                actions=((1, 1, 2, 1), (3, 3), (2, 1, 0))[: 1 + index % 3])
            expected = _fresh(tokenizer).encode(sample)
            got = warm.encode(sample)
            assert torch.equal(got.input_ids, expected.input_ids) and torch.equal(got.labels, expected.labels)
    assert torch.equal(warm.encode(chat_sample()).input_ids, _fresh(tokenizer).encode(chat_sample()).input_ids)
    # the memo returns copies: a caller editing the ids does not change later results
    prefix = warm.nav_prefix_ids("walk to the kitchen.")
    prefix.append(-1)
    assert warm.nav_prefix_ids("walk to the kitchen.") == _fresh(tokenizer).nav_prefix_ids("walk to the kitchen.")


def test_memo_is_bounded_and_the_processor_still_pickles(tokenizer, monkeypatch):
    monkeypatch.setattr(processor_module, "SEGMENT_CACHE_ENTRIES", 8)
    processor = _fresh(tokenizer)
    for index in range(40):
        processor.nav_prefix_ids(f"walk to room number {index}")
    assert len(processor._segments) <= 8
    assert processor.nav_prefix_ids("walk to room number 3") == _fresh(tokenizer).nav_prefix_ids(
        "walk to room number 3")
    # DataLoader workers started by spawn receive the processor pickled; deepcopy uses the same
    # reduce protocol without unpickling bytes.
    assert pickle.dumps(processor)
    clone = copy.deepcopy(processor)
    assert clone.nav_turn_ids("there is ", first=False) == processor.nav_turn_ids("there is ", first=False)


def test_bad_actions_still_raise_after_good_ones_are_memoised(tokenizer):
    processor = _fresh(tokenizer)
    processor.nav_answer_ids((1, 2))
    with pytest.raises(ValueError, match="outside the action space"):
        processor.nav_answer_ids((1, 7))
    with pytest.raises(ValueError, match="at least one action"):
        processor.nav_answer_ids(())


def test_collate_in_a_dataloader_worker_matches_in_process(tokenizer):
    processor = _fresh(tokenizer)
    encoded = [processor.encode(nav_sample(num_memory=2, seed=seed)) for seed in range(4)]
    expected = processor.collate(encoded)
    loader = torch.utils.data.DataLoader(encoded, batch_size=4, num_workers=1, collate_fn=processor.collate)
    (batch,) = list(loader)  # images were filled into shared memory inside the worker
    for key, value in expected.items():
        if torch.is_tensor(value):
            assert batch[key].dtype == value.dtype and torch.equal(batch[key], value), key
    assert batch["images"].is_contiguous() and batch["images"].shape == (16, 112, 112, 3)
