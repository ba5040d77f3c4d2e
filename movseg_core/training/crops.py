"""Masked crops of segments for CLIP-side training (CLIP-X pairs, mask prompt tuning).

The crops are exactly the ones inference classifies: :func:`movseg_core.classify.masked_crop` of the
segment's bounding box enlarged by a margin (:func:`movseg_core.classify.expand_box`), pixels outside
the segment at the normalisation mean (0 after normalising), resized to the CLIP input size, as OVSeg
does at training and at test time.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch

from movseg_core.classify import segment_boxes, segment_crops

#: Box enlargement of the training crops; the segmenter's default ``classify.crop_margin``.
CROP_MARGIN = 0.1


def normalised(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """HxWx3 uint8 -> ``3 x H x W`` float32 ``(x / 255 - mean) / std`` (as ``ClipModel.to_tensor``)."""
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    return (t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def segment_masks(label: np.ndarray, min_pixels: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """(class id, bool mask) for every class present in a label map (0 = ignore) with enough pixels."""
    for c in np.unique(label):
        if c == 0:
            continue
        m = label == c
        if m.sum() >= min_pixels:
            yield int(c), m


def crop_pairs(records: Sequence[Any], x_images: Sequence[np.ndarray] | None, size: int,
               mean: Sequence[float], std: Sequence[float], min_pixels: int = 64,
               margin: float = CROP_MARGIN) -> dict[str, torch.Tensor]:
    """All segments of ``records`` -> {``rgb`` Nx3xSxS, ``x`` Nx3xSxS (if x_images), ``mask`` NxSxS,
    ``label`` N (class ids)}. The same box is used for the RGB and the X crop of a segment."""
    rgb, xs, masks, labels = [], [], [], []
    for i, r in enumerate(records):
        label = np.asarray(r.label)
        ids = [c for c, _ in segment_masks(label, min_pixels)]
        if not ids:
            continue
        seg = torch.from_numpy(label.astype(np.int64))
        boxes = segment_boxes(label.astype(np.int64), int(label.max()) + 1)
        a, mm = segment_crops(normalised(r.rgb, mean, std), seg, ids, boxes, size, margin)
        rgb.append(a)
        masks.append(mm)
        labels.extend(ids)
        if x_images is not None:
            xs.append(segment_crops(normalised(x_images[i], mean, std), seg, ids, boxes, size, margin)[0])
    if not rgb:
        raise ValueError("no segment large enough for a crop")
    out = {"rgb": torch.cat(rgb), "mask": torch.cat(masks), "label": torch.tensor(labels)}
    if x_images is not None:
        out["x"] = torch.cat(xs)
    return out


def random_batches(n: int, batch_size: int, steps: int, seed: int, desc: str,
                   progress: bool = True) -> Iterator[torch.Tensor]:
    """``steps`` batches of random indices into ``range(n)`` (deterministic from ``seed``), with a tqdm bar."""
    g = torch.Generator().manual_seed(seed)
    it: Any = range(steps)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=desc, dynamic_ncols=True)
    for _ in it:
        yield torch.randperm(n, generator=g)[:batch_size]
