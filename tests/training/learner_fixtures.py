"""Helpers for the learner tests: a tiny Qwen2 LM stand-in and seeded token batches (the learner is
model-agnostic; the SlowFast model is exercised in test_learner_slowfast.py)."""

from __future__ import annotations

import torch

from training.config import DataSourceConfig, TrainConfig
from training.data import BatchStream

VOCAB = 97
SEQ = 24


def tiny_lm(seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         tie_word_embeddings=False)
    return Qwen2ForCausalLM(config)


class TokenDataset(torch.utils.data.Dataset):
    """Deterministic variable-length token samples; labels only on the second half (assistant-like)."""

    def __init__(self, size: int = 64, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.items = []
        for index in range(size):
            length = int(torch.randint(SEQ // 2, SEQ + 1, (1,), generator=gen))
            ids = torch.randint(0, VOCAB, (length,), generator=gen)
            labels = ids.clone()
            labels[: length // 2] = -100
            self.items.append((ids, labels, "nav" if index % 2 == 0 else "video_qa"))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]


def collate_tokens(items) -> dict:
    length = max(ids.numel() for ids, _, _ in items)
    batch = len(items)
    input_ids = torch.zeros((batch, length), dtype=torch.long)
    labels = torch.full((batch, length), -100, dtype=torch.long)
    mask = torch.zeros((batch, length), dtype=torch.long)
    for row, (ids, lab, _) in enumerate(items):
        input_ids[row, : ids.numel()] = ids
        labels[row, : ids.numel()] = lab
        mask[row, : ids.numel()] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask,
            "task_type": [task for _, _, task in items]}


class SeededBatches(torch.utils.data.Sampler):
    """Shuffled batches of indices, a new order per epoch from (seed, epoch)."""

    def __init__(self, size: int, batch_size: int, seed: int = 0):
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size // self.batch_size

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        order = torch.randperm(self.size, generator=gen).tolist()
        for i in range(len(self)):
            yield order[i * self.batch_size:(i + 1) * self.batch_size]


def token_stream(batch_size: int = 2, size: int = 16, seed: int = 0) -> BatchStream:
    return BatchStream(TokenDataset(size, seed), SeededBatches(size, batch_size, seed), collate_tokens)


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    values = dict(model_preset="tiny", tunable_parts=("mm_language_model",),
                  deepspeed_config="configs/deepspeed/zero2.json", micro_batch_size=2, steps=4, bf16=False,
                  out_dir=str(tmp_path / "run"), progress=False, log_every=1)
    values.update(overrides)
    config = TrainConfig(**values)
    config.optim.lr = 1e-3
    config.schedule.warmup_steps = 1
    config.speed.gradient_checkpointing = False
    config.data.sources = [DataSourceConfig(kind="store", path="unused")]
    return config


def lm_learner(config: TrainConfig, seed: int = 0, batch_size: int = 2, size: int = 16, parts: bool = True):
    """A Learner over the tiny LM and a token stream (parts: the split path with assistant-only CE)."""
    from training.learner import Learner
    from training.modules import CausalLMParts

    model = tiny_lm(seed)
    return Learner(config, model, token_stream(batch_size, size), parts=CausalLMParts(model) if parts else None)
