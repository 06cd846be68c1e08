"""`streamvln bench agent` on the CPU with the tiny preset: every scheme, the logit check, batching."""

from __future__ import annotations

import json
from pathlib import Path

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
    batched = result["batched"]
    assert batched["sessions"] == 2 and batched["batched_actions_per_s"] > 0
    one_call, one_round = batched["single_call_median_ms"], batched["batched_call_median_ms"]
    assert one_call["prefilled_tokens_per_round"] >= result["tokens_per_frame"]  # a turn holds a frame
    assert one_round["prefilled_tokens_per_round"] >= 2 * result["tokens_per_frame"]  # 2 sessions' turns
    ceiling = batched["ceiling"]  # a round at the GEMM floor vs the measured single-session call
    assert ceiling["round_compute_floor_ms"] == pytest.approx(
        one_round["prefilled_tokens_per_round"] / 1000 * result["floor"]["prefill_compute_ms_per_1k_tokens"]
        + one_round["encode"])
    assert ceiling["ratio_ceiling"] == pytest.approx(2 * one_call["total"] / ceiling["round_compute_floor_ms"])
    streaming = result["schemes"]["streaming"]  # speculative by default: fewer passes than 4 per call
    assert streaming["decoding"] == "speculative" and 1 <= streaming["passes_per_call"] <= 4
    stats = streaming["stats"]  # every accepted draft saves one of greedy's 4 passes
    assert streaming["passes_per_call"] == pytest.approx(4 - stats["accepted"] / stats["calls"])
    assert result["schemes"]["recompute"]["decoding"] == "speculative"  # the baseline decodes the same way
    floor = result["floor"]  # the weight-read floor of a call: its measured passes over the linear weights
    assert floor["passes_per_call"] == streaming["passes_per_call"] and floor["greedy_passes_per_call"] == 4
    assert floor["linear_pass_ms"] > 0 and floor["gemm_tflops"] > 0
    assert floor["call_floor_ms"] > result["schemes"]["streaming"]["breakdown_median_ms"]["encode"]
    assert floor["speedup_at_floor"] == pytest.approx(
        result["schemes"]["recompute"]["mean_ms"] / floor["call_floor_ms"])


@pytest.mark.slow
def test_bench_agent_compares_decodings(tmp_path):
    out = tmp_path / "agent.json"
    code = main(["bench", "agent", "--json", str(out), "--steps", "8", "--batch-steps", "4", "--sessions", "2",
                 "--warmup-calls", "1", "--threads", "1", "--floor", "off", "--schemes", "streaming,recompute",
                 "--decoding", "greedy,speculative", "--sequential-baseline", "off"])
    assert code == 0
    result = json.loads(out.read_text())
    greedy, speculative = result["decodings"]["greedy"], result["decodings"]["speculative"]
    assert result["schemes"] == greedy["schemes"]  # the first decoding is also reported top-level
    for name in ("streaming", "recompute"):
        assert greedy["schemes"][name]["passes_per_call"] == 4  # full chunks: prefill + 3 decode steps
        assert greedy["schemes"][name]["acceptance_rate"] is None
        assert speculative["schemes"][name]["passes_per_call"] <= 4
        assert speculative["schemes"][name]["acceptance_rate"] is not None
    assert speculative["batched"]["batched_call_median_ms"]["passes_per_call"] <= 4
    assert speculative["max_abs_logit_diff"]["allowed_ids"] < 1e-4
    assert "speedup_mean_vs_recompute" in speculative


@pytest.mark.slow
def test_bench_agent_navigation_acceptance_with_a_checkpoint(tmp_path):
    checkpoint = Path(__file__).resolve().parents[2] / "checkpoints" / "benchmark_tiny_bc"
    if not (checkpoint / "model.safetensors").is_file():
        pytest.skip("the shipped checkpoint is not in this checkout")
    out = tmp_path / "agent.json"
    code = main(["bench", "agent", "--json", str(out), "--checkpoint", str(checkpoint), "--nav-episodes", "1",
                 "--draft", "repeat_last", "--steps", "8", "--batch-steps", "4", "--sessions", "1",
                 "--warmup-calls", "1", "--threads", "1", "--floor", "off", "--schemes", "streaming",
                 "--sequential-baseline", "off"])
    assert code == 0
    navigation = json.loads(out.read_text())["navigation"]
    greedy, speculative = navigation["greedy"], navigation["speculative_repeat_last"]
    assert navigation["episodes"] == 1 and speculative["episodes_identical_to_greedy"] == 1
    assert speculative["calls"] == greedy["calls"] > 0
    assert speculative["passes_per_call"] < greedy["passes_per_call"]  # a trained policy repeats actions
    assert 0 < speculative["acceptance_rate"] <= 1 and greedy["acceptance_rate"] is None
    tree = navigation["tree"]
    assert tree["episodes_identical_to_greedy"] == 1 and tree["calls"] == greedy["calls"]
    assert tree["passes_per_call"] == 1.0 and tree["seconds"] > 0
