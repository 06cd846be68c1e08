"""Paired comparison of two evaluations on the same episodes (issue 8: is a row's gain real?).

Both evaluations are per-episode JSONL files (`streamvln eval --results`, a run's eval/<policy>.jsonl).
Episodes are paired by (scene_id, episode_id), so the noise of which houses were drawn cancels: with
500 val_unseen episodes an unpaired SR difference has a standard error of about 3 points, while a
paired one is about half that when two models fail on the same hard episodes.

For each metric: both means, the mean paired difference (new - base) and its percentile-bootstrap 95%
interval (episodes resampled with replacement). For SR, also the discordant pairs (episodes only one
of the two solves) and the exact two-sided sign test on them (McNemar's exact test).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from envs.metrics import METRIC_NAMES

DEFAULT_METRICS = ("SR", "SPL", "NE", "nDTW")
DEFAULT_RESAMPLES = 10_000


def read_episode_results(path: Path) -> dict[tuple[str, int], dict]:
    """{(scene_id, episode_id): row} from an eval JSONL; a duplicate or unreadable line is an error.

    Not evaluation.read_results: that one serves resuming and skips a torn line, which here would
    silently drop an episode from one side of the comparison."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such evaluation file")
    rows: dict[tuple[str, int], dict] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (str(row["scene_id"]), int(row["episode_id"]))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: not an episode result line ({error})") from error
        if key in rows:
            raise ValueError(f"{path}:{number}: episode {key} appears twice")
        rows[key] = row
    if not rows:
        raise ValueError(f"{path}: no episode results")
    return rows


def paired_episodes(base: dict, new: dict, base_name: str, new_name: str) -> list[tuple[str, int]]:
    """The common episode keys, sorted; differing episode sets are an error (not a paired comparison)."""
    only_base, only_new = base.keys() - new.keys(), new.keys() - base.keys()
    if only_base or only_new:
        raise ValueError(f"{base_name} and {new_name} cover different episodes "
                         f"({len(only_base)} only in the first, {len(only_new)} only in the second, "
                         f"e.g. {sorted(only_base or only_new)[0]}): evaluate both on the same split")
    return sorted(base)


def sign_test_p(wins: int, losses: int) -> float:
    """Exact two-sided sign test: P(a split at least this uneven | each discordant pair is a coin flip)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _column(rows: dict, keys: list, metric: str, name: str) -> np.ndarray:
    missing = [key for key in keys if metric not in rows[key]]
    if missing:
        raise ValueError(f"{name}: episode {missing[0]} has no {metric!r} "
                         f"(metrics: {', '.join(METRIC_NAMES)})")
    return np.array([float(rows[key][metric]) for key in keys])


def bootstrap_picks(episodes: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples x episodes) episode indices drawn with replacement, shared by every metric."""
    return np.random.default_rng(seed).integers(0, episodes, size=(resamples, episodes))


def bootstrap_interval(differences: np.ndarray, picks: np.ndarray) -> tuple[float, float]:
    """Percentile-bootstrap 95% interval of the mean of per-episode differences."""
    means = differences[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def compare_evaluations(base_path: Path, new_path: Path, metrics: tuple[str, ...] = DEFAULT_METRICS,
                        resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """The paired comparison of `new_path` against `base_path` (both eval JSONL files), JSON-ready."""
    unknown = [metric for metric in metrics if metric not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRIC_NAMES)}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a 95% interval, got {resamples}")
    base, new = read_episode_results(base_path), read_episode_results(new_path)
    keys = paired_episodes(base, new, str(base_path), str(new_path))
    columns = {metric: (_column(base, keys, metric, str(base_path)),
                        _column(new, keys, metric, str(new_path))) for metric in metrics}
    picks = bootstrap_picks(len(keys), resamples, seed)
    result: dict = {"base": str(base_path), "new": str(new_path), "episodes": len(keys), "metrics": {}}
    for metric, (base_values, new_values) in columns.items():
        differences = new_values - base_values
        low, high = bootstrap_interval(differences, picks)
        result["metrics"][metric] = {"base": float(base_values.mean()), "new": float(new_values.mean()),
                                     "difference": float(differences.mean()), "ci95": [low, high]}
    if "SR" in columns:
        base_sr, new_sr = columns["SR"]
        wins = int(((new_sr > 0.5) & (base_sr < 0.5)).sum())
        losses = int(((base_sr > 0.5) & (new_sr < 0.5)).sum())
        result["success_pairs"] = {"new_only": wins, "base_only": losses,
                                   "sign_test_p": sign_test_p(wins, losses)}
    return result
