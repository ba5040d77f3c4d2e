"""X-modality images for the X-backbone and CLIP-X: normals RGB, depth image, HHA (HxWx3 uint8)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ._tensor import ArrayLike, like_input, to_tensor
from .camera import backproject, checked_depth
from .normals import NormalsConfig, normals_from_depth

#: The X modalities (images of depth geometry) CLIP-X and the RGB+X proposal network take.
X_MODALITIES: tuple[str, ...] = ("normals", "depth", "hha")


def normals_to_rgb(normals: ArrayLike, valid: ArrayLike | None = None) -> ArrayLike:
    """Camera-frame unit normals HxWx3 -> HxWx3 uint8 with ``rgb = round((n + 1) / 2 * 255)``.

    Invalid pixels (``valid`` False, or a zero vector) are black (0, 0, 0).
    """
    n, was_numpy = to_tensor(normals, "normals")
    if n.ndim != 3 or n.shape[-1] != 3:
        raise ValueError(f"normals: expected shape HxWx3, got {tuple(n.shape)}")
    if not n.is_floating_point():
        raise ValueError(f"normals: expected floating point, got dtype {n.dtype}")
    n = torch.nan_to_num(n.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
    ok = n.abs().sum(-1) > 0
    if valid is not None:
        v = to_tensor(valid, "valid", n.device)[0].to(torch.bool)
        if v.shape != n.shape[:2]:
            raise ValueError(f"valid: shape {tuple(v.shape)} differs from normals {tuple(n.shape[:2])}")
        ok &= v
    img = ((n.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    img = torch.where(ok[..., None], img, torch.zeros((), dtype=torch.uint8, device=n.device))
    return like_input(img, was_numpy)


def _turbo_lut() -> torch.Tensor:
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_TURBO)
    return torch.from_numpy(lut[:, 0, ::-1].copy())  # BGR -> RGB, 256x3 uint8


def depth_to_rgb(
    depth: ArrayLike,
    valid: ArrayLike | None = None,
    depth_range: tuple[float, float] | None = None,
    colormap: str | None = "turbo",
) -> ArrayLike:
    """Depth HxW metres -> HxWx3 uint8.

    Depth is normalised to 0..1 over ``depth_range`` (metres; default: the 1st-99th percentile of the
    valid depths), near = 0. ``colormap="turbo"`` colour-maps it (for viewing); ``colormap=None``
    gives the grey level ``255 * (1 - t)`` (near bright) in all three channels, the usual input of
    an X-backbone. Invalid pixels are black.
    """
    d, was_numpy, _, ok = checked_depth(depth, valid=valid)
    if not bool(ok.any()):
        raise ValueError("depth: no valid pixel (all zero, NaN, inf or masked out)")
    if colormap not in ("turbo", None):
        raise ValueError(f"colormap: expected 'turbo' or None, got {colormap!r}")
    if depth_range is None:
        vals = d[ok]
        if vals.numel() > 200_000:
            vals = vals[:: vals.numel() // 100_000 + 1]
        q = torch.quantile(vals, torch.tensor([0.01, 0.99], device=d.device))
        lo, hi = float(q[0]), float(q[1])
    else:
        lo, hi = (float(v) for v in depth_range)
    if not hi > lo:
        hi = lo + 1e-3
    t = ((torch.where(ok, d, torch.full((), lo, device=d.device)) - lo) / (hi - lo)).clamp(0, 1)
    if colormap is None:
        g = ((1.0 - t) * 255.0).round().to(torch.uint8)
        img = g[..., None].expand(*g.shape, 3).contiguous()
    else:
        img = _turbo_lut().to(d.device)[(t * 255.0).round().long()]
    img = torch.where(ok[..., None], img, torch.zeros((), dtype=torch.uint8, device=d.device))
    return like_input(img, was_numpy)


@dataclass(frozen=True)
class HHAConfig:
    """HHA encoding (after Gupta et al., ECCV 2014), all channels clipped to 0..255.

    Channel 1, horizontal disparity: ``disparity_scale / z`` (z in metres; 100 -> 255 at 0.39 m).
    Channel 2, height above the lowest observed point (its ``floor_percentile`` height), in
        ``height_per_unit`` metres per grey level (default 1 cm).
    Channel 3, angle between the normal and the gravity "up" direction, 0..180 deg -> 0..255.
    Gravity starts as the camera's -y axis ("up" in the optical frame) and is refined
    ``gravity_iters`` times from the normals (Gupta's estimate: normals near it = floor-like, near
    its orthogonal = walls); set 0 to trust the camera's orientation.
    """

    disparity_scale: float = 100.0
    height_per_unit: float = 0.01
    floor_percentile: float = 0.01
    gravity_iters: int = 2


def estimate_up(normals: torch.Tensor, valid: torch.Tensor, iters: int = 2) -> torch.Tensor:
    """Gravity 'up' unit vector (camera frame) from normals, starting from -y (Gupta et al. 2013)."""
    up = torch.tensor([0.0, -1.0, 0.0], device=normals.device)
    n = normals[valid]
    if n.shape[0] > 50_000:
        n = n[:: n.shape[0] // 50_000 + 1]
    for thr_deg in [45.0, 15.0][: max(iters, 0)] + [15.0] * max(iters - 2, 0):
        cos = n @ up
        cos_t = float(np.cos(np.deg2rad(thr_deg)))
        par = n[cos.abs() > cos_t]
        perp = n[cos.abs() < float(np.sin(np.deg2rad(thr_deg)))]
        if par.shape[0] < 10:
            break
        m = perp.T @ perp - par.T @ par
        evals, evecs = torch.linalg.eigh(m.double())
        new = evecs[:, 0].to(n.dtype)
        up = new if float(new @ up) >= 0 else -new
    return up


def hha(
    depth: ArrayLike,
    K: ArrayLike,
    valid: ArrayLike | None = None,
    normals: ArrayLike | None = None,
    cfg: HHAConfig = HHAConfig(),
    normals_cfg: NormalsConfig = NormalsConfig(),
) -> ArrayLike:
    """HHA image HxWx3 uint8 (disparity, height, angle; see :class:`HHAConfig`); invalid = black.

    ``normals`` (HxWx3 camera-frame unit normals) are computed with :func:`normals_from_depth`
    when not given.
    """
    d, was_numpy, Kn, ok = checked_depth(depth, K, valid)
    if not bool(ok.any()):
        raise ValueError("depth: no valid pixel (all zero, NaN, inf or masked out)")
    z = torch.where(ok, d, torch.zeros((), device=d.device))
    if normals is None:
        n, nok = normals_from_depth(z, Kn, ok, normals_cfg)
    else:
        n = to_tensor(normals, "normals", d.device)[0].to(torch.float32)
        if n.shape != (*d.shape, 3):
            raise ValueError(f"normals: shape {tuple(n.shape)} does not match depth {tuple(d.shape)} x 3")
        n = torch.nan_to_num(n)
        nok = n.abs().sum(-1) > 0
    nok = nok & ok
    up = estimate_up(n, nok, cfg.gravity_iters) if bool(nok.any()) else torch.tensor([0.0, -1.0, 0.0], device=d.device)
    pts = backproject(z, Kn)
    height = pts @ up
    floor = torch.quantile(height[ok][:: max(1, int(ok.sum()) // 100_000)], cfg.floor_percentile)
    h = ((height - floor) / cfg.height_per_unit).clamp(0, 255)
    disp = (cfg.disparity_scale / z.clamp_min(1e-6)).clamp(0, 255)
    ang = torch.rad2deg(torch.arccos((n @ up).clamp(-1, 1))) * (255.0 / 180.0)
    img = torch.stack((disp, h, ang.where(nok, torch.zeros((), device=d.device))), -1).round().to(torch.uint8)
    img = torch.where(ok[..., None], img, torch.zeros((), dtype=torch.uint8, device=d.device))
    return like_input(img, was_numpy)
