"""``movseg eval``: score a segmenter on NYUv2 ground truth, through a running node or offline.

``movseg eval --bag BAG --out DIR``: plays the bag's frames into a running ``movseg_node`` over
real DDS (colour, depth, camera_info; re-stamped with the current time so a node that already saw
the bag accepts them again), after setting the node's vocabulary to the NYU40 prompts through its
``set_queries`` service; collects ``/movseg/labels`` + ``/movseg/label_info`` by stamp, maps label
ids back to classes with the names in label_info, and scores. ``--rate 0`` (default) sends the
next frame when the previous one is answered (as fast as the node keeps up); ``--rate HZ`` sends
at a fixed rate and counts what the node drops. The node's vocabulary is restored afterwards.

``movseg eval --offline SRC --out DIR``: no ROS; runs ``Segmenter`` in this process on SRC (a bag,
a NYUv2 folder or the labeled .mat), feeding it exactly what the node would (same depth decoding,
same ``depth.min_m`` / ``depth.max_m``), with the node's settings read from its parameters file
(``--config``, default config/segment.yaml; ``--set KEY=VALUE`` as ``-p`` would) by the loader the
node uses (``movseg_ros.params.load_node_params``), so both agree. Both modes report the settings.

Layout: the replay client is :mod:`movseg_ros.replay` (beside the player), the offline scoring
:func:`movseg_core.eval.offline.score_offline` (ROS-free); this module reads the frame sources (bags
via :mod:`movseg_ros.bag`, NYUv2 folders and .mat files) and the node's settings, and is the CLI.

Exit codes: 0 report written; 2 bad input (bag without depth/camera_info, wrong encodings,
labels of another size, ...); 3 the node did not answer. No report is written unless at least
one frame was scored.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from movseg_core.config import parse_overrides
from movseg_core.data.frame import RGBDFrame
from movseg_core.eval.offline import score_offline
from movseg_core.eval.prompts import PromptMap, load_prompt_map
from movseg_core.eval.scoring import EvalAccumulator
from movseg_core.geometry.depth import depth_m_to_mm, depth_mm_to_m
from movseg_ros import topics
from movseg_ros.bag import BagTopics, inspect_bag, open_source, read_bag
from movseg_ros.cli import add_command, add_node_params_arguments
from movseg_ros.replay import ReplayConfig, replay

if TYPE_CHECKING:
    from movseg_ros.params import NodeParams

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- frames
def is_bag(path: str | Path) -> bool:
    """True for a rosbag2 directory (metadata.yaml) or a single .mcap / .db3 file."""
    p = Path(path)
    return (p.is_dir() and (p / "metadata.yaml").exists()) or p.suffix in (".mcap", ".db3")


def source_eval_frames(src: str | Path, split: str = "all", splits: str | None = None,
                       class_mapping: str | None = None, limit: int = 0) -> tuple[Iterator[RGBDFrame], int | None]:
    """Frames of a bag, NYUv2 folder or labeled .mat, depth as a bag from nyu2bag would carry it
    (whole millimetres).

    Frames without depth are skipped (a bag made by nyu2bag has none of them either).
    """
    if is_bag(src):
        info = inspect_bag(src, require_gt=True)
        next(iter(read_bag(src, require_gt=True)))  # encodings and sizes of the first frame
        n = info.topics[BagTopics().color][1]
        return (_limit(read_bag(src, require_gt=True), limit), min(n, limit) if limit else n)
    ds = open_source(src, split, splits, class_mapping)

    def gen() -> Iterator[RGBDFrame]:
        for i in range(len(ds)):
            f = ds[i]
            if f.depth is None:
                log.warning("frame %s has no depth: skipped (as nyu2bag does)", f.name)
                continue
            f.depth = depth_mm_to_m(depth_m_to_mm(f.depth))  # the millimetres nyu2bag stores
            yield f

    return _limit(gen(), limit), (min(len(ds), limit) if limit else len(ds))


def _limit(it: Iterator[RGBDFrame], n: int) -> Iterator[RGBDFrame]:
    for i, f in enumerate(it):
        if n and i >= n:
            return
        yield f


# --------------------------------------------------------------------------- the node's settings
def default_node_config() -> Path | None:
    """The node's default parameters file (config/segment.yaml of the install), None if not found."""
    try:
        from movseg_ros.launch_config import default_config_path

        p = default_config_path()
        return p if p.exists() else None
    except Exception:  # noqa: BLE001 - no source tree and no ROS install: core defaults
        return None


# --------------------------------------------------------------------------- offline
def offline(src: str | Path, prompts: PromptMap, params: NodeParams, *, split: str = "all",
            splits: str | None = None, class_mapping: str | None = None, limit: int = 0,
            keep_samples: int = 3, progress: bool = True) -> tuple[EvalAccumulator, dict[str, str], list[str]]:
    """Score the node's segmenter and depth handling (``params``, from :func:`load_node_params`) on SRC
    (bag, NYUv2 folder or labeled .mat), no ROS (:func:`movseg_core.eval.offline.score_offline`)."""
    frames, total = source_eval_frames(src, split, splits, class_mapping, limit)  # bad input fails here
    acc, info, warns = score_offline(frames, prompts, params.segmenter, params.depth_range, total=total,
                                     keep_samples=keep_samples, progress=progress)
    return acc, {"mode": info.pop("mode"), "source": str(src), **info}, warns


# --------------------------------------------------------------------------- CLI
def _headline(m: dict[str, Any]) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"
    lat = m["latency_ms"]
    s = (f"mIoU {pct(m['miou'])}, pixel acc {pct(m['pixel_acc'])}, fwIoU {pct(m['fwiou'])}, "
         f"frames scored {m['frames_scored']}/{m['frames_sent']}")
    if "panoptic" in m:
        p = m["panoptic"]
        s += f", PQ {pct(p['pq'])} (things {pct(p['pq_things'])}, stuff {pct(p['pq_stuff'])}), mask AP {pct(p['ap'])}"
    if lat["n"]:
        s += f", latency p50 {lat['p50']:.0f} ms p90 {lat['p90']:.0f} ms"
    return s


def _run_eval(args: argparse.Namespace) -> int:
    from movseg_core.eval.report import write_report

    # bad input (ValueError) and a silent node (NodeNotAnswering) end in movseg_ros.cli.main: message, exit code
    prompts = load_prompt_map(args.prompts)
    if args.bag:
        cfg = ReplayConfig(rate_hz=args.rate, labels_topic=args.labels_topic,
                           label_info_topic=args.label_info_topic, service=args.service,
                           node_name=args.node, discovery_timeout_s=args.discovery_timeout,
                           first_answer_timeout_s=args.first_timeout, answer_timeout_s=args.timeout,
                           keep_stamps=args.keep_stamps)
        acc, info, warns = replay(args.bag, prompts, cfg, limit=args.limit, keep_samples=args.overlays)
        title = f"MOVSeg replay evaluation: {Path(args.bag).name}"
    else:
        from movseg_ros.params import load_node_params

        params = load_node_params(args.config or default_node_config(), parse_overrides(args.set),
                                  node_fqn=args.node)
        acc, info, warns = offline(args.offline, prompts, params, split=args.split, splits=args.splits,
                                   class_mapping=args.class_mapping, limit=args.limit,
                                   keep_samples=args.overlays)
        title = f"MOVSeg offline evaluation: {Path(args.offline).name}"
    info["prompts"] = str(args.prompts or "config/nyu40_prompts.yaml")
    metrics = write_report(acc, args.out, title=title, info=info, warnings=warns)
    print(f"report: {Path(args.out) / 'report.md'}")
    print(_headline(metrics))
    for w in warns:
        print(f"WARNING: {w}", file=sys.stderr)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``eval --bag BAG --out DIR`` | ``eval --offline SRC --out DIR``; ``func(args)`` returns the exit code."""
    p = add_command(subparsers, "eval", "score the segmenter on NYUv2: replay a bag into the node, or offline", __doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bag", help="rosbag2 with colour, depth, camera_info and /movseg/gt_labels (from nyu2bag)")
    src.add_argument("--offline", metavar="SRC", help="no ROS: a bag, a NYUv2 folder or nyu_depth_v2_labeled.mat")
    p.add_argument("--out", required=True, help="report folder (metrics.json, report.md, PNGs)")
    p.add_argument("--prompts", help="class -> query YAML (default config/nyu40_prompts.yaml)")
    p.add_argument("--limit", type=int, default=0, help="score at most N frames (0 = all)")
    p.add_argument("--overlays", type=int, default=3, help="example overlays in the report")
    g = p.add_argument_group("replay (--bag)")
    g.add_argument("--rate", type=float, default=0.0, help="frames per second; 0 = next frame when answered (default)")
    g.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one frame's labels")
    g.add_argument("--first-timeout", type=float, default=120.0, help="seconds to wait for the first labels (warm-up)")
    g.add_argument("--discovery-timeout", type=float, default=30.0, help="seconds to wait for the node to appear")
    g.add_argument("--labels-topic", default=topics.LABELS)
    g.add_argument("--label-info-topic", default=topics.LABEL_INFO)
    g.add_argument("--service", default=topics.SET_QUERIES, help="the node's SetQueries service")
    p.add_argument("--node", default=topics.NODE,
                   help="the node's full name: its parameters are read from it (--bag) or from its entries in --config")
    g.add_argument("--keep-stamps", action="store_true", help="publish the bag's own stamps (default: now-based)")
    g = p.add_argument_group("offline (--offline)")
    add_node_params_arguments(g, "segmenter.clip.pretrained=random or depth.max_m=4.0")
    g.add_argument("--split", choices=("all", "train", "test"), default="all")
    g.add_argument("--splits", help="splits.mat for --split train|test")
    g.add_argument("--class-mapping", help="classMapping40.mat (for nyu_depth_v2_labeled.mat)")
    p.set_defaults(func=_run_eval)
    return p
