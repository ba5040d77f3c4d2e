"""The node's output messages for one segmented frame, built in one place (the node publishes them, the
benchmarks time them).

Every message carries the colour image's header. Keys (the node's ``publish.*`` switches, with
``detections`` split into its two topics): ``label_info`` (movseg_ros/LabelInfo from the result itself:
the vocabulary the labels were made with), ``labels`` (mono16, 0 = unknown), ``confidence`` (32FC1),
``instances`` (mono16, 0 = none), ``objects`` (movseg_ros/ObjectArray), ``vision_label_info``,
``detections_2d``, ``detections_3d`` (vision_msgs), ``overlay`` (rgb8 with legend and object boxes),
``points`` (PointCloud2 with label, confidence and instance, where depth exists). The object messages
exist only when the result has objects (``segmenter.objects.enabled``).
"""
from __future__ import annotations

from typing import Any, Container

import numpy as np

from movseg_core.segmenter import SegmentationResult
from movseg_core.viz import draw_objects, overlay
from movseg_ros.conversions import array_to_image
from movseg_ros.msg import LabelInfo
from movseg_ros.objects_msg import detections_2d, detections_3d, instance_image, objects_to_msg, vision_label_info

OUTPUTS = ("label_info", "labels", "confidence", "instances", "objects", "vision_label_info", "detections_2d",
           "detections_3d", "overlay", "points")
VISION_OUTPUTS = ("vision_label_info", "detections_2d", "detections_3d")  # only where vision_msgs is installed


def publish_switch(key: str) -> str:
    """The node parameter ``publish.<switch>`` that turns output ``key`` on."""
    return {"points": "pointcloud", "detections_2d": "detections", "detections_3d": "detections"}.get(key, key)


def output_messages(header, rgb: np.ndarray, result: SegmentationResult, depth_m: np.ndarray | None,
                    K: np.ndarray | None, inference_ms: float, wanted: Container[str]) -> list[tuple[str, Any]]:
    """(key, message) for each wanted output of one frame, in publishing order (label-info first).

    rgb: HxWx3 uint8 (the overlay's background); depth_m: HxW float32 metres (0 = invalid) or None;
    K: 3x3 intrinsics of rgb; inference_ms: the segmenter's time for this frame (LabelInfo).
    """
    out: list[tuple[str, Any]] = []
    labels = np.asarray(result.labels, dtype=np.uint16)
    if "label_info" in wanted:
        out.append(("label_info", LabelInfo(header=header, vocabulary_version=int(result.vocabulary_version),
                                            names=list(result.names), ids=[int(i) for i in result.ids],
                                            inference_ms=float(inference_ms))))
    if "labels" in wanted:
        out.append(("labels", array_to_image(labels, "mono16", header)))
    if "confidence" in wanted:
        out.append(("confidence", array_to_image(np.asarray(result.confidence, dtype=np.float32), "32FC1", header)))
    objects = result.objects  # None when segmenter.objects.enabled is false
    if objects is not None:  # with the labels: a client matches all of them by stamp
        for key, build in (("instances", instance_image), ("objects", objects_to_msg),
                           ("vision_label_info", vision_label_info), ("detections_2d", detections_2d),
                           ("detections_3d", detections_3d)):
            if key in wanted:
                out.append((key, build(header, result)))
    if "overlay" in wanted:
        image = overlay(rgb, labels, list(result.names))
        if objects is not None:
            image = draw_objects(image, objects.instances, len(result.names))
        out.append(("overlay", array_to_image(image, "rgb8", header)))
    if "points" in wanted and depth_m is not None and K is not None:
        from movseg_ros.pointcloud import labelled_cloud
        out.append(("points", labelled_cloud(header, depth_m, K, labels, result.confidence,
                                             None if objects is None else objects.instance_map)))
    return out
