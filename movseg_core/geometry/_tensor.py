"""Small helpers shared by the geometry modules: numpy/torch in, same kind out."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

ArrayLike = Any  # torch.Tensor | np.ndarray


def to_tensor(x: ArrayLike, name: str, device: torch.device | None = None) -> tuple[torch.Tensor, bool]:
    """Return ``(tensor, was_numpy)``; numpy arrays are wrapped without a copy where possible."""
    if isinstance(x, torch.Tensor):
        return (x if device is None else x.to(device)), False
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint16:  # torch's uint16 support is thin: widen losslessly
            x = x.astype(np.int32)
        t = torch.from_numpy(np.ascontiguousarray(x))
        return (t if device is None else t.to(device)), True
    raise ValueError(f"{name}: expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def like_input(t: torch.Tensor, was_numpy: bool) -> ArrayLike:
    """Give back numpy when the caller passed numpy, else the tensor."""
    return t.detach().cpu().numpy() if was_numpy else t


def squeeze_hw(image, name: str):
    """An HxW or HxWx1 array or tensor as HxW (a view); ValueError naming ``name`` for any other shape."""
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(f"{name}: expected shape HxW, got {tuple(image.shape)}")
    return image


def check_depth_map(depth: torch.Tensor, name: str = "depth") -> torch.Tensor:
    """Validate an HxW (or HxWx1) floating depth map and return it as HxW float32."""
    depth = squeeze_hw(depth, name)
    if depth.shape[0] < 2 or depth.shape[1] < 2:
        raise ValueError(f"{name}: image too small {tuple(depth.shape)} (need at least 2x2)")
    if not depth.is_floating_point():
        raise ValueError(
            f"{name}: expected floating-point metres, got dtype {depth.dtype} (decode raw images with decode_depth)"
        )
    return depth.to(torch.float32)


def depth_validity(depth: torch.Tensor, valid: torch.Tensor | None, name: str = "valid") -> torch.Tensor:
    """Finite, positive depth AND the caller's mask (if any) -> HxW bool."""
    ok = torch.isfinite(depth) & (depth > 0)
    if valid is not None:
        if valid.shape != depth.shape:
            raise ValueError(f"{name}: shape {tuple(valid.shape)} differs from depth {tuple(depth.shape)}")
        ok = ok & valid.to(device=depth.device, dtype=torch.bool)
    return ok
