"""data/nyuv2_eval: the files are what its meta.json and README say (sizes, types, which depth each frame
has, 1407's placement), so the held-out figures of bench/proposals.py rest on the frames described."""
from __future__ import annotations

import json

import cv2
import numpy as np

from movseg_core.data.nyuv2 import NYU_K, NYUv2Folder

from conftest import REPO

ROOT = REPO / "data" / "nyuv2_eval"


def _read(sub: str, name: str) -> np.ndarray:
    im = cv2.imread(str(ROOT / sub / f"{name}.png"), cv2.IMREAD_UNCHANGED)
    assert im is not None, f"{sub}/{name}.png"
    return im


def test_every_frame_of_the_meta_is_there_as_described():
    meta = json.loads((ROOT / "meta.json").read_text())
    frames = {f"{f['frame']:04d}": f for f in meta["frames"]}
    assert sorted(frames) == ["0433", "0464", "1001", "1002", "1003", "1407"] == sorted(
        p.stem for p in (ROOT / "rgb").glob("*.png"))
    for name, f in frames.items():
        rgb, depth, label = _read("rgb", name), _read("depth", name), _read("label", name)
        assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8, name
        assert depth.shape == (480, 640) and depth.dtype == np.uint16, name
        assert label.shape == (480, 640) and label.dtype == np.uint8 and label.max() <= 40, name
        assert sorted(np.unique(label).tolist()) == f["label_ids_present"], name
        has_raw = (ROOT / "depth_raw" / f"{name}.png").exists()
        assert has_raw == (f.get("depth_raw") is not None), name
        if isinstance(f.get("depth_raw"), str) and f["depth_raw"].startswith("same as depth"):
            assert (ROOT / "depth" / f"{name}.png").read_bytes() == (ROOT / "depth_raw" / f"{name}.png").read_bytes()
        if "filled" in f["depth_kind"].split()[0]:
            covered = rgb.any(axis=2)
            assert (depth[covered] > 0).mean() > 0.99, name  # filled: no holes where the image is
    assert np.allclose(NYUv2Folder(ROOT).K, NYU_K, atol=1e-3)  # the bundled frames' camera


def test_frame_1407_sits_at_its_region_with_nothing_around_it():
    region = np.zeros((480, 640), bool)
    region[45:470, 40:600] = True
    for sub in ("rgb", "depth", "depth_raw", "label"):
        im = _read(sub, "1407")
        assert not im[~region].any(), sub
    assert _read("rgb", "1407")[region].any(axis=-1).mean() > 0.99
    raw = _read("depth_raw", "1407")
    assert 0.8 < (raw[region] > 0).mean() < 0.87  # raw: holes; filled: none
    assert (_read("depth", "1407")[region] > 0).all()
