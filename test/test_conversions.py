"""REP 118 image conversion: round trips, padding, byte order, bad messages."""
import numpy as np
import pytest
from sensor_msgs.msg import Image

from movseg_ros.conversions import (array_to_image, camera_info_to_K, color_to_rgb, depth_to_raw,
                                    image_to_array, make_camera_info)

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
