"""movseg_node across processes over real DDS: labels, label-info, live vocabulary, bad input, shutdown.

One node process (started through `movseg run`, i.e. the launch file's configuration) serves the
module; the test process plays the camera and listens like any client would. The node runs the
trained synthetic CLIP (test/fixtures/synth_clip.pt), so labels mean something: on a rendered
scene the cube's pixels are labelled "cube", which tells vocabularies apart from the label image alone.
"""
from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from movseg_core.geometry import depth_m_to_mm

from conftest import PYTHON, REPO
from node_client import camera_frame, params_file, serve_node

QUERIES = ["wall", "floor", "chair", "table"]
SYNTH_CLIP = REPO / "test" / "fixtures" / "synth_clip.pt"


@pytest.fixture(scope="module")
def node_config(tmp_path_factory):
    from movseg_core.eval.synthetic import synth_segmenter_config

    return params_file(tmp_path_factory.mktemp("node") / "params.yaml", queries=QUERIES, log_period_s=1.0,
                        publish={"pointcloud": True}, segmenter=synth_segmenter_config(str(SYNTH_CLIP)))


@pytest.fixture(scope="module")
def running_node(node_config):
    with serve_node(node_config) as served:
        yield served


@pytest.fixture(scope="module")
def cube_scene():
    """A held-out synthetic scene (120x160) showing >= 400 px of cube, as a camera frame, and its cube mask."""
    from movseg_core.data.synthetic import CLASS_IDS
    from movseg_core.eval.synthetic import scene_with
    s = scene_with("cube", min_pixels=400)
    return camera_frame(s, "cube"), s.label == CLASS_IDS["cube"]


def consistent(label: np.ndarray, info, names_by_version: dict, cube: np.ndarray) -> bool:
    """A label image of the cube scene agrees with its label-info, judged from the label image itself.

    The vocabularies differ in size and only the larger one has "cube": ids beyond the smaller one's
    count appear only with the larger one (the cube is labelled "cube" by the synthetic CLIP), and
    with a vocabulary holding "cube" most cube pixels carry its id. So labels computed with one
    vocabulary and published with the other's label-info fail here.
    """
    names = names_by_version.get(info.vocabulary_version)
    if names is None or list(info.names) != names or list(info.ids) != list(range(1, len(names) + 1)):
        return False
    if int(label.max()) > len(names):
        return False
    if "cube" in names:
        return float((label[cube] == names.index("cube") + 1).mean()) >= 0.3
    return True


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
    assert "callbacks run on rclpy's SingleThreadedExecutor" in proc.output()  # the default


def test_set_queries_mid_stream_takes_effect_within_two_frames_never_mixing(running_node, cube_scene):
    """Three switches between a 2-query and a 7-query vocabulary under a 10 Hz camera: every label
    image matches its own label-info, the new vocabulary is in force within two frames of the answer."""
    from movseg_core.data.synthetic import CLASS_NAMES

    proc, c = running_node
    frame, cube = cube_scene
    small, large = ["floor", "wall"], list(CLASS_NAMES)
    assert c.call(small).success
    names_by_version = {}
    stop = threading.Event()
    published = []

    def stream():  # 10 Hz camera while the vocabulary changes
        while not stop.is_set():
            published.append(c.key(c.camera.publish(frame)))
            time.sleep(0.1)

    t = threading.Thread(target=stream)
    t.start()
    answers = []
    try:
        for new in (large, small, large):
            time.sleep(0.7)
            resp = c.call(new)
            answers.append((len(published), resp.vocabulary_version))
            assert resp.success and list(resp.names) == new, resp.message
            names_by_version[resp.vocabulary_version] = new
        time.sleep(1.5)
    finally:
        stop.set()
        t.join()
    assert c.wait(lambda: published[-1] in c.labels, 30)
    time.sleep(1.0)
    with c.lock:
        got = [(k, c.labels[k], c.infos.get(k)) for k in published if k in c.labels]
    first_version = answers[0][1] - 1
    names_by_version[first_version] = small
    bad = [(k, info.vocabulary_version if info else None) for k, label, info in got
           if info is None or not consistent(label, info, names_by_version, cube)]
    assert not bad, f"label images that do not match their label-info: {bad}"
    assert any("cube" in info.names for _, _, info in got) and any("cube" not in info.names for _, _, info in got)
    for answered_at, version in answers:
        after = [info for k, _, info in got if published.index(k) >= answered_at]
        assert after, "no frame labelled after the service answered"
        first_new = next(i for i, info in enumerate(after) if info.vocabulary_version >= version)
        assert first_new <= 1, f"vocabulary v{version} took {first_new + 1} frames"
        assert all(info.vocabulary_version >= version for info in after[first_new:]), "old vocabulary came back"
    params = c.params.get_parameters(["queries"])
    assert c.wait(params.done, 10) and list(params.result().values[0].string_array_value) == large


def test_queries_parameter_changes_the_vocabulary_too(running_node):
    from rclpy.parameter import Parameter

    proc, c = running_node
    v = c.infos[c.publish_and_wait(0)].vocabulary_version
    fut = c.params.set_parameters([Parameter("queries", Parameter.Type.STRING_ARRAY, ["mug", "keyboard"])])
    assert c.wait(fut.done, 30) and fut.result().results[0].successful
    # accepted at once, in force once its text is encoded (docs/node.md): the next frames show it
    deadline = time.monotonic() + 30
    while c.infos[k := c.publish_and_wait(1)].vocabulary_version == v and time.monotonic() < deadline:
        time.sleep(0.05)
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
    from rclpy.duration import Duration
    from std_msgs.msg import Header

    from movseg_ros.conversions import make_camera_info

    proc, c = running_node
    f = c.frames[0]
    depth_mm = depth_m_to_mm(f.depth)
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
            send(_image(depth_mm, "mono16", now), _image(depth_mm, "16UC1", now), info),
            send(_image(f.rgb, "rgb8", now), _image(depth_mm, "16UC1", now),
                 make_camera_info(np.zeros((3, 3)), 480, 640)),
        ],
        "size": [send(_image(f.rgb, "rgb8", now), _image(depth_mm[:, :500].copy(), "16UC1", now), info)],
    }
    time.sleep(0.5)
    # accepted with a warning: depth at half size (registered, same aspect) and NaN metres depth
    half = send(_image(f.rgb, "rgb8", now), _image(depth_mm[::2, ::2].copy(), "16UC1", now), info)
    assert c.wait(lambda: half in c.labels, 30)
    nan_depth = np.where(f.depth > 0, f.depth, np.nan).astype(np.float32)
    nan_k = send(_image(f.rgb, "rgb8", now), _image(nan_depth, "32FC1", now), info)
    assert c.wait(lambda: nan_k in c.labels, 30)
    # a stamp older than what was processed, by less than sync.reset_jump_s (1 s), is dropped
    old = (c.node.get_clock().now() - Duration(seconds=0.5)).to_msg()
    r, d = _image(f.rgb, "rgb8", old), _image(depth_mm, "16UC1", old)
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
    assert c.wait(lambda: "drop_input=2" in proc.output() and "drop_size=1" in proc.output(), 5), \
        "stats line missing counters"
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
    assert refused.returncode == 1 and "refused" in refused.stderr  # errors go to stderr (cli.py exit codes)


def test_missing_camera_info_is_reported(running_node):
    proc, c = running_node
    f = c.frames[0]
    depth_mm = depth_m_to_mm(f.depth)
    for _ in range(15):  # colour and depth only, for more than one statistics period
        stamp = c.node.get_clock().now().to_msg()
        c.camera.depth_pub.publish(_image(depth_mm, "16UC1", stamp))
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



def _stamp(t: float):
    from builtin_interfaces.msg import Time

    return Time(sec=int(t), nanosec=int(round((t - int(t)) * 1e9)) % 1_000_000_000)


def test_stamps_that_jump_back_start_a_new_stream_small_reorderings_are_still_dropped(running_node):
    """`ros2 bag play --loop`, a sim-clock reset or a restarted driver: stamps jump back 10 s.
    Labels resume within two frames; duplicates and small reorderings are still refused and counted."""
    proc, c = running_node

    def send(t: float, timeout: float) -> tuple[tuple, bool]:
        k = c.publish(0, _stamp(t))
        return k, c.wait(lambda: k in c.labels and k in c.infos, timeout)

    base = time.time()
    for j in range(3):
        assert send(base + 0.1 * j, 30)[1], proc.output()[-2000:]
    resets_before = proc.output().count("new stream")
    back = base - 10.0
    got = [send(back + 0.1 * j, 10) for j in range(4)]
    assert got[0][1] or got[1][1], f"no labels for 2 frames after stamps jumped back 10 s\n{proc.output()[-2000:]}"
    assert all(ok for _, ok in got[2:]), "labelling stopped again after the jump"
    assert c.wait(lambda: proc.output().count("new stream") == resets_before + 1, 5), proc.output()[-2000:]
    # a duplicate of the last labelled stamp, and a frame 0.15 s older: refused and counted
    last_key, last_t = got[-1][0], back + 0.3
    drops_before = proc.output().count("frame dropped (stamp")
    with c.lock:
        c.labels.pop(last_key), c.infos.pop(last_key)
    assert not send(last_t, 3)[1], "a duplicated stamp was labelled again"
    assert not send(last_t - 0.15, 3)[1], "a frame older than the last one was labelled"
    assert c.wait(lambda: proc.output().count("frame dropped (stamp") >= drops_before + 2, 5), proc.output()[-2000:]
    assert proc.output().count("new stream") == resets_before + 1, "a small reordering was taken for a new stream"
    assert send(time.time(), 30)[1]  # and the live clock again


def test_a_refused_parameter_call_changes_neither_the_parameter_nor_the_vocabulary(running_node):
    """One atomic call with `queries` and a read-only parameter: refused as a whole, nothing applied."""
    from rclpy.parameter import Parameter

    proc, c = running_node
    before = c.infos[c.publish_and_wait(0)]
    fut = c.params.set_parameters_atomically([
        Parameter("queries", Parameter.Type.STRING_ARRAY, ["mug", "plate"]),
        Parameter("qos", Parameter.Type.STRING, "reliable")])
    assert c.wait(fut.done, 30)
    result = fut.result().result
    assert not result.successful and "qos" in result.reason and "read-only" in result.reason
    time.sleep(0.5)
    after = c.infos[c.publish_and_wait(1)]
    assert after.vocabulary_version == before.vocabulary_version and list(after.names) == list(before.names)
    got = c.params.get_parameters(["queries"])
    assert c.wait(got.done, 10) and list(got.result().values[0].string_array_value) == list(before.names)


def test_a_slow_vocabulary_change_keeps_frames_labelled_with_the_old_one(running_node):
    """512 new queries (seconds of text encoding on CPU) by service, then by parameter: frames keep
    being labelled with the old vocabulary meanwhile, a second change is refused ("retry"), and
    the new vocabulary is in force when the service answers."""
    from rclpy.parameter import Parameter

    proc, c = running_node
    v = c.infos[c.publish_and_wait(0)].vocabulary_version
    tag = time.monotonic_ns()
    big = [f"object {i} {tag}" for i in range(512)]  # never encoded before: no cached embeddings
    big2 = [f"thing {i} {tag}" for i in range(512)]
    stop = threading.Event()
    published: list[tuple[tuple, float]] = []

    def stream():
        i = 0
        while not stop.is_set():
            published.append((c.publish(i), time.monotonic()))
            i += 1
            time.sleep(0.1)

    t = threading.Thread(target=stream)
    t.start()
    try:
        time.sleep(0.5)
        t_req = time.monotonic()
        fut = c.srv.call_async(c.SetQueries.Request(queries=big))
        second = c.srv.call_async(c.SetQueries.Request(queries=["mug"]))  # right behind it
        assert c.wait(second.done, 30), "the second change was not answered while the first encoded"
        assert not fut.done(), ("the second change was answered only after the first was in force: the node "
                                "was blocked while encoding (or encoding is too fast here to test this)")
        refused = second.result()
        assert not refused.success and "retry" in refused.message and refused.vocabulary_version == v
        busy = c.params.set_parameters([Parameter("queries", Parameter.Type.STRING_ARRAY, ["mug"])])
        assert c.wait(busy.done, 30) and not fut.done()
        assert not busy.result().results[0].successful and "retry" in busy.result().results[0].reason
        assert c.wait(fut.done, 120), "set_queries did not answer"
        t_resp = time.monotonic()
        resp = fut.result()
        assert resp.success and resp.vocabulary_version == v + 1, resp.message
        time.sleep(1.0)
        # the same through the parameter: accepted at once, encoded behind the executor's back
        t_req2 = time.monotonic()
        pf = c.params.set_parameters([Parameter("queries", Parameter.Type.STRING_ARRAY, big2)])
        assert c.wait(pf.done, 30) and pf.result().results[0].successful
        t_param = time.monotonic()
        assert c.wait(lambda: any(c.infos[k].vocabulary_version == v + 2 for k, _ in published if k in c.infos), 120)
        time.sleep(1.0)
    finally:
        stop.set()
        t.join()
    time.sleep(1.0)
    with c.lock:
        got = [(k, at, c.infos[k]) for k, at in published if k in c.infos and k in c.labels]
    versions = [info.vocabulary_version for _, _, info in got]
    assert versions == sorted(versions), f"an older vocabulary came back: {versions}"
    during = [info.vocabulary_version for _, at, info in got if t_req <= at < t_resp]
    assert during.count(v) >= 2, f"frames were not labelled while 512 queries were encoded: {during}"
    assert all(info.vocabulary_version >= v + 1 for _, at, info in got if at >= t_resp), "answered before in force"
    assert all(len(info.names) == 512 for _, _, info in got if info.vocabulary_version in (v + 1, v + 2))
    assert t_param - t_req2 < 5.0, "the parameter call waited for the encoding"
    during2 = [info.vocabulary_version for _, at, info in got if t_req2 <= at and info.vocabulary_version <= v + 1]
    assert during2.count(v + 1) >= 2, f"frames were not labelled while the parameter's queries were encoded: {versions}"
    assert c.call(QUERIES).success


def test_depth_not_registered_to_colour_is_warned_about_and_counted(running_node):
    """Depth warped against colour (a depth camera with another field of view, not aligned): the core
    segments the frame from colour alone and says so (``diagnostics``); the node logs a warning that
    names the aligned depth topic and counts the frame (``depth_unregistered``). Registered frames never count."""
    import dataclasses

    from movseg_core.data.synthetic import misregistered_depth
    from movseg_core.eval.synthetic import synth_segmenter_config
    from movseg_core.geometry import normals_from_depth
    from movseg_core.proposals import ProposalConfig, propose

    proc, c = running_node
    c.publish_and_wait(1)  # registered depth (and every frame the tests before sent)
    assert "depth_unregistered" not in proc.output() and "depth looks unregistered" not in proc.output()
    f = c.frames[1]
    warped = misregistered_depth(f.depth, 0.87, (0.08, 0.04))
    normals, valid = normals_from_depth(warped, f.K, warped > 0)
    info: dict = {}
    propose(f.rgb, warped, np.asarray(normals), np.asarray(valid),
            ProposalConfig(**synth_segmenter_config(str(SYNTH_CLIP))["proposals"]), info=info)
    assert info["depth_trust"] == 0.0  # the core's verdict on this frame, at the node's settings
    k = c.key(c.camera.publish(dataclasses.replace(f, depth=warped)))
    assert c.wait(lambda: k in c.labels, 30), "the frame is still labelled (from colour alone)"
    assert c.wait(lambda: "depth looks unregistered to colour" in proc.output(), 5), proc.output()[-2000:]
    assert "remap /camera/depth/image_raw to /camera/aligned_depth_to_color/image_raw" in proc.output()
    assert c.wait(lambda: "depth_unregistered=1" in proc.output(), 5), "stats line missing the counter"
