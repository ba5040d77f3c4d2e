"""A GPU stand-in for benchmarks: CLIP forward passes that take a fixed wall time without using the CPU.

**A benchmark tool, never a product model: its labels are meaningless.** Selected by
``clip.simulated_ms > 0`` (:func:`movseg_core.clip.create_clip`). It answers what a user with a
GPU gets on this machine's CPUs: on a GPU, a CLIP forward pass is a wait from the host's point of
view (the kernels run on the device, the calling thread blocks with the GIL released), so every
image and text forward here is ``time.sleep`` up to ``simulated_ms`` per call, which releases the
GIL as that wait does. Everything else (normals, proposals, pooling, classification, painting,
objects, the node's conversion and publishing) runs for real.

The configured ``clip.model_name`` architecture is built with random weights only for its shapes
(embedding width D, patch size, tokenizer and context length), so pooling and classification cost
what they cost with that model. Outputs are deterministic functions of the input:

- dense features ``D x h x w`` on the same grid as :meth:`ClipModel.dense_features` (patch grid
  of the image resized to ``dense.short_side``, or the PAMR grid with ``dense.refine: pamr``):
  the mean colour of each cell projected by a fixed random ``4 x D`` matrix, L2-normalised;
- crop embeddings ``B x D`` the same way from each crop's mean colour;
- text embeddings ``N x D``: a fixed random unit vector per prompt (seeded by its CRC32),
  averaged over templates as :class:`movseg_core.clip.TextEmbeddingCache` does.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import zlib

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from movseg_core.clip import ClipConfig, ClipModel, DenseConfig, TextEmbeddingCache

log = logging.getLogger(__name__)


def _sleep_until(deadline: float) -> None:
    """Block (GIL released) until ``time.perf_counter()`` reaches ``deadline``."""
    left = deadline - time.perf_counter()
    if left > 0:
        time.sleep(left)


class _SimulatedTextCache(TextEmbeddingCache):
    """Text embeddings of the stand-in: one simulated forward (``ms``) per batch, deterministic vectors."""

    def __init__(self, base: TextEmbeddingCache, dim: int, ms: float):
        super().__init__(base.model, base.tokenizer, base.templates, base.device, base.batch_size)
        self.dim, self.ms = dim, ms

    def _encode(self, queries: list[str]) -> torch.Tensor:
        texts = [t.format(q) for q in queries for t in self.templates]
        deadline = time.perf_counter()
        out = []
        for text in texts:
            g = torch.Generator().manual_seed(zlib.crc32(text.encode("utf-8")))
            out.append(F.normalize(torch.randn(self.dim, generator=g), dim=0))
        deadline += self.ms / 1e3 * -(-len(texts) // self.batch_size)
        _sleep_until(deadline)
        emb = torch.stack(out).view(len(queries), len(self.templates), -1).mean(1)
        return F.normalize(emb, dim=-1).to(self.device)


class SimulatedGpuClip(ClipModel):
    """:class:`ClipModel` whose forward passes wait ``cfg.simulated_ms`` instead of computing (module docstring)."""

    def __init__(self, cfg: ClipConfig):
        if cfg.simulated_ms <= 0:
            raise ValueError(f"clip.simulated_ms must be > 0 for the GPU stand-in, got {cfg.simulated_ms}")
        log.warning("!!! CLIP is a GPU STAND-IN (clip.simulated_ms=%g): every forward pass is a %g ms wait and "
                    "labels are meaningless; a benchmark tool only !!!", cfg.simulated_ms, cfg.simulated_ms)
        super().__init__(dataclasses.replace(cfg, pretrained="random"))
        self.cfg = cfg
        self.ms = float(cfg.simulated_ms)
        g = torch.Generator().manual_seed(0)
        self._proj = F.normalize(torch.randn(4, self.embed_dim, generator=g), dim=1).to(self.device)
        self.text_cache = _SimulatedTextCache(self.text_cache, self.embed_dim, self.ms)

    def _features(self, cells: np.ndarray) -> torch.Tensor:
        """Mean colours ``... x 3`` (0..255) -> ``... x D`` unit embeddings (fixed projection of colour and a bias)."""
        c = torch.from_numpy(np.ascontiguousarray(cells, dtype=np.float32)).to(self.device) / 127.5 - 1.0
        c = torch.cat([c, torch.ones_like(c[..., :1])], dim=-1)
        return F.normalize(c @ self._proj, dim=-1)

    def dense_features(self, rgb, cfg: DenseConfig | None = None, visual=None, segments=None,
                       text=None) -> torch.Tensor:
        """``D x h x w`` deterministic features on the real model's output grid, after ``simulated_ms``."""
        deadline = time.perf_counter() + self.ms / 1e3
        cfg = cfg or DenseConfig()
        if cfg.scope == "proposals" and segments is None:
            raise ValueError("dense.scope 'proposals' needs the frame's proposals (segments=HxW ids)")
        img = rgb.detach().cpu().numpy() if torch.is_tensor(rgb) else np.asarray(rgb)
        if img.ndim == 4:  # a normalised 1 x 3 x H x W tensor: back to an HxWx3 colour image
            img = ((img[0].transpose(1, 2, 0) * self.std.cpu().numpy().reshape(1, 1, 3)
                    + self.mean.cpu().numpy().reshape(1, 1, 3)) * 255.0).clip(0, 255).astype(np.uint8)
        h, w = img.shape[:2]
        if cfg.refine == "pamr":
            s = min(cfg.pamr_short_side, min(h, w)) / min(h, w)
            gh, gw = max(1, round(h * s)), max(1, round(w * s))
        else:
            hi, wi = self.dense_input_size(h, w, cfg.short_side)
            gh, gw = hi // self.patch, wi // self.patch
        cells = cv2.resize(img, (gw, gh), interpolation=cv2.INTER_AREA).reshape(gh, gw, 3)
        feats = self._features(cells).permute(2, 0, 1).contiguous()
        _sleep_until(deadline)
        return feats

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """``B x 3 x S x S`` normalised crops -> ``B x D`` from each crop's mean colour, after ``simulated_ms``."""
        deadline = time.perf_counter() + self.ms / 1e3
        mean = (images.float().mean(dim=(2, 3)) * self.std.view(1, 3) + self.mean.view(1, 3)) * 255.0
        out = self._features(mean.cpu().numpy())
        _sleep_until(deadline)
        return out
