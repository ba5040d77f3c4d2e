"""MOVSeg Eq. 1 terms against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from movseg_core.training.criterion import SetCriterion, dice_loss, sigmoid_focal_loss


def test_focal_loss_single_pixels_by_hand():
    # logit 0 -> p = 0.5, BCE = ln 2. Positive: alpha 0.25 * (1-0.5)^2 * ln2; negative: 0.75 * 0.5^2 * ln2
    pos = sigmoid_focal_loss(torch.tensor([[0.0]]), torch.tensor([[1.0]]))
    neg = sigmoid_focal_loss(torch.tensor([[0.0]]), torch.tensor([[0.0]]))
    assert pos.item() == pytest.approx(0.25 * 0.25 * math.log(2), rel=1e-6)
    assert neg.item() == pytest.approx(0.75 * 0.25 * math.log(2), rel=1e-6)
    # two pixels (logit 2 positive, logit -1 negative), mean over pixels
    x = torch.tensor([[2.0, -1.0]])
    t = torch.tensor([[1.0, 0.0]])
    p1, p2 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    want = (0.25 * (1 - p1) ** 2 * -math.log(p1) + 0.75 * p2 ** 2 * -math.log(1 - p2)) / 2
    assert sigmoid_focal_loss(x, t).item() == pytest.approx(want, rel=1e-6)


def test_dice_loss_by_hand():
    x = torch.tensor([[30.0, 30.0, 30.0, 30.0]])  # p = 1 everywhere
    t = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert dice_loss(x, t).item() == pytest.approx(1 - (2 * 2 + 1) / (4 + 2 + 1), abs=1e-6)
    x0 = torch.zeros(1, 4)  # p = 0.5
    assert dice_loss(x0, t).item() == pytest.approx(1 - (2 * 1.0 + 1) / (2 + 2 + 1), abs=1e-6)


def _one_image_case():
    # 2 queries, 2 classes (+ no object), 1 target of class 1 covering pixels 0,1 of a 1x4 image
    logits = torch.tensor([[[0.5, 2.0, -1.0], [0.0, 0.0, 1.0]]])
    masks = torch.tensor([[[[3.0, 1.0, -2.0, -4.0]], [[-5.0, -5.0, -5.0, -5.0]]]])
    tgt = [{"labels": torch.tensor([1]), "masks": torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])}]
    return {"pred_logits": logits, "pred_masks": masks}, tgt


def _ce(row, k):
    return -(row[k] - math.log(sum(math.exp(v) for v in row)))


def test_each_term_and_the_weighted_total_by_hand():
    out, tgt = _one_image_case()
    crit = SetCriterion(eos_coef=0.1)
    terms = crit(out, tgt)
    # query 0 matches the target (it covers it and scores class 1); query 1 -> no object (index 2)
    ce = (1.0 * _ce([0.5, 2.0, -1.0], 1) + 0.1 * _ce([0.0, 0.0, 1.0], 2)) / (1.0 + 0.1)
    xs, ts = [3.0, 1.0, -2.0, -4.0], [1, 1, 0, 0]
    focal = 0.0
    for x, t in zip(xs, ts):
        p = 1 / (1 + math.exp(-x))
        focal += (0.25 * (1 - p) ** 2 * -math.log(p)) if t else (0.75 * p ** 2 * -math.log(1 - p))
    focal /= 4
    ps = [1 / (1 + math.exp(-x)) for x in xs]
    dice = 1 - (2 * (ps[0] + ps[1]) + 1) / (sum(ps) + 2 + 1)
    assert terms["loss_ce"].item() == pytest.approx(ce, rel=1e-5)
    assert terms["loss_mask"].item() == pytest.approx(focal, rel=1e-5)
    assert terms["loss_dice"].item() == pytest.approx(dice, rel=1e-5)
    assert crit.total(terms).item() == pytest.approx(ce + 20 * focal + dice, rel=1e-5)


def test_aux_outputs_are_weighted_like_the_final_layer_and_gradients_flow():
    out, tgt = _one_image_case()
    out["pred_masks"].requires_grad_(True)
    out["aux_outputs"] = [{"pred_logits": out["pred_logits"], "pred_masks": out["pred_masks"]}]
    crit = SetCriterion()
    terms = crit(out, tgt)
    assert set(terms) == {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"}
    base = crit.total({k: v for k, v in terms.items() if not k.endswith("_0")})
    total = crit.total(terms)
    assert total.item() == pytest.approx(2 * base.item(), rel=1e-6)
    total.backward()
    g = out["pred_masks"].grad
    assert g[0, 0].abs().sum() > 0 and g[0, 1].abs().sum() == 0  # only the matched query's mask is supervised


def test_no_targets_gives_only_no_object_classification():
    out, _ = _one_image_case()
    terms = SetCriterion()(out, [{"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 1, 4)}])
    want = (_ce([0.5, 2.0, -1.0], 2) + _ce([0.0, 0.0, 1.0], 2)) / 2
    assert terms["loss_ce"].item() == pytest.approx(want, rel=1e-5)
    assert terms["loss_mask"].item() == 0.0 and terms["loss_dice"].item() == 0.0
