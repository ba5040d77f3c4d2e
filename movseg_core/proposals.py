"""Training-free class-agnostic proposals from colour, depth and surface normals.

Two steps, both on a reduced working resolution and upsampled at the end:

1. Over-segmentation by Felzenszwalb-Huttenlocher graph merging (OpenCV ximgproc) on a feature
   image that stacks CIE-Lab colour with log-depth and the normal vector, so a depth step or a
   crease splits regions even where colour does not change (log-depth: a jump is relative, as
   Kinect noise is).
2. Greedy region-adjacency merging down to ``max_segments``: the cheapest adjacent pair merges
   first; the cost adds colour distance, normal angle between region mean normals, and the share
   of their shared boundary that is a depth discontinuity, scaled so small regions merge first.

RGB-only mode (``depth is None``) uses colour alone in both steps, for comparison.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import cv2
import numpy as np


PROPOSAL_METHODS = ("graph", "trained")


@dataclass
class ProposalConfig:
    """Proposal settings.

    method: ``graph`` (training-free, below) or ``trained`` (an exported MOVSeg RGB+X MaskFormer,
        ``movseg export``, at ``checkpoint``; its proposal embeddings join the classification
        through the FrozenSeg class ensemble). trained_short_side: its input short side (pixels).
    max_segments: granularity knob: at most this many segments per frame.
    work_width: processing width in pixels (aspect kept); segments are upsampled to the input.
    fh_sigma, fh_k, fh_min_size: Felzenszwalb over-segmentation (smoothing, scale, minimum size in
        working pixels).
    color_weight: scale of the Lab channels (Lab units) in the feature image and the merge cost.
    depth_weight: log-depth scale in the feature image (0.05 in log-depth, i.e. a 5% jump, counts
        like this many Lab units... per unit of log-depth).
    normal_weight: normal-vector scale in the feature image (unit normals).
    jump_rel: relative depth change between neighbours that counts as a discontinuity.
    merge_depth: merge-cost weight of the discontinuous share of a shared boundary.
    merge_normal: merge-cost weight of (1 - cos angle) between region mean normals.
    """

    method: str = "graph"
    checkpoint: str = ""
    trained_short_side: int = 480
    max_segments: int = 48
    work_width: int = 320
    fh_sigma: float = 0.5
    fh_k: float = 150.0
    fh_min_size: int = 40
    color_weight: float = 1.0
    depth_weight: float = 75.0
    normal_weight: float = 7.5
    jump_rel: float = 0.04
    merge_depth: float = 40.0
    merge_normal: float = 40.0

    def __post_init__(self) -> None:
        if self.method not in PROPOSAL_METHODS:
            raise ValueError(f"proposals.method must be one of {PROPOSAL_METHODS}, got {self.method!r}")
        if self.method == "trained" and not self.checkpoint:
            raise ValueError("proposals.method 'trained' needs proposals.checkpoint (a `movseg export` file)")
        if self.max_segments < 1:
            raise ValueError(f"proposals.max_segments must be >= 1, got {self.max_segments}")
        if self.work_width < 16:
            raise ValueError(f"proposals.work_width must be >= 16 px, got {self.work_width}")


def _check_inputs(rgb, depth, normals, valid) -> tuple[int, int]:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb: expected HxWx3 uint8, got {getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}")
    h, w = rgb.shape[:2]
    for name, arr, shape in (("depth", depth, (h, w)), ("normals", normals, (h, w, 3)), ("valid", valid, (h, w))):
        if arr is None:
            continue
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name}: expected a numpy array, got {type(arr).__name__}")
        if arr.shape != shape:
            raise ValueError(f"{name}: shape {arr.shape} does not match rgb (expected {shape})")
    if depth is not None and not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth: expected float metres, got {depth.dtype}")
    return h, w


def _fill_invalid(x: np.ndarray, ok: np.ndarray, iters: int = 4) -> np.ndarray:
    """Fill invalid pixels with a normalised blur of valid neighbours (holes must not look like edges)."""
    out = np.where(ok[..., None] if x.ndim == 3 else ok, x, 0).astype(np.float32)
    weight = ok.astype(np.float32)
    filled = out.copy()
    k = 5
    for _ in range(iters):
        num = cv2.blur(out, (k, k))
        den = cv2.blur(weight, (k, k))
        den_b = den[..., None] if x.ndim == 3 else den
        hole = ~ok
        est = np.divide(num, np.maximum(den_b, 1e-6))
        m = hole & (den > 1e-6)
        filled[m] = est[m]
        k *= 2
        if m.sum() == hole.sum():
            break
    return filled


def _features(rgb, depth, normals, valid, cfg: ProposalConfig) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Feature image (h, w, C) float32 at working size; also log-depth and unit normals (or None)."""
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab) * cfg.color_weight
    chans = [lab]
    logz = n = None
    if depth is not None:
        ok = np.isfinite(depth) & (depth > 0)
        if valid is not None:
            ok &= valid.astype(bool)
        if ok.any():
            logz = _fill_invalid(np.log(np.where(ok, depth, 1.0)), ok)
            chans.append((logz * cfg.depth_weight)[..., None])
            if normals is not None:
                nok = ok & (np.abs(normals).sum(-1) > 0)
                n = _fill_invalid(np.nan_to_num(normals.astype(np.float32)), nok)
                n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
                chans.append(n * cfg.normal_weight)
    return np.ascontiguousarray(np.concatenate(chans, axis=-1), dtype=np.float32), logz, n


def _region_adjacency(labels: np.ndarray, logz: np.ndarray | None, jump_rel: float):
    """Adjacent region pairs (a < b) with shared boundary length and count of depth-jump pixels."""
    pairs, jumps = [], []
    for a, b, za, zb in ((labels[:, :-1], labels[:, 1:], None, None), (labels[:-1], labels[1:], None, None)):
        diff = a != b
        lo = np.minimum(a, b)[diff]
        hi = np.maximum(a, b)[diff]
        pairs.append(lo.astype(np.int64) * (labels.max() + 1) + hi)
        if logz is not None:
            if a.shape[1] < labels.shape[1]:
                dz = np.abs(logz[:, :-1] - logz[:, 1:])[diff]
            else:
                dz = np.abs(logz[:-1] - logz[1:])[diff]
            jumps.append(dz > np.log1p(jump_rel))
    keys = np.concatenate(pairs)
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    jump_counts = np.bincount(inv, weights=np.concatenate(jumps), minlength=uniq.size) if jumps else np.zeros(uniq.size)
    n = labels.max() + 1
    return uniq // n, uniq % n, counts.astype(np.float64), jump_counts


def _merge(labels: np.ndarray, lab: np.ndarray, logz, normals, cfg: ProposalConfig) -> np.ndarray:
    """Greedy adjacency merging to at most cfg.max_segments regions; returns relabelled 0..S-1."""
    R = int(labels.max()) + 1
    if R <= cfg.max_segments:
        return labels
    flat = labels.ravel()
    area = np.bincount(flat, minlength=R).astype(np.float64)
    col_sum = np.stack([np.bincount(flat, weights=lab[..., c].ravel(), minlength=R) for c in range(3)], 1)
    nrm_sum = (np.stack([np.bincount(flat, weights=normals[..., c].ravel(), minlength=R) for c in range(3)], 1)
               if normals is not None else None)
    a_idx, b_idx, blen, bjump = _region_adjacency(labels, logz, cfg.jump_rel)
    edges: dict[int, dict[int, list[float]]] = {i: {} for i in range(R)}
    for a, b, l, j in zip(a_idx.tolist(), b_idx.tolist(), blen.tolist(), bjump.tolist()):
        edges[a][b] = edges[b][a] = [l, j]
    mean_area = float(area.sum()) / cfg.max_segments
    # Region statistics as Python lists: cost() runs thousands of times on 3-vectors, where numpy's
    # per-call overhead dominates.
    area_l: list[float] = area.tolist()
    col_l: list[list[float]] = col_sum.tolist()
    nrm_l: list[list[float]] | None = nrm_sum.tolist() if nrm_sum is not None else None
    use_depth = logz is not None

    def cost(i: int, j: int) -> float:
        l, jmp = edges[i][j]
        ai, aj = area_l[i], area_l[j]
        ci, cj = col_l[i], col_l[j]
        c = math.sqrt(sum((ci[k] / ai - cj[k] / aj) ** 2 for k in range(3))) / cfg.color_weight
        if use_depth:
            c += cfg.merge_depth * (jmp / l)
        if nrm_l is not None:
            ni, nj = nrm_l[i], nrm_l[j]
            dot = ni[0] * nj[0] + ni[1] * nj[1] + ni[2] * nj[2]
            norms = math.sqrt(ni[0] ** 2 + ni[1] ** 2 + ni[2] ** 2) * math.sqrt(nj[0] ** 2 + nj[1] ** 2 + nj[2] ** 2)
            c += cfg.merge_normal * (1.0 - dot / max(norms, 1e-9))
        return c * math.sqrt(min(ai, aj) / mean_area)  # small regions merge first

    parent = list(range(R))
    version = [0] * R  # bumped on every merge: heap entries carry the versions they were costed at
    alive = R
    heap = [(cost(a, b), a, b, 0, 0) for a in range(R) for b in edges[a] if a < b]
    heapq.heapify(heap)
    while alive > cfg.max_segments and heap:
        c, a, b, va, vb = heapq.heappop(heap)
        if parent[a] != a or parent[b] != b or va != version[a] or vb != version[b]:
            continue  # stale entry
        # merge b into a
        parent[b] = a
        area_l[a] += area_l[b]
        col_l[a] = [x + y for x, y in zip(col_l[a], col_l[b])]
        if nrm_l is not None:
            nrm_l[a] = [x + y for x, y in zip(nrm_l[a], nrm_l[b])]
        for k, (l, j) in edges.pop(b).items():
            if k == a:
                continue
            del edges[k][b]
            if k in edges[a]:
                edges[a][k][0] += l
                edges[a][k][1] += j
            else:
                edges[a][k] = [l, j]
            edges[k][a] = edges[a][k]
        edges[a].pop(b, None)
        version[a] += 1
        alive -= 1
        for k in edges[a]:
            heapq.heappush(heap, (cost(a, k), min(a, k), max(a, k), version[min(a, k)], version[max(a, k)]))
    # resolve parents and relabel densely
    for i in range(R):
        r = i
        while parent[r] != r:
            r = parent[r]
        parent[i] = r
    _, dense = np.unique(np.asarray(parent), return_inverse=True)
    return dense[labels]


def propose(rgb: np.ndarray, depth: np.ndarray | None = None, normals: np.ndarray | None = None,
            valid: np.ndarray | None = None, cfg: ProposalConfig = ProposalConfig()) -> np.ndarray:
    """Class-agnostic segments of an RGB(-D) frame.

    rgb: HxWx3 uint8. depth: HxW float metres (0/NaN invalid) or None for RGB-only. normals: HxWx3
    unit camera-frame normals (0 where invalid) or None. valid: HxW bool depth validity or None.
    Returns HxW int32 segment ids 0..S-1 with S <= cfg.max_segments.
    """
    h, w = _check_inputs(rgb, depth, normals, valid)
    ww = min(cfg.work_width, w)
    wh = max(1, int(round(h * ww / w)))
    small = cv2.resize(rgb, (ww, wh), interpolation=cv2.INTER_AREA) if (wh, ww) != (h, w) else rgb
    sd = sn = sv = None
    if depth is not None:
        sd = cv2.resize(np.nan_to_num(depth.astype(np.float32), nan=0.0), (ww, wh), interpolation=cv2.INTER_NEAREST)
        if normals is not None:
            sn = cv2.resize(normals.astype(np.float32), (ww, wh), interpolation=cv2.INTER_NEAREST)
        if valid is not None:
            sv = cv2.resize(valid.astype(np.uint8), (ww, wh), interpolation=cv2.INTER_NEAREST).astype(bool)
    feat, logz, n = _features(small, sd, sn, sv, cfg)
    gs = cv2.ximgproc.segmentation.createGraphSegmentation(cfg.fh_sigma, cfg.fh_k, cfg.fh_min_size)
    labels = gs.processImage(feat).astype(np.int32)
    lab = feat[..., :3]
    labels = _merge(labels, lab, logz, n, cfg).astype(np.int32)
    if labels.shape != (h, w):
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    return labels
