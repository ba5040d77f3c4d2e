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

from movseg_ros.launch_config import LAUNCH_ARGUMENTS, PARAMETER_OVERRIDES, REMAPPED_INPUTS, default_config_path


def _node(context):
    v = {name: context.perform_substitution(LaunchConfiguration(name)) for name in LAUNCH_ARGUMENTS}
    overrides = {param: v[arg] for arg, param in PARAMETER_OVERRIDES.items() if v[arg]}
    return [Node(
        package="movseg_ros",
        executable="movseg_node",
        name="movseg",
        namespace=v["namespace"],
        parameters=[v["config"] or str(default_config_path()), overrides],
        remappings=[(node_topic, v[arg]) for node_topic, arg in REMAPPED_INPUTS.items()],
        output="screen",
        emulate_tty=True,
    )]


def generate_launch_description():
    args = [DeclareLaunchArgument(name, default_value=default, description=doc)
            for name, (default, doc) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription(args + [OpaqueFunction(function=_node)])
