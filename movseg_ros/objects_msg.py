"""movseg_core objects -> ``movseg_ros/msg/ObjectArray`` and the ``mono16`` instance image (pure; no node).

The node (not this module) decides when to publish; this module only converts. Both outputs take
the colour image's header, so they match the label image and LabelInfo by stamp.
"""
from __future__ import annotations

from movseg_core.objects import ObjectInstance
from movseg_core.segmenter import SegmentationResult
from movseg_ros.conversions import array_to_image


def object_to_msg(o: ObjectInstance):
    """One :class:`ObjectInstance` -> ``movseg_ros/msg/Object`` (3D fields zero unless ``has_3d``)."""
    from movseg_ros.msg import Object

    m = Object()
    m.id, m.class_id, m.name, m.score, m.is_stuff = int(o.id), int(o.class_id), o.name, float(o.score), bool(o.is_stuff)
    m.x_min, m.y_min, m.x_max, m.y_max = (int(v) for v in o.box)
    m.pixels, m.valid_depth_pixels, m.has_3d = int(o.pixels), int(o.valid_depth), bool(o.has_3d)
    if o.has_3d:
        m.centroid.x, m.centroid.y, m.centroid.z = (float(v) for v in o.centroid)
        m.size.x, m.size.y, m.size.z = (float(v) for v in o.size)
        m.obb_center.x, m.obb_center.y, m.obb_center.z = (float(v) for v in o.obb_center)
        m.obb_size.x, m.obb_size.y, m.obb_size.z = (float(v) for v in o.obb_size)
        q = m.obb_orientation
        q.x, q.y, q.z, q.w = (float(v) for v in o.obb_quat)
    return m


def _objects(result: SegmentationResult):
    """The result's objects; ValueError when it carries none (``objects.enabled`` false)."""
    if result.objects is None:
        raise ValueError("the segmentation result has no objects (segmenter objects.enabled is false)")
    return result.objects


def objects_to_msg(header, result: SegmentationResult):
    """``ObjectArray`` for a segmentation result (its vocabulary version; objects in id order).

    Raises ValueError when the result carries no objects (``objects.enabled`` false).
    """
    from movseg_ros.msg import ObjectArray

    objects = _objects(result)
    msg = ObjectArray()
    msg.header = header
    msg.vocabulary_version = int(result.vocabulary_version)
    msg.objects = [object_to_msg(o) for o in objects.instances]
    return msg


def instance_image(header, result: SegmentationResult):
    """The instance map as a ``mono16`` ``sensor_msgs/Image`` (0 = none, i = ``objects[i-1]``)."""
    return array_to_image(_objects(result).instance_map, "mono16", header)


# ------------------------------------------------------------------ vision_msgs (where installed)
# Written against vision_msgs 4.x (ROS 2 Humble and later): Detection2D/3D.results are
# ObjectHypothesisWithPose with .hypothesis.class_id (string) / .score (float64); BoundingBox2D.center
# is vision_msgs/Pose2D with .position.x/.y (pixels) and .theta; BoundingBox3D.center is a
# geometry_msgs/Pose; LabelInfo.class_map is VisionClass[] (class_id uint16, class_name). Not
# installed on the development machine: these functions are not exercised by its tests.

def vision_msgs_available() -> bool:
    """True when ``vision_msgs`` (4.x, with LabelInfo) can be imported."""
    try:
        from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: F401
    except ImportError:
        return False
    return True


def _hypothesis(o: ObjectInstance):
    from vision_msgs.msg import ObjectHypothesisWithPose

    h = ObjectHypothesisWithPose()
    h.hypothesis.class_id, h.hypothesis.score = o.name, float(o.score)
    return h


def detections_2d(header, result: SegmentationResult):
    """``vision_msgs/Detection2DArray``: one detection per object (stuff included), the class name
    as hypothesis class_id, its score, the mask's 2D box (centre and size in pixels, inclusive bounds
    -> size = max - min + 1), ``id`` = the instance id as a string."""
    from vision_msgs.msg import Detection2D, Detection2DArray

    out = Detection2DArray(header=header)
    for o in _objects(result).instances:
        x0, y0, x1, y1 = (float(v) for v in o.box)
        d = Detection2D(header=header, id=str(o.id))
        d.results = [_hypothesis(o)]
        d.bbox.center.position.x, d.bbox.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        d.bbox.size_x, d.bbox.size_y = x1 - x0 + 1.0, y1 - y0 + 1.0
        out.detections.append(d)
    return out


def detections_3d(header, result: SegmentationResult):
    """``vision_msgs/Detection3DArray``: the objects with a 3D box (``has_3d``), axis-aligned in the
    header's optical frame (centre = ``centroid``, identity orientation, size in metres); the
    hypothesis pose holds the same centre. Objects without 3D are left out (never a made-up box)."""
    from vision_msgs.msg import Detection3D, Detection3DArray

    out = Detection3DArray(header=header)
    for o in _objects(result).instances:
        if not o.has_3d:
            continue
        d = Detection3D(header=header, id=str(o.id))
        h = _hypothesis(o)
        p = h.pose.pose.position
        p.x, p.y, p.z = (float(v) for v in o.centroid)
        d.results = [h]
        d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z = p.x, p.y, p.z
        d.bbox.center.orientation.w = 1.0
        d.bbox.size.x, d.bbox.size.y, d.bbox.size.z = (float(v) for v in o.size)
        out.detections.append(d)
    return out


def vision_label_info(header, result: SegmentationResult):
    """``vision_msgs/LabelInfo`` of the result's vocabulary: class_map = (label id, query) pairs, with
    0 = "unknown" first (the label image's 0); threshold 0 (unknown rejection is the segmenter's)."""
    from vision_msgs.msg import LabelInfo, VisionClass

    classes = [VisionClass(class_id=0, class_name="unknown")]
    classes += [VisionClass(class_id=int(i), class_name=str(n)) for i, n in zip(result.ids, result.names)]
    return LabelInfo(header=header, class_map=classes, threshold=0.0)
