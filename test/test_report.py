"""Report files (metrics.json, report.md, plots) and the prompt mapping, on real NYUv2 labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from movseg_core.data.nyuv2 import NYU40_CLASSES, NYUv2Folder, default_nyuv2_dir
from movseg_core.eval.metrics import confusion_matrix, miou_from_confusion
from movseg_core.eval.prompts import PromptMap, default_prompts_path, load_prompt_map
from movseg_core.eval.report import write_report
from movseg_core.eval.scoring import EvalAccumulator, percentiles


def _frames(n=2):
    ds = NYUv2Folder(default_nyuv2_dir())
    return [ds[i] for i in range(n)]


def test_report_files_and_numbers(tmp_path):
    acc = EvalAccumulator(NYU40_CLASSES, keep_samples=1)
    cm = np.zeros((41, 41), np.int64)
    for k, f in enumerate(_frames()):
        pred = f.label.astype(np.uint16).copy()
        pred[:, :160] = 1          # a quarter of the image called "wall"
        pred[:20] = 0              # top rows "unknown"
        acc.sent()
        acc.add(f.name, pred, f.label, f.rgb, latency_ms=10.0 * (k + 1), inference_ms=5.0)
        cm += confusion_matrix(pred, f.label, 41)
    acc.sent()
    acc.miss("9999", "no answer within 5 s")
    m = write_report(acc, tmp_path, info={"mode": "test"}, warnings=["random weights"])
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("miou", "per_class_iou", "pixel_acc", "fwiou", "frames_scored", "frames_sent", "latency_ms"):
        assert key in on_disk
    assert on_disk["frames_scored"] == 2 and on_disk["frames_sent"] == 3
    assert on_disk["miou"] == pytest.approx(miou_from_confusion(cm))
    assert on_disk["pixel_acc"] == pytest.approx(np.trace(cm[1:, 1:]) / cm[1:].sum())
    assert on_disk["latency_ms"]["p50"] == pytest.approx(15.0) and on_disk["latency_ms"]["max"] == 20.0
    assert on_disk["per_class_iou"]["wall"] is not None and 0 < on_disk["per_class_iou"]["wall"] < 1
    absent = [n for i, n in enumerate(NYU40_CLASSES, 1) if cm[i].sum() == 0 and cm[:, i].sum() == 0]
    assert absent and all(on_disk["per_class_iou"][n] is None for n in absent)  # NaN -> null
    assert on_disk["unscored"] == {"9999": "no answer within 5 s"}
    assert on_disk == json.loads(json.dumps(m))
    md = (tmp_path / "report.md").read_text()
    assert "random weights" in md and f"{100 * on_disk['miou']:.1f} %" in md and "9999" in md
    for png in ("per_class_iou.png", "confusion_matrix.png", f"overlays/{acc.samples[0].name}.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({png})" in md


def test_nothing_scored_writes_nothing(tmp_path):
    acc = EvalAccumulator(NYU40_CLASSES)
    acc.sent()
    acc.miss("0001", "node never answered")
    with pytest.raises(ValueError, match="no frame was scored.*node never answered"):
        write_report(acc, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_size_mismatch_is_refused():
    acc = EvalAccumulator(NYU40_CLASSES)
    with pytest.raises(ValueError, match="differ in size"):
        acc.add("x", np.zeros((4, 4), np.uint16), np.zeros((4, 5), np.uint16))


def test_percentiles():
    p = percentiles([1.0, 2.0, 3.0, 4.0])
    assert p["n"] == 4 and p["p50"] == 2.5 and p["max"] == 4.0 and p["mean"] == 2.5
    assert percentiles([])["p50"] is None


def test_shipped_prompt_mapping():
    pm = load_prompt_map()
    assert pm.class_names == NYU40_CLASSES and len(set(pm.queries)) == 40
    assert pm.queries[NYU40_CLASSES.index("refridgerator")] == "refrigerator"
    assert pm.queries[NYU40_CLASSES.index("otherprop")] == "other object"
    assert default_prompts_path().is_file()


def test_prompt_mapping_maps_labels_back():
    pm = PromptMap(("wall", "floor", "chair"), ("a wall", "the floor", "chair"))
    labels = np.array([[0, 1, 2], [2, 3, 1]], np.uint16)
    # the segmenter was asked in another order: id 1 = "chair", 2 = "a wall", 3 = "the floor"
    out = pm.to_class_ids(labels, ["chair", "a wall", "the floor"], [1, 2, 3])
    np.testing.assert_array_equal(out, [[0, 3, 1], [1, 2, 3]])
    with pytest.raises(ValueError, match="not one of the evaluation queries"):
        pm.to_class_ids(labels, ["sofa", "a wall", "the floor"], [1, 2, 3])
    with pytest.raises(ValueError, match="label info lists only"):
        pm.to_class_ids(labels, ["chair", "a wall"], [1, 2])


def test_bad_prompt_files(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("prompts:\n  wall: wall\n")
    with pytest.raises(ValueError, match="without a prompt"):
        load_prompt_map(p)
    p.write_text("prompts:\n  wall: x\n  floor: x\n")
    with pytest.raises(ValueError, match="distinct"):
        load_prompt_map(p, class_names=("wall", "floor"))
    with pytest.raises(ValueError, match="not found"):
        load_prompt_map(tmp_path / "missing.yaml")


def test_prompt_file_may_name_its_own_classes(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("classes: [floor, cube]\nprompts:\n  floor: floor\n  cube: a cube\n")
    pm = load_prompt_map(p)
    assert pm.class_names == ("floor", "cube") and pm.queries == ("floor", "a cube")
    p.write_text("classes: floor\nprompts:\n  floor: floor\n")
    with pytest.raises(ValueError, match="'classes' must be"):
        load_prompt_map(p)
