"""The shipped best checkpoint still plays its reported episodes: the README's commands on a fresh clone
(`streamvln dataset generate` + `streamvln eval --stop-bias 6`), on the first 20 of its 500 val_unseen
episodes (two houses; generation is deterministic, so they are the run's first 20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamvln.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "benchmark_mini_16k"
# The run's own eval (runs/benchmark_data16k_long_mini/eval/trained_stop_bias_6.jsonl), episodes 1-20.
FIRST_20 = {"SR": 0.45, "NE": 3.0452347286373413, "SPL": 0.44935319117909545}


@pytest.mark.slow
def test_shipped_best_checkpoint_reproduces_its_first_episodes(tmp_path):
    metrics = json.loads((CHECKPOINT / "metrics.json").read_text())
    assert metrics["policies"]["trained_stop_bias_6"]["SR"] == pytest.approx(0.57)  # the README's headline row
    data = tmp_path / "data"
    assert main(["dataset", "generate", "--out", str(data), "--split", "val_unseen", "--episodes", "20",
                 "--seed", "0", "--episodes-per-house", "10", "--min-geodesic", "3.5", "--max-geodesic", "6.0"]) == 0
    summary = tmp_path / "summary.json"
    assert main(["eval", "--data", str(data), "--split", "val_unseen", "--policy", f"checkpoint:{CHECKPOINT}",
                 "--workers", "1", "--max-steps", "500", "--width", "112", "--height", "112", "--hfov", "90.0",
                 "--stop-bias", "6", "--results", str(tmp_path / "eval.jsonl"), "--json", str(summary)]) == 0
    aggregate = json.loads(summary.read_text())["aggregate"]
    for key, value in FIRST_20.items():
        assert aggregate[key] == pytest.approx(value, abs=1e-6), key
