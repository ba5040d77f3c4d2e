"""Camera-frame surface normals from a depth image.

Method (chosen by measurement, see docs/geometry.md and bench/normals.py): local planes fitted
in *inverse depth* ``w = 1/z``. For a pinhole camera a plane is exactly linear in ``w(u, v)``, and
Kinect-style noise (quantised in disparity) is near-uniform in ``w``. With ``b = dw/du`` and
``c = dw/dv`` the normal towards the camera is::

    n ~ (-fx b, -fy c, (u - cx) b + (v - cy) c - w)       (then normalised)

``b`` and ``c`` come from differences of half-window means over a (2r+1)^2 window (masked, so
holes do not bias them), computed with separable running sums. Windows never straddle a depth
discontinuity: a pixel whose centred window holds a depth jump takes the plane of a window
shifted away from the edge (8 candidates, the one whose plane passes closest to the pixel's own
depth), falling back to smaller radii near thin structures. Pixels with no clean window at any
radius, or without valid depth, get no normal.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._tensor import ArrayLike, check_depth_map, depth_validity, like_input, to_tensor
from .camera import check_intrinsics


@dataclass(frozen=True)
class NormalsConfig:
    """Normal estimation settings.

    radii: window half-sizes in pixels, largest first (window = 2 r + 1); a pixel uses the first
        radius that gives it a window free of depth jumps.
    max_rel_jump: 4-neighbours whose depths differ by more than this fraction of the nearer depth
        lie on different surfaces (a depth discontinuity); no window mixes them.
    min_fill: least share of valid pixels in each half-window for its estimate to count.
    shifted: try windows shifted away from depth edges (keeps coverage next to edges).
    """

    radii: tuple[int, ...] = (8, 3)
    max_rel_jump: float = 0.05
    min_fill: float = 0.3
    shifted: bool = True

    def __post_init__(self) -> None:
        if not self.radii or any(int(r) < 1 for r in self.radii):
            raise ValueError(f"NormalsConfig.radii must be a non-empty tuple of radii >= 1, got {self.radii}")
        if not self.max_rel_jump > 0:
            raise ValueError(f"NormalsConfig.max_rel_jump must be > 0, got {self.max_rel_jump}")
        if not 0 < self.min_fill <= 1:
            raise ValueError(f"NormalsConfig.min_fill must be in (0, 1], got {self.min_fill}")


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


def _jumps(w: torch.Tensor, ok: torch.Tensor, tau: float) -> torch.Tensor:
    """HxW bool: pixel has a valid 4-neighbour across a depth discontinuity (|dz| > tau * z_near)."""
    j = torch.zeros_like(ok)
    for dim in (0, 1):
        n = w.shape[dim] - 1
        a, b = w.narrow(dim, 0, n), w.narrow(dim, 1, n)
        both = ok.narrow(dim, 0, n) & ok.narrow(dim, 1, n)
        # |1/a - 1/b| > tau / max(a, b)  <=>  |a - b| > tau * min(a, b)
        jump = both & ((a - b).abs() > tau * torch.minimum(a, b))
        j.narrow(dim, 0, n).logical_or_(jump)
        j.narrow(dim, 1, n).logical_or_(jump)
    return j


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


@dataclass
class _Planes:
    """Per window centre: plane gradient (b, c), mean w, centroid (u, v), usable flag."""

    b: torch.Tensor
    c: torch.Tensor
    w: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    ok: torch.Tensor


def _fit_planes(w: torch.Tensor, m: torch.Tensor, jump: torch.Tensor, r: int, min_fill: float) -> _Planes:
    h, wd = w.shape
    dev = w.device
    uu = torch.arange(wd, device=dev, dtype=torch.float32).view(1, wd).expand(h, wd)
    vv = torch.arange(h, device=dev, dtype=torch.float32).view(h, 1).expand(h, wd)
    mw = m * w
    k = 2 * r + 1
    need = min_fill * r * k
    # u-gradient: halves left/right of each pixel (window rows v-r..v+r)
    # a jump pixel counts -1e4 valid pixels: any window holding one gets a negative count
    mj = m - 1e4 * jump.to(torch.float32)
    L, R, C = _half_windows(torch.stack((mj, mw, m * uu)), r, along_u=True)
    # v-gradient: halves above/below (window cols u-r..u+r)
    U, D, Cv = _half_windows(torch.stack((mj, mw, m * vv)), r, along_u=False)
    nL, nR, nU, nD = L[0], R[0], U[0], D[0]
    okb = (nL >= need) & (nR >= need) & (nU >= need) & (nD >= need) & (C[0] >= 0) & (Cv[0] >= 0)
    sL, sR, sU, sD = nL.clamp_min(1), nR.clamp_min(1), nU.clamp_min(1), nD.clamp_min(1)
    du = (R[2] / sR - L[2] / sL).clamp_min(1.0)
    dv = (D[2] / sD - U[2] / sU).clamp_min(1.0)
    b = (R[1] / sR - L[1] / sL) / du
    c = (D[1] / sD - U[1] / sU) / dv
    n_all = L[0] + R[0] + C[0]
    s_all = n_all.clamp_min(1)
    wbar = (L[1] + R[1] + C[1]) / s_all
    ubar = (L[2] + R[2] + C[2]) / s_all
    vbar = (U[2] + D[2] + Cv[2]) / (U[0] + D[0] + Cv[0]).clamp_min(1)
    return _Planes(b, c, wbar, ubar, vbar, okb)


_OFFSETS = ((0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


def _select_shifted(p: _Planes, w: torch.Tensor, todo: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Planes for the ``todo`` pixels (HxW bool) whose centred window is unusable (next to depth
    jumps): among the 8 windows shifted by r + 1 that are usable, the one whose plane passes
    closest to the pixel's own w. Returns ``(flat indices, 3xN (b, c, w at the pixel))``; only
    these (few) pixels are gathered, so the cost follows the edge length, not the image size.
    """
    h, wd = w.shape
    dev = w.device
    fields = torch.stack((p.b, p.c, p.w, p.u, p.v)).flatten(1)

    def plane_at(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        f = fields[:, src]
        u = (dst % wd).to(torch.float32)
        v = torch.div(dst, wd, rounding_mode="floor").to(torch.float32)
        return torch.stack((f[0], f[1], f[2] + f[0] * (u - f[3]) + f[1] * (v - f[4])))

    idx = todo.flatten().nonzero().squeeze(1)
    if idx.numel() == 0:
        return idx, torch.zeros((3, 0), device=dev)
    pu, pv = idx % wd, torch.div(idx, wd, rounding_mode="floor")
    ok_flat = p.ok.flatten()
    w_flat = w.flatten()[idx]
    inf = torch.full((idx.numel(),), float("inf"), device=dev)
    best = inf
    chosen = torch.zeros((3, idx.numel()), device=dev)
    s = r + 1
    for dv, du in _OFFSETS:
        qu, qv = pu + du * s, pv + dv * s
        inside = (qu >= 0) & (qu < wd) & (qv >= 0) & (qv < h)
        q = torch.where(inside, qv * wd + qu, idx)
        cand = plane_at(q, idx)
        res = torch.where(inside & ok_flat[q], (cand[2] - w_flat).abs(), inf)
        take = res < best
        best = torch.where(take, res, best)
        chosen = torch.where(take, cand, chosen)
    got = torch.isfinite(best)
    return idx[got], chosen[:, got]


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
        numpy in -> numpy out.

    Raises:
        ValueError: wrong dtype/shape, bad K, K of another image size, or no valid depth at all.
    """
    d, was_numpy = to_tensor(depth, "depth")
    d = check_depth_map(d)
    Kn = check_intrinsics(K, tuple(d.shape))
    ok = depth_validity(d, None if valid is None else to_tensor(valid, "valid", d.device)[0])
    if not bool(ok.any()):
        raise ValueError("depth: no valid pixel (all zero, NaN, inf or masked out)")
    dev = d.device
    zero = torch.zeros((), device=dev)
    w = torch.where(ok, 1.0 / torch.where(ok, d, torch.ones((), device=dev)), zero)
    m = ok.to(torch.float32)
    jump = _jumps(w, ok, cfg.max_rel_jump)
    h, wd = d.shape
    uu = torch.arange(wd, device=dev, dtype=torch.float32).view(1, wd)
    vv = torch.arange(h, device=dev, dtype=torch.float32).view(h, 1)
    b = torch.zeros_like(w)
    c = torch.zeros_like(w)
    wp = torch.zeros_like(w)
    found = torch.zeros_like(ok)
    for r in sorted({int(r) for r in cfg.radii}, reverse=True):
        todo = ok & ~found
        p = _fit_planes(w, m, jump, r, cfg.min_fill)
        take = todo & p.ok  # centred window usable: dense
        b, c = torch.where(take, p.b, b), torch.where(take, p.c, c)
        wp = torch.where(take, p.w + p.b * (uu - p.u) + p.c * (vv - p.v), wp)
        found |= take
        if cfg.shifted:
            idx, pl = _select_shifted(p, w, todo & ~p.ok, r)
            b.view(-1)[idx], c.view(-1)[idx], wp.view(-1)[idx] = pl[0], pl[1], pl[2]
            found.view(-1)[idx] = True
        if bool((found | ~ok).all()):
            break
    fx, fy, cx, cy = (float(Kn[0, 0]), float(Kn[1, 1]), float(Kn[0, 2]), float(Kn[1, 2]))
    uu = torch.arange(wd, device=dev, dtype=torch.float32).view(1, wd) - cx
    vv = torch.arange(h, device=dev, dtype=torch.float32).view(h, 1) - cy
    n = torch.stack((-fx * b, -fy * c, uu * b + vv * c - wp), dim=-1)
    norm = torch.linalg.vector_norm(n, dim=-1)
    out_valid = ok & found & (wp > 0) & torch.isfinite(norm) & (norm > 0)
    n = torch.where(out_valid[..., None], n / norm.clamp_min(1e-20)[..., None], zero)
    return like_input(n, was_numpy), like_input(out_valid, was_numpy)
