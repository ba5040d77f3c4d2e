"""ROS 2 layer of MOVSeg-ROS: node, message conversion, tools.

The package name is shared with the rosidl-generated interfaces
(``movseg_ros.msg``, ``movseg_ros.srv``), which may be installed in another
directory than these sources; extending ``__path__`` lets both halves import
as one package in either install layout.
"""
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
