"""Training readers on small fixtures in the published layouts: COCO-Stuff-171, ADE20K-150, NYUv2-40
(labeled .mat + classMapping40.mat + splits.mat, and the folder layout), X files, resizing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from movseg_core.data.ade20k import ADE20K, ADE150_CLASSES
from movseg_core.data.coco_stuff import COCO_STUFF_171_CLASSES, CocoStuff, raw_to_contiguous_lut
from movseg_core.data.nyuv2 import default_nyuv2_dir
from movseg_core.data.nyuv2_train import NYUv2Train
from movseg_core.data.records import load_x_file
from movseg_core.training.data import SegmentationDataset

from nyu_mat import write_labeled_set

H, W = 24, 32


def _img(rng):
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _write_rgb(path, rgb, jpg=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100] if jpg else [])


def _write_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def test_coco_stuff_raw_stuffthingmaps(tmp_path):
    rng = np.random.default_rng(0)
    raw = np.zeros((H, W), np.uint8)
    raw[:8] = 0          # person (COCO id 1)
    raw[8:16] = 11       # unused COCO id 12 -> unlabelled
    raw[16:20] = 91      # first stuff class "banner" (COCO id 92)
    raw[20:] = 255       # unlabelled
    _write_rgb(tmp_path / "train2017" / "000000000009.jpg", _img(rng))
    _write_png(tmp_path / "stuffthingmaps" / "train2017" / "000000000009.png", raw)
    ds = CocoStuff(tmp_path, "train")
    r = ds[0]
    assert len(ds) == 1 and r.rgb.shape == (H, W, 3) and r.name == "000000000009"
    assert ds.class_names[r.label[0, 0] - 1] == "person"
    assert (r.label[8:16] == 0).all() and (r.label[20:] == 0).all()
    assert ds.class_names[r.label[17, 0] - 1] == "banner"
    lut = raw_to_contiguous_lut()
    assert lut[181] == 171 and len(COCO_STUFF_171_CLASSES) == 171
    with pytest.raises(ValueError, match="split"):
        CocoStuff(tmp_path, "test")
    with pytest.raises(ValueError, match="stuffthingmaps"):
        CocoStuff(tmp_path / "nope", "val")


def test_coco_stuff_detectron2_layout_with_x_files_and_resize(tmp_path):
    rng = np.random.default_rng(1)
    lab = np.full((H, W), 255, np.uint8)
    lab[:, :10] = 170  # last class "wood"
    _write_rgb(tmp_path / "val2017" / "a.jpg", _img(rng))
    _write_png(tmp_path / "stuffthingmaps_detectron2" / "val2017" / "a.png", lab)
    depth_mm = np.full((H, W), 1500, np.uint16)  # a monocular predictor's depth, 1.5 m
    _write_png(tmp_path / "x" / "a.png", depth_mm)
    ds = CocoStuff(tmp_path, "val", size=(12, 16), x_dir=tmp_path / "x")
    r = ds[0]
    assert r.rgb.shape == (12, 16, 3) and r.label.shape == (12, 16) and r.depth.shape == (12, 16)
    assert ds.class_names[r.label[0, 0] - 1] == "wood" and r.label[0, -1] == 0
    assert np.allclose(r.depth, 1.5) and r.K is not None and r.K[0, 2] == pytest.approx(7.5)
    s = SegmentationDataset(ds, len(ds.class_names), "normals")[0]
    assert s.x.shape == (3, 12, 16) and s.target["labels"].tolist() == [170]


def test_ade20k_layout(tmp_path):
    rng = np.random.default_rng(2)
    for split in ("training", "validation"):
        lab = np.zeros((H, W), np.uint8)
        lab[:, :5], lab[:, 5:9] = 1, 150
        _write_rgb(tmp_path / "images" / split / f"ADE_{split}_00000001.jpg", _img(rng))
        _write_png(tmp_path / "annotations" / split / f"ADE_{split}_00000001.png", lab)
    tr, va = ADE20K(tmp_path, "train"), ADE20K(tmp_path, "val")
    assert len(tr) == len(va) == 1 and len(ADE150_CLASSES) == 150
    r = va[0]
    assert tr.class_names[r.label[0, 0] - 1] == "wall" and tr.class_names[r.label[0, 6] - 1] == "flag"
    assert r.depth is None and r.label[0, 20] == 0
    bad = np.full((H, W), 151, np.uint8)
    _write_png(tmp_path / "annotations" / "training" / "ADE_training_00000001.png", bad)
    with pytest.raises(ValueError, match="150"):
        tr[0]
    x = np.zeros((H, W, 3), np.uint8)
    x[..., 2] = 200  # an X image (e.g. normals RGB) passes through as is
    _write_png(tmp_path / "x" / "ADE_validation_00000001.png", cv2.cvtColor(x, cv2.COLOR_RGB2BGR))
    r = ADE20K(tmp_path, "val", x_dir=tmp_path / "x")[0]
    assert np.array_equal(r.x, x)
    with pytest.raises(ValueError, match="no X file"):
        ADE20K(tmp_path, "val", x_dir=tmp_path / "empty")[0]


def test_nyuv2_labeled_mat_layout(tmp_path):
    h, w = 12, 16
    rgb, depth, labels, mapping = write_labeled_set(tmp_path, 4, h=h, w=w)
    tr, te = NYUv2Train(tmp_path, "train"), NYUv2Train(tmp_path, "val")
    assert len(tr) == 3 and len(te) == 1 and tr.ids == ["0001", "0003", "0004"]
    r = tr[1]
    assert np.array_equal(r.rgb, rgb[2]) and np.allclose(r.depth, depth[2])
    lut = np.concatenate([[0], mapping])
    assert np.array_equal(r.label, lut[labels[2]])
    s = SegmentationDataset(tr, 40, "hha")[0]
    assert s.x.shape == (3, h, w)


def test_nyuv2_folder_layout_real_frames():
    root = default_nyuv2_dir()
    if not root.is_dir():
        pytest.skip("shared NYUv2 frames not present")
    te = NYUv2Train(root, "test", size=(60, 80))
    r = te[0]
    assert r.rgb.shape == (60, 80, 3) and r.label.max() <= 40 and r.K[0, 0] == pytest.approx(518.8579 / 8, rel=1e-3)


def test_x_file_formats(tmp_path):
    np.save(tmp_path / "d.npy", np.ones((3, 4), np.float32))
    x, d = load_x_file(tmp_path / "d.npy")
    assert x is None and d.shape == (3, 4)
    _write_png(tmp_path / "bad.png", np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="X file"):
        load_x_file(tmp_path / "bad.png")
