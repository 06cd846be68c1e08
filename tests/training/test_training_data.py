"""Resumable batch streams and the rank slicing of global batches (no DeepSpeed needed)."""

from __future__ import annotations

import torch
from learner_fixtures import SeededBatches, TokenDataset, collate_tokens, token_stream

from training.data import BatchStream, RankSlice


def ids(batch) -> list[list[int]]:
    return batch["input_ids"].tolist()


def test_stream_resumes_at_the_same_batch_across_epochs():
    reference = token_stream(batch_size=2, size=6)  # 3 batches per epoch
    expected = [ids(next(reference)) for _ in range(8)]
    assert expected[0:3] != expected[3:6]  # a new order each epoch

    stream = token_stream(batch_size=2, size=6)
    for _ in range(4):
        next(stream)
    state = stream.state_dict()
    assert state == {"epoch": 1, "position": 1}
    resumed = token_stream(batch_size=2, size=6)
    resumed.load_state_dict(state)
    assert [ids(next(resumed)) for _ in range(4)] == expected[4:8]


def test_stream_with_workers_counts_consumed_batches_not_prefetched_ones():
    dataset = TokenDataset(12)
    stream = BatchStream(dataset, SeededBatches(12, 2), collate_tokens, num_workers=1, prefetch_factor=4)
    first = [ids(next(stream)) for _ in range(2)]
    assert stream.state_dict() == {"epoch": 0, "position": 2}
    resumed = BatchStream(dataset, SeededBatches(12, 2), collate_tokens)
    resumed.load_state_dict(stream.state_dict())
    assert ids(next(resumed)) == ids(next(stream))
    assert first[0] != first[1]


def test_stream_starts_and_resumes_leave_the_global_rng_alone():
    """The loader draws its workers' base seed from its own generator: a resume (which restarts the
    loader mid-epoch) would otherwise shift the torch RNG, and so dropout, against the uninterrupted run."""
    stream = token_stream(batch_size=2, size=6)  # 3 batches per epoch
    before = torch.get_rng_state()
    for _ in range(4):  # the first start and an epoch boundary
        next(stream)
    stream.load_state_dict(stream.state_dict())
    next(stream)  # restarted at (epoch 1, position 1)
    assert torch.equal(torch.get_rng_state(), before)


def test_rank_slices_partition_the_global_batch():
    global_batches = list(SeededBatches(12, 4))
    slices = [list(RankSlice(SeededBatches(12, 4), rank, 2)) for rank in range(2)]
    for index, batch in enumerate(global_batches):
        assert sorted(slices[0][index] + slices[1][index]) == sorted(batch)
        assert not set(slices[0][index]) & set(slices[1][index])


def test_rank_slices_with_accumulation_give_each_step_the_same_samples():
    """1 rank x 2 micro batches and 2 ranks x 1 micro batch split one global batch (one optimizer step)."""
    global_batches = list(SeededBatches(16, 8))
    accumulated = list(RankSlice(SeededBatches(16, 8), 0, 1, micro_batches=2))
    ranks = [list(RankSlice(SeededBatches(16, 8), rank, 2)) for rank in range(2)]
    assert len(accumulated) == 2 * len(global_batches) == len(RankSlice(SeededBatches(16, 8), 0, 1, 2))
    for step, batch in enumerate(global_batches):
        micro = accumulated[2 * step:2 * step + 2]
        assert [len(m) for m in micro] == [4, 4] and sorted(micro[0] + micro[1]) == sorted(batch)
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(batch)
    mixed = list(RankSlice(SeededBatches(16, 8), 1, 2, micro_batches=2))  # 2 ranks x 2 micro batches of 2
    assert [len(m) for m in mixed[:2]] == [2, 2] and sorted(mixed[0] + mixed[1]) == sorted(global_batches[0][1::2])


def test_rank_slice_refuses_a_bad_split():
    import pytest

    with pytest.raises(ValueError, match="rank 2"):
        RankSlice(SeededBatches(8, 4), 2, 2)
    with pytest.raises(ValueError, match="not a multiple of its 3 micro batches"):
        next(iter(RankSlice(SeededBatches(8, 4), 0, 1, micro_batches=3)))


def test_empty_sampler_is_refused():
    import pytest

    with pytest.raises(ValueError, match="yields no batches"):
        BatchStream(TokenDataset(1), SeededBatches(1, 2), collate_tokens)
    assert torch.is_tensor(next(token_stream())["input_ids"])
