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


def objects_to_msg(header, result: SegmentationResult):
    """``ObjectArray`` for a segmentation result (its vocabulary version; objects in id order).

    Raises ValueError when the result carries no objects (``objects.enabled`` false).
    """
    from movseg_ros.msg import ObjectArray

    if result.objects is None:
        raise ValueError("the segmentation result has no objects (segmenter objects.enabled is false)")
    msg = ObjectArray()
    msg.header = header
    msg.vocabulary_version = int(result.vocabulary_version)
    msg.objects = [object_to_msg(o) for o in result.objects.instances]
    return msg


def instance_image(header, result: SegmentationResult):
    """The instance map as a ``mono16`` ``sensor_msgs/Image`` (0 = none, i = ``objects[i-1]``)."""
    if result.objects is None:
        raise ValueError("the segmentation result has no objects (segmenter objects.enabled is false)")
    return array_to_image(result.objects.instance_map, "mono16", header)
