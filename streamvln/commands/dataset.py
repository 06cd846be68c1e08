"""`streamvln dataset generate`: write a procedural R2R-CE split ({split}.json.gz + {split}_gt.json.gz)."""

from __future__ import annotations

import argparse
import time

from streamvln import cli_defaults


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="episode datasets")
    actions = parser.add_subparsers(dest="dataset_command", required=True)
    generate = actions.add_parser("generate", help="generate a procedural R2R-CE split with expert gt")
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--split", required=True, choices=cli_defaults.SPLITS)
    generate.add_argument("--episodes", type=int, required=True, help="number of episodes")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--episodes-per-house", type=int, default=cli_defaults.EPISODES_PER_HOUSE)
    generate.add_argument("--min-geodesic", type=float, default=cli_defaults.MIN_GEODESIC_M, help="metres")
    generate.add_argument("--max-geodesic", type=float, default=cli_defaults.MAX_GEODESIC_M, help="metres")
    generate.add_argument("--workers", type=int, default=1, help="processes generating houses (same episodes)")
    generate.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from envs.episodes.generator import GeneratorConfig, generate_split
    from envs.episodes.io import save_split

    config = GeneratorConfig(episodes_per_house=args.episodes_per_house, min_geodesic_m=args.min_geodesic,
                             max_geodesic_m=args.max_geodesic)
    started = time.perf_counter()
    episodes, gt = generate_split(args.split, args.episodes, seed=args.seed, config=config, workers=args.workers)
    elapsed = time.perf_counter() - started
    episodes_path, gt_path = save_split(args.out, args.split, episodes, gt)
    houses = len({e.scene_id for e in episodes})
    mean_geodesic = sum(e.info["geodesic_distance"] for e in episodes) / max(len(episodes), 1)
    print(f"{len(episodes)} episodes in {houses} houses (mean geodesic {mean_geodesic:.2f} m) "
          f"generated in {elapsed:.1f} s -> {episodes_path}, {gt_path}")
    return 0
