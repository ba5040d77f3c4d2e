"""Replay client: play recorded RGB-D frames into a running ``movseg_node`` over real DDS and score its labels.

Beside :mod:`movseg_ros.player` (which plays frames as a live camera would): here each frame is
re-stamped (now-based, so a node that already saw the bag accepts it again), published as colour,
depth and camera_info, and the node's ``labels`` + ``label_info`` answers are matched by stamp, mapped
to classes with the names in label_info, and scored (:class:`movseg_core.eval.scoring.EvalAccumulator`).
The node's vocabulary is set to the evaluation prompts through ``set_queries`` and restored afterwards.
When the bag has ground-truth instances (``gt_instances``, written by nyu2bag from the labeled .mat) and
the node publishes ``instances`` + ``objects``, those are matched by stamp too and scored panoptically
(PQ / SQ / RQ, mask AP; stuff = the node's ``segmenter.objects.stuff_queries``), as offline.
``rate_hz`` 0 sends the next frame when the previous one is answered; > 0 sends at that rate and counts
what the node drops. Used by ``movseg eval --bag`` (:mod:`movseg_ros.eval_cli`).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from movseg_core.data.frame import RGBDFrame
from movseg_core.eval.offline import settings_info, weights_warning
from movseg_core.eval.prompts import PromptMap
from movseg_core.eval.scoring import EvalAccumulator
from movseg_ros import topics
from movseg_ros.bag import BagTopics, inspect_bag, read_bag
from movseg_ros.conversions import (
    array_to_image,
    depth_to_image,
    image_to_array,
    make_camera_info,
    make_header,
    stamp_ns,
)

log = logging.getLogger(__name__)


class NodeNotAnswering(TimeoutError):
    """The node is absent or produced no labels in time (exit code 3, movseg_ros.cli)."""


@dataclass
class ReplayConfig:
    """How to talk to the node. rate_hz: 0 = one frame at a time (next after the answer)."""

    rate_hz: float = 0.0
    labels_topic: str = topics.LABELS
    label_info_topic: str = topics.LABEL_INFO
    instances_topic: str = topics.INSTANCES
    objects_topic: str = topics.OBJECTS
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


class _Replayer:
    """Publishes frames to the node and scores its answers (one rclpy context of its own)."""

    def __init__(self, cfg: ReplayConfig, prompts: PromptMap, acc: EvalAccumulator, instances: bool = False):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import CameraInfo, Image

        from movseg_ros.msg import LabelInfo, ObjectArray
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
        def answer(msg_type, topic: str, part: str, image: bool):
            convert = (lambda m: self._mono16(m, topic)) if image else (lambda m: m)
            return self.node.create_subscription(msg_type, topic, lambda m: self._take(m, part, convert), sub_q)

        self.subs = [answer(Image, cfg.labels_topic, "labels", True),
                     answer(LabelInfo, cfg.label_info_topic, "info", False)]
        # ground-truth instances in the bag: also the node's instance image and objects (see connect)
        self.obj_subs = [answer(Image, cfg.instances_topic, "instances", True),
                         answer(ObjectArray, cfg.objects_topic, "objects", False)] if instances else []
        self.parts = ("labels", "info")
        self.inflight: dict[int, tuple[str, np.ndarray, np.ndarray, float, np.ndarray | None]] = {}
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
            missing = [f"nobody subscribes to {p.topic_name}" for p in self.pubs.values()
                       if p.get_subscription_count() == 0]
            missing += [f"nobody publishes {s.topic_name}" for s in self.subs if s.get_publisher_count() == 0]
            raise NodeNotAnswering(f"no movseg node found within {c.discovery_timeout_s:.0f} s ({'; '.join(missing)}). "
                                   "Start it first (`movseg run` or `ros2 launch movseg_ros segment.launch.py`), "
                                   "with the same ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE.")
        # the node creates all its publishers at start: its instances and objects are discovered with the labels
        if self.obj_subs and self.spin_until(lambda: all(s.get_publisher_count() > 0 for s in self.obj_subs), 3.0):
            self.parts = ("labels", "info", "instances", "objects")

    @property
    def scores_instances(self) -> bool:
        """Whether the node's instances and objects are awaited and scored (bag with instances, node publishing)."""
        return "objects" in self.parts

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
    @staticmethod
    def _mono16(msg, topic: str) -> np.ndarray:
        if msg.encoding not in ("mono16", "16UC1"):
            raise ValueError(f"{topic} has encoding {msg.encoding!r}, expected mono16")
        return image_to_array(msg)

    def _take(self, msg, part: str, convert) -> None:
        """Keep ``convert(msg)`` as ``part`` of the answer for a frame in flight; score once both parts are here.
        A conversion error is fatal to the run (the node publishes something we cannot score)."""
        s = stamp_ns(msg.header)
        if s not in self.inflight:
            return
        try:
            self.got.setdefault(s, {})[part] = convert(msg)
        except ValueError as e:
            self.fatal = str(e)
            return
        self._score(s)

    def _score(self, s: int) -> None:
        g = self.got.get(s, {})
        if not all(k in g for k in self.parts):
            return
        t_answer = time.monotonic()  # labels, label_info (and instances, objects) are here now
        name, gt, rgb, t_pub, gt_instances = self.inflight.pop(s)
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
            if self.scores_instances and gt_instances is not None:
                objs = g["objects"]
                if int(objs.vocabulary_version) != int(info.vocabulary_version):
                    raise ValueError(f"frame {name}: objects of vocabulary v{objs.vocabulary_version}, labels of "
                                     f"v{info.vocabulary_version}")
                self.acc.add_objects(name, g["instances"], list(objs.objects), self.prompts, list(info.names),
                                     list(info.ids), gt_instances, gt)
        except ValueError as e:
            self.fatal = str(e)

    # ---- publishing
    def publish(self, f: RGBDFrame, stamp: int, frame_id: str) -> None:
        """Publish ``f`` stamped ``stamp`` (ns), as a camera would: camera_info, depth, colour."""
        header = make_header(stamp, frame_id)
        h, w = f.rgb.shape[:2]
        self.pubs["info"].publish(make_camera_info(f.K, h, w, header))
        self.pubs["depth"].publish(depth_to_image(f.depth, header))
        self.inflight[stamp] = (f.name, f.label, f.rgb, time.monotonic(), f.instances)
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
    with_instances = cfg.topics.gt_instances in info_bag.topics
    r = _Replayer(cfg, out_prompts, acc, instances=with_instances)
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
        if with_instances and not r.scores_instances:
            warnings.append(f"the bag has ground-truth instances but the node publishes no {cfg.instances_topic} and "
                            f"{cfg.objects_topic} (publish.instances / publish.objects / segmenter.objects.enabled "
                            "false?): no panoptic scores")
        # stuff classes as the node decides them (its objects.stuff_queries; the defaults if unreadable)
        from movseg_core.objects import ObjectsConfig

        objects_cfg = node_settings.segmenter.objects if node_settings else ObjectsConfig()
        acc.stuff = out_prompts.stuff_classes(objects_cfg.stuff_queries)
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
    pace = "one frame at a time" if cfg.rate_hz == 0 else f"{cfg.rate_hz:g} Hz"
    info = {"mode": f"replay over DDS into {cfg.node_name} ({pace})",
            "bag": str(bag), **(settings_info(node_settings.segmenter.clip.model_name,
                                              node_settings.segmenter.clip.pretrained,
                                              node_settings.depth_range) if node_settings else {}),
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
            why = "dropped by the node (no labels for this stamp)" if period else f"no labels within {timeout:.0f} s"
            r.acc.miss(name, why)
        r.inflight.clear()
    finally:
        bar.close()
