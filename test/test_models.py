"""RGB+X MaskFormer: shapes, fusion modes' gradients, X init from RGB, classification, export/load."""
from __future__ import annotations

import pytest
import torch

from movseg_core.models import (
    MODEL_CONFIGS,
    Fusion,
    create_model,
    export_checkpoint,
    load_checkpoint,
    semantic_inference,
)

H, W = 64, 96


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, H, W, generator=g), torch.rand(2, 3, H, W, generator=g), torch.randn(5, 64, generator=g)


@pytest.mark.parametrize("mode", ["sum", "average", "attention"])
def test_fusion_modes_shapes_and_gradients(mode, inputs):
    torch.manual_seed(0)
    model = create_model("movseg-tiny", fusion=mode)
    rgb, x, text = inputs
    out = model(rgb, x, text)
    cfg = model.cfg
    s = model.output_stride
    assert out["pred_masks"].shape == (2, cfg.num_queries, H // s, W // s)
    assert out["pred_logits"].shape == (2, cfg.num_queries, 6)
    assert out["pred_embeddings"].shape == (2, cfg.num_queries, cfg.embed_dim)
    assert torch.allclose(out["pred_embeddings"].norm(dim=-1), torch.ones(2, cfg.num_queries), atol=1e-5)
    assert len(out["aux_outputs"]) == cfg.dec_layers - 1
    (out["pred_masks"].mean() + out["pred_logits"].mean()).backward()
    for name in ("rgb_backbone", "x_backbone", "pixel_decoder", "decoder"):
        grads = [p.grad for p in getattr(model, name).parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reaches {name}"
    if mode == "attention":
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fusion.parameters())


def test_fusion_arithmetic():
    a, b = [torch.ones(1, 4, 2, 2)], [torch.full((1, 4, 2, 2), 3.0)]
    assert torch.equal(Fusion([4], "sum")(a, b)[0], torch.full((1, 4, 2, 2), 4.0))
    assert torch.equal(Fusion([4], "average")(a, b)[0], torch.full((1, 4, 2, 2), 2.0))
    att = Fusion([4], "attention")
    for m in (att.att_rgb[0], att.att_x[0]):  # zero weights/bias: sigmoid(0) = 0.5 per channel
        torch.nn.init.zeros_(m.fc.weight)
        torch.nn.init.zeros_(m.fc.bias)
    assert torch.allclose(att(a, b)[0], torch.full((1, 4, 2, 2), 2.0))
    with pytest.raises(ValueError):
        Fusion([4], "concat")
    with pytest.raises(ValueError):
        Fusion([4], "sum")(a, [torch.ones(1, 4, 3, 3)])


def test_x_backbone_is_initialised_from_rgb_weights():
    model = create_model("movseg-tiny")
    rgb_sd, x_sd = model.rgb_backbone.state_dict(), model.x_backbone.state_dict()
    assert rgb_sd.keys() == x_sd.keys()
    assert all(torch.equal(rgb_sd[k], x_sd[k]) for k in rgb_sd)
    assert all(p1.data_ptr() != p2.data_ptr()
               for p1, p2 in zip(model.rgb_backbone.parameters(), model.x_backbone.parameters()))


def test_rgb_only_model_and_input_errors(inputs):
    rgb, x, text = inputs
    m = create_model("movseg-tiny", x_modality="none", deep_supervision=False)
    assert m.x_backbone is None
    out = m(rgb)
    assert "pred_logits" not in out and "aux_outputs" not in out
    fused = create_model("movseg-tiny")
    with pytest.raises(ValueError, match="pass x"):
        fused(rgb)
    with pytest.raises(ValueError, match="class embeddings"):
        fused(rgb, x, torch.randn(5, 7))
    with pytest.raises(ValueError, match="unknown model config"):
        create_model("nope")
    with pytest.raises(ValueError, match="fusion"):
        create_model("movseg-tiny", fusion="concat")


def test_semantic_inference_by_hand():
    logits = torch.tensor([[5.0, -5.0, -5.0], [-5.0, 5.0, -5.0]])  # q0 -> class 0, q1 -> class 1
    masks = torch.tensor([[[9.0, -9.0]], [[-9.0, 9.0]]])  # q0 left pixel, q1 right pixel
    sem = semantic_inference(logits, masks)
    assert sem.shape == (2, 1, 2)
    assert sem.argmax(0).tolist() == [[0, 1]]


def test_export_and_load_roundtrip(tmp_path, inputs):
    rgb, x, text = inputs
    model = create_model("movseg-tiny").eval()
    path = export_checkpoint(model, tmp_path / "m.pt", ["a", "b"], clip={"model_name": "movseg-tiny-vit"})
    loaded, meta = load_checkpoint(path)
    assert meta["class_names"] == ["a", "b"] and meta["model_config"]["backbone"] == model.cfg.backbone
    with torch.no_grad():
        a, b = model(rgb, x, text), loaded(rgb, x, text)
    assert torch.allclose(a["pred_masks"], b["pred_masks"]) and torch.allclose(a["pred_logits"], b["pred_logits"])
    (tmp_path / "bad.pt").write_bytes(b"")
    torch.save({"x": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not a"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_full_size_preset_matches_the_paper_shapes():
    cfg = MODEL_CONFIGS["movseg-r50"]
    assert (cfg.backbone, cfg.num_queries, cfg.dec_layers, cfg.embed_dim) == ("resnet50", 100, 6, 512)
