"""The test process's side of a movseg_node test: a node process plus a client over real DDS."""
from __future__ import annotations

import contextlib
import signal
import threading
import time

import numpy as np

from conftest import PYTHON, RosProcess


def params_file(path, **params):
    """Write ``params`` as the ``movseg`` node's ROS 2 parameters file at ``path`` (YAML); returns ``path``."""
    import yaml

    path.write_text(yaml.safe_dump({"movseg": {"ros__parameters": params}}))
    return path


def camera_frame(sample, name: str = "synthetic"):
    """A synthetic scene (rgb, depth, K) as a camera sends it: depth in whole millimetres."""
    from movseg_core.data.frame import RGBDFrame
    from movseg_core.geometry import depth_m_to_mm, depth_mm_to_m

    return RGBDFrame(name, sample.rgb, depth_mm_to_m(depth_m_to_mm(sample.depth)), sample.K)


class Client:
    """The test process's side: camera publisher, label listeners, service and parameter clients."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter_client import AsyncParameterClient
        from sensor_msgs.msg import Image

        from movseg_ros import topics
        from movseg_ros.msg import LabelInfo
        from movseg_ros.player import CameraPublisher, load_folder_frames
        from movseg_ros.qos import qos_by_name
        from movseg_ros.srv import SetQueries

        self.frames = load_folder_frames(None)  # first: a missing folder fails before any ROS set-up
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("movseg_test_client", context=self.ctx)
        self.camera = CameraPublisher(self.node)
        self.lock = threading.Lock()
        self.labels: dict[tuple, np.ndarray] = {}
        self.infos: dict[tuple, object] = {}
        self.order: list[tuple] = []
        self.received_at: dict[tuple, float] = {}  # key -> time.monotonic() the labels arrived
        q = qos_by_name("reliable", depth=50)
        self.labels_sub = self.node.create_subscription(Image, topics.LABELS, self._on_labels, q)
        self.info_sub = self.node.create_subscription(LabelInfo, topics.LABEL_INFO, self._on_info, q)
        self.points = 0
        from sensor_msgs.msg import PointCloud2
        self.node.create_subscription(PointCloud2, topics.POINTS, self._on_points, q)
        self.srv = self.node.create_client(SetQueries, topics.SET_QUERIES)
        self.params = AsyncParameterClient(self.node, topics.NODE)
        self.SetQueries = SetQueries
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_forever, daemon=True)
        self._spin.start()

    def _spin_forever(self):
        while self.ctx.ok():
            try:
                self.ex.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001  (context shut down under us)
                return

    @staticmethod
    def key(stamp) -> tuple:
        return (stamp.sec, stamp.nanosec)

    def _on_labels(self, msg):
        from movseg_ros.conversions import image_to_array
        with self.lock:
            self.labels[self.key(msg.header.stamp)] = image_to_array(msg)
            self.order.append(self.key(msg.header.stamp))
            self.received_at[self.key(msg.header.stamp)] = time.monotonic()

    def _on_info(self, msg):
        with self.lock:
            self.infos[self.key(msg.header.stamp)] = msg

    def _on_points(self, msg):
        self.points += 1

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()

    def publish(self, i: int = 0, stamp=None):
        """Publish bundled frame ``i`` (stamped now, or ``stamp``); returns its key (sec, nanosec)."""
        return self.key(self.camera.publish(self.frames[i % len(self.frames)], stamp))

    def unmatched(self) -> list[str]:
        """The DDS endpoints between this client and the node that are not matched yet (empty: all are).

        Each camera topic needs the node's reader (a best-effort frame sent before its reader matched
        is lost, and one lost part of colour/depth/camera_info loses the frame), and each output
        topic needs our reader (a volatile writer does not resend what it published before the match).
        """
        pubs = {"camera colour": self.camera.color_pub, "camera depth": self.camera.depth_pub,
                "camera_info": self.camera.info_pub}
        missing = [name for name, pub in pubs.items() if pub.get_subscription_count() == 0]
        missing += [name for name, sub in (("labels", self.labels_sub), ("label_info", self.info_sub))
                    if sub.get_publisher_count() == 0]
        return missing + ([] if self.srv.service_is_ready() else ["set_queries"])

    def first_labels(self, i: int = 0, timeout: float = 120.0, resend_s: float = 10.0, alive=lambda: True) -> tuple:
        """Publish frame ``i`` (fresh stamp) every ``resend_s`` until one is labelled; its key.

        Discovery is asymmetric: our writer counts the node's reader as matched (:meth:`unmatched`
        empty) before the node's reader has matched our writer, and a best-effort sample sent in
        that window is dropped by the reader (seen once in 400 fresh-clone tests: no frame reached
        the node in 120 s). A camera streams, so its first frames may be lost too; this resends
        like one, slowly enough that a frame the node is labelling is not replaced (frames take
        < 10 s here). ``alive()`` False stops waiting (the node process died).
        """
        sent: list[tuple] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive():
            sent.append(self.publish(i))
            done = self.wait(lambda: any(k in self.labels and k in self.infos for k in sent) or not alive(),
                             min(resend_s, max(0.0, deadline - time.monotonic())))
            if done and alive():
                return next(k for k in sent if k in self.labels and k in self.infos)
        raise AssertionError(f"no labels for {len(sent)} frame(s) sent over {timeout:.0f} s")

    def publish_and_wait(self, i: int = 0, timeout: float = 30.0) -> tuple:
        k = self.publish(i)
        assert self.wait(lambda: k in self.labels and k in self.infos, timeout), "no labels for a good frame"
        return k

    def call(self, queries, timeout: float = 30.0):
        from movseg_ros.set_queries import call_set_queries

        return call_set_queries(self.srv, queries, timeout, timeout)  # our spin thread spins the node

    def close(self):
        import rclpy
        rclpy.shutdown(context=self.ctx)
        self._spin.join(timeout=5)



@contextlib.contextmanager
def serve_node(config, name: str = "node", warm_up: bool = True):
    """Start `movseg run --config CONFIG` (the launch file's configuration) and a Client; yield both.

    The node must answer set_queries and every endpoint between it and the client must be matched
    (:meth:`Client.unmatched`) before anything is sent: the old helper waited for the colour topic
    only, and a best-effort frame sent then lost its depth or camera_info part (their readers
    matched 3-20 ms later; 2 of 6 single frames never labelled, 8 of 8 once all are matched). With
    ``warm_up`` one frame goes through first (model warmed up). On exit the node gets SIGINT and
    must exit with 0; whatever fails, it is stopped.
    """
    proc = RosProcess([PYTHON, "-m", "movseg_ros.cli", "run", "--config", str(config)], name)
    client = None
    try:  # from here on the node is stopped whatever fails (Client() included: bug 13)
        client = Client()
        assert client.srv.wait_for_service(timeout_sec=120), proc.output()
        assert client.wait(lambda: not client.unmatched(), 30), \
            f"not matched after 30 s: {client.unmatched()}\n{proc.output()[-3000:]}"
        if warm_up:
            try:
                client.first_labels(0, 120, alive=lambda: proc.proc.poll() is None)
            except AssertionError as exc:
                raise AssertionError(f"warm-up: {exc} (unmatched: {client.unmatched()})\n{proc.output()[-3000:]}")
        yield proc, client
    finally:
        try:
            if client is not None:
                client.close()
        finally:
            rc = proc.stop(signal.SIGINT)
    # reached only when nothing failed above (a failure propagates from the finally)
    assert rc == 0, f"node exit code {rc} on SIGINT\n{proc.output()[-3000:]}"
