"""The results table from runs' metrics.json files, and a shipped checkpoint folder (issue 8).

`results_markdown(run_dirs)`: one row per (run, evaluated policy) with NE, OS, SR, SPL, nDTW and the
command that reproduces it. Baseline policies that do not depend on the run (random, forward, expert)
appear once, from the first run that evaluated them.

`ship_checkpoint(run_dir, out_dir)`: the run's trained model (safetensors + config + tokenizer +
window) with its metrics.json, run config and a README holding the commands, so that
`streamvln eval --policy checkpoint:<out_dir>` and `streamvln demo --checkpoint <out_dir>` work on a
fresh clone. Refuses a folder over the size guard (default 25 MB, the repository's limit).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from envs.metrics import METRIC_NAMES
from envs.sensors import SensorConfig

TABLE_METRICS = ("NE", "OS", "SR", "SPL", "nDTW")
RUN_INDEPENDENT = ("random", "forward", "expert")
MODEL_FILES = ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
               "tokenizer_config.json", "sample_window.json")
DEFAULT_MAX_MB = 25.0


def read_metrics(run_dir: Path) -> dict:
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: has the run's eval stage finished?")
    metrics = json.loads(path.read_text())
    if "policies" not in metrics:
        raise ValueError(f"{path}: no 'policies' key (not a streamvln run's metrics.json)")
    return metrics


def table_rows(run_dirs: list[Path], split: str = "val_unseen") -> list[dict]:
    """Rows {row, run, policy, episodes, metrics..., command} in run order."""
    rows: list[dict] = []
    seen_baselines: set[str] = set()
    for run_dir in run_dirs:
        metrics = read_metrics(run_dir)
        per_split = metrics.get("splits", {}).get(split)
        if per_split is None:
            if split != "val_unseen":
                continue  # this run did not evaluate that split
            per_split = metrics["policies"]
        command = metrics.get("command") or f"streamvln run --config {Path(run_dir) / 'run_config.json'}"
        for policy, values in per_split.items():
            if policy in RUN_INDEPENDENT:
                if policy in seen_baselines:
                    continue
                seen_baselines.add(policy)
            label = policy if policy in RUN_INDEPENDENT else f"{metrics.get('run', Path(run_dir).name)}: {policy}"
            rows.append({"row": label, "run": metrics.get("run"), "policy": policy,
                         "episodes": values.get("episodes"), **{k: values.get(k) for k in METRIC_NAMES},
                         "command": command})
    return rows


def results_markdown(run_dirs: list[Path], split: str = "val_unseen") -> str:
    rows = table_rows(run_dirs, split)
    if not rows:
        raise ValueError(f"no run among {[str(d) for d in run_dirs]} has {split} metrics")
    header = "| row | episodes | " + " | ".join(TABLE_METRICS) + " |"
    rule = "|---|---|" + "---|" * len(TABLE_METRICS)
    lines = [f"## {split}", "", header, rule]
    for row in rows:
        cells = [_fmt(name, row.get(name)) for name in TABLE_METRICS]
        lines.append(f"| {row['row']} | {row['episodes']} | " + " | ".join(cells) + " |")
    commands = list(dict.fromkeys((row["run"], row["command"]) for row in rows))
    lines += ["", "Commands (each run evaluates its rows):", ""]
    lines += [f"- `{run}`: `{command}`" for run, command in commands]
    return "\n".join(lines) + "\n"


def _fmt(name: str, value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if name == "NE" else f"{100 * value:.1f}"


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**20


def ship_checkpoint(run_dir: Path, out_dir: Path, max_mb: float = DEFAULT_MAX_MB, model: Path | None = None) -> Path:
    """Copy the run's trained model + metrics + commands into out_dir (replaced atomically)."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    metrics = read_metrics(run_dir)
    model = Path(model or metrics["trained_model"])
    missing = [name for name in MODEL_FILES if not (model / name).is_file()]
    if missing:
        raise FileNotFoundError(f"model folder {model} lacks {missing}")
    size = sum((model / name).stat().st_size for name in MODEL_FILES) / 2**20
    if size > max_mb:
        raise ValueError(f"model {model} is {size:.1f} MB, over the {max_mb:g} MB checkpoint guard")
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy2(model / name, staging / name)
    shutil.copy2(run_dir / "metrics.json", staging / "metrics.json")
    if (run_dir / "run_config.json").is_file():
        shutil.copy2(run_dir / "run_config.json", staging / "run_config.json")
    # A BC-only run's table may have no offline row (`eval.policies: [trained]`): its trained row is this model.
    is_offline = model.resolve() == (run_dir / "offline" / "model").resolve()
    row = "offline" if is_offline and "offline" in metrics["policies"] else "trained"
    (staging / "README.md").write_text(checkpoint_readme(out_dir, metrics, run_dir, row))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    return out_dir


def checkpoint_readme(out_dir: Path, metrics: dict, run_dir: Path, row: str = "trained") -> str:
    """The shipped folder's README; `row` names the table row this model is (offline BC or trained)."""
    config = json.loads((run_dir / "run_config.json").read_text()) if (run_dir / "run_config.json").is_file() else {}
    data, sensors = config.get("data", {}), SensorConfig(**config.get("sensors", {}))
    policies = metrics["policies"]
    table = ["| policy | episodes | " + " | ".join(TABLE_METRICS) + " |", "|---|---|" + "---|" * len(TABLE_METRICS)]
    table += [f"| {p} | {v.get('episodes')} | " + " | ".join(_fmt(k, v.get(k)) for k in TABLE_METRICS) + " |"
              for p, v in policies.items()]
    size = f"--width {sensors.width} --height {sensors.height} --hfov {sensors.hfov_deg}"
    generate = (f"streamvln dataset generate --out data/{out_dir.name} --split val_unseen "
                f"--episodes {data.get('val_episodes', 30)} --seed {data.get('seed', 0)} "
                f"--episodes-per-house {data.get('episodes_per_house', 10)} "
                f"--min-geodesic {data.get('min_geodesic_m', 3.5)} --max-geodesic {data.get('max_geodesic_m', 6.0)}")
    blank = " --blank-instructions" if metrics.get("instruction_blind") else ""
    return "\n".join([
        f"# Checkpoint `{out_dir.name}`", "",
        f"Trained by run `{metrics.get('run')}`: `{metrics.get('command') or 'streamvln run'}`", "",
        "val_unseen metrics at shipping time (SR, SPL, OS, nDTW in %; NE in metres):", "", *table, "",
        f"Reproduce the {row} row on a fresh clone (CPU):", "", "```",
        generate,
        f"streamvln eval --data data/{out_dir.name} --split val_unseen --policy checkpoint:{out_dir} "
        f"--results runs/{out_dir.name}_eval.jsonl --workers 2 --max-steps {config.get('eval', {}).get('max_steps', 500)} "
        f"{size}{blank}",
        f"streamvln demo --checkpoint {out_dir} {size}", "```", "",
        "Files: model.safetensors + config.json (the SlowFast model), tokenizer + processor settings, "
        "sample_window.json (the training window the agent must use), metrics.json and run_config.json "
        "of the run.", ""])
