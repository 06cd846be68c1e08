"""Learner checkpoints: the DeepSpeed engine checkpoint plus everything else that decides the next step.

Layout under `<out_dir>/checkpoints/`:
    step_000100/            DeepSpeed engine files (model, ZeRO optimizer partitions, lr scheduler)
    step_000100/learner_state.json   step, data position, samples per source,
                                     model fingerprint, engine layout, the run's config
    step_000100/rng_rank<r>.{json,safetensors}   python/numpy and torch CPU (+ CUDA) generator states of rank r
    latest                  the newest tag (written by DeepSpeed)

The learner's own state is JSON + safetensors (no pickle). The fingerprint (model class and parameter
names/shapes) is checked before DeepSpeed loads anything, so a checkpoint of another model fails with
a clear message instead of a shape error deep inside ZeRO. So is the engine layout (DeepSpeed bf16
wrapper or fp32 weights, ZeRO stage): DeepSpeed cannot load the optimizer state of one layout into another.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

STATE_FILE = "learner_state.json"
TAG_PREFIX = "step_"


def tag_for_step(step: int) -> str:
    return f"{TAG_PREFIX}{step:08d}"


def model_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Class name, parameter count and a hash of (name, shape) pairs; taken before ZeRO partitions."""
    entries = [f"{name}:{tuple(p.shape)}" for name, p in model.named_parameters()]
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]
    return {"class": type(model).__name__, "num_params": sum(p.numel() for p in model.parameters()),
            "shapes_sha256": digest}


def check_fingerprint(saved: dict[str, Any], current: dict[str, Any], where: Path) -> None:
    if saved != current:
        raise ValueError(
            f"checkpoint {where} was saved from a different model: saved {saved['class']} "
            f"({saved['num_params']} params, shapes {saved['shapes_sha256']}), current {current['class']} "
            f"({current['num_params']} params, shapes {current['shapes_sha256']})")


def engine_layout(ds_config: dict[str, Any]) -> dict[str, Any]:
    """How the engine keeps weights and optimizer state, as far as loading a checkpoint cares.

    "bf16": DeepSpeed's bf16 wrapper (bf16 module, fp32 master copy in its optimizer files);
    "fp32": fp32 module weights (speed.torch_autocast, or bf16: false). ZeRO-1 and -2 write the same
    partition files (DeepSpeed loads one as the other); stage 0 (the torch optimizer's own state_dict)
    and stage 3 are each a format of their own.
    """
    stage = int(ds_config["zero_optimization"]["stage"])
    return {"weights": "bf16" if ds_config.get("bf16", {}).get("enabled") is True else "fp32",
            "zero": {0: "0", 1: "1/2", 2: "1/2", 3: "3"}[stage]}


def check_optimizer_groups(saved: list[str] | None, current: list[str], where: Path) -> None:
    """Refuse a checkpoint whose optimizer groups differ (other per-part lrs or weight decay merge the
    parts differently): ZeRO's saved partitions are per group. None: saved before groups were recorded."""
    if saved is None or list(saved) == list(current):
        return
    raise ValueError(f"checkpoint {where} has optimizer groups {list(saved)}, this run {list(current)} (groups with "
                     f"equal lr and weight decay are merged): resume with the checkpoint's optim settings")


_WEIGHTS = {"bf16": "bf16 weights with DeepSpeed's fp32 master copy (bf16: true, speed.torch_autocast: false)",
            "fp32": "fp32 weights (speed.torch_autocast: true, or bf16: false)"}


def check_engine_layout(saved: dict[str, Any] | None, current: dict[str, Any], where: Path) -> None:
    """Refuse a checkpoint of another layout before DeepSpeed half-loads it and fails on a missing file or
    key (None: a checkpoint from before the layout was recorded; DeepSpeed's own errors apply)."""
    if saved is None or saved == current:
        return
    raise ValueError(
        f"checkpoint {where} holds {_WEIGHTS[saved['weights']]} and ZeRO stage {saved['zero']} optimizer "
        f"state; this run has {_WEIGHTS[current['weights']]} and ZeRO stage {current['zero']}. DeepSpeed "
        f"cannot load one as the other: resume with the checkpoint's bf16 / speed.torch_autocast / "
        f"zero_stage, or start a new run from its exported weights (model_path)")


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(JSON-able python/numpy state, tensors for torch generators)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {"python": [version, list(internal), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    return plain, tensors


def set_rng_state(plain: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])


def write_learner_state(directory: Path, state: dict[str, Any], rank: int,
                        rng: tuple[dict[str, Any], dict[str, torch.Tensor]] | None = None) -> None:
    """Every rank writes its generator states (`rng`, default: now); then rank 0 writes the JSON,
    which marks the checkpoint complete."""
    directory.mkdir(parents=True, exist_ok=True)
    plain, tensors = rng if rng is not None else rng_state()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / f"rng_rank{rank}.safetensors"))
    (directory / f"rng_rank{rank}.json").write_text(json.dumps(plain))
    if rank == 0:
        tmp = directory / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(directory / STATE_FILE)


def read_learner_state(directory: Path) -> dict[str, Any]:
    path = directory / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a learner checkpoint (no {STATE_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is corrupt: {error}") from error


def restore_rng(directory: Path, rank: int) -> None:
    tensors = load_file(str(directory / f"rng_rank{rank}.safetensors"))
    set_rng_state(json.loads((directory / f"rng_rank{rank}.json").read_text()), tensors)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root` (has learner_state.json), or None."""
    if not root.is_dir():
        return None
    complete = sorted(d for d in root.iterdir() if d.name.startswith(TAG_PREFIX) and (d / STATE_FILE).is_file())
    return complete[-1] if complete else None


def prune_checkpoints(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints; returns the deleted folders."""
    complete = sorted(d for d in root.iterdir() if d.name.startswith(TAG_PREFIX) and (d / STATE_FILE).is_file())
    doomed = complete[:-keep] if keep > 0 else []
    for directory in doomed:
        shutil.rmtree(directory, ignore_errors=True)
    return doomed
