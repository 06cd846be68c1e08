"""The run config's `sensors:` section (an envs.sensors.SensorConfig) reaches actors and evaluation unchanged."""

from __future__ import annotations

import argparse

import pytest
import yaml
from rich.console import Console

from envs.sensors import SensorConfig
from rollout.actor_processes import actor_command
from streamvln.commands import actor as actor_command_module
from streamvln.pipeline.config import load_run_config
from streamvln.pipeline.run import Pipeline

ADDRESSES = {"episodes": "tcp://127.0.0.1:5601", "weights": "tcp://127.0.0.1:5602"}


def test_yaml_sensors_reach_the_actor_command_line_and_the_eval_settings(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"out_root": str(tmp_path), "sensors": {"width": 64, "height": 48, "hfov_deg": 79}}))
    config = load_run_config(path)
    assert config.sensors == SensorConfig(64, 48, 79.0)
    pipeline = Pipeline(config, Console(quiet=True))
    argv = actor_command(pipeline.actor_process_config(), 0, ADDRESSES)
    assert argv[argv.index("--width") + 1: argv.index("--width") + 6] == ["64", "--height", "48", "--hfov", "79"]
    parser = argparse.ArgumentParser(prog="streamvln")
    actor_command_module.register(parser.add_subparsers(dest="command", required=True))
    loop = actor_command_module.loop_config(parser.parse_args(["actor", *argv[3:]]), token="")
    assert loop.sensors == config.sensors
    assert {settings.sensors for _, _, settings in pipeline.eval_jobs("val_unseen")} == {config.sensors}


@pytest.mark.parametrize(("sensors", "message"), [({"width": 4}, r"sensors\.width must be an integer >= 8 px"),
                                                  ({"hfov_deg": 200}, r"sensors\.hfov_deg must be in \(0, 180\)"),
                                                  ({"fov": 90}, r"sensors: unknown keys \['fov'\]")])
def test_bad_sensors_section_is_a_clear_error(tmp_path, sensors, message):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"sensors": sensors}))
    with pytest.raises(ValueError, match=message):
        load_run_config(path)
