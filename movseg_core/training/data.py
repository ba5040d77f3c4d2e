"""Training samples: readers' records -> tensors + MaskFormer targets, with the X modality image.

A reader is any indexable of :class:`~movseg_core.data.records.SegRecord` (or objects with
``rgb``, ``label``, ``depth``, ``K`` attributes, like synthetic samples). The X image is taken
from ``record.x`` when present (files from a monocular predictor), else computed from depth:
``normals`` (normals_from_depth -> normals_to_rgb), ``depth`` (grey depth image) or ``hha``.
Targets are semantic: one binary mask per class present, labels 0-based (class id - 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..geometry import depth_to_rgb, hha, normals_from_depth, normals_to_rgb


def x_image(modality: str, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 X image of ``modality`` (normals / depth / hha) from depth (m) and K."""
    d = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if modality == "normals":
        n, valid = normals_from_depth(d, K)
        return np.asarray(normals_to_rgb(n, valid))
    if modality == "depth":
        return np.asarray(depth_to_rgb(d, colormap=None))
    if modality == "hha":
        return np.asarray(hha(d, K))
    raise ValueError(f"X modality {modality!r} has no image (use normals, depth or hha)")


@dataclass
class TrainingSample:
    """Tensors of one sample: rgb/x ``3 x H x W`` float in [0, 1] (x None for RGB-only), label ``H x W``
    int64 (0 = ignore), target dict (``labels`` (M,), ``masks`` ``M x H x W`` float)."""

    rgb: torch.Tensor
    x: torch.Tensor | None
    label: torch.Tensor
    target: dict[str, torch.Tensor]


def semantic_target(label: np.ndarray | torch.Tensor, num_classes: int) -> dict[str, torch.Tensor]:
    """Label map (0 = ignore, 1..C) -> {``labels``: 0-based class ids (M,), ``masks``: ``M x H x W`` float}."""
    lab = torch.as_tensor(np.asarray(label).astype(np.int64))
    ids = [int(i) for i in torch.unique(lab) if 0 < int(i) <= num_classes]
    if lab.numel() and int(lab.max()) > num_classes:
        raise ValueError(f"label id {int(lab.max())} exceeds num_classes {num_classes}")
    masks = torch.stack([(lab == i).float() for i in ids]) if ids else torch.zeros((0,) + tuple(lab.shape))
    return {"labels": torch.tensor([i - 1 for i in ids], dtype=torch.int64), "masks": masks}


def _img(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 image, got {a.dtype} {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255.0


class SegmentationDataset(Dataset):
    """Wrap a reader: item i -> :class:`TrainingSample`. ``x_modality`` ``none`` skips the X image.
    ``cache`` keeps computed samples (small sets, e.g. synthetic)."""

    def __init__(self, reader: Sequence[Any], num_classes: int, x_modality: str = "none", cache: bool = False):
        self.reader, self.num_classes, self.x_modality, self.cache = reader, num_classes, x_modality, cache
        self._store: dict[int, TrainingSample] = {}

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> TrainingSample:
        if i in self._store:
            return self._store[i]
        r = self.reader[i]
        x = None
        if self.x_modality != "none":
            xi = getattr(r, "x", None)
            if xi is None:
                if getattr(r, "depth", None) is None or getattr(r, "K", None) is None:
                    raise ValueError(f"sample {i}: X modality {self.x_modality} needs depth and K or an x image")
                xi = x_image(self.x_modality, r.depth, r.K)
            x = _img(xi)
        s = TrainingSample(_img(r.rgb), x, torch.as_tensor(np.asarray(r.label).astype(np.int64)),
                   semantic_target(r.label, self.num_classes))
        if self.cache:
            self._store[i] = s
        return s


def collate(samples: list[TrainingSample]) -> dict[str, Any]:
    """Batch of samples (same size) -> {``rgb`` B3HW, ``x`` B3HW or None, ``label`` BHW, ``targets`` list}."""
    return {
        "rgb": torch.stack([s.rgb for s in samples]),
        "x": torch.stack([s.x for s in samples]) if samples[0].x is not None else None,
        "label": torch.stack([s.label for s in samples]),
        "targets": [s.target for s in samples],
    }
