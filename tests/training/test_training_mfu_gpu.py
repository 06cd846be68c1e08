"""GPU checks of the MFU levers (pytest -m gpu tests/training/test_training_mfu_gpu.py): no host sync in
visual-token insertion + packing given the CPU-measured layout, and the fp32 + torch.autocast learner on
the SlowFast model with the fused varlen attention."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_insertion_and_packing_never_synchronise_given_the_host_layout():
    from agent.multimodal import host_layout, insert_multimodal
    from training.packing import pack_padded
    from training.synthetic import SyntheticShape, slowfast_batch

    per_frame, dim = 16, 64
    cpu = slowfast_batch(SyntheticShape(3, 1024, 0.3), 500, per_frame, 16, seed=2)
    layout = host_layout(cpu["input_ids"], cpu["attention_mask"], cpu["image_counts"], cpu["num_memory"],
                         cpu["images"].shape[0], per_frame)
    batch = {k: v.cuda() for k, v in cpu.items() if isinstance(v, torch.Tensor)}
    frames = torch.randn(cpu["images"].shape[0], per_frame, dim, device="cuda", dtype=torch.bfloat16)
    text = torch.randn(*cpu["input_ids"].shape, dim, device="cuda", dtype=torch.bfloat16)
    args = (text, batch["input_ids"], batch["attention_mask"], batch["labels"], frames, batch["image_counts"],
            batch["num_memory"])
    reference = insert_multimodal(*args)
    reference_packed = pack_padded(reference.inputs_embeds, reference.attention_mask, reference.labels)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
    try:
        merged = insert_multimodal(*args, layout=layout)
        packed = pack_padded(merged.inputs_embeds, merged.attention_mask, merged.labels, lengths=layout.lengths)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.equal(merged.inputs_embeds, reference.inputs_embeds)
    assert torch.equal(packed.inputs_embeds, reference_packed.inputs_embeds)
    assert torch.equal(packed.labels, reference_packed.labels)
    assert torch.equal(packed.cu_seqlens, reference_packed.cu_seqlens)


def test_autocast_zero0_slowfast_learner_matches_the_bf16_engine(make_config):
    """Same model, batch and seed: the fp32-weights + autocast path trains like DeepSpeed's bf16 ZeRO-2."""
    from agent.config import SlowFastConfig
    from agent.modeling import SlowFastForCausalLM
    from training.learner import Learner
    from training.modules import parts_for
    from training.synthetic import CyclingBatches, SyntheticShape, slowfast_batch

    preset = SlowFastConfig.preset("tiny")
    batch = slowfast_batch(SyntheticShape(2, 512), 1000, preset.tokens_per_frame, preset.image_size)
    losses = {}
    for autocast, stage in ((False, 2), (True, 0)):
        torch.manual_seed(0)
        model = SlowFastForCausalLM(preset)
        config = make_config(bf16=True, zero_stage=stage, steps=8, grad_accum_steps=2,
                             tunable_parts=("mm_mlp_adapter", "mm_language_model"))
        config.speed.packing, config.speed.attn_implementation = True, "sdpa_varlen"
        config.speed.torch_autocast = autocast
        config.schedule.kind = "constant"
        learner = Learner(config, model, CyclingBatches([batch], pin_memory=True), parts=parts_for(model))
        losses[autocast] = [learner.train_step()["loss"] for _ in range(8)]
        assert learner.train_step()["grad_norm"] > 0
        del learner
    assert losses[True][-1] < losses[True][0]
    assert losses[True][-1] == pytest.approx(losses[False][-1], rel=0.1)  # bf16 rounding differs, not the maths
