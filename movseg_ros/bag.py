"""NYUv2 frames <-> standard rosbag2 (MCAP or sqlite3), written and read without ROS.

Uses the pure-Python ``rosbags`` library and its Kilted typestore, so it runs where rclpy is
absent; the CDR bytes are the same ``ros2 bag play``, Foxglove and rclpy read. One frame is
four messages with the same header stamp and ``frame_id``:

- ``/camera/color/image_raw``    sensor_msgs/Image ``rgb8`` HxWx3
- ``/camera/depth/image_raw``    sensor_msgs/Image ``16UC1`` millimetres (0 = invalid), registered to colour
  (reading also takes ``mono16`` millimetres and ``32FC1`` metres)
- ``/camera/color/camera_info``  sensor_msgs/CameraInfo (NYUv2 intrinsics, rectified, no distortion)
- ``/movseg/gt_labels``          sensor_msgs/Image ``mono16`` NYU40 ids (0 = unlabeled)
- ``/movseg/gt_instances``       sensor_msgs/Image ``mono16`` ground-truth instance ids (0 = none), only
  when the source has them (the labeled .mat's ``instances``; ``RGBDFrame.instances``)

The dataset frame names (``0001`` ...) are stored in the bag's ``custom_data``
(key ``movseg.frame_names``, JSON list in frame order).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from movseg_core.data.frame import RGBDFrame
from movseg_core.geometry.depth import decode_depth, depth_m_to_mm
from movseg_ros import conversions as conv
from movseg_ros import topics
from movseg_ros.cli import add_command

log = logging.getLogger(__name__)

FRAME_NAMES_KEY = "movseg.frame_names"
STORAGES = ("mcap", "sqlite3")
COLOR_ENCODINGS = ("rgb8", "bgr8")
LABEL_ENCODINGS = ("mono16", "16UC1", "mono8", "8UC1")


@dataclass(frozen=True)
class BagTopics:
    """Topic names of one RGB-D + ground-truth stream."""

    color: str = topics.COLOR
    depth: str = topics.DEPTH
    info: str = topics.CAMERA_INFO
    gt: str = topics.GT_LABELS
    gt_instances: str = topics.GT_INSTANCES


@dataclass
class BagWriteConfig:
    """How frames become a bag. rate_hz: frames per second of bag time (stamps t0 + i / rate)."""

    rate_hz: float = 1.0
    storage: str = "mcap"
    frame_id: str = topics.FRAME_ID
    start_ns: int = 1_700_000_000 * 10**9
    topics: BagTopics = field(default_factory=BagTopics)

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {self.rate_hz}")
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {self.storage!r}")


# --------------------------------------------------------------------------- writing
class _Msgs:
    """CDR bytes of rosbags messages (Kilted typestore), built by :mod:`movseg_ros.conversions`."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.ts = get_typestore(Stores.ROS2_KILTED)
        self.types = conv.message_types(self.ts)
        self.Image, self.Info = self.types["Image"], self.types["CameraInfo"]

    def image(self, arr: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> bytes:
        msg = conv.array_to_image(arr, encoding, conv.make_header(stamp_ns, frame_id, self.types), self.types)
        return bytes(self.ts.serialize_cdr(msg, self.Image.__msgtype__))

    def camera_info(self, K: np.ndarray, h: int, w: int, stamp_ns: int, frame_id: str) -> bytes:
        msg = conv.make_camera_info(K, h, w, conv.make_header(stamp_ns, frame_id, self.types), self.types)
        return bytes(self.ts.serialize_cdr(msg, self.Info.__msgtype__))


@dataclass
class WriteSummary:
    """What :func:`write_bag` wrote: the bag path and how many frames were written or skipped."""

    path: Path
    frames_written: int
    frames_skipped: list[str]
    duration_s: float


def write_bag(frames: Iterable[RGBDFrame], out: str | Path, cfg: BagWriteConfig | None = None,
              total: int | None = None, progress: bool = True) -> WriteSummary:
    """Write frames to a new rosbag2 directory ``out`` (must not exist).

    Frames without depth are skipped (logged); a frame without a label gets no gt message; a frame
    with instances (``RGBDFrame.instances``) gets a gt_instances message (the topic exists only then).
    Raises ValueError when no frame can be written or a frame has no K.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    cfg = cfg or BagWriteConfig()
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; remove it or choose another output path")
    m = _Msgs()
    plugin = StoragePlugin.MCAP if cfg.storage == "mcap" else StoragePlugin.SQLITE3
    names: list[str] = []
    skipped: list[str] = []
    writer = Writer(out, version=9, storage_plugin=plugin)
    ok = False
    try:
        writer.open()
        tp = cfg.topics
        conns = {
            "color": writer.add_connection(tp.color, m.Image.__msgtype__, typestore=m.ts),
            "depth": writer.add_connection(tp.depth, m.Image.__msgtype__, typestore=m.ts),
            "info": writer.add_connection(tp.info, m.Info.__msgtype__, typestore=m.ts),
            "gt": writer.add_connection(tp.gt, m.Image.__msgtype__, typestore=m.ts),
        }
        period_ns = int(round(1e9 / cfg.rate_hz))
        for frame in tqdm(frames, total=total, desc="nyu2bag", unit="frame", disable=not progress):
            if frame.depth is None:
                skipped.append(frame.name)
                log.warning("frame %s has no depth: skipped", frame.name)
                continue
            if frame.K is None:
                raise ValueError(f"frame {frame.name}: no intrinsics K")
            h, w = frame.rgb.shape[:2]  # sizes and dtypes: checked by RGBDFrame
            t = cfg.start_ns + len(names) * period_ns
            fid = cfg.frame_id
            writer.write(conns["info"], t, m.camera_info(frame.K, h, w, t, fid))
            writer.write(conns["depth"], t, m.image(depth_m_to_mm(frame.depth), "16UC1", t, fid))
            writer.write(conns["color"], t, m.image(frame.rgb, "rgb8", t, fid))
            if frame.label is not None:
                writer.write(conns["gt"], t, m.image(frame.label.astype(np.uint16), "mono16", t, fid))
            if frame.instances is not None:
                if "gt_instances" not in conns:
                    conns["gt_instances"] = writer.add_connection(tp.gt_instances, m.Image.__msgtype__, typestore=m.ts)
                writer.write(conns["gt_instances"], t, m.image(frame.instances, "mono16", t, fid))
            names.append(frame.name)
        if not names:
            raise ValueError(f"no frame with depth to write ({len(skipped)} skipped without depth)")
        writer.set_custom_data(FRAME_NAMES_KEY, json.dumps(names))
        ok = True
    finally:
        if ok:
            writer.close()
        else:
            try:
                writer.close()
            finally:
                shutil.rmtree(out, ignore_errors=True)
    return WriteSummary(out, len(names), skipped, (len(names) - 1) / cfg.rate_hz if names else 0.0)


# --------------------------------------------------------------------------- reading
@dataclass
class BagInfo:
    """What :func:`inspect_bag` found: topics with message type and count, and the frame count."""

    path: Path
    topics: dict[str, tuple[str, int]]  # topic -> (msgtype, count)
    frame_names: list[str]


def bag_frame_names(path: str | Path) -> list[str]:
    """Dataset frame names stored by :func:`write_bag` (empty if the bag has none)."""
    import yaml

    meta = Path(path) / "metadata.yaml"
    if not meta.exists():
        return []
    info = (yaml.safe_load(meta.read_text()) or {}).get("rosbag2_bagfile_information", {})
    raw = (info.get("custom_data") or {}).get(FRAME_NAMES_KEY)
    return list(json.loads(raw)) if raw else []


def inspect_bag(path: str | Path, topics: BagTopics = BagTopics(), require_gt: bool = False) -> BagInfo:
    """Topic table of a bag; ValueError when colour, depth or camera_info (or gt) is missing."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such bag")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as e:  # rosbags raises several types for a non-bag
        raise ValueError(f"{path}: not a readable rosbag2 ({e})") from e
    try:
        table = {c.topic: (c.msgtype, 0) for c in reader.connections}
        for c in reader.connections:
            table[c.topic] = (c.msgtype, table[c.topic][1] + c.msgcount)
    finally:
        reader.close()
    need = {"colour": (topics.color, "sensor_msgs/msg/Image"), "depth": (topics.depth, "sensor_msgs/msg/Image"),
            "camera_info": (topics.info, "sensor_msgs/msg/CameraInfo")}
    if require_gt:
        need["ground-truth labels"] = (topics.gt, "sensor_msgs/msg/Image")
    for what, (topic, mtype) in need.items():
        if topic not in table or table[topic][1] == 0:
            raise ValueError(f"{path}: bag has no {what} messages on {topic} (topics: {sorted(table)})")
        if table[topic][0] != mtype:
            raise ValueError(f"{path}: {topic} is {table[topic][0]}, expected {mtype}")
    return BagInfo(path, table, bag_frame_names(path))


def read_bag(path: str | Path, topics: BagTopics = BagTopics(), require_gt: bool = False) -> Iterator[RGBDFrame]:
    """:class:`RGBDFrame` s of a bag (with ``stamp_ns``; label uint16 or None; instances uint16 where
    the bag has ``gt_instances``), paired by header stamp (colour + depth + camera_info [+ gt] [+ gt_instances]),
    streamed.

    A frame is yielded as soon as its messages are complete, so memory stays at a few frames.
    Raises ValueError on a missing topic, an unsupported encoding, or images of different sizes.
    Incomplete stamps are logged and skipped; stamps lacking only ground truth come last, unlabelled.
    """
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    info = inspect_bag(path, topics, require_gt=require_gt)
    has_gt = topics.gt in info.topics
    ts = get_typestore(Stores.ROS2_KILTED)
    wanted = {topics.color: "color", topics.depth: "depth", topics.info: "info"}
    if has_gt:
        wanted[topics.gt] = "gt"
    if topics.gt_instances in info.topics:
        wanted[topics.gt_instances] = "gt_instances"
    need = tuple(wanted.values())
    names = info.frame_names
    n_color = info.topics[topics.color][1]
    pending: dict[int, dict[str, object]] = {}
    n_done = 0
    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.topic in wanted]
        for conn, _t, raw in reader.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            s = conv.stamp_ns(msg.header)
            parts = pending.setdefault(s, {})
            kind = wanted[conn.topic]
            parts[kind] = msg
            if kind == "color":
                parts["index"] = sum(1 for p in pending.values() if "index" in p) + n_done
            if all(k in parts for k in need):
                del pending[s]
                yield _assemble(parts, s, _name(names, n_color, parts["index"], s), path)
                n_done += 1
    for s in sorted(pending):
        parts = pending[s]
        missing = [k for k in ("color", "depth", "info") if k not in parts]
        if missing:
            log.warning("%s: stamp %d lacks %s: skipped", path, s, missing)
            continue
        yield _assemble(parts, s, _name(names, n_color, parts["index"], s), path)
        n_done += 1
    if n_done == 0:
        raise ValueError(f"{path}: no stamp has colour, depth and camera_info together")


def _name(names: list[str], n_color: int, index: int, s: int) -> str:
    return names[index] if len(names) == n_color and index < len(names) else str(s)


def _assemble(parts: dict, s: int, name: str, path) -> RGBDFrame:
    """One frame from its messages, decoded as the node decodes them (:mod:`movseg_ros.conversions`)."""
    try:
        if parts["color"].encoding not in COLOR_ENCODINGS:
            raise ValueError(f"colour: encoding {parts['color'].encoding!r} not supported, "
                             f"expected one of {COLOR_ENCODINGS}")
        rgb = conv.color_to_rgb(parts["color"])
        depth, _valid = decode_depth(*conv.depth_to_raw(parts["depth"]))
        K, info_hw = conv.camera_info_to_K(parts["info"])
        label = _gt_image(parts, "gt", "ground-truth labels", LABEL_ENCODINGS)
        instances = _gt_image(parts, "gt_instances", "ground-truth instances", ("mono16", "16UC1"))
    except ValueError as e:
        raise ValueError(f"{path}: {e} (stamp {s})") from e
    h, w = rgb.shape[:2]
    if depth.shape != (h, w):
        raise ValueError(f"{path}: depth {depth.shape} does not match colour {(h, w)} at stamp {s}")
    if info_hw != (h, w):
        raise ValueError(f"{path}: camera_info is {info_hw[1]}x{info_hw[0]}, images {w}x{h} at stamp {s}")
    for what, a in (("labels", label), ("instances", instances)):
        if a is not None and a.shape != (h, w):
            raise ValueError(f"{path}: {what} {a.shape} do not match colour {(h, w)} at stamp {s}")
    return RGBDFrame(name, rgb, depth, K, label, stamp_ns=s, instances=instances)


def _gt_image(parts: dict, key: str, what: str, encodings: tuple[str, ...]) -> np.ndarray | None:
    """HxW uint16 of a ground-truth image message ``parts[key]`` (None when absent); ValueError for another encoding."""
    if key not in parts:
        return None
    if parts[key].encoding not in encodings:
        raise ValueError(f"{what}: encoding {parts[key].encoding!r} not supported, expected one of {encodings}")
    return conv.image_to_array(parts[key]).astype(np.uint16)


# --------------------------------------------------------------------------- sources + CLI
def open_source(src: str | Path, split: str = "all", splits: str | Path | None = None,
                class_mapping: str | Path | None = None, raw_depth: bool = False):
    """NYUv2 folder or labeled .mat -> a sized iterable of :class:`RGBDFrame` (split applied)."""
    from movseg_core.data.nyuv2 import NYUv2Folder
    from movseg_core.data.nyuv2_mat import SPLITS, NYUv2Mat, folder_split_ids

    src = Path(src)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if src.is_file() and src.suffix == ".mat":
        if class_mapping is None:
            raise ValueError(f"{src}: the labeled .mat has 894-class labels; pass --class-mapping classMapping40.mat "
                             "(from the NYUv2 toolbox / nyuv2-meta-data) to get NYU40 ids")
        return NYUv2Mat(src, class_mapping, split=split, splits=splits, raw_depth=raw_depth)
    if src.is_dir():
        ds = NYUv2Folder(src, raw_depth=raw_depth)
        ds.ids = folder_split_ids(src, ds.ids, split, splits)
        if not ds.ids:
            raise ValueError(f"{src}: no frames in split {split!r}")
        return ds
    raise ValueError(f"{src}: expected a NYUv2 folder (rgb/ depth/ label/) or nyu_depth_v2_labeled.mat")


def _run_nyu2bag(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # bad input (ValueError) ends in movseg_ros.cli.main: message on stderr, exit code 2
    ds = open_source(args.src, args.split, args.splits, args.class_mapping, args.raw_depth)
    frames = (ds[i] for i in range(min(len(ds), args.limit or len(ds))))
    total = min(len(ds), args.limit or len(ds))
    if args.overwrite and Path(args.out).exists():
        shutil.rmtree(args.out)
    cfg = BagWriteConfig(rate_hz=args.rate, storage=args.storage, frame_id=args.frame_id)
    summary = write_bag(frames, args.out, cfg, total=total)
    print(f"wrote {summary.path} ({args.storage}): {summary.frames_written} frames at {args.rate} Hz"
          f"{f', skipped {len(summary.frames_skipped)} without depth' if summary.frames_skipped else ''}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``nyu2bag SRC OUT`` to a CLI; the parser's ``func(args)`` returns the exit code."""
    p = add_command(subparsers, "nyu2bag", "convert NYUv2 (folder or labeled .mat) to a rosbag2", __doc__)
    p.add_argument("src", help="NYUv2 folder (rgb/ depth/ label/) or nyu_depth_v2_labeled.mat")
    p.add_argument("out", help="output bag directory (must not exist unless --overwrite)")
    p.add_argument("--rate", type=float, default=1.0, help="frames per second of bag time (default 1)")
    p.add_argument("--storage", choices=STORAGES, default="mcap")
    p.add_argument("--split", choices=("all", "train", "test"), default="all")
    p.add_argument("--splits", help="splits.mat (trainNdxs/testNdxs) for --split train|test")
    p.add_argument("--class-mapping", help="classMapping40.mat (894 -> 40 classes); required for the .mat")
    p.add_argument("--raw-depth", action="store_true", help="raw sensor depth instead of the filled depth")
    p.add_argument("--limit", type=int, default=0, help="write at most N frames (0 = all)")
    p.add_argument("--frame-id", default=topics.FRAME_ID)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_run_nyu2bag)
    return p

