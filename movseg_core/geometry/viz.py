"""Write depth / normals / HHA PNGs of one frame for people to look at."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from ._tensor import ArrayLike, to_tensor
from .modality import depth_to_rgb, hha, normals_to_rgb
from .normals import NormalsConfig, normals_from_depth


def _np(x: ArrayLike) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def save_geometry_pngs(
    out_dir: str | Path,
    name: str,
    depth: ArrayLike,
    K: ArrayLike,
    rgb: ArrayLike | None = None,
    valid: ArrayLike | None = None,
    cfg: NormalsConfig = NormalsConfig(),
) -> list[Path]:
    """Write ``<name>_depth.png``, ``<name>_normals.png``, ``<name>_hha.png`` and a side-by-side
    ``<name>_panel.png`` (RGB first when ``rgb`` HxWx3 uint8 is given) into ``out_dir``.

    depth: HxW metres (0/NaN = invalid); K: 3x3. Returns the written paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = to_tensor(depth, "depth")[0]
    normals, nvalid = normals_from_depth(d, K, valid, cfg)
    images = {
        "depth": _np(depth_to_rgb(d, valid)),
        "normals": _np(normals_to_rgb(normals, nvalid)),
        "hha": _np(hha(d, K, valid, normals=normals)),
    }
    panel = list(images.values())
    if rgb is not None:
        rgb_np = _np(rgb)
        if rgb_np.shape != images["depth"].shape or rgb_np.dtype != np.uint8:
            raise ValueError(f"rgb: expected {images['depth'].shape} uint8, got {rgb_np.shape} {rgb_np.dtype}")
        panel.insert(0, rgb_np)
    images["panel"] = np.concatenate(panel, axis=1)
    paths = []
    for key, img in images.items():
        p = out / f"{name}_{key}.png"
        if not cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {p}")
        paths.append(p)
    return paths
