"""movseg_node across processes over real DDS: labels, label-info, live vocabulary, bad input, shutdown.

One node process (started through `movseg run`, i.e. the launch file's configuration) serves the
module; the test process plays the camera and listens like any client would.
"""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest
import yaml

from conftest import PYTHON
from node_client import serve_node

QUERIES = ["wall", "floor", "chair", "table"]


@pytest.fixture(scope="module")
def node_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("node") / "params.yaml"
    params = {
        "queries": QUERIES,
        "log_period_s": 1.0,
        "publish": {"pointcloud": True},
        "segmenter": {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu"},
                      "dense": {"short_side": 112}},
    }
    path.write_text(yaml.safe_dump({"movseg": {"ros__parameters": params}}))
    return path


@pytest.fixture(scope="module")
def running_node(node_config):
    with serve_node(node_config) as served:
        yield served


def consistent(label: np.ndarray, info, names_by_version: dict) -> bool:
    """A label image agrees with its label-info: same vocabulary version, ids within it."""
    names = names_by_version.get(info.vocabulary_version)
    return (names is not None and list(info.names) == names and list(info.ids) == list(range(1, len(names) + 1))
            and int(label.max()) <= len(names))


def test_labels_arrive_with_matching_stamp_and_label_info(running_node):
    proc, c = running_node
    sent = [c.publish_and_wait(i) for i in range(3)]
    for k in sent:
        label, info = c.labels[k], c.infos[k]
        assert label.shape == (480, 640) and label.dtype == np.uint16
        assert (info.header.stamp.sec, info.header.stamp.nanosec) == k
        assert list(info.names) == QUERIES and list(info.ids) == [1, 2, 3, 4]
        assert int(label.max()) <= 4 and info.inference_ms > 0
    assert c.wait(lambda: c.points >= 3, 10), "labelled point cloud not published"


def test_set_queries_mid_stream_takes_effect_within_two_frames_never_mixing(running_node):
    proc, c = running_node
    start = c.publish_and_wait(0)
    v0 = c.infos[start].vocabulary_version
    names_by_version = {v0: list(c.infos[start].names)}
    new = ["sofa", "lamp", "window", "door", "bed", "television"]
    stop = threading.Event()
    published = []

    def stream():  # 10 Hz camera while the vocabulary changes
        i = 0
        while not stop.is_set():
            published.append(c.publish(i))
            i += 1
            time.sleep(0.1)

    t = threading.Thread(target=stream)
    t.start()
    try:
        time.sleep(0.5)
        resp = c.call(new)
        answered_at = len(published)
        assert resp.success and resp.vocabulary_version == v0 + 1 and list(resp.names) == new
        names_by_version[resp.vocabulary_version] = new
        time.sleep(2.0)
    finally:
        stop.set()
        t.join()
    assert c.wait(lambda: published[-1] in c.labels or len(c.labels) > 0, 30)
    time.sleep(1.0)
    with c.lock:
        got = [(k, c.labels[k], c.infos.get(k)) for k in published if k in c.labels]
    assert all(info is not None and consistent(label, info, names_by_version) for _, label, info in got)
    after = [(k, info) for k, _, info in got if published.index(k) >= answered_at]
    assert after, "no frame labelled after the service answered"
    first_new = next(i for i, (_, info) in enumerate(after) if info.vocabulary_version == v0 + 1)
    assert first_new <= 1, f"new vocabulary took {first_new + 1} frames"
    assert all(info.vocabulary_version == v0 + 1 for _, info in after[first_new:]), "old vocabulary came back"
    params = c.params.get_parameters(["queries"])
    assert c.wait(params.done, 10) and list(params.result().values[0].string_array_value) == new


def test_queries_parameter_changes_the_vocabulary_too(running_node):
    from rclpy.parameter import Parameter

    proc, c = running_node
    v = c.infos[c.publish_and_wait(0)].vocabulary_version
    fut = c.params.set_parameters([Parameter("queries", Parameter.Type.STRING_ARRAY, ["mug", "keyboard"])])
    assert c.wait(fut.done, 30) and fut.result().results[0].successful
    k = c.publish_and_wait(1)
    assert c.infos[k].vocabulary_version == v + 1 and list(c.infos[k].names) == ["mug", "keyboard"]
    assert int(c.labels[k].max()) <= 2


@pytest.mark.parametrize("queries,why", [
    ([], "empty"), (["chair", "chair"], "duplicate"), (["x" * 500], "long"), ([f"q{i}" for i in range(600)], "many"),
])
def test_bad_queries_are_refused_and_the_old_vocabulary_stays(running_node, queries, why):
    from rclpy.parameter import Parameter

    proc, c = running_node
    before = c.infos[c.publish_and_wait(0)]
    resp = c.call(queries)
    assert not resp.success and resp.message
    assert resp.vocabulary_version == before.vocabulary_version and list(resp.names) == list(before.names)
    fut = c.params.set_parameters([Parameter("queries", Parameter.Type.STRING_ARRAY, queries)])
    assert c.wait(fut.done, 30) and not fut.result().results[0].successful
    after = c.infos[c.publish_and_wait(1)]
    assert after.vocabulary_version == before.vocabulary_version and list(after.names) == list(before.names)


def _image(arr, enc, stamp):
    from std_msgs.msg import Header

    from movseg_ros.conversions import array_to_image
    return array_to_image(arr, enc, Header(stamp=stamp, frame_id="cam"))


def test_bad_input_is_dropped_logged_and_counted_and_the_node_keeps_running(running_node):
    from std_msgs.msg import Header

    from movseg_ros.conversions import make_camera_info

    proc, c = running_node
    f = c.frames[0]
    cam = c.camera

    def send(rgb_msg, depth_msg, info_msg):
        stamp = c.node.get_clock().now().to_msg()
        for m in (rgb_msg, depth_msg, info_msg):
            m.header.stamp = stamp
        cam.info_pub.publish(info_msg)
        cam.depth_pub.publish(depth_msg)
        cam.color_pub.publish(rgb_msg)
        return c.key(stamp)

    info = make_camera_info(f.K, 480, 640, Header(frame_id="cam"))
    now = c.node.get_clock().now().to_msg()
    bad = {
        "input": [  # unsupported encoding; zero K
            send(_image(f.depth_mm, "mono16", now), _image(f.depth_mm, "16UC1", now), info),
            send(_image(f.rgb, "rgb8", now), _image(f.depth_mm, "16UC1", now), make_camera_info(np.zeros((3, 3)), 480, 640)),
        ],
        "size": [send(_image(f.rgb, "rgb8", now), _image(f.depth_mm[:, :500].copy(), "16UC1", now), info)],
    }
    time.sleep(0.5)
    # accepted with a warning: depth at half size (registered, same aspect) and NaN metres depth
    half = send(_image(f.rgb, "rgb8", now), _image(f.depth_mm[::2, ::2].copy(), "16UC1", now), info)
    assert c.wait(lambda: half in c.labels, 30)
    nan_depth = np.where(f.depth_mm > 0, f.depth_mm / 1000.0, np.nan).astype(np.float32)
    nan_k = send(_image(f.rgb, "rgb8", now), _image(nan_depth, "32FC1", now), info)
    assert c.wait(lambda: nan_k in c.labels, 30)
    # a stale stamp (older than what was processed) is dropped
    old = c.node.get_clock().now().to_msg()
    old.sec -= 100
    r, d = _image(f.rgb, "rgb8", old), _image(f.depth_mm, "16UC1", old)
    info.header.stamp = old
    cam.info_pub.publish(info)
    cam.depth_pub.publish(d)
    cam.color_pub.publish(r)
    good = c.publish_and_wait(0)  # still running, still labelling
    assert c.wait(lambda: "frame dropped (stamp" in proc.output(), 10)
    log = proc.output()
    for k in bad["input"] + bad["size"] + [c.key(old)]:
        assert k not in c.labels and k not in c.infos, "a label was published for a dropped frame"
    assert "frame dropped (input" in log and "unsupported colour encoding 'mono16'" in log
    assert "unusable K" in log
    assert "frame dropped (size" in log and "aspect differs" in log
    assert "resized (nearest)" in log
    assert c.wait(lambda: "drop_input=2" in proc.output() and "drop_size=1" in proc.output(), 5), "stats line missing counters"
    assert good in c.labels


def test_sigterm_ends_the_node_cleanly(node_config, ros_processes):
    import rclpy

    proc = ros_processes([PYTHON, "-m", "movseg_ros.cli", "run", "--config", str(node_config)], "node-sigterm")
    deadline = time.monotonic() + 120
    while "ready:" not in proc.output() and time.monotonic() < deadline and proc.proc.poll() is None:
        time.sleep(0.2)
    assert "ready:" in proc.output(), proc.output()
    assert proc.stop(signal.SIGTERM) == 0, proc.output()[-2000:]
    assert rclpy  # the process used real rclpy; nothing else to check here


def test_set_queries_cli_calls_the_real_service(running_node):
    import subprocess

    proc, c = running_node
    out = subprocess.run([PYTHON, "-m", "movseg_ros.cli", "set-queries", "cup", "plate"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok:" in out.stdout and "1=cup, 2=plate" in out.stdout
    k = c.publish_and_wait(0)
    assert list(c.infos[k].names) == ["cup", "plate"]
    refused = subprocess.run([PYTHON, "-m", "movseg_ros.cli", "set-queries", "cup", "cup"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "refused" in refused.stdout


def test_missing_camera_info_is_reported(running_node):
    proc, c = running_node
    f = c.frames[0]
    for _ in range(15):  # colour and depth only, for more than one statistics period
        stamp = c.node.get_clock().now().to_msg()
        c.camera.depth_pub.publish(_image(f.depth_mm, "16UC1", stamp))
        c.camera.color_pub.publish(_image(f.rgb, "rgb8", stamp))
        time.sleep(0.15)
    assert c.wait(lambda: "no message on /camera/color/camera_info" in proc.output(), 10), proc.output()[-2000:]
    assert "missing_input=" in proc.output() or c.wait(lambda: "missing_input=" in proc.output(), 3)
    c.publish_and_wait(0)  # and it recovers as soon as camera_info comes


@pytest.mark.parametrize(
    "age, period, cycle, budget, expected",
    [
        (0.030, 1 / 30, 0.5, 0.1, 1 / 30 - 0.030 + 0.25 / 30),  # stale, next frame due in 3 ms: wait for it
        (0.030, 1 / 30, 0.5, 0.0, 0.0),                          # budget 0: always label the queued frame
        (0.001, 1 / 30, 0.5, 0.1, 0.0),                          # it just arrived: nothing fresher is coming
        (0.010, 1 / 30, 0.1, 0.1, 0.0),                          # next due in 23 ms > 10 % of a 100 ms cycle
        (0.030, 0.0, 0.5, 0.1, 0.0),                             # camera period not known yet
        (0.025, 1 / 30, 0.12, 0.1, 0.012),                       # due in 8 ms, + jitter allowance capped at 12 ms
    ],
)
def test_fresh_wait_trades_at_most_the_budget_of_rate_for_fresher_frames(age, period, cycle, budget, expected):
    from movseg_ros.node import fresh_wait_s

    assert fresh_wait_s(age, period, cycle, budget) == pytest.approx(expected, abs=1e-9)

