"""bench/objects.py --quick runs end to end and shows what issue 15 asks: RGB-D grouping beats RGB-only."""
from __future__ import annotations

import json
import os
import subprocess

from conftest import PYTHON, REPO


def test_bench_objects_quick():
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([PYTHON, str(REPO / "bench" / "objects.py"), "--quick"], capture_output=True, text=True,
                         env=env, timeout=600, check=True).stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert set(last) == {"pq_oracle_rgb", "pq_oracle_rgbd", "pq_clip_rgbd", "centroid_err_cm_p50", "box3d_iou_p50",
                         "ms"}
    assert last["pq_oracle_rgbd"] > last["pq_oracle_rgb"] + 0.1  # two touching look-alikes at two depths are two
    assert 0 < last["centroid_err_cm_p50"] < 20 and 0 < last["box3d_iou_p50"] <= 1 and last["ms"] > 0
