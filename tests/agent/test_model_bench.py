"""`streamvln bench model`: synthetic batches expand to exactly --seq tokens; the CLI prints the numbers."""

from __future__ import annotations

import json

import pytest
import torch

from agent.config import SlowFastConfig
from agent.modeling import SlowFastForCausalLM
from streamvln.benchmarks.model import synthetic_batch
from streamvln.cli import main


def test_synthetic_batch_expands_to_seq():
    config = SlowFastConfig.preset("tiny")
    batch = synthetic_batch(config, seq=640, batch=2, frames=4, memory=3, device=torch.device("cpu"))
    model = SlowFastForCausalLM(config)
    with torch.no_grad():
        embeds, mask, labels, _ = model.embed_multimodal(
            batch["input_ids"], batch["attention_mask"], batch["labels"], model.encode_frames(batch["images"]),
            batch["num_memory"], batch["image_counts"])
    assert embeds.shape[:2] == (2, 640) and bool(mask.all())
    assert int((labels != -100).sum()) == 2 * 4 * 5
    with pytest.raises(ValueError, match="raise --seq"):
        synthetic_batch(config, seq=200, batch=1, frames=8, memory=8, device=torch.device("cpu"))


def test_bench_model_cli_reports_tokens_per_second(capsys, tmp_path):
    out = tmp_path / "model.json"
    code = main(["bench", "model", "--json", str(out), "--seq", "512", "--steps", "1", "--warmup", "1",
                 "--frames", "4", "--memory", "2"])
    assert code == 0
    result = json.loads(out.read_text())
    tiny = result["presets"]["tiny"]
    assert result["device"] in ("cpu",) or torch.cuda.is_available()
    assert tiny["tokens_per_s"] > 0 and tiny["step_ms"] > 0 and tiny["tokens_per_frame"] == 16
    assert 0 < tiny["insertion_share"] < 1
    assert json.loads(capsys.readouterr().out)["seq"] == 512
