"""sensor_msgs <-> numpy conversion (REP 118 encodings), without cv_bridge: the one codec.

ROS 2 ``cv_bridge`` cannot be installed on the pip-only stack (and PyPI's
``cv-bridge`` is a ROS 1 copy that decodes 16UC1 wrongly), so this module does
the few conversions the node, the player, the replay and the bag files need, honouring
``step`` (row padding) and ``is_bigendian``. rclpy messages and ``rosbags`` messages share
field names: every decoder reads both; encoders build rclpy's unless given the rosbags
typestore's classes (:func:`message_types`). Every failure raises ``ValueError`` with the
reason; the node turns that into a counted, logged drop.
"""
from __future__ import annotations

import cv2
import numpy as np

from movseg_core.geometry import decode_depth, scale_intrinsics
from movseg_core.geometry.depth import DEPTH_ENCODINGS, depth_m_to_mm, depth_mm_to_m  # the one list and unit helpers

#: encoding -> (numpy dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3")


def unsupported_depth(encoding: str) -> str:
    """The message for a depth encoding outside :data:`DEPTH_ENCODINGS`."""
    return (f"unsupported depth encoding '{encoding}' (expected one of {', '.join(DEPTH_ENCODINGS)}: "
            "millimetres as uint16 or metres as float32, REP 118)")


def image_to_array(msg) -> np.ndarray:
    """``sensor_msgs/Image`` -> HxW or HxWxC array (a copy, native byte order)."""
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ValueError(f"unsupported image encoding '{enc}' (supported: {', '.join(ENCODINGS)})")
    dtype, ch = ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image {w}x{h}")
    row = w * ch * dtype.itemsize
    if step < row:
        raise ValueError(f"step {step} smaller than a row of {w} {enc} pixels ({row} bytes)")
    buf = np.frombuffer(msg.data, dtype=np.uint8)  # bytes or array.array('B'), no copy
    if buf.size < step * h:
        raise ValueError(f"image data has {buf.size} bytes, {w}x{h} {enc} with step {step} needs {step * h}")
    rows = buf[: step * h].reshape(h, step)[:, :row]
    dt = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    arr = rows.copy().view(dt).reshape((h, w, ch) if ch > 1 else (h, w))
    return arr.astype(dtype, copy=False)


def color_to_rgb(msg) -> np.ndarray:
    """Colour image message -> HxWx3 uint8 RGB."""
    if msg.encoding not in COLOR_ENCODINGS:
        raise ValueError(f"unsupported colour encoding '{msg.encoding}' (expected one of {COLOR_ENCODINGS})")
    arr = image_to_array(msg)
    enc = msg.encoding
    if enc in ("rgb8", "8UC3"):
        return arr
    if enc == "bgr8":
        return arr[..., ::-1].copy()
    if enc == "rgba8":
        return arr[..., :3].copy()
    if enc == "bgra8":
        return arr[..., 2::-1].copy()
    return np.repeat(arr[..., None], 3, axis=2)  # mono8


def depth_to_raw(msg) -> tuple[np.ndarray, str]:
    """Depth image message -> (HxW raw array, encoding) for ``geometry.decode_depth``."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ValueError(unsupported_depth(msg.encoding))
    return image_to_array(msg), msg.encoding


def rgbd_from_messages(color, depth, info, valid_range: tuple[float, float] | None = None
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, tuple[int, int]]:
    """A synchronised colour + depth + camera_info triple -> (rgb, depth_m, K, depth size as received).

    rgb: HxWx3 uint8; depth_m: HxW float32 metres registered to rgb, 0 = invalid (outside ``valid_range``
    metres too), or None when no pixel holds depth; K: 3x3 float64 of rgb (scaled when camera_info
    describes another resolution of the same aspect); depth at another resolution of the same aspect is
    resized (nearest) to rgb's: compare the returned (height, width) with rgb's to know. The caller
    checks the aspects; ValueError for an unusable message.
    """
    rgb = color_to_rgb(color)
    raw, enc = depth_to_raw(depth)
    K, info_hw = camera_info_to_K(info)
    h, w = rgb.shape[:2]
    if info_hw != (h, w):
        K = scale_intrinsics(K, info_hw, (h, w))
    depth_hw = (int(raw.shape[0]), int(raw.shape[1]))
    if depth_hw != (h, w):
        raw = cv2.resize(raw, (w, h), interpolation=cv2.INTER_NEAREST)
    depth_m, valid = decode_depth(raw, enc, valid_range=valid_range)
    depth_m = np.asarray(depth_m, dtype=np.float32)
    return rgb, (depth_m if np.asarray(valid).any() else None), K, depth_hw


def array_to_image(arr: np.ndarray, encoding: str, header=None, types: dict | None = None):
    """HxW[xC] array -> ``sensor_msgs/Image`` with the given encoding and header (little-endian, no padding).

    types: :func:`message_types` of a rosbags typestore to build a rosbags message; default rclpy's.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"unsupported image encoding '{encoding}'")
    dtype, ch = ENCODINGS[encoding]
    arr = np.ascontiguousarray(arr)
    if (arr.dtype != dtype or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != ch)
            or (arr.ndim == 2 and ch != 1)):
        raise ValueError(f"array {arr.dtype} {arr.shape} does not match encoding {encoding}")
    t = types or message_types()
    le = np.ascontiguousarray(arr.astype(dtype.newbyteorder("<"), copy=False))
    # rclpy copies bytes in ~1 ms (a numpy array element by element: ~300 ms); rosbags wants uint8 arrays
    data = le.view(np.uint8).reshape(-1) if _is_rosbags(t) else le.tobytes()
    return t["Image"](header=header if header is not None else make_header(0, "", t),
                      height=int(arr.shape[0]), width=int(arr.shape[1]), encoding=encoding, is_bigendian=0,
                      step=int(arr.shape[1] * ch * dtype.itemsize), data=data)


def depth_to_image(depth: np.ndarray, header=None):
    """HxW float32 metres (0 = invalid) -> depth ``sensor_msgs/Image``, losslessly: ``16UC1``
    millimetres (what cameras send) when every depth is a whole millimetre, else ``32FC1`` metres."""
    mm = depth_m_to_mm(depth)
    if np.array_equal(depth_mm_to_m(mm), depth):
        return array_to_image(mm, "16UC1", header)
    return array_to_image(np.asarray(depth, dtype=np.float32), "32FC1", header)


def camera_info_to_K(msg) -> tuple[np.ndarray, tuple[int, int]]:
    """``sensor_msgs/CameraInfo`` -> (K 3x3 float64, (height, width)); ValueError for an unusable K."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"camera_info has an unusable K (fx={K[0, 0]}, fy={K[1, 1]}): uncalibrated camera?")
    if msg.width <= 0 or msg.height <= 0:
        raise ValueError(f"camera_info has no image size ({msg.width}x{msg.height})")
    return K, (int(msg.height), int(msg.width))


def make_camera_info(K: np.ndarray, height: int, width: int, header=None, types: dict | None = None):
    """3x3 K and image size -> ``sensor_msgs/CameraInfo`` (plumb_bob, zero distortion, rectified).

    types: :func:`message_types` of a rosbags typestore to build a rosbags message; default rclpy's.
    """
    t = types or message_types()
    K = np.asarray(K, dtype=np.float64)
    P = np.zeros((3, 4))
    P[:, :3] = K
    return t["CameraInfo"](
        header=header if header is not None else make_header(0, "", t), height=int(height), width=int(width),
        distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1), p=P.reshape(-1),
        binning_x=0, binning_y=0,
        roi=t["RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def make_header(stamp_ns: int, frame_id: str, types: dict | None = None):
    """``std_msgs/Header`` at ``stamp_ns`` nanoseconds (rclpy's, or of :func:`message_types` ``types``)."""
    t = types or message_types()
    return t["Header"](stamp=t["Time"](sec=int(stamp_ns) // 10**9, nanosec=int(stamp_ns) % 10**9), frame_id=frame_id)


def stamp_ns(header) -> int:
    """A message header's stamp in nanoseconds."""
    return int(header.stamp.sec) * 10**9 + int(header.stamp.nanosec)


#: the message classes this module builds -> their ROS type names
_TYPE_NAMES = {"Image": "sensor_msgs/msg/Image", "CameraInfo": "sensor_msgs/msg/CameraInfo",
               "RegionOfInterest": "sensor_msgs/msg/RegionOfInterest", "Header": "std_msgs/msg/Header",
               "Time": "builtin_interfaces/msg/Time"}


def message_types(typestore=None) -> dict:
    """Message classes by short name (``Image``, ``CameraInfo``, ``Header``, ...): rclpy's by default,
    or a ``rosbags`` typestore's (same field names; what :mod:`movseg_ros.bag` writes)."""
    if typestore is not None:
        return {short: typestore.types[name] for short, name in _TYPE_NAMES.items()}
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import CameraInfo, Image, RegionOfInterest
    from std_msgs.msg import Header

    return {"Image": Image, "CameraInfo": CameraInfo, "RegionOfInterest": RegionOfInterest, "Header": Header,
            "Time": Time}


def _is_rosbags(types: dict) -> bool:
    return hasattr(types["Image"], "__msgtype__")
