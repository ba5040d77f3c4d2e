"""Proposal quality with oracle classes (OVSeg's bottleneck analysis) and its picture.

Each proposal segment takes the majority ground-truth class of its labelled pixels, so the score
measures the proposals alone (how well their boundaries follow the objects), not the classifier.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from movseg_core.viz import colorize_labels


def oracle_labels(segments: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Each segment -> the majority ground-truth class of its labelled pixels (0 if none is labelled).

    segments: HxW int (0..S-1); gt: HxW int class ids (0 = unlabelled). Returns HxW int64.
    """
    s = segments.ravel()
    g = gt.ravel().astype(np.int64)
    keep = g > 0
    votes = np.zeros((int(s.max()) + 1, num_classes + 1), dtype=np.int64)
    np.add.at(votes, (s[keep], g[keep]), 1)
    best = votes.argmax(1)
    best[votes.max(1) == 0] = 0
    return best[segments]


def draw_boundaries(rgb: np.ndarray, segments: np.ndarray, color: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """``rgb`` HxWx3 uint8 with the segment boundaries (pixels whose right/lower neighbour differs) painted."""
    edge = np.zeros(segments.shape, bool)
    edge[:, :-1] |= segments[:, :-1] != segments[:, 1:]
    edge[:-1, :] |= segments[:-1, :] != segments[1:, :]
    out = rgb.copy()
    out[edge] = color
    return out


def draw_caption(img: np.ndarray, text: str, org: tuple[int, int] = (8, 22), scale: float = 0.6) -> np.ndarray:
    """``img`` (HxWx3 uint8, drawn on in place when contiguous) with ``text`` in white, outlined in black
    so it reads on any background. The outline is the same 1-px text drawn at the 8 offsets around it:
    a thicker stroke would advance each glyph further (OpenCV adds the thickness to every advance) and
    drift off the white text."""
    img = np.ascontiguousarray(img)
    x, y = org
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx or dy:
                cv2.putText(img, text, (x + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def comparison_png(path: str | Path, rgb: np.ndarray, gt: np.ndarray, num_classes: int,
                   panels: dict[str, tuple[np.ndarray, str]]) -> Path:
    """Write a grid: one row per proposal mode (boundaries over the image | oracle-class labelling),
    plus a last row (RGB | ground truth). ``panels``: mode name -> (segments HxW, caption)."""
    rows = []
    for mode, (segments, caption) in panels.items():
        oracle = oracle_labels(segments, gt, num_classes)
        rows.append(np.concatenate([
            draw_caption(draw_boundaries(rgb, segments), f"{mode}: {int(segments.max()) + 1} proposals"),
            draw_caption(colorize_labels(oracle, num_classes + 1), f"{mode} oracle classes: {caption}")], axis=1))
    rows.append(np.concatenate([draw_caption(rgb.copy(), "RGB"),
                                draw_caption(colorize_labels(gt, num_classes + 1), "ground truth")], axis=1))
    grid = np.concatenate(rows, axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path
