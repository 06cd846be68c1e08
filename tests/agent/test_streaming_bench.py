"""`streamvln bench agent` on the CPU with the tiny preset: every scheme, the logit check, batching."""

from __future__ import annotations

import json

import pytest

from streamvln.cli import main


@pytest.mark.slow
def test_bench_agent_reports_schemes_logit_diff_and_batching(tmp_path, capsys):
    out = tmp_path / "agent.json"
    code = main(["bench", "agent", "--json", str(out), "--steps", "40", "--batch-steps", "4", "--sessions", "2",
                 "--warmup-calls", "1", "--threads", "1", "--floor", "on"])
    assert code == 0
    result = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == result
    assert set(result["schemes"]) == {"streaming", "original", "recompute"}
    for scheme in result["schemes"].values():
        assert scheme["calls"] == 10  # full 4-action chunks: 40 steps / 4
        assert scheme["median_ms"] > 0 and scheme["p99_ms"] >= scheme["median_ms"]
        assert len(scheme["per_window_median_ms"]) == 2  # windows of 32 steps
    assert result["schemes"]["streaming"]["prefetch_median_ms"] is not None
    assert result["schemes"]["original"]["stats"]["frames_encoded"] > 10  # memory re-encoded from pixels
    assert result["max_abs_logit_diff"]["windows"] == 2
    assert result["max_abs_logit_diff"]["allowed_ids"] < 1e-4
    assert result["batched"]["sessions"] == 2 and result["batched"]["batched_actions_per_s"] > 0
    floor = result["floor"]  # the weight-read floor of a call: 4 passes over the decoder's linear weights
    assert floor["passes_per_call"] == 4 and floor["linear_pass_ms"] > 0 and floor["gemm_tflops"] > 0
    assert floor["call_floor_ms"] > result["schemes"]["streaming"]["breakdown_median_ms"]["encode"]
    assert floor["speedup_at_floor"] == pytest.approx(
        result["schemes"]["recompute"]["mean_ms"] / floor["call_floor_ms"])
