"""NYUv2 -> rosbag2 -> numpy round trip on the shared real frames, the .mat reader, bad bags."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from movseg_core.data.nyuv2 import NYU_K, NYUv2Folder, default_nyuv2_dir
from movseg_core.data.nyuv2_mat import NYUv2Mat, load_class_mapping
from movseg_core.geometry import depth_m_to_mm
from movseg_ros import bag as B
from movseg_ros.cli import main as cli_main

from nyu_mat import write_labeled_set

DATA = default_nyuv2_dir()


@pytest.fixture(scope="module")
def shared_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("bag") / "nyu.bag"
    summary = B.write_bag(NYUv2Folder(DATA), out, B.BagWriteConfig(rate_hz=4.0), progress=False)
    return out, summary


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_equals_source_pngs(tmp_path, storage):
    out = tmp_path / "nyu.bag"
    ds = NYUv2Folder(DATA, require_depth=True)
    summary = B.write_bag(ds, out, B.BagWriteConfig(rate_hz=2.0, storage=storage), progress=False)
    assert summary.frames_written == len(ds) and summary.frames_skipped == []
    frames = list(B.read_bag(out, require_gt=True))
    assert [f.name for f in frames] == ds.ids
    assert [f.stamp_ns - frames[0].stamp_ns for f in frames] == [i * 500_000_000 for i in range(len(ds))]
    for f in frames:
        rgb = cv2.cvtColor(cv2.imread(str(DATA / "rgb" / f"{f.name}.png")), cv2.COLOR_BGR2RGB)
        mm = cv2.imread(str(DATA / "depth" / f"{f.name}.png"), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(DATA / "label" / f"{f.name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(f.rgb, rgb)
        np.testing.assert_array_equal(depth_m_to_mm(f.depth), mm)  # stored as 16UC1: test_rclpy_reads_the_bytes
        np.testing.assert_allclose(f.depth, mm / 1000.0, rtol=1e-6)
        np.testing.assert_array_equal(f.label, label)
        np.testing.assert_allclose(f.K, ds.K)


def test_frames_without_depth_are_skipped(shared_bag):
    _, summary = shared_bag
    ds = NYUv2Folder(DATA)
    with_depth = NYUv2Folder(DATA, require_depth=True).ids
    assert summary.frames_written == len(with_depth)
    assert sorted(summary.frames_skipped) == sorted(set(ds.ids) - set(with_depth))


def test_rclpy_reads_the_bytes(shared_bag):
    rclpy_ser = pytest.importorskip("rclpy.serialization")
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import CameraInfo, Image

    out, _ = shared_bag
    seen = set()
    with Reader(out) as r:
        for conn, _t, raw in r.messages():
            if conn.topic in seen:
                continue
            seen.add(conn.topic)
            msg = rclpy_ser.deserialize_message(raw, CameraInfo if "camera_info" in conn.topic else Image)
            if conn.topic.endswith("camera_info"):
                np.testing.assert_allclose(np.asarray(msg.k).reshape(3, 3), NYU_K, rtol=1e-6)
            else:
                expect = {"/camera/color/image_raw": "rgb8", "/camera/depth/image_raw": "16UC1",
                          "/movseg/gt_labels": "mono16"}[conn.topic]
                assert (msg.encoding, msg.width, msg.height) == (expect, 640, 480)
    assert len(seen) == 4


def _bad_bag(path, drop=(), depth_enc="16UC1", color_enc="rgb8", label_shape=(4, 6)):
    from rosbags.rosbag2 import Writer

    m = B._Msgs()
    t = B.BagTopics()
    with Writer(path, version=9) as w:
        c = {k: w.add_connection(getattr(t, k), m.Info.__msgtype__ if k == "info" else m.Image.__msgtype__,
                                 typestore=m.ts) for k in ("color", "depth", "info", "gt") if k not in drop}
        s = 10**9
        rgb = np.zeros((4, 6, 3), np.uint8)
        if "info" in c:
            w.write(c["info"], s, m.camera_info(NYU_K, 4, 6, s, "cam"))
        if "color" in c:
            w.write(c["color"], s, m.image(rgb if color_enc == "rgb8" else rgb[..., 0], color_enc, s, "cam"))
        if "depth" in c:
            d = np.ones((4, 6), np.uint16) if depth_enc in ("16UC1", "mono16") else np.ones((4, 6, 3), np.uint8)
            w.write(c["depth"], s, m.image(d, depth_enc, s, "cam"))
        if "gt" in c:
            w.write(c["gt"], s, m.image(np.ones(label_shape, np.uint16), "mono16", s, "cam"))
    return path


@pytest.mark.parametrize("kwargs, words", [
    (dict(drop=("depth",)), "no depth"),
    (dict(drop=("info",)), "no camera_info"),
    (dict(depth_enc="rgb8"), "encoding 'rgb8'"),
    (dict(color_enc="mono8"), "encoding 'mono8'"),
    (dict(label_shape=(2, 3)), "labels (2, 3) do not match"),
])
def test_bad_bags_are_refused(tmp_path, kwargs, words):
    path = _bad_bag(tmp_path / "bad.bag", **kwargs)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        list(B.read_bag(path))


def test_mono16_depth_bag_reads_as_millimetres(tmp_path):
    """Bug: bags with mono16 depth were refused although the node's geometry decodes it."""
    f = next(iter(B.read_bag(_bad_bag(tmp_path / "mono16.bag", depth_enc="mono16"))))
    assert f.depth.dtype == np.float32 and np.array_equal(f.depth, np.full((4, 6), 0.001, np.float32))


def test_not_a_bag(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="not a readable rosbag2"):
        B.inspect_bag(tmp_path / "x")


# ---------------------------------------------------------------- the labeled .mat (HDF5) form
@pytest.fixture()
def fake_mat(tmp_path):
    """A small file in the layout of nyu_depth_v2_labeled.mat (h5py view, MATLAB transposed)."""
    rgb, depth, labels, mapping = write_labeled_set(tmp_path, 5, "labeled.mat", raw_depth=True, test=(2, 5))
    return tmp_path, rgb, depth, labels, mapping


def test_mat_reader_maps_894_to_40_and_splits(fake_mat):
    d, rgb, depth, labels, mapping = fake_mat
    lut = load_class_mapping(d / "classMapping40.mat")
    assert lut[0] == 0 and np.array_equal(lut[1:], mapping)
    ds = NYUv2Mat(d / "labeled.mat", d / "classMapping40.mat", split="test", splits=d / "splits.mat")
    assert ds.ids == ["0002", "0005"]
    f = ds[1]
    np.testing.assert_array_equal(f.rgb, rgb[4])
    np.testing.assert_array_equal(f.depth, depth[4])
    expect = np.where(labels[4] == 0, 0, mapping[np.maximum(labels[4].astype(int) - 1, 0)])
    np.testing.assert_array_equal(f.label, expect)
    raw = NYUv2Mat(d / "labeled.mat", lut, raw_depth=True)
    assert len(raw) == 5 and (raw[0].depth[depth[0] > 4] == 0).all()  # invalid is 0, never NaN


def test_mat_to_bag_cli(fake_mat, tmp_path):
    d, rgb, depth, labels, mapping = fake_mat
    out = tmp_path / "mat.bag"
    rc = cli_main(["nyu2bag", str(d / "labeled.mat"), str(out), "--split", "train", "--splits",
                 str(d / "splits.mat"), "--class-mapping", str(d / "classMapping40.mat"), "--storage", "sqlite3"])
    assert rc == 0
    frames = list(B.read_bag(out))
    assert [f.name for f in frames] == ["0001", "0003", "0004"]
    np.testing.assert_array_equal(frames[1].rgb, rgb[2])
    np.testing.assert_array_equal(depth_m_to_mm(frames[1].depth), depth_m_to_mm(depth[2]))
    assert frames[1].label.max() <= 40


def test_cli_bad_input_exits_nonzero(fake_mat, tmp_path, capsys):
    d = fake_mat[0]
    assert cli_main(["nyu2bag", str(d / "labeled.mat"), str(tmp_path / "o.bag")]) == 2
    assert "--class-mapping" in capsys.readouterr().err
    assert cli_main(["nyu2bag", str(d / "labeled.mat"), str(tmp_path / "o.bag"), "--class-mapping",
                   str(d / "classMapping40.mat"), "--split", "test"]) == 2
    assert "splits.mat" in capsys.readouterr().err
    savemat(d / "short.mat", {"mapClass": np.ones((1, 10))})
    with pytest.raises(ValueError, match="894 entries"):
        load_class_mapping(d / "short.mat")
    assert not (tmp_path / "o.bag").exists()


def test_folder_split_from_meta(tmp_path):
    ds = B.open_source(DATA, split="test")
    assert len(ds) == 9  # all shared frames are from the official test split
    with pytest.raises(ValueError, match="no frames in split 'train'"):
        B.open_source(DATA, split="train")
