"""Publish RGB-D frames as a camera driver would (`movseg play`).

Reads frames from a folder in the NYUv2 layout (default: the bundled real
frames) and publishes colour (rgb8), depth (16UC1 mm) and the colour
camera_info with one shared stamp, at a fixed rate, looping. Used by the demo,
the node benchmark and the cross-process tests; on a robot the real camera
driver takes its place.
"""
from __future__ import annotations

import argparse
import logging
import time

from movseg_core.data.frame import RGBDFrame
from movseg_ros import topics

log = logging.getLogger("movseg.play")


def load_folder_frames(folder: str | None, require_depth: bool = True) -> list[RGBDFrame]:
    """The frames of a NYUv2-layout folder (default: the bundled ones), in memory."""
    from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir

    return list(NYUv2Folder(folder or default_nyuv2_dir(), require_depth=require_depth))


class CameraPublisher:
    """Publishes :class:`RGBDFrame` s (rgb, depth, K) on color/depth/camera_info topics of ``node``."""

    def __init__(self, node, color_topic: str = topics.COLOR, depth_topic: str = topics.DEPTH,
                 info_topic: str = topics.CAMERA_INFO, qos: str = "sensor_data", frame_id: str = topics.FRAME_ID):
        from sensor_msgs.msg import CameraInfo, Image

        from movseg_ros.qos import qos_by_name

        profile = qos_by_name(qos)
        self.node = node
        self.frame_id = frame_id
        self.color_pub = node.create_publisher(Image, color_topic, profile)
        self.depth_pub = node.create_publisher(Image, depth_topic, profile)
        self.info_pub = node.create_publisher(CameraInfo, info_topic, profile)
        self.sent = 0
        self._depth_msgs: dict[int, tuple[RGBDFrame, object]] = {}  # id(frame) -> (frame, its depth Image)

    def publish(self, frame: RGBDFrame, stamp=None):
        """Publish one frame (depth as 16UC1 millimetres when whole millimetres, as cameras send it);
        returns the stamp used (builtin_interfaces/Time)."""
        from std_msgs.msg import Header

        from movseg_ros.conversions import array_to_image, make_camera_info

        header = Header(frame_id=self.frame_id)
        header.stamp = stamp if stamp is not None else self.node.get_clock().now().to_msg()
        h, w = frame.rgb.shape[:2]
        self.info_pub.publish(make_camera_info(frame.K, h, w, header))
        if frame.depth is not None:
            self.depth_pub.publish(self._depth_msg(frame, header))
        self.color_pub.publish(array_to_image(frame.rgb, "rgb8", header))
        self.sent += 1
        return header.stamp

    def _depth_msg(self, frame: RGBDFrame, header):
        """The depth Image of ``frame``, encoded once per frame (a loop replays the same frames;
        encoding costs ~2 ms a 640x480 frame). Frames must not change after they were published."""
        from movseg_ros.conversions import depth_to_image

        cached = self._depth_msgs.get(id(frame))
        if cached is None:
            if len(self._depth_msgs) >= 64:
                self._depth_msgs.clear()
            cached = self._depth_msgs[id(frame)] = (frame, depth_to_image(frame.depth))
        msg = cached[1]
        msg.header = header
        return msg

    def wait_for_subscribers(self, timeout_s: float) -> bool:
        """Wait until the colour topic has a subscriber (discovery takes 0-3 s)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.color_pub.get_subscription_count() > 0:
                return True
            time.sleep(0.05)
        return False


def play(frames: list[RGBDFrame], rate_hz: float, seconds: float | None, count: int | None,
         wait_s: float, qos: str, node_name: str = "movseg_player") -> int:
    """Publish frames at rate_hz until seconds/count are reached; returns frames sent."""
    import rclpy

    if not frames:
        raise ValueError("no frames to play")
    rclpy.init()
    node = rclpy.create_node(node_name)
    try:
        pub = CameraPublisher(node, qos=qos)
        if wait_s > 0 and not pub.wait_for_subscribers(wait_s):
            log.warning("no subscriber on the colour topic after %.1f s; publishing anyway", wait_s)
        period = 1.0 / rate_hz
        start = time.monotonic()
        i = 0
        while (count is None or i < count) and (seconds is None or time.monotonic() - start < seconds):
            pub.publish(frames[i % len(frames)])
            i += 1
            # absolute schedule: no drift from publish time
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - start
        log.info("published %d frames in %.2f s (%.1f Hz)", i, elapsed, i / max(elapsed, 1e-9))
        return i
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def register(sub) -> None:
    """Add `movseg play` to the `movseg` subcommands."""
    p = sub.add_parser("play", help="publish RGB-D frames from a NYUv2-layout folder as a camera would")
    p.add_argument("--folder", default=None, help="frames folder (default: bundled NYUv2 frames)")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--count", type=int, default=None, help="stop after this many frames")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a subscriber first")
    p.add_argument("--qos", default="sensor_data", help="sensor_data | reliable | system_default")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.seconds is None and args.count is None:
        raise ValueError("give --seconds or --count")  # exit 2 (movseg_ros.cli)
    frames = load_folder_frames(args.folder)
    play(frames, args.rate, args.seconds, args.count, args.wait, args.qos)
    return 0
