"""A single picture of one episode: RGB and depth at the start and at the end, and the top-down map
with the reference path (green), the agent's path (red), the goal and the agent's final pose."""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw

from envs.episodes.io import Episode
from envs.evaluation import EpisodeRun, run_episode
from envs.geometry import yaw_from_quat
from envs.task import VLNTask

REFERENCE_RGB = (30, 160, 60)
AGENT_PATH_RGB = (210, 40, 40)
PANEL_GAP_PX = 6


def depth_to_rgb(depth: np.ndarray) -> np.ndarray:
    grey = (np.clip(depth[..., 0], 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _caption(image: np.ndarray, text: str) -> Image.Image:
    panel = Image.fromarray(image)
    canvas = Image.new("RGB", (panel.width, panel.height + 16), (255, 255, 255))
    canvas.paste(panel, (0, 16))
    ImageDraw.Draw(canvas).text((2, 2), text, fill=(0, 0, 0))
    return canvas


def compose_view(frames: list[tuple[str, np.ndarray]], topdown: np.ndarray, instruction: str) -> np.ndarray:
    """Frames side by side on top, the top-down map below, the instruction as a footer."""
    panels = [_caption(image, title) for title, image in frames]
    row_width = sum(p.width for p in panels) + PANEL_GAP_PX * (len(panels) - 1)
    row_height = max(p.height for p in panels)
    bottom = _caption(topdown, "top-down: reference (green), agent (red)")
    width = max(row_width, bottom.width)
    lines = textwrap.wrap(instruction, width=max(20, width // 6))
    footer = 14 * len(lines) + 6
    canvas = Image.new("RGB", (width, row_height + PANEL_GAP_PX + bottom.height + footer), (255, 255, 255))
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + PANEL_GAP_PX
    canvas.paste(bottom, (0, row_height + PANEL_GAP_PX))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((2, row_height + PANEL_GAP_PX + bottom.height + 3 + 14 * i), line, fill=(0, 0, 0))
    return np.asarray(canvas, dtype=np.uint8)


def episode_view(task: VLNTask, policy, episode: Episode, gt=None) -> tuple[np.ndarray, EpisodeRun]:
    """Run `policy` on the episode (backend with sensors and a `.house`) and draw the picture."""
    from envs.render.topdown import topdown_map

    start = task.reset(episode, gt)
    start_rgb, start_depth = start["rgb"], start["depth"]
    run = run_episode(task, policy, episode, gt)
    end = task.backend.observe()
    state = task.backend.get_agent_state()
    topdown = topdown_map(
        task.backend.house,  # type: ignore[attr-defined]
        paths=[(np.asarray(episode.reference_path), REFERENCE_RGB), (run.positions, AGENT_PATH_RGB)],
        agent=(state.position, yaw_from_quat(state.rotation)),
        goal=np.asarray(episode.goals[0].position),
    )
    frames = [("start rgb", start_rgb), ("start depth", depth_to_rgb(start_depth)),
              ("end rgb", end["rgb"]), ("end depth", depth_to_rgb(end["depth"]))]
    return compose_view(frames, topdown, episode.instruction.instruction_text), run
