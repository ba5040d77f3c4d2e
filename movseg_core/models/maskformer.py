"""RGB+X MaskFormer proposal generator (MOVSeg stage 1).

RGB backbone (timm) and an X backbone (depth / normals image, initialised from the RGB weights)
-> fusion at the end of encoding (sum / average / ACM attention) -> FPN pixel decoder ->
transformer decoder with N queries -> per query a class-agnostic mask and a proposal embedding in
CLIP's joint space, scored against CLIP text embeddings (plus a learned "no object" embedding).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.modality import X_MODALITIES
from .backbone import TimmBackbone, x_backbone_from_rgb
from .fusion import FUSION_MODES, Fusion
from .pixel_decoder import FPNPixelDecoder
from .transformer_decoder import MLP, QueryDecoder

#: ``x_modality`` values: no X branch, or one of the geometry X modalities.
MODEL_X_MODALITIES = ("none",) + X_MODALITIES
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MaskFormerConfig:
    """Architecture of the proposal generator.

    backbone: timm model name; pretrained: load timm weights for it (X copies them).
    out_indices: timm feature levels fed to the pixel decoder (None = all).
    x_modality: ``none`` (RGB only), ``normals``, ``depth`` or ``hha`` (3-channel X images in [0, 1]).
    fusion: one of ``sum``, ``average``, ``attention``. hidden_dim: decoder width; mask_dim: mask
    embedding width; num_queries N; dec_layers; heads; ffn_dim; dropout.
    embed_dim: CLIP joint-space width the proposal embeddings live in (512 for ViT-B/16).
    deep_supervision: also return every decoder layer's predictions (auxiliary losses).
    freeze_bn: frozen BatchNorm in the backbones. logit_scale_init: initial log temperature.
    """

    backbone: str = "resnet50"
    pretrained: bool = False
    out_indices: tuple[int, ...] | None = (1, 2, 3, 4)
    x_modality: str = "normals"
    fusion: str = "attention"
    hidden_dim: int = 256
    mask_dim: int = 256
    num_queries: int = 100
    dec_layers: int = 6
    heads: int = 8
    ffn_dim: int = 2048
    dropout: float = 0.0
    embed_dim: int = 512
    deep_supervision: bool = True
    freeze_bn: bool = True
    logit_scale_init: float = 2.6592  # log(1/0.07), CLIP's initial temperature

    def __post_init__(self) -> None:
        if self.x_modality not in MODEL_X_MODALITIES:
            raise ValueError(f"x_modality {self.x_modality!r} not in {MODEL_X_MODALITIES}")
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion {self.fusion!r} not in {FUSION_MODES}")
        if self.num_queries <= 0 or self.dec_layers <= 0 or self.hidden_dim % self.heads:
            raise ValueError("num_queries and dec_layers must be > 0 and hidden_dim divisible by heads")
        if self.out_indices is not None:
            self.out_indices = tuple(int(i) for i in self.out_indices)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MaskFormerConfig":
        """Dict -> config; unknown keys and wrong types -> ValueError (:func:`movseg_core.config.build_config`)."""
        from ..config import build_config

        return build_config(cls, d, where="model")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the config (tuples as lists), as stored in checkpoints."""
        d = asdict(self)
        if d["out_indices"] is not None:
            d["out_indices"] = list(d["out_indices"])
        return d


#: Named presets (open_clip/timm-style registry); ``create_model(name, **overrides)``.
MODEL_CONFIGS: dict[str, MaskFormerConfig] = {
    # the paper-size model: ResNet-50 backbones, 100 queries, 6 layers, ViT-B/16 CLIP space
    "movseg-r50": MaskFormerConfig(),
    "movseg-swin-t": MaskFormerConfig(backbone="swin_tiny_patch4_window7_224", out_indices=(0, 1, 2, 3)),
    # tiny random models for tests and CPU smoke training (LayerNorm backbone, no BN)
    "movseg-tiny": MaskFormerConfig(
        backbone="test_convnext3", out_indices=(0, 1, 2, 3), hidden_dim=64, mask_dim=64,
        num_queries=16, dec_layers=2, heads=4, ffn_dim=128, embed_dim=64,
    ),
}


class RGBXMaskFormer(nn.Module):
    """See module docstring. Inputs are float images in [0, 1] (normalised inside)."""

    def __init__(self, cfg: MaskFormerConfig):
        super().__init__()
        self.cfg = cfg
        self.rgb_backbone = TimmBackbone(cfg.backbone, cfg.pretrained, cfg.out_indices, cfg.freeze_bn)
        chans = self.rgb_backbone.channels
        if cfg.x_modality != "none":
            self.x_backbone = x_backbone_from_rgb(self.rgb_backbone)
            self.fusion = Fusion(chans, cfg.fusion)
        else:
            self.x_backbone = None
            self.fusion = None
        self.pixel_decoder = FPNPixelDecoder(chans, cfg.hidden_dim, cfg.mask_dim)
        self.decoder = QueryDecoder(cfg.hidden_dim, cfg.num_queries, cfg.dec_layers, cfg.heads, cfg.ffn_dim,
                                    cfg.dropout)
        self.mask_embed = MLP(cfg.hidden_dim, cfg.hidden_dim, cfg.mask_dim, 3)
        self.proposal_embed = nn.Linear(cfg.hidden_dim, cfg.embed_dim)
        self.void_embedding = nn.Parameter(torch.randn(cfg.embed_dim) * cfg.embed_dim ** -0.5)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.logit_scale_init)))
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def uses_x(self) -> bool:
        """Whether the model has an X-modality encoder (``x_modality != 'none'``)."""
        return self.x_backbone is not None

    @property
    def output_stride(self) -> int:
        """Stride (input pixels per mask pixel) of the predicted masks: the finest backbone level's."""
        return int(self.rgb_backbone.strides[0])

    def _norm(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.pixel_mean) / self.pixel_std

    def _heads(self, q: torch.Tensor, mask_features: torch.Tensor,
               text: torch.Tensor | None) -> dict[str, torch.Tensor]:
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(q), mask_features)
        emb = F.normalize(self.proposal_embed(q), dim=-1)
        out = {"pred_masks": masks, "pred_embeddings": emb}
        if text is not None:
            out["pred_logits"] = self.classify(emb, text)
        return out

    def classify(self, emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Proposal embeddings ``B x N x E`` vs class text embeddings ``C x E`` -> logits ``B x N x (C+1)``
        (last column = no object)."""
        if text.ndim != 2 or text.shape[1] != emb.shape[-1]:
            raise ValueError(f"class embeddings must be C x {emb.shape[-1]}, got {tuple(text.shape)}")
        cls = torch.cat([F.normalize(text.to(emb.dtype), dim=-1),
                         F.normalize(self.void_embedding, dim=0)[None].to(emb.dtype)])
        return self.logit_scale.clamp(max=4.6052).exp() * emb @ cls.t()

    def forward(self, rgb: torch.Tensor, x: torch.Tensor | None = None,
                class_embeddings: torch.Tensor | None = None) -> dict[str, Any]:
        """rgb ``B x 3 x H x W`` in [0, 1]; x ``B x 3 x H x W`` in [0, 1] (required iff the model uses X);
        class_embeddings ``C x E`` (CLIP text embeddings) or None.

        Returns ``pred_masks`` ``B x N x H/s x W/s`` logits (s = output_stride), ``pred_embeddings``
        ``B x N x E`` (unit), ``pred_logits`` ``B x N x (C+1)`` when class embeddings are given, and
        ``aux_outputs`` (earlier layers, same keys) when deep supervision is on.
        """
        if rgb.ndim != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must be B x 3 x H x W, got {tuple(rgb.shape)}")
        feats = self.rgb_backbone(self._norm(rgb))
        if self.uses_x:
            if x is None:
                raise ValueError(f"this model fuses an X modality ({self.cfg.x_modality}); pass x")
            if x.shape != rgb.shape:
                raise ValueError(f"x must have the rgb's shape {tuple(rgb.shape)}, got {tuple(x.shape)}")
            feats = self.fusion(feats, self.x_backbone(self._norm(x)))
        mask_features, memory = self.pixel_decoder(feats)
        qs = self.decoder(memory)
        out: dict[str, Any] = self._heads(qs[-1], mask_features, class_embeddings)
        if self.cfg.deep_supervision:
            out["aux_outputs"] = [self._heads(q, mask_features, class_embeddings) for q in qs[:-1]]
        return out


def create_model(cfg: str | dict | MaskFormerConfig = "movseg-r50", **overrides: Any) -> RGBXMaskFormer:
    """Build a proposal generator from a preset name, a dict or a :class:`MaskFormerConfig`."""
    if isinstance(cfg, str):
        if cfg not in MODEL_CONFIGS:
            raise ValueError(f"unknown model config {cfg!r}; known: {sorted(MODEL_CONFIGS)}")
        cfg = MODEL_CONFIGS[cfg]
    elif isinstance(cfg, dict):
        from ..config import build_config

        d = dict(cfg)
        base = d.pop("preset", None)
        if base is not None and base not in MODEL_CONFIGS:
            raise ValueError(f"unknown model preset {base!r}; known: {sorted(MODEL_CONFIGS)}")
        cfg = build_config(MaskFormerConfig, MODEL_CONFIGS[base] if base else None, d, where="model")
    if overrides:
        cfg = replace(cfg, **overrides)
    return RGBXMaskFormer(cfg)


@torch.no_grad()
def semantic_inference(pred_logits: torch.Tensor, pred_masks: torch.Tensor) -> torch.Tensor:
    """MaskFormer semantic inference: ``sum_q softmax(cls)[:, :C] * sigmoid(mask)`` -> ``... x C x h x w``.

    pred_logits ``[B x] N x (C+1)``; pred_masks ``[B x] N x h x w``. Argmax over C gives labels.
    """
    prob = pred_logits.float().softmax(-1)[..., :-1]
    return torch.einsum("...qc,...qhw->...chw", prob, pred_masks.float().sigmoid())
