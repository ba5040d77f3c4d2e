"""NYU Depth v2 frames in the folder layout of ``data/nyuv2`` (shipped with the repository).

Layout: ``rgb/NNNN.png`` (640x480 RGB), ``depth/NNNN.png`` (uint16 millimetres,
0 = invalid), optional ``depth_raw/``, ``label/NNNN.png`` (uint8 NYU40 ids 1..40,
0 = unlabeled) and optional ``meta.json`` (class names, intrinsics).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from movseg_core.data.frame import RGBDFrame
from movseg_core.geometry.depth import depth_mm_to_m

#: NYU40 class names in id order (id = index + 1), spelling as in classMapping40.mat.
NYU40_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window",
    "bookshelf", "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser",
    "pillow", "mirror", "floor mat", "clothes", "ceiling", "books", "refridgerator",
    "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person",
    "night stand", "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure",
    "otherfurniture", "otherprop",
)

#: NYUv2 colour camera intrinsics for the full 640x480 frame (depth registered to RGB).
NYU_K = np.array(
    [[518.8579, 0.0, 325.58245], [0.0, 519.46961, 253.73617], [0.0, 0.0, 1.0]], dtype=np.float64
)


def _read_png(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    return img


def read_depth_png(path: Path) -> np.ndarray:
    """uint16 millimetre PNG -> HxW float32 metres, 0 = invalid."""
    mm = _read_png(path, cv2.IMREAD_UNCHANGED)
    if mm.dtype != np.uint16 or mm.ndim != 2:
        raise ValueError(f"{path}: expected a 16-bit single-channel depth PNG, got {mm.dtype} {mm.shape}")
    return depth_mm_to_m(mm)


class NYUv2Folder:
    """:class:`RGBDFrame` s of a folder in the shared layout, in sorted id order (label: uint8 NYU40 ids).

    ``require_depth`` keeps only frames that have ``depth/NNNN.png``;
    ``raw_depth`` reads ``depth_raw/`` instead of ``depth/``.
    """

    def __init__(self, root: str | Path, require_depth: bool = False, raw_depth: bool = False):
        self.root = Path(root)
        if not (self.root / "rgb").is_dir():
            raise ValueError(f"{self.root}: no rgb/ folder (expected the NYUv2 folder layout)")
        self.depth_dir = self.root / ("depth_raw" if raw_depth else "depth")
        ids = sorted(p.stem for p in (self.root / "rgb").glob("*.png"))
        if require_depth:
            ids = [i for i in ids if (self.depth_dir / f"{i}.png").exists()]
        if not ids:
            raise ValueError(f"{self.root}: no frames found")
        self.ids = ids
        self.class_names = NYU40_CLASSES
        self.K = NYU_K.copy()
        meta = self.root / "meta.json"
        if meta.exists():
            m = json.loads(meta.read_text())
            names = m.get("class_names")
            if names:
                self.class_names = tuple(names[str(i)] for i in range(1, len(names) + 1))
            intr = m.get("intrinsics", {}).get("full_precision") or m.get("intrinsics")
            if intr and all(k in intr for k in ("fx", "fy", "cx", "cy")):
                self.K = np.array(
                    [[intr["fx"], 0, intr["cx"]], [0, intr["fy"], intr["cy"]], [0, 0, 1]], dtype=np.float64
                )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> RGBDFrame:
        fid = self.ids[index]
        rgb = cv2.cvtColor(_read_png(self.root / "rgb" / f"{fid}.png", cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        dpath = self.depth_dir / f"{fid}.png"
        depth = read_depth_png(dpath) if dpath.exists() else None
        lpath = self.root / "label" / f"{fid}.png"
        label = _read_png(lpath, cv2.IMREAD_UNCHANGED) if lpath.exists() else None
        return RGBDFrame(fid, rgb, depth, self.K.copy(), label)

    def __iter__(self) -> Iterator[RGBDFrame]:
        for i in range(len(self)):
            yield self[i]


def default_nyuv2_dir() -> Path:
    """``$MOVSEG_NYUV2_DIR`` if set, else the real sample frames shipped in the repository (``data/nyuv2``)."""
    env = os.environ.get("MOVSEG_NYUV2_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "nyuv2"
