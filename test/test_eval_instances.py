"""Ground-truth instances: the NYUv2 .mat `instances` reader, the one frame record, and the panoptic part
of `movseg eval --offline` (PQ / SQ / RQ, mask AP) on a scene whose figures are computed by hand."""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import yaml

from movseg_core.config import apply_overrides, parse_overrides
from movseg_core.data.frame import RGBDFrame
from movseg_core.data.nyuv2_mat import NYUv2Mat, instance_ids
from movseg_core.eval.panoptic import panoptic_truth
from movseg_ros import bag as B
from movseg_ros.cli import main as cli_main

from conftest import PYTHON, REPO
from nyu_mat import write_labeled_set

#: tiny random segmenter: with ONE query and no background prompt every segment is that query, confidence 1
TINY = ["segmenter.clip.model_name=movseg-tiny-vit", "segmenter.clip.pretrained=random",
        "segmenter.clip.device=cpu", "segmenter.dense.short_side=64"]


def test_instance_ids_number_label_instance_pairs():
    """An object is the pair (label, instance): instance 1 of class 5 and of class 7 are two objects;
    unlabelled pixels are no object whatever their instance; a labelled pixel of instance 0 is one (NYU toolbox)."""
    labels = np.array([[0, 5, 5, 5], [7, 5, 7, 0]], np.uint16)
    inst = np.array([[3, 1, 2, 0], [1, 1, 1, 0]], np.uint8)
    got = instance_ids(labels, inst)
    # pairs in order: (5, 0) -> 1, (5, 1) -> 2, (5, 2) -> 3, (7, 1) -> 4
    np.testing.assert_array_equal(got, [[0, 2, 3, 1], [4, 2, 4, 0]])
    assert got.dtype == np.uint16
    with pytest.raises(ValueError, match="differ in size"):
        instance_ids(labels, inst[:, :2])


def test_mat_reader_gives_instances_when_the_file_has_them(tmp_path):
    rgb, depth, labels, mapping, inst = write_labeled_set(tmp_path, 3, instances=True)
    ds = NYUv2Mat(tmp_path / "nyu_depth_v2_labeled.mat", tmp_path / "classMapping40.mat")
    assert ds.has_instances
    for i in range(3):
        f = ds[i]
        np.testing.assert_array_equal(f.instances, instance_ids(labels[i], inst[i]))
        assert ((f.instances > 0) == (f.label > 0)).all()
        # one class per object
        for k in np.unique(f.instances[f.instances > 0]):
            assert np.unique(f.label[f.instances == k]).size == 1
    (tmp_path / "no").mkdir()
    write_labeled_set(tmp_path / "no", 2)
    plain = NYUv2Mat(tmp_path / "no" / "nyu_depth_v2_labeled.mat", tmp_path / "no" / "classMapping40.mat")
    assert not plain.has_instances and plain[0].instances is None


def test_nyu2bag_carries_ground_truth_instances_when_the_source_has_them(tmp_path):
    _, _, labels, _, inst = write_labeled_set(tmp_path, 2, instances=True)
    mat = NYUv2Mat(tmp_path / "nyu_depth_v2_labeled.mat", tmp_path / "classMapping40.mat")
    B.write_bag(mat, tmp_path / "inst.bag", progress=False)
    assert B.inspect_bag(tmp_path / "inst.bag").topics[B.BagTopics().gt_instances] == ("sensor_msgs/msg/Image", 2)
    frames = list(B.read_bag(tmp_path / "inst.bag"))
    for i, f in enumerate(frames):
        np.testing.assert_array_equal(f.instances, instance_ids(labels[i], inst[i]))
    (tmp_path / "no").mkdir()
    write_labeled_set(tmp_path / "no", 2)
    B.write_bag(NYUv2Mat(tmp_path / "no" / "nyu_depth_v2_labeled.mat", tmp_path / "no" / "classMapping40.mat"),
                tmp_path / "plain.bag", progress=False)
    assert B.BagTopics().gt_instances not in B.inspect_bag(tmp_path / "plain.bag").topics
    assert all(f.instances is None for f in B.read_bag(tmp_path / "plain.bag"))


def test_frame_refuses_a_wrong_instance_map():
    rgb = np.zeros((4, 6, 3), np.uint8)
    for bad in (np.zeros((4, 6), np.int32), np.zeros((3, 6), np.uint16)):
        with pytest.raises(ValueError, match="frame f: instances must be 4x6 uint16"):
            RGBDFrame("f", rgb, instances=bad)


def test_panoptic_truth_merges_stuff_per_class_and_voids_unlabelled():
    label = np.array([[1, 1, 2, 2], [1, 0, 2, 2]])
    inst = np.array([[1, 1, 3, 4], [2, 5, 3, 4]])
    seg, cls = panoptic_truth(inst, label, stuff={2})
    # things keep their ids, the two stuff instances of class 2 become one segment, label 0 is void
    np.testing.assert_array_equal(seg, [[1, 1, 6, 6], [2, 0, 6, 6]])  # stuff id: largest labelled id 4 + class 2
    assert cls == {1: 1, 2: 1, 6: 2}


# ------------------------------------------------------------------ movseg eval --offline, by hand
H, W = 480, 640  # the labeled .mat's size (its reader gives the Kinect's K for it)


def _scene(with_instances: bool) -> dict[str, np.ndarray]:
    """Two flat boards side by side: left red at 1 m (raw class 5), right blue at 2 m (raw class 7); both
    NYU40 class 1 ("chair" in the prompts below). Ground truth splits the left board into two objects,
    rows 0-159 (51200 px) and 160-479 (102400 px), that look like one (same colour, same depth)."""
    rgb = np.zeros((1, H, W, 3), np.uint8)
    rgb[0, :, :320] = (200, 40, 40)
    rgb[0, :, 320:] = (40, 40, 200)
    depth = np.full((1, H, W), 1.0, np.float32)
    depth[0, :, 320:] = 2.0
    labels = np.full((1, H, W), 5, np.uint16)
    labels[0, :, 320:] = 7
    scene = {"rgb": rgb, "depth": depth, "labels": labels, "mapping": np.ones(894, np.int64)}
    if with_instances:
        inst = np.ones((1, H, W), np.uint8)  # right board: (7, 1); left top: (5, 1)
        inst[0, 160:, :320] = 2  # left bottom: (5, 2)
        scene["instances"] = inst
    return scene


def _eval(mat_dir, out, prompts, *extra):
    rc = cli_main(["eval", "--offline", str(mat_dir / "nyu_depth_v2_labeled.mat"), "--class-mapping",
                   str(mat_dir / "classMapping40.mat"), "--prompts", str(prompts), "--out", str(out),
                   *[a for s in (*TINY, *extra) for a in ("--set", s)]])
    assert rc == 0
    return json.loads((out / "metrics.json").read_text()), (out / "report.md").read_text()


def test_offline_eval_reports_panoptic_quality_where_ground_truth_has_instances(tmp_path, capsys):
    """Predicted: one object per board (the segmenter cannot split the left one). Matches: right board
    IoU 1; left board vs the bottom object IoU 102400 / 153600 = 2/3 (> 0.5); the top object is missed.
    PQ = (1 + 2/3) / (2 TP + 1/2 FN) = 2/3, SQ = 5/6, RQ = 0.8. Mask AP (both scores 1, left first):
    IoU thresholds 0.50-0.65 hit both (precision 1 to recall 2/3: 67 of 101 recall points), 0.70-0.95
    only the right one (precision 1/2 to recall 1/3: 34 points x 0.5) -> (4 * 67 + 6 * 17) / 1010."""
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("classes: [chair]\nprompts: {chair: chair}\n")
    for name, inst in (("inst", True), ("plain", False)):
        (tmp_path / name).mkdir()
        write_labeled_set(tmp_path / name, 1, scene=_scene(inst))

    m, report = _eval(tmp_path / "inst", tmp_path / "out", prompts)
    assert "PQ 66.7% (things 66.7%, stuff n/a), mask AP 36.6%" in capsys.readouterr().out
    p = m["panoptic"]
    assert p["frames"] == ["0001"] and p["stuff_classes"] == []
    assert p["pq"] == pytest.approx(2 / 3) and p["pq_things"] == pytest.approx(2 / 3) and p["pq_stuff"] is None
    assert p["sq"] == pytest.approx(5 / 6) and p["rq"] == pytest.approx(0.8)
    assert p["per_class"]["chair"] | {"pq": 0, "sq": 0, "rq": 0, "ap": 0} == {
        "pq": 0, "sq": 0, "rq": 0, "ap": 0, "tp": 2, "fp": 0, "fn": 1}
    assert p["ap50"] == pytest.approx(67 / 101) and p["ap"] == pytest.approx(370 / 1010)
    assert "## Panoptic quality (1 frames with ground-truth instances)" in report
    assert "| things | 66.7 | 83.3 | 80.0 |" in report

    # the same query as stuff (the segmenter's objects.stuff_queries): one segment per class on both sides
    m, report = _eval(tmp_path / "inst", tmp_path / "stuff", prompts, "segmenter.objects.stuff_queries=[chair]")
    p = m["panoptic"]
    assert p["stuff_classes"] == ["chair"] and p["pq_things"] is None
    assert p["pq"] == pytest.approx(1.0) and p["pq_stuff"] == pytest.approx(1.0) and p["ap"] == pytest.approx(1.0)
    assert "Stuff classes (one segment per class, in ground truth and prediction): chair" in report
    assert "stuff 100.0%" in capsys.readouterr().out

    # no instances in the file: scored as before, no panoptic section
    m, report = _eval(tmp_path / "plain", tmp_path / "plain_out", prompts)
    assert "panoptic" not in m and "Panoptic" not in report and m["frames_scored"] == 1
    assert "PQ" not in capsys.readouterr().out

    # instances, but the segmenter makes no objects: said, not silently dropped
    m, _ = _eval(tmp_path / "inst", tmp_path / "off", prompts, "segmenter.objects.enabled=false")
    assert "panoptic" not in m
    assert any("objects.enabled is false" in w for w in m["warnings"])


def test_replay_through_the_node_scores_instances_like_offline(tmp_path, ros_processes):
    """`movseg eval --bag`: the node's ~/instances + ~/objects, matched by stamp, give the same panoptic
    figures as `--offline` on the same bag, and the hand-computed ones of the scene above."""
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("classes: [chair]\nprompts: {chair: chair}\n")
    write_labeled_set(tmp_path, 1, scene=_scene(True))
    bag = tmp_path / "inst.bag"
    assert cli_main(["nyu2bag", str(tmp_path / "nyu_depth_v2_labeled.mat"), str(bag), "--class-mapping",
                     str(tmp_path / "classMapping40.mat")]) == 0
    tree = apply_overrides({"publish": {"overlay": False, "confidence": False}}, parse_overrides(TINY))
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump({"/**": {"ros__parameters": tree}}))
    node = ros_processes([PYTHON, "-m", "movseg_ros.cli", "run", "--config", str(cfg)], "eval-node-instances")
    replay = subprocess.run([PYTHON, "-m", "movseg_ros.cli", "eval", "--bag", str(bag), "--prompts", str(prompts),
                             "--out", str(tmp_path / "replay"), "--discovery-timeout", "60", "--first-timeout", "180"],
                            capture_output=True, text=True, timeout=400, cwd=REPO, env=os.environ.copy())
    assert replay.returncode == 0, replay.stdout + replay.stderr + node.output()
    assert "PQ 66.7%" in replay.stdout
    assert cli_main(["eval", "--offline", str(bag), "--prompts", str(prompts), "--out", str(tmp_path / "offline"),
                     "--config", str(cfg)]) == 0
    r, o = (json.loads((tmp_path / d / "metrics.json").read_text())["panoptic"] for d in ("replay", "offline"))
    assert r == o
    assert r["pq"] == pytest.approx(2 / 3) and r["ap"] == pytest.approx(370 / 1010)
