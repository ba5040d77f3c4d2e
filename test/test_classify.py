"""movseg_core.classify: pooling, scoring, unknown rejection, crops, ensembles (real tiny CLIP)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from movseg_core.classify import (
    ClassifyConfig,
    crop_embeddings,
    ensemble_decisions,
    expand_box,
    frozenseg_ensemble,
    fuse_embeddings,
    masked_crop,
    paint,
    pool_segments,
    score_segments,
    segment_boxes,
    segment_patch_weights,
)

from conftest import random_clip


@pytest.fixture(scope="module")
def clip():
    return random_clip(seed=0)


def test_patch_weights_are_area_fractions():
    seg = torch.zeros(4, 6, dtype=torch.int32)
    seg[:, 4:] = 1          # segment 1: the right third
    seg[0, 0] = 2           # segment 2: a single pixel
    w = segment_patch_weights(seg, 3, (2, 3))  # cells of 2x2 pixels
    assert w.shape == (3, 6)
    assert torch.allclose(w.sum(1), torch.ones(3))
    assert torch.allclose(w[1], torch.tensor([0, 0, 0.5, 0, 0, 0.5]))
    assert torch.allclose(w[2], torch.tensor([1.0, 0, 0, 0, 0, 0]))
    assert w[0, 0] == pytest.approx(3 / 15)


@pytest.mark.parametrize("shape,grid", [((480, 640), (28, 37)), ((37, 53), (5, 7)), ((9, 4), (9, 4))])
def test_patch_weights_compiled_equal_a_plain_count(shape, grid):
    """The CPU kernel against a plain computation: pixel (y, x) is in cell (y * gh // H, x * gw // W)."""
    rng = np.random.default_rng(sum(shape))
    n = 23
    seg = rng.integers(0, n - 1, size=shape).astype(np.int32)  # segment n-1 empty: its row stays 0
    h, w = shape
    gh, gw = grid
    cell = (np.arange(h)[:, None] * gh // h) * gw + (np.arange(w)[None, :] * gw // w)
    counts = np.zeros((n, gh * gw))
    np.add.at(counts, (seg.ravel(), cell.ravel()), 1.0)
    expected = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    got = segment_patch_weights(torch.from_numpy(seg), n, grid)
    assert got.dtype == torch.float32 and got.shape == (n, gh * gw)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6, atol=0)
    assert float(got[n - 1].sum()) == 0.0


def test_patch_weights_refuse_out_of_range_ids():
    seg = torch.zeros(4, 6, dtype=torch.int32)
    seg[2, 3] = 3
    with pytest.raises(ValueError, match="out of range"):
        segment_patch_weights(seg, 3, (2, 3))
    seg[2, 3] = -1
    with pytest.raises(ValueError, match="out of range"):
        segment_patch_weights(seg, 3, (2, 3))


def test_pool_segments_recovers_constant_regions():
    d = 8
    a, b = F.normalize(torch.randn(d), dim=0), F.normalize(torch.randn(d), dim=0)
    feats = torch.empty(d, 3, 4)
    feats[:, :, :2] = a[:, None, None]
    feats[:, :, 2:] = b[:, None, None]
    seg = torch.zeros(30, 40, dtype=torch.int32)
    seg[:, 20:] = 1
    pooled = pool_segments(feats, seg, 2)
    assert torch.allclose(pooled[0], a, atol=1e-6) and torch.allclose(pooled[1], b, atol=1e-6)


def test_score_labels_follow_text_order_and_unknown_rejection():
    text = torch.eye(3, 4)
    emb = torch.tensor([[0, 1.0, 0, 0], [0, 0, 0.9, 0.1], [0, 0, 0, 1.0], [0.5, 0.5, 0, 0]])
    emb = F.normalize(emb, dim=-1)
    labels, conf, probs = score_segments(emb, text, None, 100.0)
    assert labels[0] == 2 and labels[1] == 3  # ids are 1-based in text order
    assert conf[2] == pytest.approx(1 / 3, abs=1e-5)  # orthogonal to every query: uniform
    assert probs.shape == (4, 3) and torch.allclose(probs.sum(1), torch.ones(4))
    # a background prompt that wins -> 0
    bg = torch.tensor([[0, 0, 0, 1.0]])
    labels_bg, _, _ = score_segments(emb, text, bg, 100.0)
    assert labels_bg[2] == 0 and labels_bg[0] == 2
    # a threshold rejects the ambiguous segment (half chair, half table) but not clear ones
    labels_t, conf_t, _ = score_segments(emb, text, None, 100.0, threshold=0.9)
    assert labels_t[3] == 0 and conf_t[3] < 0.9 and labels_t[0] == 2


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_paint(dtype):
    seg = torch.tensor([[0, 1], [2, 1]], dtype=dtype)
    labels, conf = paint(seg, torch.tensor([3, 0, 1]), torch.tensor([0.9, 0.2, 0.5]))
    assert labels.dtype == np.uint16 and conf.dtype == np.float32
    assert labels.tolist() == [[3, 0], [1, 0]]
    assert np.allclose(conf, [[0.9, 0.2], [0.5, 0.2]])


def test_paint_large_ids_and_out_of_range():
    seg = torch.from_numpy(np.arange(600, dtype=np.int32).reshape(20, 30))
    labels, conf = paint(seg, torch.arange(600) * 100, torch.linspace(0, 1, 600, dtype=torch.float64))
    assert labels.dtype == np.uint16 and labels[19, 29] == 59900 and labels[0, 1] == 100
    assert conf.dtype == np.float32 and conf[19, 29] == pytest.approx(1.0)
    with pytest.raises(IndexError):
        paint(seg, torch.zeros(10, dtype=torch.int64), torch.zeros(10))


def test_segment_boxes():
    seg = np.zeros((5, 7), np.int32)
    seg[1:3, 2:6] = 1
    boxes = segment_boxes(seg, 3)
    assert boxes[1].tolist() == [2, 1, 6, 3]
    assert boxes[0].tolist() == [0, 0, 7, 5]
    assert boxes[2].tolist() == [0, 0, 0, 0]  # empty segment


def test_masked_crop_geometry_bbox_plus_margin_stretched():
    # a 10 x 20 (h x w) segment in a 40 x 60 image; margin 0.1 -> 1 row / 2 columns more on each side
    assert expand_box((20, 10, 40, 20), 0.1, 40, 60) == (18, 9, 42, 21)
    assert expand_box((0, 0, 60, 40), 0.5, 40, 60) == (0, 0, 60, 40)  # clipped to the image
    assert expand_box((0, 0, 0, 0), 0.1, 40, 60) == (0, 0, 60, 40)  # empty segment: whole image
    img = torch.arange(3 * 40 * 60, dtype=torch.float32).view(3, 40, 60) / 1000.0
    mask = torch.zeros(40, 60, dtype=torch.bool)
    mask[10:20, 20:40] = True
    crop, m = masked_crop(img, mask, (18, 9, 42, 21), 24)  # 12 x 24 box -> 24 x 24: rows stretched 2x
    assert crop.shape == (3, 24, 24) and m.shape == (24, 24)
    # rows 9 and 20 and columns 18-19, 40-41 of the box are outside the mask: zero (the CLIP mean)
    assert torch.all(m[:2] == 0) and torch.all(m[-2:] == 0) and torch.all(m[:, :2] == 0) and torch.all(m[:, -2:] == 0)
    assert torch.all(m[2:-2, 2:-2] == 1)
    assert torch.all(crop[:, :, 0] == 0) and torch.all(crop[:, 0] == 0)
    # columns keep their scale (24 -> 24), rows are doubled: crop[:, 2r+1, c] ~ img[:, 9+r, 18+c] inside
    assert torch.allclose(crop[:, 2 * 5 + 1, 10], img[:, 14, 28], atol=0.02)
    assert torch.allclose(crop[:, 2 * 5 + 1, 10] - crop[:, 2 * 5 + 1, 9], img[:, 14, 28] - img[:, 14, 27], atol=1e-4)


def test_crop_embeddings_mask_out_the_rest(clip):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (64, 96, 3)).astype(np.uint8)
    seg = np.zeros((64, 96), np.int32)
    seg[:, 48:] = 1
    emb = crop_embeddings(clip, rgb, seg, 2, size=64, batch=1)
    assert emb.shape == (2, clip.embed_dim)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    # changing pixels outside segment 1's box does not change its embedding; inside does
    rgb2 = rgb.copy()
    rgb2[:, :40] = 0
    emb2 = crop_embeddings(clip, rgb2, seg, 2, size=64)
    assert torch.allclose(emb[1], emb2[1], atol=1e-5)
    assert not torch.allclose(emb[0], emb2[0], atol=1e-3)
    # a crop size other than the model's (pos-embed interpolated) works too
    assert crop_embeddings(clip, rgb, seg, 2, size=96).shape == (2, clip.embed_dim)


def test_fuse_embeddings_weights():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(fuse_embeddings([(a, 1.0), (b, 0.0)]), a)
    f = fuse_embeddings([(a, 0.75), (b, 0.25)])
    assert torch.allclose(f, F.normalize(torch.tensor([[3.0, 1.0]]), dim=-1))
    with pytest.raises(ValueError):
        fuse_embeddings([(a, 0.0)])


def test_frozenseg_ensemble():
    head = torch.tensor([[0.9, 0.1], [0.9, 0.1]])
    clipp = torch.tensor([[0.1, 0.9], [0.1, 0.9]])
    seen = torch.tensor([True, False])
    assert torch.allclose(frozenseg_ensemble(head, clipp, seen, 0.0, 0.0), head, atol=1e-6)
    assert torch.allclose(frozenseg_ensemble(head, clipp, seen, 1.0, 1.0), clipp, atol=1e-6)
    # unseen exponent > seen exponent: the unseen class leans on CLIP more than the seen one
    p = frozenseg_ensemble(head, clipp, seen, clip_exponent_seen=0.2, clip_exponent_unseen=0.8)
    assert torch.allclose(p.sum(1), torch.ones(2))
    ref = frozenseg_ensemble(head, clipp, seen, clip_exponent_seen=0.2, clip_exponent_unseen=0.2)
    assert p[0, 1] > ref[0, 1]
    with pytest.raises(ValueError, match="shape mismatch"):
        frozenseg_ensemble(head, clipp[:, :1], seen)


def test_ensemble_decisions_hand_computed():
    """Class 1 seen by the head (CLIP exponent 0.5), class 2 unseen (exponent 1.0):
    p1 = head1^0.5 clip1^0.5, p2 = head2^0 clip2^1, then renormalised."""
    p_head = torch.tensor([[0.6, 0.4], [0.9, 0.1], [0.9, 0.1], [0.95, 0.05]])
    p_clip = torch.tensor([[0.2, 0.8], [0.3, 0.7], [0.9, 0.1], [0.55, 0.45]])
    background_won = torch.tensor([False, False, True, False])
    seen = torch.tensor([True, False])
    labels, conf = ensemble_decisions(p_head, p_clip, background_won, seen, 0.5, 1.0)
    # row 0: (sqrt(.12), .8) -> .8 / 1.146410 = .697831; row 1: (sqrt(.27), .7) -> .7 / 1.219615 = .573951
    # row 2: (.9, .1) -> class 1 at .9 but a background prompt won; row 3: (sqrt(.5225), .45) -> .616304
    assert labels.tolist() == [2, 2, 0, 1]
    assert torch.allclose(conf, torch.tensor([0.697831, 0.573951, 0.9, 0.616304]), atol=1e-5)
    # the exponents are not interchangeable: swapped, row 0 becomes (.2, sqrt(.32)) -> .738796
    _, swapped = ensemble_decisions(p_head, p_clip, background_won, seen, 1.0, 0.5)
    assert swapped[0] == pytest.approx(0.738796, abs=1e-5)
    # the threshold applies to the ensemble's confidence (row 3: CLIP alone is only .55 sure)
    labels_t, _ = ensemble_decisions(p_head, p_clip, background_won, seen, 0.5, 1.0, threshold=0.6)
    assert labels_t.tolist() == [2, 0, 0, 1]


def test_classify_config_validation():
    ClassifyConfig()
    for bad in ({"threshold": 1.5}, {"x_fusion_weight": 2.0}, {"x_modality": "thermal"}, {"clip_exponent_seen": -0.1},
                {"dense_weight": 0.0, "crop_weight": 0.0}, {"crop_size": 4}):
        with pytest.raises(ValueError):
            ClassifyConfig(**bad)
