"""Wire protocol: encode/decode round trips and a typed error for every malformed field."""

import io

import msgpack
import numpy as np
import pytest
from PIL import Image

from agent.serving.protocol import (
    ErrorCode,
    ProtocolError,
    Reply,
    decode_reply,
    decode_request,
    encode_depth,
    encode_frame,
    encode_reply,
    encode_request,
)


def _rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _smooth_rgb(h=24, w=32):
    # JPEG is lossy; a smooth image survives it within a few grey levels.
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 128)], axis=-1).astype(np.uint8)


def _packed(**overrides):
    message = {"v": 1, "type": "act", "session": "s", "request_id": 7, "frame": encode_frame(_rgb(), jpeg=False)}
    message.update(overrides)
    return msgpack.packb({k: v for k, v in message.items() if v is not None}, use_bin_type=True)


def test_raw_frame_depth_and_pose_round_trip_exactly():
    rgb, depth = _rgb(), np.random.default_rng(1).random((24, 32, 1), dtype=np.float32)
    pose = [1.0, 0.0, -2.5, 0.0, 0.38268343, 0.0, 0.92387953]
    payload = encode_request("act", "ep1", 3, frame=encode_frame(rgb, jpeg=False), depth=encode_depth(depth), pose=pose,
                             executed=[1, 2, 2, 0])
    request = decode_request(payload)
    assert (request.type, request.session, request.request_id) == ("act", "ep1", 3)
    np.testing.assert_array_equal(request.rgb, rgb)
    np.testing.assert_array_equal(request.depth, depth)
    np.testing.assert_allclose(request.pose, pose)
    assert request.executed == [1, 2, 2, 0]
    assert decode_request(encode_request("act", "ep1", 4, frame=encode_frame(rgb, jpeg=False))).executed is None


def test_jpeg_frame_decodes_to_declared_shape_close_to_the_original():
    rgb = _smooth_rgb()
    request = decode_request(encode_request("act", "ep1", 1, frame=encode_frame(rgb, jpeg=True)))
    assert request.rgb.shape == rgb.shape and request.rgb.dtype == np.uint8
    assert np.abs(request.rgb.astype(int) - rgb).mean() < 4


def test_reset_carries_instruction():
    request = decode_request(encode_request("reset", "ep1", "r1", instruction="walk to the red sofa"))
    assert request.instruction == "walk to the red sofa" and request.request_id == "r1"


def test_reply_round_trip_keeps_error_code_and_extras():
    reply = Reply(ok=False, request_id=5, session="s", model_version=3, error_code=ErrorCode.WRONG_SIZE,
                  error_message="short", extra={"batch_size": 2})
    decoded = decode_reply(encode_reply(reply))
    assert decoded.error_code is ErrorCode.WRONG_SIZE and decoded.error_message == "short"
    assert decoded.extra == {"batch_size": 2} and decoded.model_version == 3


def _jpeg_bytes(h, w):
    buffer = io.BytesIO()
    Image.fromarray(_rgb(h, w)).save(buffer, format="JPEG")
    return buffer.getvalue()


RAW = encode_frame(_rgb(), jpeg=False)
MALFORMED = {
    "not msgpack": (b"\xc1\xc1 garbage", ErrorCode.BAD_MESSAGE),
    "not a map": (msgpack.packb([1, 2, 3]), ErrorCode.BAD_MESSAGE),
    "wrong version": (_packed(v=2), ErrorCode.BAD_MESSAGE),
    "unknown type": (_packed(type="dance"), ErrorCode.BAD_MESSAGE),
    "no session": (_packed(session=""), ErrorCode.BAD_MESSAGE),
    "reset without instruction": (_packed(type="reset", frame=None), ErrorCode.MISSING_INSTRUCTION),
    "blank instruction": (_packed(type="reset", instruction="   "), ErrorCode.MISSING_INSTRUCTION),
    "act without frame": (_packed(frame=None), ErrorCode.BAD_MESSAGE),
    "four channels": (_packed(frame={**RAW, "shape": [24, 32, 4]}), ErrorCode.WRONG_SHAPE),
    "shape not a list": (_packed(frame={**RAW, "shape": "24x32"}), ErrorCode.WRONG_SHAPE),
    "huge frame": (_packed(frame={**RAW, "shape": [100000, 32, 3]}), ErrorCode.WRONG_SHAPE),
    "float frame": (_packed(frame={**RAW, "dtype": "float32"}), ErrorCode.WRONG_DTYPE),
    "short raw data": (_packed(frame={**RAW, "data": RAW["data"][:-1]}), ErrorCode.WRONG_SIZE),
    "data as text": (_packed(frame={**RAW, "data": "abc"}), ErrorCode.BAD_MESSAGE),
    "unknown encoding": (_packed(frame={**RAW, "encoding": "png"}), ErrorCode.BAD_MESSAGE),
    "garbage jpeg": (_packed(frame={**RAW, "encoding": "jpeg", "data": b"\xff\xd8nope"}), ErrorCode.BAD_MESSAGE),
    "jpeg of another size": (_packed(frame={**RAW, "encoding": "jpeg", "data": _jpeg_bytes(48, 32)}), ErrorCode.WRONG_SHAPE),
    "depth of another size": (_packed(depth=encode_depth(np.zeros((12, 32, 1), np.float32))), ErrorCode.WRONG_SHAPE),
    "depth as float64": (_packed(depth={**encode_depth(np.zeros((24, 32, 1))), "dtype": "float64"}), ErrorCode.WRONG_DTYPE),
    "depth short": (_packed(depth={**encode_depth(np.zeros((24, 32, 1))), "data": b"\0" * 10}), ErrorCode.WRONG_SIZE),
    "pose of 6": (_packed(pose=[0.0] * 6), ErrorCode.WRONG_SHAPE),
    "pose with nan": (_packed(pose=[0.0] * 6 + [float("nan")]), ErrorCode.BAD_MESSAGE),
    "executed empty": (_packed(executed=[]), ErrorCode.BAD_MESSAGE),
    "executed action 4": (_packed(executed=[1, 4]), ErrorCode.BAD_MESSAGE),
    "executed as text": (_packed(executed="FFLR"), ErrorCode.BAD_MESSAGE),
    "executed with a bool": (_packed(executed=[1, True]), ErrorCode.BAD_MESSAGE),
    "executed too long": (_packed(executed=[1] * 65), ErrorCode.BAD_MESSAGE),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_request_raises_typed_error(case):
    payload, code = MALFORMED[case]
    with pytest.raises(ProtocolError) as info:
        decode_request(payload)
    assert info.value.code is code, info.value.message
    if code is not ErrorCode.BAD_MESSAGE or case not in ("not msgpack", "not a map"):
        assert info.value.request_id == 7  # the error reply can still name the request


def test_client_side_encoders_refuse_wrong_arrays():
    with pytest.raises(ValueError, match="uint8"):
        encode_frame(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="depth"):
        encode_depth(np.zeros((4, 4, 3), np.float32))
