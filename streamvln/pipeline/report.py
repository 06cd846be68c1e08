"""runs/<name>/report.md: metrics table, loss and DAgger curves (PNG drawn with Pillow), one episode GIF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from rich.table import Table

from envs.metrics import METRIC_NAMES

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]
MAX_GIF_FRAMES = 150


def metrics_table(summaries: dict[str, dict], title: str = "val_unseen") -> Table:
    table = Table(title=title)
    table.add_column("policy")
    for name in ("episodes", *METRIC_NAMES):
        table.add_column(name, justify="right")
    for label, values in summaries.items():
        table.add_row(label, str(values.get("episodes", "")), *(_fmt(name, values.get(name)) for name in METRIC_NAMES))
    return table


def markdown_table(summaries: dict[str, dict]) -> str:
    header = "| policy | episodes | " + " | ".join(METRIC_NAMES) + " |"
    rule = "|" + "---|" * (len(METRIC_NAMES) + 2)
    rows = [f"| {label} | {values.get('episodes', '')} | "
            + " | ".join(_fmt(name, values.get(name)) for name in METRIC_NAMES) + " |"
            for label, values in summaries.items()]
    return "\n".join([header, rule, *rows])


def _fmt(name: str, value) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if name in ("steps", "TL", "NE") else f"{value:.3f}"


# ---------------------------------------------------------------------- charts
def line_chart(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str,
               path: Path, size: tuple[int, int] = (640, 360)) -> Path:
    """A minimal line chart (axes, min/max ticks, legend) with Pillow; no plotting dependency."""
    width, height = size
    left, right, top, bottom = 56, 16, 28, 40
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    points = [(x, y) for xs, ys in series.values() for x, y in zip(xs, ys) if np.isfinite(y)]
    draw.text((left, 8), title, fill=(0, 0, 0))
    draw.rectangle([left, top, width - right, height - bottom], outline=(0, 0, 0))
    if points:
        x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
        y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
        x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-6)

        def to_px(x: float, y: float) -> tuple[float, float]:
            return (left + (x - x0) / (x1 - x0) * (width - left - right),
                    height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom))

        for index, (label, (xs, ys)) in enumerate(series.items()):
            color = COLORS[index % len(COLORS)]
            line = [to_px(x, y) for x, y in zip(xs, ys) if np.isfinite(y)]
            if len(line) > 1:
                draw.line(line, fill=color, width=2)
            for x, y in line if len(line) <= 30 else []:
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
            draw.text((width - right - 150, top + 6 + 14 * index), label, fill=color)
        draw.text((4, top), f"{y1:.3g}", fill=(0, 0, 0))
        draw.text((4, height - bottom - 10), f"{y0:.3g}", fill=(0, 0, 0))
        draw.text((left, height - bottom + 4), f"{x0:g}", fill=(0, 0, 0))
        draw.text((width - right - 40, height - bottom + 4), f"{x1:g}", fill=(0, 0, 0))
    draw.text((width // 2 - 20, height - 18), xlabel, fill=(0, 0, 0))
    image.save(path)
    return path


def smooth(values: list[float], window: int = 10) -> list[float]:
    if len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid").tolist()


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_chart(run_dir: Path) -> Path:
    offline = _read_jsonl(run_dir / "offline" / "metrics.jsonl")
    online = _read_jsonl(run_dir / "online" / "metrics.jsonl")
    offset = offline[-1]["step"] if offline else 0
    series = {}
    if offline:
        series["offline BC"] = ([r["step"] for r in offline], smooth([r["loss"] for r in offline]))
    if online:
        series["online DAgger"] = ([offset + r["step"] for r in online], smooth([r["loss"] for r in online]))
    return line_chart(series, "training loss (smoothed over 10 steps)", "optimizer step", run_dir / "loss.png")


def dagger_stats(store_dir: Path) -> dict[int, dict[str, float]] | None:
    """Per weights version of the DAgger episodes: count, success rate, policy agreement with the expert.
    None when the store is not there: a run folder copied from the GPU machine without its store (2 GB
    for 16,000 episodes) still gets its report."""
    from rollout.store import EpisodeStore

    try:
        store = EpisodeStore(store_dir, create=False)
    except FileNotFoundError:
        return None
    per_version: dict[int, list[dict]] = {}
    for header in store.iter_headers(lenient=True):
        if header.source != "dagger":
            continue
        _, payload = store.read_payload(header.name, verify=False)
        per_version.setdefault(header.policy_version, []).append(payload["metrics"])
    return {version: {"episodes": len(rows), "SR": float(np.mean([r.get("SR", 0.0) for r in rows])),
                      "agreement": float(np.mean([r.get("policy_agreement", np.nan) for r in rows]))}
            for version, rows in sorted(per_version.items())}


def success_chart(run_dir: Path, stats: dict[int, dict[str, float]]) -> Path:
    versions = list(stats)
    series = {"DAgger episode SR": (versions, [stats[v]["SR"] for v in versions]),
              "policy = expert (agreement)": (versions, [stats[v]["agreement"] for v in versions])}
    return line_chart(series, "online DAgger episodes per weights version", "weights version",
                      run_dir / "success.png")


# ---------------------------------------------------------------------- episode GIF
def episode_gif(run_dir: Path, config, model: Path, path: Path) -> dict:
    """The trained agent on the first val_unseen episode: camera + top-down map, as an animated GIF."""
    from envs.episodes.io import load_split
    from envs.evaluation import run_episode
    from envs.geometry import yaw_from_quat
    from envs.render.topdown import topdown_map
    from rollout.actors import make_tasks
    from streamvln.pipeline.evaluation import checkpoint_policy

    episodes, gt = load_split(run_dir / "data", "val_unseen")
    episode = episodes[0]
    sensors = config.sensors
    task = make_tasks(1, sensors.width, sensors.height, sensors.hfov_deg, config.eval.max_steps)[0]
    policy = checkpoint_policy(str(model))
    frames: list[tuple[np.ndarray, np.ndarray]] = []

    class Recording:
        name, uses_sensors = policy.name, True

        def reset(self, episode, task):
            policy.reset(episode, task)

        def act(self, observations):
            state = task.backend.get_agent_state()
            frames.append((observations["rgb"], np.asarray(state.position), yaw_from_quat(state.rotation)))
            return policy.act(observations)

    run = run_episode(task, Recording(), episode, gt.get(episode.key))
    stride = max(1, len(frames) // MAX_GIF_FRAMES)
    images = []
    positions = np.asarray([p for _, p, _ in frames])
    for index in range(0, len(frames), stride):
        rgb, position, yaw = frames[index]
        top = topdown_map(task.backend.house, paths=[(np.asarray(episode.reference_path), (30, 160, 60)),
                                                      (positions[: index + 1], (210, 40, 40))],
                          agent=(position, yaw), goal=np.asarray(episode.goals[0].position), scale_px_per_m=20)
        images.append(_side_by_side(rgb, top))
    task.close()
    images[0].save(path, save_all=True, append_images=images[1:], duration=120, loop=0)
    return {"episode_id": episode.episode_id, "instruction": episode.instruction.instruction_text,
            **{k: run.metrics.as_dict()[k] for k in ("SR", "NE", "steps")}}


def _side_by_side(rgb: np.ndarray, top: np.ndarray) -> Image.Image:
    height = max(224, top.shape[0])
    camera = Image.fromarray(rgb).resize((224, 224), Image.NEAREST)
    canvas = Image.new("RGB", (224 + 8 + top.shape[1], height), (255, 255, 255))
    canvas.paste(camera, (0, 0))
    canvas.paste(Image.fromarray(top), (232, 0))
    return canvas.convert("P", palette=Image.ADAPTIVE)


# ---------------------------------------------------------------------- report
def write_report(run_dir: Path, config, state: dict, model: Path) -> Path:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    loss_chart(run_dir)
    stats = dagger_stats(run_dir / "store")
    if stats is not None:
        success_chart(run_dir, stats)
    gif = episode_gif(run_dir, config, model, run_dir / "episode.gif") if config.eval.gif else None
    total_min = sum(stage.get("seconds", 0.0) for stage in state.values()) / 60
    timings = ", ".join(f"{name} {stage.get('seconds', 0.0):.0f} s" for name, stage in state.items())
    lines = [f"# streamvln run `{config.name}`", "",
             f"Trained model: `{model}`. Stages took {total_min:.1f} min in total "
             f"({timings}).", "",
             "## val_unseen metrics", "", markdown_table(metrics["policies"]), "",
             "SR: STOP within 3 m of the goal (strict); NE, TL in metres; OS oracle success; SPL, nDTW, SDTW as in VLN-CE.",
             ""]
    for split, summaries in metrics.get("splits", {}).items():
        if split != "val_unseen":
            lines += [f"## {split} metrics", "", markdown_table(summaries), ""]
    maps = state.get("eval", {}).get("maps") or {}
    if maps:
        lines += ["## Top-down maps (val_unseen, trained agent)", "",
                  *(f"![{kind}]({name})" for kind, name in maps.items()), ""]
    lines += ["## Training", "", "![loss](loss.png)", ""]
    if stats:
        lines += ["## Online DAgger", "", "| weights version | episodes | SR (mixed policy) | agreement with expert |",
                  "|---|---|---|---|"]
        lines += [f"| v{v} | {s['episodes']} | {s['SR']:.3f} | {s['agreement']:.3f} |" for v, s in stats.items()]
        lines += ["", "![dagger](success.png)", ""]
    elif stats is None:
        lines += ["## Online DAgger", "", f"Not shown: the run's episode store (`{run_dir / 'store'}`) is not here.", ""]
    if gif is not None:
        lines += ["## One episode", "", f"Episode {gif['episode_id']}: \"{gif['instruction']}\" -> SR {gif['SR']:.0f}, "
                  f"NE {gif['NE']:.2f} m, {gif['steps']:.0f} steps.", "", "![episode](episode.gif)", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
