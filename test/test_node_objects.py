"""movseg_node's objects over real DDS (issue 15, done-when): ask for "cube" with the trained synthetic
CLIP, receive an ObjectArray matched by stamp to the label image, the cube's 3D centroid near the
renderer's truth, and an instance image that agrees with the ObjectArray pixel for pixel.

A module of its own (its own node): no other node may answer on the test's topics.
"""
from __future__ import annotations

import numpy as np
import yaml

from conftest import REPO
from node_client import camera_frame, serve_node

QUERIES = ["cube", "floor", "wall"]  # one thing and indoor stuff (stuff: one region per class)
SYNTH_CLIP = REPO / "test" / "fixtures" / "synth_clip.pt"
CENTROID_TOL_M = 0.06  # the core gets 4.1 cm on this scene with these queries (the back of the cube is unseen)


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_cube_objects_match_labels_by_stamp_and_the_instance_image_pixel_for_pixel(tmp_path):
    from sensor_msgs.msg import Image, PointCloud2

    from movseg_core.data.synthetic import CLASS_NAMES, object_boxes
    from movseg_core.eval.synthetic import scene_with, synth_segmenter_config
    from movseg_ros import topics
    from movseg_ros.conversions import image_to_array
    from movseg_ros.msg import ObjectArray
    from movseg_ros.objects_msg import vision_msgs_available
    from movseg_ros.pointcloud import CLOUD_DTYPE
    from movseg_ros.qos import qos_by_name

    path = tmp_path / "objects.yaml"
    params = {"queries": QUERIES, "log_period_s": 1.0, "publish": {"pointcloud": True, "confidence": False},
              "segmenter": synth_segmenter_config(str(SYNTH_CLIP))}
    path.write_text(yaml.safe_dump({"movseg": {"ros__parameters": params}}))
    scene = scene_with("cube", min_pixels=400)
    frame = camera_frame(scene, "cube")
    truth = [b for b in object_boxes(scene.spec, scene.first_object_id) if CLASS_NAMES[b.class_id - 1] == "cube"]
    assert truth

    with serve_node(path, "objects-node") as (proc, c):
        got: dict[str, dict] = {"objects": {}, "instances": {}, "points": {}}

        def keep(kind, convert):
            def cb(msg):
                with c.lock:
                    got[kind][c.key(msg.header.stamp)] = convert(msg)
            return cb

        q = qos_by_name("reliable", depth=10)
        subs = [c.node.create_subscription(ObjectArray, topics.OBJECTS, keep("objects", lambda m: m), q),
                c.node.create_subscription(Image, topics.INSTANCES, keep("instances", image_to_array), q),
                c.node.create_subscription(PointCloud2, topics.POINTS,
                                           keep("points", lambda m: np.frombuffer(bytes(m.data), CLOUD_DTYPE)), q)]
        assert c.wait(lambda: all(s.get_publisher_count() > 0 for s in subs), 30), \
            f"the node publishes no ~/objects or ~/instances\n{proc.output()[-3000:]}"
        k = c.key(c.camera.publish(frame))
        assert c.wait(lambda: k in c.labels and k in c.infos and all(k in g for g in got.values()), 60), \
            f"labels {k in c.labels}, objects {k in got['objects']}, instances {k in got['instances']}\n" \
            f"{proc.output()[-3000:]}"

        labels, info, msg, inst = c.labels[k], c.infos[k], got["objects"][k], got["instances"][k]
        # matched by stamp with the label image, same frame, same vocabulary
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == k
        assert msg.header.frame_id == "camera_color_optical_frame"
        assert msg.vocabulary_version == info.vocabulary_version and list(info.names) == QUERIES
        assert inst.shape == labels.shape and inst.dtype == np.uint16
        # the instance image and the ObjectArray agree pixel for pixel
        assert sorted(o.id for o in msg.objects) == list(range(1, len(msg.objects) + 1))
        assert set(np.unique(inst).tolist()) <= {0} | {o.id for o in msg.objects}
        for o in msg.objects:
            mask = inst == o.id
            assert o.pixels == int(mask.sum()) > 0
            assert (o.x_min, o.y_min, o.x_max, o.y_max) == _mask_box(mask), o
            assert o.name == info.names[o.class_id - 1] and (labels[mask] == o.class_id).all()
            assert 0.0 < o.score <= 1.0
        assert sum(o.name == "floor" for o in msg.objects) <= 1 and all(o.is_stuff for o in msg.objects
                                                                        if o.name in ("floor", "wall"))
        # the cube in 3D: the optical frame of the header, within a few cm of the renderer's solid
        cubes = [o for o in msg.objects if o.name == "cube" and o.has_3d]
        assert cubes, [(o.name, o.pixels, o.has_3d) for o in msg.objects]
        err = min(np.linalg.norm(np.array([o.centroid.x, o.centroid.y, o.centroid.z]) - t.centre)
                  for o in cubes for t in truth)
        assert err < CENTROID_TOL_M, f"cube centroid {err * 100:.1f} cm from the truth"
        # the labelled cloud's instance field is the instance image at the pixels with depth
        cloud = got["points"][k]
        assert np.array_equal(cloud["instance"], inst[frame.depth > 0])
        assert np.array_equal(cloud["label"], labels[frame.depth > 0])
        if not vision_msgs_available():
            assert proc.output().count("vision_msgs is not installed") == 1
