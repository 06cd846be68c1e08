"""Top-down map PNGs of evaluated episodes (issue 8's picture: one success, one failure).

The episode is not run again with the model: the per-episode results JSONL keeps the executed
actions, and the simulator is deterministic, so replaying them without sensors gives the same path.
The map shows the house, the reference path (green), the agent's path (blue), its final pose and the
goal, with the instruction and the metrics in a caption strip.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REFERENCE_RGB = (30, 160, 60)
AGENT_RGB = (30, 80, 220)  # blue: the hallway floor is red


def pick_episodes(rows: list[dict]) -> dict[str, dict]:
    """{"success": the successful episode with the highest SPL, "failure": the failed one with the
    largest NE}; a kind without any episode is left out."""
    picked: dict[str, dict] = {}
    successes = [r for r in rows if r.get("SR", 0.0) >= 1.0]
    failures = [r for r in rows if r.get("SR", 0.0) < 1.0]
    if successes:
        picked["success"] = max(successes, key=lambda r: (r.get("SPL", 0.0), -int(_id_order(r))))
    if failures:
        picked["failure"] = max(failures, key=lambda r: (r.get("NE", 0.0), -int(_id_order(r))))
    return picked


def _id_order(row: dict) -> int:
    try:
        return int(row["episode_id"])
    except (TypeError, ValueError):
        return 0


def replay_positions(task, episode, actions: list[int]) -> tuple[np.ndarray, float]:
    """World positions (N + 1, 3) visited by executing `actions` from the episode start, final yaw."""
    from envs.geometry import yaw_from_quat

    task.reset(episode)
    positions = [np.asarray(task.backend.get_agent_state().position, dtype=np.float64)]
    for action in actions:
        outcome = task.step(int(action))
        positions.append(np.asarray(task.backend.get_agent_state().position, dtype=np.float64))
        if outcome.terminated or outcome.truncated:
            break
    return np.stack(positions), yaw_from_quat(task.backend.get_agent_state().rotation)


def episode_map(task, episode, row: dict, title: str, scale_px_per_m: float = 30.0) -> Image.Image:
    """The top-down map of one evaluated episode (row: its results line) with a caption."""
    from envs.render.topdown import topdown_map

    positions, yaw = replay_positions(task, episode, row.get("actions", []))
    top = topdown_map(task.backend.house, paths=[(np.asarray(episode.reference_path), REFERENCE_RGB),
                                                  (positions, AGENT_RGB)],
                      agent=(positions[-1], yaw), goal=np.asarray(episode.goals[0].position),
                      scale_px_per_m=scale_px_per_m)
    caption = [f"{title}: episode {row['episode_id']} ({episode.scene_id})",
               f"SR {row.get('SR', 0):.0f}  SPL {row.get('SPL', 0):.2f}  NE {row.get('NE', 0):.2f} m  "
               f"steps {row.get('steps', len(positions) - 1)}   green: reference, blue: agent",
               *textwrap.wrap(episode.instruction.instruction_text, width=max(40, top.shape[1] // 7))]
    strip = 14 * len(caption) + 8
    canvas = Image.new("RGB", (max(top.shape[1], 420), top.shape[0] + strip), (255, 255, 255))
    canvas.paste(Image.fromarray(top), (0, strip))
    draw = ImageDraw.Draw(canvas)
    for index, line in enumerate(caption):
        draw.text((4, 4 + 14 * index), line, fill=(0, 0, 0))
    return canvas


def write_episode_maps(results: Path, data_dir: Path, split: str, out_dir: Path, max_steps: int = 500) -> dict[str, str]:
    """map_success.png / map_failure.png from a results JSONL; returns {kind: file name}."""
    from envs.episodes.io import load_split
    from envs.task import TaskConfig, VLNTask
    from streamvln.pipeline.evaluation import read_results

    rows = list(read_results(Path(results)).values())
    picked = pick_episodes(rows)
    if not picked:
        return {}
    episodes, _ = load_split(data_dir, split)
    by_id = {str(e.episode_id): e for e in episodes}
    task = VLNTask(_geometry_backend(), TaskConfig(max_steps=max_steps))
    written: dict[str, str] = {}
    try:
        for kind, row in picked.items():
            episode = by_id.get(str(row["episode_id"]))
            if episode is None:
                raise ValueError(f"{results}: episode {row['episode_id']} is not in {data_dir} {split}")
            name = f"map_{kind}.png"
            episode_map(task, episode, row, f"{split} {kind}").save(out_dir / name)
            written[kind] = name
    finally:
        task.close()
    return written


def _geometry_backend():
    from envs.embedded import EmbeddedBackend, EmbeddedConfig

    return EmbeddedBackend(EmbeddedConfig(rgb=False, depth=False, width=8, height=8))
