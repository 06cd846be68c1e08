"""SlowFastForCausalLM: loss, insertion, padding, memory, pooling, bad input, tunable parts, save/load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from slowfast_samples import chat_sample, nav_sample

from agent.config import IGNORE_INDEX, SlowFastConfig
from agent.modeling import SlowFastForCausalLM
from agent.processor import SlowFastProcessor


@pytest.fixture(scope="module")
def processor() -> SlowFastProcessor:
    return SlowFastProcessor.from_config(SlowFastConfig.preset("tiny"))


@pytest.fixture(scope="module")
def model() -> SlowFastForCausalLM:
    torch.manual_seed(0)
    return SlowFastForCausalLM(SlowFastConfig.preset("tiny")).eval()


def per_sample_losses(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Hand-computed next-token cross entropy per sample over labels != -100."""
    losses = []
    for row in range(logits.shape[0]):
        targets = labels[row, 1:]
        keep = targets != IGNORE_INDEX
        log_probs = torch.log_softmax(logits[row, :-1].double(), dim=-1)
        picked = log_probs[keep].gather(1, targets[keep, None]).squeeze(1)
        losses.append(float(-picked.mean()))
    return losses


def expanded_labels(model, batch) -> torch.Tensor:
    frames = model.encode_frames(batch["images"])
    _, _, labels, _ = model.embed_multimodal(batch["input_ids"], batch["attention_mask"], batch["labels"],
                                             frames, batch["num_memory"], batch["image_counts"])
    return labels


@torch.no_grad()
def test_loss_is_cross_entropy_over_assistant_tokens(model, processor):
    batch = processor.collate([processor.encode(nav_sample(num_memory=2)), processor.encode(chat_sample())])
    out = model(**batch)
    labels = expanded_labels(model, batch)
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    log_probs = torch.log_softmax(out.logits[:, :-1].double(), dim=-1)
    expected = -log_probs[keep].gather(1, targets[keep, None]).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    # only the assistant tokens carry labels, none of the inserted visual tokens do
    assert int((labels != IGNORE_INDEX).sum()) == int((batch["labels"] != IGNORE_INDEX).sum())
    assert model(**batch, return_logits=False).logits is None


@torch.no_grad()
def test_visual_positions_never_carry_labels(model, processor):
    encoded = processor.encode(nav_sample(num_memory=2))
    batch = processor.collate([encoded])
    labels = expanded_labels(model, batch)
    per_frame = model.config.tokens_per_frame
    # 3 placeholders (2 <image>, 1 <memory>) become the tokens of 4 frames (2 window + 2 history)
    assert labels.shape[1] == encoded.input_ids.numel() - 3 + 4 * per_frame
    changed = dict(batch, images=255 - batch["images"])
    first, second = model(**batch), model(**changed)
    assert not torch.allclose(first.logits, second.logits)  # pixels matter ...
    visual = labels == IGNORE_INDEX
    text_labels = labels[~visual]
    assert torch.equal(text_labels, encoded.labels[encoded.labels != IGNORE_INDEX])  # ... but are never targets


@torch.no_grad()
def test_left_and_right_padding_give_same_per_sample_loss(model, processor):
    samples = [processor.encode(nav_sample(num_memory=3, seed=1)), processor.encode(nav_sample(seed=2)),
               processor.encode(chat_sample())]
    results = []
    for side in ("right", "left"):
        batch = processor.collate(samples, padding_side=side)
        results.append(per_sample_losses(model(**batch).logits, expanded_labels(model, batch)))
    assert results[0] == pytest.approx(results[1], abs=1e-5)


@torch.no_grad()
def test_mixed_memory_batch_matches_samples_alone(model, processor):
    samples = [processor.encode(nav_sample(num_memory=3, seed=3)), processor.encode(nav_sample(seed=4))]
    batch = processor.collate(samples)
    together = per_sample_losses(model(**batch).logits, expanded_labels(model, batch))
    alone = []
    for sample in samples:
        single = processor.collate([sample])
        alone += per_sample_losses(model(**single).logits, expanded_labels(model, single))
    assert together == pytest.approx(alone, abs=1e-5)


@pytest.mark.parametrize("pooling", ["bilinear", "avg", "max"])
@pytest.mark.parametrize("grid", [None, 3])
def test_pooled_token_count_per_frame(pooling, grid):
    config = SlowFastConfig.preset("tiny", pooling=pooling, pooled_grid_size=grid)
    model = SlowFastForCausalLM(config)
    images = torch.randint(0, 256, (3, 96, 96, 3), dtype=torch.uint8)  # resized on the device
    features = model.encode_frames(images)
    expected = 16 if grid is None else 9  # 7x7 patches -> ceil(7/2)^2, or the configured 3x3
    assert features.shape == (3, expected, config.hidden_size) == (3, config.tokens_per_frame, 128)


def test_preset_shapes():
    assert SlowFastConfig.preset("7b").tokens_per_frame == 196
    assert SlowFastConfig.preset("small").tokens_per_frame == 49
    with pytest.raises(ValueError, match="unknown preset"):
        SlowFastConfig.preset("7")
    with pytest.raises(ValueError, match="pooling"):
        SlowFastConfig.preset("tiny", pooling="mean")


def test_bad_model_inputs_name_the_sample(model, processor):
    batch = processor.collate([processor.encode(nav_sample()), processor.encode(nav_sample(num_memory=1))])
    wrong = dict(batch, image_counts=torch.tensor([3, 2]))  # sample 0 claims 3 frames for 2 placeholders
    with pytest.raises(ValueError, match="sample 0: 2 <image> placeholders but 3"):
        model(**wrong)
    wrong = dict(batch, num_memory=torch.tensor([0, 0]), image_counts=torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="sample 1: 2 <image> placeholders but 3"):
        model(**wrong)
    with pytest.raises(ValueError, match="uint8"):
        model.encode_frames(batch["images"].float())
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        model.encode_frames(batch["images"].permute(0, 3, 1, 2).contiguous())


def test_tunable_parts_and_parameter_groups():
    model = SlowFastForCausalLM(SlowFastConfig.preset("tiny"))
    model.set_tunable_parts(["mm_mlp_adapter"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("projector.")}
    with pytest.raises(ValueError, match="unknown tunable parts"):
        model.set_tunable_parts(["vision"])
    model.set_tunable_parts(["mm_vision_tower", "mm_mlp_adapter", "mm_language_model"])
    groups = model.parameter_groups(lr=1e-4, vision_tower_lr=1e-5, projector_lr=5e-5, weight_decay=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["vision_tower.decay"]["lr"] == 1e-5 and by_name["projector.decay"]["lr"] == 5e-5
    assert by_name["language_model.decay"]["lr"] == 1e-4
    assert all(g["weight_decay"] == (0.1 if g["name"].endswith(".decay") else 0.0) for g in groups)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for g in groups if g["name"].endswith("no_decay") for p in g["params"]}
    assert "language_model.model.norm.weight" in no_decay and "projector.0.bias" in no_decay
    assert "vision_tower.encoder.layers.0.layer_norm1.weight" in no_decay
    assert not any(n.endswith("q_proj.weight") for n in no_decay)
    counted = sum(len(g["params"]) for g in groups)
    assert counted == sum(1 for p in model.parameters() if p.requires_grad)
    model.set_tunable_parts(["mm_language_model"])
    assert {g["name"].split(".")[0] for g in model.parameter_groups(lr=1e-4)} == {"language_model"}


@torch.no_grad()
def test_save_load_round_trip_gives_same_logits(model, processor, tmp_path):
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = SlowFastForCausalLM.from_pretrained(tmp_path).eval()
    loaded_processor = SlowFastProcessor.from_pretrained(tmp_path)
    sample = nav_sample(num_memory=2)
    batch = loaded_processor.collate([loaded_processor.encode(sample)])
    assert torch.equal(batch["input_ids"], processor.collate([processor.encode(sample)])["input_ids"])
    assert torch.allclose(model(**batch).logits, loaded(**batch).logits, atol=1e-6)
    assert loaded.config.pooling == model.config.pooling and loaded.config.tokens_per_frame == 16


@pytest.fixture
def one_thread():
    # Tiny ops: one thread avoids oversubscription on a busy 2-core machine (3x faster there).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_tiny_preset_overfits_a_handful_of_samples(processor, one_thread):
    torch.manual_seed(0)
    model = SlowFastForCausalLM(SlowFastConfig.preset("tiny")).train()
    samples = [nav_sample(num_memory=m, actions=a, seed=s) for s, (m, a) in enumerate(
        [(0, ((1, 1, 2, 2), (1, 0))), (2, ((3, 3, 1, 1), (2, 0))), (0, ((2, 1, 1, 1),)), (1, ((1, 3, 0),))])]
    batch = processor.collate([processor.encode(s) for s in samples])
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=3e-3, weight_decay=0.0))
    for _ in range(80):
        loss = model(**batch, return_logits=False).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    # what it learnt is the actions: greedy decoding of the labelled positions reproduces them
    model.eval()
    with torch.no_grad():
        logits = model(**batch).logits
    labels = expanded_labels(model, batch)
    keep = labels[:, 1:] != IGNORE_INDEX
    assert torch.equal(logits[:, :-1].argmax(-1)[keep], labels[:, 1:][keep])
    assert F.cross_entropy(logits[:, :-1][keep], labels[:, 1:][keep]).item() < 0.05


@torch.no_grad()
def test_cached_forward_continues_a_prefix(model, processor):
    from transformers import DynamicCache

    encoded = processor.encode(nav_sample(num_memory=2))
    ids = encoded.input_ids
    split = int((ids == -200).nonzero()[-1])  # the last turn's frame goes in the second call
    full = model(input_ids=ids[None], images=encoded.images, num_memory=torch.tensor([2]))
    cache = DynamicCache()
    model(input_ids=ids[None, :split], images=encoded.images[:3], num_memory=torch.tensor([2]),
          past_key_values=cache, use_cache=True)
    rest = model(input_ids=ids[None, split:], images=encoded.images[3:], past_key_values=cache, use_cache=True)
    assert torch.allclose(rest.logits[0, -1], full.logits[0, -1], atol=1e-4)
