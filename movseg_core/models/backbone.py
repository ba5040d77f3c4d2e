"""Multi-scale image encoders from timm, and the X-modality copy initialised from the RGB weights."""
from __future__ import annotations

import copy

import timm
import torch
from torch import nn


class TimmBackbone(nn.Module):
    """A timm model in ``features_only`` mode: ``B x 3 x H x W`` -> list of ``B x C_i x H/s_i x W/s_i``.

    name: any timm model (``resnet50``, ``swin_tiny_patch4_window7_224``, ``test_efficientnet_gn``).
    pretrained: load timm's pretrained weights (needs network or a local timm cache).
    out_indices: which feature levels to return (timm's indices).
    freeze_bn: convert BatchNorm to frozen (eval-statistics) BatchNorm, as detectron2 does; keeps
        training identical across DDP process counts and small batches.
    """

    def __init__(self, name: str, pretrained: bool = False, out_indices: tuple[int, ...] | None = None,
                 freeze_bn: bool = True, **kwargs):
        super().__init__()
        extra = {"out_indices": tuple(out_indices)} if out_indices is not None else {}
        try:
            self.body = timm.create_model(name, pretrained=pretrained, features_only=True, **extra, **kwargs)
        except RuntimeError as exc:
            raise ValueError(f"cannot create timm backbone {name!r} (pretrained={pretrained}): {exc}") from exc
        if freeze_bn:
            from timm.layers import freeze_batch_norm_2d

            self.body = freeze_batch_norm_2d(self.body)
        self.name = name
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Images ``B x C x H x W`` -> one NCHW feature map per level, fine to coarse (``channels``, ``strides``)."""
        feats = self.body(x)
        # some timm models (e.g. mambaout, swin) return NHWC; make everything NCHW
        out = []
        for f, c in zip(feats, self.channels):
            if f.ndim == 4 and f.shape[1] != c and f.shape[-1] == c:
                f = f.permute(0, 3, 1, 2)
            out.append(f.contiguous())
        return out


def x_backbone_from_rgb(rgb: TimmBackbone) -> TimmBackbone:
    """The X-modality encoder: same architecture, weights copied from the RGB encoder (MOVSeg init).

    X inputs are 3-channel images (normals as RGB, colourised depth or HHA), so the stem is
    reused unchanged.
    """
    return copy.deepcopy(rgb)
