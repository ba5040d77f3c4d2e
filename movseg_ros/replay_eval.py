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

Exit codes: 0 report written; 2 bad input (bag without depth/camera_info, wrong encodings,
labels of another size, ...); 3 the node did not answer. No report is written unless at least
one frame was scored.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from movseg_core.config import parse_overrides
from movseg_core.data.frame import RGBDFrame
from movseg_core.eval.offline import weights_warning
from movseg_core.eval.prompts import PromptMap, load_prompt_map
from movseg_core.eval.scoring import EvalAccumulator
from movseg_core.geometry.depth import depth_m_to_mm, depth_mm_to_m
from movseg_ros import topics
from movseg_ros.bag import BagTopics, inspect_bag, open_source, read_bag
from movseg_ros.conversions import array_to_image, depth_to_image, image_to_array, make_camera_info, make_header, stamp_ns

if TYPE_CHECKING:
    from movseg_ros.params import NodeParams

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2
EXIT_NO_ANSWER = 3


class NodeNotAnswering(TimeoutError):
    """The node is absent or produced no labels in time (exit code 3, movseg_ros.cli)."""


@dataclass
class ReplayConfig:
    """How to talk to the node. rate_hz: 0 = one frame at a time (next after the answer)."""

    rate_hz: float = 0.0
    labels_topic: str = topics.LABELS
    label_info_topic: str = topics.LABEL_INFO
    service: str = topics.SET_QUERIES
    node_name: str = topics.NODE
    topics: BagTopics = field(default_factory=BagTopics)
    discovery_timeout_s: float = 30.0
    first_answer_timeout_s: float = 120.0
    answer_timeout_s: float = 30.0
    keep_stamps: bool = False
    restore_vocabulary: bool = True

    def __post_init__(self) -> None:
        if self.rate_hz < 0:
            raise ValueError(f"rate must be >= 0 Hz (0 = as fast as the node answers), got {self.rate_hz}")


# --------------------------------------------------------------------------- frames
def is_bag(path: str | Path) -> bool:
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
    try:
        from movseg_ros.launch_config import default_config_path

        p = default_config_path()
        return p if p.exists() else None
    except Exception:  # noqa: BLE001 - no source tree and no ROS install: core defaults
        return None


# --------------------------------------------------------------------------- replay over DDS
class _Replayer:
    """Publishes frames to the node and scores its answers (one rclpy context of its own)."""

    def __init__(self, cfg: ReplayConfig, prompts: PromptMap, acc: EvalAccumulator):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image

        from movseg_ros.msg import LabelInfo
        from movseg_ros.qos import qos_by_name

        self.cfg, self.prompts, self.acc = cfg, prompts, acc
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(f"movseg_eval_{os.getpid()}", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        q = qos_by_name("reliable", depth=10)  # also matches a best-effort (sensor_data) subscriber
        t = cfg.topics
        self.pubs = {"color": self.node.create_publisher(Image, t.color, q),
                     "depth": self.node.create_publisher(Image, t.depth, q),
                     "info": self.node.create_publisher(CameraInfo, t.info, q)}
        sub_q = qos_by_name("reliable", depth=50)
        self.subs = [self.node.create_subscription(Image, cfg.labels_topic, self._on_labels, sub_q),
                     self.node.create_subscription(LabelInfo, cfg.label_info_topic, self._on_info, sub_q)]
        self.inflight: dict[int, tuple[str, np.ndarray, np.ndarray, float]] = {}
        self.got: dict[int, dict[str, Any]] = {}
        self.answered = 0
        self.fatal: str | None = None
        self.vocab_version: int | None = None

    # ---- helpers
    def spin_until(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred() or self.fatal:
                return pred()
            self.ex.spin_once(timeout_sec=0.02)
        return pred()

    def close(self) -> None:
        import rclpy

        self.ex.remove_node(self.node)
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)

    # ---- node discovery and vocabulary
    def connect(self) -> None:
        c = self.cfg

        def ready() -> bool:
            return (all(p.get_subscription_count() > 0 for p in self.pubs.values())
                    and all(s.get_publisher_count() > 0 for s in self.subs))

        if not self.spin_until(ready, c.discovery_timeout_s):
            missing = [f"nobody subscribes to {p.topic_name}" for p in self.pubs.values() if p.get_subscription_count() == 0]
            missing += [f"nobody publishes {s.topic_name}" for s in self.subs if s.get_publisher_count() == 0]
            raise NodeNotAnswering(f"no movseg node found within {c.discovery_timeout_s:.0f} s ({'; '.join(missing)}). "
                                   "Start it first (`movseg run` or `ros2 launch movseg_ros segment.launch.py`), "
                                   "with the same ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE.")

    def node_parameters(self, names: list[str]) -> dict[str, Any]:
        """Read parameters of the node (empty dict when it cannot be asked)."""
        from rclpy.parameter import parameter_value_to_python
        from rclpy.parameter_client import AsyncParameterClient

        client = AsyncParameterClient(self.node, self.cfg.node_name)
        if not client.wait_for_services(timeout_sec=5.0):
            return {}
        out: dict[str, Any] = {}
        for name in names:  # one by one: an undeclared name fails the whole request
            fut = client.get_parameters([name])
            if self.spin_until(fut.done, 5.0) and fut.result() is not None and fut.result().values:
                out[name] = parameter_value_to_python(fut.result().values[0])
        return out

    def set_queries(self, queries: list[str]) -> tuple[int, list[str]]:
        from movseg_ros.set_queries import call_set_queries
        from movseg_ros.srv import SetQueries

        client = self.node.create_client(SetQueries, self.cfg.service)
        try:
            res = call_set_queries(client, queries, self.cfg.discovery_timeout_s, 120.0, self.ex)
        except TimeoutError as e:
            raise NodeNotAnswering(str(e)) from e
        finally:
            self.node.destroy_client(client)
        if not res.success:
            raise ValueError(f"the node refused the evaluation queries: {res.message}")
        return int(res.vocabulary_version), list(res.names)

    # ---- answers
    def _on_labels(self, msg) -> None:

        s = stamp_ns(msg.header)
        if s not in self.inflight:
            return
        try:
            if msg.encoding not in ("mono16", "16UC1"):
                raise ValueError(f"{self.cfg.labels_topic} has encoding {msg.encoding!r}, expected mono16")
            self.got.setdefault(s, {})["labels"] = image_to_array(msg)
        except ValueError as e:
            self.fatal = str(e)
            return
        self._score(s)

    def _on_info(self, msg) -> None:
        s = stamp_ns(msg.header)
        if s not in self.inflight:
            return
        self.got.setdefault(s, {})["info"] = msg
        self._score(s)

    def _score(self, s: int) -> None:
        g = self.got.get(s, {})
        if "labels" not in g or "info" not in g:
            return
        t_answer = time.monotonic()  # both labels and label_info are here now
        name, gt, rgb, t_pub = self.inflight.pop(s)
        self.got.pop(s)
        self.answered += 1
        info = g["info"]
        if int(info.vocabulary_version) != self.vocab_version:
            self.acc.miss(name, f"labels made with vocabulary v{info.vocabulary_version}, not the evaluation's "
                                f"v{self.vocab_version} (someone changed the node's queries)")
            return
        try:
            pred = self.prompts.to_class_ids(g["labels"], list(info.names), list(info.ids))
            if pred.shape != gt.shape:
                raise ValueError(f"frame {name}: labels from the node are {pred.shape[1]}x{pred.shape[0]}, "
                                 f"ground truth {gt.shape[1]}x{gt.shape[0]}")
            self.acc.add(name, pred, gt, rgb, latency_ms=(t_answer - t_pub) * 1000.0,
                         inference_ms=float(getattr(info, "inference_ms", 0.0)) or None)
        except ValueError as e:
            self.fatal = str(e)

    # ---- publishing
    def publish(self, f: RGBDFrame, stamp: int, frame_id: str) -> None:
        """Publish ``f`` stamped ``stamp`` (ns), as a camera would: camera_info, depth, colour."""
        header = make_header(stamp, frame_id)
        h, w = f.rgb.shape[:2]
        self.pubs["info"].publish(make_camera_info(f.K, h, w, header))
        self.pubs["depth"].publish(depth_to_image(f.depth, header))
        self.inflight[stamp] = (f.name, f.label, f.rgb, time.monotonic())
        self.pubs["color"].publish(array_to_image(f.rgb, "rgb8", header))
        self.acc.sent()

    def check(self) -> None:
        if self.fatal:
            raise ValueError(self.fatal)


def replay(bag: str | Path, out_prompts: PromptMap, cfg: ReplayConfig | None = None, *, limit: int = 0,
           keep_samples: int = 3, progress: bool = True) -> tuple[EvalAccumulator, dict[str, str], list[str]]:
    """Play ``bag`` into the running node and score its answers; returns (scores, info, warnings).

    Raises ValueError for bad input and :class:`NodeNotAnswering` when the node is absent or silent.
    """
    cfg = cfg or ReplayConfig()
    info_bag = inspect_bag(bag, cfg.topics, require_gt=True)  # bad bags fail before any DDS traffic
    next(iter(read_bag(bag, cfg.topics, require_gt=True)))      # encodings and sizes of the first frame
    n = info_bag.topics[cfg.topics.color][1]
    total = min(n, limit) if limit else n
    acc = EvalAccumulator(out_prompts.class_names, keep_samples=keep_samples)
    r = _Replayer(cfg, out_prompts, acc)
    warnings: list[str] = []
    try:
        r.connect()
        from movseg_ros.params import declared_parameter_names, node_params

        values = r.node_parameters(declared_parameter_names())
        node_settings = None
        try:  # the node's settings, built as the node builds them (movseg_ros.params.node_params)
            node_settings = node_params(values)
        except ValueError as e:
            warnings.append(f"could not read the node's settings ({e}); the report does not state them.")
        if "segmenter.clip.pretrained" in values:
            w = weights_warning(values["segmenter.clip.pretrained"] or None)
            if w:
                warnings.append(w)
        else:
            warnings.append("could not read the node's segmenter.clip.pretrained: if it runs random weights, "
                            "these numbers are meaningless.")
        old_queries = values.get("queries")
        r.vocab_version, names = r.set_queries(list(out_prompts.queries))
        log.info("node vocabulary v%d set to the %d NYU40 prompts", r.vocab_version, len(names))
        try:
            _play(r, bag, cfg, total, limit, progress)
        finally:
            if cfg.restore_vocabulary and old_queries:
                try:
                    r.set_queries(list(old_queries))
                except (NodeNotAnswering, ValueError) as e:
                    log.warning("could not restore the node's vocabulary: %s", e)
        r.check()
    finally:
        r.close()
    info = {"mode": f"replay over DDS into {cfg.node_name} ({'one frame at a time' if cfg.rate_hz == 0 else f'{cfg.rate_hz:g} Hz'})",
            "bag": str(bag), **(settings_info(node_settings) if node_settings else {}),
            "latency": "publish of the colour image -> receipt of labels and label_info (end to end)",
            "segmenter time": "inference_ms reported by the node in label_info"}
    return acc, info, warnings


def _play(r: _Replayer, bag, cfg: ReplayConfig, total: int, limit: int, progress: bool) -> None:
    from tqdm import tqdm

    period = 1.0 / cfg.rate_hz if cfg.rate_hz > 0 else 0.0
    t0_wall = time.time_ns()
    first = None
    t_next = time.monotonic()
    bar = tqdm(total=total, desc="eval (replay)", unit="frame", disable=not progress)
    try:
        for i, f in enumerate(read_bag(bag, cfg.topics, require_gt=True)):
            if limit and i >= limit:
                break
            r.check()
            if f.label is None:
                r.acc.sent()
                r.acc.miss(f.name, "no ground-truth labels in the bag")
                continue
            first = f.stamp_ns if first is None else first
            stamp = f.stamp_ns if cfg.keep_stamps else t0_wall + (f.stamp_ns - first) + i  # +i: strictly increasing
            if period:
                r.spin_until(lambda: time.monotonic() >= t_next, max(0.0, t_next - time.monotonic()) + 0.001)
                t_next += period
            r.publish(f, stamp, topics.FRAME_ID)
            if not period:
                timeout = cfg.first_answer_timeout_s if r.answered == 0 else cfg.answer_timeout_s
                if not r.spin_until(lambda: stamp not in r.inflight, timeout):
                    r.inflight.pop(stamp, None)
                    if r.answered == 0:
                        raise NodeNotAnswering(f"the node never answered: no labels for frame {f.name} within "
                                               f"{timeout:.0f} s (is it receiving {cfg.topics.color}? see its log)")
                    r.acc.miss(f.name, f"no labels within {timeout:.0f} s")
            bar.update(1)
            bar.set_postfix(scored=r.acc.frames_scored)
        # drain what is still in flight
        timeout = cfg.first_answer_timeout_s if r.answered == 0 else cfg.answer_timeout_s
        r.spin_until(lambda: not r.inflight, timeout)
        r.check()
        if r.answered == 0 and r.acc.frames_sent:
            raise NodeNotAnswering(f"the node never answered: no labels for any of {r.acc.frames_sent} frames "
                                   f"within {timeout:.0f} s")
        for s, (name, *_rest) in sorted(r.inflight.items()):
            r.acc.miss(name, "dropped by the node (no labels for this stamp)" if period else f"no labels within {timeout:.0f} s")
        r.inflight.clear()
    finally:
        bar.close()


# --------------------------------------------------------------------------- offline
def offline(src: str | Path, prompts: PromptMap, params: NodeParams, *, split: str = "all",
            splits: str | None = None, class_mapping: str | None = None, limit: int = 0,
            keep_samples: int = 3, progress: bool = True) -> tuple[EvalAccumulator, dict[str, str], list[str]]:
    """Score the node's segmenter and depth handling (``params``, from :func:`load_node_params`) on SRC
    (bag, NYUv2 folder or labeled .mat), no ROS."""
    frames, total = source_eval_frames(src, split, splits, class_mapping, limit)  # bad input fails here

    from movseg_core.eval.offline import evaluate
    from movseg_core.segmenter import Segmenter

    seg = Segmenter(params.segmenter)
    acc = evaluate(seg, frames, prompts, total=total, keep_samples=keep_samples, progress=progress,
                   depth_range=params.depth_range)
    w = weights_warning(params.segmenter.clip.pretrained)
    info = {"mode": "offline (Segmenter in-process, no ROS)", "source": str(src), **settings_info(params),
            "latency": "wall time of Segmenter.segment per frame",
            "segmenter time": "timings_ms['total'] reported by the segmenter"}
    return acc, info, [w] if w else []


def settings_info(params: NodeParams) -> dict[str, str]:
    """The node settings a report states (the same lines in both modes)."""
    clip = params.segmenter.clip
    r = params.depth_range
    return {"model": f"{clip.model_name} / {clip.pretrained}",
            "depth range": "no limit" if r is None else f"{r[0]:g} - {r[1]:g} m (depth.min_m / depth.max_m)"}


# --------------------------------------------------------------------------- CLI
def _headline(m: dict[str, Any]) -> str:
    def pct(x):
        return "n/a" if x is None else f"{100 * x:.1f}%"
    lat = m["latency_ms"]
    s = (f"mIoU {pct(m['miou'])}, pixel acc {pct(m['pixel_acc'])}, fwIoU {pct(m['fwiou'])}, "
         f"frames scored {m['frames_scored']}/{m['frames_sent']}")
    if lat["n"]:
        s += f", latency p50 {lat['p50']:.0f} ms p90 {lat['p90']:.0f} ms"
    return s


def _run_eval(args: argparse.Namespace) -> int:
    from movseg_core.eval.report import write_report

    try:
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
    except NodeNotAnswering as e:
        print(f"movseg eval: error: {e}", file=sys.stderr)
        return EXIT_NO_ANSWER
    except ValueError as e:
        print(f"movseg eval: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"report: {Path(args.out) / 'report.md'}")
    print(_headline(metrics))
    for w in warns:
        print(f"WARNING: {w}", file=sys.stderr)
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``eval --bag BAG --out DIR`` | ``eval --offline SRC --out DIR``; ``func(args)`` returns the exit code."""
    p = subparsers.add_parser("eval", help="score the segmenter on NYUv2: replay a bag into the node, or offline",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    g.add_argument("--config", help="the node's parameters YAML (default config/segment.yaml)")
    g.add_argument("--set", "--param", dest="set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a node parameter as -p would, e.g. segmenter.clip.pretrained=random or "
                        "depth.max_m=4.0 (repeatable)")
    g.add_argument("--split", choices=("all", "train", "test"), default="all")
    g.add_argument("--splits", help="splits.mat for --split train|test")
    g.add_argument("--class-mapping", help="classMapping40.mat (for nyu_depth_v2_labeled.mat)")
    p.set_defaults(func=_run_eval)
    return p

