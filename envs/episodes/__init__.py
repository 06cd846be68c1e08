"""R2R-CE episodes: file IO (io.py) and the procedural split generator (generator.py)."""

from envs.episodes.io import (
    Episode,
    Goal,
    GroundTruth,
    Instruction,
    load_episodes,
    load_ground_truth,
    load_split,
    save_split,
    split_paths,
)

__all__ = [
    "Episode",
    "Goal",
    "GroundTruth",
    "Instruction",
    "load_episodes",
    "load_ground_truth",
    "load_split",
    "save_split",
    "split_paths",
]
