"""`streamvln results` (the table from runs' metrics.json), `streamvln compare` (two evaluations, paired by
episode) and `streamvln ship` (a checkpoint folder)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    table = subparsers.add_parser("results", help="assemble the results table (markdown) from runs' metrics.json")
    table.add_argument("--runs", nargs="+", required=True, help="run folders (runs/<name>), in table order")
    table.add_argument("--out", help="markdown file to write (default: print)")
    table.add_argument("--split", nargs="+", default=["val_unseen"], help="splits to tabulate (val_unseen, val_seen)")
    table.set_defaults(handler=run_results)
    compare = subparsers.add_parser(
        "compare", help="paired comparison of two evaluations of the same episodes "
                        "(mean differences, bootstrap 95%% intervals, sign test on SR)")
    compare.add_argument("base", help="the baseline's per-episode results (eval --results FILE.jsonl)")
    compare.add_argument("new", help="the compared model's per-episode results on the same episodes")
    compare.add_argument("--metrics", nargs="+", help="metrics to compare (default: SR SPL NE nDTW)")
    compare.add_argument("--resamples", type=int, help="bootstrap resamples (default: 10000)")
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    compare.set_defaults(handler=run_compare)
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


def run_compare(args: argparse.Namespace) -> int:
    from streamvln.pipeline.compare import compare_evaluations

    given = {"metrics": tuple(args.metrics) if args.metrics else None, "resamples": args.resamples}
    options = {name: value for name, value in given.items() if value is not None}  # else the library's defaults
    result = compare_evaluations(Path(args.base), Path(args.new), seed=args.seed, **options)
    print(json.dumps(result, indent=1))
    return 0


def run_ship(args: argparse.Namespace) -> int:
    from streamvln.pipeline.results import folder_mb, ship_checkpoint

    out = ship_checkpoint(Path(args.run), Path(args.out), args.max_mb, Path(args.model) if args.model else None)
    print(f"shipped {out} ({folder_mb(out):.1f} MB); see {out}/README.md")
    return 0
