"""NYUv2-40 for training, in its published layouts, as :class:`~movseg_core.data.records.SegRecord`.

``root`` is either
- a folder holding the published files ``nyu_depth_v2_labeled.mat``, ``classMapping40.mat`` and
  ``splits.mat`` (read through :class:`~movseg_core.data.nyuv2_mat.NYUv2Mat`), or
- a folder in the project's NYUv2 folder layout (``rgb/``, ``depth/``, ``label/``; read through
  :class:`~movseg_core.data.nyuv2.NYUv2Folder`), split by ``splits.mat`` in it when present.
Splits: ``train`` (795 frames) and ``test`` (654; ``val`` is an alias). Depth is real (metres);
``x_dir`` overrides the X source with per-frame files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .nyuv2 import NYU40_CLASSES, NYUv2Folder
from .records import SegRecord, attach_x, resize_record, split_folder

_SPLITS = {"train": "train", "test": "test", "val": "test", "all": "all"}


class NYUv2Train:
    """Indexable NYUv2-40 split. size: (H, W) to resize to, or None. x_dir: per-frame X files."""

    def __init__(self, root: str | Path, split: str = "train", size: tuple[int, int] | None = None,
                 x_dir: str | Path | None = None):
        self.root = Path(root)
        sp = split_folder("NYUv2", _SPLITS, split)
        mat = self.root / "nyu_depth_v2_labeled.mat"
        splits = self.root / "splits.mat"
        if mat.is_file():
            from .nyuv2_mat import NYUv2Mat

            mapping = self.root / "classMapping40.mat"
            if not mapping.is_file():
                raise ValueError(f"{self.root}: nyu_depth_v2_labeled.mat needs classMapping40.mat beside it")
            self.reader = NYUv2Mat(mat, mapping, sp, splits if splits.is_file() else None)
            self.ids = list(self.reader.ids)
            self._index = list(range(len(self.ids)))
        elif (self.root / "rgb").is_dir():
            from .nyuv2_mat import folder_split_ids

            self.reader = NYUv2Folder(self.root)
            keep = folder_split_ids(self.root, self.reader.ids, sp, splits if splits.is_file() else None)
            pos = {fid: i for i, fid in enumerate(self.reader.ids)}
            self.ids = list(keep)
            self._index = [pos[f] for f in keep]
        else:
            raise ValueError(f"{self.root}: neither nyu_depth_v2_labeled.mat nor an rgb/ folder")
        if not self.ids:
            raise ValueError(f"{self.root}: no frames in split {split!r}")
        self.size, self.x_dir = size, x_dir
        self.class_names = NYU40_CLASSES

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> SegRecord:
        f = self.reader[self._index[i]]
        label = f.label if f.label is not None else np.zeros(f.rgb.shape[:2], np.uint8)
        K = f.K
        if f.rgb.shape[:2] != (480, 640):  # a downscaled copy of the dataset: K is for 640x480
            from ..geometry import scale_intrinsics

            K = scale_intrinsics(K, (480, 640), f.rgb.shape[:2])
        rec = SegRecord(f.name, f.rgb, f.depth, K, label)
        return resize_record(attach_x(rec, self.x_dir), self.size)
