"""The one RGB-D frame record: what it holds and the clear errors for what it must not."""
import numpy as np
import pytest

from movseg_core.data.frame import RGBDFrame
from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir
from movseg_core.data.records import SegRecord

RGB = np.zeros((4, 6, 3), np.uint8)


def test_bundled_frames_are_rgbd_frames_with_zero_for_invalid_depth():
    frames = list(NYUv2Folder(default_nyuv2_dir(), raw_depth=True, require_depth=True))
    for f in frames:
        assert isinstance(f, RGBDFrame) and f.rgb.shape == (480, 640, 3) and f.K.dtype == np.float64
        assert f.depth.dtype == np.float32 and not np.isnan(f.depth).any()
    assert all((f.depth == 0).any() for f in frames)  # raw sensor depth has holes: 0, not NaN


@pytest.mark.parametrize("kwargs, words", [
    (dict(rgb=np.zeros((4, 6), np.uint8)), "rgb must be HxWx3 uint8"),
    (dict(rgb=RGB.astype(np.float32)), "rgb must be HxWx3 uint8"),
    (dict(depth=np.zeros((4, 6), np.float64)), "depth must be 4x6 float32"),
    (dict(depth=np.zeros((4, 5), np.float32)), "depth must be 4x6 float32"),
    (dict(K=np.eye(2)), "K must be 3x3"),
    (dict(label=np.zeros((4, 6), np.float32)), "label must be 4x6 integer"),
    (dict(label=np.zeros((3, 6), np.uint8)), "label must be 4x6 integer"),
])
def test_wrong_arrays_are_refused_with_the_frame_name(kwargs, words):
    with pytest.raises(ValueError, match=f"frame f7: {words}"):
        RGBDFrame(**{"name": "f7", "rgb": RGB, **kwargs})


def test_training_record_is_a_frame_plus_an_x_image():
    rec = SegRecord("s", RGB, label=np.ones((4, 6), np.int64), x=np.zeros((4, 6, 3), np.uint8))
    assert isinstance(rec, RGBDFrame) and rec.depth is None and rec.K is None
    with pytest.raises(ValueError, match="x image"):
        SegRecord("s", RGB, label=np.ones((4, 6), np.int64), x=np.zeros((2, 6, 3), np.uint8))
