#!/usr/bin/env python3
"""movseg_node under a 30 Hz 640x480 RGB-D stream over real DDS, across processes.

A player process (`movseg play`) publishes the bundled NYUv2 frames at --rate for --seconds into a
node process (`movseg run`, the launch file's configuration); this process listens to
/movseg/label_info like any client. Per model (tiny random open_clip, then ViT-B/16 random weights:
speed does not depend on the weights) it reports end-to-end latency (receive time - stamp),
node overhead (latency minus the segmenter's own time, carried in LabelInfo.inference_ms: queueing
behind the busy model, conversion, publishing), output rate, drops and the node's resident memory
after warm-up and at the end.

Each model runs with each ``--budgets`` value of the node's ``freshness_budget`` (0: always label
the frame that queued while the model was busy; 0.1: the default, may wait up to 10 % of a cycle for
the camera's next frame), one after the other in this run, so the two policies are compared side by side.

With ``--model-ms 30`` the model is the GPU stand-in instead (``segmenter.clip.simulated_ms``: the
ViT-B/16 architecture whose every CLIP forward is a 30 ms wait using no CPU, as a GPU looks from the
host; movseg_core/gpu_standin.py), run with the pipelined schedule (``pipeline: true``,
``segmenter.overlap: true``: geometry beside the CLIP pass, publishing beside the next frame) and the
sequential one (both false), alternating, ``--rounds`` times each, in the same run.

The listener subscribes to every default output of the node (``--outputs all``: labels, confidence,
instances, objects and the overlay delivered raw, as to a C++ client; the node builds and sends all of
them) or to label-info alone (``--outputs label_info``: the node's lazy outputs skip the rest).

    .venv/bin/python bench/node.py [--seconds 60] [--models tiny,vitb16] [--rate 30] [--budgets 0,0.1]
    .venv/bin/python bench/node.py --model-ms 30 [--seconds 20] [--rounds 2] [--budgets 0.1] [--outputs all]
        [--executors single_threaded,events]   # the node's executor parameter values, side by side
Last line: {"latency_ms_p50", "latency_ms_p99", "overhead_ms_p50", "rate_hz", "drops", "rss_start_mb",
"rss_end_mb", "node_share_ms_p50", "dds_floor", "per_model": {"<model>@<budget>": {...}}} (top-level
figures: the last model, last budget); with --model-ms also "rate_hz_pipelined", "rate_hz_sequential",
"latency_ms_p50_pipelined", "latency_ms_p50_sequential", "node_share_ms_p50_pipelined",
"node_share_ms_p50_sequential", "cpu_ms_per_frame_pipelined", "cpu_ms_per_frame_sequential" (medians over
the rounds; for the first of --executors, the others' with an ``_<executor>`` suffix) and "model_ms";
"outputs". cpu_ms_per_frame: the node's CPU time (all threads) per camera frame sent.
"""
from __future__ import annotations

from _common import REPO, print_summary  # noqa: E402  (sets the environment up first)

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

MODELS = {
    "tiny": {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu"},
             "dense": {"short_side": 224}},
    "vitb16": {"clip": {"model_name": "ViT-B-16", "pretrained": "random", "device": "cpu"},
               "dense": {"short_side": 448}},
}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


@contextlib.contextmanager
def listening(name: str, subscriptions: list[tuple]):
    """A listener node in this process, spun in a thread: ``subscriptions`` are
    (msg_type, topic, qos, callback[, raw]) (raw: the callback gets the serialized bytes, not deserialized
    here); torn down on exit."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    me = rclpy.create_node(name, context=ctx)
    for msg_type, topic, qos, callback, *raw in subscriptions:
        me.create_subscription(msg_type, topic, callback, qos, raw=bool(raw and raw[0]))
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(me)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                               daemon=True)
    spinner.start()
    try:
        yield
    finally:
        stop.set()
        spinner.join(timeout=5)
        rclpy.shutdown(context=ctx)


def default_outputs() -> list[tuple[type, str]]:
    """(message type, topic) of the node's default outputs other than label-info (movseg_ros/outputs.py)."""
    from sensor_msgs.msg import Image

    from movseg_ros import topics
    from movseg_ros.msg import ObjectArray
    from movseg_ros.outputs import OUTPUTS, VISION_OUTPUTS, publish_switch
    from movseg_ros.params import declared_defaults

    defaults = declared_defaults()
    known = {"labels": (Image, topics.LABELS), "confidence": (Image, topics.CONFIDENCE),
             "instances": (Image, topics.INSTANCES), "objects": (ObjectArray, topics.OBJECTS),
             "overlay": (Image, topics.OVERLAY)}
    on = [k for k in OUTPUTS
          if k not in VISION_OUTPUTS and k != "label_info" and defaults[f"publish.{publish_switch(k)}"]]
    missing = set(on) - set(known)
    if missing:
        raise RuntimeError(f"bench/node.py does not know the message type of default output(s) {sorted(missing)}")
    return [known[k] for k in on]


SCHEDULES = {"pipelined": (True, True), "sequential": (False, False)}  # (node pipeline, segmenter.overlap)


def standin(model_ms: float, overlap: bool) -> dict:
    """The GPU stand-in: ViT-B/16 shapes, every CLIP forward a ``model_ms`` wait without CPU (gpu_standin.py)."""
    return {"clip": {"model_name": "ViT-B-16", "device": "cpu", "simulated_ms": model_ms},
            "dense": {"short_side": 448}, "overlap": overlap}


def run_model(name: str, seconds: float, rate: float, workdir: Path, budget: float,
              segmenter: dict | None = None, pipeline: bool = True, all_outputs: bool = True,
              executor: str | None = None) -> dict:
    from movseg_ros.msg import LabelInfo
    from movseg_ros.qos import qos_by_name

    cfg = workdir / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump({"movseg": {"ros__parameters": {
        "segmenter": segmenter or MODELS[name], "log_period_s": 5.0, "freshness_budget": budget,
        "pipeline": pipeline, **({"executor": executor} if executor else {})}}}))
    node_log = open(workdir / f"node-{name}-{budget}.log", "w")
    node = subprocess.Popen([sys.executable, "-m", "movseg_ros.cli", "run", "--config", str(cfg)],
                            stdout=node_log, stderr=subprocess.STDOUT, cwd=REPO)
    got: list[tuple[float, float, float]] = []  # (stamp, latency ms, inference ms); wall clock, seconds

    def on_info(msg):
        now = time.time()
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        got.append((stamp, (now - stamp) * 1000.0, msg.inference_ms))

    # every other default output has a subscriber too (the node builds only what is subscribed), so the
    # node's share includes building and sending all of them, as for a client that shows the overlay; raw:
    # delivered but not deserialized by this Python process (as a C++ client, e.g. rviz, would take them), so
    # the client's own decoding does not take these 2 cores from the node
    others = [(msg_type, topic, qos_by_name("reliable", depth=5), lambda _msg: None, True)
              for msg_type, topic in default_outputs()] if all_outputs else []
    try:
        with listening("movseg_bench_listener",
                       [(LabelInfo, "/movseg/label_info", qos_by_name("reliable", depth=100), on_info)] + others):
            # warm-up: a short burst until the first labels come back (model load, first forward)
            deadline = time.monotonic() + 300
            while not got and time.monotonic() < deadline and node.poll() is None:
                subprocess.run([sys.executable, "-m", "movseg_ros.cli", "play", "--count", "3", "--rate", "2",
                                "--wait", "60"], cwd=REPO, capture_output=True)
            if not got:
                raise RuntimeError(f"node produced no labels; see {node_log.name}")
            time.sleep(1.0)
            rss_start, cpu_start = rss_mb(node.pid), cpu_s(node.pid)
            # measured: frames stamped from here on (a queued warm-up frame can be labelled later:
            # a ViT-B/16 frame takes ~2.4 s on CPU)
            t0 = time.time()
            player = subprocess.run([sys.executable, "-m", "movseg_ros.cli", "play", "--rate", str(rate),
                                     "--seconds", str(seconds), "--wait", "10"],
                                    cwd=REPO, capture_output=True, text=True)
            t_end = time.time()
            time.sleep(2.0)  # the last frame in flight
            rss_end, cpu_end = rss_mb(node.pid), cpu_s(node.pid)
    finally:
        node.send_signal(signal.SIGINT)
        node_rc = node.wait(timeout=30)
        node_log.close()
    m = re.search(r"published (\d+) frames in ([\d.]+) s", player.stderr + player.stdout)
    sent = int(m.group(1)) if m else -1
    publishing_s = float(m.group(2)) if m else t_end - t0  # without the player's discovery wait
    recv = [g for g in got if t0 <= g[0] <= t_end]  # stamped during the measurement (the player's clock)
    lat = np.array([g[1] for g in recv])
    over = np.array([g[1] - g[2] for g in recv])
    inf = np.array([g[2] for g in recv])
    log_text = Path(node_log.name).read_text()
    stats = [ln for ln in log_text.splitlines() if "stats:" in ln and "median ms" in ln]
    return {
        "model": name, "freshness_budget": budget, "frames_sent": sent, "frames_labelled": len(recv),
        "drops": sent - len(recv),
        "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
        "latency_ms_p90": round(float(np.percentile(lat, 90)), 1),
        "latency_ms_p99": round(float(np.percentile(lat, 99)), 1),
        "inference_ms_p50": round(float(np.median(inf)), 1),
        "overhead_ms_p50": round(float(np.median(over)), 1),
        "overhead_ms_p99": round(float(np.percentile(over, 99)), 1),
        "rate_hz": round(len(recv) / publishing_s, 2),
        # the node's CPU time (every thread) per camera frame sent, over the measured window
        "cpu_ms_per_frame": round(1000.0 * (cpu_end - cpu_start) / max(sent, 1), 1),
        "rss_start_mb": round(rss_start, 1), "rss_end_mb": round(rss_end, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
        "node_exit_code": node_rc,
        "node_stage_ms_last": stats[-1].split("median ms:")[-1].strip() if stats else "",
    }


_INFO_PUBLISHER = """
import sys, time, rclpy
from movseg_ros.msg import LabelInfo
from movseg_ros.qos import qos_by_name
rclpy.init()
node = rclpy.create_node("movseg_bench_info_pub")
pub = node.create_publisher(LabelInfo, "/movseg/label_info", qos_by_name("reliable", depth=5))
end = time.time() + float(sys.argv[1])
while time.time() < end:
    msg = LabelInfo(names=["wall", "floor", "chair", "table"], ids=[1, 2, 3, 4])
    msg.header.stamp = node.get_clock().now().to_msg()
    pub.publish(msg)
    time.sleep(1 / 30)
"""


def transport_floor(seconds: float, rate: float) -> dict:
    """DDS latency with no node in between, measured like the node's figures (receive - stamp,
    this process listening): the player's 640x480 colour frames (camera -> node hop) and a
    LabelInfo publisher process (node -> client hop). Their sum is the part of the end-to-end
    overhead that no node can remove."""
    from sensor_msgs.msg import Image

    from movseg_ros.msg import LabelInfo
    from movseg_ros.qos import qos_by_name

    lat: dict[str, list[float]] = {"image": [], "label_info": []}

    def on(key: str):
        def f(msg):
            s = msg.header.stamp
            lat[key].append((time.time() - (s.sec + s.nanosec * 1e-9)) * 1000.0)
        return f

    with listening("movseg_bench_floor",
                   [(Image, "/camera/color/image_raw", qos_by_name("sensor_data"), on("image")),
                    (LabelInfo, "/movseg/label_info", qos_by_name("reliable", depth=100), on("label_info"))]):
        info = subprocess.Popen([sys.executable, "-c", _INFO_PUBLISHER, str(seconds + 5)], cwd=REPO)
        subprocess.run([sys.executable, "-m", "movseg_ros.cli", "play", "--rate", str(rate), "--seconds", str(seconds),
                        "--wait", "10"], cwd=REPO, capture_output=True)
        info.wait(timeout=60)
    out = {f"{k}_ms_p50": round(float(np.median(v)), 2) if v else float("nan") for k, v in lat.items()}
    out.update({f"{k}_n": len(v) for k, v in lat.items()})
    out["floor_ms_p50"] = round(out["image_ms_p50"] + out["label_info_ms_p50"], 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--models", default="tiny,vitb16")
    ap.add_argument("--budgets", default=None,
                    help="freshness_budget values to run each model with, side by side (the last one is the headline; "
                         "default 0,0.1, with --model-ms 0.1)")
    ap.add_argument("--model-ms", type=float, default=0.0,
                    help="> 0: the GPU stand-in model (each CLIP forward a wait of this many ms, no CPU), pipelined "
                         "and sequential schedules side by side, instead of --models")
    ap.add_argument("--rounds", type=int, default=2, help="with --model-ms: runs of each schedule, alternating")
    ap.add_argument("--outputs", choices=("all", "label_info"), default="all",
                    help="what the listener subscribes to: every default output (the node builds and sends all of "
                         "them) or label-info alone (the node's lazy outputs skip the rest, instances too)")
    ap.add_argument("--executors", default="",
                    help="comma list of the node's executor parameter values to run side by side (alternating; "
                         "default: the node's default)")
    args = ap.parse_args()
    executors = [e for e in args.executors.split(",") if e] or [None]
    budgets = [float(b) for b in (args.budgets or ("0.1" if args.model_ms > 0 else "0,0.1")).split(",")]
    if args.model_ms > 0:  # (label, segmenter config, node pipeline), the two schedules alternating
        runs = [(f"standin{args.model_ms:g}ms-{sched}-r{i}" + (f"-{ex}" if ex else ""), standin(args.model_ms, overlap),
                 pipe, b, ex)
                for i in range(args.rounds) for b in budgets for sched, (pipe, overlap) in SCHEDULES.items()
                for ex in executors]
    else:
        runs = [(n + (f"-{ex}" if ex else ""), None, True, b, ex) for n in args.models.split(",") for b in budgets
                for ex in executors]
    per_model = {}
    floor = transport_floor(min(10.0, args.seconds), args.rate)
    print(f"DDS floor (no node): 640x480 colour frame p50 {floor['image_ms_p50']} ms ({floor['image_n']} frames), "
          f"LabelInfo p50 {floor['label_info_ms_p50']} ms: {floor['floor_ms_p50']} ms of any end-to-end overhead")
    with tempfile.TemporaryDirectory(prefix="movseg_bench_node_") as tmp:
        for name, segmenter, pipeline, budget, executor in runs:
            r = run_model(name, args.seconds, args.rate, Path(tmp), budget, segmenter, pipeline, args.outputs == "all",
                          executor)
            r["node_share_ms_p50"] = round(r["overhead_ms_p50"] - floor["floor_ms_p50"], 1)
            r["load_average"] = round(os.getloadavg()[0], 2)
            per_model[f"{name}@{budget:g}"] = r
            print(f"{name} (freshness_budget {budget:g}, load {r['load_average']}): sent {r['frames_sent']} "
                  f"labelled {r['frames_labelled']} ({r['rate_hz']} Hz), "
                  f"latency p50/p90/p99 {r['latency_ms_p50']}/{r['latency_ms_p90']}/{r['latency_ms_p99']} ms, "
                  f"inference p50 {r['inference_ms_p50']} ms, overhead p50 {r['overhead_ms_p50']} ms "
                  f"(beyond the DDS floor: {r['node_share_ms_p50']} ms), "
                  f"node CPU {r['cpu_ms_per_frame']} ms/frame, "
                  f"RSS {r['rss_start_mb']} -> {r['rss_end_mb']} MB ({r['rss_growth_pct']:+.1f}%), "
                  f"exit {r['node_exit_code']}")
            print(f"    node stage medians (last log line): {r['node_stage_ms_last']}")
    last = per_model[list(per_model)[-1]]
    out = {k: last[k] for k in ("latency_ms_p50", "latency_ms_p99", "overhead_ms_p50", "rate_hz", "drops",
                                "rss_start_mb", "rss_end_mb")}
    out["node_share_ms_p50"] = last["node_share_ms_p50"]
    if args.model_ms > 0:
        out["model_ms"] = args.model_ms
        for sched in SCHEDULES:
            for ex in executors:  # keys without a suffix: the first executor (the node's default when none given)
                mine = [r for k, r in per_model.items() if f"-{sched}-" in k and (ex is None or f"-{ex}@" in k)]
                suffix = "" if ex == executors[0] else f"_{ex}"
                for key in ("rate_hz", "latency_ms_p50", "node_share_ms_p50", "inference_ms_p50", "cpu_ms_per_frame"):
                    out[f"{key}_{sched}{suffix}"] = round(float(np.median([r[key] for r in mine])), 2)
        print(f"GPU stand-in {args.model_ms:g} ms, medians over {args.rounds} round(s): pipelined "
              f"{out['rate_hz_pipelined']} Hz, latency p50 {out['latency_ms_p50_pipelined']} ms, node share "
              f"{out['node_share_ms_p50_pipelined']} ms | sequential {out['rate_hz_sequential']} Hz, latency p50 "
              f"{out['latency_ms_p50_sequential']} ms, node share {out['node_share_ms_p50_sequential']} ms "
              f"(goals: >= 25 Hz, <= {args.model_ms + 35:g} ms, <= 2 ms)")
        for ex in executors[1:]:
            print(f"  executor {ex}: " + " | ".join(
                f"{sched} {out[f'rate_hz_{sched}_{ex}']} Hz, latency p50 {out[f'latency_ms_p50_{sched}_{ex}']} ms, "
                f"node share {out[f'node_share_ms_p50_{sched}_{ex}']} ms, node CPU "
                f"{out[f'cpu_ms_per_frame_{sched}_{ex}']} ms/frame" for sched in SCHEDULES))
    out["outputs"] = args.outputs
    out["dds_floor"] = floor
    out["per_model"] = per_model
    return print_summary(out)


if __name__ == "__main__":
    sys.exit(main())
