"""Camera-frame surface normals from a depth image.

Method (chosen by measurement, see docs/geometry.md and bench/normals.py): local planes fitted
in *inverse depth* ``w = 1/z``. For a pinhole camera a plane is exactly linear in ``w(u, v)``, and
Kinect-style noise (quantised in disparity) is near-uniform in ``w``. A plane
``w = a + b u + c v`` has the normal (towards the camera, before normalising)::

    n ~ (-fx b, -fy c, -(a + b cx + c cy))

``b`` and ``c`` come from differences of half-window means over a square window (masked, so holes
do not bias them). Windows are built from ``cell x cell`` pixel blocks (2x2 by default: the window
sums run at half resolution, one plane per cell, and a pixel takes the bilinear blend of the
normals of the usable cells around it). Windows never
straddle a depth discontinuity: a pixel whose own window holds a depth jump takes the plane of a
window shifted away from the edge (8 candidates, the one whose plane passes closest to the pixel's
own depth), falling back to smaller radii near thin structures. Pixels with no clean window at
any radius, or without valid depth, get no normal.

Two implementations of the same arithmetic: numpy + OpenCV for numpy and CPU tensors (vectorised
passes, in ``torch.get_num_threads()`` parallel row bands) and pure torch for other devices (CUDA).
They agree to float32 rounding (tested).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ._tensor import ArrayLike, check_depth_map, depth_validity, like_input, to_tensor
from .camera import check_intrinsics


@dataclass(frozen=True)
class NormalsConfig:
    """Normal estimation settings.

    radii: window half-sizes in pixels, largest first; a pixel uses the first radius that gives
        it a window free of depth jumps. With ``cell > 1`` a radius is rounded to whole cells
        (the window of ``2 rc + 1`` cells closest in width to ``2 r + 1`` pixels).
    max_rel_jump: 4-neighbours whose depths differ by more than this fraction of the nearer depth
        lie on different surfaces (a depth discontinuity); no window mixes them.
    min_fill: least share of valid pixels in each half-window for its estimate to count.
    shifted: try windows shifted away from depth edges (keeps coverage next to edges).
    cell: side in pixels of the blocks windows are built from (1 = full resolution, the original
        method; 2 = window sums at half resolution, ~4x less window work; bench/normals.py median
        1.93 deg at cell 2 against 2.35 at cell 1).
    """

    radii: tuple[int, ...] = (8, 3)
    max_rel_jump: float = 0.05
    min_fill: float = 0.3
    shifted: bool = True
    cell: int = 2

    def __post_init__(self) -> None:
        if not self.radii or any(int(r) < 1 for r in self.radii):
            raise ValueError(f"NormalsConfig.radii must be a non-empty tuple of radii >= 1, got {self.radii}")
        if not self.max_rel_jump > 0:
            raise ValueError(f"NormalsConfig.max_rel_jump must be > 0, got {self.max_rel_jump}")
        if not 0 < self.min_fill <= 1:
            raise ValueError(f"NormalsConfig.min_fill must be in (0, 1], got {self.min_fill}")
        if int(self.cell) < 1:
            raise ValueError(f"NormalsConfig.cell must be >= 1, got {self.cell}")

    def cell_radii(self) -> list[int]:
        """Distinct window radii in cells, largest first: the window of ``2 rc + 1`` cells closest
        in width to ``2 r + 1`` pixels (r = 8 -> 4 cells of 2 px, r = 3 -> 1 cell)."""
        s = int(self.cell)
        return sorted({max(1, int(((2 * int(r) + 1) / s - 1) / 2 + 0.5)) for r in self.radii}, reverse=True)


# 8 shifted windows (dv, du) in units of rc + 1 cells, after the centred one
_OFFSETS = ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))
_JUMP = 1e4  # a jump pixel counts -1e4 valid pixels: any window holding one gets a negative count


def _need(cfg: NormalsConfig, rc: int) -> float:
    s = int(cfg.cell)
    return cfg.min_fill * rc * (2 * rc + 1) * s * s


# ============================================================================ numpy / OpenCV (CPU)
# Planar float32 arrays throughout, OpenCV for resampling and borders, numpy shift-and-add for the
# window sums (the torch twin's order): every step is one vectorised pass over the image, at half
# resolution for the window algebra, and over the few pixels near edges and holes for the choice
# of shifted windows.
_BC = cv2.BORDER_CONSTANT
_CHUNK = 256 * 1024  # bytes of 3-channel float32 rows per chunk of the full-resolution passes


def _np_validity(d: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    ok = (d > 0) & (d < np.inf)  # NaN compares False
    if valid is not None:
        ok &= valid
    return ok


def _np_cells(d: np.ndarray, ok: np.ndarray, tau: float, s: int,
              pad: int) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Pixel inverse depth (0 invalid) and the cell sums [count (jump-marked), w, u, v], each Hs x Ws
    and again with ``pad`` cells of zeros around (for the window sums)."""
    h, wd = d.shape
    okf = ok.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        wn = okf / (d * okf)  # 1/z, NaN where invalid (0/0): compares False below
    w = np.fmax(wn, np.float32(0))  # 0 where invalid
    # jumps between valid 4-neighbours: w_a > (1 + tau) w_b, either way. On the flattened image
    # (contiguous passes); the horizontal pairs that wrap from one row to the next are dropped.
    kw = wn * np.float32(1.0 + tau)
    wf, kf = wn.reshape(-1), kw.reshape(-1)
    jump = np.zeros(h * wd, bool)
    jh = wf[1:] > kf[:-1]
    jh |= wf[:-1] > kf[1:]
    jh[wd - 1 :: wd] = False
    jump[1:] = jh
    jump[:-1] |= jh
    jv = wf[wd:] > kf[:-wd]
    jv |= wf[:-wd] > kf[wd:]
    jump[wd:] |= jv
    jump[:-wd] |= jv
    jump = jump.reshape(h, wd).astype(np.float32)
    if s == 1:
        n, j, sw = okf, jump, w
        su, sv = okf * np.arange(wd, dtype=np.float32), okf * np.arange(h, dtype=np.float32)[:, None]
    else:
        size, area = (wd // s, h // s), np.float32(s * s)
        n, j, sw = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) * area for x in (okf, jump, w))
        # sum of u over a cell's valid pixels = s X n + sum over its columns i of i * count_i
        su = n * (s * np.arange(wd // s, dtype=np.float32))
        sv = n * (s * np.arange(h // s, dtype=np.float32)[:, None])
        for i in range(1, s):
            col, row = okf[0::s, i::s], okf[i::s, 0::s]
            for k in range(1, s):
                col, row = col + okf[k::s, i::s], row + okf[i::s, k::s]
            su += col if i == 1 else np.float32(i) * col
            sv += row if i == 1 else np.float32(i) * row
    n = n - np.float32(_JUMP) * j
    sums = [n, sw, su, sv]
    return w, sums, [cv2.copyMakeBorder(x, pad, pad, pad, pad, _BC) for x in sums]


def _np_run_sum(x: np.ndarray, n: int, axis: int) -> np.ndarray:
    """numpy twin of :func:`_run_sum` (same shift-and-add order; views, one add per doubling)."""
    length = x.shape[axis]
    out: np.ndarray | None = None
    offset, p, block = 0, 1, x

    def narrow(a: np.ndarray, start: int, size: int) -> np.ndarray:
        return a[start : start + size] if axis == 0 else a[:, start : start + size]

    while True:
        if n & p:
            part = narrow(block, offset, length - n + 1)
            out = part if out is None else out + part
            offset += p
        if 2 * p > n:
            break
        m = block.shape[axis] - p
        block = narrow(block, 0, m) + narrow(block, p, m)
        p *= 2
    assert out is not None
    return out


def _np_half_windows(xp: np.ndarray, pad: int, r: int, along_u: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """numpy twin of :func:`_half_windows` for one channel given with ``pad >= r`` zero cells
    around: sums over the half-windows before / after each cell and over the centre line."""
    e = pad - r
    h, w = xp.shape[0] - 2 * pad, xp.shape[1] - 2 * pad
    xp = xp[e : xp.shape[0] - e, e : xp.shape[1] - e] if e else xp
    along, across = (1, 0) if along_u else (0, 1)
    line = _np_run_sum(xp, 2 * r + 1, across)
    half = _np_run_sum(line, r, along)
    if along_u:
        return half[:, :w], half[:, r + 1 : r + 1 + w], line[:, r : r + w]
    return half[:h], half[r + 1 : r + 1 + h], line[r : r + h]


def _np_planes(cells: list[np.ndarray], pad: int, rc: int, need: float,
               at: np.ndarray | None = None) -> list[np.ndarray]:
    """Per cell (Hs x Ws): ``[b, c, a, usable]`` of the plane ``w = a + b u + c v`` (usable: bool).

    Sums over the r x (2r+1) half-windows left/right (for b) and above/below (for c) of each cell;
    the whole window is left + right + centre column, or above + below + centre row. With ``at``
    (flat cell indices) the per-cell algebra runs only there; other cells come back unusable.
    """
    n, sw, su, sv = cells
    shape = (n.shape[0] - 2 * pad, n.shape[1] - 2 * pad)
    if at is not None and rc == 1:
        # 3x3-cell windows: gather each cell's neighbourhood (same sums, same order as the run sums)
        wp_ = n.shape[1]
        ys, xs = np.divmod(at, shape[1])
        f = (ys + pad) * wp_ + xs + pad
        g = {(k, dy, dx): x.reshape(-1).take(f + (dy * wp_ + dx)) for k, x in enumerate(cells)
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)}

        def col(k: int, dx: int) -> np.ndarray:
            return g[k, -1, dx] + (g[k, 0, dx] + g[k, 1, dx])

        def row(k: int, dy: int) -> np.ndarray:
            return g[k, dy, -1] + (g[k, dy, 0] + g[k, dy, 1])

        (nL, nC, nR), (wL, wC, wR), (uL, uC, uR) = ((col(k, -1), col(k, 0), col(k, 1)) for k in (0, 1, 2))
        (nU, nCv, nD), (wU, _, wD), (vU, vC, vD) = ((row(k, -1), row(k, 0), row(k, 1)) for k in (0, 1, 3))
    else:
        (nL, nR, nC), (wL, wR, wC), (uL, uR, uC) = (_np_half_windows(x, pad, rc, True) for x in (n, sw, su))
        (nU, nD, nCv), (wU, wD, _), (vU, vD, vC) = (_np_half_windows(x, pad, rc, False) for x in (n, sw, sv))
        if at is None:
            return _np_plane_algebra(nL, nR, nC, wL, wR, wC, uL, uR, uC, nU, nD, nCv, wU, wD, vU, vD, vC, need)
        ys, xs = np.divmod(at, shape[1])
        (nL, nR, nC, wL, wR, wC, uL, uR, uC, nU, nD, nCv, wU, wD, vU, vD, vC) = (
            x[ys, xs] for x in (nL, nR, nC, wL, wR, wC, uL, uR, uC, nU, nD, nCv, wU, wD, vU, vD, vC))
    out = _np_plane_algebra(nL, nR, nC, wL, wR, wC, uL, uR, uC, nU, nD, nCv, wU, wD, vU, vD, vC, need)
    grids = [np.zeros(shape[0] * shape[1], x.dtype) for x in out]
    for grid, x in zip(grids, out):
        grid[at] = x
    return [grid.reshape(shape) for grid in grids]


def _np_plane_algebra(nL, nR, nC, wL, wR, wC, uL, uR, uC, nU, nD, nCv, wU, wD, vU, vD, vC, need):  # noqa: ANN001
    """Window sums -> ``[b, c, a, usable]`` (elementwise, any shape)."""
    ok = np.minimum(np.minimum(nL, nR), np.minimum(nU, nD)) >= need
    ok &= np.minimum(nC, nCv) >= 0
    # b = (mean w right - mean w left) / (mean u right - mean u left), multiplied through by the
    # counts; the clamps only touch unusable windows (usable: counts >= 1, centroids >= 1 px apart)
    one = np.float32(1)
    b = (wR * nL - wL * nR) / np.maximum(uR * nL - uL * nR, one)
    c = (wD * nU - wU * nD) / np.maximum(vD * nU - vU * nD, one)
    it = one / np.maximum(nL + nR + nC, one)
    a = ((wL + wR + wC) - b * (uL + uR + uC) - c * (vU + vD + vC)) * it
    return [b, c, a, ok]


def _np_unit_normals(b: np.ndarray, c: np.ndarray, a: np.ndarray, good: np.ndarray, fx: float, fy: float,
                     cx: float, cy: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plane fields -> planar unit normals (nx, ny, nz) towards the camera, 0 where not ``good``."""
    nx = b * np.float32(-fx)
    ny = c * np.float32(-fy)
    nz = -(a + b * np.float32(cx) + c * np.float32(cy))
    sq = nx * nx + ny * ny + nz * nz
    sq += np.float32(1e-30)
    inv = cv2.pow(sq, -0.5)
    inv *= good
    return nx * inv, ny * inv, nz * inv


def _np_dense(nrm: np.ndarray, good: np.ndarray, ok: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell normals (Hs x Ws x 3, 0 where not usable) -> pixels: bilinear between cell centres
    (at pixel ``s X + (s - 1) / 2``), renormalised, so unusable cells drop out of the blend; only
    valid pixels whose own cell is usable get one. Returns ``(got HxW, normals HxWx3)``."""
    h, w = ok.shape
    if s == 1:
        got = ok & good
        return got, nrm * got[..., None]
    up = cv2.resize(nrm, (w, h), interpolation=cv2.INTER_LINEAR)
    got = ok & (cv2.resize(good.view(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0)
    ones = np.ones((1, 3), np.float32)
    step = max(1, _CHUNK // (w * 12))  # rows per chunk: the temporaries stay in cache
    for r0 in range(0, h, step):
        u = up[r0 : r0 + step]
        sq = cv2.transform(cv2.multiply(u, u), ones)
        sq += np.float32(1e-30)
        inv = cv2.pow(sq, -0.5)
        inv *= got[r0 : r0 + step]
        cv2.multiply(u, cv2.cvtColor(inv, cv2.COLOR_GRAY2BGR), dst=u)
    return got, up


def _np_pick(cu: np.ndarray, cv: np.ndarray, pu: np.ndarray, pv: np.ndarray, pw: np.ndarray,
             planes: list[np.ndarray], rc: int, shifted: bool, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """For points (u, v, w) = (``pu``, ``pv``, ``pw``) lying in cells (``cu``, ``cv``): the usable
    window among the centred one (preferred; tried only if ``centred``) and the 8 shifted by rc + 1
    cells, choosing the plane that passes closest to the point. ``planes`` come padded by rc + 1
    unusable cells (every candidate index is in range). Returns ``(flat cell index, found)``."""
    st = rc + 1
    ws = planes[0].shape[1] - 2 * st
    wp_ = ws + 2 * st
    b, c, a, good = (x.reshape(-1) for x in planes)
    base = (cv + st) * wp_ + cu + st
    offs = (_OFFSETS if centred else _OFFSETS[1:]) if shifted else _OFFSETS[:1]
    q = base[None, :] + np.array([dv * st * wp_ + du * st for dv, du in offs])[:, None]
    wp = a.take(q) + b.take(q) * pu + c.take(q) * pv
    res = np.abs(wp - pw)
    if centred:
        res[0] = -1.0  # the centred window wins whenever usable
    np.copyto(res, np.float32(np.inf), where=~(good.take(q) & (wp > 0)))
    j = res.argmin(0)
    cols = np.arange(cu.size)
    qj = q[j, cols]
    return (qj // wp_ - st) * ws + qj % wp_ - st, np.isfinite(res[j, cols])


def _np_pick_pixels(idx: np.ndarray, w_flat: np.ndarray, sums: list[np.ndarray], planes: list[np.ndarray],
                    s: int, rc: int, wd: int, shifted: bool, centred: bool) -> np.ndarray:
    """Window choice (flat cell index, -1 = none) for pixels ``idx``. Pixels of a cell free of
    depth jumps share one choice, made at the cell's centroid and mean w (``sums``: the cells'
    [count (negative if it holds a jump), w, u, v] sums); pixels of cells with a jump choose alone."""
    hs, ws = planes[0].shape
    st = rc + 1
    # unusable border for the shifted candidates
    planes = [cv2.copyMakeBorder(x.view(np.uint8), st, st, st, st, _BC).view(bool) if x.dtype == bool
              else cv2.copyMakeBorder(x, st, st, st, st, _BC) for x in planes]
    pu, pv = idx % wd, idx // wd
    cell = (pv // s) * ws + pu // s
    n, sw, su, sv = (x.reshape(-1) for x in sums)
    alone = n.take(cell) < 0
    mark = np.zeros(hs * ws, bool)
    mark[cell] = True
    mark[cell[alone]] = False
    cl = np.flatnonzero(mark)
    inv = np.float32(1) / n.take(cl)
    qc, hc = _np_pick(cl % ws, cl // ws, su.take(cl) * inv, sv.take(cl) * inv, sw.take(cl) * inv, planes, rc,
                      shifted, centred)
    choice = np.full(hs * ws, -1, np.intp)
    choice[cl] = np.where(hc, qc, -1)
    q = choice.take(cell)
    if alone.any():
        ia = np.flatnonzero(alone)
        pa = idx[ia]
        qa, ha = _np_pick(pu[ia] // s, pv[ia] // s, (pa % wd).astype(np.float32), (pa // wd).astype(np.float32),
                          w_flat.take(pa), planes, rc, shifted, centred)
        q[ia] = np.where(ha, qa, -1)
    return q


def _normals_numpy(d: np.ndarray, ok: np.ndarray, Kn: np.ndarray, cfg: NormalsConfig) -> tuple[np.ndarray, np.ndarray]:
    h, wd = d.shape
    s = int(cfg.cell)
    H, W = -(-h // s) * s, -(-wd // s) * s
    if (H, W) != (h, wd):  # pad to whole cells with invalid pixels
        d = np.pad(d, ((0, H - h), (0, W - wd)))
        ok = np.pad(ok, ((0, H - h), (0, W - wd)))
    radii = cfg.cell_radii()
    w, sums, cells = _np_cells(d, ok, cfg.max_rel_jump, s, radii[0])
    K4 = float(Kn[0, 0]), float(Kn[1, 1]), float(Kn[0, 2]), float(Kn[1, 2])
    w_flat = w.reshape(-1)
    hs, ws = sums[0].shape
    for i, rc in enumerate(radii):
        if i == 0:  # dense: pixels of usable cells
            planes = _np_planes(cells, radii[0], rc, _need(cfg, rc))
            b, c, a, good = planes
            nrm = cv2.merge(_np_unit_normals(b, c, a, good, *K4))
            got, out = _np_dense(nrm, good, ok, s)
            out = out.reshape(-1, 3)
            found = got.reshape(-1)
            idx = np.flatnonzero(ok.reshape(-1) > found)
        else:  # sparse: planes only in the cells the remaining pixels may use
            idx = idx[~found[idx]]
            if idx.size == 0:
                break
            st = rc + 1
            mark = np.zeros((hs + 2 * st, ws + 2 * st), bool)
            cy, cx = idx // W // s + st, idx % W // s + st
            for dv, du in _OFFSETS:
                mark[cy + dv * st, cx + du * st] = True
            at = np.flatnonzero(mark[st : st + hs, st : st + ws])
            planes = _np_planes(cells, radii[0], rc, _need(cfg, rc), at)
            b, c, a, good = planes
        if idx.size == 0:
            break
        q = _np_pick_pixels(idx, w_flat, sums, planes, s, rc, W, cfg.shifted, centred=i > 0)
        hit = q >= 0
        if not hit.any():
            continue
        q, sel = q[hit], idx[hit]
        flat = [x.reshape(-1).take(q) for x in (b, c, a)]
        out[sel] = np.stack(_np_unit_normals(*flat, np.ones(q.size, bool), *K4), -1)
        found[sel] = True
    out = out.reshape(H, W, 3)[:h, :wd]
    return np.ascontiguousarray(out), np.ascontiguousarray(found.reshape(H, W)[:h, :wd])


_POOL: tuple[int, ThreadPoolExecutor] | None = None


def _pool() -> ThreadPoolExecutor:
    """Worker threads for the row bands, created on first use and again after a fork (a forked
    child inherits the executor but not its threads)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid():
        _POOL = (os.getpid(), ThreadPoolExecutor(max_workers=4, thread_name_prefix="normals"))
    return _POOL[1]


def _np_margin(cfg: NormalsConfig) -> int:
    """Rows (whole cells) a pixel's result depends on above and below: its cell's and the shifted
    windows (2 rc + 1 cells), the bilinear neighbours (1 cell) and the jump test (1 px)."""
    return (2 * max(cfg.cell_radii()) + 3) * int(cfg.cell)


def _normals_numpy_bands(d: np.ndarray, ok: np.ndarray, Kn: np.ndarray, cfg: NormalsConfig,
                         parts: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_normals_numpy` on ``parts`` horizontal bands in parallel threads (numpy and OpenCV
    release the GIL). Each band carries a margin of :func:`_np_margin` rows, so the result equals
    the whole-image one (up to float32 rounding of the shifted pixel origin)."""
    h = d.shape[0]
    s, margin = int(cfg.cell), _np_margin(cfg)
    cuts = [min(h, (h * i // parts) // s * s) for i in range(parts)] + [h]
    jobs = []
    pool = _pool()
    for top, bot in zip(cuts[:-1], cuts[1:]):
        t0, b0 = max(0, top - margin), min(h, bot + margin)
        Kb = Kn.copy()
        Kb[1, 2] -= t0
        jobs.append((top - t0, bot - t0, pool.submit(_normals_numpy, d[t0:b0], ok[t0:b0], Kb, cfg)))
    n = np.empty(d.shape + (3,), np.float32)
    v = np.empty(d.shape, bool)
    for (lo, hi, job), top, bot in zip(jobs, cuts[:-1], cuts[1:]):
        nb, vb = job.result()
        n[top:bot], v[top:bot] = nb[lo:hi], vb[lo:hi]
    return n, v


# ============================================================================ torch (any device)
def _run_sum(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """out[i] = x[i] + ... + x[i + n - 1] along ``dim`` (length L - n + 1), by doubling.

    Shift-and-add instead of a cumulative sum: no float32 cancellation, O(log n) passes.
    """
    length = x.shape[dim]
    out: torch.Tensor | None = None
    offset = 0
    p, block = 1, x  # block[i] = sum of p consecutive elements starting at i
    while True:
        if n & p:
            part = block.narrow(dim, offset, length - n + 1)
            out = part if out is None else out + part
            offset += p
        if 2 * p > n:
            break
        m = block.shape[dim] - p
        block = block.narrow(dim, 0, m) + block.narrow(dim, p, m)
        p *= 2
    assert out is not None
    return out


def _half_windows(x: torch.Tensor, r: int, along_u: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sums of CxHxW ``x`` (zero outside the image) over the two r x (2r+1) half-windows before and
    after each pixel along u (``along_u``) or v, and over the 1 x (2r+1) centre line between them."""
    along, across = (2, 1) if along_u else (1, 2)
    xp = F.pad(x, (r, r) if along_u else (0, 0, r, r))
    xp = F.pad(xp, (0, 0, r, r) if along_u else (r, r))
    line = _run_sum(xp, 2 * r + 1, across)  # across dim now has the image size
    half = _run_sum(line, r, along)
    size = x.shape[along]
    return half.narrow(along, 0, size), half.narrow(along, r + 1, size), line.narrow(along, r, size)


def _torch_cells(d: torch.Tensor, ok: torch.Tensor, tau: float, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel inverse depth (0 invalid) and the cell sums 4 x Hs x Ws [count (jump-marked), w, u, v]."""
    h, wd = d.shape
    dev = d.device
    wn = torch.where(ok, 1.0 / torch.where(ok, d, torch.ones((), device=dev)), torch.full((), float("nan"), device=dev))
    w = torch.nan_to_num(wn, nan=0.0)
    # jumps between valid 4-neighbours (NaN compares False): w_a > (1 + tau) w_b, either way
    kw = wn * (1.0 + tau)
    jump = torch.zeros_like(ok)
    jh = (wn[:, 1:] > kw[:, :-1]) | (wn[:, :-1] > kw[:, 1:])
    jump[:, 1:] |= jh
    jump[:, :-1] |= jh
    jv = (wn[1:] > kw[:-1]) | (wn[:-1] > kw[1:])
    jump[1:] |= jv
    jump[:-1] |= jv
    m = ok.to(torch.float32)
    uu = torch.arange(wd, device=dev, dtype=torch.float32).view(1, wd)
    vv = torch.arange(h, device=dev, dtype=torch.float32).view(h, 1)
    x = torch.stack((m - _JUMP * jump.to(torch.float32), w, m * uu, m * vv))
    if s > 1:
        x = x.view(4, h // s, s, wd // s, s).sum((2, 4))
    return w, x


def _torch_planes(cells: torch.Tensor, rc: int, need: float) -> torch.Tensor:
    """Per cell plane fields 4 x Hs x Ws: (b, c, a, usable) of ``w = a + b u + c v``."""
    L, R, C = _half_windows(cells[:3], rc, along_u=True)  # count, w, u
    U, D, Cv = _half_windows(cells[[0, 1, 3]], rc, along_u=False)  # count, w, v
    nL, nR, nU, nD = L[0], R[0], U[0], D[0]
    ok = (torch.minimum(torch.minimum(nL, nR), torch.minimum(nU, nD)) >= need) & (torch.minimum(C[0], Cv[0]) >= 0)
    b = (R[1] * nL - L[1] * nR) / (R[2] * nL - L[2] * nR).clamp_min(1.0)
    c = (D[1] * nU - U[1] * nD) / (D[2] * nU - U[2] * nD).clamp_min(1.0)
    it = 1.0 / (nL + nR + C[0]).clamp_min(1.0)
    a = ((L[1] + R[1] + C[1]) - b * (L[2] + R[2] + C[2]) - c * (U[2] + D[2] + Cv[2])) * it
    return torch.stack((b, c, a, ok.to(torch.float32)))


def _torch_unit_normals(f: torch.Tensor, fx: float, fy: float, cx: float,
                        cy: float) -> tuple[torch.Tensor, torch.Tensor]:
    """4 x ... plane fields -> (... x 3 unit normals towards the camera, 0 where not usable; usable)."""
    b, c, a = f[0], f[1], f[2]
    n = torch.stack((-fx * b, -fy * c, -(a + b * cx + c * cy)), -1)
    n = n / torch.linalg.vector_norm(n, dim=-1, keepdim=True).clamp_min(1e-30)
    good = f[3] > 0
    return torch.where(good[..., None], n, 0.0), good


def _torch_dense(normals: torch.Tensor, good: torch.Tensor, ok: torch.Tensor,
                 s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`_np_dense`."""
    if s == 1:
        got = ok & good
        return got, torch.where(got[..., None], normals, 0.0)
    h, w = ok.shape
    up = F.interpolate(normals.permute(2, 0, 1)[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    got = ok & good.repeat_interleave(s, 0).repeat_interleave(s, 1)
    n = up.permute(1, 2, 0)
    n = n / torch.linalg.vector_norm(n, dim=-1, keepdim=True).clamp_min(1e-15)
    return got, torch.where(got[..., None], n, 0.0)


def _torch_pick(cu: torch.Tensor, cv: torch.Tensor, pu: torch.Tensor, pv: torch.Tensor, pw: torch.Tensor,
                fields: torch.Tensor, rc: int, shifted: bool, centred: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch twin of :func:`_np_pick` (fields 4 x Hs x Ws)."""
    hs, ws = fields.shape[1:]
    dev = cu.device
    flat = fields.reshape(4, -1)
    offs = (_OFFSETS if centred else _OFFSETS[1:]) if shifted else _OFFSETS[:1]
    st = rc + 1
    qu = cu[None, :] + st * torch.tensor([o[1] for o in offs], device=dev)[:, None]
    qv = cv[None, :] + st * torch.tensor([o[0] for o in offs], device=dev)[:, None]
    inside = (qu >= 0) & (qu < ws) & (qv >= 0) & (qv < hs)
    q = torch.where(inside, qv * ws + qu, 0)
    f = flat[:, q]  # 4 x 9 x N
    wp = f[2] + f[0] * pu + f[1] * pv
    res = (wp - pw).abs()
    if centred:
        res[0] = -1.0
    res = torch.where(inside & (f[3] > 0) & (wp > 0), res, float("inf"))
    j = res.argmin(0)
    cols = torch.arange(cu.numel(), device=dev)
    return q[j, cols], torch.isfinite(res[j, cols])


def _torch_pick_pixels(idx: torch.Tensor, w_flat: torch.Tensor, cells: torch.Tensor, fields: torch.Tensor,
                       s: int, rc: int, wd: int, shifted: bool, centred: bool) -> torch.Tensor:
    """Torch twin of :func:`_np_pick_pixels` (cells 4 x Hs x Ws: count, w, u, v sums)."""
    hs, ws = fields.shape[1:]
    pu, pv = idx % wd, torch.div(idx, wd, rounding_mode="floor")
    cell = torch.div(pv, s, rounding_mode="floor") * ws + torch.div(pu, s, rounding_mode="floor")
    n, sw, su, sv = cells.reshape(4, -1)
    alone = n[cell] < 0
    mark = torch.zeros(hs * ws, dtype=torch.bool, device=idx.device)
    mark[cell] = True
    mark[cell[alone]] = False
    cl = mark.nonzero().squeeze(1)
    inv = 1.0 / n[cl]
    qc, hc = _torch_pick(cl % ws, torch.div(cl, ws, rounding_mode="floor"), su[cl] * inv, sv[cl] * inv, sw[cl] * inv,
                         fields, rc, shifted, centred)
    choice = torch.full((hs * ws,), -1, dtype=torch.long, device=idx.device)
    choice[cl] = torch.where(hc, qc, -1)
    q = choice[cell]
    if bool(alone.any()):
        ia = alone.nonzero().squeeze(1)
        pa = idx[ia]
        qa, ha = _torch_pick(torch.div(pu[ia], s, rounding_mode="floor"), torch.div(pv[ia], s, rounding_mode="floor"),
                             pu[ia].to(torch.float32), pv[ia].to(torch.float32), w_flat[pa], fields, rc, shifted,
                             centred)
        q[ia] = torch.where(ha, qa, -1)
    return q


def _normals_torch(d: torch.Tensor, ok: torch.Tensor, Kn, cfg: NormalsConfig) -> tuple[torch.Tensor, torch.Tensor]:
    h, wd = d.shape
    s = int(cfg.cell)
    H, W = -(-h // s) * s, -(-wd // s) * s
    if (H, W) != (h, wd):
        d = F.pad(d, (0, W - wd, 0, H - h))
        ok = F.pad(ok, (0, W - wd, 0, H - h))
    w, cells = _torch_cells(d, ok, cfg.max_rel_jump, s)
    fx, fy, cx, cy = float(Kn[0, 0]), float(Kn[1, 1]), float(Kn[0, 2]), float(Kn[1, 2])
    w_flat = w.reshape(-1)
    out = torch.zeros((H * W, 3), device=d.device)
    found = torch.zeros(H * W, dtype=torch.bool, device=d.device)
    todo = ok.reshape(-1)
    for i, rc in enumerate(cfg.cell_radii()):
        fields = _torch_planes(cells, rc, _need(cfg, rc))
        normals, good = _torch_unit_normals(fields, fx, fy, cx, cy)
        if i == 0:
            got, dense = _torch_dense(normals, good, ok, s)
            out = dense.reshape(-1, 3)
            found = got.reshape(-1)
        idx = (todo & ~found).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        q = _torch_pick_pixels(idx, w_flat, cells, fields, s, rc, W, cfg.shifted, centred=i > 0)
        hit = q >= 0
        out[idx[hit]] = normals.reshape(-1, 3)[q[hit]]
        found[idx[hit]] = True
    return out.reshape(H, W, 3)[:h, :wd].contiguous(), found.reshape(H, W)[:h, :wd].contiguous()


# ============================================================================ public API
def normals_from_depth(
    depth: ArrayLike, K: ArrayLike, valid: ArrayLike | None = None, cfg: NormalsConfig = NormalsConfig()
) -> tuple[ArrayLike, ArrayLike]:
    """Unit surface normals in the camera (optical) frame, oriented towards the camera.

    Args:
        depth: HxW float metres; 0, NaN, inf = invalid. Tensor (CPU/CUDA) or numpy.
        K: 3x3 intrinsics of this depth image.
        valid: optional HxW bool mask ANDed with the depth's own validity.
        cfg: :class:`NormalsConfig`.

    Returns:
        ``(normals, valid)``: HxWx3 float32 unit vectors (0 where invalid, never NaN) and HxW bool.
        numpy in -> numpy out; a tensor comes back on its device. numpy and CPU tensors run the
        numpy/OpenCV implementation, other devices the torch one (same results).

    Raises:
        ValueError: wrong dtype/shape, bad K, K of another image size, or no valid depth at all.
    """
    d, was_numpy = to_tensor(depth, "depth")
    d = check_depth_map(d)
    Kn = check_intrinsics(K, tuple(d.shape))
    vt = None if valid is None else to_tensor(valid, "valid", d.device)[0]
    if vt is not None and vt.shape != d.shape:
        raise ValueError(f"valid: shape {tuple(vt.shape)} differs from depth {tuple(d.shape)}")
    if d.device.type == "cpu":
        dn = d.detach().numpy()
        ok = _np_validity(dn, None if vt is None else vt.numpy().astype(bool, copy=False))
        if not ok.any():
            raise ValueError("depth: no valid pixel (all zero, NaN, inf or masked out)")
        parts = min(torch.get_num_threads(), 4, dn.shape[0] // (4 * _np_margin(cfg)))
        if parts > 1:
            n, v = _normals_numpy_bands(dn, ok, Kn, cfg, parts)
        else:
            n, v = _normals_numpy(dn, ok, Kn, cfg)
        return (n, v) if was_numpy else (torch.from_numpy(n), torch.from_numpy(v))
    ok = depth_validity(d, vt)
    if not bool(ok.any()):
        raise ValueError("depth: no valid pixel (all zero, NaN, inf or masked out)")
    n, v = _normals_torch(d, ok, Kn, cfg)
    return like_input(n, was_numpy), like_input(v, was_numpy)
