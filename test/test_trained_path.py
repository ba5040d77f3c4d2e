"""An exported MOVSeg proposal checkpoint (`movseg export`) loads into the segmenter and the node."""
from __future__ import annotations

import signal
import time

import numpy as np
import pytest
import torch
import yaml

from movseg_core.models import create_model
from movseg_core.models.checkpoint import export_checkpoint

from conftest import PYTHON, RosProcess

CLIP = {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = create_model("movseg-tiny").eval()  # 64-d proposal embeddings, like movseg-tiny-vit
    path = tmp_path_factory.mktemp("export") / "proposals.pt"
    export_checkpoint(model, path, ["chair", "table"], clip={"model_name": CLIP["model_name"]})
    return str(path)


def frame():
    from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir
    return NYUv2Folder(default_nyuv2_dir(), require_depth=True)[0]


def test_exported_checkpoint_drives_the_segmenter(exported):
    from movseg_core.segmenter import Segmenter

    seg = Segmenter.from_config({"clip": CLIP, "dense": {"short_side": 112},
                                 "proposals": {"method": "trained", "checkpoint": exported, "trained_short_side": 128}})
    seg.set_queries(["chair", "table", "lamp"])  # 'lamp' unseen by the head: beta weight
    f = frame()
    r = seg.segment(f.rgb, f.depth, f.K)
    assert r.labels.shape == f.rgb.shape[:2] and int(r.labels.max()) <= 3
    assert 1 <= int(r.segments.max()) + 1 <= 16  # at most the model's 16 queries
    assert np.all((r.confidence >= 0) & (r.confidence <= 1))


def test_segmenter_wires_the_ensemble_exponents_to_seen_and_unseen_classes(exported):
    """The head was trained on chair and table. Exponents (0, 0) = head only, (1, 1) = CLIP only; with
    (seen 0, unseen 1) a vocabulary of seen classes must give the head's labels, with (seen 1, unseen 0)
    a vocabulary of unseen classes too (swapped wiring gives CLIP's)."""
    from movseg_core.segmenter import Segmenter

    seg = Segmenter.from_config({"clip": CLIP, "dense": {"short_side": 112},
                                 "proposals": {"method": "trained", "checkpoint": exported, "trained_short_side": 128}})
    f = frame()
    depth = f.depth

    def run(vocab, seen_exp, unseen_exp):
        seg.cfg.classify.clip_exponent_seen, seg.cfg.classify.clip_exponent_unseen = seen_exp, unseen_exp
        seg.set_queries(vocab)
        r = seg.segment(f.rgb, depth, f.K)
        return r.labels, r.confidence

    for vocab, exps in ((["chair", "table"], (0.0, 1.0)), (["lamp", "sofa"], (1.0, 0.0))):
        assert seg.seen_by_head(vocab).tolist() == [vocab[0] == "chair"] * 2
        head, head_conf = run(vocab, 0.0, 0.0)
        clip, _ = run(vocab, 1.0, 1.0)
        assert (head != clip).any()  # the two members disagree somewhere, so the check below can fail
        got, got_conf = run(vocab, *exps)
        assert np.array_equal(got, head) and np.allclose(got_conf, head_conf)


def test_trained_method_needs_a_checkpoint_that_matches_clip(exported, tmp_path):
    from movseg_core.segmenter import Segmenter

    with pytest.raises(ValueError, match="needs proposals.checkpoint"):
        Segmenter.from_config({"clip": CLIP, "proposals": {"method": "trained"}})
    with pytest.raises(FileNotFoundError):
        Segmenter.from_config({"clip": CLIP, "proposals": {"method": "trained", "checkpoint": str(tmp_path / "no.pt")}})
    with pytest.raises(ValueError, match="embeds in 64 dimensions"):
        Segmenter.from_config({"clip": {**CLIP, "model_name": "movseg-tiny-vit-p8"},
                               "proposals": {"method": "trained", "checkpoint": exported}})


def test_exported_checkpoint_loads_into_the_node(exported, tmp_path, rclpy_node):
    from movseg_ros.msg import LabelInfo
    from movseg_ros.player import CameraPublisher, load_folder_frames
    from movseg_ros.qos import qos_by_name

    from conftest import spin_until

    cfg = tmp_path / "params.yaml"
    cfg.write_text(yaml.safe_dump({"movseg": {"ros__parameters": {
        "queries": ["chair", "table"],
        "segmenter": {"clip": CLIP, "dense": {"short_side": 112},
                      "proposals": {"method": "trained", "checkpoint": exported, "trained_short_side": 128}}}}}))
    node = RosProcess([PYTHON, "-m", "movseg_ros.cli", "run", "--config", str(cfg)], "node-trained")
    try:
        infos = []
        rclpy_node.create_subscription(LabelInfo, "/movseg/label_info", infos.append, qos_by_name("reliable"))
        cam = CameraPublisher(rclpy_node)
        assert cam.wait_for_subscribers(120), node.output()
        frames = load_folder_frames(None)
        deadline = time.monotonic() + 120
        while not infos and time.monotonic() < deadline and node.proc.poll() is None:
            cam.publish(frames[0])
            spin_until(rclpy_node, lambda: bool(infos), 3.0)
        assert infos, node.output()[-3000:]
        assert list(infos[0].names) == ["chair", "table"]
    finally:
        assert node.stop(signal.SIGINT) == 0, node.output()[-2000:]


def test_trained_path_gives_instances_from_the_query_masks(exported):
    """Issue 15: with trained proposals every thing query mask is its own instance (never joined to a
    touching mask of its class, as the geometric grouping would), stuff is one region per class, and
    the instance map agrees with the label map pixel for pixel."""
    from movseg_core.segmenter import Segmenter

    seg = Segmenter.from_config({"clip": CLIP, "dense": {"short_side": 112},
                                 "proposals": {"method": "trained", "checkpoint": exported, "trained_short_side": 128},
                                 "objects": {"min_pixels": 1}})
    seg.set_queries(["chair", "table", "wall"])
    f = frame()
    r = seg.segment(f.rgb, f.depth, f.K)
    objs = r.objects
    assert objs is not None and objs.instances
    inst = objs.instance_map
    assert inst.shape == r.labels.shape and inst.dtype == np.uint16
    assert sorted(np.unique(inst[inst > 0]).tolist()) == [o.id for o in objs.instances]
    for o in objs.instances:  # each instance's pixels carry its class in the labels; mask, count and box agree
        ys, xs = np.nonzero(inst == o.id)
        assert (r.labels[ys, xs] == o.class_id).all() and o.name == r.names[o.class_id - 1]
        assert o.pixels == ys.size and o.box == (xs.min(), ys.min(), xs.max(), ys.max())
        assert o.is_stuff == (o.name == "wall")
    assert ((inst > 0) == (r.labels > 0)).all()  # min_pixels 1, min_score 0: every labelled pixel is in an object
    # thing query masks: one instance each, distinct
    thing_masks = [s for s in np.unique(r.segments) if r.labels[r.segments == s][0] in (1, 2)]
    ids = [np.unique(inst[r.segments == s]) for s in thing_masks]
    assert all(i.size == 1 for i in ids) and len({int(i[0]) for i in ids}) == len(thing_masks)
    assert len([o for o in objs.instances if not o.is_stuff]) == len(thing_masks)
    assert len([o for o in objs.instances if o.is_stuff]) == int((r.labels == 3).any())
    # two query masks of one class that touch in the image stay two instances (geometric grouping could join them)
    sg = r.segments
    pairs = set()
    for a, b in ((sg[:, :-1], sg[:, 1:]), (sg[:-1], sg[1:])):
        edge = a != b
        pairs |= {(int(x), int(y)) for x, y in zip(a[edge], b[edge])}
    seg_cls = {int(s): int(r.labels[sg == s][0]) for s in np.unique(sg)}
    touching = [(x, y) for x, y in pairs if seg_cls[x] == seg_cls[y] and seg_cls[x] in (1, 2)]
    assert touching, "no two touching query masks of one thing class in this frame: the check cannot fail"
    for x, y in touching:
        assert inst[sg == x][0] != inst[sg == y][0]
