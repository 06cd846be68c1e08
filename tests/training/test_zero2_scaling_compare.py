"""scripts/zero2_scaling.py compare: the pooled scaling and the repeat-noise tolerance of issue 5's check."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "zero2_scaling.py"


def _load():
    spec = importlib.util.spec_from_file_location("zero2_scaling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, losses: list[float], rate: float) -> Path:
    folder.mkdir()
    rows = [{"step": i + 1, "loss": loss, "samples_per_s": rate} for i, loss in enumerate(losses)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def test_compare_pools_rates_and_measures_repeat_noise(tmp_path):
    script = _load()
    base = [4.0, 3.0, 2.0, 1.5, 1.2, 1.0, 1.0, 1.0]
    runs = [_run(tmp_path / "one1", base, 10.0), _run(tmp_path / "two1", [x * 1.02 for x in base], 18.0),
            _run(tmp_path / "one2", [x * 1.05 for x in base], 30.0), _run(tmp_path / "two2", base, 60.0)]
    script.compare(runs, tmp_path / "out.json")
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["scaling"] == pytest.approx((18 + 60) / 2 / ((10 + 30) / 2))  # pooled, not the mean ratio
    assert result["scaling_median_of_pairs"] == pytest.approx((1.8 + 2.0) / 2)
    assert result["repeat_noise_one_gpu"] == pytest.approx(0.05)
    assert result["repeat_noise_two_gpus"] == pytest.approx(0.02 / 1.02)
    assert result["max_rel_diff"] == pytest.approx(0.05 / 1.05)
    with pytest.raises(SystemExit, match="pairs"):
        script.compare(runs[:3], tmp_path / "odd.json")


def test_one_pair_has_no_repeat_noise(tmp_path):
    script = _load()
    runs = [_run(tmp_path / "one", [2.0] * 6, 10.0), _run(tmp_path / "two", [2.0] * 6, 19.0)]
    script.compare(runs, tmp_path / "out.json")
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["repeat_noise_one_gpu"] is None and result["scaling"] == pytest.approx(1.9)


def test_loss_curves_are_compared_over_the_first_50_steps(tmp_path):
    script = _load()
    head = [3.0 - 0.04 * i for i in range(50)]
    one = _run(tmp_path / "one", head + [1e-4] * 10, 10.0)  # a memorised store: tiny late losses
    two = _run(tmp_path / "two", [x * 1.01 for x in head] + [3e-4] * 10, 19.0)
    script.compare([one, two], tmp_path / "out.json")
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["max_rel_diff"] == pytest.approx(0.01)  # step 51 on (200% apart) is not counted
    assert result["pairs"][0]["steps"] == [60, 60]


def test_setup_writes_one_global_batch_the_zero_overrides_and_compile(tmp_path):
    from training.config import load_train_config
    from training.deepspeed_config import build_deepspeed_config

    script = _load()
    script.setup(tmp_path, 2, 7, 50_000_000, 16, 1, 0)
    one, two = load_train_config(tmp_path / "one.yaml"), load_train_config(tmp_path / "two.yaml")
    assert (one.micro_batch_size, one.grad_accum_steps, two.micro_batch_size, two.grad_accum_steps) == (16, 2, 16, 1)
    assert one.steps == two.steps == 7
    for config in (one, two):
        zero = build_deepspeed_config(config)["zero_optimization"]
        assert zero["reduce_bucket_size"] == 50_000_000 and zero["overlap_comm"] is False
        assert config.speed.compile_blocks
    script.setup(tmp_path / "default", 2, 7)  # no bucket: configs/deepspeed/zero2.json's
    default = load_train_config(tmp_path / "default" / "one.yaml")
    assert default.micro_batch_size == 8 and default.deepspeed_overrides == {}
    assert not default.speed.compile_blocks
    assert build_deepspeed_config(default)["zero_optimization"]["reduce_bucket_size"] == 200_000_000
    assert build_deepspeed_config(default)["zero_optimization"]["overlap_comm"] is True
