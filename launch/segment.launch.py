"""Start movseg_node with the package's parameters YAML (real ROS 2 installs).

    ros2 launch movseg_ros segment.launch.py [config:=my.yaml] [namespace:=robot1]
        [color_topic:=...] [depth_topic:=...] [camera_info_topic:=...] [device:=cuda]

On the pip-only stack (no `launch` package) `movseg run` takes the same arguments
and starts the same node with the same YAML.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from movseg_ros.launch_config import LAUNCH_ARGUMENTS, node_settings


def _node(context):
    v = {name: context.perform_substitution(LaunchConfiguration(name)) for name in LAUNCH_ARGUMENTS}
    # name, namespace, parameters (YAML keyed '/**': applies in any namespace) and remappings
    return [Node(package="movseg_ros", executable="movseg_node", output="screen", emulate_tty=True,
                 **node_settings(v))]


def generate_launch_description():
    args = [DeclareLaunchArgument(name, default_value=default, description=doc)
            for name, (default, doc) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])
