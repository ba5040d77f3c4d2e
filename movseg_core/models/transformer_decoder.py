"""MaskFormer transformer decoder: N learned queries attend to image memory and give per-query
class-agnostic mask embeddings and proposal (CLIP-space) embeddings after every layer."""
from __future__ import annotations

import math

import torch
from torch import nn


def sine_position_encoding(h: int, w: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """DETR 2-D sine positional encoding ``(h*w) x dim`` (dim divisible by 4), normalised coords."""
    if dim % 4:
        raise ValueError(f"positional encoding dim {dim} must be divisible by 4")
    npf = dim // 2
    y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    t = 10000 ** (2 * (torch.arange(npf // 2, device=device, dtype=torch.float32)) / npf)
    py = y[:, None] / t
    px = x[:, None] / t
    py = torch.cat([py.sin(), py.cos()], dim=1)  # h x npf
    px = torch.cat([px.sin(), px.cos()], dim=1)  # w x npf
    pos = torch.cat([py[:, None, :].expand(h, w, npf), px[None, :, :].expand(h, w, npf)], dim=-1)
    return pos.reshape(h * w, dim).to(dtype)


class DecoderLayer(nn.Module):
    """Post-norm DETR decoder layer: self-attention, cross-attention to memory, FFN."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, dim))
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, qpos: torch.Tensor, mem: torch.Tensor, mpos: torch.Tensor) -> torch.Tensor:
        """Queries ``B x Q x C`` (+ pos ``qpos``), memory ``B x HW x C`` (+ pos ``mpos``) -> queries ``B x Q x C``."""
        a = q + qpos
        q = self.norm1(q + self.drop(self.self_attn(a, a, q, need_weights=False)[0]))
        q = self.norm2(q + self.drop(self.cross_attn(q + qpos, mem + mpos, mem, need_weights=False)[0]))
        return self.norm3(q + self.drop(self.ffn(q)))


class MLP(nn.Module):
    """``layers`` Linear layers ``din`` -> ``dhid`` ... -> ``dout`` with ReLU between them."""
    def __init__(self, din: int, dhid: int, dout: int, layers: int = 3):
        super().__init__()
        dims = [din] + [dhid] * (layers - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``... x din`` -> ``... x dout``."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class QueryDecoder(nn.Module):
    """Decode N queries. Returns per layer: query features ``B x N x dim`` (after a final LayerNorm)."""

    def __init__(self, dim: int = 256, num_queries: int = 100, layers: int = 6, heads: int = 8,
                 ffn: int = 2048, dropout: float = 0.0):
        super().__init__()
        self.query_feat = nn.Embedding(num_queries, dim)
        self.query_pos = nn.Embedding(num_queries, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, memory: torch.Tensor) -> list[torch.Tensor]:
        """memory ``B x dim x h x w`` -> list (one per layer) of ``B x N x dim``."""
        b, c, h, w = memory.shape
        mem = memory.flatten(2).transpose(1, 2)
        mpos = sine_position_encoding(h, w, c, memory.device, memory.dtype)[None]
        q = self.query_feat.weight[None].expand(b, -1, -1)
        qpos = self.query_pos.weight[None].expand(b, -1, -1)
        outs = []
        for layer in self.layers:
            q = layer(q, qpos, mem, mpos)
            outs.append(self.norm(q))
        return outs
