"""ADE20K-150 (SceneParsing, ``ADEChallengeData2016``) in its published layout.

``root/images/{training,validation}/ADE_*.jpg`` and ``root/annotations/{training,validation}/ADE_*.png``
(uint8, 0 = other/ignore, 1..150 = :data:`ADE150_CLASSES`). Splits ``train``/``training`` and
``val``/``validation``. Samples are :class:`~movseg_core.data.records.SegRecord` (no depth: give an
``x_dir`` of per-image X files from a monocular predictor, see ``records.attach_x``).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .records import SegRecord, attach_x, resize_record

ADE150_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)
_SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}


class ADE20K:
    """Indexable ADE20K-150 split. size: (H, W) to resize to, or None. x_dir: per-image X files."""

    def __init__(self, root: str | Path, split: str = "train", size: tuple[int, int] | None = None,
                 x_dir: str | Path | None = None):
        self.root = Path(root)
        if split not in _SPLITS:
            raise ValueError(f"ADE20K split {split!r} not in {sorted(_SPLITS)}")
        sub = _SPLITS[split]
        self.img_dir, self.ann_dir = self.root / "images" / sub, self.root / "annotations" / sub
        if not self.img_dir.is_dir() or not self.ann_dir.is_dir():
            raise ValueError(f"{self.root}: expected images/{sub}/ and annotations/{sub}/ (ADEChallengeData2016 layout)")
        self.names = sorted(p.stem for p in self.img_dir.glob("*.jpg") if (self.ann_dir / f"{p.stem}.png").is_file())
        if not self.names:
            raise ValueError(f"{self.img_dir}: no image with an annotation")
        self.size, self.x_dir = size, x_dir
        self.class_names = ADE150_CLASSES

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> SegRecord:
        name = self.names[i]
        bgr = cv2.imread(str(self.img_dir / f"{name}.jpg"), cv2.IMREAD_COLOR)
        lab = cv2.imread(str(self.ann_dir / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        if bgr is None or lab is None:
            raise ValueError(f"cannot read ADE20K sample {name}")
        if lab.ndim != 2 or lab.shape != bgr.shape[:2]:
            raise ValueError(f"{name}: annotation {lab.shape} does not match image {bgr.shape[:2]}")
        if int(lab.max()) > 150:
            raise ValueError(f"{name}: annotation ids above 150 (is this ADE20K-150?)")
        rec = SegRecord(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), lab.astype(np.uint8), name=name)
        return resize_record(attach_x(rec, self.x_dir), self.size)
