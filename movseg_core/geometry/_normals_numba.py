"""Compiled CPU kernels (numba) for :func:`movseg_core.geometry.normals_from_depth`.

The same method and arithmetic as the torch implementation in ``normals.py`` (see its module
docstring and docs/geometry.md), fused into a few passes over the image instead of dozens of
whole-image array operations, which are memory-bound on small CPUs:

1. inverse depth ``w`` per pixel;
2. per ``s x s`` cell: valid count (minus ``_JUMP`` per pixel on a depth jump), sums of ``w``,
   ``u`` and ``v`` (the jump test reads the 4-neighbours on the fly);
3. float64 summed-area tables of those four cell sums (exact for the counts, no float32
   cancellation for the others), so any window's sums are four lookups;
4. the plane ``w = a + b u + c v`` and its unit normal for every cell at the largest radius;
5. per pixel: bilinear blend of the cell normals (``cv2.resize``, the OpenCV / torch
   ``align_corners=False`` convention), renormalised; pixels whose own cell is unusable choose a
   shifted window, cell by cell (at the cell's centroid) where the cell holds no depth jump, pixel
   by pixel where it does; smaller radii are tried for what is left, with planes computed only
   for the cells those pixels may choose.

Every parallel loop runs over rows of cells, and each iteration writes only its own rows, so the
result does not depend on the thread count (tested). Compiled on first use and cached on disk.
"""
from __future__ import annotations

import cv2
import numpy as np
from numba import njit, prange

# fast math for the arithmetic-only kernels, without 'nnan'/'ninf': NaN and inf keep their meaning
_FM = {"nsz", "arcp", "contract", "afn", "reassoc"}
_JUMP = 1e4  # as in normals.py: a jump pixel counts -1e4 valid pixels
# 8 shifted windows (dv, du) in units of rc + 1 cells, after the centred one (normals._OFFSETS)
_DV = np.array([0, 0, 0, 1, -1, 1, 1, -1, -1], np.int64)
_DU = np.array([0, 1, -1, 0, 0, 1, -1, 1, -1], np.int64)


@njit(cache=True, nogil=True, parallel=True)
def _inverse_depth(d, valid):  # noqa: ANN001, ANN202
    """Validity (depth > 0 and finite, and ``valid`` unless None) and ``1/z`` there, NaN elsewhere
    (NaN compares False in the jump test): (HxW bool, HxW float32, count of valid pixels)."""
    h, wd = d.shape
    ok = np.empty((h, wd), np.bool_)
    w = np.empty((h, wd), np.float32)
    one, inf = np.float32(1.0), np.float32(np.inf)
    count = 0
    for y in prange(h):
        for x in range(wd):
            z = d[y, x]
            good = z > 0 and z < inf  # NaN compares False
            if valid is not None:
                good = good and valid[y, x]
            ok[y, x] = good
            w[y, x] = one / z if good else np.nan
            count += good
    return ok, w, count


@njit(cache=True, nogil=True, parallel=True)
def _cell_sums(w, ok, tau, cell):  # noqa: ANN001, ANN202
    """Hs x Ws x 4 float64 cell sums over valid pixels: count (-_JUMP per pixel on a depth jump,
    i.e. with a valid 4-neighbour whose w differs by more than the factor 1 + tau), w, u, v.
    ``cell`` is a tuple of s zeros: its length, the cell side, is then a compile-time constant
    (the loops over a cell's pixels unroll; a run-time s made these kernels ~3x slower)."""
    s = len(cell)
    h, wd = w.shape
    hs, ws = h // s, wd // s
    out = np.zeros((hs, ws, 4), np.float64)
    k = np.float32(1.0 + tau)
    for cy in prange(hs):
        for cx in range(ws):
            n = sw = su = sv = 0.0
            for y in range(cy * s, cy * s + s):
                for x in range(cx * s, cx * s + s):
                    if not ok[y, x]:
                        continue
                    wp = w[y, x]
                    kp = wp * k
                    jump = False
                    if x > 0:
                        q = w[y, x - 1]
                        jump |= (wp > q * k) | (q > kp)
                    if x + 1 < wd:
                        q = w[y, x + 1]
                        jump |= (wp > q * k) | (q > kp)
                    if y > 0:
                        q = w[y - 1, x]
                        jump |= (wp > q * k) | (q > kp)
                    if y + 1 < h:
                        q = w[y + 1, x]
                        jump |= (wp > q * k) | (q > kp)
                    n += 1.0 - _JUMP if jump else 1.0
                    sw += wp
                    su += x
                    sv += y
            out[cy, cx, 0], out[cy, cx, 1], out[cy, cx, 2], out[cy, cx, 3] = n, sw, su, sv
    return out


@njit(cache=True, nogil=True, parallel=True)
def _integral(cells, pad):  # noqa: ANN001, ANN202
    """Summed-area tables of the cell sums with ``pad`` zero cells around, one plane per channel:
    4 x (Hs+2p+1) x (Ws+2p+1), ``I[c, y, x]`` = sum over padded rows < y and columns < x."""
    hs, ws, _ = cells.shape
    H, W = hs + 2 * pad + 1, ws + 2 * pad + 1
    out = np.zeros((4, H, W), np.float64)
    for cy in prange(hs):  # running sums along each row
        y = cy + pad + 1
        for c in range(4):
            run = 0.0
            for cx in range(ws):
                run += cells[cy, cx, c]
                out[c, y, cx + pad + 1] = run
            for x in range(ws + pad + 1, W):
                out[c, y, x] = run
    for c in prange(4):  # then down the columns, a whole row at a time
        for y in range(pad + 2, H):
            for x in range(W):
                out[c, y, x] += out[c, y - 1, x]
    return out


@njit(cache=True, nogil=True)
def _parts(I, c, y0, py, y1, x0, px, x1):  # noqa: ANN001, ANN202, E741
    """Channel ``c`` summed over the window parts, from 12 corner points of the summed-area table:
    columns of the full height left [x0, px), centre [px, px+1), right [px+1, x1); rows of the
    full width up [y0, py), centre [py, py+1), down [py+1, y1); and the whole window."""
    a00, a01, a02, a03 = I[c, y0, x0], I[c, y0, px], I[c, y0, px + 1], I[c, y0, x1]
    a30, a31, a32, a33 = I[c, y1, x0], I[c, y1, px], I[c, y1, px + 1], I[c, y1, x1]
    a10, a13, a20, a23 = I[c, py, x0], I[c, py, x1], I[c, py + 1, x0], I[c, py + 1, x1]
    left, centre, right = a31 - a01 - a30 + a00, a32 - a02 - a31 + a01, a33 - a03 - a32 + a02
    up, centre_row, down = a13 - a03 - a10 + a00, a23 - a13 - a20 + a10, a33 - a23 - a30 + a20
    return left, centre, right, up, centre_row, down, a33 - a03 - a30 + a00


@njit(cache=True, nogil=True)
def _algebra(nL, nC, nR, nU, nCv, nD, nA, wL, wR, wU, wD, wA, uL, uR, uA, vU, vD, vA, need):  # noqa: ANN001, ANN202
    """Window sums -> plane ``(b, c, a, usable)`` (as normals._torch_planes): slopes from the
    differences of the half-window means, multiplied through by the counts."""
    usable = (min(min(nL, nR), min(nU, nD)) >= need) & (min(nC, nCv) >= 0.0)
    b = (wR * nL - wL * nR) / max(uR * nL - uL * nR, 1.0)
    c = (wD * nU - wU * nD) / max(vD * nU - vU * nD, 1.0)
    a = (wA - b * uA - c * vA) / max(nA, 1.0)
    return b, c, a, usable


@njit(cache=True, nogil=True)
def _plane(I, cy, cx, rc, pad, need):  # noqa: ANN001, ANN202, E741
    """Plane ``(b, c, a, usable)`` of the window of ``2 rc + 1`` cells centred on cell (cy, cx)."""
    py, px = cy + pad, cx + pad
    y0, y1, x0, x1 = py - rc, py + rc + 1, px - rc, px + rc + 1
    nL, nC, nR, nU, nCv, nD, nA = _parts(I, 0, y0, py, y1, x0, px, x1)
    wL, _, wR, wU, _, wD, wA = _parts(I, 1, y0, py, y1, x0, px, x1)
    uL, _, uR, _, _, _, uA = _parts(I, 2, y0, py, y1, x0, px, x1)
    _, _, _, vU, _, vD, vA = _parts(I, 3, y0, py, y1, x0, px, x1)
    return _algebra(nL, nC, nR, nU, nCv, nD, nA, wL, wR, wU, wD, wA, uL, uR, uA, vU, vD, vA, need)


@njit(cache=True, nogil=True)
def _unit(b, c, a, fx, fy, px, py):  # noqa: ANN001, ANN202
    """Unit normal towards the camera of the plane ``w = a + b u + c v``."""
    nx, ny, nz = -fx * b, -fy * c, -(a + b * px + c * py)
    inv = 1.0 / np.sqrt(nx * nx + ny * ny + nz * nz + 1e-30)
    return nx * inv, ny * inv, nz * inv


@njit(cache=True, nogil=True, parallel=True, fastmath=_FM)
def _cell_planes(I, hs, ws, rc, pad, need, fx, fy, px, py):  # noqa: ANN001, ANN202, E741
    """Every cell's plane at radius ``rc`` (Hs x Ws x 4 float64: b, c, a, 1 if usable else 0) and
    unit normal (Hs x Ws x 3 float32, 0 where not usable). :func:`_plane` unrolled over a row of
    cells: the 12 corner rows are picked once per row (1.4x faster than calling it per cell)."""
    planes = np.empty((hs, ws, 4), np.float64)
    nrm = np.empty((hs, ws, 3), np.float32)
    for cy in prange(hs):
        p = cy + pad
        y0, y1 = p - rc, p + rc + 1
        N0, N1, N2, N3 = I[0, y0], I[0, p], I[0, p + 1], I[0, y1]
        W0, W1, W2, W3 = I[1, y0], I[1, p], I[1, p + 1], I[1, y1]
        U0, U3 = I[2, y0], I[2, y1]
        V0, V1, V2, V3 = I[3, y0], I[3, p], I[3, p + 1], I[3, y1]
        for cx in range(ws):
            q = cx + pad
            x0, x1 = q - rc, q + rc + 1
            b, c, a, usable = _algebra(
                N3[q] - N0[q] - N3[x0] + N0[x0], N3[q + 1] - N0[q + 1] - N3[q] + N0[q],
                N3[x1] - N0[x1] - N3[q + 1] + N0[q + 1], N1[x1] - N0[x1] - N1[x0] + N0[x0],
                N2[x1] - N1[x1] - N2[x0] + N1[x0], N3[x1] - N2[x1] - N3[x0] + N2[x0],
                N3[x1] - N0[x1] - N3[x0] + N0[x0],
                W3[q] - W0[q] - W3[x0] + W0[x0], W3[x1] - W0[x1] - W3[q + 1] + W0[q + 1],
                W1[x1] - W0[x1] - W1[x0] + W0[x0], W3[x1] - W2[x1] - W3[x0] + W2[x0],
                W3[x1] - W0[x1] - W3[x0] + W0[x0],
                U3[q] - U0[q] - U3[x0] + U0[x0], U3[x1] - U0[x1] - U3[q + 1] + U0[q + 1],
                U3[x1] - U0[x1] - U3[x0] + U0[x0],
                V1[x1] - V0[x1] - V1[x0] + V0[x0], V3[x1] - V2[x1] - V3[x0] + V2[x0],
                V3[x1] - V0[x1] - V3[x0] + V0[x0], need)
            ux, uy, uz = _unit(b, c, a, fx, fy, px, py)
            keep = np.float64(usable)  # 0 where not usable, without a branch in the row loop
            planes[cy, cx, 0], planes[cy, cx, 1], planes[cy, cx, 2], planes[cy, cx, 3] = b, c, a, usable
            nrm[cy, cx, 0], nrm[cy, cx, 1], nrm[cy, cx, 2] = ux * keep, uy * keep, uz * keep
    return planes, nrm


@njit(cache=True, nogil=True, parallel=True, fastmath=_FM)
def _renormalise(up, ok, planes, cell, out, found, pending):  # noqa: ANN001, ANN202
    """Blended normals ``up`` (HxWx3) -> unit normals in ``out`` at valid pixels of usable cells
    (``found``), 0 elsewhere; ``pending`` (Hs x Ws) counts each cell's valid pixels left over."""
    s = len(cell)
    hs, ws = planes.shape[:2]
    eps = np.float32(1e-30)
    for cy in prange(hs):
        for y in range(cy * s, cy * s + s):
            for cx in range(ws):
                usable = planes[cy, cx, 3] > 0.0
                for x in range(cx * s, cx * s + s):
                    got = ok[y, x] and usable
                    v0, v1, v2 = up[y, x, 0], up[y, x, 1], up[y, x, 2]
                    inv = np.float32(got) / np.sqrt(v0 * v0 + v1 * v1 + v2 * v2 + eps)
                    out[y, x, 0], out[y, x, 1], out[y, x, 2] = v0 * inv, v1 * inv, v2 * inv
                    found[y, x] = got
                    pending[cy, cx] += ok[y, x] and not usable


@njit(cache=True, nogil=True)
def _pick(planes, cy, cx, pu, pv, pw, rc, shifted, centred):  # noqa: ANN001, ANN202
    """Among the centred window (preferred, if ``centred``) and the 8 shifted by rc + 1 cells,
    the usable one whose plane passes closest to the point (pu, pv, pw). Returns the chosen cell
    (qy, qx), or (-1, -1)."""
    hs, ws = planes.shape[:2]
    st = rc + 1
    best, qy, qx = np.inf, -1, -1
    for k in range(0 if centred else 1, 9 if shifted else 1):
        y, x = cy + _DV[k] * st, cx + _DU[k] * st
        if y < 0 or y >= hs or x < 0 or x >= ws:
            continue
        if planes[y, x, 3] == 0.0:  # not usable
            continue
        wp = planes[y, x, 2] + planes[y, x, 0] * pu + planes[y, x, 1] * pv
        if not wp > 0.0:
            continue
        res = -1.0 if k == 0 else abs(wp - pw)
        if res < best:
            best, qy, qx = res, y, x
    return qy, qx


@njit(cache=True, nogil=True, parallel=True)
def _planes_near(I, pending, rc, pad, need, fx, fy, px, py, planes, nrm):  # noqa: ANN001, ANN202, E741
    """Overwrite ``planes`` / ``nrm`` (as from :func:`_cell_planes`) with radius ``rc`` for the
    cells that pending cells may choose (their centred and 8 shifted windows): the only cells
    :func:`_shifted` reads, so the others may keep stale values."""
    hs, ws = pending.shape
    st = rc + 1
    wanted = np.zeros((hs, ws), np.bool_)
    for cy in range(hs):  # few pending cells: mark serially, compute in parallel
        for cx in range(ws):
            if pending[cy, cx] > 0:
                for k in range(9):
                    y, x = cy + _DV[k] * st, cx + _DU[k] * st
                    if 0 <= y < hs and 0 <= x < ws:
                        wanted[y, x] = True
    for cy in prange(hs):
        for cx in range(ws):
            if wanted[cy, cx]:
                b, c, a, usable = _plane(I, cy, cx, rc, pad, need)
                planes[cy, cx, 0], planes[cy, cx, 1], planes[cy, cx, 2] = b, c, a
                planes[cy, cx, 3] = 1.0 if usable else 0.0
                if usable:
                    nrm[cy, cx, 0], nrm[cy, cx, 1], nrm[cy, cx, 2] = _unit(b, c, a, fx, fy, px, py)


@njit(cache=True, nogil=True, parallel=True)
def _shifted(cells, w, ok, planes, nrm, cell, rc, shifted, centred, out, found, pending):  # noqa: ANN001, ANN202
    """Pixels with valid depth and no normal yet (counted per cell in ``pending``) take the normal
    (``nrm``) of the usable window (``planes``, radius rc) that :func:`_pick` chooses. Jump-free
    cells choose once, at their centroid and mean w; cells with a depth jump pixel by pixel."""
    s = len(cell)
    hs, ws = cells.shape[:2]
    for cy in prange(hs):
        for cx in range(ws):
            if pending[cy, cx] == 0:
                continue
            qy, qx, decided = -1, -1, False
            jump_free = cells[cy, cx, 0] >= 0.0
            for y in range(cy * s, cy * s + s):
                for x in range(cx * s, cx * s + s):
                    if not ok[y, x] or found[y, x]:
                        continue
                    if jump_free:
                        if not decided:
                            inv = 1.0 / cells[cy, cx, 0]
                            qy, qx = _pick(planes, cy, cx, cells[cy, cx, 2] * inv, cells[cy, cx, 3] * inv,
                                           cells[cy, cx, 1] * inv, rc, shifted, centred)
                            decided = True
                        ty, tx = qy, qx
                    else:
                        ty, tx = _pick(planes, cy, cx, float(x), float(y), float(w[y, x]), rc, shifted, centred)
                    if ty < 0:
                        continue
                    out[y, x, 0], out[y, x, 1], out[y, x, 2] = nrm[ty, tx, 0], nrm[ty, tx, 1], nrm[ty, tx, 2]
                    found[y, x] = True
                    pending[cy, cx] -= 1


def normals(d: np.ndarray, valid: np.ndarray | None, fx: float, fy: float, px: float, py: float, tau: float,
            s: int, radii: list[int], needs: list[float], shifted: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Normals (HxWx3 float32, 0 where none) and their mask (HxW bool) for depth ``d`` (HxW float32
    metres, H and W multiples of ``s``; 0, NaN, inf invalid) and an optional HxW bool mask
    ``valid``; ``radii`` in cells, largest first, ``needs`` the least half-window count per
    radius; (fx, fy, px, py) from K. None when no pixel is valid."""
    h, wd = d.shape
    ok, w, count = _inverse_depth(d, valid)
    if count == 0:
        return None
    cell = (0,) * s
    cells = _cell_sums(w, ok, np.float32(tau), cell)
    hs, ws = cells.shape[:2]
    pad = int(radii[0])
    integral = _integral(cells, pad)
    planes, nrm = _cell_planes(integral, hs, ws, radii[0], pad, needs[0], fx, fy, px, py)
    up = nrm if s == 1 else cv2.resize(nrm, (wd, h), interpolation=cv2.INTER_LINEAR)
    out = np.empty((h, wd, 3), np.float32)  # every pixel is written
    found = np.empty((h, wd), np.bool_)
    pending = np.zeros((hs, ws), np.int32)
    _renormalise(up, ok, planes, cell, out, found, pending)
    for i, (rc, need) in enumerate(zip(radii, needs)):
        if i > 0:
            if not pending.any():
                break
            _planes_near(integral, pending, rc, pad, need, fx, fy, px, py, planes, nrm)
        _shifted(cells, w, ok, planes, nrm, cell, rc, shifted, i > 0, out, found, pending)
    return out, found
