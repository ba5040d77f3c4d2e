"""One place for the stream's names: what the node creates is what clients, players and bags use."""
from movseg_ros import launch_config, topics
from movseg_ros.bag import BagTopics
from movseg_ros.replay import ReplayConfig


def test_node_side_names():
    assert topics.node_side(topics.LABELS) == "~/labels" and topics.node_side(topics.COLOR) == "camera/color/image_raw"
    assert topics.node_side(topics.SET_QUERIES) == "set_queries"


def test_tools_default_to_the_same_names():
    b, r = BagTopics(), ReplayConfig()
    assert (b.color, b.depth, b.info) == (topics.COLOR, topics.DEPTH, topics.CAMERA_INFO)
    assert (r.labels_topic, r.label_info_topic, r.service, r.node_name) == (
        topics.LABELS, topics.LABEL_INFO, topics.SET_QUERIES, f"/{launch_config.NODE_NAME}")
    remaps = dict(launch_config.node_settings({})["remappings"])
    assert remaps == {"camera/color/image_raw": topics.COLOR, "camera/depth/image_raw": topics.DEPTH,
                      "camera/color/camera_info": topics.CAMERA_INFO}
