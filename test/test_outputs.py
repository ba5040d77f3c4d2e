"""The node's output messages for one frame (movseg_ros/outputs.py): which, in what order, with what content."""
import numpy as np
import pytest

from movseg_core.objects import ObjectsConfig, extract_objects
from movseg_core.segmenter import SegmentationResult
from movseg_ros.conversions import image_to_array, make_header
from movseg_ros.outputs import OUTPUTS, VISION_OUTPUTS, output_messages, publish_switch
from movseg_ros.params import declared_defaults


def _result(with_objects: bool) -> SegmentationResult:
    segments = np.zeros((24, 32), np.int32)
    segments[6:18, 8:20] = 1
    labels = np.where(segments == 1, 2, 1).astype(np.uint16)
    conf = np.where(segments == 1, 0.9, 0.6).astype(np.float32)
    objects = None
    if with_objects:
        objects = extract_objects(segments, np.array([1, 2]), np.array([0.6, 0.9]), ("wall", "mug"),
                                  cfg=ObjectsConfig(min_pixels=4))
    return SegmentationResult(labels, conf, ["wall", "mug"], [1, 2], 7, {"total": 1.0}, segments, objects)


def test_every_output_key_is_a_node_switch():
    defaults = declared_defaults()
    for key in OUTPUTS:
        assert f"publish.{publish_switch(key)}" in defaults, key


@pytest.mark.parametrize("with_objects", [True, False])
def test_outputs_in_order_with_one_header_and_the_results_content(with_objects):
    header = make_header(123_456_789, "cam")
    rgb = np.full((24, 32, 3), 90, np.uint8)
    depth = np.full((24, 32), 1.2, np.float32)
    K = np.array([[30.0, 0, 16], [0, 30.0, 12], [0, 0, 1]])
    wanted = set(OUTPUTS) - set(VISION_OUTPUTS)
    res = _result(with_objects)
    out = output_messages(header, rgb, res, depth, K, 12.5, wanted)
    keys = [k for k, _ in out]
    expected = ["label_info", "labels", "confidence"] + (["instances", "objects"] if with_objects else []) + [
        "overlay", "points"]
    assert keys == expected
    msgs = dict(out)
    assert all(m.header.stamp == header.stamp and m.header.frame_id == "cam" for m in msgs.values())
    info = msgs["label_info"]
    assert info.vocabulary_version == 7 and list(info.names) == ["wall", "mug"] and info.inference_ms == 12.5
    assert np.array_equal(image_to_array(msgs["labels"]), res.labels)
    assert np.array_equal(image_to_array(msgs["confidence"]), res.confidence)
    overlay = image_to_array(msgs["overlay"])
    assert overlay.shape == (24, 32, 3) and (overlay[12, 14] != 90).any()
    if with_objects:
        assert np.array_equal(image_to_array(msgs["instances"]), res.objects.instance_map)
        assert [o.name for o in msgs["objects"].objects] == [o.name for o in res.objects.instances]
    assert [k for k, _ in output_messages(header, rgb, res, None, None, 1.0, {"points", "labels"})] == ["labels"]
    assert output_messages(header, rgb, res, depth, K, 1.0, set()) == []
