"""Objects from a labelled frame: instances, 2D boxes, scores and 3D boxes from depth (issue 15).

Input: the class-agnostic segments the labels were painted from (HxW int32, 0..S-1), each
segment's class (S, 0 = unknown, i = query i) and classifier confidence (S,), and optionally
depth (HxW float32 metres, 0 = invalid) with K (3x3). Output: :class:`Objects`, an instance map
(HxW uint16, 0 = none, 1..N) and one :class:`ObjectInstance` record per instance.

Grouping (:func:`extract_objects`):

- **stuff** (queries named in ``stuff_queries``, case-insensitive, e.g. wall, floor): all pixels
  of one class form one instance, connected or not.
- **things** (every other query): pixels of one segment that are 4-connected in the image and
  not separated by a depth jump (both depths valid and ``|za - zb| > depth_jump * min(za, zb)``)
  form a *unit*; so a segment that spans two objects at different depths splits. Two adjacent
  units of the same class join when they touch in the image AND in 3D: at least ``min_contact``
  boundary pixel pairs are depth-consistent and they are not outnumbered by jump pairs; with
  ``convexity`` and normals, a boundary whose consistent pairs are mostly *concave* (LCCP,
  Stein et al. 2014: ``(n_a - n_b) . (P_a - P_b) < -sin(concave_tol_deg) |P_a - P_b|``) does not
  join either: two objects touching side by side meet in a valley, the faces of one convex object
  meet in a ridge. A boundary without valid depth on any pair joins by image contact alone (it
  cannot be told apart), as does everything when there is no depth (RGB-only grouping).
- Groups smaller than ``min_pixels`` or scoring under ``min_score`` are dropped (their pixels get
  instance 0; counted).
- Trained proposals (``per_segment``): MaskFormer query masks are instances already (the panoptic
  assignment of each pixel to one query resolved their overlaps): each thing segment is one
  instance, stuff is merged per class as above.
- Ids 1..N are ordered by class id, then pixel count (largest first), then first pixel in
  raster order: stable within a frame.

Score = the classifier's confidence averaged over the instance's pixels (= area-weighted mean of
its segments' confidences; the same numbers as the segmenter's confidence image).

3D (with depth and K, for instances with at least ``min_valid_depth`` valid depth pixels): points
``(X, Y, Z) = ((u - cx) / fx * z, (v - cy) / fy * z, z)`` in the camera optical frame (x right,
y down, z forward; the formula of :func:`movseg_core.geometry.backproject`, evaluated inline on
the instance's pixels only, tested equal), at most ``max_points`` per instance by a fixed raster
stride. Axis-aligned box: per-axis ``box_percentiles`` (so flying pixels at mask edges do not
blow it up); centroid = its centre. Oriented box: principal axes of the points (PCA, right-handed,
each axis's largest component positive), extents from the same percentiles along them,
orientation as a unit quaternion (x, y, z, w) rotating box axes into the camera frame. Fewer
valid points: ``has_3d`` False and every 3D field None, never made up. Mask, 2D box and 3D box
come from the same instance-map pixels, so they always agree. With ``complete_depth`` (default)
a thing's axis-aligned box reaches behind its visible surface (see :class:`ObjectsConfig`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from numba import njit, prange

from movseg_core._union_find import find, set_ids
from movseg_core.geometry import check_intrinsics
from movseg_core.proposals import _chunks

#: Indoor "stuff": amorphous regions, one instance per class.
DEFAULT_STUFF: tuple[str, ...] = ("wall", "floor", "ceiling", "ground", "carpet", "rug", "window", "door",
                                  "road", "sidewalk", "sky", "grass", "water", "building", "background")
MAX_INSTANCES = 65535  # uint16 instance map


@dataclass
class ObjectsConfig:
    """Instance extraction settings.

    enabled: compute objects in :meth:`Segmenter.segment` at all.
    stuff_queries: query names (case-insensitive) that are stuff: one region per class.
    depth_jump: relative depth change between 4-neighbours that separates objects (0.05 = 5%).
    min_pixels: smallest instance (pixels); smaller groups are dropped and counted.
    min_score: instances whose score is below this are dropped and counted (``low_score``).
    min_contact: boundary pixel pairs two units need in common (depth-consistent ones with depth) to join.
    convexity: refuse joins across concave boundaries (needs normals); concave_tol_deg: tolerance (deg).
    normal_radii: window radii (pixels) of the full-resolution normals the segmenter makes for the
        convexity test when no other stage needs full-resolution normals (its other settings are the
        ``normals`` config's, whose radii serve when another stage needs them too). One radius with the
        shifted windows costs ~60 % of the default two and gave the same objects (docs/segmenter.md).
    complete_depth: things only: a camera sees an object's front, so the axis-aligned box's far
        face is pushed back until its depth (z) extent is at least the smaller of its x and y extents
        (objects are about as deep as they are wide); the centroid follows. Off: the box of the
        visible points only. The oriented box always bounds the visible points only.
    min_valid_depth: valid depth pixels an instance needs for a 3D box.
    box_percentiles: (low, high) percentiles of the points per axis for the 3D boxes.
    max_points: points per instance used for 3D statistics (fixed raster stride above it).
    """

    enabled: bool = True
    stuff_queries: tuple[str, ...] = DEFAULT_STUFF
    depth_jump: float = 0.05
    min_pixels: int = 50
    min_contact: int = 3
    convexity: bool = True
    concave_tol_deg: float = 10.0
    normal_radii: tuple[int, ...] = (8,)
    min_score: float = 0.0
    complete_depth: bool = True
    min_valid_depth: int = 30
    box_percentiles: tuple[float, float] = (2.0, 98.0)
    max_points: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.stuff_queries, str) or not all(isinstance(q, str) for q in self.stuff_queries):
            raise ValueError(f"objects.stuff_queries must be a list of strings, got {self.stuff_queries!r}")
        self.stuff_queries = tuple(self.stuff_queries)
        self.normal_radii = tuple(int(r) for r in self.normal_radii)  # type: ignore[assignment]
        if not self.normal_radii or min(self.normal_radii) < 1:
            raise ValueError(f"objects.normal_radii must be one or more radii >= 1 px, got {self.normal_radii}")
        self.box_percentiles = tuple(float(p) for p in self.box_percentiles)  # type: ignore[assignment]
        lo, hi = self.box_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"objects.box_percentiles must satisfy 0 <= low < high <= 100, got {self.box_percentiles}")
        if not self.depth_jump > 0:
            raise ValueError(f"objects.depth_jump must be > 0 (relative), got {self.depth_jump}")
        for name in ("min_pixels", "min_contact", "min_valid_depth", "max_points"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"objects.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_valid_depth < 4:
            raise ValueError(f"objects.min_valid_depth must be >= 4 (a 3D box needs points), "
                             f"got {self.min_valid_depth}")


@dataclass
class ObjectInstance:
    """One object.

    id: 1..N in the instance map. class_id: query id (1..Q); name: the query. score: classifier
    confidence in [0, 1] averaged over its pixels. is_stuff: a stuff class region.
    box: (x_min, y_min, x_max, y_max) inclusive pixel bounds of its mask. pixels: mask size.
    valid_depth: mask pixels with valid depth. has_3d: enough valid depth for the 3D fields.
    centroid: (3,) metres, camera optical frame = centre of the axis-aligned box
    box_min / box_max: (3,) axis-aligned box corners (m). obb_center (3,), obb_size (3,) full
    extents (m) along the box axes, obb_quat (x, y, z, w): rotation box axes -> camera frame.
    """

    id: int
    class_id: int
    name: str
    score: float
    is_stuff: bool
    box: tuple[int, int, int, int]
    pixels: int
    valid_depth: int = 0
    has_3d: bool = False
    centroid: np.ndarray | None = None
    box_min: np.ndarray | None = None
    box_max: np.ndarray | None = None
    obb_center: np.ndarray | None = None
    obb_size: np.ndarray | None = None
    obb_quat: np.ndarray | None = None

    @property
    def size(self) -> np.ndarray | None:
        """Axis-aligned box extents (3,) in metres, or None without 3D."""
        return None if self.box_min is None else self.box_max - self.box_min


@dataclass
class Objects:
    """A frame's objects: instance_map HxW uint16 (0 = none, i = instances[i-1]); counts: what was
    dropped (``small``: groups under min_pixels, ``small_pixels``: their pixels, ``low_score``: under
    min_score, ``no_3d``: instances
    without enough depth, ``over_limit``: groups beyond 65535); timings_ms: ``group``, ``boxes3d``."""

    instance_map: np.ndarray
    instances: list[ObjectInstance]
    counts: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True, inline="always")
def _is_jump(za, zb, jump):  # noqa: ANN001, ANN202
    return za > 0 and zb > 0 and abs(za - zb) > jump * min(za, zb)


@njit(cache=True, nogil=True, inline="always")
def _pair_kind(y, x, yy, xx, depth, has_depth, jump, nrm, use_convex, sin_tol, fx, fy, cx, cy):  # noqa: ANN001, ANN202
    """Kind of the boundary pair (y, x) - (yy, xx): 0 = no valid depth, 1 = depth-consistent
    convex/flat, 2 = depth jump, 3 = consistent concave (see the module docstring)."""
    kind = 1
    if has_depth:
        za, zb = depth[y, x], depth[yy, xx]
        if not (za > 0 and zb > 0):
            kind = 0
        elif abs(za - zb) > jump * min(za, zb):
            kind = 2
        elif use_convex:
            dx = (x - cx) / fx * za - (xx - cx) / fx * zb
            dy = (y - cy) / fy * za - (yy - cy) / fy * zb
            dz = za - zb
            dn = np.sqrt(dx * dx + dy * dy + dz * dz)
            dot = ((nrm[y, x, 0] - nrm[yy, xx, 0]) * dx + (nrm[y, x, 1] - nrm[yy, xx, 1]) * dy
                   + (nrm[y, x, 2] - nrm[yy, xx, 2]) * dz)
            if dot < -sin_tol * dn:
                kind = 3
    return kind


@njit(cache=True, nogil=True)
def _units(seg, thing, depth, has_depth, jump, cls, nrm, use_convex, sin_tol, fx, fy, cx, cy):  # noqa: ANN001, ANN202
    """Thing pixels of one segment, 4-connected without a depth jump -> units 0..U-1, numbered in
    raster order of their first pixel. Union-find over row runs in one pass. Returns the run map
    (HxW, -1 = not a thing), the unit of each run (``rid``), U, and the boundary pixel pairs
    between different units of the same class, found in the same pass: (a, b, kind) with a < b
    (units) and kind from :func:`_pair_kind`. Pixel unit = ``rid[runs[y, x]]``."""
    h, w = seg.shape
    unit = np.empty((h, w), np.int32)
    parent = np.empty(h * w // 2 + w + 1, np.int32)
    A = np.empty(2 * h * w, np.int32)  # boundary pairs (at most 2 per pixel), as runs until the units are known
    B = np.empty(2 * h * w, np.int32)
    Kd = np.empty(2 * h * w, np.int8)
    m = 0
    n_runs = 0
    for y in range(h):
        x = 0
        while x < w:
            s = seg[y, x]
            if not thing[s]:
                unit[y, x] = -1
                x += 1
                continue
            r = n_runs  # a new run
            parent[r] = r
            n_runs += 1
            if n_runs >= parent.size:  # cannot happen for runs of >= 2 px; grow for 1-px runs
                grown = np.empty(parent.size * 2, np.int32)
                grown[:n_runs] = parent[:n_runs]
                parent = grown
            last_above = -1
            while True:
                unit[y, x] = r
                if y > 0:
                    above = unit[y - 1, x]
                    if seg[y - 1, x] == s:
                        jumps = has_depth and _is_jump(depth[y - 1, x], depth[y, x], jump)
                        if jumps:  # same segment across a jump: maybe two units
                            A[m], B[m], Kd[m] = above, r, 2
                            m += 1
                        elif above != last_above:
                            ra, rb = find(parent, above), find(parent, r)
                            if ra != rb:
                                parent[max(ra, rb)] = min(ra, rb)
                            last_above = above
                    elif above >= 0 and cls[seg[y - 1, x]] == cls[s]:
                        A[m], B[m] = above, r
                        Kd[m] = _pair_kind(y - 1, x, y, x, depth, has_depth, jump, nrm, use_convex, sin_tol,
                                           fx, fy, cx, cy)
                        m += 1
                if x + 1 >= w:
                    x += 1
                    break
                s2 = seg[y, x + 1]
                if s2 != s or (has_depth and _is_jump(depth[y, x], depth[y, x + 1], jump)):
                    if thing[s2] and cls[s2] == cls[s]:  # the next run starts at x + 1: id n_runs
                        A[m], B[m] = r, n_runs
                        Kd[m] = _pair_kind(y, x, y, x + 1, depth, has_depth, jump, nrm, use_convex, sin_tol,
                                           fx, fy, cx, cy)
                        m += 1
                    x += 1
                    break
                x += 1
    # resolve runs to roots, number the roots in raster order (a root is its set's first run)
    rid, n = set_ids(parent, n_runs)
    k = 0
    for i in range(m):  # pairs of runs -> pairs of different units
        ua, ub = rid[A[i]], rid[B[i]]
        if ua != ub:
            A[k], B[k], Kd[k] = min(ua, ub), max(ua, ub), Kd[i]
            k += 1
    return unit, rid, n, A[:k].copy(), B[:k].copy(), Kd[:k].copy()


@njit(cache=True, nogil=True)
def _join(n, a, b):  # noqa: ANN001, ANN202
    """Connected components of n nodes joined by the pairs (a[k], b[k]): component per node,
    numbered 0.. in the order of each component's smallest node (int32 (n,))."""
    parent = np.arange(n, dtype=np.int64)
    for k in range(a.size):
        ra, rb = find(parent, a[k]), find(parent, b[k])
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return set_ids(parent, n)[0]


@njit(cache=True, nogil=True)
def _span(runs, seg, run_map, seg_map, y, x0):  # noqa: ANN001, ANN202
    """``(end, value)``: pixels ``x0..end-1`` of row ``y`` all map to ``value`` (``run_map[run]`` on a run
    pixel, ``seg_map[segment]`` elsewhere) and pixel ``end`` (if any) maps to another value. The map is
    looked up only where the run or segment changes."""
    w = runs.shape[1]
    r = runs[y, x0]
    v = run_map[r] if r >= 0 else seg_map[seg[y, x0]]
    s = seg[y, x0]
    x = x0 + 1
    while x < w:
        r2 = runs[y, x]
        if not (r2 == r and (r >= 0 or seg[y, x] == s)):  # else: same run / segment, same value
            if (run_map[r2] if r2 >= 0 else seg_map[seg[y, x]]) != v:
                break
            r, s = r2, seg[y, x]
        x += 1
    return x, v


@njit(cache=True, nogil=True, parallel=True)
def _group_stats(runs, run_group, seg, seg_group, conf, depth, has_depth, n, chunks):  # noqa: ANN001, ANN202
    """Per group (``run_group[run]`` for things, ``seg_group[seg]`` otherwise, -1 = none): pixels,
    confidence sum, valid depth pixels, box (x0, y0, x1, y1), first raster index; and the valid
    depth pixels per row band (``chunks`` x n, for :func:`_paint_and_gather`). Bands of rows are
    computed in parallel and merged in band order: every figure but the confidence sum (summed
    band by band, equal to ~1e-15 relative) is independent of ``chunks``."""
    h, w = runs.shape
    band = (h + chunks - 1) // chunks
    cnt_b = np.zeros((chunks, n), np.int64)
    csum_b = np.zeros((chunks, n), np.float64)
    nval_b = np.zeros((chunks, n), np.int64)
    box_b = np.empty((chunks, n, 4), np.int32)
    first_b = np.full((chunks, n), -1, np.int64)
    for c in prange(chunks):
        cnt, csum, nval, box, first = cnt_b[c], csum_b[c], nval_b[c], box_b[c], first_b[c]
        box[:, 0] = w
        box[:, 1] = h
        box[:, 2] = -1
        box[:, 3] = -1
        for y in range(c * band, min(h, c * band + band)):
            x = 0
            while x < w:  # one span of pixels of one group at a time, its sums kept in registers
                x0 = x
                x, g = _span(runs, seg, run_group, seg_group, y, x0)
                if g < 0:
                    continue
                if cnt[g] == 0:
                    first[g] = y * w + x0
                    box[g, 1] = y
                cs = csum[g]
                nv = 0
                for xx in range(x0, x):
                    cs += conf[seg[y, xx]]  # pixel by pixel, in raster order as before
                    if has_depth and depth[y, xx] > 0:
                        nv += 1
                csum[g] = cs
                nval[g] += nv
                cnt[g] += x - x0
                if x0 < box[g, 0]:
                    box[g, 0] = x0
                if x - 1 > box[g, 2]:
                    box[g, 2] = x - 1
                box[g, 3] = y  # rows ascend
    cnt = np.zeros(n, np.int64)
    csum = np.zeros(n, np.float64)
    nval = np.zeros(n, np.int64)
    box = np.empty((n, 4), np.int32)
    first = np.full(n, -1, np.int64)
    for g in range(n):
        box[g, 0], box[g, 1], box[g, 2], box[g, 3] = w, h, -1, -1
        for c in range(chunks):
            if cnt_b[c, g] == 0:
                continue
            if cnt[g] == 0:
                first[g] = first_b[c, g]
                csum[g] = csum_b[c, g]
            else:
                csum[g] += csum_b[c, g]
            cnt[g] += cnt_b[c, g]
            nval[g] += nval_b[c, g]
            box[g, 0] = min(box[g, 0], box_b[c, g, 0])
            box[g, 1] = min(box[g, 1], box_b[c, g, 1])
            box[g, 2] = max(box[g, 2], box_b[c, g, 2])
            box[g, 3] = max(box[g, 3], box_b[c, g, 3])
    return cnt, csum, nval, box, first, nval_b


@njit(cache=True, nogil=True, parallel=True)
def _paint_and_gather(runs, run_id, seg, seg_id, depth, has_depth, stride, offsets, seen0, fx, fy, cx, cy):  # noqa: ANN001, ANN202
    """Instance map (``run_id[run]`` for things, ``seg_id[seg]`` otherwise; 0 = none); every
    ``stride[id]``-th valid-depth pixel of each instance (raster order) back-projected into
    ``pts[offsets[id-1]:offsets[id]]``. Row bands (``seen0``: chunks x N+1, the valid-depth pixels
    of each instance in the bands above, from :func:`_group_stats`) run in parallel: the k-th
    valid pixel of instance i (raster order) goes to row ``offsets[i-1] + k // stride[i]`` when k is
    a multiple of the stride, whatever the number of bands."""
    h, w = runs.shape
    chunks = seen0.shape[0]
    band = (h + chunks - 1) // chunks
    inst = np.empty((h, w), np.uint16)
    pts = np.empty((offsets[-1], 3), np.float64)
    for c in prange(chunks):
        seen = seen0[c].copy()
        for y in range(c * band, min(h, c * band + band)):
            x = 0
            while x < w:  # one span of one instance at a time
                x0 = x
                x, i = _span(runs, seg, run_id, seg_id, y, x0)
                inst[y, x0:x] = i
                if i == 0 or not has_depth or stride[i] == 0:
                    continue
                k, st, off = seen[i], stride[i], offsets[i - 1]
                for xx in range(x0, x):
                    z = depth[y, xx]
                    if not z > 0:
                        continue
                    if k % st == 0:
                        j = off + k // st
                        pts[j, 0] = (xx - cx) / fx * z
                        pts[j, 1] = (y - cy) / fy * z
                        pts[j, 2] = z
                    k += 1
                seen[i] = k
    return inst, pts


@njit(cache=True, nogil=True)
def _inlier_moments(pts, offsets, ok, box):  # noqa: ANN001, ANN202
    """Per instance i (where ok[i]): mean (3,) and covariance (3x3) of its points inside box[i] (2x3)."""
    n = offsets.size
    mean = np.zeros((n, 3))
    cov = np.zeros((n, 3, 3))
    for i in range(1, n):
        if not ok[i]:
            continue
        m = 0
        s = np.zeros(3)
        for r in range(offsets[i - 1], offsets[i]):
            if (box[i, 0, 0] <= pts[r, 0] <= box[i, 1, 0] and box[i, 0, 1] <= pts[r, 1] <= box[i, 1, 1]
                    and box[i, 0, 2] <= pts[r, 2] <= box[i, 1, 2]):
                m += 1
                for a in range(3):
                    s[a] += pts[r, a]
        m = max(m, 1)
        for a in range(3):
            mean[i, a] = s[a] / m
        c = np.zeros((3, 3))
        for r in range(offsets[i - 1], offsets[i]):
            if (box[i, 0, 0] <= pts[r, 0] <= box[i, 1, 0] and box[i, 0, 1] <= pts[r, 1] <= box[i, 1, 1]
                    and box[i, 0, 2] <= pts[r, 2] <= box[i, 1, 2]):
                for a in range(3):
                    for b in range(a, 3):
                        c[a, b] += (pts[r, a] - mean[i, a]) * (pts[r, b] - mean[i, b])
        for a in range(3):
            for b in range(a, 3):
                cov[i, a, b] = cov[i, b, a] = c[a, b] / max(m - 1, 1)
    return mean, cov


@njit(cache=True, nogil=True)
def _to_local(pts, offsets, ok, mean, R):  # noqa: ANN001, ANN202
    """Points in their instance's box frame: ``(p - mean[i]) @ R[i]`` (M x 3)."""
    out = np.zeros(pts.shape)
    for i in range(1, offsets.size):
        if not ok[i]:
            continue
        for r in range(offsets[i - 1], offsets[i]):
            for k in range(3):
                out[r, k] = ((pts[r, 0] - mean[i, 0]) * R[i, 0, k] + (pts[r, 1] - mean[i, 1]) * R[i, 1, k]
                             + (pts[r, 2] - mean[i, 2]) * R[i, 2, k])
    return out


# ------------------------------------------------------------------------------------- helpers


def prepare_objects() -> float:
    """Load (first run after an install: compile, ~10 s) the compiled kernels now, so that the first
    frame is not slow. Returns the seconds it took."""
    t0 = time.perf_counter()
    seg = np.zeros((16, 16), np.int32)
    seg[4:12, 4:8], seg[4:12, 8:12] = 1, 2
    depth = np.full((16, 16), 2.0, np.float32)
    depth[:, 8:] = 1.0
    normals = np.zeros((16, 16, 3), np.float32)
    normals[..., 2] = -1
    K = np.array([[20.0, 0, 7.5], [0, 20.0, 7.5], [0, 0, 1]])
    cfg = ObjectsConfig(min_pixels=1, min_valid_depth=4)
    for d, n in ((depth, normals), (None, None)):
        extract_objects(seg, np.array([1, 2, 2]), np.ones(3), ("wall", "mug"), d, K if d is not None else None, n, cfg)
    _join(2, np.zeros(1, np.int64), np.ones(1, np.int64))  # the two mugs above are never joined
    return time.perf_counter() - t0


def _principal_axes(cov: np.ndarray) -> np.ndarray:
    """Rotation matrices Nx3x3 whose columns are the principal axes (major first) of covariances
    Nx3x3, each of the first two with its largest-magnitude component positive, third = their cross."""
    _, vec = np.linalg.eigh(cov)  # ascending eigenvalues
    R = vec[:, :, ::-1].copy()
    for k in range(2):
        col = R[:, :, k]
        big = col[np.arange(len(col)), np.argmax(np.abs(col), axis=1)]
        R[:, :, k] *= np.where(big < 0, -1.0, 1.0)[:, None]
    R[:, :, 2] = np.cross(R[:, :, 0], R[:, :, 1])
    return R


def _segment_percentiles(vals: np.ndarray, owner: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
                         qs: Sequence[float]) -> list[np.ndarray]:
    """Percentiles (linear interpolation, numpy's default) of ``vals`` (C x M) within each block
    ``offsets[i-1]:offsets[i]`` (``owner`` = block per column, non-decreasing) for blocks ``rows``:
    one sort of all blocks at once (each block shifted apart). Returns one (len(rows), C) per q."""
    span = float(np.abs(vals).max()) * 2 + 1.0 if vals.size else 1.0
    shift = owner.astype(np.float64) * span
    srt = np.sort(vals + shift, axis=1) - shift
    start, n = offsets[rows - 1], offsets[rows] - offsets[rows - 1]
    out = []
    for q in qs:
        pos = q / 100.0 * (n - 1)
        i0 = np.floor(pos).astype(np.int64)
        i1 = np.minimum(i0 + 1, n - 1)
        f = (pos - i0)[None]
        out.append((srt[:, start + i0] * (1 - f) + srt[:, start + i1] * f).T)
    return out


def _boxes_batch(pts: np.ndarray, offsets: np.ndarray, ok: np.ndarray,
                 percentiles: tuple[float, float]) -> dict[str, np.ndarray]:
    """:func:`boxes_3d` for every instance at once, vectorised (row i = instance i; rows without
    ``ok`` are NaN). pts: M x 3, instance i's points at ``offsets[i-1]:offsets[i]``."""
    n = offsets.size
    res = {k: np.full((n, 3), np.nan) for k in ("box_min", "box_max", "centroid", "obb_center", "obb_size")}
    res["obb_quat"] = np.full((n, 4), np.nan)
    rows = np.nonzero(ok)[0]
    if rows.size == 0:
        return res
    counts = np.diff(offsets)
    owner = np.repeat(np.arange(1, n), counts)
    lo, hi = percentiles
    bmin, bmax = _segment_percentiles(pts.T, owner, offsets, rows, (lo, hi))
    full = np.full((n, 2, 3), np.nan)
    full[rows, 0], full[rows, 1] = bmin, bmax
    mean, cov = _inlier_moments(pts, offsets, ok, full)  # axes from the points inside the box
    R = _principal_axes(cov[rows])
    full_R = np.zeros((n, 3, 3))
    full_R[rows] = R
    local = _to_local(pts, offsets, ok, mean, full_R)
    mean = mean[rows]
    lmin, lmax = _segment_percentiles(local.T, owner, offsets, rows, (lo, hi))
    res["box_min"][rows], res["box_max"][rows], res["centroid"][rows] = bmin, bmax, (bmin + bmax) / 2
    res["obb_center"][rows] = mean + np.einsum("nij,nj->ni", R, (lmin + lmax) / 2)
    res["obb_size"][rows] = lmax - lmin
    res["obb_quat"][rows] = np.array([_quat_from_matrix(r) for r in R])
    return res


def _quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w), w >= 0, of a proper rotation matrix R (3x3)."""
    t = np.trace(R)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = np.array([(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s])
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = np.array([0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s])
    elif R[1, 1] > R[2, 2]:
        s = np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = np.array([(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s])
    else:
        s = np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = np.array([(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s])
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def quat_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix 3x3 of a quaternion (x, y, z, w)."""
    x, y, z, w = (float(v) for v in q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def boxes_3d(points: np.ndarray, percentiles: tuple[float, float]) -> dict[str, np.ndarray]:
    """3D boxes of points Nx3 (camera frame, metres): axis-aligned ``box_min``/``box_max`` (per-axis
    percentiles), ``centroid`` (its centre), and the PCA-oriented ``obb_center``/``obb_size``/``obb_quat``
    (axes from the points inside the axis-aligned box, extents from percentiles along them).
    The reference for the vectorised per-frame version."""
    lo, hi = percentiles
    p = np.asarray(points, np.float64)
    bmin, bmax = np.percentile(p, [lo, hi], axis=0)
    inside = p[np.all((p >= bmin) & (p <= bmax), axis=1)]  # axes from the points inside the percentile box
    c = inside.mean(0)
    cov = np.cov((inside - c).T) if len(inside) > 1 else np.zeros((3, 3))
    R = _principal_axes(cov[None])[0]
    local = (p - c) @ R
    lmin, lmax = np.percentile(local, [lo, hi], axis=0)
    return {"box_min": bmin, "box_max": bmax, "centroid": (bmin + bmax) / 2,
            "obb_center": c + R @ ((lmin + lmax) / 2), "obb_size": lmax - lmin, "obb_quat": _quat_from_matrix(R)}


def _check(segments, seg_labels, seg_conf, names, depth, K, normals):  # noqa: ANN001, ANN202
    segments = np.asarray(segments)
    if segments.ndim != 2 or not np.issubdtype(segments.dtype, np.integer):
        raise ValueError(f"segments must be an HxW integer map, got {segments.dtype} {segments.shape}")
    seg_labels = np.asarray(seg_labels).astype(np.int64).ravel()
    seg_conf = np.asarray(seg_conf, np.float64).ravel()
    n_seg = int(segments.max()) + 1 if segments.size else 0
    if segments.size and segments.min() < 0:
        raise ValueError("segments must be >= 0")
    if seg_labels.size < n_seg or seg_conf.size != seg_labels.size:
        raise ValueError(f"need one label and one confidence per segment: {n_seg} segments, "
                         f"{seg_labels.size} labels, {seg_conf.size} confidences")
    if seg_labels.size and (seg_labels.min() < 0 or seg_labels.max() > len(names)):
        raise ValueError(f"segment labels {seg_labels.min()}..{seg_labels.max()} outside 0..{len(names)}")
    h, w = segments.shape
    if depth is not None:
        depth = np.asarray(depth)
        if depth.shape != (h, w) or not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(f"depth must be HxW float metres matching segments {(h, w)}, "
                             f"got {depth.dtype} {depth.shape}")
        depth = np.ascontiguousarray(depth, np.float32)
        bad = ~np.isfinite(depth)
        if bad.any():  # NaN / inf -> 0 (invalid); the kernels treat depth <= 0 as invalid themselves
            depth = np.where(bad, np.float32(0), depth)
    if K is not None:
        K = check_intrinsics(K)
    if normals is not None:
        normals = np.asarray(normals, np.float32)
        if normals.shape != (h, w, 3):
            raise ValueError(f"normals must be HxWx3 matching segments {(h, w)}, got {normals.shape}")
    return np.ascontiguousarray(segments, np.int32), seg_labels, seg_conf, depth, K, normals


def extract_objects(segments: np.ndarray, seg_labels: np.ndarray, seg_conf: np.ndarray, names: Sequence[str],
                    depth: np.ndarray | None = None, K: np.ndarray | None = None, normals: np.ndarray | None = None,
                    cfg: ObjectsConfig = ObjectsConfig(), per_segment: bool = False) -> Objects:
    """Instances with 2D and 3D boxes from a labelled segmentation (see the module docstring).

    segments: HxW int (0..S-1). seg_labels: (S,) class per segment (0 = unknown, i = ``names[i-1]``).
    seg_conf: (S,) classifier confidence per segment in [0, 1]. depth: HxW float metres (0/NaN =
    invalid) or None (RGB-only grouping, no 3D). K: 3x3 (needed for 3D boxes and convexity).
    normals: HxWx3 unit camera-frame normals (0 = invalid) for the convexity test, or None.
    per_segment: each thing segment is one instance, never split or joined (the trained path, whose
    segments are MaskFormer query masks after its overlap-resolving panoptic assignment).
    """
    t0 = time.perf_counter()
    segments, seg_labels, seg_conf, depth, K, normals = _check(segments, seg_labels, seg_conf, names, depth, K, normals)
    h, w = segments.shape
    stuff_names = {q.casefold() for q in cfg.stuff_queries}
    cls_stuff = np.array([False] + [n.casefold() in stuff_names for n in names])
    seg_thing = (seg_labels > 0) & ~cls_stuff[seg_labels]
    has_depth = depth is not None
    dmap = depth if has_depth else np.zeros((1, 1), np.float32)
    # units (each thing segment, or its parts split by depth jumps), and the pixel pairs on their
    # boundaries: units join below where they touch in the image and in 3D
    use_convex = bool(cfg.convexity and has_depth and normals is not None and K is not None)
    Kf = K if K is not None else np.eye(3)
    fx, fy, cx, cy = float(Kf[0, 0]), float(Kf[1, 1]), float(Kf[0, 2]), float(Kf[1, 2])
    nrm = normals if use_convex else np.zeros((1, 1, 3), np.float32)
    if per_segment:  # trained proposals: each query mask is one instance, kept apart
        used = np.unique(segments[seg_thing[segments]]) if seg_thing.any() else np.zeros(0, np.int64)
        seg_unit = np.full(seg_labels.size, -1, np.int32)
        seg_unit[used] = np.arange(used.size, dtype=np.int32)
        runs, n_units = seg_unit[segments], int(used.size)
        rid = np.arange(n_units, dtype=np.int32)
        a, b, kind = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int8)
    else:
        runs, rid, n_units, a, b, kind = _units(segments, seg_thing, dmap, has_depth, float(cfg.depth_jump), seg_labels,
                                                nrm, use_convex, float(np.sin(np.deg2rad(cfg.concave_tol_deg))),
                                                fx, fy, cx, cy)
    comp = np.arange(n_units)
    if a.size:
        key = a.astype(np.int64) * n_units + b
        uk, inv = np.unique(key, return_inverse=True)
        per = np.zeros((uk.size, 4), np.int64)
        np.add.at(per, (inv, kind.astype(np.int64)), 1)
        unknown, convex, jumps, concave = per.T
        consistent = convex + concave
        join = np.where(consistent + jumps > 0,
                        (consistent >= cfg.min_contact) & (consistent >= jumps) & (concave * 2 <= consistent),
                        unknown >= cfg.min_contact)
        ja, jb = (uk[join] // n_units), (uk[join] % n_units)
        if ja.size:
            comp = _join(n_units, ja, jb)
    n_comp = int(comp.max()) + 1 if n_units else 0

    # group map: thing components 0..n_comp-1, then one group per stuff class
    stuff_ids = np.nonzero(cls_stuff)[0]
    seg_group = np.full(seg_labels.size, -1, np.int64)
    stuff_seg = (seg_labels > 0) & cls_stuff[seg_labels]
    stuff_index = np.full(len(names) + 1, -1, np.int64)
    stuff_index[stuff_ids] = np.arange(stuff_ids.size)
    seg_group[stuff_seg] = n_comp + stuff_index[seg_labels[stuff_seg]]
    n_groups = n_comp + stuff_ids.size
    run_group = np.asarray(comp, np.int64)[rid] if rid.size else np.zeros(0, np.int64)
    chunks = _chunks()
    cnt, csum, nval, box, first, nval_band = _group_stats(runs, run_group, segments, seg_group, seg_conf, dmap,
                                                          has_depth, n_groups, chunks)
    # class per group: from any of its pixels
    gcls = np.zeros(n_groups, np.int64)
    seen = cnt > 0
    gcls[seen] = seg_labels[segments.ravel()[first[seen]]]

    # keep, order and number
    keep = cnt >= cfg.min_pixels
    score = csum / np.maximum(cnt, 1)
    confident = score >= cfg.min_score
    counts = {"small": int((seen & ~keep).sum()), "small_pixels": int(cnt[seen & ~keep].sum()),
              "low_score": int((seen & keep & ~confident).sum()), "no_3d": 0, "over_limit": 0}
    keep &= confident
    idx = np.nonzero(keep)[0]
    idx = idx[np.lexsort((first[idx], -cnt[idx], gcls[idx]))]
    if idx.size > MAX_INSTANCES:
        counts["over_limit"] = int(idx.size - MAX_INSTANCES)
        by_size = idx[np.argsort(-cnt[idx], kind="stable")[:MAX_INSTANCES]]
        idx = idx[np.isin(idx, by_size)]
    lut = np.zeros(n_groups, np.int64)
    lut[idx] = np.arange(1, idx.size + 1)
    t1 = time.perf_counter()

    # 3D
    lo_hi = cfg.box_percentiles
    want3d = has_depth and K is not None
    ok3d = np.zeros(idx.size + 1, bool)
    ok3d[1:] = want3d & (nval[idx] >= cfg.min_valid_depth)
    stride = np.zeros(idx.size + 1, np.int64)
    stride[1:] = np.where(ok3d[1:], -(-nval[idx] // cfg.max_points), 0)
    take = np.zeros(idx.size + 1, np.int64)
    take[1:] = np.where(ok3d[1:], -(-nval[idx] // np.maximum(stride[1:], 1)), 0)
    offsets = np.cumsum(take)
    run_id = lut[run_group] if run_group.size else np.zeros(0, np.int64)
    seg_id = np.where(seg_group >= 0, lut[np.maximum(seg_group, 0)] if n_groups else 0, 0)
    seen0 = np.zeros((chunks, idx.size + 1), np.int64)  # valid depth of each instance in the bands above
    seen0[1:, 1:] = np.cumsum(nval_band[:-1, idx], axis=0)
    inst, pts3 = _paint_and_gather(runs, run_id, segments, seg_id, dmap, want3d, stride, offsets, seen0,
                                   fx, fy, cx, cy)
    boxes = _boxes_batch(pts3, offsets, ok3d, lo_hi)
    if cfg.complete_depth and idx.size:
        thing = np.zeros(idx.size + 1, bool)
        thing[1:] = ~cls_stuff[gcls[idx]]
        bmin, bmax = boxes["box_min"], boxes["box_max"]
        ext = bmax - bmin
        far = np.where(thing, np.maximum(bmax[:, 2], bmin[:, 2] + np.minimum(ext[:, 0], ext[:, 1])), bmax[:, 2])
        bmax[:, 2] = far
        boxes["centroid"] = (bmin + bmax) / 2
    out: list[ObjectInstance] = []
    for i, g in enumerate(idx.tolist(), start=1):
        c = int(gcls[g])
        rec = ObjectInstance(id=i, class_id=c, name=names[c - 1], score=float(score[g]),
                             is_stuff=bool(cls_stuff[c]), box=tuple(int(v) for v in box[g]), pixels=int(cnt[g]),
                             valid_depth=int(nval[g]))
        if ok3d[i]:
            for k, v in boxes.items():
                setattr(rec, k, v[i])
            rec.has_3d = True
        elif want3d:
            counts["no_3d"] += 1
        out.append(rec)
    t2 = time.perf_counter()
    return Objects(inst, out, counts, {"group": (t1 - t0) * 1e3, "boxes3d": (t2 - t1) * 1e3})
