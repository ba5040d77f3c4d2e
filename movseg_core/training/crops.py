"""Masked crops of segments for CLIP-side training (CLIP-X pairs, mask prompt tuning).

A crop is the segment's bounding box (plus a margin, made square) resized to the CLIP input size;
pixels outside the segment are set to the normalisation mean (0 after normalising), as OVSeg does.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def square_box(mask: np.ndarray, margin: float = 0.1) -> tuple[int, int, int, int]:
    """Square box (y0, y1, x0, x1) around a HxW bool mask with a relative margin, clipped to the image."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("empty mask has no box")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = int(np.ceil(max(y1 - y0, x1 - x0) * (1 + 2 * margin)))
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    h, w = mask.shape
    side = min(side, h, w)
    ty = int(np.clip(round(cy - side / 2), 0, h - side))
    tx = int(np.clip(round(cx - side / 2), 0, w - side))
    return ty, ty + side, tx, tx + side


def masked_crop(image: np.ndarray, mask: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float],
                box: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """HxWx3 uint8 image + HxW bool mask -> (normalised ``3 x size x size`` crop with the background at 0,
    ``size x size`` float mask)."""
    y0, y1, x0, x1 = box or square_box(mask)
    img = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).permute(2, 0, 1).float()[None] / 255.0
    m = torch.from_numpy(np.ascontiguousarray(mask[y0:y1, x0:x1])).float()[None, None]
    img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    m = F.interpolate(m, size=(size, size), mode="nearest")[0, 0]
    img = (img - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    return img * m, m


def segment_masks(label: np.ndarray, min_pixels: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """(class id, bool mask) for every class present in a label map (0 = ignore) with enough pixels."""
    for c in np.unique(label):
        if c == 0:
            continue
        m = label == c
        if m.sum() >= min_pixels:
            yield int(c), m


def crop_pairs(records: Sequence[Any], x_images: Sequence[np.ndarray] | None, size: int,
               mean: Sequence[float], std: Sequence[float], min_pixels: int = 64) -> dict[str, torch.Tensor]:
    """All segments of ``records`` -> {``rgb`` Nx3xSxS, ``x`` Nx3xSxS (if x_images), ``mask`` NxSxS,
    ``label`` N (class ids)}. The same box is used for the RGB and the X crop of a segment."""
    rgb, xs, masks, labels = [], [], [], []
    for i, r in enumerate(records):
        for c, m in segment_masks(np.asarray(r.label), min_pixels):
            box = square_box(m)
            a, mm = masked_crop(r.rgb, m, size, mean, std, box)
            rgb.append(a)
            masks.append(mm)
            labels.append(c)
            if x_images is not None:
                xs.append(masked_crop(x_images[i], m, size, mean, std, box)[0])
    if not rgb:
        raise ValueError("no segment large enough for a crop")
    out = {"rgb": torch.stack(rgb), "mask": torch.stack(masks), "label": torch.tensor(labels)}
    if x_images is not None:
        out["x"] = torch.stack(xs)
    return out


def random_batches(n: int, batch_size: int, steps: int, seed: int, desc: str, progress: bool = True) -> Iterator[torch.Tensor]:
    """``steps`` batches of random indices into ``range(n)`` (deterministic from ``seed``), with a tqdm bar."""
    g = torch.Generator().manual_seed(seed)
    it: Any = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=desc, dynamic_ncols=True)
    for _ in it:
        yield torch.randperm(n, generator=g)[:batch_size]
