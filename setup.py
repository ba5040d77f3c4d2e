"""pip install of the Python side (movseg_core + movseg_ros sources, CLI entry points).

The rosidl interfaces (msg/, srv/) are built by CMake (see Makefile `interfaces`
target, or `colcon build` on a real ROS 2 install).
"""
from setuptools import find_packages, setup

setup(
    name="movseg",
    version="0.1.0",
    description="Open-vocabulary RGB-D segmentation for ROS 2",
    packages=find_packages(include=["movseg_core", "movseg_core.*", "movseg_ros", "movseg_ros.*"]),
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "movseg = movseg_ros.cli:main",
            "movseg_node = movseg_ros.node:main",
        ]
    },
)
