"""COCO-Stuff-171 in its published layouts.

Accepted (detectron2/MaskFormer ``datasets/coco`` layout):
``root/{train2017,val2017}/*.jpg`` with either ``root/stuffthingmaps/{train2017,val2017}/*.png``
(the official stuffthingmaps: pixel = COCO category id - 1 in 0..181, 255 = unlabeled) or
``root/stuffthingmaps_detectron2/{train2017,val2017}/*.png`` (already contiguous 0..170, 255).
Labels become 1..171 (:data:`COCO_STUFF_171_CLASSES` order), 0 = unlabeled / unused ids.
"""
from __future__ import annotations

import numpy as np

from .records import ImageLabelFolder

_THINGS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
_STUFF = (
    "banner", "blanket", "branch", "bridge", "building-other", "bush", "cabinet", "cage", "cardboard", "carpet",
    "ceiling-other", "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile", "floor-wood",
    "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel", "ground-other", "hill",
    "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss", "mountain", "mud", "napkin", "net",
    "paper", "pavement", "pillow", "plant-other", "plastic", "platform", "playingfield", "railing", "railroad",
    "river", "road", "rock", "roof", "rug", "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow",
    "solid-other", "stairs", "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel",
    "tree", "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone", "wall-tile",
    "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)
#: The 171 classes in contiguous order (80 things, then 91 stuff); label id = index + 1.
COCO_STUFF_171_CLASSES: tuple[str, ...] = _THINGS + _STUFF
#: 0-based COCO category ids (0..181) of the 11 thing ids COCO never uses.
UNUSED_IDS: tuple[int, ...] = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)


def raw_to_contiguous_lut() -> np.ndarray:
    """(256,) uint8 lookup: stuffthingmaps value (0..181, 255) -> label 1..171, 0 for unused/unlabeled."""
    lut = np.zeros(256, np.uint8)
    used = [i for i in range(182) if i not in UNUSED_IDS]
    lut[used] = np.arange(1, 172, dtype=np.uint8)
    return lut


_SPLITS = {"train": "train2017", "train2017": "train2017", "val": "val2017", "val2017": "val2017"}


class CocoStuff(ImageLabelFolder):
    """Indexable COCO-Stuff-171 split. size: (H, W) to resize to, or None. x_dir: per-image X files."""

    dataset = "COCO-Stuff"
    class_names = COCO_STUFF_171_CLASSES
    splits = _SPLITS

    def _find_dirs(self, sub: str) -> None:
        self.img_dir = self.root / sub
        d2, raw = self.root / "stuffthingmaps_detectron2" / sub, self.root / "stuffthingmaps" / sub
        if d2.is_dir():
            self.ann_dir = d2
            self.lut = np.zeros(256, np.uint8)
            self.lut[:171] = np.arange(1, 172, dtype=np.uint8)
        elif raw.is_dir():
            self.ann_dir, self.lut = raw, raw_to_contiguous_lut()
        else:
            raise ValueError(f"{self.root}: expected stuffthingmaps/{sub}/ or stuffthingmaps_detectron2/{sub}/")
        if not self.img_dir.is_dir():
            raise ValueError(f"{self.root}: expected {sub}/ with the COCO images")

    def convert_label(self, name: str, raw: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """COCO-Stuff stuffthingmap HxW uint8 -> label HxW through the id lookup table ``self.lut``."""
        if raw.ndim != 2 or raw.shape != image_hw or raw.dtype != np.uint8:
            raise ValueError(f"{name}: stuffthingmap must be HxW uint8 matching the image, got {raw.dtype} {raw.shape}")
        return self.lut[raw]
