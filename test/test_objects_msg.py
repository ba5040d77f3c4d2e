"""movseg_ros.objects_msg with the real generated interfaces (movseg_ros/msg/ObjectArray)."""
from __future__ import annotations

import numpy as np
import pytest

from movseg_core.objects import extract_objects
from movseg_core.segmenter import SegmentationResult
from movseg_ros.conversions import image_to_array
from movseg_ros.objects_msg import instance_image, objects_to_msg

msg_mod = pytest.importorskip("movseg_ros.msg")


def _result() -> SegmentationResult:
    h, w = 48, 64
    seg = np.zeros((h, w), np.int32)
    seg[10:30, 10:30] = 1
    seg[10:30, 40:50] = 2
    depth = np.full((h, w), 3.0, np.float32)
    depth[10:30, 10:30] = 1.0
    depth[10:30, 40:50] = 0.0  # no depth: no 3D box
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
    names = ("mug", "wall")
    objs = extract_objects(seg, np.array([2, 1, 1]), np.array([0.9, 0.8, 0.7]), names, depth, K)
    labels = np.array([2, 1, 1], np.uint16)[seg]
    return SegmentationResult(labels, np.ones((h, w), np.float32), names, (1, 2), 7, {}, seg, objs)


def test_object_array_carries_every_record_and_the_instance_image_agrees():
    from std_msgs.msg import Header

    res = _result()
    header = Header(frame_id="camera_color_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = objects_to_msg(header, res)
    assert msg.header.stamp.sec == 12 and msg.header.frame_id == "camera_color_optical_frame"
    assert msg.vocabulary_version == 7
    assert [(m.id, m.name, m.class_id) for m in msg.objects] == [(1, "mug", 1), (2, "mug", 1), (3, "wall", 2)]
    img = instance_image(header, res)
    assert img.encoding == "mono16" and img.header.stamp.nanosec == 345
    inst = image_to_array(img)
    for m, o in zip(msg.objects, res.objects.instances):
        mask = inst == m.id
        ys, xs = np.nonzero(mask)
        assert (m.x_min, m.y_min, m.x_max, m.y_max) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert m.pixels == mask.sum() and m.score == pytest.approx(o.score)
        assert m.has_3d == o.has_3d
        if o.has_3d:
            assert (m.centroid.x, m.centroid.y, m.centroid.z) == pytest.approx(tuple(o.centroid))
            q = m.obb_orientation
            assert (q.x, q.y, q.z, q.w) == pytest.approx(tuple(o.obb_quat))
            assert (m.size.x, m.size.y, m.size.z) == pytest.approx(tuple(o.size))
        else:  # never a made-up box
            assert (m.centroid.x, m.centroid.y, m.centroid.z, m.size.z) == (0.0, 0.0, 0.0, 0.0)
    no3d = next(m for m in msg.objects if m.x_min == 40)
    assert not no3d.has_3d and no3d.valid_depth_pixels == 0


def test_a_result_without_objects_is_refused():
    from std_msgs.msg import Header

    res = _result()
    res.objects = None
    with pytest.raises(ValueError, match="objects.enabled"):
        objects_to_msg(Header(), res)
