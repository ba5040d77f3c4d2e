"""Metrics against confusion matrices computed by hand."""
from __future__ import annotations

import numpy as np
import pytest

from movseg_core.eval.metrics import (
    boundary_f1,
    confusion_matrix,
    frequency_weighted_iou,
    miou_from_confusion,
    per_class_iou,
    pixel_accuracy,
)

# (gt, pred) pairs: (1,1) (1,2) (2,2) (2,0) (0,1)->ignored (3,3)
GT = np.array([[1, 1, 2], [2, 0, 3]], np.uint16)
PRED = np.array([[1, 2, 2], [0, 1, 3]], np.uint16)
CM = np.array([[0, 0, 0, 0],
               [0, 1, 1, 0],
               [1, 0, 1, 0],
               [0, 0, 0, 1]])


def test_confusion_matrix_by_hand():
    np.testing.assert_array_equal(confusion_matrix(PRED, GT, 4), CM)
    # without ignoring, the (0, 1) pixel is counted
    expect = CM.copy(); expect[0, 1] = 1
    np.testing.assert_array_equal(confusion_matrix(PRED, GT, 4, ignore_index=None), expect)


def test_scores_by_hand():
    iou = per_class_iou(CM)
    assert np.isnan(iou[0])
    np.testing.assert_allclose(iou[1:], [1 / 2, 1 / 3, 1.0])       # 1/(2+1-1), 1/(2+2-1), 1/1
    assert miou_from_confusion(CM) == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
    assert pixel_accuracy(CM) == pytest.approx(3 / 5)               # unknown (0) prediction is a miss
    assert frequency_weighted_iou(CM) == pytest.approx((2 * 1 / 2 + 2 * 1 / 3 + 1 * 1) / 5)


def test_absent_and_false_positive_classes():
    cm = confusion_matrix(PRED, GT, 6)  # classes 4, 5 never appear: NaN, not in the mean
    iou = per_class_iou(cm)
    assert np.isnan(iou[4]) and np.isnan(iou[5])
    assert miou_from_confusion(cm) == pytest.approx(miou_from_confusion(CM))
    pred = PRED.copy(); pred[0, 0] = 4  # predicted, never in ground truth: IoU 0, counts in the mean
    cm = confusion_matrix(pred, GT, 6)
    iou = per_class_iou(cm)
    assert iou[4] == 0 and iou[1] == 0          # class 1 lost its only hit
    assert miou_from_confusion(cm) == pytest.approx((0 + 1 / 3 + 1 + 0) / 4)


def test_accumulates_over_frames():
    total = confusion_matrix(PRED, GT, 4) + confusion_matrix(GT, GT, 4)
    assert total.sum() == 10 and np.trace(total) == 8
    assert pixel_accuracy(total) == pytest.approx(8 / 10)


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(PRED, GT[:, :2], 4)
    with pytest.raises(ValueError, match="prediction ids"):
        confusion_matrix(PRED + 5, GT, 4)
    with pytest.raises(ValueError, match="ground truth ids"):
        confusion_matrix(PRED, GT * 3, 4)
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(PRED.astype(float), GT, 4)
    with pytest.raises(ValueError, match="square"):
        per_class_iou(np.zeros((3, 4)))


def test_all_ignored_gives_nan():
    cm = confusion_matrix(PRED, np.zeros_like(GT), 4)
    assert cm.sum() == 0
    assert np.isnan(miou_from_confusion(cm)) and np.isnan(pixel_accuracy(cm)) and np.isnan(frequency_weighted_iou(cm))


def test_boundary_f1():
    gt = np.ones((20, 20), np.uint16); gt[:, 10:] = 2
    assert boundary_f1(gt, gt) == 1.0
    shifted = np.ones_like(gt); shifted[:, 11:] = 2          # 1 px off, within 2 px
    assert boundary_f1(shifted, gt) == 1.0
    far = np.ones_like(gt); far[:, 16:] = 2                   # 6 px off
    assert boundary_f1(far, gt, tolerance_px=2) == 0.0
    extra = gt.copy(); extra[:, 15:] = 3                      # a second, spurious boundary: P=1/2, R=1
    assert boundary_f1(extra, gt) == pytest.approx(2 / 3)
    flat = np.ones_like(gt)
    assert boundary_f1(flat, gt) == 0.0 and boundary_f1(flat, flat) == 1.0
    ignored = gt.copy(); ignored[:, 8:12] = 0                 # boundary inside unlabelled pixels is not scored
    assert boundary_f1(far, ignored) == 0.0


def _blobs(seed: int, shape=(40, 48), n: int = 6, with_zero: bool = True) -> np.ndarray:
    """A label map of random rectangles (ids 1..n) with optional unlabelled (0) strips."""
    rng = np.random.default_rng(seed)
    lab = np.ones(shape, np.uint16)
    for i in range(2, n + 1):
        y0, x0 = rng.integers(0, shape[0] - 5), rng.integers(0, shape[1] - 5)
        lab[y0:y0 + rng.integers(4, 20), x0:x0 + rng.integers(4, 24)] = i
    if with_zero:
        lab[rng.integers(0, shape[0]), :] = 0
        c = rng.integers(2, shape[1] - 4)
        lab[:, c:c + rng.integers(1, 4)] = 0
    return lab


@pytest.mark.parametrize("seed", range(8))
def test_boundary_f1_mirror_invariant(seed):
    """Flipping both maps (either axis) does not change the score (failed with one-sided marks)."""
    gt = _blobs(seed)
    pred = _blobs(seed + 100, with_zero=False)
    f = boundary_f1(pred, gt)
    for axes in ((0,), (1,), (0, 1)):
        assert boundary_f1(np.flip(pred, axes), np.flip(gt, axes)) == pytest.approx(f, abs=1e-12), axes


def test_boundary_f1_seam():
    """A boundary inside a thin unlabelled seam between two objects matches (NYUv2 seams)."""
    gt = np.ones((20, 20), np.uint16); gt[:, 11:] = 2; gt[:, 9:11] = 0      # A A | 0 0 | B B
    for cut in (9, 10, 11):  # object change on either seam side or inside
        pred = np.ones_like(gt); pred[:, cut:] = 2
        assert boundary_f1(pred, gt) == 1.0, cut
        assert boundary_f1(np.flip(pred, 1), np.flip(gt, 1)) == 1.0, cut
    flat = np.ones_like(gt)                                                 # no boundary predicted: misses it
    assert boundary_f1(flat, gt) == 0.0
    far = np.ones_like(gt); far[:, 16:] = 2                                 # 5 px beyond the seam
    assert boundary_f1(far, gt) < 0.5


def test_boundary_f1_ignores_deep_unlabelled():
    """Predicted boundaries farther than the tolerance from any labelled pixel are not scored; where
    the annotation ends (labelled | unlabelled) is a ground-truth boundary."""
    gt = np.ones((20, 30), np.uint16); gt[:, 10:] = 2; gt[:, 20:] = 0
    pred = np.ones_like(gt); pred[:, 10:] = 2; pred[:, 25:] = 3            # extra cut 5 px inside the unlabelled area
    # precision 1 (the cut at 25 is not scored), recall 1/2 (the 2|0 edge at 20 is missed)
    assert boundary_f1(pred, gt) == pytest.approx(2 / 3)
    pred[:, 20:25] = 4                                                      # a cut where labels end: a hit
    assert boundary_f1(pred, gt) == 1.0
