"""The whole loop at toy scale (configs/smoke.yaml): the project's integration test.

data -> expert store -> offline BC -> online DAgger (learner + an actor process) -> eval -> report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamvln.pipeline.config import load_run_config
from streamvln.pipeline.run import Pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # configs refer to configs/deepspeed/*.json
    config = load_run_config(ROOT / "configs" / "smoke.yaml", name="smoke_test")
    config.out_root = str(tmp_path)
    metrics = Pipeline(config).run()
    run_dir = tmp_path / "smoke_test"
    assert set(metrics["policies"]) == {"random", "forward", "trained"}
    for values in metrics["policies"].values():
        assert values["episodes"] == config.eval.episodes and 0.0 <= values["SR"] <= 1.0
    assert metrics["policies"]["forward"]["SR"] == 0.0  # never stops
    stages = json.loads((run_dir / "stages.json").read_text())
    assert stages["online"]["episodes"] >= config.online.min_new_episodes
    assert stages["online"]["versions"] >= 2
    # A stale episode (its policy more than max_policy_lag versions behind when it arrives) is pacing: the
    # learner outran the actor, which depends on the machine. Any other rejection is an error.
    assert set(stages["online"]["rejected"]) <= {"stale"}
    assert Path(metrics["trained_model"]).name.startswith("v")
    report = (run_dir / "report.md").read_text()
    assert "| trained |" in report and "episode.gif" in report
    for name in ("loss.png", "success.png", "episode.gif"):
        assert (run_dir / name).stat().st_size > 1000
    # Running the same name again skips every finished stage.
    again = Pipeline(config).run()
    assert again == metrics
    # A run folder copied without its store (GPU runs' stores are GBs) still gets its report.
    (run_dir / "store").rename(tmp_path / "moved_store")
    stages.pop("report")
    (run_dir / "stages.json").write_text(json.dumps(stages))
    assert Pipeline(config).run() == metrics
    storeless = (run_dir / "report.md").read_text()
    assert "episode store" in storeless and "| trained |" in storeless
