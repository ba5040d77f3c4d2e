"""CLIP-X adaptation and OVSeg mask prompt tuning on a tiny random CLIP and synthetic crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from movseg_core.classify import crop_embeddings, expand_box, masked_crop, segment_boxes
from movseg_core.clip import load_visual_weights
from movseg_core.data.synthetic import CLASS_NAMES, SceneConfig, generate
from movseg_core.training.clip_x import clip_x_loss, train_clip_x
from movseg_core.training.crops import CROP_MARGIN, crop_pairs
from movseg_core.training.data import x_image
from movseg_core.training.prompt_tuning import MaskPromptCLIP, tune_prompts

from conftest import random_clip


@pytest.fixture(scope="module")
def clip():
    return random_clip(seed=0)


@pytest.fixture(scope="module")
def crops(clip):
    recs = [generate(s, SceneConfig(height=64, width=80)) for s in range(4)]
    xs = [x_image("normals", r.depth, r.K) for r in recs]
    mean, std = clip.mean.flatten().tolist(), clip.std.flatten().tolist()
    return crop_pairs(recs, xs, clip.image_size[0], mean, std, min_pixels=30)


def test_training_crops_are_the_crops_inference_classifies(clip):
    """Mask prompt tuning / CLIP-X learn on the very crops the segmenter's crop member embeds."""
    rec = generate(7, SceneConfig(height=64, width=80))
    label = np.asarray(rec.label)
    mean, std = clip.mean.flatten().tolist(), clip.std.flatten().tolist()
    pairs = crop_pairs([rec], None, clip.image_size[0], mean, std, min_pixels=30)
    ids = pairs["label"].tolist()
    assert len(ids) >= 3
    inference = crop_embeddings(clip, rec.rgb, label.astype(np.int32), int(label.max()) + 1,
                                size=clip.image_size[0], margin=CROP_MARGIN)[ids]
    assert torch.allclose(clip.encode_images(pairs["rgb"]), inference, atol=1e-5)
    # and the crop itself: bbox + margin, masked, stretched (the geometry pinned in test_classify)
    c = ids[0]
    box = expand_box(segment_boxes(label.astype(np.int64), int(label.max()) + 1)[c], CROP_MARGIN, *label.shape)
    ref, ref_mask = masked_crop(clip.to_tensor(rec.rgb)[0], torch.from_numpy(label == c), box, clip.image_size[0])
    assert torch.allclose(pairs["rgb"][0], ref, atol=1e-6) and torch.equal(pairs["mask"][0], ref_mask)


def test_clip_x_loss_by_hand_and_decreasing_training(clip, crops, tmp_path):
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert clip_x_loss(a, b).item() == pytest.approx(0.5)
    rgb_before = {k: v.clone() for k, v in clip.model.visual.state_dict().items()}
    trainer, losses = train_clip_x(clip.model, crops, steps=25, batch_size=16, lr=3e-4, out=tmp_path / "clipx.pt",
                                   progress=False)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert all(torch.equal(rgb_before[k], v) for k, v in clip.model.visual.state_dict().items())  # CLIP frozen
    loaded = load_visual_weights(clip, tmp_path / "clipx.pt")  # the segmenter's CLIP-X loader
    trainer.x_visual.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(crops["x"][:4]), trainer.x_visual(crops["x"][:4]), atol=1e-5)


def test_mask_prompts_replace_only_masked_out_patches(clip, crops):
    mp = MaskPromptCLIP(clip.model)
    imgs = crops["rgb"][:3]
    full = torch.ones(3, *imgs.shape[-2:])
    with torch.no_grad():
        assert torch.allclose(mp(imgs, full), torch.nn.functional.normalize(clip.model.encode_image(imgs), dim=-1),
                              atol=1e-5)
        empty = torch.zeros_like(full)
        e1 = mp(imgs, empty)
        assert torch.allclose(e1[0], e1[1], atol=1e-5)  # every token is a prompt: the image no longer matters
        mp.prompt.add_(torch.randn(mp.prompt.shape, generator=torch.Generator().manual_seed(0)))
        assert not torch.allclose(mp(imgs, empty), e1)


def test_prompt_tuning_decreases_loss_with_clip_frozen(clip, crops, tmp_path):
    text = clip.text_embeddings(list(CLASS_NAMES))
    before = [p.clone() for p in clip.model.parameters()]
    model, losses = tune_prompts(clip.model, crops, text, steps=25, batch_size=16, lr=5e-2, progress=False,
                                 out=tmp_path / "prompts.pt")
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert all(torch.equal(a, b) for a, b in zip(before, clip.model.parameters()))
    other = MaskPromptCLIP(clip.model)
    other.load(tmp_path / "prompts.pt")
    assert torch.equal(other.prompt, model.prompt)


def test_stage2_cli_runs_clip_x_and_prompt_tuning(tmp_path, clip):
    import yaml

    from movseg_core.training.__main__ import main

    cfg = {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random"},
           "data": {"kind": "synthetic", "n_train": 3, "n_val": 1, "height": 48, "width": 64},
           "max_images": 3, "min_pixels": 20, "steps": 2, "batch_size": 4, "lr": 1e-4,
           "output": str(tmp_path / "clipx.pt")}
    (tmp_path / "s2.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train-clip-x", str(tmp_path / "s2.yaml")]) == 0
    load_visual_weights(clip, tmp_path / "clipx.pt")
    assert main(["tune-prompts", str(tmp_path / "s2.yaml"), "--set", f"output={tmp_path / 'p.pt'}"]) == 0
    MaskPromptCLIP(clip.model).load(tmp_path / "p.pt")
    assert main(["train-clip-x", str(tmp_path / "s2.yaml"), "--set", "x_modality=rgb"]) == 2
