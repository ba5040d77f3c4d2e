"""FPN pixel decoder (MaskFormer's base pixel decoder): multi-scale features -> per-pixel mask features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _gn(channels: int) -> nn.GroupNorm:
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def conv_gn_relu(cin: int, cout: int, k: int = 3) -> nn.Sequential:
    """``k x k`` conv (no bias, same padding) + GroupNorm + ReLU, ``cin`` -> ``cout`` channels."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), _gn(cout), nn.ReLU(inplace=True))


class FPNPixelDecoder(nn.Module):
    """Top-down FPN with GroupNorm.

    Input: features ordered fine -> coarse, channels ``in_channels``. Output: ``mask_features``
    ``B x mask_dim x h0 x w0`` at the finest level's resolution, and the coarsest level projected to
    ``conv_dim`` (the transformer decoder's memory) ``B x conv_dim x hL x wL``.
    """

    def __init__(self, in_channels: list[int], conv_dim: int = 256, mask_dim: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(conv_gn_relu(c, conv_dim, 1) for c in in_channels[:-1])
        self.output = nn.ModuleList(conv_gn_relu(conv_dim, conv_dim, 3) for _ in in_channels[:-1])
        self.top = conv_gn_relu(in_channels[-1], conv_dim, 3)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 3, padding=1)
        self.memory_proj = nn.Identity()

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Features fine -> coarse -> (mask features ``B x mask_dim x h0 x w0``, memory ``B x conv_dim x hL x wL``)."""
        y = self.top(feats[-1])
        memory = y
        for f, lat, out in zip(feats[-2::-1], self.lateral[::-1], self.output[::-1]):
            y = lat(f) + F.interpolate(y, size=f.shape[-2:], mode="nearest")
            y = out(y)
        return self.mask_features(y), memory
