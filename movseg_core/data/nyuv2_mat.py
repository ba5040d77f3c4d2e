"""NYU Depth v2 labeled set as distributed: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5).

The file holds 1449 frames (h5py sees MATLAB's column-major arrays transposed):
``images`` (1449, 3, 640, 480) uint8, ``depths`` / ``rawDepths`` (1449, 640, 480) float32
metres, ``labels`` (1449, 640, 480) uint16 ids of 894 classes (0 = unlabeled), ``instances``
(1449, 640, 480) uint8: per pixel the object's index *within its class*, so an object is the pair
(label, instance) (the NYU toolbox's ``get_instance_masks``). When the file has ``instances`` each
frame carries an instance map (:func:`instance_ids`).

The 894 -> 40 class mapping of Gupta et al. (CVPR 2013) is NOT embedded here: it ships as
``classMapping40.mat`` (variable ``mapClass``, 1x894, values 1..40) in the public NYUv2
meta-data (e.g. github.com/ankurhanda/nyuv2-meta-data) and the user passes its path. The
official split is ``splits.mat`` (``trainNdxs`` 795, ``testNdxs`` 654; 1-based indices into the
labeled .mat), also user-provided. A frame id is the 1-based index as a 4-digit string
(``0001``), the numbering of the shared folder frames.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np

from movseg_core.data.frame import RGBDFrame
from movseg_core.data.nyuv2 import NYU40_CLASSES, NYU_K

Split = Literal["all", "train", "test"]
SPLITS: tuple[str, ...] = ("all", "train", "test")


def _load_mat(path: Path) -> dict[str, np.ndarray]:
    """Variables of a .mat file of either format (v5 via scipy, v7.3 via h5py), squeezed."""
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        import h5py

        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return {k: np.asarray(f[k]).squeeze() for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except ImportError:  # pragma: no cover - h5py is a dependency
        pass
    from scipy.io import loadmat

    return {k: np.asarray(v).squeeze() for k, v in loadmat(path).items() if not k.startswith("__")}


def load_class_mapping(path: str | Path) -> np.ndarray:
    """894->40 lookup table: ``lut[c894]`` = NYU40 id (``lut[0] = 0``), shape (895,) uint8.

    Accepts ``classMapping40.mat`` (variable ``mapClass``), a ``.npy`` or a text file with
    894 integers in 1..40 (one per 894-class id, in id order).
    """
    path = Path(path)
    if path.suffix == ".mat":
        mat = _load_mat(path)
        if "mapClass" not in mat:
            raise ValueError(f"{path}: no variable 'mapClass' (expected classMapping40.mat), has {sorted(mat)}")
        table = mat["mapClass"]
    elif path.suffix == ".npy":
        table = np.load(path)
    else:
        table = np.loadtxt(path, dtype=np.int64)
    table = np.asarray(table).reshape(-1)
    if table.size != 894 or not np.all(np.isfinite(table)):
        raise ValueError(f"{path}: class mapping must have 894 entries, has {table.size}")
    table = table.astype(np.int64)
    if table.min() < 1 or table.max() > 40:
        raise ValueError(f"{path}: class mapping values must be in 1..40, got {table.min()}..{table.max()}")
    return np.concatenate([[0], table]).astype(np.uint8)


def load_split_indices(path: str | Path, split: Split) -> list[int]:
    """1-based frame indices of ``split`` from ``splits.mat`` (``trainNdxs`` / ``testNdxs``)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test' to read splits.mat, got {split!r}")
    mat = _load_mat(Path(path))
    key = f"{split}Ndxs"
    if key not in mat:
        raise ValueError(f"{path}: no variable {key!r} (expected NYUv2 splits.mat), has {sorted(mat)}")
    return sorted(int(i) for i in np.asarray(mat[key]).reshape(-1))


def folder_split_ids(root: str | Path, ids: Sequence[str], split: Split, splits_path: str | Path | None) -> list[str]:
    """Subset of folder frame ids (``NNNN``) in ``split``: from ``splits.mat`` if given, else from
    the ``official_split`` entries of the folder's ``meta.json``."""
    if split == "all":
        return list(ids)
    if splits_path is not None:
        keep = set(load_split_indices(splits_path, split))
        return [i for i in ids if int(i) in keep]
    meta = Path(root) / "meta.json"
    if not meta.exists():
        raise ValueError(f"{root}: split {split!r} needs splits.mat (--splits) or a meta.json with official_split")
    m = json.loads(meta.read_text())
    frames = list(m.get("frames", [])) + list(m.get("frames_rgb_label_only", []))
    by_file = {Path(f.get("file", "")).stem: f.get("official_split") for f in frames}
    missing = [i for i in ids if by_file.get(i) is None]
    if missing:
        raise ValueError(f"{meta}: no official_split for frames {missing[:5]}; pass splits.mat (--splits)")
    return [i for i in ids if by_file[i] == split]


def instance_ids(labels: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """Instance map of one frame: HxW uint16, one id 1..N per (label, instance) pair with label > 0
    (pairs numbered in (label, instance) order; two classes' instance 1 are two objects), 0 where
    the label is 0 (unlabeled). labels: HxW raw (894-class) ids; instances: HxW per-class indices.
    The NYU toolbox keeps a labelled pixel with instance 0 as an object of its own too."""
    labels, instances = np.asarray(labels), np.asarray(instances)
    if labels.shape != instances.shape:
        raise ValueError(f"instances {instances.shape} differ in size from labels {labels.shape}")
    key = labels.astype(np.int64) * (int(instances.max(initial=0)) + 1) + instances.astype(np.int64)
    pairs, ids = np.unique(np.where(labels > 0, key, -1), return_inverse=True)
    ids = ids.reshape(labels.shape) + (0 if pairs[0] == -1 else 1)  # -1 (unlabeled) -> 0, the rest 1..N
    if ids.max(initial=0) > np.iinfo(np.uint16).max:
        raise ValueError(f"{int(ids.max())} objects in one frame: more than a uint16 instance map holds")
    return ids.astype(np.uint16)


class NYUv2Mat:
    """Frames of ``nyu_depth_v2_labeled.mat`` with NYU40 labels, like :class:`NYUv2Folder`.

    class_mapping: path to classMapping40.mat (or a (895,) lookup from :func:`load_class_mapping`).
    split: ``all`` | ``train`` | ``test``; train/test need ``splits`` (path to splits.mat).
    raw_depth: read ``rawDepths`` (0 = missing) instead of the filled ``depths``.
    Frames: rgb HxWx3 uint8, depth HxW float32 metres (0 where invalid), label HxW uint8 (0..40),
    instances HxW uint16 (:func:`instance_ids`) when the file has ``instances`` (``has_instances``), else None.
    """

    def __init__(
        self,
        path: str | Path,
        class_mapping: str | Path | np.ndarray,
        split: Split = "all",
        splits: str | Path | None = None,
        raw_depth: bool = False,
    ):
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such file")
        if not h5py.is_hdf5(self.path):
            raise ValueError(f"{self.path}: not an HDF5 (MATLAB v7.3) file; expected nyu_depth_v2_labeled.mat")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.lut = class_mapping if isinstance(class_mapping, np.ndarray) else load_class_mapping(class_mapping)
        if self.lut.shape != (895,):
            raise ValueError(f"class mapping lookup must have shape (895,), got {self.lut.shape}")
        self._file = h5py.File(self.path, "r")
        for key in ("images", "labels", "rawDepths" if raw_depth else "depths"):
            if key not in self._file:
                raise ValueError(f"{self.path}: no dataset {key!r}; has {sorted(self._file.keys())}")
        self._depth_key = "rawDepths" if raw_depth else "depths"
        self.has_instances = "instances" in self._file
        self.has_raw_depth = "rawDepths" in self._file
        n = self._file["images"].shape[0]
        if split == "all":
            indices = list(range(1, n + 1))
        elif splits is None:
            raise ValueError(f"split {split!r} needs splits.mat (the official NYUv2 split file)")
        else:
            indices = load_split_indices(splits, split)
        bad = [i for i in indices if not 1 <= i <= n]
        if bad:
            raise ValueError(f"{splits}: indices {bad[:5]} outside 1..{n}")
        self.indices = indices
        self.ids = [f"{i:04d}" for i in indices]
        self.class_names = NYU40_CLASSES
        self.K = NYU_K.copy()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> RGBDFrame:
        i = self.indices[index] - 1
        rgb = np.ascontiguousarray(np.asarray(self._file["images"][i]).transpose(2, 1, 0))
        depth = self.depth(index, self._depth_key == "rawDepths")
        raw = np.asarray(self._file["labels"][i]).T
        if raw.max(initial=0) > 894:
            raise ValueError(f"{self.path}: frame {i + 1} has label ids above 894")
        label = np.ascontiguousarray(self.lut[raw.astype(np.int64)])
        inst = instance_ids(raw, np.asarray(self._file["instances"][i]).T) if self.has_instances else None
        return RGBDFrame(self.ids[index], rgb, depth, self.K.copy(), label, instances=inst)

    def __iter__(self) -> Iterator[RGBDFrame]:
        for i in range(len(self)):
            yield self[i]

    def depth(self, index: int, raw: bool = False) -> np.ndarray:
        """Frame ``index``'s depth alone: HxW float32 metres, 0 where invalid; the filled ``depths`` or
        (``raw``, where ``has_raw_depth``) the ``rawDepths``."""
        key = "rawDepths" if raw else "depths"
        if key not in self._file:
            raise ValueError(f"{self.path}: no dataset {key!r}")
        depth = np.ascontiguousarray(np.asarray(self._file[key][self.indices[index] - 1], dtype=np.float32).T)
        depth[~(depth > 0) | ~np.isfinite(depth)] = 0.0
        return depth

    def close(self) -> None:
        """Close the underlying .mat (HDF5) file."""
        self._file.close()


def export_folder(path: str | Path, class_mapping: str | Path | np.ndarray, out: str | Path, split: Split = "all",
                  splits: str | Path | None = None, limit: int = 0, progress: bool = True) -> dict:
    """Write the labeled .mat's frames as a folder in the bundled layout (``data/nyuv2``'s), which
    ``NYUv2Folder``, ``bench/proposals.py --data``, ``movseg nyu2bag`` and ``movseg eval --offline`` read.

    ``rgb/NNNN.png`` (8-bit RGB), ``depth/NNNN.png`` (the filled ``depths``, uint16 mm, 0 = invalid),
    ``depth_raw/NNNN.png`` (``rawDepths``, when the file has them), ``label/NNNN.png`` (uint8 NYU40) and a
    ``meta.json`` (class names, intrinsics, source). ``out`` must not hold frames yet (ValueError).
    ``limit``: at most that many frames (0 = all). Returns a summary dict (frames, folders, raw).
    """
    import json

    import cv2

    from movseg_core.geometry.depth import depth_m_to_mm

    out = Path(out)
    if (out / "rgb").is_dir() and any((out / "rgb").iterdir()):
        raise ValueError(f"{out}: already holds frames (rgb/); choose an empty or new folder")
    filled = NYUv2Mat(path, class_mapping, split=split, splits=splits)
    try:
        raw = filled.has_raw_depth
        subs = ("rgb", "depth", "label") + (("depth_raw",) if raw else ())
        for sub in subs:
            (out / sub).mkdir(parents=True, exist_ok=True)
        n = min(len(filled), limit or len(filled))
        from tqdm import tqdm

        for i in tqdm(range(n), desc="nyu2folder", unit="frame", disable=not progress):
            frame = filled[i]
            name = frame.name
            _write_png(out / "rgb" / f"{name}.png", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
            _write_png(out / "depth" / f"{name}.png", depth_m_to_mm(frame.depth))
            _write_png(out / "label" / f"{name}.png", frame.label.astype(np.uint8))
            if raw:
                _write_png(out / "depth_raw" / f"{name}.png", depth_m_to_mm(filled.depth(i, raw=True)))
        K = filled.K
        meta = {"dataset": "NYU Depth v2, labeled subset", "source": str(filled.path), "split": split,
                "frame_id": "1-based index into nyu_depth_v2_labeled.mat", "n_frames": n,
                "class_names": {str(k + 1): c for k, c in enumerate(filled.class_names)},
                "intrinsics": {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]},
                "depth_format": "uint16 PNG, millimetres, 0 = invalid; depth/ = the filled 'depths'; "
                                + ("depth_raw/ = 'rawDepths'" if raw else "no depth_raw/: the file has no rawDepths")}
        (out / "meta.json").write_text(json.dumps(meta, indent=1))
    finally:
        filled.close()
    return {"frames": n, "folders": list(subs), "raw": raw, "out": str(out)}


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), image):
        raise OSError(f"cannot write {path}")
