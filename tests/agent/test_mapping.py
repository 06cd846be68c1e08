"""Loading LLaVA-Video / StreamVLN layout checkpoints (tiny random checkpoints written in that layout)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from agent.checkpoint_mapping import load_llava_checkpoint, map_llava_key, to_llava_state_dict
from agent.config import SlowFastConfig
from agent.modeling import SlowFastForCausalLM


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return SlowFastForCausalLM(SlowFastConfig.preset("tiny")).eval()


def test_key_mapping_rules():
    tower = "model.vision_tower.vision_tower.vision_model."
    assert map_llava_key(tower + "encoder.layers.3.mlp.fc1.weight") == (True, "vision_tower.encoder.layers.3.mlp.fc1.weight")
    assert map_llava_key(tower + "embeddings.patch_embedding.weight") == (True, "vision_tower.embeddings.patch_embedding.weight")
    assert map_llava_key(tower + "post_layernorm.bias") == (True, None)
    assert map_llava_key("model.mm_projector.2.weight") == (True, "projector.2.weight")
    assert map_llava_key("model.layers.0.self_attn.q_proj.bias") == (True, "language_model.model.layers.0.self_attn.q_proj.bias")
    assert map_llava_key("model.embed_tokens.weight") == (True, "language_model.model.embed_tokens.weight")
    assert map_llava_key("lm_head.weight") == (True, "language_model.lm_head.weight")
    assert map_llava_key("model.image_newline") == (False, None)


@torch.no_grad()
def test_llava_layout_checkpoint_loads_with_same_outputs(tiny, tmp_path):
    state = to_llava_state_dict(tiny)
    state["model.image_newline"] = torch.zeros(128)
    state["model.vision_tower.vision_tower.vision_model.post_layernorm.weight"] = torch.ones(96)
    del state["model.mm_projector.0.bias"]
    half = len(state) // 2  # two shards, as real checkpoints are
    keys = sorted(state)
    save_file({k: state[k] for k in keys[:half]}, str(tmp_path / "model-00001-of-00002.safetensors"))
    save_file({k: state[k] for k in keys[half:]}, str(tmp_path / "model-00002-of-00002.safetensors"))
    loaded, report = load_llava_checkpoint(tmp_path, config=SlowFastConfig.preset("tiny"))
    assert report.unexpected == ["model.image_newline"]
    assert report.dropped == ["model.vision_tower.vision_tower.vision_model.post_layernorm.weight"]
    assert report.missing == ["projector.0.bias"]
    for name, param in tiny.state_dict().items():
        if name != "projector.0.bias":
            assert torch.equal(param, loaded.state_dict()[name]), name
    frames = torch.randint(0, 256, (2, 112, 112, 3), dtype=torch.uint8)
    with torch.no_grad():
        loaded.projector[0].bias.copy_(tiny.projector[0].bias)
    assert torch.allclose(tiny.encode_frames(frames), loaded.encode_frames(frames))


def test_checkpoint_of_another_architecture_is_rejected(tiny, tmp_path):
    language_only = {k: v for k, v in to_llava_state_dict(tiny).items() if not k.startswith("model.vision_tower")
                     and not k.startswith("model.mm_projector")}
    save_file(language_only, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="no vision tower weights.*model.vision_tower.vision_tower"):
        load_llava_checkpoint(tmp_path, config=SlowFastConfig.preset("tiny"))
    other = tmp_path / "other"
    other.mkdir()
    save_file({"encoder.block.0.weight": torch.zeros(2, 2)}, str(other / "model.safetensors"))
    with pytest.raises(ValueError, match="encoder.block.0.weight"):
        load_llava_checkpoint(other, config=SlowFastConfig.preset("tiny"))


def test_shape_mismatch_names_the_key(tiny, tmp_path):
    save_file(to_llava_state_dict(tiny), str(tmp_path / "model.safetensors"))
    wider = SlowFastConfig.preset("tiny")
    wider.text_config.intermediate_size = 512
    with pytest.raises(ValueError, match=r"tensor language_model.model.layers.0.mlp.\w+.weight has shape"):
        load_llava_checkpoint(tmp_path, config=wider)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_llava_checkpoint(tmp_path / "missing", config=wider)


def test_load_model_and_processor_dispatches_on_format(tiny, tmp_path):
    from agent.checkpoint_mapping import load_model_and_processor
    from agent.processor import SlowFastProcessor

    ours = tmp_path / "ours"
    tiny.save_pretrained(ours)
    processor = SlowFastProcessor.from_config(tiny.config)
    processor.save_pretrained(ours)
    model, loaded_processor, report = load_model_and_processor(ours)
    assert report is None and loaded_processor.action_token_ids == processor.action_token_ids
    assert torch.equal(model.projector[0].weight, tiny.projector[0].weight)
    with pytest.raises(ValueError, match="not a LLaVA one"):
        load_llava_checkpoint(ours)

    llava = tmp_path / "llava"
    llava.mkdir()
    save_file(to_llava_state_dict(tiny), str(llava / "model.safetensors"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model_and_processor(llava)  # a LLaVA directory needs its config.json (Qwen2 shapes)


def test_config_from_llava_reads_the_qwen2_shapes(tmp_path):
    import json

    from agent.checkpoint_mapping import config_from_llava

    fields = {"model_type": "llava_qwen", "hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
              "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151646,
              "mm_projector_type": "mlp2x_gelu", "mm_spatial_pool_mode": "average"}
    (tmp_path / "config.json").write_text(json.dumps(fields))
    config = config_from_llava(tmp_path)
    assert config.text_config.hidden_size == 1536 and config.vocab_size == 151646
    assert config.pooling == "avg" and config.tokens_per_frame == 196 and config.vision_layers_kept == 26
    (tmp_path / "config.json").write_text(json.dumps({**fields, "mm_projector_type": "linear"}))
    with pytest.raises(ValueError, match="mm_projector_type 'linear'"):
        config_from_llava(tmp_path)
