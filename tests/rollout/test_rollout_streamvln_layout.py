"""StreamVLN layout interop: lossless round trip and every bad-input case named."""

from __future__ import annotations

import json
import shutil

import pytest
from rollout_fixtures import make_trajectory, step_frame, step_of

from rollout.records import encode_jpeg
from rollout.store import EpisodeStore
from rollout.streamvln_layout import (
    StreamVLNLayoutError,
    export_streamvln,
    import_streamvln,
    labels_from_actions,
)


def write_layout(root, episodes):
    """episodes: list of (id, actions, frame count, frame name format)."""
    annotations = []
    for ep_id, actions, frames, fmt in episodes:
        video = f"images/scene_r2r_{ep_id:06d}"
        folder = root / video / "rgb"
        folder.mkdir(parents=True)
        for step in range(frames):
            (folder / fmt.format(step)).write_bytes(encode_jpeg(step_frame(step, 16)))
        annotations.append({"id": ep_id, "video": video, "instructions": [f"go to room {ep_id}", "walk on"], "actions": actions})
    (root / "annotations.json").write_text(json.dumps(annotations))


def test_store_to_layout_to_store_is_lossless(tmp_path):
    store = EpisodeStore(tmp_path / "a")
    originals = [make_trajectory(num_steps=n, episode_id=f"e{n}", policy_version=n) for n in (5, 12, 33)]
    for trajectory in originals:
        store.add(trajectory)
    assert export_streamvln(store, tmp_path / "layout") == 3
    annotations = json.loads((tmp_path / "layout" / "annotations.json").read_text())
    assert [len(a["actions"]) for a in annotations] == [5, 12, 33] and all(a["actions"][0] == -1 for a in annotations)
    copy = EpisodeStore(tmp_path / "b")
    report = import_streamvln(tmp_path / "layout", copy)
    assert len(report.imported) == 3 and not report.skipped
    by_id = {t.episode_id: t for t in copy}
    for original in store:
        restored = by_id[original.episode_id]
        assert restored.label_actions.tolist() == original.label_actions.tolist()
        assert restored.rgb == original.rgb  # JPEG bytes identical: copied, not re-encoded
        assert restored.instructions == original.instructions
        assert restored.policy_version == original.policy_version
        assert (restored.poses == original.poses).all()


def test_public_layout_maps_actions_to_labels(tmp_path):
    # Unpadded names: 10.jpg must come after 9.jpg (natural sort, not string sort).
    write_layout(tmp_path, [(7, [-1, 1, 1, 2, 3, 1, 1, 1, 1, 1, 1, 2], 12, "{}.jpg")])
    store = EpisodeStore(tmp_path / "store")
    import_streamvln(tmp_path, store)
    (trajectory,) = list(store)
    assert trajectory.label_actions.tolist() == [1, 1, 2, 3, 1, 1, 1, 1, 1, 1, 2, 0]
    assert trajectory.instructions == ("go to room 7", "walk on")
    assert trajectory.source == "streamvln:" + tmp_path.name
    assert [step_of(trajectory.rgb_frame(t)) for t in range(12)] == list(range(12))


def test_annotation_ending_with_stop_keeps_a_single_final_stop(tmp_path):
    write_layout(tmp_path, [(1, [-1, 1, 1, 0], 4, "{:03d}.jpg")])
    store = EpisodeStore(tmp_path / "store")
    import_streamvln(tmp_path, store)
    (trajectory,) = list(store)
    assert trajectory.label_actions.tolist() == [1, 1, 0]
    assert trajectory.num_steps == 3


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing_frames", "episode 3.*missing frames folder"),
        ("length", r"episode 3: 5 frames .* but 6 actions"),
        ("unknown_action", r"episode 3: actions\[2\] = 7"),
        ("no_leading_minus_one", "episode 3: actions must start with -1"),
    ],
)
def test_bad_input_names_the_episode_and_lenient_skips_it(tmp_path, case, match):
    actions = {"length": [-1, 1, 1, 1, 1, 1], "unknown_action": [-1, 1, 7, 1, 1], "no_leading_minus_one": [1, 1, 1, 1, 1]}
    write_layout(tmp_path, [(2, [-1, 1, 1, 1, 2], 5, "{}.jpg"), (3, actions.get(case, [-1, 1, 1, 1, 1]), 5, "{}.jpg")])
    if case == "missing_frames":
        shutil.rmtree(tmp_path / "images" / "scene_r2r_000003")
    with pytest.raises(StreamVLNLayoutError, match=match):
        import_streamvln(tmp_path, EpisodeStore(tmp_path / "strict"))
    store = EpisodeStore(tmp_path / "lenient")
    report = import_streamvln(tmp_path, store, lenient=True)
    assert [skipped_id for skipped_id, _ in report.skipped] == ["3"]
    assert [t.episode_id for t in store] == ["2"]


def test_labels_from_actions_rejects_minus_one_later():
    with pytest.raises(StreamVLNLayoutError, match=r"actions\[2\] = -1"):
        labels_from_actions([-1, 1, -1], "episode 'x'")


def test_missing_annotations_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="annotations.json"):
        import_streamvln(tmp_path, EpisodeStore(tmp_path / "s"))
