"""MOVSeg core: geometry, CLIP, proposals, segmenter, training and evaluation.

Public API (imported lazily, so ``import movseg_core`` stays cheap)::

    from movseg_core import Segmenter, SegmenterConfig, SegmentationResult
    from movseg_core import extract_objects, Objects, ObjectInstance, ObjectsConfig   # issue 15

Pure Python/PyTorch; never imports rclpy (a test checks ``sys.modules``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public names -> the module defining them.
_PUBLIC = {
    "Segmenter": "movseg_core.segmenter",
    "SegmenterConfig": "movseg_core.segmenter",
    "SegmentationResult": "movseg_core.segmenter",
    "Objects": "movseg_core.objects",
    "ObjectInstance": "movseg_core.objects",
    "ObjectsConfig": "movseg_core.objects",
    "extract_objects": "movseg_core.objects",
}

__all__ = ["ObjectInstance", "Objects", "ObjectsConfig", "Segmenter", "SegmenterConfig", "SegmentationResult",
           "extract_objects", "__version__"]

if TYPE_CHECKING:
    from movseg_core.objects import ObjectInstance, Objects, ObjectsConfig, extract_objects
    from movseg_core.segmenter import SegmentationResult, Segmenter, SegmenterConfig


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'movseg_core' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
