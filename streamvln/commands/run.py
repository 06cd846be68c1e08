"""`streamvln run [--config configs/quickstart.yaml] [--name NAME]`: the whole loop, end to end.

Houses and splits, expert episodes, offline training of the tiny preset, online DAgger (actors +
learner), evaluation on val_unseen (random, forward-only, trained) and runs/<name>/report.md.
Running the same name again resumes after the last finished stage.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="the main job: data -> train -> DAgger -> eval -> report")
    parser.add_argument("--config", default="configs/quickstart.yaml", help="run config YAML")
    parser.add_argument("--name", help="run name (folder under runs/); default: the config's name")
    parser.add_argument("--out-root", help="parent folder of runs (default: the config's out_root, runs/)")
    parser.add_argument("--variant", help="apply the config's variants[VARIANT] overrides (one table row of "
                                          "configs/benchmark.yaml); the run is named <name>_<variant>")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import shlex

    from streamvln.pipeline.config import load_run_config
    from streamvln.pipeline.run import Pipeline

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_run_config(args.config, args.name, args.variant)
    if args.out_root:
        config.out_root = args.out_root
    config.command = shlex.join(["streamvln", "run", "--config", args.config]
                                + (["--variant", args.variant] if args.variant else [])
                                + (["--name", args.name] if args.name else [])
                                + (["--out-root", args.out_root] if args.out_root else []))
    Pipeline(config).run()
    return 0
