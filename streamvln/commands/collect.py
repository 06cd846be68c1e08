"""`streamvln collect`: fill an episode store from the embedded simulator with the expert."""

from __future__ import annotations

import argparse
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("collect", help="record expert trajectories (rgb, depth, pose, labels) into a store")
    parser.add_argument("--data", required=True, help="folder with {split}.json.gz (see `streamvln dataset generate`)")
    parser.add_argument("--split", required=True)
    parser.add_argument("--policy", default="expert", choices=("expert",))
    parser.add_argument("--out", required=True, help="episode store folder (created if missing)")
    parser.add_argument("--episodes", type=int, default=None, help="stop after N recorded episodes (default: all)")
    parser.add_argument("--policy-version", type=int, default=0)
    parser.add_argument("--width", type=int, default=224)
    parser.add_argument("--height", type=int, default=224)
    parser.add_argument("--hfov", type=float, default=90.0)
    parser.add_argument("--workers", type=int, default=1,
                        help="processes rendering episodes (the store is written in episode order either way)")
    parser.add_argument("--max-store-episodes", type=int, default=None, help="store capacity (FIFO by policy version)")
    parser.add_argument("--max-store-bytes", type=int, default=None)
    parser.set_defaults(handler=_collect)

    qa = subparsers.add_parser("collect-scene-qa", help="generate ScanQA-like scene QA (frames along walked paths)")
    qa.add_argument("--out", required=True, help="msgpack file of scene QA records (read by SceneQASource)")
    qa.add_argument("--split", default="train", help="houses of this split (see envs.episodes.generator)")
    qa.add_argument("--scenes", type=int, default=10)
    qa.add_argument("--paths-per-scene", type=int, default=5)
    qa.add_argument("--frames-per-path", type=int, default=8)
    qa.add_argument("--questions-per-path", type=int, default=3)
    qa.add_argument("--size", type=int, default=224, help="rendered frame size")
    qa.add_argument("--seed", type=int, default=0)
    qa.set_defaults(handler=_collect_scene_qa)


def _collect(args: argparse.Namespace) -> int:
    from envs.episodes.io import load_split
    from rollout.collect import CollectConfig, collect_expert_parallel
    from rollout.store import EpisodeStore, StoreConfig

    config = CollectConfig(args.policy, args.policy_version, args.episodes, args.workers)
    config.validate()
    episodes, _ = load_split(args.data, args.split)
    store = EpisodeStore(args.out, StoreConfig(max_episodes=args.max_store_episodes, max_bytes=args.max_store_bytes))
    started = time.perf_counter()

    def report(count: int, trajectory) -> None:
        print(f"[{count}] episode {trajectory.episode_id}: {trajectory.num_steps} steps", flush=True)

    names = collect_expert_parallel(episodes, store, (args.width, args.height, args.hfov), config, on_episode=report)
    stats = store.stats()
    print(
        f"recorded {len(names)} episode(s) in {time.perf_counter() - started:.1f} s -> {args.out} "
        f"({stats['episodes']} episodes, {stats['steps']} steps, {stats['bytes_per_step']:.0f} bytes/step)"
    )
    return 0


def _collect_scene_qa(args: argparse.Namespace) -> int:
    from envs.embedded import EmbeddedBackend, EmbeddedConfig
    from envs.episodes.generator import house_seeds_for
    from rollout.qa.scene_qa import SceneQAConfig, generate_scene_qa, kind_counts, save_scene_qa

    config = SceneQAConfig(args.frames_per_path, args.questions_per_path, seed=args.seed)
    config.validate()
    scene_ids = [f"procedural/house_{seed:06d}" for seed in list(house_seeds_for(args.split))[: args.scenes]]
    backend = EmbeddedBackend(EmbeddedConfig(width=args.size, height=args.size, depth=False))
    started = time.perf_counter()
    try:
        records = generate_scene_qa(backend, scene_ids, args.paths_per_scene, config)
    finally:
        backend.close()
    save_scene_qa(records, args.out)
    print(f"{len(records)} scene QA records {kind_counts(records)} from {len(scene_ids)} houses in "
          f"{time.perf_counter() - started:.1f} s -> {args.out}")
    return 0
