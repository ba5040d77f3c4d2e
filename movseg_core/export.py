"""ONNX export of the segmenter's two CLIP encoders, for the onnxruntime / OpenVINO / TensorRT backends.

    movseg export-onnx --config config/segment.yaml --out models/clip_onnx [--image-size 480 640] [--int8]

writes into the folder:

- ``dense.onnx``: normalised images ``B x 3 x H x W`` -> L2-normalised patch features ``B x D x h x w``
  (:func:`movseg_core.clip.dense_grid`): the whole ViT with the configured training-free last stage
  (``dense.mode``) and its parameters, and the positional embedding interpolated for the network input
  the configured ``dense.short_side`` / ``dense.window`` give frames of ``--image-size`` (a constant
  of the graph: other frame sizes need another export). B, H, W are fixed (B = windows per frame).
- ``text.onnx``: token ids ``B x L`` int64 (L = the tokenizer's context length, B dynamic) ->
  ``encode_text`` embeddings ``B x D`` (not normalised; the prompt ensemble is averaged in Python).
- ``dense_int8.onnx`` / ``text_int8.onnx`` with ``--int8``: onnxruntime dynamic quantization (int8
  weights, activations quantized per call) of both.
- ``export.json``: what they were exported for (:class:`ExportInfo`), checked when a backend loads them.

Exportable: :data:`EXPORTABLE_MODES` with ``dense.scope: none``. ResCLIP's semantic feedback depends on
the queries and on data-dependent path checks, and ``dense.scope: proposals`` on each frame's proposals:
both raise :class:`ExportUnsupportedError` naming what is supported. ``dense.refine: pamr`` is applied
after the encoder in torch, so it works with every backend (it is not part of the graph). ROS-free.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from movseg_core.clip import ClipModel, DenseConfig, dense_grid

log = logging.getLogger(__name__)

#: ``dense.mode`` values the exporter supports (their graph does not depend on the data or the queries).
EXPORTABLE_MODES = ("maskclip", "sclip", "clearclip", "naclip", "scclip", "vanilla")
#: Why the other modes / options cannot be exported.
_NOT_EXPORTABLE = {
    "resclip_naclip": "ResCLIP's semantic feedback needs the queries and data-dependent path checks per frame",
    "resclip_clearclip": "ResCLIP's semantic feedback needs the queries and data-dependent path checks per frame",
}
#: ONNX opset written by default (onnxruntime >= 1.12, OpenVINO >= 2022.1 and TensorRT >= 8.5 read it).
DEFAULT_OPSET = 17
#: File names inside an export folder.
SIDECAR, DENSE_FILE, TEXT_FILE = "export.json", "dense.onnx", "text.onnx"
#: The sidecar's format version (bump when its meaning changes).
FORMAT = 1
#: DenseConfig fields that change the exported graph (the PAMR ones run after it, in torch).
GRAPH_DENSE_FIELDS = ("mode", "short_side", "window", "stride", "naclip_sigma", "batch_windows",
                      "scclip_beta", "scclip_res_cls", "scclip_multilevel")


class ExportUnsupportedError(ValueError):
    """The configuration cannot be exported (the message says what can)."""


@dataclass
class ExportInfo:
    """What an export folder holds (``export.json``).

    model_name / pretrained: the CLIP; weights_sha256: fingerprint of its weights (:func:`weights_fingerprint`);
    dense: the :data:`GRAPH_DENSE_FIELDS` of the DenseConfig; image_size: frame (H, W) px it was exported for;
    dense_input: the dense graph's input shape [B, 3, H', W']; dense_output: [B, D, h, w]; context_length:
    text tokens per prompt; opset; int8: whether the ``*_int8.onnx`` files exist; versions: torch, open_clip;
    seconds: export time.
    """

    model_name: str
    pretrained: str
    weights_sha256: str
    dense: dict[str, Any]
    image_size: list[int]
    dense_input: list[int]
    dense_output: list[int]
    context_length: int
    opset: int = DEFAULT_OPSET
    int8: bool = False
    versions: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    format: int = FORMAT

    def save(self, folder: Path) -> Path:
        """Write ``export.json`` into ``folder``; returns its path."""
        path = Path(folder) / SIDECAR
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> "ExportInfo":
        """Read ``folder/export.json``; FileNotFoundError / ValueError saying how to make one."""
        path = Path(folder) / SIDECAR
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: export the encoders first "
                                    f"(movseg export-onnx --config <your node YAML> --out {folder})")
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: format {data.get('format')} is not {FORMAT}; export again")
        return cls(**data)


def check_exportable(dense: DenseConfig) -> None:
    """Raise :class:`ExportUnsupportedError` unless ``dense`` can run as an exported graph."""
    if dense.mode not in EXPORTABLE_MODES:
        why = _NOT_EXPORTABLE.get(dense.mode, "not supported by the exporter")
        raise ExportUnsupportedError(f"dense.mode {dense.mode!r} cannot be exported to ONNX ({why}); exportable "
                                     f"modes: {', '.join(EXPORTABLE_MODES)} (with dense.scope none); or keep "
                                     "segmenter.backend torch")
    if dense.scope != "none":
        raise ExportUnsupportedError(f"dense.scope {dense.scope!r} cannot be exported to ONNX (its attention mask "
                                     "comes from each frame's proposals); exportable: dense.scope none with "
                                     f"dense.mode in {', '.join(EXPORTABLE_MODES)}; or keep segmenter.backend torch")


def graph_dense_fields(dense: DenseConfig) -> dict[str, Any]:
    """The fields of ``dense`` the exported graph depends on (:data:`GRAPH_DENSE_FIELDS`)."""
    return {k: getattr(dense, k) for k in GRAPH_DENSE_FIELDS}


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``model`` (names, shapes, fp32 bytes): an export matches the
    weights it was made from (about 1 s for ViT-B/16 on one core)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def dense_inputs(clip: ClipModel, dense: DenseConfig, image_size: tuple[int, int]) -> list[torch.Tensor]:
    """The network inputs ``B x 3 x H' x W'`` (as many as dense passes) that ``clip.dense_features`` runs for a
    frame of ``image_size`` (H, W) px under ``dense`` (resize, windows, batching: recorded, not re-derived)."""
    seen: list[torch.Tensor] = []
    saved = clip.dense_backend

    def record(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return dense_grid(clip.vision, x, dense)

    clip.dense_backend = record
    try:
        gen = torch.Generator().manual_seed(0)
        frame = torch.randint(0, 256, (*image_size, 3), generator=gen, dtype=torch.uint8).numpy()
        clip.dense_features(frame, dataclasses.replace(dense, refine="none"))
    finally:
        clip.dense_backend = saved
    return seen


class DenseEncoder(torch.nn.Module):
    """The dense pass as one module (what ``dense.onnx`` holds): :func:`movseg_core.clip.dense_grid`."""

    def __init__(self, clip: ClipModel, dense: DenseConfig):
        super().__init__()
        self.visual = clip.model.visual  # registered, so its weights are the graph's initialisers
        self.vision, self.dense = clip.vision, dense

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``B x 3 x H x W`` normalised images -> ``B x D x h x w`` L2-normalised patch features."""
        return dense_grid(self.vision, images, self.dense)


class TextEncoder(torch.nn.Module):
    """open_clip's ``encode_text`` (what ``text.onnx`` holds): ``B x L`` int64 tokens -> ``B x D``."""

    def __init__(self, clip: ClipModel):
        super().__init__()
        self.model = clip.model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids ``B x L`` -> text embeddings ``B x D`` (not normalised)."""
        return self.model.encode_text(tokens)


@contextlib.contextmanager
def _exportable_attention():
    """nn.MultiheadAttention's fused inference path (``_native_multi_head_attention``) has no ONNX form: off."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, in_name: str, out_name: str,
            opset: int, dynamic_batch: bool) -> None:
    axes = {in_name: {0: "batch"}, out_name: {0: "batch"}} if dynamic_batch else None
    with torch.no_grad(), _exportable_attention(), torch.autocast("cpu", enabled=False), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes are meant to be constants here
        # the TorchScript-based exporter: fixed shapes trace cleanly and it needs no onnxscript
        torch.onnx.export(module.eval(), (example,), str(path), input_names=[in_name], output_names=[out_name],
                          opset_version=opset, dynamic_axes=axes, dynamo=False, do_constant_folding=True)


def quantize_int8(src: Path, dst: Path) -> Path:
    """onnxruntime dynamic quantization of ``src`` (int8 weights of MatMul/Gemm, activations per call) -> ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    return dst


def export_dense(clip: ClipModel, dense: DenseConfig, example: torch.Tensor, path: Path,
                 opset: int = DEFAULT_OPSET, int8: bool = False) -> list[int]:
    """Export the dense pass for inputs shaped like ``example`` (``B x 3 x H x W``) to ``path`` (and its
    ``_int8`` twin); returns the output shape ``[B, D, h, w]``."""
    check_exportable(dense)
    enc = DenseEncoder(clip, dense)
    with torch.no_grad():
        out = list(enc(example).shape)
    _export(enc, example, path, "images", "features", opset, dynamic_batch=False)
    if int8:
        quantize_int8(path, path.with_name(path.stem + "_int8.onnx"))
    return out


def export_text(clip: ClipModel, path: Path, opset: int = DEFAULT_OPSET, int8: bool = False) -> int:
    """Export the text tower (dynamic batch) to ``path`` (and its ``_int8`` twin); returns the token length L."""
    tokens = clip.tokenizer(["a photo of a chair."]).to(clip.device)
    _export(TextEncoder(clip), tokens, path, "tokens", "embeddings", opset, dynamic_batch=True)
    if int8:
        quantize_int8(path, path.with_name(path.stem + "_int8.onnx"))
    return int(tokens.shape[1])


def export_onnx(clip: ClipModel, dense: DenseConfig, out_dir: str | Path, image_size: tuple[int, int] = (480, 640),
                opset: int = DEFAULT_OPSET, int8: bool = False) -> ExportInfo:
    """Export ``clip``'s dense pass (for frames of ``image_size`` (H, W) px under ``dense``) and text tower into
    ``out_dir`` (see the module docstring); returns the :class:`ExportInfo` written to ``export.json``.

    Raises :class:`ExportUnsupportedError` for configurations that cannot be exported.
    """
    check_exportable(dense)
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    inputs = dense_inputs(clip, dense, image_size)
    shapes = {tuple(x.shape) for x in inputs}
    if len(shapes) != 1:  # batch_windows false: one pass per window, all of one size
        raise ExportUnsupportedError(f"the dense passes of one frame have different shapes {sorted(shapes)}")
    out_shape = export_dense(clip, dense, inputs[0], out / DENSE_FILE, opset, int8)
    length = export_text(clip, out / TEXT_FILE, opset, int8)
    import open_clip

    info = ExportInfo(model_name=clip.cfg.model_name, pretrained=str(clip.cfg.pretrained),
                      weights_sha256=weights_fingerprint(clip.model), dense=graph_dense_fields(dense),
                      image_size=[int(image_size[0]), int(image_size[1])], dense_input=list(inputs[0].shape),
                      dense_output=out_shape, context_length=length, opset=opset, int8=int8,
                      versions={"torch": torch.__version__, "open_clip": open_clip.__version__,
                                "numpy": np.__version__},
                      seconds=round(time.perf_counter() - t0, 2))
    info.save(out)
    log.info("exported %s (%s, %dx%d frames, dense input %s) to %s in %.1f s", info.model_name, dense.mode,
             *info.image_size, info.dense_input, out, info.seconds)
    return info
