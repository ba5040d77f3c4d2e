"""The per-sample record every training reader returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SegRecord:
    """One training/evaluation sample.

    rgb: HxWx3 uint8 RGB. label: HxW integer class ids, 0 = ignore/unlabelled, 1..C = classes in
    the reader's ``class_names`` order. depth: HxW float32 metres (NaN/0 invalid) or None.
    K: 3x3 float64 intrinsics of this image or None. x: a precomputed HxWx3 uint8 X-modality image
    (e.g. normals written by a monocular predictor) or None. name: sample id.
    """

    rgb: np.ndarray
    label: np.ndarray
    depth: np.ndarray | None = None
    K: np.ndarray | None = None
    x: np.ndarray | None = None
    name: str = ""
