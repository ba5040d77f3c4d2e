"""RGB + X feature fusion at the end of encoding: sum, average, or attention (ACNet's ACM).

All modules map two lists of same-shaped features ``B x C_i x h_i x w_i`` to one list.
"""
from __future__ import annotations

import torch
from torch import nn

FUSION_MODES = ("sum", "average", "attention")


class ChannelAttention(nn.Module):
    """ACNet attention complementary module for one modality: ``f * sigmoid(conv1x1(avgpool(f)))``."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """Features ``B x C x h x w`` -> the same, reweighted per channel."""
        return f * torch.sigmoid(self.fc(f.mean(dim=(2, 3), keepdim=True)))


class Fusion(nn.Module):
    """Fuse RGB and X features level by level.

    mode: ``sum`` (f_rgb + f_x), ``average`` ((f_rgb + f_x) / 2), ``attention`` (ACM(f_rgb) + ACM(f_x),
    a separate channel attention per modality and level, as in ACNet).
    """

    def __init__(self, channels: list[int], mode: str = "attention"):
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"fusion mode {mode!r} not in {FUSION_MODES}")
        self.mode = mode
        if mode == "attention":
            self.att_rgb = nn.ModuleList(ChannelAttention(c) for c in channels)
            self.att_x = nn.ModuleList(ChannelAttention(c) for c in channels)

    def forward(self, rgb: list[torch.Tensor], x: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-level RGB and X features (``B x C_l x h_l x w_l``, same shapes) -> fused features per level."""
        if len(rgb) != len(x):
            raise ValueError(f"fusion needs as many X levels as RGB levels ({len(x)} vs {len(rgb)})")
        out = []
        for i, (a, b) in enumerate(zip(rgb, x)):
            if a.shape != b.shape:
                raise ValueError(f"fusion level {i}: RGB {tuple(a.shape)} vs X {tuple(b.shape)}")
            if self.mode == "sum":
                out.append(a + b)
            elif self.mode == "average":
                out.append((a + b) * 0.5)
            else:
                out.append(self.att_rgb[i](a) + self.att_x[i](b))
        return out
