"""Inference backends for the CLIP encoders: ``segmenter.backend: torch | onnxruntime | openvino``.

``torch`` runs open_clip as is. ``onnxruntime`` and ``openvino`` run the encoders written by
``movseg export-onnx`` (:mod:`movseg_core.export`): the dense visual pass and the text tower; everything
else (proposals, pooling, classification, the optional crop and CLIP-X members, PAMR) stays in torch.

Which to pick (docs/segmenter.md "Backends" has this machine's figures):

- x86 CPU: ``onnxruntime`` (``backend_int8: true`` for more speed at a small accuracy cost), or
  ``openvino`` (fp32 as fast as onnxruntime on an AVX2 CPU; its int8 wants VNNI / AMX; ``openvino_device`` CPU,
  GPU for Intel iGPUs, AUTO);
- NVIDIA GPU / Jetson: ``onnxruntime`` with ``onnx_providers: [TensorrtExecutionProvider,
  CUDAExecutionProvider, CPUExecutionProvider]`` (the ``onnxruntime-gpu`` wheel, or NVIDIA's Jetson
  wheel of it, built against the JetPack's CUDA / TensorRT). TensorRT options come from onnxruntime's
  environment variables: ``ORT_TENSORRT_FP16_ENABLE=1`` (fp16 engines), ``ORT_TENSORRT_ENGINE_CACHE_ENABLE=1``
  with ``ORT_TENSORRT_CACHE_PATH=/var/cache/movseg/trt`` (build the engine once, minutes on a Jetson, not
  at every start). ``CUDAExecutionProvider`` alone runs the graph in fp32 with cuDNN; or stay on
  ``torch`` with ``clip.device: cuda`` (fp16 autocast).

Settings (flat fields of :class:`movseg_core.segmenter.SegmenterConfig`): ``backend``; ``backend_dir``, a
folder written by ``movseg export-onnx`` for this configuration ("" = export into a temporary folder at
start-up, and the dense pass on each new input size's first frame: seconds for ViT-B/16); ``backend_int8``
(the dynamically quantized files); ``onnx_providers`` (onnxruntime execution providers in priority order);
``openvino_device``.

Every listed provider must be available (``onnxruntime.get_available_providers()``): a missing one is an
error at start-up, never a silent fall-back to the CPU.
"""
from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from movseg_core.clip import ClipModel, DenseConfig
from movseg_core.export import (
    TEXT_FILE,
    ExportInfo,
    check_exportable,
    export_dense,
    export_text,
    graph_dense_fields,
    weights_fingerprint,
)

if TYPE_CHECKING:
    from movseg_core.segmenter import SegmenterConfig

log = logging.getLogger(__name__)

#: ``segmenter.backend`` values.
BACKENDS = ("torch", "onnxruntime", "openvino")


class BackendUnavailableError(RuntimeError):
    """The backend's runtime is not installed or cannot run here (the message says what to install)."""


def check_backend(backend: str, dense: DenseConfig) -> None:
    """ValueError for an unknown backend; :class:`movseg_core.export.ExportUnsupportedError` when ``dense``
    cannot run on an exported graph."""
    if backend not in BACKENDS:
        raise ValueError(f"segmenter.backend {backend!r} not in {BACKENDS}")
    if backend != "torch":
        check_exportable(dense)


#: what to install for each runtime
_INSTALL = {"onnxruntime": "pip install onnxruntime; onnxruntime-gpu for CUDA / TensorRT",
            "openvino": "pip install openvino (requirements.txt pins it)"}


def load_numba_tbb() -> None:
    """Load numba's TBB threading layer (oneTBB from the ``tbb`` package) if it is not loaded yet.

    OpenVINO's wheel bundles an older oneTBB (2021.13) under the same soname (libtbb.so.12) as the
    ``tbb`` package's (2023.2), which numba's layer (the normals and proposal kernels) is built for;
    whichever loads first serves the whole process. A library built for a newer oneTBB is not promised
    to run on an older one, while oneTBB runs programs built for older releases, so the newer one
    loads first and serves OpenVINO too (test_backends.py checks the process holds one libtbb, the
    tbb package's). Called before OpenVINO is imported."""
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401  (links libtbb.so.12 from the tbb package)
    except ImportError:  # no numba TBB layer: nothing to conflict with
        pass


def import_runtime(backend: str):
    """The runtime module of ``backend`` (onnxruntime or openvino), imported on first use, or
    :class:`BackendUnavailableError` saying what to install."""
    if backend == "openvino":
        load_numba_tbb()
    try:
        return importlib.import_module(backend)
    except ImportError as exc:
        raise BackendUnavailableError(f"segmenter.backend {backend!r} needs the {backend} package "
                                      f"({_INSTALL[backend]})") from exc


def onnxruntime_session(path: Path, providers: tuple[str, ...] | list[str]):
    """An onnxruntime InferenceSession on ``providers`` (all must be available; CPU threads = torch's)."""
    ort = import_runtime("onnxruntime")
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing or not providers:
        raise BackendUnavailableError(f"onnxruntime execution providers {missing or list(providers)} are not "
                                      f"available here (available: {available}); install onnxruntime-gpu for CUDA "
                                      "/ TensorRT, or set segmenter.onnx_providers")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


def openvino_devices(device: str) -> list[str]:
    """The physical devices an ``openvino_device`` string names: ``GPU.1`` -> [GPU.1]; ``AUTO:GPU,CPU``,
    ``HETERO:GPU,CPU``, ``MULTI:...`` -> [GPU, CPU]; plain ``AUTO`` -> [] (any available one)."""
    virtual, _, listed = device.partition(":")
    if virtual in ("AUTO", "HETERO", "MULTI", "BATCH"):
        return [d.strip() for d in listed.split(",") if d.strip()]
    return [device]


def openvino_model(path: Path, device: str):
    """``path`` compiled by OpenVINO for ``device`` (every named device must be available), in fp32 on every
    device: the CPU plugin's default precision is bf16 on CPUs with AMX / AVX512-BF16 and the GPU plugin's
    f16, which would change the features (``backend_int8`` is the faster, approximate variant). CPU threads
    = torch's, as for onnxruntime."""
    ov = import_runtime("openvino")
    core = ov.Core()
    available = core.available_devices  # e.g. ['CPU', 'GPU.0', 'GPU.1']
    names = openvino_devices(device)
    missing = [d for d in names if d not in available and not any(a.startswith(d + ".") for a in available)]
    if missing or not (names or available):
        raise BackendUnavailableError(f"OpenVINO devices {missing or [device]} are not available here (available: "
                                      f"{available}); set segmenter.openvino_device")
    for family in sorted({d.split(".")[0] for d in (names or available)}):
        props = {"INFERENCE_PRECISION_HINT": "f32"}
        if family == "CPU":
            props["INFERENCE_NUM_THREADS"] = torch.get_num_threads()
        core.set_property(family, props)
    return core.compile_model(str(path), device)


class Encoder:
    """One exported graph on a runtime: ``encoder(x: torch.Tensor) -> torch.Tensor`` (same device as x).

    ``shape``: the fixed input shape (None entries are dynamic); a call with another shape raises ValueError
    saying what the graph was exported for (``hint``). ``calls``: how many times it ran.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], shape: list[int | None], dtype: np.dtype,
                 hint: str):
        self.run, self.shape, self.dtype, self.hint = run, shape, dtype, hint
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Run the graph on ``x`` (any device; copied through host memory)."""
        if x.ndim != len(self.shape) or any(s is not None and s != d for s, d in zip(self.shape, x.shape)):
            raise ValueError(f"exported graph takes {self.shape}, got {list(x.shape)}: {self.hint}")
        self.calls += 1
        out = self.run(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=self.dtype))
        return torch.from_numpy(np.asarray(out)).to(x.device)


def load_encoder(path: Path, backend: str, shape: list[int | None], dtype, hint: str,
                 cfg: SegmenterConfig) -> Encoder:
    """``path`` (.onnx) on ``backend`` (onnxruntime or openvino) as an :class:`Encoder` (providers / device
    from ``cfg``)."""
    if backend == "onnxruntime":
        sess = onnxruntime_session(path, cfg.onnx_providers)
        name = sess.get_inputs()[0].name
        return Encoder(lambda a: sess.run(None, {name: a})[0], shape, dtype, hint)
    if backend == "openvino":
        compiled = openvino_model(path, cfg.openvino_device)
        out = compiled.output(0)
        return Encoder(lambda a: compiled([a])[out], shape, dtype, hint)
    raise ValueError(f"backend {backend!r} runs no exported graph (one of {BACKENDS[1:]})")


def check_export(info: ExportInfo, clip: ClipModel, dense: DenseConfig, folder: Path, int8: bool) -> None:
    """ValueError when the export in ``folder`` was made for another model, weights or dense configuration."""
    want = {"model_name": clip.cfg.model_name, "pretrained": str(clip.cfg.pretrained),
            "dense": graph_dense_fields(dense)}
    have = {"model_name": info.model_name, "pretrained": info.pretrained, "dense": info.dense}
    diff = {k: (have[k], v) for k, v in want.items() if have[k] != v}
    if not diff and info.weights_sha256 != weights_fingerprint(clip.model):
        diff = {"weights": "the weights differ from those exported"}
    if not diff and int8 and not info.int8:
        diff = {"int8": "exported without --int8"}
    if diff:
        raise ValueError(f"{folder} was exported for another configuration ({diff}, as (exported, configured)): "
                         f"export again (movseg export-onnx --config <your node YAML> --out {folder})")


class AutoDenseEncoder:
    """The dense pass exported on first use for each input shape (``backend_dir`` ""): the first frame of a
    new size pays one export (seconds for ViT-B/16), later ones run the exported graph."""

    def __init__(self, clip: ClipModel, dense: DenseConfig, cfg: SegmenterConfig, folder: Path):
        self.clip, self.dense, self.cfg, self.folder = clip, dense, cfg, folder
        self.encoders: dict[tuple[int, ...], Encoder] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """As :class:`Encoder`, exporting first for a new shape of ``x``."""
        key = tuple(x.shape)
        if key not in self.encoders:
            path = self.folder / f"dense_{'x'.join(map(str, key))}.onnx"
            log.info("segmenter.backend %s: exporting the dense pass for input %s into %s", self.cfg.backend,
                     list(key), path)
            export_dense(self.clip, self.dense, x, path, int8=self.cfg.backend_int8)
            if self.cfg.backend_int8:
                path = path.with_name(path.stem + "_int8.onnx")
            self.encoders[key] = load_encoder(path, self.cfg.backend, list(key), np.float32, "", self.cfg)
        return self.encoders[key](x)


def attach_backend(clip: ClipModel, dense: DenseConfig, cfg: SegmenterConfig) -> ExportInfo | None:
    """Run ``clip``'s dense pass and text tower on ``cfg.backend`` (nothing to do for torch); returns the
    export used (None when exporting on the fly: ``cfg.backend_dir`` "", into a temporary folder)."""
    check_backend(cfg.backend, dense)
    if cfg.backend == "torch":
        return None
    import_runtime(cfg.backend)
    int8 = "_int8" if cfg.backend_int8 else ""
    if not cfg.backend_dir:
        folder = Path(tempfile.mkdtemp(prefix="movseg_onnx_"))
        weakref.finalize(clip, shutil.rmtree, folder, True)  # hundreds of MB for ViT-B: gone with the model
        log.info("segmenter.backend %s: exporting the encoders into %s on first use (set segmenter.backend_dir to "
                 "an export of `movseg export-onnx` to skip this)", cfg.backend, folder)
        length = export_text(clip, folder / TEXT_FILE, int8=cfg.backend_int8)
        clip.text_cache.encoder = load_encoder(folder / f"text{int8}.onnx", cfg.backend, [None, length],
                                               np.int64, "text tokens", cfg)
        clip.dense_backend = AutoDenseEncoder(clip, dense, cfg, folder)
        return None
    folder = Path(cfg.backend_dir).expanduser()
    info = ExportInfo.load(folder)
    check_export(info, clip, dense, folder, cfg.backend_int8)
    h, w = info.image_size
    hint = (f"{folder} was exported for {h}x{w} frames (dense.short_side {info.dense['short_side']}); "
            f"export again with movseg export-onnx --image-size for this camera's frames")
    clip.dense_backend = load_encoder(folder / f"dense{int8}.onnx", cfg.backend, info.dense_input, np.float32,
                                      hint, cfg)
    clip.text_cache.encoder = load_encoder(folder / f"text{int8}.onnx", cfg.backend, [None, info.context_length],
                                           np.int64, "text tokens", cfg)
    log.info("segmenter.backend %s%s: %s (%s, %dx%d frames)", cfg.backend, " int8" if cfg.backend_int8 else "",
             folder, info.dense["mode"], h, w)
    return info
