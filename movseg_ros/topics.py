"""Names of the MOVSeg stream in one place: topics, service, node, camera frame.

These are the absolute names in the root namespace, what the player, the bag files, the replay
and other clients use. The node itself uses :func:`node_side` of them: camera inputs and the
service relative (``camera/color/image_raw``: a namespace applies, and the launch file remaps
them), outputs private to the node (``~/labels`` = ``/<namespace>/movseg/labels``).
"""
from __future__ import annotations

NODE_NAME = "movseg"
NODE = f"/{NODE_NAME}"                      # the node's full name without a namespace

# camera inputs (REP 118 colour and registered depth, with the colour camera's calibration)
COLOR = "/camera/color/image_raw"
DEPTH = "/camera/depth/image_raw"
CAMERA_INFO = "/camera/color/camera_info"
FRAME_ID = "camera_color_optical_frame"     # the optical frame the player and nyu2bag stamp

# the node's service and outputs
SET_QUERIES = "/set_queries"
LABELS = f"{NODE}/labels"
LABEL_INFO = f"{NODE}/label_info"
OVERLAY = f"{NODE}/overlay"
CONFIDENCE = f"{NODE}/confidence"
POINTS = f"{NODE}/points"
INSTANCES = f"{NODE}/instances"                  # mono16 instance image (0 = none)
OBJECTS = f"{NODE}/objects"                      # movseg_ros/msg/ObjectArray
DETECTIONS_2D = f"{NODE}/detections_2d"          # vision_msgs/Detection2DArray (where vision_msgs exists)
DETECTIONS_3D = f"{NODE}/detections_3d"          # vision_msgs/Detection3DArray
VISION_LABEL_INFO = f"{NODE}/vision_label_info"  # vision_msgs/LabelInfo, transient-local

# ground truth stored beside a recorded stream (nyu2bag, movseg eval --bag)
GT_LABELS = f"{NODE}/gt_labels"
GT_INSTANCES = f"{NODE}/gt_instances"  # mono16 ground-truth instance ids (0 = none), where the source has them


def node_side(name: str) -> str:
    """The name the node creates for the absolute ``name``: ``/movseg/labels`` -> ``~/labels``
    (private), ``/camera/color/image_raw`` -> ``camera/color/image_raw`` (relative)."""
    if name.startswith(NODE + "/"):
        return "~/" + name[len(NODE) + 1:]
    return name.lstrip("/")
