"""Camera-frame surface normals from a depth image.

Normals come from the gradient of inverse depth ``w = 1/z``: for a pinhole camera a plane is
*linear* in ``w(u, v)``, so any linear gradient estimate is exact on planes, and Kinect-style
noise (quantised in disparity) is near-uniform in ``w``. With ``b = dw/du``, ``c = dw/dv``::

    n ~ (-fx b, -fy c, (u - cx) b + (v - cy) c - w)    (normalised; n . ray < 0, towards the camera)

(derivation in docs/geometry.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._tensor import ArrayLike, check_depth_map, depth_validity, like_input, to_tensor
from .camera import check_intrinsics, pixel_rays


@dataclass(frozen=True)
class NormalsConfig:
    """Normal estimation settings.

    radius: half-size in pixels of the smoothing window (window = 2 radius + 1).
    max_rel_jump: neighbours whose depths differ by more than this fraction of depth are treated as
        lying on different surfaces (a depth discontinuity); no estimate mixes them.
    """

    radius: int = 3
    max_rel_jump: float = 0.05

    def __post_init__(self) -> None:
        if self.radius < 0:
            raise ValueError(f"NormalsConfig.radius must be >= 0, got {self.radius}")
        if not self.max_rel_jump > 0:
            raise ValueError(f"NormalsConfig.max_rel_jump must be > 0, got {self.max_rel_jump}")


def _box_sum(x: torch.Tensor, r: int) -> torch.Tensor:
    """Sum over a (2r+1)x(2r+1) window (zero padding) of ...xHxW, via cumulative sums."""
    if r == 0:
        return x
    k = 2 * r + 1
    c = torch.nn.functional.pad(x, (r + 1, r)).cumsum(-1)
    x = c[..., k:] - c[..., :-k]
    c = torch.nn.functional.pad(x, (0, 0, r + 1, r)).cumsum(-2)
    return c[..., k:, :] - c[..., :-k, :]


def _one_sided(w: torch.Tensor, ok: torch.Tensor, dim: int, max_rel_jump: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of w along ``dim`` using the neighbour on the same surface (smaller step if both)."""
    d = torch.diff(w, dim=dim)
    pair_ok = (ok.narrow(dim, 1, ok.shape[dim] - 1) & ok.narrow(dim, 0, ok.shape[dim] - 1)) & (
        d.abs() <= max_rel_jump * torch.minimum(w.narrow(dim, 1, w.shape[dim] - 1), w.narrow(dim, 0, w.shape[dim] - 1))
    )
    fwd_pad = [0, 1] if dim == 1 else [0, 0, 0, 1]
    bwd_pad = [1, 0] if dim == 1 else [0, 0, 1, 0]
    fwd = torch.nn.functional.pad(d, fwd_pad)
    bwd = torch.nn.functional.pad(d, bwd_pad)
    fok = torch.nn.functional.pad(pair_ok, fwd_pad)
    bok = torch.nn.functional.pad(pair_ok, bwd_pad)
    both = fok & bok
    g = torch.where(both, 0.5 * (fwd + bwd), torch.where(fok, fwd, torch.where(bok, bwd, torch.zeros_like(fwd))))
    return g, fok | bok


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
    w = torch.where(ok, 1.0 / torch.where(ok, d, torch.ones((), device=d.device)), torch.zeros((), device=d.device))
    gu, oku = _one_sided(w, ok, 1, cfg.max_rel_jump)
    gv, okv = _one_sided(w, ok, 0, cfg.max_rel_jump)
    good = ok & oku & okv
    m = good.to(torch.float32)
    sums = _box_sum(torch.stack((gu * m, gv * m, m)), cfg.radius)
    cnt = sums[2].clamp_min(1.0)
    b, c = sums[0] / cnt, sums[1] / cnt
    x, y = pixel_rays(d.shape[0], d.shape[1], Kn, d.device)
    fx, fy = float(Kn[0, 0]), float(Kn[1, 1])
    # n ~ (fx b, fy c, w - (u-cx) b - (v-cy) c) points away from the camera; negate.
    n = torch.stack((-fx * b, -fy * c, (fx * x) * b + (fy * y) * c - w), dim=-1)
    norm = torch.linalg.vector_norm(n, dim=-1)
    out_valid = good & (norm > 0) & torch.isfinite(norm)
    n = torch.where(out_valid[..., None], n / norm.clamp_min(1e-12)[..., None], torch.zeros((), device=d.device))
    return like_input(n, was_numpy), like_input(out_valid, was_numpy)
