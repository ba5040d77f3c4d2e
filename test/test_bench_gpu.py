"""bench/gpu.py, the ready GPU benchmark, runs end to end on the CPU (``--quick``) with its JSON last line."""
from __future__ import annotations

import json
import os
import subprocess

from conftest import PYTHON, REPO


def test_bench_gpu_quick_runs_on_the_cpu():
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([PYTHON, str(REPO / "bench" / "gpu.py"), "--quick", "--device", "cpu"], capture_output=True,
                         text=True, env=env, timeout=600, check=True).stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert last["device"] == "cpu" and last["gpu"] is None
    m = last["models"]["movseg-tiny-vit"]
    assert m["precision"] == "fp32" and m["normals_device"] == "cpu"
    assert {"normals", "proposals", "dense", "pool", "classify", "paint", "objects", "total"} <= set(m["stages_ms"])
    assert m["fps_sequential"] > 0 and m["fps_pipelined"] > 0 and m["peak_memory_mb"] is None
    non_clip = sum(v for k, v in m["stages_ms"].items() if k not in ("dense", "total"))
    assert 0 < m["cpu_stages_ms"] <= non_clip * 1.5
