"""The per-sample record every training reader returns: an :class:`RGBDFrame` plus an X image."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .frame import RGBDFrame


@dataclass
class SegRecord(RGBDFrame):
    """One training/evaluation sample: the :class:`RGBDFrame` fields (name, rgb, depth, K, label)
    plus ``x``, a precomputed HxWx3 uint8 X-modality image (e.g. normals written by a monocular
    predictor) or None. Training labels: 1..C = classes in the reader's ``class_names`` order.
    """

    x: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.x is not None and self.x.shape[:2] != self.rgb.shape[:2]:
            raise ValueError(f"sample {self.name}: x image {self.x.shape[:2]} differs in size "
                             f"from rgb {self.rgb.shape[:2]}")


def split_folder(dataset: str, splits: dict[str, str], split: str) -> str:
    """The published folder name of ``split`` (``splits`` maps each accepted name or alias to it).

    Raises ValueError naming ``dataset`` and the accepted splits for any other ``split``.
    """
    if split not in splits:
        raise ValueError(f"{dataset} split {split!r} not in {sorted(splits)}")
    return splits[split]


def default_K(height: int, width: int, hfov_deg: float = 60.0) -> np.ndarray:
    """Pinhole K (square pixels, centred principal point) for images without calibration (COCO, ADE20K)."""
    f = (width / 2.0) / np.tan(np.deg2rad(hfov_deg) / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def load_x_file(path: "str | os.PathLike[str]") -> tuple[np.ndarray | None, np.ndarray | None]:
    """A per-sample X-modality file -> (x image HxWx3 uint8 | None, depth HxW float32 metres | None).

    8-bit 3-channel PNG/JPG: an X image as is (e.g. normals RGB from a monocular predictor).
    16-bit single-channel PNG: depth in millimetres (0 = invalid). ``.npy`` float HxW: depth in metres.
    Depth comes back as HxW float32 metres with 0 = invalid (NaN, inf and negatives in a ``.npy`` too).
    """
    import cv2

    p = str(path)
    from ..geometry.depth import decode_depth, depth_mm_to_m

    if p.endswith(".npy"):
        d = np.load(p).astype(np.float32)
        if d.ndim != 2:
            raise ValueError(f"{p}: expected an HxW depth array in metres, got shape {d.shape}")
        return None, decode_depth(d, "32FC1")[0]  # NaN, inf, <= 0 -> 0 (invalid)
    img = cv2.imread(p, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"cannot read X file {p}")
    if img.dtype == np.uint16 and img.ndim == 2:
        return None, depth_mm_to_m(img)
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), None
    raise ValueError(f"{p}: X file must be 8-bit RGB (an X image) or 16-bit 1-channel (depth mm), "
                     f"got {img.dtype} {img.shape}")


def resize_record(rec: SegRecord, size: tuple[int, int] | None) -> SegRecord:
    """Resize every array of ``rec`` to ``size`` = (H, W): images area/bilinear, label and depth nearest, K scaled."""
    if size is None or rec.rgb.shape[:2] == tuple(size):
        return rec
    import cv2

    from ..geometry import scale_intrinsics

    h, w = size
    src = rec.rgb.shape[:2]
    interp = cv2.INTER_AREA if src[0] > h else cv2.INTER_LINEAR
    return SegRecord(
        name=rec.name,
        rgb=cv2.resize(rec.rgb, (w, h), interpolation=interp),
        label=cv2.resize(rec.label, (w, h), interpolation=cv2.INTER_NEAREST),
        depth=None if rec.depth is None else cv2.resize(rec.depth, (w, h), interpolation=cv2.INTER_NEAREST),
        K=None if rec.K is None else scale_intrinsics(rec.K, src, (h, w)),
        x=None if rec.x is None else cv2.resize(rec.x, (w, h), interpolation=interp),
    )


def attach_x(rec: SegRecord, x_dir: "str | os.PathLike[str] | None", hfov_deg: float = 60.0) -> SegRecord:
    """Add ``<x_dir>/<name>.{png,npy}`` to ``rec`` (x image, or depth with a default K if ``rec.K`` is None)."""
    if x_dir is None:
        return rec
    from pathlib import Path

    base = Path(x_dir) / rec.name
    path = next((base.with_suffix(s) for s in (".png", ".npy", ".jpg") if base.with_suffix(s).is_file()), None)
    if path is None:
        raise ValueError(f"no X file for sample {rec.name!r} in {x_dir} (expected {rec.name}.png or .npy)")
    x, depth = load_x_file(path)
    for name, arr in (("x image", x), ("depth", depth)):
        if arr is not None and arr.shape[:2] != rec.rgb.shape[:2]:
            raise ValueError(f"{path}: {name} size {arr.shape[:2]} differs from the image {rec.rgb.shape[:2]}")
    K = rec.K if rec.K is not None else default_K(*rec.rgb.shape[:2], hfov_deg=hfov_deg)
    return SegRecord(rec.name, rec.rgb, depth if depth is not None else rec.depth, K, rec.label, x=x)


class ImageLabelFolder:
    """Images ``img_dir/<name>.jpg`` paired with label maps ``ann_dir/<name>.png`` (COCO, ADE20K).

    One split of ``root``; size: (H, W) to resize to, or None; x_dir: per-image X files. Subclasses
    set ``dataset``, ``class_names`` and ``splits`` (accepted split name -> published folder name),
    set ``img_dir``/``ann_dir`` for a split folder in :meth:`_find_dirs` and turn a raw label map
    into class ids 0..C in :meth:`convert_label`.
    """

    dataset = "dataset"
    class_names: tuple[str, ...] = ()
    splits: dict[str, str] = {}

    def __init__(self, root: str | Path, split: str = "train", size: tuple[int, int] | None = None,
                 x_dir: str | Path | None = None):
        self.root = Path(root)
        self._find_dirs(split_folder(self.dataset, self.splits, split))
        self._index(size, x_dir)

    def _find_dirs(self, sub: str) -> None:
        """Set ``img_dir`` and ``ann_dir`` for the split folder ``sub``; ValueError when they are missing."""
        raise NotImplementedError

    def _index(self, size: tuple[int, int] | None, x_dir: "str | os.PathLike[str] | None") -> None:
        self.names = sorted(p.stem for p in self.img_dir.glob("*.jpg") if (self.ann_dir / f"{p.stem}.png").is_file())
        if not self.names:
            raise ValueError(f"{self.img_dir}: no image with a label map in {self.ann_dir}")
        self.size, self.x_dir = size, x_dir

    def convert_label(self, name: str, raw: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """The data set's raw label image -> HxW contiguous class ids (0 = unlabelled); each reader defines it."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> SegRecord:
        import cv2

        name = self.names[i]
        bgr = cv2.imread(str(self.img_dir / f"{name}.jpg"), cv2.IMREAD_COLOR)
        raw = cv2.imread(str(self.ann_dir / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        if bgr is None or raw is None:
            raise ValueError(f"cannot read {self.dataset} sample {name}")
        rec = SegRecord(name, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label=self.convert_label(name, raw, bgr.shape[:2]))
        return resize_record(attach_x(rec, self.x_dir), self.size)
