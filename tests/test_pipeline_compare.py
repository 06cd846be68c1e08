"""`streamvln compare`: two evaluations paired by episode (differences, bootstrap intervals, sign test)."""

import json
import random

import pytest

from streamvln.cli import main
from streamvln.pipeline.compare import compare_evaluations, sign_test_p


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _row(episode, success, spl=None, scene="procedural/house_900000"):
    return {"scene_id": scene, "episode_id": episode, "SR": float(success),
            "SPL": spl if spl is not None else 0.8 * success, "NE": 1.0 if success else 5.0, "nDTW": 0.5}


def test_differences_are_paired_by_episode_not_by_line_order(tmp_path):
    base_rows = [_row(i, success=i < 50) for i in range(100)]  # SR 0.50
    new_rows = [_row(i, success=i < 50 or i >= 90) for i in range(100)]  # 10 more solved: SR 0.60
    random.Random(0).shuffle(new_rows)
    base, new = _write(tmp_path / "a.jsonl", base_rows), _write(tmp_path / "b.jsonl", new_rows)
    result = compare_evaluations(base, new, resamples=2000)
    sr = result["metrics"]["SR"]
    assert result["episodes"] == 100
    assert (sr["base"], sr["new"]) == pytest.approx((0.5, 0.6))
    assert sr["difference"] == pytest.approx(0.1)
    low, high = sr["ci95"]
    assert 0.0 < low < 0.1 < high < 0.2  # 10 of 100 episodes flip one way: clearly positive, not certain
    assert result["metrics"]["NE"]["difference"] == pytest.approx(-0.4)
    assert result["success_pairs"] == {"new_only": 10, "base_only": 0, "sign_test_p": pytest.approx(2 / 1024)}


def test_identical_evaluations_have_a_zero_interval(tmp_path):
    rows = [_row(i, success=i % 3 == 0, spl=0.1 * (i % 7)) for i in range(60)]
    path = _write(tmp_path / "a.jsonl", rows)
    result = compare_evaluations(path, path, metrics=("SR", "SPL"), resamples=500)
    assert result["metrics"]["SPL"]["ci95"] == [0.0, 0.0]
    assert result["success_pairs"] == {"new_only": 0, "base_only": 0, "sign_test_p": 1.0}


def test_sign_test_matches_the_binomial_tail():
    assert sign_test_p(5, 1) == pytest.approx(2 * 7 / 64)  # P(X <= 1), X ~ Bin(6, 1/2), two-sided
    assert sign_test_p(1, 5) == sign_test_p(5, 1)
    assert sign_test_p(4, 4) == 1.0
    assert sign_test_p(0, 0) == 1.0


def test_different_episode_sets_are_refused(tmp_path):
    base = _write(tmp_path / "a.jsonl", [_row(i, True) for i in range(10)])
    new = _write(tmp_path / "b.jsonl", [_row(i, True) for i in range(2, 12)])
    with pytest.raises(ValueError, match="2 only in the first, 2 only in the second"):
        compare_evaluations(base, new, resamples=100)


def test_bad_files_name_the_line(tmp_path):
    duplicate = _write(tmp_path / "dup.jsonl", [_row(1, True), _row(1, False)])
    with pytest.raises(ValueError, match=r"dup.jsonl:2: episode .* appears twice"):
        compare_evaluations(duplicate, duplicate, resamples=100)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(_row(1, True)) + "\n{not json\n")
    with pytest.raises(ValueError, match="broken.jsonl:2: not an episode result line"):
        compare_evaluations(broken, broken, resamples=100)
    good = _write(tmp_path / "good.jsonl", [_row(1, True)])
    with pytest.raises(ValueError, match="unknown metric 'XX'"):
        compare_evaluations(good, good, metrics=("XX",))


def test_cli_prints_json_and_reports_a_missing_file(tmp_path, capsys):
    base = _write(tmp_path / "a.jsonl", [_row(i, i < 3) for i in range(8)])
    new = _write(tmp_path / "b.jsonl", [_row(i, i < 5) for i in range(8)])
    assert main(["compare", str(base), str(new), "--metrics", "SR", "--resamples", "200"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["SR"]["difference"] == pytest.approx(0.25)
    assert list(printed["metrics"]) == ["SR"]
    assert main(["compare", str(base), str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such evaluation file" in capsys.readouterr().err
