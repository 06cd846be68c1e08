"""`streamvln` entry point: builds the argparse tree from the command modules."""

from __future__ import annotations

import argparse
import sys

from streamvln.commands import actor, bench, collect, dataset, learner, sim, store
from streamvln.commands import client as client_command
from streamvln.commands import demo as demo_command
from streamvln.commands import eval as eval_command
from streamvln.commands import results as results_command
from streamvln.commands import run as run_command
from streamvln.commands import serve as serve_command
from streamvln.commands import train as train_command

# Each module registers its own sub-commands; add a module here to expose it.
COMMAND_MODULES = (bench, dataset, eval_command, sim, serve_command, client_command, demo_command, collect, store, train_command, run_command, learner, actor, results_command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamvln", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as error:
        # User errors (bad files, bad arguments) end with one clear line, not a traceback.
        print(f"streamvln {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
