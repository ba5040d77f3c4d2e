"""ROS 2 layer of MOVSeg-ROS: node, message conversion, tools.

The package name is shared with the rosidl-generated interfaces
(``movseg_ros.msg``, ``movseg_ros.srv``), which may be installed in another
directory than these sources; extending ``__path__`` lets both halves import
as one package in either install layout.

Importing it sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it (it must be set before
torch loads its OpenMP runtime, and every process of this layer imports this package first): with GNU
OpenMP's default wait policy, each multi-threaded torch op on the CPU waited ~30 ms whenever another
process kept a core busy (2-thread segment classification 0.2 -> 30 ms p50 beside one busy process on
these 2 cores; PASSIVE 0.29 ms). docs/node.md ("CPU threads").
"""
import os as _os
from pkgutil import extend_path

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__path__ = extend_path(__path__, __name__)
