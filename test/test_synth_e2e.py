"""Real labels end to end with the trained synthetic CLIP (test/fixtures/synth_clip.pt):

- the node over DDS (started with `movseg run --config`) labels a rendered scene's cube "cube";
- `movseg eval` replays a bag of held-out scenes into that node and scores real IoUs, equal to
  the offline evaluation with the same parameters file.
"""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
import yaml

from movseg_core.data.frame import RGBDFrame
from movseg_core.data.synthetic import CLASS_IDS, CLASS_NAMES
from movseg_core.eval.synthetic import scene_with, synth_segmenter_config
from movseg_ros import bag as B
from movseg_ros.cli import main as eval_main

from conftest import PYTHON, REPO
from node_client import camera_frame, params_file, serve_node

FIXTURE = REPO / "test" / "fixtures" / "synth_clip.pt"
SHAPES_IN_BAG = ("cube", "sphere", "cylinder", "torus")


@pytest.fixture(scope="module")
def scenes():
    return {shape: scene_with(shape, min_pixels=400) for shape in SHAPES_IN_BAG}


@pytest.fixture(scope="module")
def synth_params(tmp_path_factory):
    return params_file(tmp_path_factory.mktemp("synth") / "params.yaml", queries=list(CLASS_NAMES), log_period_s=1.0,
                       publish={"overlay": False, "confidence": False, "pointcloud": False},
                       segmenter=synth_segmenter_config(str(FIXTURE)))


@pytest.fixture(scope="module")
def synth_node(synth_params):
    with serve_node(synth_params, "synth-node", warm_up=False) as served:
        yield served


def test_node_labels_the_cube_cube_over_dds(synth_node, scenes):
    proc, c = synth_node
    s = scenes["cube"]
    k = c.key(c.camera.publish(camera_frame(s, "cube")))
    assert c.wait(lambda: k in c.labels and k in c.infos, 120), proc.output()[-3000:]
    labels, info = c.labels[k], c.infos[k]
    assert list(info.names) == list(CLASS_NAMES)
    cube = s.label == CLASS_IDS["cube"]
    votes = np.bincount(labels[cube], minlength=len(CLASS_NAMES) + 1)
    assert info.names[int(votes.argmax()) - 1] == "cube", dict(zip(("unknown", *info.names), votes.tolist()))
    assert votes[list(info.names).index("cube") + 1] >= 0.4 * cube.sum()
    floor = s.label == CLASS_IDS["floor"]
    assert (labels[floor] == list(info.names).index("floor") + 1).mean() >= 0.6


@pytest.fixture(scope="module")
def synth_bag(tmp_path_factory, scenes):
    out = tmp_path_factory.mktemp("synthbag") / "synth.bag"
    frames = [RGBDFrame(f"{i:04d}", s.rgb, s.depth, s.K, s.label.astype(np.uint8))
              for i, s in enumerate(scenes.values())]
    B.write_bag(frames, out, progress=False)
    prompts = out.parent / "prompts.yaml"
    prompts.write_text(yaml.safe_dump({"classes": list(CLASS_NAMES), "prompts": {n: n for n in CLASS_NAMES}},
                                      sort_keys=False))
    return out, prompts


def test_bag_replay_into_the_node_scores_real_labels_and_equals_offline(synth_node, synth_bag, synth_params, tmp_path):
    proc, _ = synth_node
    bag, prompts = synth_bag
    replay = subprocess.run([PYTHON, "-m", "movseg_ros.cli", "eval", "--bag", str(bag), "--prompts", str(prompts),
                             "--out", str(tmp_path / "replay"), "--discovery-timeout", "60", "--first-timeout", "120"],
                            capture_output=True, text=True, timeout=300, cwd=REPO, env=os.environ.copy())
    assert replay.returncode == 0, replay.stdout + replay.stderr + proc.output()[-3000:]
    assert eval_main(["eval", "--offline", str(bag), "--prompts", str(prompts), "--config", str(synth_params),
                      "--out", str(tmp_path / "offline")]) == 0
    r = json.loads((tmp_path / "replay" / "metrics.json").read_text())
    o = json.loads((tmp_path / "offline" / "metrics.json").read_text())
    assert r["frames_scored"] == o["frames_scored"] == len(SHAPES_IN_BAG)
    assert r["confusion_matrix"] == o["confusion_matrix"]
    iou = r["per_class_iou"]
    assert iou["floor"] >= 0.8 and iou["wall"] >= 0.6, iou
    # objects are found as objects (any shape query) -- which shape is weaker with dense features only
    cm = np.array(r["confusion_matrix"])
    obj = [CLASS_IDS[n] for n in CLASS_NAMES if n not in ("floor", "wall")]
    as_object = cm[np.ix_(obj, obj)].sum() / cm[obj].sum()
    assert as_object >= 0.6, (as_object, cm.tolist())
    assert iou["cube"] > 0.1, iou
    assert not r.get("warnings"), r.get("warnings")  # trained weights: no random-weights warning
