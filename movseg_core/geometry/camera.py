"""Pinhole camera helpers: K checks, back-projection, K under resize and crop.

K is the 3x3 ``sensor_msgs/CameraInfo.k`` of the image it describes (pixels; skew ignored).
Pixel centres sit at integer coordinates (OpenCV/ROS convention).
"""
from __future__ import annotations

import numpy as np
import torch

from ._tensor import ArrayLike, check_depth_map, depth_validity, like_input, to_tensor


def check_intrinsics(K: ArrayLike, image_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Validate K and return it as a 3x3 float64 numpy array.

    Raises ValueError for a wrong shape, non-finite entries, a non-positive focal length, a last
    row other than ``[0, 0, 1]``, or (with ``image_hw``) a principal point outside the image, which
    is what a K belonging to a different image size usually looks like.
    """
    if isinstance(K, torch.Tensor):
        K = K.detach().cpu().numpy()
    K = np.asarray(K, dtype=np.float64)
    if K.size == 9 and K.shape != (3, 3):
        K = K.reshape(3, 3)  # CameraInfo.k is a flat 9-vector
    if K.shape != (3, 3):
        raise ValueError(f"K: expected a 3x3 intrinsic matrix, got shape {K.shape}")
    if not np.isfinite(K).all():
        raise ValueError("K: contains NaN or inf")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"K: focal lengths must be positive, got fx={K[0, 0]}, fy={K[1, 1]}")
    if not np.allclose(K[2], [0.0, 0.0, 1.0]):
        raise ValueError(f"K: last row must be [0, 0, 1], got {K[2].tolist()}")
    if image_hw is not None:
        h, w = image_hw
        cx, cy = K[0, 2], K[1, 2]
        if not (0.0 <= cx <= w and 0.0 <= cy <= h):
            raise ValueError(
                f"K: principal point ({cx:.1f}, {cy:.1f}) lies outside the {w}x{h} image; "
                "depth and K belong to different image sizes (see scale_intrinsics / crop_intrinsics)"
            )
    return K


def checked_depth(depth: ArrayLike, K: ArrayLike | None = None, valid: ArrayLike | None = None
                  ) -> tuple[torch.Tensor, bool, np.ndarray | None, torch.Tensor]:
    """The checked inputs of a depth-geometry function, checked in this order.

    Returns ``(d, was_numpy, Kn, ok)``: ``d`` the depth as an HxW float32 tensor (metres) and whether
    it came as numpy; ``Kn`` the checked 3x3 K for d's size (None when ``K`` is None); ``ok`` HxW bool,
    finite positive depth and ``valid`` (HxW bool) when given.
    """
    d, was_numpy = to_tensor(depth, "depth")
    d = check_depth_map(d)
    Kn = None if K is None else check_intrinsics(K, tuple(d.shape))
    ok = depth_validity(d, None if valid is None else to_tensor(valid, "valid", d.device)[0])
    return d, was_numpy, Kn, ok


def pixel_rays(h: int, w: int, K: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ray coordinates ``x = (u - cx) / fx`` (1xW) and ``y = (v - cy) / fy`` (Hx1), float32."""
    u = torch.arange(w, device=device, dtype=torch.float32)
    v = torch.arange(h, device=device, dtype=torch.float32)
    x = ((u - float(K[0, 2])) / float(K[0, 0])).view(1, w)
    y = ((v - float(K[1, 2])) / float(K[1, 1])).view(h, 1)
    return x, y


def backproject(depth: ArrayLike, K: ArrayLike, valid: ArrayLike | None = None) -> ArrayLike:
    """Back-project depth to camera-frame points.

    Args:
        depth: HxW metres (0, NaN or inf = invalid).
        K: 3x3 intrinsics of this depth image.
        valid: optional HxW bool; pixels outside it give the point 0.

    Returns:
        HxWx3 float32 points ``(X, Y, Z)`` in metres in the optical frame (x right, y down, z forward);
        0 at invalid pixels. numpy in -> numpy out.
    """
    d, was_numpy, Kn, ok = checked_depth(depth, K, valid)
    z = torch.where(ok, d, torch.zeros((), device=d.device))
    x, y = pixel_rays(d.shape[0], d.shape[1], Kn, d.device)
    pts = torch.stack((z * x, z * y, z), dim=-1)
    return like_input(pts, was_numpy)


def scale_intrinsics(K: ArrayLike, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """K of an image resized from ``src_hw`` to ``dst_hw`` (H, W), as cv2.resize / align_corners=False do.

    Pixel edges scale: ``u' + 0.5 = s_x (u + 0.5)``, so ``fx' = s_x fx`` and ``cx' = s_x (cx + 0.5) - 0.5``.
    """
    Kn = check_intrinsics(K)
    (sh, sw), (dh, dw) = src_hw, dst_hw
    if min(sh, sw, dh, dw) <= 0:
        raise ValueError(f"image sizes must be positive, got src={src_hw} dst={dst_hw}")
    sx, sy = dw / sw, dh / sh
    out = Kn.copy()
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = sx * (Kn[0, 2] + 0.5) - 0.5
    out[1, 2] = sy * (Kn[1, 2] + 0.5) - 0.5
    return out


def crop_intrinsics(K: ArrayLike, top: int, left: int) -> np.ndarray:
    """K of the crop ``image[top:, left:]`` (any bottom/right): the principal point shifts."""
    Kn = check_intrinsics(K)
    out = Kn.copy()
    out[0, 2] -= left
    out[1, 2] -= top
    return out
