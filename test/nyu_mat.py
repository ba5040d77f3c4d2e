"""Small files in the published NYUv2 layout (nyu_depth_v2_labeled.mat, classMapping40.mat, splits.mat)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from scipy.io import savemat


def write_labeled_set(folder: Path, n: int, mat_name: str = "nyu_depth_v2_labeled.mat", raw_depth: bool = False,
                      train=(1, 3, 4), test=(2,), h: int = 12, w: int = 16, seed: int = 0):
    """Write a labeled .mat (h5py view of MATLAB's transposed arrays), the 894->40 mapping and the splits.

    Returns (rgb NxHxWx3 uint8, depth NxHxW float32 metres, labels NxHxW uint16 in 0..894, mapping (894,)).
    """
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 9.0, (n, h, w)).astype(np.float32)
    labels = rng.integers(0, 895, (n, h, w)).astype(np.uint16)
    with h5py.File(folder / mat_name, "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)
        f["depths"] = depth.transpose(0, 2, 1)
        if raw_depth:
            f["rawDepths"] = np.where(depth > 4, 0, depth).transpose(0, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
    mapping = rng.integers(1, 41, 894)
    savemat(folder / "classMapping40.mat", {"mapClass": mapping[None, :].astype(np.float64)})
    savemat(folder / "splits.mat", {"trainNdxs": np.array(train)[:, None], "testNdxs": np.array(test)[:, None]})
    return rgb, depth, labels, mapping
