"""Optimizer groups with equal settings are merged before DeepSpeed sees them (training.model_setup)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from training.checkpoint import check_optimizer_groups
from training.config import OptimConfig, TrainConfig
from training.model_setup import apply_tunable_parts, merge_equal_groups, parameter_groups

ALL_PARTS = ("mm_vision_tower", "mm_mlp_adapter", "mm_language_model")


@pytest.fixture(scope="module")
def model():
    from training.run import build_model_and_processor

    model, _ = build_model_and_processor(TrainConfig(model_preset="tiny"))
    apply_tunable_parts(model, ALL_PARTS)
    return model


def _ids(groups):
    return [id(p) for group in groups for p in group["params"]]


def test_equal_lrs_without_decay_give_one_group_of_every_trainable_parameter(model):
    groups = merge_equal_groups(parameter_groups(model, OptimConfig(lr=1e-3, vision_tower_lr=1e-3)))
    assert [g["name"] for g in groups] == ["vision_tower+projector+language_model"]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(_ids(groups)) == sorted(trainable) and len(_ids(groups)) == len(trainable)
    assert groups[0]["lr"] == 1e-3 and groups[0]["weight_decay"] == 0.0


def test_parts_with_their_own_lr_or_decay_stay_apart(model):
    separate = parameter_groups(model, OptimConfig(lr=1e-3, vision_tower_lr=2e-4, weight_decay=0.1))
    groups = merge_equal_groups(separate)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("vision_tower.decay", 2e-4, 0.1), ("vision_tower.no_decay", 2e-4, 0.0),
        ("projector+language_model.decay", 1e-3, 0.1), ("projector+language_model.no_decay", 1e-3, 0.0)]
    assert sorted(_ids(groups)) == sorted(_ids(separate))


def test_merged_groups_take_the_same_adamw_steps(model):
    torch.manual_seed(0)
    separate_model, merged_model = copy.deepcopy(model), copy.deepcopy(model)
    settings = OptimConfig(lr=1e-3, vision_tower_lr=1e-3, weight_decay=0.1)
    optimizers = [torch.optim.AdamW(groups, lr=1e-3) for groups in (
        [{k: v for k, v in g.items() if k != "name"} for g in parameter_groups(separate_model, settings)],
        [{k: v for k, v in g.items() if k != "name"} for g in merge_equal_groups(parameter_groups(merged_model, settings))])]
    assert [len(o.param_groups) for o in optimizers] == [6, 2]
    pairs = [(a, b) for a, b in zip(separate_model.parameters(), merged_model.parameters()) if a.requires_grad]
    before = [a.detach().clone() for a, _ in pairs]
    for _ in range(3):
        for a, b in pairs:
            a.grad = torch.randn_like(a)
            b.grad = a.grad.clone()
        for optimizer in optimizers:
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in pairs)
    assert all(not torch.equal(a, old) for (a, _), old in zip(pairs, before))  # the steps moved every weight


def test_a_checkpoint_with_other_groups_is_refused_by_name():
    check_optimizer_groups(None, ["lm"], Path("ck"))  # saved before groups were recorded: DeepSpeed decides
    check_optimizer_groups(["lm"], ["lm"], Path("ck"))
    with pytest.raises(ValueError, match=r"optimizer groups \['lm', 'lm_no_decay'\], this run \['lm\+lm_no_decay'\]"):
        check_optimizer_groups(["lm", "lm_no_decay"], ["lm+lm_no_decay"], Path("ck"))
