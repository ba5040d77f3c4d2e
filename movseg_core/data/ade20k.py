"""ADE20K-150 (SceneParsing, ``ADEChallengeData2016``) in its published layout.

``root/images/{training,validation}/ADE_*.jpg`` and ``root/annotations/{training,validation}/ADE_*.png``
(uint8, 0 = other/ignore, 1..150 = :data:`ADE150_CLASSES`). Splits ``train``/``training`` and
``val``/``validation``. Samples are :class:`~movseg_core.data.records.SegRecord` (no depth: give an
``x_dir`` of per-image X files from a monocular predictor, see ``records.attach_x``).
"""
from __future__ import annotations

import numpy as np

from .records import ImageLabelFolder

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


class ADE20K(ImageLabelFolder):
    """Indexable ADE20K-150 split. size: (H, W) to resize to, or None. x_dir: per-image X files."""

    dataset = "ADE20K"
    class_names = ADE150_CLASSES
    splits = _SPLITS

    def _find_dirs(self, sub: str) -> None:
        self.img_dir, self.ann_dir = self.root / "images" / sub, self.root / "annotations" / sub
        if not self.img_dir.is_dir() or not self.ann_dir.is_dir():
            raise ValueError(f"{self.root}: expected images/{sub}/ and annotations/{sub}/ "
                             "(ADEChallengeData2016 layout)")

    def convert_label(self, name: str, raw: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """ADE20K-150 annotation HxW (0 = ignore, 1..150) -> label HxW uint8; raises on bad size or ids > 150."""
        if raw.ndim != 2 or raw.shape != image_hw:
            raise ValueError(f"{name}: annotation {raw.shape} does not match image {image_hw}")
        if int(raw.max()) > 150:
            raise ValueError(f"{name}: annotation ids above 150 (is this ADE20K-150?)")
        return raw.astype(np.uint8)
