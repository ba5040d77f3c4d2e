"""`movseg eval`: replay through the real node over DDS vs offline, on the shared NYUv2 frames.

The model is a tiny random open_clip saved as a local checkpoint file (the real loading path),
so the node process and the offline run load the very same weights.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir
from movseg_ros import bag as B
from movseg_ros.cli import main as eval_main

from conftest import PYTHON, REPO

#: depth beyond this is invalid in the node-YAML test: cuts the far part of the NYUv2 scenes (1-5 m)
DEPTH_MAX_M = 2.5
#: tiny and fast segmenter settings for the offline runs (--set)
SETTINGS = {"segmenter.clip.model_name": "movseg-tiny-vit", "segmenter.clip.device": "cpu",
            "segmenter.dense.short_side": 160}


@pytest.fixture(scope="module")
def nyu_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("evalbag") / "nyu.bag"
    B.write_bag(NYUv2Folder(default_nyuv2_dir(), require_depth=True), out, progress=False)
    return out


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from movseg_core.clip import ClipConfig, create_clip

    torch.manual_seed(0)
    clip = create_clip(ClipConfig(model_name="movseg-tiny-vit", pretrained="random", device="cpu"))
    path = tmp_path_factory.mktemp("ckpt") / "tiny_open_clip.bin"
    torch.save(clip.model.state_dict(), path)
    return path


def _metrics(d):
    return json.loads((d / "metrics.json").read_text())


def test_replay_through_node_equals_offline_with_the_node_yaml(nyu_bag, tiny_checkpoint, tmp_path, ros_processes):
    """One parameters file for `movseg run` and `movseg eval --offline`; its depth range (a node-level
    parameter, outside segmenter.*) changes the labels, and replay through the node still equals offline."""
    params = {"segmenter": {"clip": {"model_name": "movseg-tiny-vit", "device": "cpu",
                                     "pretrained": str(tiny_checkpoint)}, "dense": {"short_side": 160}},
              "depth": {"min_m": 0.0, "max_m": DEPTH_MAX_M},
              "publish": {"overlay": False, "confidence": False}}
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
    node = ros_processes([PYTHON, "-m", "movseg_ros.cli", "run", "--config", str(cfg)], "eval-node")
    replay = subprocess.run([PYTHON, "-m", "movseg_ros.cli", "eval", "--bag", str(nyu_bag), "--out",
                             str(tmp_path / "replay"), "--discovery-timeout", "60", "--first-timeout", "180"],
                            capture_output=True, text=True, timeout=400, cwd=REPO, env=os.environ.copy())
    assert replay.returncode == 0, replay.stdout + replay.stderr + node.output()
    assert "report: " in replay.stdout and "mIoU" in replay.stdout
    rc = eval_main(["eval", "--offline", str(nyu_bag), "--out", str(tmp_path / "offline"), "--config", str(cfg)])
    assert rc == 0
    # the same file without the depth range: other labels (the range is applied offline, as in the node)
    rc = eval_main(["eval", "--offline", str(nyu_bag), "--out", str(tmp_path / "no_range"), "--config", str(cfg),
                    "--set", "depth.max_m=0.0"])
    assert rc == 0
    r, o, n = _metrics(tmp_path / "replay"), _metrics(tmp_path / "offline"), _metrics(tmp_path / "no_range")
    assert r["frames_sent"] == r["frames_scored"] == o["frames_scored"] == 3
    assert r["frames"] == o["frames"] == ["0001", "0551", "1339"]
    assert r["confusion_matrix"] == o["confusion_matrix"]
    for key in ("miou", "per_class_iou", "pixel_acc", "fwiou", "boundary_f1"):
        assert r[key] == o[key], key
    assert n["confusion_matrix"] != o["confusion_matrix"], "depth.max_m did not change the offline labels"
    assert r["latency_ms"]["n"] == 3 and r["latency_ms"]["p50"] > 0
    for d in ("replay", "offline"):
        assert (tmp_path / d / "report.md").exists() and (tmp_path / d / "confusion_matrix.png").exists()
        assert f"0 - {DEPTH_MAX_M:g} m" in (tmp_path / d / "report.md").read_text()  # both state the node's range


def test_node_never_answers(nyu_bag, tmp_path, capsys):
    rc = eval_main(["eval", "--bag", str(nyu_bag), "--out", str(tmp_path / "out"), "--discovery-timeout", "2"])
    assert rc == 3
    assert "no movseg node found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kwargs, words", [(dict(drop=("depth",)), "no depth"),
                                           (dict(drop=("info",)), "no camera_info"),
                                           (dict(drop=("gt",)), "no ground-truth labels"),
                                           (dict(depth_enc="rgb8"), "encoding 'rgb8'"),
                                           (dict(label_shape=(2, 3)), "do not match")])
def test_bad_bags_exit_nonzero(tmp_path, capsys, kwargs, words):
    from test_bag import _bad_bag

    bad = _bad_bag(tmp_path / "bad.bag", **kwargs)
    for mode in (["--bag", str(bad), "--discovery-timeout", "1"], ["--offline", str(bad)]):
        rc = eval_main(["eval", *mode, "--out", str(tmp_path / "out"), "--param", "segmenter.clip.pretrained=random",
                        "--param", "segmenter.clip.model_name=movseg-tiny-vit"])
        assert rc == 2, mode
        assert words in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_offline_random_weights_says_numbers_are_meaningless(nyu_bag, tmp_path, capsys):
    rc = eval_main(["eval", "--offline", str(nyu_bag), "--out", str(tmp_path / "o"), "--limit", "1",
                    *[a for k, v in SETTINGS.items() for a in ("--param", f"{k}={v}")],
                    "--param", "segmenter.clip.pretrained=random"])
    assert rc == 0
    out = capsys.readouterr().err  # warnings go to stderr
    assert "RANDOM weights" in out and "meaningless" in out
    m = _metrics(tmp_path / "o")
    assert m["frames_scored"] == 1 and m["warnings"]
    assert "meaningless" in (tmp_path / "o" / "report.md").read_text()
