"""`streamvln bench TARGET`: benchmarks that print one JSON object (and optionally write it)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamvln.benchmarks import actor as actor_benchmark
from streamvln.benchmarks import agent as agent_benchmark
from streamvln.benchmarks import data as data_benchmark
from streamvln.benchmarks import learner as learner_benchmark
from streamvln.benchmarks import model as model_benchmark
from streamvln.benchmarks import nav as nav_benchmark
from streamvln.benchmarks import serve as serve_benchmark
from streamvln.benchmarks import sim as sim_benchmark

# Benchmark modules (streamvln.benchmarks.*); add one here to expose `streamvln bench NAME`.
BENCHMARKS: tuple = (actor_benchmark, agent_benchmark, data_benchmark, learner_benchmark, model_benchmark, nav_benchmark, serve_benchmark, sim_benchmark)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark and print JSON")
    targets = parser.add_subparsers(dest="target", required=True)
    for module in BENCHMARKS:
        sub = targets.add_parser(module.NAME, help=module.HELP)
        sub.add_argument("--json", nargs="?", const="-", default="-", metavar="FILE",
                         help="write the JSON result to FILE as well as stdout")
        module.add_arguments(sub)
        sub.set_defaults(handler=lambda args, module=module: _run(module, args))


def _run(module, args: argparse.Namespace) -> int:
    result = module.run(args)
    text = json.dumps(result, indent=2, sort_keys=True)
    print(text)
    if args.json not in (None, "-"):
        Path(args.json).write_text(text + "\n")
    return 0
