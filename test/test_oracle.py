"""Oracle-class proposal scoring and the RGB vs RGB-D comparison picture (movseg_core/eval/oracle.py)."""
from __future__ import annotations

import cv2
import numpy as np

from movseg_core.eval.oracle import comparison_png, draw_boundaries, draw_caption, oracle_labels


def test_oracle_labels_take_each_segments_majority_labelled_class():
    segments = np.array([[0, 0, 1, 1],
                         [0, 0, 1, 1],
                         [2, 2, 2, 2]])
    gt = np.array([[1, 1, 3, 3],
                   [0, 0, 2, 3],
                   [0, 0, 0, 0]])  # segment 0: half unlabelled, still 1; segment 1: 3 wins; segment 2: nothing labelled
    out = oracle_labels(segments, gt, num_classes=3)
    assert out.tolist() == [[1, 1, 3, 3], [1, 1, 3, 3], [0, 0, 0, 0]]


def test_draw_boundaries_marks_only_pixels_before_a_segment_change():
    rgb = np.zeros((3, 4, 3), np.uint8)
    segments = np.array([[0, 0, 1, 1]] * 3)
    out = draw_boundaries(rgb, segments, color=(9, 8, 7))
    painted = (out == (9, 8, 7)).all(-1)
    assert painted[:, 1].all() and painted.sum() == 3


def test_comparison_png_has_one_row_per_mode_plus_ground_truth(tmp_path):
    rgb = np.full((20, 30, 3), 128, np.uint8)
    gt = np.zeros((20, 30), np.int64)
    gt[:, 15:] = 2
    segs = np.zeros((20, 30), np.int32)
    segs[:, 15:] = 1
    path = comparison_png(tmp_path / "c.png", rgb, gt, 3, {"RGB": (segs, "a"), "RGB-D": (segs, "b")})
    img = cv2.imread(str(path))
    assert img.shape == (60, 60, 3)


def test_caption_outline_stays_on_its_text():
    """The black outline hugs the white text to the last glyph (a thicker stroke drifts right: OpenCV adds
    the thickness to every glyph's advance, and the demo's captions read "proposalsals")."""
    img = draw_caption(np.full((40, 400, 3), 128, np.uint8), "RGB-D: 48 proposals")
    white = (img > 200).all(-1)
    dark = (img < 60).all(-1)
    assert white.any() and dark.any()
    near_white = cv2.dilate(white.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert (dark & ~near_white).sum() == 0
    cols = np.nonzero(white.any(0))[0], np.nonzero(dark.any(0))[0]
    assert abs(int(cols[0].max()) - int(cols[1].max())) <= 2
