"""``movseg_node``: synchronized RGB-D in, open-vocabulary labels out.

Subscribes (remappable, sensor-data QoS by default):
  camera/color/image_raw (rgb8/bgr8/...), camera/depth/image_raw (16UC1/mono16 mm | 32FC1 m),
  camera/color/camera_info
Publishes, each with the colour image's header (each switchable):
  ~/labels (mono16, 0 = unknown), ~/label_info (movseg_ros/LabelInfo), ~/overlay (rgb8 with legend),
  ~/confidence (32FC1), ~/points (PointCloud2 x y z label confidence instance, off by default),
  ~/instances (mono16, 0 = none), ~/objects (movseg_ros/ObjectArray); where vision_msgs is installed
  also ~/detections_2d, ~/detections_3d (vision_msgs Detection2DArray / Detection3DArray) and
  ~/vision_label_info (vision_msgs/LabelInfo, transient-local, sent again on a vocabulary change).
  Lazy: an output with no subscriber is not built (counted as ``no_subscriber_<output>`` in the stats
  log), but for the transient-local ~/vision_label_info; movseg_ros/outputs.py builds them.
Vocabulary: parameter ``queries`` and service ``set_queries`` (movseg_ros/srv/SetQueries); both
are validated at once (``Segmenter.check_queries``), then encoded by an encoding thread while frames
keep being labelled with the old vocabulary; ``Segmenter.set_queries`` switches atomically (version
bump). One change at a time: another one while a change is encoding is refused ("retry").

The node converts and schedules; all model and geometry work is in ``movseg_core``.
Frames are processed by one worker thread with a latest-frame slot: a frame that
arrives while another waits replaces it and is counted as a drop. When the worker frees up and
the waiting frame is stale, it may wait for the camera's next frame (``freshness_budget``).
With ``pipeline`` (default) the worker runs ``Segmenter.start`` (geometry beside the CLIP pass) and a
publisher thread runs ``Segmenter.finish`` and publishes frame t while the worker infers frame t+1
(:mod:`movseg_ros.pipeline`: in order, at most one frame waiting); without it the worker segments
and publishes each frame before taking the next.
Callbacks (frames, service, parameters) run on one executor thread (``executor``: rclpy's
SingleThreadedExecutor by default, or its EventsExecutor: :mod:`movseg_ros.executor`) and never wait
for the model or the text encoder. SIGINT / SIGTERM stop the worker and the encoding thread before
the ROS context shuts down (:func:`main`).
"""
from __future__ import annotations

import signal
import sys
import threading
import time
import types
import typing
from collections import Counter, defaultdict

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image

from movseg_core.segmenter import Segmenter, SegmenterConfig, Vocabulary
from movseg_core.viz import prepare_viz
from movseg_ros import topics
from movseg_ros.conversions import (
    COLOR_ENCODINGS,
    DEPTH_ENCODINGS,
    camera_info_to_K,
    rgbd_from_messages,
    unsupported_depth,
)
from movseg_ros.executor import check_executor, make_executor
from movseg_ros.msg import LabelInfo, ObjectArray
from movseg_ros.objects_msg import vision_msgs_available
from movseg_ros.outputs import output_messages
from movseg_ros.params import (
    NODE_PARAMETERS,
    SEGMENTER_PREFIX,
    check_params_files,
    declared_defaults,
    field_types,
    flatten_dataclass,
    node_params,
)
from movseg_ros.pipeline import PublishStage, PublishStageClosed
from movseg_ros.qos import qos_by_name
from movseg_ros.srv import SetQueries
from movseg_ros.sync import make_synchronizer, stamp_seconds
from movseg_ros.topics import node_side

ACK_WAIT_S = 2.0  # at shutdown: how long to wait in all for subscribers to acknowledge the last outputs


def fresh_wait_s(age_s: float, period_s: float, cycle_s: float, budget: float) -> float:
    """Seconds to wait for the camera's next frame instead of labelling the waiting one now (0 = now).

    The waiting frame is ``age_s`` old (it queued while the worker was busy); frames come every
    ``period_s`` (0 = unknown); the worker's last frame took ``cycle_s``. Waiting for the next
    frame makes the labels ``age_s`` fresher and costs the wait in output rate, so it is done only
    when the next frame is due within ``budget * cycle_s``; the wait allows a quarter period of
    jitter and never exceeds that budget.
    """
    if period_s <= 0.0 or budget <= 0.0 or age_s < 0.002:
        return 0.0
    due = period_s - age_s % period_s  # the next frame, if the camera keeps its rate
    limit = budget * cycle_s
    return 0.0 if due > limit else min(due + 0.25 * period_s, limit)


def _descriptor(name: str, annotation: typing.Any, doc: str = "") -> ParameterDescriptor:
    args = typing.get_args(annotation)
    base = annotation
    if type(None) in args:  # Optional[X]
        base = next(a for a in args if a is not type(None))
    if typing.get_origin(base) in (typing.Union, types.UnionType):  # e.g. str | list[str]: either
        return ParameterDescriptor(name=name, description=doc, dynamic_typing=True)
    origin = typing.get_origin(base)
    kind = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}.get(base)
    if origin in (list, tuple):
        inner = typing.get_args(base)[0] if typing.get_args(base) else str
        kind = {bool: ParameterType.PARAMETER_BOOL_ARRAY, int: ParameterType.PARAMETER_INTEGER_ARRAY,
                float: ParameterType.PARAMETER_DOUBLE_ARRAY, str: ParameterType.PARAMETER_STRING_ARRAY}[inner]
    if kind is None:
        raise TypeError(f"parameter {name}: unsupported config type {annotation}")
    return ParameterDescriptor(name=name, type=kind, description=doc)


class MovsegNode(Node):
    """The movseg node: synchronised RGB-D in, labels, label-info, overlay, confidence, points and objects out."""

    def __init__(self, argv: typing.Sequence[str] = (), **kwargs):
        super().__init__(topics.NODE_NAME, **kwargs)
        # a --params-file in argv that names no entry for this node (e.g. 'movseg:' under a namespace) is an error
        check_params_files(argv, self.get_fully_qualified_name())
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self.stage_ms: dict[str, list[float]] = defaultdict(list)  # worker writes, the log timer reads
        self._stage_lock = threading.Lock()
        self._declare_parameters()
        # the settings as `movseg eval` builds them from the same parameters (movseg_ros.params.node_params)
        self.params = node_params(self._parameter_values())
        #: the executor :func:`main` spins this node with (a bad value fails here, before the model loads)
        self.executor_name = check_executor(str(self.get_parameter("executor").value))
        self.segmenter = Segmenter(self.params.segmenter)

        queries = list(self.get_parameter("queries").value)
        vocab = self.segmenter.set_queries(queries)  # a bad default vocabulary is a start-up error
        self.get_logger().info(f"vocabulary v{vocab.version}: {list(vocab.names)}")
        # Vocabulary changes: at most one encoding at a time, on its own thread (_change_vocabulary)
        self._change_lock = threading.Lock()
        self._changing: list[str] | None = None   # the queries being encoded, None when idle
        self._encoder: threading.Thread | None = None
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Worker: one frame in flight, one waiting (latest wins).
        self._slot_lock = threading.Condition()
        self._slot = None
        self._stop = False
        self._busy = False       # the worker is inside a frame (read at shutdown, for the log)
        self._last_in_stamp = -1.0
        self._depth_range = self.params.depth_range
        rate = float(self.get_parameter("max_rate").value)
        self._min_period = 1.0 / rate if rate > 0 else 0.0
        self._fresh_budget = max(0.0, float(self.get_parameter("freshness_budget").value))
        self._in_period = 0.0    # smoothed seconds between synchronised frames (0 = not known yet)
        self._last_arrival = 0.0
        self._cycle_s = 0.0      # seconds the last frame took the worker

        pub = {k: bool(self.get_parameter(f"publish.{k}").value)
               for k in ("labels", "label_info", "overlay", "confidence", "pointcloud", "instances", "objects",
                         "detections", "vision_label_info")}
        out_qos = qos_by_name("reliable", depth=5)

        def publisher(on: bool, msg_type, topic: str):
            return self.create_publisher(msg_type, node_side(topic), out_qos) if on else None

        self.pub_labels = publisher(pub["labels"], Image, topics.LABELS)
        self.pub_info = publisher(pub["label_info"], LabelInfo, topics.LABEL_INFO)
        self.pub_overlay = publisher(pub["overlay"], Image, topics.OVERLAY)
        if self.pub_overlay is not None:
            prepare_viz()  # the overlay kernel, loaded before the first frame
        self.pub_conf = publisher(pub["confidence"], Image, topics.CONFIDENCE)
        self.pub_points = None
        if pub["pointcloud"]:
            from sensor_msgs.msg import PointCloud2
            self.pub_points = publisher(True, PointCloud2, topics.POINTS)
        self._create_object_publishers(pub, out_qos)

        # its own reentrant group: while one request awaits its encoding, frames, parameter calls
        # and a second request (refused) still run on the executor
        self.create_service(SetQueries, node_side(topics.SET_QUERIES), self._on_set_queries,
                            callback_group=ReentrantCallbackGroup())

        in_qos = qos_by_name(str(self.get_parameter("qos").value))
        inputs = [(Image, node_side(topics.COLOR)), (Image, node_side(topics.DEPTH)),
                  (CameraInfo, node_side(topics.CAMERA_INFO))]
        self._input_names = [self.resolve_topic_name(t) for _, t in inputs]
        self._received = [0] * len(inputs)
        self._received_at_last_log = [0] * len(inputs)
        self._frames_in_at_last_log = 0
        self._slop = float(self.get_parameter("sync.slop").value)
        self.sync, how = make_synchronizer(
            self, inputs, int(self.get_parameter("sync.queue_size").value), self._slop, self._on_frame, in_qos,
            self._received, float(self.get_parameter("sync.reset_jump_s").value), self._on_new_stream)
        self.create_timer(float(self.get_parameter("log_period_s").value), self._log_stats)
        # publishing: on its own thread after the worker (pipeline), or by the worker itself
        self._publisher = (PublishStage(self._finish, self._frame_failed, depth=1)
                           if bool(self.get_parameter("pipeline").value) else None)
        self._worker = threading.Thread(target=self._work, name="movseg-worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: device={self.segmenter.device}, sync={how}, "
            f"in={self.resolve_topic_name(node_side(topics.COLOR))}, "
            f"out={self.resolve_topic_name('~/labels')}, service={self.resolve_service_name('set_queries')}")

    # ---------------------------------------------------------------- set-up
    def _create_object_publishers(self, pub: dict[str, bool], out_qos) -> None:
        """~/instances, ~/objects and, where vision_msgs is installed, ~/detections_2d, ~/detections_3d
        and ~/vision_label_info (transient-local: a late subscriber gets the vocabulary in force)."""
        self.pub_instances = self.pub_objects = self.pub_det2d = self.pub_det3d = self.pub_vision_info = None
        self._vision_info_version = -1  # the vocabulary version last sent on ~/vision_label_info
        wanted = [k for k in ("instances", "objects", "detections", "vision_label_info") if pub[k]]
        if not self.params.segmenter.objects.enabled:
            if wanted:
                self.get_logger().warning(f"segmenter.objects.enabled is false: not publishing {wanted}")
            return
        if pub["instances"]:
            self.pub_instances = self.create_publisher(Image, node_side(topics.INSTANCES), out_qos)
        if pub["objects"]:
            self.pub_objects = self.create_publisher(ObjectArray, node_side(topics.OBJECTS), out_qos)
        if not (pub["detections"] or pub["vision_label_info"]):
            return
        if not vision_msgs_available():
            self.get_logger().info("vision_msgs is not installed: not publishing ~/detections_2d, ~/detections_3d "
                                   "and ~/vision_label_info (~/objects carries the same)")
            return
        from vision_msgs.msg import Detection2DArray, Detection3DArray
        from vision_msgs.msg import LabelInfo as VisionLabelInfo
        if pub["detections"]:
            self.pub_det2d = self.create_publisher(Detection2DArray, node_side(topics.DETECTIONS_2D), out_qos)
            self.pub_det3d = self.create_publisher(Detection3DArray, node_side(topics.DETECTIONS_3D), out_qos)
        if pub["vision_label_info"]:
            self.pub_vision_info = self.create_publisher(VisionLabelInfo, node_side(topics.VISION_LABEL_INFO),
                                                         QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                                                    durability=DurabilityPolicy.TRANSIENT_LOCAL))

    def _declare_parameters(self) -> None:
        for name, (default, doc) in NODE_PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=doc))
        types = field_types(SegmenterConfig, SEGMENTER_PREFIX)
        for name, default in flatten_dataclass(SegmenterConfig(), SEGMENTER_PREFIX):
            desc = _descriptor(name, types[name])
            if default is None:  # optional: '' / unset means None
                default = "" if desc.type == ParameterType.PARAMETER_STRING else None
                if default is None:
                    desc.dynamic_typing = True
            self.declare_parameter(name, default, desc)

    def _parameter_values(self) -> dict[str, typing.Any]:
        """Every declared parameter's value (None: not set, e.g. an empty array, which has no ROS type)."""
        return {name: self.get_parameter_or(name, Parameter(name, value=None)).value for name in declared_defaults()}

    # ---------------------------------------------------------------- vocabulary
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate every parameter of the call first; start a vocabulary change only when all are accepted.

        A new ``queries`` value is checked at once and answered at once; its text is encoded by the
        encoding thread, and frames are labelled with the old vocabulary until it is in force: the
        parameter runs ahead of the vocabulary for the encoding time, never longer (a failed encoding
        puts the parameter back). Refused while another change is being encoded ("retry").
        """
        new_queries = None
        for p in params:
            if p.name == "queries":
                queries = list(p.value or [])
                if queries == list(self.segmenter.vocabulary.names):
                    continue  # already in force (the service sets the parameter after its change)
                try:
                    new_queries = self.segmenter.check_queries(queries)
                except ValueError as exc:
                    return self._refuse("queries parameter", str(exc))
            elif p.name.startswith(SEGMENTER_PREFIX + ".") or p.name in NODE_PARAMETERS:
                return SetParametersResult(successful=False,
                                           reason=f"{p.name} is read-only at run time; restart the node")
        if new_queries is not None:
            busy = self._begin_change(new_queries)
            if busy is not None:
                return self._refuse("queries parameter", busy)
            self._change_vocabulary(new_queries, "parameter")
        return SetParametersResult(successful=True)

    def _refuse(self, what: str, reason: str) -> SetParametersResult:
        self.stats["queries_refused"] += 1
        self.get_logger().warning(f"{what} refused: {reason}")
        return SetParametersResult(successful=False, reason=reason)

    def _begin_change(self, names: list[str]) -> str | None:
        """Claim the one vocabulary change slot for ``names``; the refusal message when a change is encoding."""
        with self._change_lock:
            if self._changing is not None:
                return (f"a vocabulary change ({len(self._changing)} queries) is being encoded; "
                        "refused, retry when it is in force")
            self._changing = names
        return None

    def _change_vocabulary(self, names: list[str], source: str) -> Future:
        """Encode ``names`` on the encoding thread and switch to them (``Segmenter.set_queries``);
        the slot must be claimed (:meth:`_begin_change`). Returns a Future of the new Vocabulary,
        completed on the executor's thread (it wakes the executor)."""
        fut = Future(executor=self.executor)
        fut.add_done_callback(lambda f: self._change_done(f, names, source))

        def encode() -> None:
            t0 = time.perf_counter()
            try:
                vocab = self.segmenter.set_queries(names)
            except Exception as exc:  # noqa: BLE001  (reported by _change_done)
                if not self._stop:
                    fut.set_exception(exc)
                return
            self.stats["vocabulary_encode_ms"] = int((time.perf_counter() - t0) * 1000)
            if not self._stop:  # shutting down: nobody waits, the executor may be gone
                fut.set_result(vocab)

        self._encoder = threading.Thread(target=encode, name="movseg-encoder", daemon=True)
        self._encoder.start()
        return fut

    def _change_done(self, fut: Future, names: list[str], source: str) -> None:
        """On the executor: log the change, free the slot; a failed parameter change puts the parameter back."""
        with self._change_lock:
            self._changing = None
        exc = fut.exception()
        if exc is None:
            vocab = fut.result()
            self.get_logger().info(f"vocabulary v{vocab.version} ({source}, encoded in "
                                   f"{self.stats['vocabulary_encode_ms']} ms): {list(vocab.names)}")
            return
        self.stats["queries_failed"] += 1
        self.get_logger().error(f"vocabulary change ({source}) failed while encoding: {type(exc).__name__}: {exc}")
        if source == "parameter":
            self.set_parameters([Parameter("queries", Parameter.Type.STRING_ARRAY,
                                           list(self.segmenter.vocabulary.names))])

    async def _on_set_queries(self, request, response):
        """Answered when the new vocabulary is in force (frames are labelled meanwhile); refused at
        once when invalid or while another change is encoding ("retry")."""
        try:
            names = self.segmenter.check_queries(list(request.queries))
            busy = self._begin_change(names)
            if busy is not None:
                raise ValueError(busy)
        except ValueError as exc:
            self._refuse("set_queries", str(exc))
            return self._answer(response, self.segmenter.vocabulary, False, str(exc))
        try:
            vocab = await self._change_vocabulary(names, "service")
        except Exception as exc:  # noqa: BLE001  (encoding failed: the old vocabulary stays)
            return self._answer(response, self.segmenter.vocabulary, False, f"encoding failed: {exc}")
        # keep the parameter equal to what is in force (the callback sees equal names and skips)
        self.set_parameters([Parameter("queries", Parameter.Type.STRING_ARRAY, list(vocab.names))])
        return self._answer(response, vocab, True, f"vocabulary v{vocab.version}: {len(vocab.names)} queries")

    @staticmethod
    def _answer(response, vocab: Vocabulary, success: bool, message: str):
        response.success, response.message = success, message
        response.vocabulary_version = int(vocab.version)
        response.ids = [int(i) for i in vocab.ids]
        response.names = list(vocab.names)
        return response

    # ---------------------------------------------------------------- frames
    def _on_frame(self, color: Image, depth: Image, info: CameraInfo) -> None:
        """Synchronised callback: cheap checks only, never blocks; the newest frame replaces a waiting one."""
        self.stats["frames_in"] += 1
        problem = self._check(color, depth, info)
        if problem is not None:
            return self._drop(*problem)
        self._last_in_stamp = stamp_seconds(color)
        # age of the frame when synchronised (camera driver + transport + executor), wall clock
        age_ms = (time.time() - self._last_in_stamp) * 1000.0
        now = time.monotonic()
        dt, self._last_arrival = now - self._last_arrival, now
        if 0.0 < dt < 1.0:  # camera period, smoothed; gaps (stream restarts) do not count
            self._in_period = dt if self._in_period == 0.0 else 0.9 * self._in_period + 0.1 * dt
        with self._slot_lock:
            if self._slot is not None:
                self.stats["drop_busy"] += 1
            self._slot = (color, depth, info, now, age_ms)
            self._slot_lock.notify()

    def _on_new_stream(self, jump_s: float, stamp_s: float) -> None:
        """The synchroniser saw stamps jump back by more than sync.reset_jump_s (its queues are
        cleared): forget the stamp order so the new stream is labelled."""
        self.stats["new_streams"] += 1
        n = self.stats["new_streams"]
        if n <= 10 or n % 100 == 0:
            self.get_logger().warning(
                f"stamps jumped back {jump_s:.3f} s (to {stamp_s:.6f}; bag loop, clock reset or restarted driver): "
                f"new stream, synchroniser and stamp order reset ({n} so far)")
        self._last_in_stamp = -1.0

    def _check(self, color: Image, depth: Image, info: CameraInfo) -> tuple[str, str] | None:
        """(reason, message) when the frame cannot be labelled correctly, from headers alone."""
        stamp = stamp_seconds(color)
        if stamp <= self._last_in_stamp:
            return "stamp", (f"stamp {stamp:.6f} not after the previous frame's {self._last_in_stamp:.6f} "
                             "(out of order or duplicated)")
        if color.encoding not in COLOR_ENCODINGS:
            return "input", f"unsupported colour encoding '{color.encoding}' (expected one of {COLOR_ENCODINGS})"
        if depth.encoding not in DEPTH_ENCODINGS:
            return "input", unsupported_depth(depth.encoding)
        try:
            _, (ih, iw) = camera_info_to_K(info)
        except ValueError as exc:
            return "input", str(exc)
        h, w = int(color.height), int(color.width)
        if h <= 0 or w <= 0 or depth.height <= 0 or depth.width <= 0:
            return "input", f"empty image (colour {w}x{h}, depth {depth.width}x{depth.height})"
        if abs(iw / ih - w / h) > 0.01:
            return "size", f"camera_info is {iw}x{ih}, colour {w}x{h}: aspect differs"
        if abs(depth.width / depth.height - w / h) > 0.01:
            return "size", (f"depth {depth.width}x{depth.height} vs colour {w}x{h}: aspect differs, cannot align; "
                            "publish depth registered to colour")
        return None

    def _work(self) -> None:
        last_start = 0.0
        while True:
            # max_rate first, so that the frame taken afterwards is the newest one
            not_before = last_start + self._min_period
            with self._slot_lock:
                while not self._stop and time.monotonic() < not_before:  # frames arriving notify too
                    self._slot_lock.wait(not_before - time.monotonic())
                while self._slot is None and not self._stop:
                    self._slot_lock.wait(0.5)
                if not self._stop:
                    self._await_fresher()
                if self._stop:
                    return
                frame, self._slot = self._slot, None
                self._busy = True
            last_start = time.monotonic()
            try:
                self._process(*frame)
            except Exception as exc:  # noqa: BLE001  (a bad frame must never kill the node)
                if not self._frame_failed(exc):
                    return
            finally:
                self._busy = False
            self._cycle_s = time.monotonic() - last_start

    def _frame_failed(self, exc: Exception) -> bool:
        """Count and log a frame lost to an exception (worker or publisher); False when the context is gone."""
        with self._stats_lock:  # worker and publisher threads both count here
            if isinstance(exc, PublishStageClosed) or not self.context.ok():  # stopping under us
                self.stats["drop_shutdown"] += 1
                return False
            self.stats["drop_error"] += 1
        self.get_logger().error(f"frame dropped: {type(exc).__name__}: {exc}")
        return True

    def _await_fresher(self) -> None:
        """Called with the slot lock held and a frame in the slot: wait as :func:`fresh_wait_s`
        says for a newer frame to replace it."""
        waiting = self._slot
        wait = fresh_wait_s(time.monotonic() - waiting[3], self._in_period, self._cycle_s, self._fresh_budget)
        if wait <= 0.0:
            return
        deadline = time.monotonic() + wait
        while self._slot is waiting and not self._stop:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stats["fresh_wait_missed"] += 1
                return
            self._slot_lock.wait(left)
        self.stats["fresh_wait"] += 1

    def _drop(self, reason: str, message: str) -> None:
        self.stats[f"drop_{reason}"] += 1
        n = self.stats[f"drop_{reason}"]
        if n <= 10 or n % 100 == 0:  # the first few and every 100th: a bad stream cannot flood the log
            self.get_logger().warning(f"frame dropped ({reason}, {n} so far): {message}")

    def _process(self, color: Image, depth: Image, info: CameraInfo, t_in: float, age_ms: float) -> None:
        queue_ms = (time.monotonic() - t_in) * 1000.0
        t0 = time.perf_counter()
        try:
            rgb, depth_m, K, depth_hw = rgbd_from_messages(color, depth, info, self._depth_range)
        except ValueError as exc:
            return self._drop("input", str(exc))
        h, w = rgb.shape[:2]
        if depth_hw != (h, w):  # same aspect (checked): registered depth at another resolution
            self.stats["depth_resized"] += 1
            if self.stats["depth_resized"] == 1:
                self.get_logger().warning(f"depth {depth_hw[1]}x{depth_hw[0]} resized (nearest) to colour {w}x{h}; "
                                          "assumes depth is registered to colour")
        if depth_m is None:
            self.stats["depth_all_invalid"] += 1  # still segmented, from colour alone
        t1 = time.perf_counter()
        # pipelined: the worker runs the segmenter's first part (geometry beside the CLIP pass), the
        # publisher the rest (pooling, classification, painting, objects) while the worker takes the next frame
        # finished by _finish, here or on the publisher thread
        work = self.segmenter.start(rgb, depth_m, K, want_objects=self._objects_wanted())
        t2 = time.perf_counter()
        timings = {"convert": (t1 - t0) * 1000, "segment": (t2 - t1) * 1000, "queue": queue_ms, "input_age": age_ms}
        done = (color.header, rgb, work, depth_m, K, timings, t2)
        if self._publisher is None:
            self._finish(done)
        else:  # blocks while the publisher is behind (backpressure: newer frames replace the waiting one)
            self._record({"publish_wait": self._publisher.submit(done) * 1000.0})

    def _finish(self, done: tuple) -> None:
        """Finish (pipelined) and publish one segmented frame (worker or publisher thread); record its timings."""
        header, rgb, work, depth_m, K, timings, t_done = done
        t0 = time.perf_counter()
        if self._publisher is not None:  # pipelined: the second part runs on the publisher thread
            timings["publish_queue"] = (t0 - t_done) * 1000.0  # first part done -> second part started
        result = self.segmenter.finish(work, want_objects=self._objects_wanted())
        timings["segment"] += (time.perf_counter() - t0) * 1000.0
        timings.update({f"segment.{k}": float(v) for k, v in result.timings_ms.items()})
        self._check_registration(result.diagnostics or {})
        t1 = time.perf_counter()
        self._publish(header, rgb, result, depth_m, K, timings["segment"])
        timings["publish"] = (time.perf_counter() - t1) * 1000.0
        self.stats["frames_out"] += 1
        self._record(timings)

    def _check_registration(self, diagnostics: dict[str, float]) -> None:
        """Count (``depth_unregistered``) and warn, at most once per log period, about a frame whose
        depth the core judged not registered to colour (``depth_trust`` < 1: depth had less or no say)."""
        trust = diagnostics.get("depth_trust", 1.0)
        if trust >= 1.0:
            return
        with self._stats_lock:
            self.stats["depth_unregistered"] += 1
            n = self.stats["depth_unregistered"]
        full = self.params.segmenter.proposals.registration_full
        self.get_logger().warning(
            f"depth looks unregistered to colour (score {diagnostics.get('registration', float('nan')):.2f}, "
            f"registered frames > {full:g}; {n} frames so far): depth had {trust:.0%} of its say. Subscribe to the "
            f"depth aligned to colour, e.g. remap {topics.DEPTH} to /camera/aligned_depth_to_color/image_raw, "
            "or check the depth-to-colour extrinsics",
            throttle_duration_sec=float(self.get_parameter("log_period_s").value))

    def _record(self, timings: dict[str, float]) -> None:
        with self._stage_lock:
            for k, v in timings.items():
                self.stage_ms[k].append(v)

    def _publish(self, header, rgb, result, depth_m, K, inference_ms: float) -> None:
        # lazy, as image_pipeline's nodes: an output nobody subscribes to is not built (the overlay alone costs
        # ~1 ms); ~/vision_label_info is transient-local, kept for late subscribers, so always sent
        publishers = {}
        for k, p in self._output_publishers().items():
            if k == "vision_label_info" or p.get_subscription_count() > 0:
                publishers[k] = p
            else:
                self.stats[f"no_subscriber_{k}"] += 1  # counted in the stats log (only this thread publishes)
        if result.vocabulary_version == self._vision_info_version:  # sent once per vocabulary (transient-local)
            publishers.pop("vision_label_info", None)
        for key, msg in output_messages(header, rgb, result, depth_m, K, inference_ms, publishers):
            publishers[key].publish(msg)
            if key == "vision_label_info":
                self._vision_info_version = result.vocabulary_version

    def _objects_wanted(self) -> bool:
        """Whether some subscriber consumes instances (lazy, like the outputs: extraction costs ~6 ms a frame)."""
        return any(p is not None and p.get_subscription_count() > 0
                   for p in (self.pub_instances, self.pub_objects, self.pub_det2d, self.pub_det3d, self.pub_points))

    def _output_publishers(self) -> dict[str, typing.Any]:
        """The created output publishers by :data:`movseg_ros.outputs.OUTPUTS` key."""
        pubs = {"label_info": self.pub_info, "labels": self.pub_labels, "confidence": self.pub_conf,
                "instances": self.pub_instances, "objects": self.pub_objects, "vision_label_info": self.pub_vision_info,
                "detections_2d": self.pub_det2d, "detections_3d": self.pub_det3d, "overlay": self.pub_overlay,
                "points": self.pub_points}
        return {k: p for k, p in pubs.items() if p is not None}

    def _log_stats(self) -> None:
        self._check_inputs_flowing()
        parts = [f"{k}={v}" for k, v in sorted(self.stats.items())]
        with self._stage_lock:
            stages = {k: float(np.median(v)) for k, v in self.stage_ms.items() if v}
            self.stage_ms.clear()
        if stages:
            parts.append("median ms: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items())))
        self.get_logger().info("stats: " + (" ".join(parts) if parts else "no frames yet"))

    def _check_inputs_flowing(self) -> None:
        """Warn (and count) when some inputs arrive but others do not, so nothing can be synchronised."""
        new = [now - before for now, before in zip(self._received, self._received_at_last_log)]
        self._received_at_last_log = list(self._received)
        synced = self.stats["frames_in"] - self._frames_in_at_last_log
        self._frames_in_at_last_log = self.stats["frames_in"]
        if any(new) and synced == 0:
            silent = [name for name, n in zip(self._input_names, new) if n == 0]
            arriving = ", ".join(f"{name} ({n})" for name, n in zip(self._input_names, new) if n)
            if silent:
                self.stats["missing_input"] += 1
                self.get_logger().warning(f"nothing to label: receiving {arriving} but no message on "
                                          f"{', '.join(silent)} (check the topic names and remappings)")
            else:
                self.stats["unsynchronised"] += 1
                self.get_logger().warning(f"nothing to label: inputs arrive ({arriving}) but their stamps never "
                                          f"match within sync.slop={self._slop} s")

    def _wait_for_acks(self, budget_s: float) -> None:
        """Wait (``budget_s`` in all) until the subscribers have acknowledged what the reliable outputs
        published: a sample still in flight when the node is destroyed is lost, so the last frame (the
        one labelled at the signal) could go unseen."""
        deadline = time.monotonic() + budget_s
        for pub in self.publishers:
            left = deadline - time.monotonic()
            if left <= 0 or not pub.wait_for_all_acked(Duration(seconds=left)):
                self.get_logger().warning(f"stopping: {pub.topic_name} not acknowledged within {budget_s:.0f} s "
                                          "(a subscriber may have gone)")
                return

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop the worker (it finishes and publishes the frame it is labelling) and the encoding
        thread, and wait for both; call before the context shuts down."""
        with self._slot_lock:
            if self._busy:
                self.get_logger().info("stopping: finishing the frame being labelled")
            self._stop = True
            self._slot_lock.notify()
        self._worker.join(timeout=timeout_s)
        if self._worker.is_alive():
            self.get_logger().warning(f"stopping: the worker did not finish within {timeout_s:.0f} s")
        if self._publisher is not None and not self._publisher.close(timeout_s):  # publishes what it holds first
            self.get_logger().warning(f"stopping: the publisher did not finish within {timeout_s:.0f} s")
        self._wait_for_acks(ACK_WAIT_S)
        if not self._worker.is_alive():  # a worker still running would find the segmenter closed under it
            self.segmenter.close()
        encoder = self._encoder
        if encoder is not None and encoder.is_alive():
            self.get_logger().info("stopping: waiting for the vocabulary being encoded")
            encoder.join(timeout=timeout_s)


def main(argv: list[str] | None = None) -> int:
    """Run the node until SIGINT / SIGTERM (launch, systemd, docker stop); exit code 0 on a signal.

    rclpy's own handlers would shut the context down at the signal, under a worker that may be
    publishing a frame ("publisher's context is invalid"). Instead the signal only ends the spin
    loop; then the worker and the encoding thread are stopped and joined, the node destroyed, and
    only then the context shut down. A second signal while stopping kills at once (default action).
    """
    rclpy.init(args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    node: MovsegNode | None = None

    def on_signal(signum, frame) -> None:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_DFL)
        stop.set()
        if node is None:  # still starting (loading the model): leave now
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        node = MovsegNode(argv if argv is not None else sys.argv)
        # single-threaded: rclpy's MultiThreadedExecutor busy-loops on a 30 Hz image stream (100 %
        # of a core, 4.6 of 30 messages/s taken here; ros2/rclpy#1223, #1452), starving the model
        executor = make_executor(node.executor_name)
        executor.add_node(node)
        node.get_logger().info(f"callbacks run on rclpy's {type(executor).__name__}")
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.2)  # the signal handler runs between waits
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        if stop.is_set():  # a signal arrived while starting up: still a clean shutdown
            return 0
        # configuration errors (bad vocabulary, missing checkpoint, ...): say so and fail
        print(f"movseg_node: {exc}", file=sys.stderr)
        return 1
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
