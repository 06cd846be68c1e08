"""`streamvln` entry point: builds the argparse tree from the command modules."""

from __future__ import annotations

import argparse
import sys

from streamvln.commands import bench

# Each module registers its own sub-commands; add a module here to expose it.
COMMAND_MODULES = (bench,)


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
