"""The learner's logger: metrics.jsonl next to the TensorBoard events, the progress bar's postfix."""

from __future__ import annotations

import json

from training.logging import TrainLogger


def test_logged_scalars_reach_the_jsonl_and_the_bar_shows_the_first_groups_lr(tmp_path):
    logger = TrainLogger(tmp_path / "tensorboard", total_steps=4, progress=True)
    scalars = {"loss": 1.25, "lr/vision_tower+projector+language_model": 1e-3, "lr/other": 5e-4, "grad_norm": 0.5}
    logger.log(1, scalars)
    postfix = logger._bar.postfix
    logger.close()
    assert [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [{"step": 1, **scalars}]
    assert "lr=0.001" in postfix and "loss=1.25" in postfix and "grad_norm=0.5" in postfix
    assert "5e-04" not in postfix and "0.0005" not in postfix
