"""The learner's fast data path: single-frame reads with a once-per-file-version checksum, format-1
files still readable, and the direct JPEG decoder giving Image.open's pixels."""

from __future__ import annotations

import io
import os
import struct
import zlib

import msgpack
import numpy as np
import pytest
from PIL import Image
from rollout_fixtures import make_trajectory, step_of

import rollout.store as store_module
from rollout.records import decode_jpeg, jpeg_shape
from rollout.store import _PREFIX, MAGIC, CorruptEpisodeError, EpisodeStore
from rollout.view import StoreView, ViewConfig


def _count_sha256(monkeypatch) -> list[int]:
    calls = [0]
    real = store_module.hashlib.sha256

    def counting(data=b""):
        calls[0] += 1
        return real(data)

    monkeypatch.setattr(store_module.hashlib, "sha256", counting)
    return calls


def test_read_frames_matches_read_and_verifies_once_per_file_version(tmp_path, monkeypatch):
    store = EpisodeStore(tmp_path)
    name = store.add(make_trajectory(num_steps=30))
    header = store.read_header(name)
    assert header.frame_spans is not None and header.frame_spans.shape == (30, 3)
    whole = store.read(name)
    calls = _count_sha256(monkeypatch)
    assert store.read_frames(header, [0, 7, 29]) == [whole.rgb[i] for i in (0, 7, 29)]
    assert store.read_frames(header, [3, 3, 12]) == [whole.rgb[i] for i in (3, 3, 12)]
    assert calls[0] == 1  # the second read fetched two frames without hashing the payload
    with pytest.raises(ValueError, match="outside"):
        store.read_frames(header, [30])


def test_content_changed_after_a_cached_verification_still_raises(tmp_path):
    store = EpisodeStore(tmp_path)
    name = store.add(make_trajectory(num_steps=20))
    header = store.read_header(name)
    store.read_frames(header, [5])  # verified and cached
    path = store.path_of(name)
    offset, length, _ = (int(v) for v in header.frame_spans[5])
    data = bytearray(path.read_bytes())
    position = header.header_bytes + offset + length // 2
    data[position] ^= 0xFF  # same size, different content
    stat = path.stat()
    path.write_bytes(bytes(data))
    # Same mtime as the verified version: the frame's crc32 still catches it.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(CorruptEpisodeError, match=f"{name}.*frame 5"):
        store.read_frames(header, [5])
    # A new mtime: the whole payload is verified again, so damage in any frame is found.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(CorruptEpisodeError, match=f"{name}.*checksum"):
        store.read_frames(header, [0])


def _rewrite_header(path, edit) -> None:
    """Rewrite an episode file's header through edit(dict) (to make format-1 or future files)."""
    data = path.read_bytes()
    _, header_len, _ = _PREFIX.unpack_from(data)
    header = msgpack.unpackb(data[_PREFIX.size : _PREFIX.size + header_len], raw=False)
    payload = data[_PREFIX.size + header_len :]
    edit(header)
    header_bytes = msgpack.packb(header, use_bin_type=True)
    path.write_bytes(_PREFIX.pack(MAGIC, len(header_bytes), zlib.crc32(header_bytes)) + header_bytes + payload)


def test_format_1_files_without_frame_spans_are_still_read(tmp_path):
    store = EpisodeStore(tmp_path)
    name = store.add(make_trajectory(num_steps=40))

    def to_v1(header):
        header["format"] = 1
        del header["frame_spans"]

    _rewrite_header(store.path_of(name), to_v1)
    header = store.read_header(name)
    assert header.frame_spans is None
    assert [step_of(decode_jpeg(f)) for f in store.read_frames(header, [1, 33])] == [1, 33]
    view = StoreView(store, ViewConfig())
    view.refresh()
    sample = view.load(view.refs[1])  # second window: memory frames from 0, fast frames from 32
    assert [step_of(frame) for frame in sample.images] == sample.time_ids.tolist()


def test_a_newer_format_is_named_as_such(tmp_path):
    store = EpisodeStore(tmp_path)
    name = store.add(make_trajectory(num_steps=8))
    _rewrite_header(store.path_of(name), lambda header: header.update(format=99))
    with pytest.raises(CorruptEpisodeError, match="format 99 is newer"):
        store.read_header(name)


def test_view_frames_come_from_single_frame_reads(tmp_path):
    store = EpisodeStore(tmp_path)
    store.add(make_trajectory(num_steps=70, size=48))
    view = StoreView(store, ViewConfig(image_size=32, frame_cache_mb=1))
    view.refresh()
    for ref in view.refs:
        sample = view.load(ref)
        assert sample.images.shape[1:] == (32, 32, 3)
        assert [step_of(frame) for frame in sample.images] == sample.time_ids.tolist()
    assert view._frames.hits > 0  # memory frames reuse decoded fast frames of earlier windows


def _public_decode(data: bytes, size: int | None) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    if size is not None and image.size != (size, size):
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
    return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("options", [
    {}, {"progressive": True}, {"subsampling": 0}, {"quality": 40, "optimize": True},
    {"mode": "L"}, {"exif": b"Exif\0\0" + bytes(40), "icc_profile": b"p" * 3000},
])
def test_direct_jpeg_decode_gives_image_open_pixels(options):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    pixels[16:40, 20:60] = (200, 30, 90)
    mode = options.pop("mode", "RGB")
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="JPEG", **options)
    data = buffer.getvalue()
    assert jpeg_shape(data) == (64, 80, 3 if mode == "RGB" else 1)
    for size in (None, 32, 64):
        np.testing.assert_array_equal(decode_jpeg(data, size), _public_decode(data, size))


def test_truncated_jpeg_still_raises_and_non_jpeg_has_no_shape():
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(buffer, format="JPEG")
    with pytest.raises(OSError):
        decode_jpeg(buffer.getvalue()[:200])
    assert jpeg_shape(b"\x89PNG\r\n") is None
    assert jpeg_shape(b"\xff\xd8\xff\xc0" + struct.pack(">HBHHB", 11, 12, 8, 8, 3)) is None  # 12-bit
