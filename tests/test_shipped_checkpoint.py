"""The shipped benchmark checkpoints still play their reported episodes: each README's commands on a fresh
clone (`streamvln dataset generate` + `streamvln eval --stop-bias B`), on the first 20 of the 500 val_unseen
episodes (two houses; generation is deterministic, so they are the runs' first 20)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamvln.cli import main

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
# (folder, STOP bias, its val_unseen SR over 500 episodes, the run's own eval over episodes 1-20:
# runs/<run>/eval/trained_stop_bias_<B>.jsonl)
SHIPPED = [
    ("benchmark_mini_dagger_online", 4, 0.626, {"SR": 0.65, "NE": 2.432350047914725, "SPL": 0.6484105921471698}),
    ("benchmark_mini_dagger_a12w4", 4, 0.614, {"SR": 0.65, "NE": 2.721944856227691, "SPL": 0.645356809620122}),
    ("benchmark_mini_expert_online", 5, 0.598, {"SR": 0.55, "NE": 2.7467173471249673, "SPL": 0.5475563951381615}),
    ("benchmark_mini_16k", 6, 0.57, {"SR": 0.45, "NE": 3.0452347286373413, "SPL": 0.44935319117909545}),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, bias, headline_sr, first_20", SHIPPED, ids=[s[0] for s in SHIPPED])
def test_shipped_checkpoint_reproduces_its_first_episodes(tmp_path, name, bias, headline_sr, first_20):
    checkpoint = CHECKPOINTS / name
    metrics = json.loads((checkpoint / "metrics.json").read_text())
    assert metrics["policies"][f"trained_stop_bias_{bias}"]["SR"] == pytest.approx(headline_sr)  # README's row
    data = tmp_path / "data"
    assert main(["dataset", "generate", "--out", str(data), "--split", "val_unseen", "--episodes", "20",
                 "--seed", "0", "--episodes-per-house", "10", "--min-geodesic", "3.5", "--max-geodesic", "6.0"]) == 0
    summary = tmp_path / "summary.json"
    assert main(["eval", "--data", str(data), "--split", "val_unseen", "--policy", f"checkpoint:{checkpoint}",
                 "--workers", "1", "--max-steps", "500", "--width", "112", "--height", "112", "--hfov", "90.0",
                 "--stop-bias", str(bias), "--results", str(tmp_path / "eval.jsonl"), "--json", str(summary)]) == 0
    aggregate = json.loads(summary.read_text())["aggregate"]
    for key, value in first_20.items():
        assert aggregate[key] == pytest.approx(value, abs=1e-6), key
