"""Assistant-only cross-entropy and padding-free packing against the Hugging Face reference."""

from __future__ import annotations

import pytest
import torch
from learner_fixtures import TokenDataset, collate_tokens, tiny_lm

from training.config import SpeedConfig
from training.loss import assistant_only_cross_entropy, full_logits_cross_entropy
from training.modules import CausalLMParts, TrainingModule
from training.packing import pack_padded


@pytest.fixture(scope="module")
def model_and_batch():
    model = tiny_lm(seed=3).eval()
    batch = collate_tokens([TokenDataset(8, seed=5)[i] for i in range(4)])
    return model, batch


def test_assistant_only_loss_equals_hf_loss_and_gradients(model_and_batch):
    model, batch = model_and_batch
    inputs = {k: batch[k] for k in ("input_ids", "labels", "attention_mask")}
    reference = model(**inputs).loss
    ref_grad = torch.autograd.grad(reference, model.lm_head.weight)[0]

    hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    ours = assistant_only_cross_entropy(hidden, batch["labels"], model.lm_head, chunk_tokens=5)
    grad = torch.autograd.grad(ours.loss, model.lm_head.weight)[0]
    assert ours.loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(grad, ref_grad, atol=1e-6)
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert ours.token_losses.shape == (labelled,) and ours.rows.shape == (labelled,)


def test_full_logits_path_matches_too(model_and_batch):
    model, batch = model_and_batch
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ours = full_logits_cross_entropy(logits, batch["labels"])
    reference = model(**{k: batch[k] for k in ("input_ids", "labels", "attention_mask")}).loss
    assert ours.loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_no_labelled_token_gives_zero_loss_with_a_graph(model_and_batch):
    model, batch = model_and_batch
    hidden = model.model(input_ids=batch["input_ids"]).last_hidden_state
    losses = assistant_only_cross_entropy(hidden, torch.full_like(batch["labels"], -100), model.lm_head)
    assert losses.loss.item() == 0.0 and losses.loss.requires_grad


def test_pack_padded_restarts_positions_and_masks_sample_starts():
    embeds = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])  # right- and left-padded rows
    labels = torch.tensor([[5, 6, 7, -100], [-100, 8, 9, 10]])
    packed = pack_padded(embeds, mask, labels)
    assert packed.inputs_embeds.flatten().tolist() == [0, 1, 2, 5, 6, 7]
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1, 2]]
    assert packed.labels.tolist() == [[-100, 6, 7, -100, 9, 10]]
    assert packed.sample_of_token.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="empty sample"):
        pack_padded(embeds, torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]]), labels)


@pytest.mark.parametrize("packing", [False, True])
def test_training_module_split_path_equals_plain_hf_path(model_and_batch, packing):
    """Packing (block-diagonal attention from restarting positions) gives the padded batch's loss."""
    model, batch = model_and_batch
    plain = TrainingModule(model, SpeedConfig(assistant_only_logits=False))(batch)
    speed = SpeedConfig(assistant_only_logits=True, packing=packing)
    split = TrainingModule(model, speed, CausalLMParts(model))(batch)
    assert split.loss.item() == pytest.approx(plain.loss.item(), rel=1e-5)
    assert int(split.num_tokens) == int(batch["attention_mask"].sum())  # no padding processed
    assert sorted(set(split.rows.tolist())) == [0, 1, 2, 3]


def test_sdpa_varlen_attention_gives_the_padded_batch_loss_and_gradients(model_and_batch):
    import copy

    from training.attention import SDPA_VARLEN, set_language_model_attention

    model, batch = model_and_batch
    reference = TrainingModule(model, SpeedConfig(assistant_only_logits=False))(batch).loss
    reference_grad = torch.autograd.grad(reference, model.model.layers[0].self_attn.q_proj.weight)[0]
    varlen_model = copy.deepcopy(model)
    set_language_model_attention(varlen_model, SDPA_VARLEN)
    speed = SpeedConfig(packing=True, attn_implementation=SDPA_VARLEN)
    loss = TrainingModule(varlen_model, speed, CausalLMParts(varlen_model))(batch).loss
    grad = torch.autograd.grad(loss, varlen_model.model.layers[0].self_attn.q_proj.weight)[0]
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(grad, reference_grad, atol=1e-6)
    # Without packed bounds (a padded batch) it is plain SDPA with the padding mask.
    unpacked = TrainingModule(varlen_model, SpeedConfig(), CausalLMParts(varlen_model))(batch).loss
    assert unpacked.item() == pytest.approx(reference.item(), rel=1e-5)
    with pytest.raises(ValueError, match="set speed.packing: true"):
        SpeedConfig(attn_implementation=SDPA_VARLEN).validate()


def test_split_path_without_adapter_is_refused():
    with pytest.raises(ValueError, match="need a ModelParts adapter"):
        TrainingModule(tiny_lm(), SpeedConfig(packing=True), None)


@pytest.mark.parametrize("left_padded", [False, True])
def test_host_label_count_is_what_the_packed_loss_sees(left_padded):
    from training.loss import shifted_label_positions
    from training.packing import packed_label_count

    # Rows of 6 with 4, 6 and 3 valid tokens; the first valid token of the second and third samples is
    # labelled (packing ignores it), so with left padding a per-row labels[:, 1:] count is off by one.
    labels = torch.tensor([[-100, 5, 6, -100, -100, -100], [7, -100, 8, 9, -100, 4], [3, 2, -100, -100, -100, -100]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6, [1, 1, 1, 0, 0, 0]])
    if left_padded:  # the same samples, padding on the left
        labels = torch.stack([torch.cat([row[m.bool()], row[~m.bool()]]).roll(int((~m.bool()).sum())) for row, m in zip(labels, mask)])
        mask = mask.flip(1)
    embeds = torch.randn(3, 6, 4)
    packed = pack_padded(embeds, mask, labels)
    rows, cols, targets = shifted_label_positions(packed.labels)
    count = packed_label_count(labels, mask)
    assert count == rows.numel() == 6  # 5, 6 | 8, 9, 4 | 2
    assert int((labels[:, 1:] != -100).sum()) == (7 if left_padded else 6)
    assert [t.tolist() for t in shifted_label_positions(packed.labels, count)] == [rows.tolist(), cols.tolist(), targets.tolist()]
    with pytest.raises(ValueError, match="host label count 5 != 6"):
        shifted_label_positions(packed.labels, 5)


def test_packed_forward_takes_the_host_count_and_gives_the_same_loss(model_and_batch):
    model, batch = model_and_batch
    parts = CausalLMParts(model)
    module = TrainingModule(model, SpeedConfig(packing=True, assistant_only_logits=True, gradient_checkpointing=False), parts)
    info = parts.host_info(batch)
    assert info["host_labelled"] == int((batch["labels"][:, 1:] != -100).sum())  # first tokens unlabelled here
    with torch.no_grad():
        with_count = module({**batch, **info}).loss
        without = module({**batch, "host_lengths": info["host_lengths"]}).loss
    assert with_count.item() == without.item()
