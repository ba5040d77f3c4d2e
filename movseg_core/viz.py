"""Label colourisation and overlays with a legend (for humans; no model logic)."""
from __future__ import annotations

import functools
import time

import cv2
import numpy as np
from numba import njit, prange


@functools.lru_cache(maxsize=8)
def _palette(n: int) -> np.ndarray:
    pal = np.zeros((n + 1, 3), dtype=np.uint8)
    for i in range(1, n + 1):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        pal[i] = (r, g, b)
    pal.setflags(write=False)
    return pal


def label_palette(n: int) -> np.ndarray:
    """(n+1)x3 uint8 colours; index 0 (unknown) is black, the rest well separated (PASCAL bit trick)."""
    return _palette(int(n))


def colorize_labels(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """HxW integer labels (0 = unknown) -> HxWx3 uint8 RGB."""
    n = int(labels.max()) if n is None else n
    return label_palette(max(n, 1))[np.clip(labels, 0, max(n, 1))]


def prepare_viz() -> float:
    """Load (first run after an install: compile) the overlay's compiled kernel now, so that the first
    published overlay is not slow. Returns the seconds it took."""
    t0 = time.perf_counter()
    overlay(np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint16), ["x"])
    return time.perf_counter() - t0


def overlay(rgb: np.ndarray, labels: np.ndarray, names: list[str], alpha: float = 0.5,
            legend: bool = True) -> np.ndarray:
    """Blend colourised labels over HxWx3 uint8 RGB; unknown pixels keep the image.

    ``names[i]`` names label id i+1. The legend lists the labels present, with
    their share of the image, in the top-left corner.
    """
    if rgb.shape[:2] != labels.shape:
        raise ValueError(f"rgb {rgb.shape[:2]} and labels {labels.shape} differ in size")
    n = max(len(names), 1)
    out, counts = _blend_labels(np.ascontiguousarray(rgb), np.ascontiguousarray(labels),
                                _blend_table(label_palette(n), alpha))
    if legend and names:
        counts[0] = 0
        ids = np.flatnonzero(counts)
        counts = counts[ids]
        order = np.argsort(-counts)
        pal = label_palette(len(names))
        y = 4
        for k in order[:16]:
            i = int(ids[k])
            text = f"{names[i - 1]} {100.0 * counts[k] / labels.size:.0f}%"
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
            cv2.rectangle(out, (2, y), (18 + tw, y + th + 6), (0, 0, 0), -1)
            cv2.rectangle(out, (4, y + 2), (12, y + th + 4), tuple(int(v) for v in pal[i]), -1)
            cv2.putText(out, text, (15, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            y += th + 8
    return out


def _blend_table(palette: np.ndarray, alpha: float) -> np.ndarray:
    """(n+1) x 3 x 256 uint8: label l's channel c over image value v, ``round(palette * alpha + v * beta)`` in
    float32, ties to even, as ``cv2.addWeighted`` computes it (beta = 1 - alpha in float64, then float32, as
    OpenCV does); row 0 (unknown) keeps the image value."""
    a, b = np.float32(alpha), np.float32(1.0 - alpha)
    v = np.arange(256, dtype=np.float32)
    table = np.rint(palette.astype(np.float32)[:, :, None] * a + v[None, None, :] * b)
    table = np.clip(table, 0, 255).astype(np.uint8)
    table[0] = np.arange(256, dtype=np.uint8)[None, :]
    return table


@njit(cache=True, nogil=True, parallel=True)
def _blend_labels(rgb, labels, table):  # noqa: ANN001, ANN202
    """One pass of :func:`overlay`'s blend through :func:`_blend_table`: (HxWx3 uint8 image, pixel count per
    label 0..n). Labels above n count (and are coloured) as n, negative ones as unknown. Table lookups in
    one pass over rows in parallel (counts per row, summed after) instead of five numpy/OpenCV passes."""
    n = table.shape[0] - 1
    h, w = labels.shape
    out = np.empty_like(rgb)
    row_counts = np.zeros((h, n + 1), np.int32)
    for y in prange(h):
        for x in range(w):
            lab = min(max(int(labels[y, x]), 0), n)  # negative ids: unknown
            row_counts[y, lab] += 1
            for c in range(3):
                out[y, x, c] = table[lab, c, rgb[y, x, c]]
    return out, row_counts.sum(axis=0).astype(np.int64)


def draw_objects(image: np.ndarray, objects, n_classes: int, stuff: bool = False) -> np.ndarray:
    """Draw each object's 2D box and ``name score`` on a copy of HxWx3 uint8 RGB ``image``.

    objects: :class:`movseg_core.objects.ObjectInstance` records (``box`` inclusive pixel bounds,
    ``class_id`` 1..n_classes, ``name``, ``score``); box colour = the class's label colour, so a box
    matches its overlay colour. Stuff regions (wall, floor: boxes of most of the image) are left out
    unless ``stuff``.
    """
    out = image.copy()
    pal = label_palette(max(int(n_classes), 1))
    for o in objects:
        if o.is_stuff and not stuff:
            continue
        x0, y0, x1, y1 = (int(v) for v in o.box)
        colour = tuple(int(v) for v in pal[min(max(int(o.class_id), 0), len(pal) - 1)])
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, 1)
        text = f"{o.name} {o.score:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)
        ty = y0 - 3 if y0 - th - 5 >= 0 else min(y1 + th + 4, out.shape[0] - 2)  # above the box, else below
        cv2.rectangle(out, (x0, ty - th - 2), (x0 + tw + 2, ty + 1), (0, 0, 0), -1)  # never over the box
        cv2.putText(out, text, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
    return out
