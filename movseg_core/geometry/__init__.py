"""Geometry from depth: REP 118 decoding, back-projection, K under resize/crop, surface normals,
X-modality images (normals RGB, depth image, HHA) and PNG visualisation.

Torch tensors in and out (CPU or CUDA); numpy in gives numpy out. Depth in metres (HxW float32,
0 where invalid), K the 3x3 pinhole intrinsics of the image it describes.
"""
from .camera import backproject, check_intrinsics, crop_intrinsics, scale_intrinsics
from .depth import DEPTH_ENCODINGS, decode_depth, depth_m_to_mm, depth_mm_to_m
from .modality import X_MODALITIES, HHAConfig, depth_to_rgb, estimate_up, hha, normals_to_rgb
from .normals import NormalsConfig, normals_from_depth, prepare_cpu_normals
from .viz import save_geometry_pngs

__all__ = [
    "X_MODALITIES",
    "DEPTH_ENCODINGS",
    "HHAConfig",
    "NormalsConfig",
    "backproject",
    "check_intrinsics",
    "crop_intrinsics",
    "decode_depth",
    "depth_m_to_mm",
    "depth_mm_to_m",
    "depth_to_rgb",
    "estimate_up",
    "hha",
    "normals_from_depth",
    "normals_to_rgb",
    "prepare_cpu_normals",
    "save_geometry_pngs",
    "scale_intrinsics",
]
