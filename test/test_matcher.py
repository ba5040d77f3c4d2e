"""Hungarian matcher on hand-made cases and against brute force."""
from __future__ import annotations

import itertools

import torch

from movseg_core.training.criterion import dice_loss, sigmoid_focal_loss
from movseg_core.training.matcher import HungarianMatcher, pairwise_dice, pairwise_sigmoid_focal

BIG = 12.0


def _match(logits, pred_masks, labels, tgt_masks) -> dict[int, int]:
    """query index -> target index of the matcher's assignment for one image."""
    (qi, ti), = HungarianMatcher()({"pred_logits": logits, "pred_masks": pred_masks[None]},
                                  [{"labels": torch.tensor(labels), "masks": tgt_masks}])
    return dict(zip(qi.tolist(), ti.tolist()))


def _masks_from_boxes(boxes, h=8, w=8):
    m = torch.zeros(len(boxes), h, w)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        m[i, y0:y1, x0:x1] = 1
    return m


def test_matches_queries_to_the_segments_they_cover():
    tgt = _masks_from_boxes([(0, 4, 0, 8), (4, 8, 0, 4)])  # top half, bottom-left quarter
    # query 0 predicts the quarter, query 1 garbage, query 2 the top half
    pred = (_masks_from_boxes([(4, 8, 0, 4), (0, 8, 6, 8), (0, 4, 0, 8)]) * 2 - 1) * BIG
    logits = torch.zeros(1, 3, 4)  # uniform class scores: masks decide
    assert _match(logits, pred, [0, 2], tgt) == {0: 1, 2: 0}


def test_class_cost_breaks_ties_between_identical_masks():
    tgt = _masks_from_boxes([(0, 8, 0, 4), (0, 8, 4, 8)])
    pred = (_masks_from_boxes([(0, 8, 0, 8), (0, 8, 0, 8)]) * 2 - 1) * BIG  # both queries cover everything
    logits = torch.tensor([[[0.0, 9.0, 0.0], [9.0, 0.0, 0.0]]])  # query 0 says class 1, query 1 says class 0
    assert _match(logits, pred, [0, 1], tgt) == {0: 1, 1: 0}


def test_empty_targets_and_lower_resolution_predictions():
    m = HungarianMatcher()
    out = {"pred_logits": torch.zeros(2, 3, 3), "pred_masks": torch.zeros(2, 3, 4, 4)}
    tgt_hi = _masks_from_boxes([(0, 8, 0, 4)])  # 8x8 target vs 4x4 predictions
    res = m(out, [{"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 8, 8)},
                  {"labels": torch.tensor([1]), "masks": tgt_hi}])
    assert len(res[0][0]) == 0 and len(res[1][0]) == 1


def test_assignment_is_optimal_against_brute_force():
    g = torch.Generator().manual_seed(0)
    n, k, c = 5, 3, 4
    logits = torch.randn(1, n, c + 1, generator=g)
    masks = torch.randn(1, n, 6, 6, generator=g) * 3
    tgt = (torch.rand(k, 6, 6, generator=g) > 0.5).float()
    labels = torch.tensor([0, 3, 1])
    m = HungarianMatcher()
    (qi, ti), = m({"pred_logits": logits, "pred_masks": masks}, [{"labels": labels, "masks": tgt}])
    pm, tm = masks[0].flatten(1), tgt.flatten(1)
    cost = (-logits[0].softmax(-1)[:, labels] + 20 * pairwise_sigmoid_focal(pm, tm) + pairwise_dice(pm, tm))
    best = min(sum(cost[q, t] for t, q in enumerate(perm)) for perm in itertools.permutations(range(n), k))
    got = sum(cost[q, t] for q, t in zip(qi.tolist(), ti.tolist()))
    assert abs(float(got) - float(best)) < 1e-5


def test_pairwise_costs_equal_per_pair_losses():
    g = torch.Generator().manual_seed(1)
    pm = torch.randn(4, 20, generator=g)
    tm = (torch.rand(3, 20, generator=g) > 0.5).float()
    pf, pd = pairwise_sigmoid_focal(pm, tm), pairwise_dice(pm, tm)
    for i in range(4):
        for j in range(3):
            assert torch.allclose(pf[i, j], sigmoid_focal_loss(pm[i:i + 1], tm[j:j + 1])[0], atol=1e-6)
            assert torch.allclose(pd[i, j], dice_loss(pm[i:i + 1], tm[j:j + 1])[0], atol=1e-6)
