"""Training engine: targets, evaluation helpers, resume reproduces the next steps, 2-process gloo DDP
gives the 1-process loss curve at the same global batch, CLI train/export."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from movseg_core.models import load_checkpoint
from movseg_core.training.config import TrainConfig, load_config
from movseg_core.training.data import semantic_target
from movseg_core.training.engine import train
from movseg_core.training.evaluate import oracle_labels, proposal_segments

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # random tiny CLIP warns loudly (by design)

TINY = {
    "model": {"preset": "movseg-tiny", "num_queries": 6, "dec_layers": 1, "hidden_dim": 32, "mask_dim": 32,
              "ffn_dim": 64, "heads": 2, "embed_dim": 64},
    "clip": {"model_name": "movseg-tiny-vit", "pretrained": "random"},
    "data": {"kind": "synthetic", "n_train": 8, "n_val": 2, "height": 64, "width": 64},
    "batch_size": 4, "lr": 1e-3, "backbone_lr_mult": 1.0, "progress": False, "eval_every": 0,
}


def _cfg(tmp: Path, **kw) -> TrainConfig:
    d = {**TINY, **kw, "out_dir": str(tmp)}
    return TrainConfig(**d)


def _csv_losses(path: Path) -> list[float]:
    with open(path / "metrics.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_semantic_target_and_oracle_helpers():
    lab = np.array([[0, 1, 1], [3, 3, 0]])
    t = semantic_target(lab, 3)
    assert t["labels"].tolist() == [0, 2]
    assert t["masks"].sum((1, 2)).tolist() == [2.0, 2.0]
    with pytest.raises(ValueError):
        semantic_target(np.array([[5]]), 3)
    seg = np.array([[0, 0, 1], [1, 1, 2]])
    gt = np.array([[2, 2, 0], [3, 3, 0]])
    assert oracle_labels(seg, gt).tolist() == [[2, 2, 3], [3, 3, 0]]
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])  # query 1 is "no object" -> dropped
    masks = torch.tensor([[[1.0, -1.0]], [[5.0, 5.0]]])
    assert proposal_segments(logits, masks).tolist() == [[0, 0]]


def test_resume_reproduces_the_same_next_steps(tmp_path):
    full = train(_cfg(tmp_path / "full", steps=4))
    assert len(full.losses) == 4 and all(np.isfinite(full.losses))
    half = train(_cfg(tmp_path / "split", steps=4), until=2)  # interrupted after step 2
    assert half.exported is None
    assert (tmp_path / "split" / "checkpoints" / "last.pt").is_file()
    resumed = train(_cfg(tmp_path / "split", steps=4))
    assert resumed.steps == [3, 4]
    np.testing.assert_allclose(half.losses + resumed.losses, full.losses, rtol=1e-6)
    assert _csv_losses(tmp_path / "split") == pytest.approx(_csv_losses(tmp_path / "full"), rel=1e-5)
    # the exported model loads and predicts
    model, meta = load_checkpoint(tmp_path / "split" / "model_final.pt")
    assert meta["meta"]["steps"] == 4 and len(meta["class_names"]) == 7
    out = model(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    assert out["pred_masks"].shape[1] == 6


def test_two_process_gloo_ddp_matches_one_process(tmp_path):
    steps = 3
    single = train(_cfg(tmp_path / "one", steps=steps))
    cfg = dict(TINY, steps=steps, out_dir=str(tmp_path / "two"))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "movseg_core.training", "train", str(tmp_path / "cfg.yaml")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    two = _csv_losses(tmp_path / "two")
    assert len(two) == steps
    np.testing.assert_allclose(two, single.losses, rtol=2e-4)
    assert (tmp_path / "two" / "model_final.pt").is_file()


def test_cli_export_and_config_errors(tmp_path):
    train(_cfg(tmp_path / "run", steps=1))
    from movseg_core.training.__main__ import main

    assert main(["export", str(tmp_path / "run"), str(tmp_path / "exp.pt")]) == 0
    model, meta = load_checkpoint(tmp_path / "exp.pt")
    assert meta["clip"]["model_name"] == "movseg-tiny-vit"
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "x.pt")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"stepz": 3}))
    with pytest.raises(ValueError, match="unknown key 'stepz' in training config"):
        load_config(bad)
    with pytest.raises(ValueError, match="data.kind"):
        TrainConfig(data={"kind": "imagenet"})
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(TINY))
    assert load_config(good, {"data.n_train": 12, "steps": 5}).data.n_train == 12


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "config" / "train").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_example_configs_are_valid(path):
    from dataclasses import replace

    from movseg_core.models import MODEL_CONFIGS

    if path.name.startswith("clip_x"):
        from movseg_core.training.stage2 import load_stage2_config

        assert load_stage2_config(path).steps > 0
        return
    cfg = load_config(path)
    m = dict(cfg.model)
    replace(MODEL_CONFIGS[m.pop("preset")], **m)  # validates every model key and value


def test_exported_run_is_a_drop_in_proposal_generator(tmp_path):
    from movseg_core.data.synthetic import SceneConfig, generate
    from movseg_core.models import TrainedProposer

    train(_cfg(tmp_path / "run", steps=1))
    p = TrainedProposer(tmp_path / "run" / "model_final.pt", input_short_side=64)
    assert p.meta["class_embeddings"].shape == (7, 64)
    s = generate(0, SceneConfig(height=60, width=80))
    pr = p.predict(s.rgb, s.depth, s.normals)
    seg = p.propose(s.rgb, s.depth, s.normals)
    assert seg.shape == (60, 80) and seg.dtype == np.int32 and np.array_equal(seg, pr.segments)
    assert seg.min() == 0 and seg.max() == len(pr.embeddings) - 1 and len(pr.objectness) == len(pr.embeddings)
    with pytest.raises(ValueError, match="normals"):
        p.propose(s.rgb, s.depth, None)
