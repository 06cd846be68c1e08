"""`streamvln store ...`: import/export the StreamVLN layout, stats and checksum verification."""

from __future__ import annotations

import argparse
import json

from streamvln import cli_defaults


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("store", help="episode store: import/export StreamVLN data, stats, verify")
    actions = parser.add_subparsers(dest="store_command", required=True)

    sub = actions.add_parser("import-streamvln", help="add a StreamVLN folder (annotations.json + images/) to a store")
    sub.add_argument("src")
    sub.add_argument("store")
    sub.add_argument("--lenient", action="store_true", help="skip (and log) bad episodes instead of failing")
    sub.set_defaults(handler=_import)

    sub = actions.add_parser("export-streamvln", help="write a store in the StreamVLN layout")
    sub.add_argument("store")
    sub.add_argument("dst")
    sub.add_argument("--dataset-name", default="store", help="the <ds> part of images/<scene>_<ds>_<id>")
    sub.set_defaults(handler=_export)

    sub = actions.add_parser("stats", help="episodes, steps, instructions, samples at the window, bytes")
    sub.add_argument("store")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    sub.add_argument("--num-frames", type=int, default=cli_defaults.SAMPLE_NUM_FRAMES)
    sub.add_argument("--num-future-steps", type=int, default=cli_defaults.SAMPLE_NUM_FUTURE_STEPS)
    sub.add_argument("--num-history", type=int, default=cli_defaults.SAMPLE_NUM_HISTORY)
    sub.add_argument("--remove-init-turns", action="store_true")
    sub.set_defaults(handler=_stats)

    sub = actions.add_parser("verify", help="check every episode's checksums (exit 1 if any is corrupt)")
    sub.add_argument("store")
    sub.add_argument("--remove-orphans", action="store_true", help="delete tmp files of writers that died")
    sub.set_defaults(handler=_verify)


def _import(args: argparse.Namespace) -> int:
    from rollout.store import EpisodeStore
    from rollout.streamvln_layout import import_streamvln

    report = import_streamvln(args.src, EpisodeStore(args.store), lenient=args.lenient)
    print(f"imported {len(report.imported)} episode(s) into {args.store}; skipped {len(report.skipped)}")
    for episode_id, reason in report.skipped:
        print(f"  skipped {episode_id}: {reason}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from rollout.store import EpisodeStore
    from rollout.streamvln_layout import export_streamvln

    count = export_streamvln(EpisodeStore(args.store, create=False), args.dst, args.dataset_name)
    print(f"exported {count} episode(s) to {args.dst}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from rollout.samples import SampleConfig
    from rollout.store import EpisodeStore

    config = SampleConfig(args.num_frames, args.num_future_steps, args.num_history, args.remove_init_turns)
    config.validate()
    stats = EpisodeStore(args.store, create=False).stats(config)
    if args.json:
        print(json.dumps(stats, indent=2, sort_keys=True))
    else:
        for key, value in stats.items():
            print(f"{key:>16}: {value:.1f}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from rollout.store import EpisodeStore

    report = EpisodeStore(args.store, create=False).verify(remove_orphans=args.remove_orphans)
    for name, reason in report.corrupt:
        print(f"CORRUPT {name}: {reason}")
    print(f"{len(report.ok)} ok, {len(report.corrupt)} corrupt, {report.orphans_removed} orphan tmp file(s) removed")
    return 1 if report.corrupt else 0
