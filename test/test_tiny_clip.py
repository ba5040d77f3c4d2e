"""Tiny synthetic CLIP training: corpus without held-out pairs, deterministic batches, resume == uninterrupted."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from movseg_core.clip import ClipConfig, create_clip
from movseg_core.data.captions import HELD_OUT_PAIRS, patch_targets, scene_caption, single_object_image
from movseg_core.training.tiny_clip import TinyClipTrainConfig, make_batch, render_corpus, train

SMALL = dict(n_scenes=6, steps=3, batch_objects=6, batch_scenes=3, warmup=1)


def test_training_corpus_never_shows_a_held_out_pair():
    corpus = render_corpus(TinyClipTrainConfig(n_scenes=40), progress=False)
    shown = {(o.colour, o.shape) for s in corpus for o in s.spec.objects}
    assert len(shown) > 20 and not shown & set(HELD_OUT_PAIRS)
    rng = np.random.default_rng(0)
    caps = " | ".join(scene_caption(s.spec.objects, s.spec, rng) for s in corpus)
    assert not any(re.search(rf"\b{c} {s}\b", caps) for c, s in HELD_OUT_PAIRS)  # "checkered sphere" is fine


def test_single_object_image_shows_the_asked_pair_and_rejects_unknown_names():
    img, obj = single_object_image(3, "cone", "green", size=48)
    assert img.shape == (48, 48, 3) and img.dtype == np.uint8 and (obj.shape, obj.colour) == ("cone", "green")
    with pytest.raises(ValueError, match="unknown shape"):
        single_object_image(0, "pyramid", "red")


def test_patch_targets_majority_and_ignore():
    inst = np.zeros((4, 4), np.int32)
    inst[:2, :2] = 7
    inst[2:, 2:] = np.array([[1, 2], [3, 4]])
    t = patch_targets(inst, 2)
    assert t.tolist() == [[7, 0], [0, -1]]
    with pytest.raises(ValueError, match="square"):
        patch_targets(np.zeros((4, 6), np.int32), 2)


def test_batches_are_deterministic_per_step_and_captions_match_their_images():
    cfg = TinyClipTrainConfig(**SMALL)
    corpus = render_corpus(cfg, progress=False)
    a, b, c = make_batch(corpus, cfg, 5, 6), make_batch(corpus, cfg, 5, 6), make_batch(corpus, cfg, 6, 6)
    assert torch.equal(a.images, b.images) and a.captions == b.captions and a.patch_phrases == b.patch_phrases
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (9, 3, 48, 48) and torch.all(a.match.diagonal() == 1)
    assert a.patch_match.shape == (3 * 36, len(a.patch_phrases)) and a.patch_match.sum() > 0


def test_resumed_training_equals_an_uninterrupted_run_and_loads_as_a_checkpoint(tmp_path):
    cfg = TinyClipTrainConfig(**SMALL)
    assert train(cfg, tmp_path / "a.pt", tmp_path / "wa", progress=False)
    assert not train(cfg, tmp_path / "b.pt", tmp_path / "wa", progress=False, stop_after=2)  # corpus cached
    assert not (tmp_path / "b.pt").exists() and (tmp_path / "wa" / "state_seed0.pt").exists()
    assert train(cfg, tmp_path / "b.pt", tmp_path / "wa", progress=False)
    a, b = torch.load(tmp_path / "a.pt"), torch.load(tmp_path / "b.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "b.json").read_text())
    assert meta["train"]["steps"] == 3 and meta["model_name"] == "movseg-synth-clip"
    clip = create_clip(ClipConfig(model_name="movseg-synth-clip", pretrained=str(tmp_path / "b.pt"), device="cpu"))
    assert clip.embed_dim == 64


def test_corpus_cache_is_keyed_by_everything_that_shapes_the_corpus(tmp_path):
    from dataclasses import replace

    from movseg_core.data.synthetic import SceneConfig
    from movseg_core.training.tiny_clip import corpus_cache_path

    base = TinyClipTrainConfig(n_scenes=3, scene=SceneConfig(height=48, width=64))
    other_held_out = replace(base, held_out=[("red", "cube")])
    other_scene = replace(base, scene=SceneConfig(height=48, width=64, n_objects=(1, 1)))
    paths = {corpus_cache_path(c, tmp_path) for c in (base, other_held_out, other_scene, replace(base, seed=1))}
    assert len(paths) == 4 and corpus_cache_path(base, tmp_path) == corpus_cache_path(replace(base), tmp_path)
    # even handed the same file, a corpus made for another config is not reused
    cache = tmp_path / "corpus.npz"
    first = render_corpus(base, cache, progress=False)
    assert [s.rgb.tolist() for s in render_corpus(base, cache, progress=False)] == [s.rgb.tolist() for s in first]
    for cfg in (other_held_out, other_scene):
        got = render_corpus(cfg, cache, progress=False)
        fresh = render_corpus(cfg, None, progress=False)
        assert all(np.array_equal(a.rgb, b.rgb) and np.array_equal(a.instance, b.instance) for a, b in zip(got, fresh))
        assert [(o.colour, o.shape) for s in got for o in s.spec.objects] == \
               [(o.colour, o.shape) for s in fresh for o in s.spec.objects]
    other = render_corpus(other_scene, None, progress=False)
    assert not any(np.array_equal(a.rgb, b.rgb) for a, b in zip(first, other))
