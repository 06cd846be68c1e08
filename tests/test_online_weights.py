"""Versioned weight folders: atomic publish, latest.json, checksums, pruning; eval results resume."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from training.online import OnlineConfig, latest_weights, publish_folder, publish_weights, verify_weights


class FakeLearner:
    """What publish_weights needs: export(dir), rank, step and config.data."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.rank, self.step = 0, 12
        self.config = SimpleNamespace(data=SimpleNamespace(num_frames=16, num_future_steps=4, num_history=8))

    def export(self, directory: Path) -> Path:
        directory.mkdir(parents=True)
        (directory / "model.safetensors").write_bytes(self.payload)
        (directory / "config.json").write_text("{}")
        return directory


def test_publish_versions_latest_and_pruning(tmp_path):
    root = tmp_path / "weights"
    for version in range(4):
        path, sha = publish_weights(FakeLearner(bytes([version]) * 100), root, version, keep=2)
        verify_weights(path, sha)
    assert sorted(p.name for p in root.iterdir()) == ["latest.json", "v000002", "v000003"]
    latest = latest_weights(root)
    assert latest["version"] == 3 and Path(latest["path"]).name == "v000003"
    assert json.loads((root / "v000003" / "sample_window.json").read_text())["num_frames"] == 16
    assert json.loads((root / "v000003" / "version.json").read_text())["step"] == 12
    assert not list(root.glob(".v*"))  # no temp folder left behind


def test_verify_detects_tampered_weights(tmp_path):
    path, sha = publish_weights(FakeLearner(b"abc"), tmp_path, 0)
    (path / "model.safetensors").write_bytes(b"abd")
    with pytest.raises(ValueError, match="does not match"):
        verify_weights(path, sha)


def test_publish_folder_copies_a_starting_model(tmp_path):
    source = FakeLearner(b"start").export(tmp_path / "model")
    path, sha = publish_folder(source, tmp_path / "weights", 0)
    assert (path / "model.safetensors").read_bytes() == b"start" and latest_weights(tmp_path / "weights")["sha256"] == sha
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        publish_folder(tmp_path, tmp_path / "w2", 0)


def test_online_config_validation():
    with pytest.raises(ValueError, match="publish_every"):
        OnlineConfig(publish_every=0).validate()
    with pytest.raises(ValueError, match="max_policy_lag"):
        OnlineConfig(max_policy_lag=-1).validate()
