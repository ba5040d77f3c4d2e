"""REP 118 image conversion: round trips, padding, byte order, bad messages."""
import numpy as np
import pytest
from sensor_msgs.msg import Image

from movseg_ros.conversions import (
    array_to_image,
    camera_info_to_K,
    color_to_rgb,
    depth_to_image,
    depth_to_raw,
    image_to_array,
    make_camera_info,
    rgbd_from_messages,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("encoding,dtype,shape", [
    ("rgb8", np.uint8, (5, 7, 3)), ("mono16", np.uint16, (5, 7)), ("16UC1", np.uint16, (4, 3)),
    ("32FC1", np.float32, (6, 2)), ("bgra8", np.uint8, (3, 3, 4)),
])
def test_round_trip(encoding, dtype, shape):
    arr = (RNG.random(shape) * 1000).astype(dtype)
    back = image_to_array(array_to_image(arr, encoding))
    assert back.dtype == dtype and np.array_equal(back, arr)


def test_row_padding_and_big_endian_are_honoured():
    depth = np.array([[1, 2, 3], [400, 500, 65535]], dtype=np.uint16)
    rows = [np.concatenate([r.astype(">u2").view(np.uint8), np.zeros(4, np.uint8)]) for r in depth]
    msg = Image(height=2, width=3, encoding="16UC1", is_bigendian=1, step=10, data=np.concatenate(rows).tobytes())
    raw, enc = depth_to_raw(msg)
    assert enc == "16UC1" and np.array_equal(raw, depth) and raw.dtype == np.uint16


def test_bgr_is_reordered_to_rgb():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue
    rgb = color_to_rgb(array_to_image(bgr, "bgr8"))
    assert rgb[0, 0].tolist() == [0, 0, 255]


def test_bad_messages_raise_clear_errors():
    with pytest.raises(ValueError, match="unsupported colour encoding"):
        color_to_rgb(array_to_image(np.zeros((2, 2), np.uint16), "16UC1"))
    with pytest.raises(ValueError, match="unsupported depth encoding"):
        depth_to_raw(array_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))
    short = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(10))
    with pytest.raises(ValueError, match="needs 48"):
        image_to_array(short)
    with pytest.raises(ValueError, match="step"):
        image_to_array(Image(height=1, width=4, encoding="rgb8", step=3, data=bytes(12)))


def test_camera_info_K_and_zero_focal_length():
    K = np.array([[500.0, 0, 320], [0, 501, 240], [0, 0, 1]])
    K2, hw = camera_info_to_K(make_camera_info(K, 480, 640))
    assert hw == (480, 640) and np.array_equal(K2, K)
    with pytest.raises(ValueError, match="unusable K"):
        camera_info_to_K(make_camera_info(np.zeros((3, 3)), 480, 640))


def test_mono16_depth_is_millimetres_like_16uc1():
    """Bug: the node refused mono16 depth although geometry decodes it (three different lists)."""
    from movseg_core.geometry import decode_depth

    mm = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    raw, enc = depth_to_raw(array_to_image(mm, "mono16"))
    assert enc == "mono16" and np.array_equal(raw, mm)
    depth, valid = decode_depth(raw, enc)
    assert np.array_equal(depth, decode_depth(mm, "16UC1")[0]) and valid.tolist() == [[False, True], [True, True]]


def test_node_accepts_mono16_depth():
    """The node's header check (``_check``) accepts every depth encoding geometry decodes."""
    import types

    from movseg_core.geometry import DEPTH_ENCODINGS
    from movseg_ros.node import MovsegNode

    K = np.array([[500.0, 0, 3], [0, 500, 2], [0, 0, 1]])
    rgb = array_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    rgb.header.stamp.sec = 5
    state = types.SimpleNamespace(_last_in_stamp=0.0)
    for enc in DEPTH_ENCODINGS:
        dtype = np.float32 if enc == "32FC1" else np.uint16
        depth = array_to_image(np.ones((4, 6), dtype), enc)
        assert MovsegNode._check(state, rgb, depth, make_camera_info(K, 4, 6)) is None, enc
    refused = MovsegNode._check(state, rgb, array_to_image(np.ones((4, 6), np.uint8), "mono8"),
                                make_camera_info(K, 4, 6))
    assert refused is not None and refused[0] == "input" and "mono16" in refused[1]


def test_depth_to_image_is_lossless():
    """Whole millimetres go out as 16UC1 (what cameras send), anything finer as 32FC1 metres."""
    from movseg_core.geometry import decode_depth, depth_mm_to_m

    mm = np.array([[0, 1000], [1234, 65535]], dtype=np.uint16)
    metres = depth_mm_to_m(mm)
    msg = depth_to_image(metres)
    assert msg.encoding == "16UC1" and np.array_equal(image_to_array(msg), mm)
    fine = metres + np.float32(1e-4) * (metres > 0)
    msg = depth_to_image(fine)
    assert msg.encoding == "32FC1" and np.array_equal(decode_depth(*depth_to_raw(msg))[0], fine)


def test_one_codec_for_rclpy_and_rosbags_messages():
    """The bag files' rosbags messages are built and read by the same functions as the node's."""
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import CameraInfo

    from movseg_ros.conversions import make_header, message_types, stamp_ns

    ts = get_typestore(Stores.ROS2_KILTED)
    types = message_types(ts)
    K = np.array([[500.0, 0, 320], [0, 501, 240], [0, 0, 1]])
    depth = np.array([[1, 2, 3], [400, 500, 65535]], dtype=np.uint16)
    header = make_header(1_700_000_000_123_456_789, "cam", types)
    for arr, enc in ((depth, "16UC1"), (np.arange(18, dtype=np.uint8).reshape(2, 3, 3), "rgb8")):
        bag_msg = array_to_image(arr, enc, header, types)
        assert np.array_equal(image_to_array(bag_msg), arr)  # decoded straight from the rosbags object
        rclpy_msg = deserialize_message(bytes(ts.serialize_cdr(bag_msg, "sensor_msgs/msg/Image")), Image)
        assert np.array_equal(image_to_array(rclpy_msg), arr)
        assert stamp_ns(rclpy_msg.header) == 1_700_000_000_123_456_789
        from_rclpy = ts.deserialize_cdr(serialize_message(array_to_image(arr, enc, rclpy_msg.header)),
                                        "sensor_msgs/msg/Image")
        assert np.array_equal(image_to_array(from_rclpy), arr) and from_rclpy.step == bag_msg.step
    info = make_camera_info(K, 480, 640, header, types)
    for msg in (info, deserialize_message(bytes(ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo")), CameraInfo)):
        K2, hw = camera_info_to_K(msg)
        assert np.array_equal(K2, K) and hw == (480, 640)
    padded = types["Image"](header=header, height=2, width=3, encoding="16UC1", is_bigendian=1, step=10,
                            data=np.concatenate([np.concatenate([r.astype(">u2").view(np.uint8), np.zeros(4, np.uint8)])
                                                 for r in depth]))
    assert np.array_equal(depth_to_raw(padded)[0], depth)  # step padding and big-endian, rosbags side


def test_rgbd_from_messages_scales_K_resizes_depth_and_reports_no_depth():
    """The node's input decode: colour size rules; K and depth of another size of the same aspect follow it."""
    rgb = (RNG.random((8, 12, 3)) * 255).astype(np.uint8)
    depth_mm = np.full((4, 6), 1500, np.uint16)
    depth_mm[0, 0] = 0       # no measurement
    depth_mm[3, 5] = 9000    # beyond the valid range below
    K = np.array([[5.0, 0, 2.5], [0, 5.0, 1.5], [0, 0, 1]])  # calibrated at 4x6
    out_rgb, depth_m, K_out, depth_hw = rgbd_from_messages(
        array_to_image(rgb, "bgr8"), array_to_image(depth_mm, "16UC1"), make_camera_info(K, 4, 6), (0.3, 8.0))
    assert np.array_equal(out_rgb, rgb[..., ::-1]) and depth_hw == (4, 6)
    assert depth_m.shape == (8, 12) and depth_m.dtype == np.float32
    assert depth_m[0:2, 0:2].max() == 0 and depth_m[6:, 10:].max() == 0  # nearest: each source pixel -> 2x2
    assert depth_m[4, 4] == pytest.approx(1.5)
    assert K_out[0, 0] == pytest.approx(10.0) and K_out[1, 1] == pytest.approx(10.0)
    empty = array_to_image(np.zeros((8, 12), np.uint16), "16UC1")
    _, none, _, _ = rgbd_from_messages(array_to_image(rgb, "rgb8"), empty, make_camera_info(K, 4, 6))
    assert none is None, "a depth image without one valid pixel must come back as None (colour alone)"
    with pytest.raises(ValueError, match="unusable K"):
        rgbd_from_messages(array_to_image(rgb, "rgb8"), array_to_image(depth_mm, "16UC1"),
                           make_camera_info(np.zeros((3, 3)), 4, 6))


def test_importing_the_ros_layer_sets_a_passive_openmp_wait_policy_unless_set():
    """Read by torch's OpenMP runtime when it loads: it must be in the environment of every node process."""
    import os
    import subprocess
    import sys

    code = "import movseg_ros, os; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE", "a user's setting must be kept"
