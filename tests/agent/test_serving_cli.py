"""`streamvln serve` / `serve keygen` / `client` / `bench serve` wiring, through streamvln.cli.main."""

import json
import signal

import numpy as np
import pytest

from agent.serving.client import AgentClient
from agent.serving.engine import ScriptedEngine
from agent.serving.server import AgentServer, ServerConfig
from streamvln.benchmarks import serve as serve_benchmark
from streamvln.cli import main


def test_keygen_writes_keys_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["serve", "keygen", str(tmp_path / "keys"), "--clients", "robot", "laptop"]) == 0
    assert (tmp_path / "keys" / "server.key_secret").is_file()
    assert sorted(p.name for p in (tmp_path / "keys" / "authorized_clients").iterdir()) == ["laptop.key", "robot.key"]
    secret_before = (tmp_path / "keys" / "server.key_secret").read_bytes()
    assert main(["serve", "keygen", str(tmp_path / "keys")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "keys" / "server.key_secret").read_bytes() == secret_before


def test_serve_refuses_a_remote_bind_without_the_flag(capsys):
    assert main(["serve", "--scripted", "--bind", "tcp://0.0.0.0:5555"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_client_command_drives_episodes_and_prints_metrics(tmp_path, capsys):
    with AgentServer(ScriptedEngine(), ServerConfig(bind="tcp://127.0.0.1:*")) as server:
        out = tmp_path / "client.json"
        code = main(["client", "--address", server.endpoint, "--episodes", "1", "--max-steps", "20",
                     "--width", "64", "--height", "64", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["episodes"] == 1 and result["metrics"]["steps"] == 20  # scripted engine never stops
    assert result["latency"]["calls"] == 5 and result["latency"]["round_trip_ms_median"] > 0
    assert "episode 1: 5 calls" in capsys.readouterr().out


def test_bench_measurements_against_an_in_process_server():
    frame = serve_benchmark.test_frame(64)
    with AgentServer(ScriptedEngine(), ServerConfig(bind="tcp://127.0.0.1:*")) as server:
        single = serve_benchmark.round_trips(server.endpoint, frame, 20, jpeg=True)
        many = serve_benchmark.concurrent(server.endpoint, frame, 3, 10)
    assert 0 < single["overhead_median_ms"] <= single["round_trip_median_ms"] < 1000
    assert single["decode_median_ms"] > 0
    assert many["sessions"] == 3 and many["requests_per_s"] > 0 and many["actions_per_s"] == 4 * many["requests_per_s"]
    assert 1.0 <= many["mean_batch_size"] <= 3.0


@pytest.mark.slow
def test_serve_command_in_a_subprocess_serves_and_stops_on_sigint():
    process = serve_benchmark.ServerProcess(["--scripted"])
    with process, AgentClient(process.endpoint, timeout_s=10) as client:
        client.reset("ep", "go to the bedroom")
        assert client.act("ep", np.zeros((32, 32, 3), np.uint8)).actions == [1, 1, 2, 1]
    assert process.process.returncode in (0, -signal.SIGINT)


def test_engine_decoding_choice_reaches_the_agent(capsys):
    import argparse

    from agent.streaming import Decoding
    from streamvln.demo.engines import DECODINGS, add_engine_arguments, build_engine, engine_choice

    assert set(DECODINGS) == {d.value for d in Decoding}  # the CLI's torch-free copy of the enum
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    engine, notice = build_engine(engine_choice(parser.parse_args(["--decoding", "tree"])))
    assert engine.agent.config.decoding is Decoding.TREE and engine.agent.tree.size == 39
    assert "random weights" in notice
    engine, _ = build_engine(engine_choice(parser.parse_args([])))  # no --decoding: the device's default
    assert engine.agent.config.decoding is Decoding.SPECULATIVE and engine.agent.config.stop_bias == 0.0
    engine, _ = build_engine(engine_choice(parser.parse_args(["--stop-bias", "4"])))
    assert engine.agent.config.stop_bias == 4.0 and engine.agent.rules.stop_bias == 4.0
    with pytest.raises(ValueError, match="--stop-bias must be a finite number"):
        engine_choice(parser.parse_args(["--stop-bias", "nan"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--decoding", "beam"])
    assert "--decoding" in capsys.readouterr().err


def test_serving_defaults_decode_by_device():
    from agent.streaming import Decoding
    from agent.streaming.engine import default_config

    assert default_config("cuda").decoding is Decoding.TREE  # a config only: nothing runs on a GPU here
    assert default_config("cuda:1").decoding is Decoding.TREE
    assert default_config("cpu").decoding is Decoding.SPECULATIVE


def test_a_checkpoint_is_served_with_its_training_window(tmp_path):
    from agent.streaming.engine import checkpoint_window, default_config

    assert checkpoint_window(tmp_path) == {} and default_config("cpu", tmp_path).num_frames == 32
    (tmp_path / "sample_window.json").write_text('{"num_frames": 16, "num_future_steps": 4, "num_history": 8}')
    assert checkpoint_window(tmp_path) == {"num_frames": 16, "num_future_steps": 4, "num_history": 8}
    config = default_config("cpu", tmp_path)
    assert (config.num_frames, config.num_future_steps, config.num_history) == (16, 4, 8)
