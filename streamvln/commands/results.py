"""`streamvln results` (the table from runs' metrics.json) and `streamvln ship` (a checkpoint folder)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    table = subparsers.add_parser("results", help="assemble the results table (markdown) from runs' metrics.json")
    table.add_argument("--runs", nargs="+", required=True, help="run folders (runs/<name>), in table order")
    table.add_argument("--out", help="markdown file to write (default: print)")
    table.add_argument("--split", nargs="+", default=["val_unseen"], help="splits to tabulate (val_unseen, val_seen)")
    table.set_defaults(handler=run_results)
    ship = subparsers.add_parser("ship", help="copy a run's trained model + metrics + commands into checkpoints/NAME")
    ship.add_argument("--run", required=True, help="run folder (runs/<name>) whose eval stage finished")
    ship.add_argument("--out", required=True, help="checkpoint folder, e.g. checkpoints/quickstart_tiny")
    ship.add_argument("--model", help="model folder to ship (default: the run's trained model)")
    ship.add_argument("--max-mb", type=float, default=25.0, help="size guard (MB)")
    ship.set_defaults(handler=run_ship)


def run_results(args: argparse.Namespace) -> int:
    from streamvln.pipeline.results import results_markdown

    runs = [Path(path) for path in args.runs if (Path(path) / "metrics.json").is_file()]
    skipped = [path for path in args.runs if Path(path) not in runs]
    if skipped:
        print(f"skipped (no metrics.json): {', '.join(skipped)}")
    text = "\n".join(results_markdown(runs, split) for split in args.split)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"{len(runs)} runs -> {args.out}")
    else:
        print(text)
    return 0


def run_ship(args: argparse.Namespace) -> int:
    from streamvln.pipeline.results import folder_mb, ship_checkpoint

    out = ship_checkpoint(Path(args.run), Path(args.out), args.max_mb, Path(args.model) if args.model else None)
    print(f"shipped {out} ({folder_mb(out):.1f} MB); see {out}/README.md")
    return 0
