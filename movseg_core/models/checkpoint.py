"""Exported proposal-generator checkpoints: one file the segmenter and the node load.

Format (``torch.save`` dict): ``format`` = ``movseg-proposals-v1``, ``model_config`` (dict of
:class:`MaskFormerConfig`), ``state_dict`` (fp32), ``class_names`` (training vocabulary, for
reference), ``class_embeddings`` (their CLIP text embeddings C x E, or None), ``clip`` (dict:
model_name, pretrained, clip_x path or None) and ``meta``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .maskformer import MaskFormerConfig, RGBXMaskFormer

CHECKPOINT_FORMAT = "movseg-proposals-v1"


def export_checkpoint(model: RGBXMaskFormer, path: str | os.PathLike, class_names: list[str] | tuple[str, ...] = (),
                      clip: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                      class_embeddings: torch.Tensor | None = None) -> Path:
    """Write ``model`` (unwrapped from DDP if needed) as an exported checkpoint; returns the path.

    class_embeddings: the training vocabulary's CLIP text embeddings ``C x E`` (lets inference score
    objectness without a vocabulary).
    """
    model = getattr(model, "module", model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": model.cfg.to_dict(),
        "state_dict": {k: v.detach().float().cpu() if v.is_floating_point() else v.cpu()
                       for k, v in model.state_dict().items()},
        "class_names": list(class_names),
        "clip": dict(clip or {}),
        "meta": dict(meta or {}),
        "class_embeddings": None if class_embeddings is None else class_embeddings.detach().float().cpu(),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike,
                    device: str | torch.device = "cpu") -> tuple[RGBXMaskFormer, dict[str, Any]]:
    """Load an exported checkpoint -> (model in eval mode on ``device``, payload without the state dict).

    Raises ValueError for a file that is not an exported proposal checkpoint, FileNotFoundError if missing.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"proposal checkpoint {path} not found")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint (export one with `movseg export`)")
    cfg = MaskFormerConfig.from_dict(dict(payload["model_config"], pretrained=False))
    model = RGBXMaskFormer(cfg)
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: state dict does not match its config "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.to(device).eval(), meta
