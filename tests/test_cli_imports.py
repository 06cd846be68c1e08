"""Building the `streamvln` parser imports only the standard library (and light project modules).

Rule: a command or benchmark module's top level imports argparse-level things only; torch,
transformers, numba, scikit-fmm, deepspeed, zmq, numpy, ... are imported inside the handler / run()
/ helper that needs them. Otherwise every `streamvln ...` pays seconds of imports, and commands
break on machines that lack a package another command needs (the GPU machine has no numba).
Argument defaults that come from heavy modules are mirrored in streamvln/cli_defaults.py; the last
tests check the mirrors against their sources of truth.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from streamvln import cli_defaults
from streamvln.cli import COMMAND_MODULES, build_parser
from streamvln.commands.bench import BENCHMARKS

# Runs in a fresh interpreter: builds the parser and prints every third-party package it loaded,
# with the module that imported it and the streamvln module the import chain started from.
_PROBE = r"""
import json
import sys

PROJECT = {"streamvln", "envs", "agent", "rollout", "training"}
IMPORT_MACHINERY = ("importlib", "_frozen_importlib")
importers = {}


class Witness:
    # A meta-path finder that finds nothing: it only records who asked for each package first.
    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in PROJECT or top in importers:
            return None
        direct, origin, frame = None, None, sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if direct is None and not module.startswith(IMPORT_MACHINERY):
                direct = module
            if module.startswith("streamvln"):
                origin = module
                break
            frame = frame.f_back
        importers[top] = f"{direct} (via {origin})"
        return None


before = set(sys.modules)
sys.meta_path.insert(0, Witness)
from streamvln.cli import build_parser

build_parser()
sys.meta_path.remove(Witness)
loaded = {name.partition(".")[0] for name in set(sys.modules) - before}
# "_"-names are runtime aliases (__mp_main__, _sysconfigdata_*, _cython_*), never a package by themselves.
third_party = sorted(n for n in loaded if n not in sys.stdlib_module_names and n not in PROJECT and n[0] != "_")
print(json.dumps({name: importers.get(name, "?") for name in third_party}))
"""
# The packages whose absence matters most (slow to import, or missing on some machines).
_HEAVY = ("torch", "transformers", "numba", "skfmm", "deepspeed", "zmq")


def test_building_the_parser_imports_no_third_party_package():
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    offenders = json.loads(done.stdout.strip().splitlines()[-1])
    heavy = {name: offenders[name] for name in _HEAVY if name in offenders}
    assert not heavy, f"building the parser imported heavy packages {heavy}; all third-party: {offenders}"
    assert not offenders, f"building the parser imported third-party packages (package: importer): {offenders}"


def _streamvln_command() -> list[str]:
    script = Path(sys.executable).with_name("streamvln")
    return [str(script)] if script.exists() else [sys.executable, "-m", "streamvln.cli"]


def test_streamvln_help_lists_every_command_and_benchmark():
    started = time.perf_counter()
    done = subprocess.run([*_streamvln_command(), "--help"], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    print(f"`streamvln --help` took {seconds:.2f} s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: streamvln")
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert len(subparsers.choices) >= len(COMMAND_MODULES)
    assert all(name in done.stdout for name in subparsers.choices)
    bench = subprocess.run([*_streamvln_command(), "bench", "--help"], capture_output=True, text=True, timeout=120)
    assert bench.returncode == 0, bench.stderr
    assert all(module.NAME in bench.stdout for module in BENCHMARKS)


def test_cli_defaults_match_their_sources_of_truth():
    from agent.config import PRESETS, TUNABLE_PARTS
    from agent.serving.server import DEFAULT_BIND, ServerConfig
    from envs.episodes.generator import SPLIT_HOUSE_SEEDS, GeneratorConfig
    from envs.policies import POLICY_FACTORIES
    from envs.task import TaskConfig
    from rollout.samples import SampleConfig

    generator, server, sample = GeneratorConfig(), ServerConfig(), SampleConfig()
    assert tuple(sorted(SPLIT_HOUSE_SEEDS)) == cli_defaults.SPLITS
    assert generator.episodes_per_house == cli_defaults.EPISODES_PER_HOUSE
    assert generator.min_geodesic_m == cli_defaults.MIN_GEODESIC_M
    assert generator.max_geodesic_m == cli_defaults.MAX_GEODESIC_M
    assert tuple(sorted(POLICY_FACTORIES)) == cli_defaults.POLICY_NAMES
    assert TaskConfig().max_steps == cli_defaults.TASK_MAX_STEPS
    assert TaskConfig().success_distance == cli_defaults.SUCCESS_DISTANCE_M
    assert DEFAULT_BIND == server.bind == cli_defaults.DEFAULT_BIND
    assert server.max_sessions == cli_defaults.SERVER_MAX_SESSIONS
    assert server.idle_timeout_s == cli_defaults.SERVER_IDLE_TIMEOUT_S
    assert server.request_timeout_s == cli_defaults.SERVER_REQUEST_TIMEOUT_S
    assert sample.num_frames == cli_defaults.SAMPLE_NUM_FRAMES
    assert sample.num_future_steps == cli_defaults.SAMPLE_NUM_FUTURE_STEPS
    assert sample.num_history == cli_defaults.SAMPLE_NUM_HISTORY
    assert tuple(sorted(PRESETS)) == cli_defaults.MODEL_PRESETS
    assert TUNABLE_PARTS == cli_defaults.TUNABLE_PARTS

def test_parsed_defaults_are_the_configs_defaults():
    """The commands use the mirrors: what argparse fills in equals the config the handler would build."""
    from agent.config import TUNABLE_PARTS
    from agent.serving.server import ServerConfig
    from envs.task import TaskConfig
    from rollout.samples import SampleConfig
    from streamvln.demo.app import DemoConfig

    parser = build_parser()
    assert parser.parse_args(["eval", "--data", "d"]).max_steps == TaskConfig().max_steps
    serve, server = parser.parse_args(["serve"]), ServerConfig()
    assert (serve.bind, serve.max_sessions, serve.idle_timeout, serve.request_timeout) == (
        server.bind, server.max_sessions, server.idle_timeout_s, server.request_timeout_s)
    assert parser.parse_args(["client"]).address == server.bind
    stats, sample = parser.parse_args(["store", "stats", "s"]), SampleConfig()
    assert (stats.num_frames, stats.num_future_steps, stats.num_history) == (
        sample.num_frames, sample.num_future_steps, sample.num_history)
    demo, config = parser.parse_args(["demo"]), DemoConfig()
    assert (demo.port, demo.split, demo.episodes, demo.max_steps, demo.hfov) == (
        config.port, config.split, config.episodes, config.max_steps, config.hfov_deg)
    assert parser.parse_args(["bench", "model"]).tunable == list(TUNABLE_PARTS)
