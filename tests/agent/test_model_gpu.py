"""GPU checks of the SlowFast model (run on the device machine: pytest -m gpu tests/agent)."""

from __future__ import annotations

import pytest
import torch
from slowfast_samples import nav_sample

from agent.config import SlowFastConfig
from agent.modeling import SlowFastForCausalLM
from agent.processor import SlowFastProcessor

pytestmark = pytest.mark.gpu


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_bf16_forward_backward_on_cuda_matches_fp32(preset):
    config = SlowFastConfig.preset(preset)
    processor = SlowFastProcessor.from_config(config)
    torch.manual_seed(0)
    model = SlowFastForCausalLM(config).cuda()
    batch = _to(processor.collate([processor.encode(nav_sample(num_memory=2, size=config.image_size)),
                                   processor.encode(nav_sample(size=config.image_size))]), "cuda")
    with torch.no_grad():
        reference = model(**batch, return_logits=False).loss.item()
    model = model.to(torch.bfloat16)
    loss = model(**batch, return_logits=False).loss
    loss.backward()
    assert torch.isfinite(loss) and abs(loss.item() - reference) < 0.05 * reference
    assert all(p.grad is not None for p in model.projector.parameters())


def test_bench_model_on_cuda():
    from streamvln.cli import main

    assert main(["bench", "model", "--preset", "tiny", "--seq", "1024", "--steps", "2"]) == 0
