"""Issue 8's machinery: benchmark config variants, eval switches, maps, the results table, shipping."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from envs.sensors import SensorConfig
from streamvln.pipeline.config import load_run_config
from streamvln.pipeline.maps import pick_episodes
from streamvln.pipeline.results import results_markdown, ship_checkpoint, table_rows
from streamvln.pipeline.run import Pipeline

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK = ROOT / "configs" / "benchmark.yaml"


def test_benchmark_rows_are_expressible():
    full = load_run_config(BENCHMARK)
    assert full.data.val_episodes >= 500 and full.data.val_seen_episodes > 0
    assert full.online.enabled and not full.qa.enabled and not full.instruction_blind
    assert {v.scheme for v in full.eval.variants} == {"streaming", "original"}
    assert any(v.voxel_pruning for v in full.eval.variants)
    bc = load_run_config(BENCHMARK, variant="bc")
    assert bc.name == "benchmark_bc" and not bc.online.enabled and not bc.eval.variants
    blind = load_run_config(BENCHMARK, variant="blind")
    assert blind.instruction_blind and not blind.online.enabled
    assert blind.train["model_preset"] == full.train["model_preset"]  # deep merge keeps the rest of train
    qa = load_run_config(BENCHMARK, variant="qa")
    assert qa.qa.enabled and qa.online.enabled and qa.name == "benchmark_qa"


def test_every_benchmark_variant_loads():
    names = yaml.safe_load(BENCHMARK.read_text())["variants"]
    assert {"data8k", "data16k", "data8k_i2"} <= set(names)
    for name in names:
        assert load_run_config(BENCHMARK, variant=name).name == f"benchmark_{name}"


def test_data_scaling_variants_change_only_the_training_side():
    full = load_run_config(BENCHMARK)
    for name, episodes in (("data8k", 8000), ("data16k", 16000)):
        run = load_run_config(BENCHMARK, variant=name)
        assert run.data.train_episodes == episodes and not run.online.enabled
        # the evaluation episodes (val splits, their seed and distances) are the benchmark's own
        assert dataclasses.replace(run.data, train_episodes=full.data.train_episodes) == full.data
        assert run.train["steps"] == 6000 and run.sensors == full.sensors
    bc, dagger = load_run_config(BENCHMARK, variant="data8k"), load_run_config(BENCHMARK, variant="data8k_i2")
    assert dagger.data == bc.data and dagger.train == bc.train  # the BC model it starts from is data8k's
    assert dagger.online.enabled and dagger.online.intervene_after == 2


def test_variant_and_switch_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        load_run_config(BENCHMARK, variant="nope")
    bad = yaml.safe_load(BENCHMARK.read_text())
    bad["train"]["data"]["blank_instructions"] = True  # with online DAgger still on
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="instruction-blind"):
        load_run_config(path)
    bad["train"]["data"]["blank_instructions"] = False
    bad["eval"]["variants"] = [{"label": "x", "scheme": "tumbling"}]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="scheme"):
        load_run_config(path)
    bad["eval"]["variants"] = [{"label": "x", "stop_bias": "high"}]
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="stop_bias"):
        load_run_config(path)
    bad["eval"]["variants"] = [{"label": "calibrated", "stop_bias": 1.5}]
    path.write_text(yaml.safe_dump({**bad, "out_root": str(tmp_path)}))  # Pipeline creates its run folder
    jobs = {label: settings for label, _, settings in Pipeline(load_run_config(path)).eval_jobs("val_unseen")}
    assert jobs["calibrated"].stop_bias == 1.5 and jobs["trained"].stop_bias == 0.0
    bad["eval"]["variants"] = []
    bad["online"]["lr"] = 0.0
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="online.lr"):
        load_run_config(path)


def test_pick_episodes_takes_best_success_and_worst_failure():
    rows = [{"episode_id": 1, "SR": 1.0, "SPL": 0.5, "NE": 1.0}, {"episode_id": 2, "SR": 1.0, "SPL": 0.9, "NE": 2.0},
            {"episode_id": 3, "SR": 0.0, "SPL": 0.0, "NE": 4.0}, {"episode_id": 4, "SR": 0.0, "SPL": 0.0, "NE": 7.0}]
    picked = pick_episodes(rows)
    assert picked["success"]["episode_id"] == 2 and picked["failure"]["episode_id"] == 4
    assert set(pick_episodes(rows[2:])) == {"failure"}


def _fake_run(directory: Path, name: str, trained_sr: float) -> Path:
    run = directory / name
    run.mkdir(parents=True)
    values = {"NE": 3.0, "OS": 0.5, "SR": trained_sr, "SPL": trained_sr, "TL": 4.0, "nDTW": 0.6, "SDTW": 0.1,
              "steps": 40.0, "episodes": 10}
    policies = {"random": {**values, "SR": 0.0}, "trained": values}
    (run / "metrics.json").write_text(json.dumps({"run": name, "policies": policies,
                                                  "splits": {"val_unseen": policies},
                                                  "command": f"streamvln run --variant {name}"}))
    return run


def test_results_table_lists_each_run_once_and_baselines_once(tmp_path):
    runs = [_fake_run(tmp_path, "bench_bc", 0.25), _fake_run(tmp_path, "bench_dagger", 0.5)]
    rows = table_rows(runs)
    assert [r["row"] for r in rows] == ["random", "bench_bc: trained", "bench_dagger: trained"]
    text = results_markdown(runs)
    assert "| bench_dagger: trained | 10 | 3.00 | 50.0 | 50.0 | 50.0 | 60.0 |" in text
    assert "`streamvln run --variant bench_bc`" in text
    with pytest.raises(ValueError, match="val_seen"):
        results_markdown(runs, "val_seen")


def _toy_config(tmp_path: Path) -> Path:
    config = {
        "name": "toy", "out_root": str(tmp_path / "runs"), "seed": 0,
        "data": {"train_episodes": 6, "val_episodes": 2, "val_seen_episodes": 2, "episodes_per_house": 6,
                 "min_geodesic_m": 2.0, "max_geodesic_m": 4.0},
        "sensors": {"width": 64, "height": 64, "hfov_deg": 90.0},
        "train": {"model_preset": "tiny", "tunable_parts": ["mm_mlp_adapter", "mm_language_model"],
                  "deepspeed_config": "configs/deepspeed/zero2.json", "micro_batch_size": 2, "bf16": False,
                  "steps": 3, "checkpoint_every": 0, "optim": {"lr": 1e-3, "vision_tower_lr": 2e-4},
                  "schedule": {"kind": "constant", "warmup_steps": 1},
                  "data": {"num_frames": 16, "num_workers": 0},
                  "speed": {"gradient_checkpointing": False, "assistant_only_logits": True, "packing": True}},
        "online": {"enabled": False},
        "qa": {"enabled": True, "weight": 0.5, "scenes": 1, "paths_per_scene": 1, "frames_per_path": 4,
               "questions_per_path": 2},
        "eval": {"policies": ["random", "offline", "trained"], "splits": ["val_unseen", "val_seen"], "episodes": 2,
                 "max_steps": 16, "workers": 1, "gif": False,
                 "variants": [{"label": "trained_original_window", "scheme": "original"},
                              {"label": "trained_voxel_pruning", "voxel_pruning": True}]},
        "variants": {"blind": {"qa": {"enabled": False}, "train": {"data": {"blank_instructions": True}},
                               "eval": {"variants": [], "splits": ["val_unseen"]}}},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_rows_table_and_shipped_checkpoint_end_to_end(tmp_path, monkeypatch):
    from agent.streaming.engine import StreamingEngine
    from streamvln.pipeline.evaluation import EvalSettings, evaluate_policy
    from streamvln.pipeline.run import Pipeline

    monkeypatch.chdir(ROOT)  # configs/deepspeed/*.json
    path = _toy_config(tmp_path)
    full = Pipeline(load_run_config(path)).run()
    blind = Pipeline(load_run_config(path, variant="blind")).run()
    run_dir, blind_dir = tmp_path / "runs" / "toy", tmp_path / "runs" / "toy_blind"
    assert set(full["splits"]) == {"val_unseen", "val_seen"} and not full["instruction_blind"]
    rows = {"random", "offline", "trained", "trained_original_window", "trained_voxel_pruning"}
    assert set(full["policies"]) == rows
    assert full["policies"]["offline"] == full["policies"]["trained"]  # no online phase: the same model
    assert blind["instruction_blind"] and set(blind["policies"]) == {"random", "offline", "trained"}
    stages = json.loads((run_dir / "stages.json").read_text())
    assert stages["qa"]["records"] >= 1 and "online" not in stages
    losses = [json.loads(line) for line in (run_dir / "offline" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/scene_qa" in row for row in losses)  # scene QA was mixed into training
    assert stages["eval"]["maps"] and all((run_dir / name).stat().st_size > 1000
                                          for name in stages["eval"]["maps"].values())
    table = results_markdown([run_dir, blind_dir])
    assert "| toy: trained_original_window |" in table and "| toy_blind: trained |" in table
    assert "| toy: offline |" in table
    assert table.count("| random |") == 1

    shipped = ship_checkpoint(run_dir, tmp_path / "checkpoints" / "toy_tiny")
    assert (shipped / "model.safetensors").is_file() and "streamvln eval" in (shipped / "README.md").read_text()
    # No online phase: the trained model is the offline (BC) one, and the README names that row.
    assert "Reproduce the offline row" in (shipped / "README.md").read_text()
    other = shutil.copytree(run_dir / "offline" / "model", tmp_path / "online_model")
    assert "Reproduce the trained row" in (ship_checkpoint(run_dir, tmp_path / "ck2", model=other) / "README.md").read_text()
    with pytest.raises(ValueError, match="MB"):
        ship_checkpoint(run_dir, tmp_path / "checkpoints" / "too_big", max_mb=0.5)
    # A fresh clone's eval of the shipped folder reproduces the run's trained row (deterministic policy).
    settings = EvalSettings(str(run_dir / "data"), "val_unseen", SensorConfig(64, 64, 90.0), 16, 0, 1, 2)
    summary = evaluate_policy(f"checkpoint:{shipped}", settings, tmp_path / "shipped.jsonl")
    assert np.isclose(summary["aggregate"]["NE"], full["policies"]["trained"]["NE"])
    engine = StreamingEngine.from_checkpoint(shipped)  # `streamvln demo --checkpoint`: the trained window
    assert engine.agent.config.num_frames == json.loads((shipped / "sample_window.json").read_text())["num_frames"]


def test_second_round_variants_start_from_the_shipped_model_and_differ_only_in_beta():
    dagger, control = load_run_config(BENCHMARK, variant="dagger_r2"), load_run_config(BENCHMARK, variant="expert_r2")
    assert dagger.start_model == control.start_model == "checkpoints/benchmark_tiny_8k_dagger"
    assert dagger.data.train_episodes == 16000 and dagger.online.steps == 3000
    assert dagger.online.dagger_p == 0.75 and control.online.dagger_p == 1.0
    assert dataclasses.replace(control.online, dagger_p=dagger.online.dagger_p) == dagger.online
    assert control.data == dagger.data and control.train == dagger.train


def test_start_model_stands_in_for_the_offline_stage(tmp_path):
    values = yaml.safe_load(_toy_config(tmp_path).read_text())
    path = tmp_path / "start.yaml"
    path.write_text(yaml.safe_dump({**values, "start_model": str(tmp_path / "nowhere")}))
    with pytest.raises(ValueError, match=r"start_model .* missing \['config.json'"):
        load_run_config(path)
    shipped = ROOT / "checkpoints" / "benchmark_tiny_8k_dagger"
    path.write_text(yaml.safe_dump({**values, "start_model": str(shipped)}))
    pipeline = Pipeline(load_run_config(path))
    info = pipeline.stage_offline()
    model = Path(info["model"])
    assert info["steps"] == 0 and info["start_model"] == str(shipped)
    assert (model / "model.safetensors").read_bytes() == (shipped / "model.safetensors").read_bytes()
    assert not (pipeline.dir / "offline" / "metrics.jsonl").exists()  # nothing was trained
    # the online stage and the offline eval row read the copied model
    assert pipeline.online_train_config().model_path == str(model)
    assert pipeline.trained_model() == model


def test_shipped_bc_only_run_names_the_row_its_table_has(tmp_path):
    """A BC-only run evaluated as `policies: [trained]` (data16k_long_mini) ships its offline model: the
    README must point at the trained row, the only one in its table."""
    from streamvln.pipeline.results import MODEL_FILES

    run_dir = tmp_path / "runs" / "bc_only"
    model = run_dir / "offline" / "model"
    model.mkdir(parents=True)
    for name in MODEL_FILES:
        (model / name).write_text("{}")
    row = {"NE": 3.0, "OS": 0.6, "SR": 0.5, "SPL": 0.45, "nDTW": 0.7, "episodes": 4}
    (run_dir / "metrics.json").write_text(json.dumps({"run": "bc_only", "trained_model": str(model),
                                                       "policies": {"trained": row}}))
    readme = (ship_checkpoint(run_dir, tmp_path / "checkpoints" / "bc_only") / "README.md").read_text()
    assert "Reproduce the trained row" in readme and "| trained | 4 |" in readme
