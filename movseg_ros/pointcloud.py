"""Labelled ``sensor_msgs/PointCloud2`` from depth + labels (conversion only)."""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from movseg_core.geometry import backproject

CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<u2"), ("confidence", "<f4"),
                        ("instance", "<u2")])
_UINT16_FIELDS = ("label", "instance")


def labelled_cloud(header, depth_m: np.ndarray, K: np.ndarray, labels: np.ndarray,
                   confidence: np.ndarray, instances: np.ndarray | None = None) -> PointCloud2:
    """Unorganised cloud of the pixels with valid depth (camera optical frame, metres).

    depth_m: HxW float32 metres (0 or NaN invalid); K: 3x3; labels HxW uint16; confidence HxW float32;
    instances: HxW uint16 instance map (0 = none; None: the ``instance`` field is all 0).
    """
    pts = np.asarray(backproject(np.nan_to_num(depth_m, nan=0.0).astype(np.float32), K), dtype=np.float32)
    valid = np.isfinite(depth_m) & (depth_m > 0)
    cloud = np.empty(int(valid.sum()), dtype=CLOUD_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = pts[valid, 0], pts[valid, 1], pts[valid, 2]
    cloud["label"] = labels[valid]
    cloud["confidence"] = confidence[valid]
    cloud["instance"] = 0 if instances is None else instances[valid]
    msg = PointCloud2(header=header, height=1, width=cloud.size, is_bigendian=False,
                      point_step=CLOUD_DTYPE.itemsize, row_step=CLOUD_DTYPE.itemsize * cloud.size, is_dense=True)
    msg.fields = [PointField(name=n, offset=CLOUD_DTYPE.fields[n][1], count=1,
                             datatype=PointField.UINT16 if n in _UINT16_FIELDS else PointField.FLOAT32)
                  for n in CLOUD_DTYPE.names]
    msg.data = cloud.tobytes()
    return msg
