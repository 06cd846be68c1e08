"""`streamvln bench actor --actors N`: actor processes feeding one inference server (CPU, tiny)."""

from __future__ import annotations

import argparse

import pytest

from streamvln.benchmarks import actor as actor_bench

pytestmark = pytest.mark.slow


def test_two_actor_processes_feed_one_batched_server():
    parser = argparse.ArgumentParser()
    actor_bench.add_arguments(parser)
    args = parser.parse_args(["--actors", "2", "--envs", "2", "--preset", "tiny", "--size", "32", "--episodes", "3",
                              "--startup", "120", "--seconds", "3"])
    result = actor_bench.run(args)
    assert [row["actor"] for row in result["per_actor"]] == ["actor-0", "actor-1"]
    assert all(row["steps"] > 0 and row["seconds"] > 0 for row in result["per_actor"])
    assert result["steps_per_s_total"] == pytest.approx(sum(row["steps_per_s"] for row in result["per_actor"]))
    assert result["engine_calls"] > 0 and 1 <= result["batch_size_mean"] <= result["batch_size_max"] <= 4
    assert 0.0 < result["engine_busy_frac"] <= 1.0
