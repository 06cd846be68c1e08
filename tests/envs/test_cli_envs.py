import json

import pytest
from PIL import Image

from envs.episodes import load_split
from streamvln.cli import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    code = main(["dataset", "generate", "--out", str(out), "--split", "val_unseen", "--episodes", "3",
                 "--seed", "1", "--episodes-per-house", "3"])
    assert code == 0
    return out


def test_dataset_generate_writes_split(data_dir):
    episodes, gt = load_split(data_dir, "val_unseen")
    assert len(episodes) == 3 and set(gt) == {e.key for e in episodes}


def test_eval_expert_table_and_json(data_dir, tmp_path, capsys):
    out = tmp_path / "expert.json"
    assert main(["eval", "--data", str(data_dir), "--split", "val_unseen", "--policy", "expert",
                 "--episodes", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for column in ("NE", "OS", "SR", "SPL", "TL", "nDTW", "SDTW", "steps"):
        assert column in printed
    report = json.loads(out.read_text())
    assert report["num_episodes"] == 2 and len(report["episodes"]) == 2
    assert report["aggregate"]["SR"] == 1.0 and report["aggregate"]["SPL"] >= 0.9
    assert report["episodes"][0]["actions"][-1] == 0


def test_eval_replay_of_gt_matches_expert(data_dir, tmp_path):
    out = tmp_path / "replay.json"
    gt_file = data_dir / "val_unseen_gt.json.gz"
    assert main(["eval", "--data", str(data_dir), "--policy", f"replay:{gt_file}", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["aggregate"]["SR"] == 1.0 and report["aggregate"]["nDTW"] == pytest.approx(1.0)


def test_eval_bad_policy_is_a_clear_error(data_dir, capsys):
    assert main(["eval", "--data", str(data_dir), "--policy", "teleport"]) == 2
    assert "unknown policy 'teleport'" in capsys.readouterr().err


def test_eval_missing_split_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path), "--split", "val_seen"]) == 2
    assert "val_seen.json.gz does not exist" in capsys.readouterr().err


def test_sim_view_writes_png(data_dir, tmp_path):
    out = tmp_path / "view.png"
    assert main(["sim", "view", "--data", str(data_dir), "--split", "val_unseen", "--episode", "1",
                 "--out", str(out), "--width", "64", "--height", "48"]) == 0
    image = Image.open(out)
    assert image.width >= 4 * 64 and image.height > 48
    assert main(["sim", "view", "--data", str(data_dir), "--episode", "99", "--out", str(out)]) == 2
