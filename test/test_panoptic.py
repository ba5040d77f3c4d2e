"""PQ / SQ / RQ, mask AP and 3D box IoU on hand-made cases whose answers are worked out here."""
from __future__ import annotations

import numpy as np
import pytest

from movseg_core.eval.panoptic import Box3D, PanopticEvaluator, average_precision, box_iou_3d


def test_pq_sq_rq_by_hand():
    gt = np.zeros((10, 10), np.int32)
    gt[0:5, :] = 1  # class 1, 50 px
    gt[5:10, 0:5] = 2  # class 1, 25 px
    gt[5:10, 5:10] = 3  # class 2, 25 px
    pred = np.zeros_like(gt)
    pred[0:4, :] = 1  # class 1: IoU with gt 1 = 40 / 50 = 0.8 -> TP
    pred[4:10, 0:2] = 2  # class 1: IoU with gt 2 = 10 / (12 + 25 - 10) = 0.37 -> FP, and gt 2 is a FN
    pred[5:10, 5:10] = 3  # class 2: exact -> TP
    ev = PanopticEvaluator(num_classes=3)
    ev.add(pred, {1: 1, 2: 1, 3: 2}, gt, {1: 1, 2: 1, 3: 2})
    r = ev.result()
    # class 1: PQ = 0.8 / (1 + 0.5 + 0.5) = 0.4, SQ = 0.8, RQ = 0.5; class 2: 1, 1, 1
    assert r["per_class"][1]["pq"] == pytest.approx(0.4)
    assert (r["per_class"][1]["tp"], r["per_class"][1]["fp"], r["per_class"][1]["fn"]) == (1, 1, 1)
    assert r["pq"] == pytest.approx(0.7) and r["sq"] == pytest.approx(0.9) and r["rq"] == pytest.approx(0.75)
    # a class mix-up is a FP and a FN, not a TP
    ev2 = PanopticEvaluator(num_classes=3)
    ev2.add(gt, {1: 1, 2: 1, 3: 1}, gt, {1: 1, 2: 1, 3: 2})
    r2 = ev2.result()
    assert r2["per_class"][2]["fn"] == 1 and r2["per_class"][1]["fp"] == 1 and r2["per_class"][1]["tp"] == 2
    # accumulated over images, not averaged per image: the perfect image adds 3 TPs of IoU 1
    ev.add(gt, {1: 1, 2: 1, 3: 2}, gt, {1: 1, 2: 1, 3: 2})
    # class 1: (0.8 + 1 + 1) / (3 + 0.5 + 0.5) = 0.7; class 2: 1
    assert ev.result()["pq"] == pytest.approx((0.7 + 1.0) / 2)


def test_void_pixels_leave_the_iou_and_mostly_void_predictions_are_not_false_positives():
    gt = np.zeros((10, 10), np.int32)
    gt[0:5, :] = 1  # rows 5..9 unlabelled = void
    pred = np.zeros_like(gt)
    pred[0:7, :] = 1  # 70 px, 20 of them void: IoU = 50 / (70 - 20 + 50 - 50) = 1
    pred[7:10, :] = 2  # all void: ignored
    ev = PanopticEvaluator(num_classes=2)
    ev.add(pred, {1: 1, 2: 1}, gt, {1: 1})
    r = ev.result()
    assert r["pq"] == pytest.approx(1.0) and r["per_class"][1]["fp"] == 0
    # an explicit void mask works the same way
    gt2 = gt.copy()
    gt2[5:, :] = 2
    ev = PanopticEvaluator(num_classes=2)
    ev.add(pred, {1: 1, 2: 1}, gt2, {1: 1, 2: 1}, void=gt2 == 2)
    assert ev.result()["pq"] == pytest.approx(1.0)


def test_mask_ap_by_hand():
    gt = np.zeros((10, 20), np.int32)
    gt[0:5, 0:10] = 1  # class 1, 50 px
    gt[5:10, 0:8] = 2  # class 1, 40 px
    gt[:, 10:20] = 3  # class 2
    gt[5:10, 8:10] = 3
    pred = np.zeros_like(gt)
    pred[0:5, 0:10] = 1
    pred[0, 0:8] = 0  # 42 px left: IoU 0.84 with gt 1
    pred[5:10, 0:5] = 2  # 25 px inside gt 2: IoU 25 / 40 = 0.625
    pred[0:4, 12:20] = 3  # class 1 on class-2 ground: a false positive
    ev = PanopticEvaluator(num_classes=3)
    ev.add(pred, {1: 1, 2: 1, 3: 1}, gt, {1: 1, 2: 1, 3: 2}, scores={1: 0.9, 2: 0.8, 3: 0.7})
    r = ev.result()
    # t = .50 .55 .60: hits T T F -> recall reaches 1 at precision 1 -> AP 1
    # t = .65 .. .80 (4): T F F -> precision 1 up to recall 0.5 -> 51 of 101 recall points
    # t = .85 .90 .95: nothing -> 0
    expect = (3 * 1.0 + 4 * 51 / 101) / 10
    assert r["per_class"][1]["ap"] == pytest.approx(expect)
    assert r["per_class"][2]["ap"] == 0.0  # ground truth, no prediction
    assert r["ap"] == pytest.approx(expect / 2)
    assert r["ap50"] == pytest.approx(0.5)
    # the score order matters: the false positive first costs precision at every recall
    ev = PanopticEvaluator(num_classes=3)
    ev.add(pred, {1: 1, 2: 1, 3: 1}, gt, {1: 1, 2: 1, 3: 2}, scores={1: 0.5, 2: 0.4, 3: 0.9})
    # t = .5: F T T -> precision (0, .5, .67) -> interpolated .67 at every recall point
    assert ev.result()["per_class"][1]["ap"] < expect


def test_average_precision_interpolation():
    assert average_precision(np.array([True, True]), 2) == pytest.approx(1.0)
    assert average_precision(np.array([False, True]), 1) == pytest.approx(0.5)  # precision 1/2 at recall 1
    assert average_precision(np.array([], bool), 3) == 0.0
    assert np.isnan(average_precision(np.array([True]), 0))


def test_3d_box_iou_and_centroid_error_on_matched_things():
    assert box_iou_3d([0, 0, 0], [2, 2, 2], [1, 1, 1], [3, 3, 3]) == pytest.approx(1 / 15)  # 1 / (8 + 8 - 1)
    assert box_iou_3d([0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]) == 0.0
    gt = np.zeros((4, 4), np.int32)
    gt[:2] = 1
    gt[2:] = 2
    ev = PanopticEvaluator(num_classes=3, stuff={2})
    boxes_p = {1: Box3D(np.array([0.0, 0.0, 2.03]), np.array([-1.0, -1, 1.03]), np.array([1.0, 1, 3.03])),
               2: Box3D(np.zeros(3), np.zeros(3), np.ones(3))}
    boxes_g = {1: Box3D(np.array([0.0, 0.0, 2.0]), np.array([-1.0, -1, 1]), np.array([1.0, 1, 3])),
               2: Box3D(np.ones(3), np.ones(3), 2 * np.ones(3))}
    ev.add(gt, {1: 1, 2: 2}, gt, {1: 1, 2: 2}, pred_boxes=boxes_p, gt_boxes=boxes_g)
    r = ev.result()
    assert r["centroid_err_m"] == pytest.approx([0.03])  # the stuff pair is left out
    assert r["box3d_iou"] == pytest.approx([1.97 / 2.03])  # 4 * 1.97 / (8 + 8 - 4 * 1.97)
    assert r["pq_stuff"] == 1.0 and r["pq_things"] == 1.0


def test_bad_input():
    ev = PanopticEvaluator(num_classes=2)
    with pytest.raises(ValueError, match="shape"):
        ev.add(np.zeros((2, 2), int), {}, np.zeros((3, 2), int), {})
    with pytest.raises(ValueError, match="outside 0..1"):
        ev.add(np.ones((2, 2), int), {1: 5}, np.ones((2, 2), int), {1: 1})
    with pytest.raises(ValueError, match="num_classes"):
        PanopticEvaluator(num_classes=1)
    empty = PanopticEvaluator(num_classes=2).result()
    assert np.isnan(empty["pq"]) and np.isnan(empty["ap"])
