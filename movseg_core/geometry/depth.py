"""Depth conventions in one place: REP 118 decoding (``16UC1``/``mono16`` millimetres, ``32FC1``
metres) and the millimetre <-> metre conversion every reader, bag and player uses.

Depth in this project is HxW float32 metres with 0 = invalid (never NaN); stored or sent depth is
uint16 millimetres with 0 = invalid.
"""
from __future__ import annotations

import numpy as np
import torch

from ._tensor import ArrayLike, like_input, squeeze_hw, to_tensor

#: The depth encodings of ``sensor_msgs/Image`` the project accepts (node, bags, replay) -> unit.
#: ``mono16`` is what many drivers publish for millimetre depth; REP 118 names ``16UC1``.
DEPTH_ENCODINGS: dict[str, str] = {"16UC1": "mm", "mono16": "mm", "32FC1": "m"}

_MM_PER_M = 1000.0


def depth_mm_to_m(mm: np.ndarray) -> np.ndarray:
    """HxW unsigned 16-bit millimetres (0 = invalid) -> HxW float32 metres (0 = invalid).

    Each value is ``mm / 1000`` rounded once to float32, so :func:`depth_m_to_mm` gives ``mm`` back.
    """
    mm = np.asarray(mm)
    if mm.dtype != np.uint16:
        raise ValueError(f"depth: expected uint16 millimetres, got dtype {mm.dtype}")
    return mm.astype(np.float32) / np.float32(_MM_PER_M)


def depth_m_to_mm(depth: np.ndarray) -> np.ndarray:
    """HxW metres -> HxW uint16 millimetres, rounded to the nearest millimetre (halves to even).

    0 = invalid: 0, NaN, +-inf and negative metres, and depths under 0.5 mm, become 0.
    Depths beyond 65.535 m are clipped to 65535 (the largest 16UC1 value).
    """
    mm = np.asarray(depth, dtype=np.float64) * _MM_PER_M
    with np.errstate(invalid="ignore"):
        invalid = ~((mm > 0) & (mm < np.inf))  # NaN compares False
    np.rint(mm, out=mm)
    mm[invalid] = 0.0
    np.clip(mm, 0.0, 65535.0, out=mm)
    return mm.astype(np.uint16)

_INT_DTYPES = (torch.uint8, torch.int16, torch.int32, torch.int64)


def decode_depth(
    raw: ArrayLike, encoding: str, valid_range: tuple[float, float] | None = None
) -> tuple[ArrayLike, ArrayLike]:
    """Decode a raw depth image to metres and a validity mask.

    Args:
        raw: HxW (or HxWx1) array. ``16UC1``/``mono16``: unsigned 16-bit millimetres (numpy uint16,
            or an integer tensor holding 0..65535). ``32FC1``: float metres.
        encoding: ROS ``sensor_msgs/Image.encoding``.
        valid_range: optional ``(min_m, max_m)``; depths outside it are invalid.

    Returns:
        ``(depth, valid)``: HxW float32 metres with 0 where invalid, and HxW bool.
        0, NaN, +-inf and negative values are invalid. numpy in -> numpy out; tensors keep their device.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"encoding: unsupported depth encoding {encoding!r}, "
                         f"expected one of {sorted(DEPTH_ENCODINGS)}")
    if isinstance(raw, np.ndarray) and raw.dtype in (np.uint16, np.float32):
        return _decode_numpy(raw, encoding, valid_range)  # the node's per-frame path: ~8x faster than via torch
    t, was_numpy = to_tensor(raw, "raw")
    t = squeeze_hw(t, "raw")
    if encoding == "32FC1":
        if not t.is_floating_point():
            raise ValueError(f"raw: encoding 32FC1 needs floating-point metres, got dtype {t.dtype}")
        depth = t.to(torch.float32)
    else:
        if t.dtype not in _INT_DTYPES and t.dtype != getattr(torch, "uint16", None):
            raise ValueError(f"raw: encoding {encoding} needs unsigned 16-bit millimetres, got dtype {t.dtype}")
        t = t.to(torch.int32)
        if bool((t < 0).any()) or bool((t > 65535).any()):
            raise ValueError(f"raw: encoding {encoding} values must lie in 0..65535")
        depth = t.to(torch.float32) / _MM_PER_M  # the rounding of depth_mm_to_m
    valid = torch.isfinite(depth) & (depth > 0)
    if valid_range is not None:
        lo, hi = _check_range(valid_range)
        valid &= (depth >= lo) & (depth <= hi)
    depth = torch.where(valid, depth, torch.zeros((), dtype=depth.dtype, device=depth.device))
    return like_input(depth, was_numpy), like_input(valid, was_numpy)


def _check_range(valid_range: tuple[float, float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in valid_range)
    if not (0 <= lo < hi):
        raise ValueError(f"valid_range: expected 0 <= min < max metres, got {valid_range}")
    return lo, hi


def _decode_numpy(raw: np.ndarray, encoding: str,
                  valid_range: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decode_depth` for numpy uint16 / float32 input (same results, no tensor round trip)."""
    raw = squeeze_hw(raw, "raw")
    if encoding == "32FC1":
        if raw.dtype != np.float32:
            raise ValueError(f"raw: encoding 32FC1 needs floating-point metres, got dtype {raw.dtype}")
        depth = raw.astype(np.float32, copy=True)
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(depth) & (depth > 0)
    else:
        if raw.dtype != np.uint16:
            raise ValueError(f"raw: encoding {encoding} needs unsigned 16-bit millimetres, got dtype {raw.dtype}")
        depth = depth_mm_to_m(raw)
        valid = raw > 0
    if valid_range is not None:
        lo, hi = _check_range(valid_range)
        valid &= (depth >= lo) & (depth <= hi)
    depth[~valid] = 0.0
    return depth, valid
