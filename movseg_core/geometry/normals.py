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

Two implementations of the same arithmetic: compiled numba kernels for numpy and CPU tensors
(``_normals_numba.py``: a few fused passes, on ``torch.get_num_threads()`` threads) and pure torch
for other devices (CUDA), also the CPU fallback where numba does not import. They agree to float32
rounding (tested).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

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


# ============================================================================ compiled CPU kernels
_KERNELS: object | None = None
_NO_NUMBA: str | None = None


def _numba_kernels():  # noqa: ANN202
    """The numba kernels module, imported (and its kernels loaded from the on-disk cache or
    compiled, ~20 s once per install) on first use; None, with one warning, when numba or its TBB
    threading layer does not load: the torch implementation then runs on CPU too (same results,
    ~10x slower).

    The kernels run on numba's TBB layer ("safe": thread- and fork-safe). Its GNU OpenMP layer,
    numba's other choice here, aborts any forked child of a process that used it (e.g. PyTorch
    DataLoader workers computing normals for training: test_geometry.py)."""
    global _KERNELS, _NO_NUMBA
    if _KERNELS is None and _NO_NUMBA is None:
        try:
            import numba
            from numba.np.ufunc import tbbpool  # noqa: F401  (libtbb from the `tbb` package)

            numba.config.THREADING_LAYER = "safe"
            from . import _normals_numba
        except ImportError as e:  # numba and tbb are requirements; exercised by a test
            _NO_NUMBA = f"{type(e).__name__}: {e}"
            warnings.warn(f"normals_from_depth: numba with TBB unavailable ({_NO_NUMBA}); using the slower torch "
                          "implementation on CPU (pip install numba tbb)", RuntimeWarning, stacklevel=3)
        else:
            _KERNELS = _normals_numba
    return _KERNELS


def prepare_cpu_normals(cfg: NormalsConfig = NormalsConfig()) -> float:
    """Load (or, on the first run after an install, compile: ~20 s) the CPU kernels for
    ``cfg.cell`` now, so that the first frame is not slow. Returns the seconds it took."""
    t0 = time.perf_counter()
    s = int(cfg.cell)
    side = 4 * s * (2 * max(cfg.cell_radii()) + 2)
    depth = np.full((side, side), 1.5, np.float32)
    depth[:, side // 2 :] = 2.0  # a depth edge, so the shifted-window pass runs too
    K = np.array([[side, 0.0, side / 2 - 0.5], [0.0, side, side / 2 - 0.5], [0.0, 0.0, 1.0]])
    normals_from_depth(depth, K, cfg=cfg)
    normals_from_depth(depth, K, depth > 0, cfg=cfg)  # with a validity mask: another specialisation
    return time.perf_counter() - t0


def _normals_cpu(kernels, d: np.ndarray, valid: np.ndarray | None, Kn: np.ndarray,  # noqa: ANN001
                 cfg: NormalsConfig) -> tuple[np.ndarray, np.ndarray]:
    """numba implementation for numpy / CPU-tensor input, on ``torch.get_num_threads()`` threads
    (the result does not depend on the thread count)."""
    import numba

    h, wd = d.shape
    s = int(cfg.cell)
    H, W = -(-h // s) * s, -(-wd // s) * s
    if (H, W) != (h, wd):  # pad to whole cells with invalid pixels
        d = np.pad(d, ((0, H - h), (0, W - wd)))
        valid = None if valid is None else np.pad(valid, ((0, H - h), (0, W - wd)))
    radii = cfg.cell_radii()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    res = kernels.normals(np.ascontiguousarray(d, np.float32), None if valid is None else np.ascontiguousarray(valid),
                          float(Kn[0, 0]), float(Kn[1, 1]), float(Kn[0, 2]), float(Kn[1, 2]), float(cfg.max_rel_jump),
                          s, radii, [_need(cfg, rc) for rc in radii], bool(cfg.shifted))
    if res is None:
        raise ValueError("depth: no valid pixel (all zero, NaN, inf or masked out)")
    n, v = res
    if (H, W) != (h, wd):
        n, v = np.ascontiguousarray(n[:h, :wd]), np.ascontiguousarray(v[:h, :wd])
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
        compiled CPU kernels, other devices the torch implementation (same results).

    Raises:
        ValueError: wrong dtype/shape, bad K, K of another image size, or no valid depth at all.
    """
    d, was_numpy = to_tensor(depth, "depth")
    d = check_depth_map(d)
    Kn = check_intrinsics(K, tuple(d.shape))
    vt = None if valid is None else to_tensor(valid, "valid", d.device)[0]
    if vt is not None and vt.shape != d.shape:
        raise ValueError(f"valid: shape {tuple(vt.shape)} differs from depth {tuple(d.shape)}")
    kernels = _numba_kernels() if d.device.type == "cpu" else None
    if kernels is not None:
        vn = None if vt is None else vt.numpy().astype(bool, copy=False)
        n, v = _normals_cpu(kernels, d.detach().numpy(), vn, Kn, cfg)
        return (n, v) if was_numpy else (torch.from_numpy(n), torch.from_numpy(v))
    ok = depth_validity(d, vt)
    if not bool(ok.any()):
        raise ValueError("depth: no valid pixel (all zero, NaN, inf or masked out)")
    n, v = _normals_torch(d, ok, Kn, cfg)
    return like_input(n, was_numpy), like_input(v, was_numpy)
