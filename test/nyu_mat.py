"""Small files in the published NYUv2 layout (nyu_depth_v2_labeled.mat, classMapping40.mat, splits.mat)."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from scipy.io import savemat


def write_labeled_set(folder: Path, n: int, mat_name: str = "nyu_depth_v2_labeled.mat", raw_depth: bool = False,
                      train=(1, 3, 4), test=(2,), h: int = 12, w: int = 16, seed: int = 0, instances: bool = False,
                      scene: dict[str, np.ndarray] | None = None):
    """Write a labeled .mat (h5py view of MATLAB's transposed arrays), the 894->40 mapping and the splits.

    instances: also write the ``instances`` dataset (per-class object index, 0..3 random). scene: the
    arrays to write instead of random ones (keys rgb, depth, labels, mapping, optional instances; n, h, w
    and instances are then taken from it).
    Returns (rgb NxHxWx3 uint8, depth NxHxW float32 metres, labels NxHxW uint16 in 0..894, mapping (894,)),
    plus instances NxHxW uint8 as a fifth item when written.
    """
    rng = np.random.default_rng(seed)
    if scene is None:
        scene = {"rgb": rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8),
                 "depth": rng.uniform(0.5, 9.0, (n, h, w)).astype(np.float32),
                 "labels": rng.integers(0, 895, (n, h, w)).astype(np.uint16),
                 "mapping": rng.integers(1, 41, 894)}
        if instances:
            scene["instances"] = rng.integers(0, 4, (n, h, w)).astype(np.uint8)
    rgb, depth, labels, mapping = scene["rgb"], scene["depth"], scene["labels"], scene["mapping"]
    inst = scene.get("instances")
    with h5py.File(folder / mat_name, "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)
        f["depths"] = depth.transpose(0, 2, 1)
        if raw_depth:
            f["rawDepths"] = np.where(depth > 4, 0, depth).transpose(0, 2, 1)
        f["labels"] = labels.transpose(0, 2, 1)
        if inst is not None:
            f["instances"] = inst.transpose(0, 2, 1)
    savemat(folder / "classMapping40.mat", {"mapClass": np.asarray(mapping)[None, :].astype(np.float64)})
    savemat(folder / "splits.mat", {"trainNdxs": np.array(train)[:, None], "testNdxs": np.array(test)[:, None]})
    return (rgb, depth, labels, mapping) if inst is None else (rgb, depth, labels, mapping, inst)
