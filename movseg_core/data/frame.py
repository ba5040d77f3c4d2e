"""The one RGB-D frame record every reader, bag, player and evaluation passes around."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RGBDFrame:
    """One RGB-D frame (checked on construction: a wrong shape or dtype raises ValueError).

    name: frame id (the dataset's id, e.g. ``0001``; a bag without names gives the stamp).
    rgb: HxWx3 uint8, RGB order.
    depth: HxW float32 metres registered to ``rgb``, 0 = invalid (never NaN), or None (no depth).
    K: 3x3 float64 pinhole intrinsics of ``rgb``; None only for training images without calibration.
    label: HxW integer class ids, 0 = unlabelled / ignore, or None (no ground truth).
    stamp_ns: capture time in nanoseconds (bags, cameras) or None.
    instances: HxW uint16 ground-truth instance ids (0 = none; one id per object, its class is
    ``label`` at its pixels), or None (no instance ground truth; e.g. the NYUv2 labeled .mat has it).
    Convert stored millimetres with :func:`movseg_core.geometry.depth_mm_to_m` / ``depth_m_to_mm``.
    """

    name: str
    rgb: np.ndarray
    depth: np.ndarray | None = None
    K: np.ndarray | None = None
    label: np.ndarray | None = None
    stamp_ns: int | None = None
    instances: np.ndarray | None = None

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
            raise ValueError(f"frame {self.name}: rgb must be HxWx3 uint8, got {_describe(rgb)}")
        hw = rgb.shape[:2]
        if self.depth is not None:
            d = self.depth
            if not (isinstance(d, np.ndarray) and d.dtype == np.float32 and d.shape == hw):
                raise ValueError(f"frame {self.name}: depth must be {hw[0]}x{hw[1]} float32 metres like rgb, "
                                 f"got {_describe(d)}")
        if self.K is not None:
            self.K = np.asarray(self.K, dtype=np.float64)
            if self.K.shape != (3, 3):
                raise ValueError(f"frame {self.name}: K must be 3x3, got shape {self.K.shape}")
        if self.label is not None:
            lab = self.label
            if not (isinstance(lab, np.ndarray) and lab.shape == hw and np.issubdtype(lab.dtype, np.integer)):
                raise ValueError(f"frame {self.name}: label must be {hw[0]}x{hw[1]} integer class ids like rgb, "
                                 f"got {_describe(lab)}")
        if self.instances is not None:
            ins = self.instances
            if not (isinstance(ins, np.ndarray) and ins.shape == hw and ins.dtype == np.uint16):
                raise ValueError(f"frame {self.name}: instances must be {hw[0]}x{hw[1]} uint16 ids like rgb, "
                                 f"got {_describe(ins)}")


def _describe(a) -> str:
    return f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else type(a).__name__
