"""Inference backends (movseg_core/backends.py, movseg_core/export.py, `movseg export-onnx`): the exported encoders
run on onnxruntime and OpenVINO (requirements.txt installs both) give torch's dense features and text embeddings
on a real NYUv2 frame, for every exportable dense mode; unsupported configurations fail naming what is
supported; the whole segmenter labels the same on onnxruntime and OpenVINO as on torch.

Tolerances: features and text embeddings are L2-normalised; exported graphs run the same fp32 arithmetic in
another order, so they agree to ~1e-6 (max |difference| <= 1e-4 asserted per element, over all patches;
measured 1.5e-7 - 5.9e-7 on both runtimes for every mode).
The tiny random-weight model (seeded) makes these numerical checks, not quality checks.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import warnings

import numpy as np
import pytest
import torch

from movseg_core.backends import (
    BackendUnavailableError,
    attach_backend,
    import_runtime,
    load_encoder,
    openvino_devices,
    openvino_model,
)
from movseg_core.clip import DenseConfig
from movseg_core.data.nyuv2 import NYUv2Folder
from movseg_core.export import (
    EXPORTABLE_MODES,
    ExportInfo,
    ExportUnsupportedError,
    dense_inputs,
    export_dense,
    export_onnx,
    export_text,
)
from movseg_core.segmenter import Segmenter, SegmenterConfig, config_from_dict

from conftest import REPO, random_clip

pytest.importorskip("onnxruntime")
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None
#: backends with a runtime here (both are in requirements.txt; a machine without OpenVINO skips it)
RUNTIMES = ["onnxruntime"] + (["openvino"] if HAS_OPENVINO else [])
FEATURE_TOL = 1e-4
TEXT_TOL = 1e-5
QUERIES = ["wall", "floor", "chair", "table", "bed", "window"]
SHORT = 224  # dense short side: 14 x 18 patches of the tiny ViT on a 480 x 640 frame (fast)


@pytest.fixture(scope="module")
def frame():
    return NYUv2Folder(REPO / "data" / "nyuv2")[0]


@pytest.fixture(scope="module")
def clip():
    return random_clip("movseg-tiny-vit", seed=0)


@pytest.fixture(scope="module")
def square_export(clip, tmp_path_factory):
    """maskclip exported (with int8 twins) for 240 x 240 frames: another network input than 4:3 frames."""
    folder = tmp_path_factory.mktemp("square")
    return folder, export_onnx(clip, DenseConfig(mode="maskclip", short_side=SHORT), folder, (240, 240), int8=True)


@pytest.mark.parametrize("mode", EXPORTABLE_MODES)
def test_exported_dense_features_equal_torch(clip, frame, tmp_path, mode):
    dense = DenseConfig(mode=mode, short_side=SHORT)
    (x,) = dense_inputs(clip, dense, frame.rgb.shape[:2])
    out_shape = export_dense(clip, dense, x, tmp_path / "dense.onnx")
    ref = clip.dense_features(frame.rgb, dense)
    assert [1, *ref.shape] == out_shape
    for runtime in RUNTIMES:
        enc = load_encoder(tmp_path / "dense.onnx", runtime, out_shape[:1] + list(x.shape[1:]), np.float32, "",
                           SegmenterConfig(backend=runtime))
        clip.dense_backend = enc
        try:
            got = clip.dense_features(frame.rgb, dense)
        finally:
            clip.dense_backend = None
        assert enc.calls == 1 and got.shape == ref.shape
        assert (got - ref).abs().max().item() <= FEATURE_TOL, (runtime, mode)


def test_exported_text_embeddings_equal_torch(clip, tmp_path):
    length = export_text(clip, tmp_path / "text.onnx")
    ref = clip.text_cache._encode(QUERIES)  # 6 queries x 8 templates: a batch of 48 prompts
    for runtime in RUNTIMES:
        clip.text_cache.encoder = load_encoder(tmp_path / "text.onnx", runtime, [None, length], np.int64, "",
                                               SegmenterConfig(backend=runtime))
        try:
            got = clip.text_cache._encode(QUERIES)
            assert clip.text_cache.encoder.calls == 1
        finally:
            clip.text_cache.encoder = None
        assert (got - ref).abs().max().item() <= TEXT_TOL, runtime


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_segmenter_labels_on_exported_backends_match_torch(frame, runtime):
    cfg = {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu"},
           "dense": {"mode": "clearclip", "short_side": SHORT}, "objects": {"enabled": False}}
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for backend in ("torch", runtime):
            torch.manual_seed(0)  # the same random weights for both
            seg = Segmenter.from_config({**cfg, "backend": backend})  # runtime: exported at start-up
            assert (seg.clip.dense_backend is not None) == (backend != "torch")
            seg.set_queries(QUERIES)
            out.append(seg.segment(frame.rgb, frame.depth, frame.K).labels)
            if backend != "torch":
                assert seg.clip.text_cache.encoder.calls == 1 and len(seg.clip.dense_backend.encoders) == 1
                assert next(iter(seg.clip.dense_backend.encoders.values())).calls == 1
    agreement = float((out[0] == out[1]).mean())
    assert agreement >= 0.999, agreement  # all segments equal in practice; 0.1 % allows one near-tie segment


def test_unsupported_configurations_say_what_is_supported(clip, tmp_path):
    for dense in (DenseConfig(mode="resclip_naclip"), DenseConfig(mode="clearclip", scope="proposals")):
        with pytest.raises(ExportUnsupportedError, match="exportable.*clearclip"):
            export_onnx(clip, dense, tmp_path)
        with pytest.raises(ValueError, match="exportable"):
            config_from_dict({"backend": "onnxruntime", "dense": dataclasses.asdict(dense)})
    assert not (tmp_path / "export.json").exists()
    with pytest.raises(ValueError, match="'torch', 'onnxruntime', 'openvino'"):
        config_from_dict({"backend": "tensorrt"})


def test_export_for_another_frame_size_or_config_is_refused(clip, frame, square_export):
    folder, info = square_export
    assert json.loads((folder / "export.json").read_text())["dense"]["mode"] == "maskclip"
    dense = DenseConfig(mode="maskclip", short_side=SHORT)
    cfg = SegmenterConfig(backend="onnxruntime", backend_dir=str(folder), dense=dense)
    try:
        assert attach_backend(clip, dense, cfg) == info
        with pytest.raises(ValueError, match="exported for 240x240 frames"):
            clip.dense_features(frame.rgb, dense)  # a 480 x 640 frame needs another network input
        assert clip.dense_features(frame.rgb[:240, :240], dense).shape == (64, 14, 14)
        assert clip.dense_backend.calls == 1
    finally:
        clip.dense_backend = clip.text_cache.encoder = None
    with pytest.raises(ValueError, match="another configuration.*naclip"):
        attach_backend(clip, DenseConfig(mode="naclip", short_side=SHORT), cfg)
    with pytest.raises(ValueError, match="weights differ"):
        attach_backend(random_clip("movseg-tiny-vit", seed=1), dense, cfg)
    with pytest.raises(FileNotFoundError, match="movseg export-onnx"):
        ExportInfo.load(folder / "nothing")


def test_missing_runtime_or_provider_is_a_clear_error(clip, square_export, monkeypatch):
    folder, _ = square_export
    dense = DenseConfig(mode="maskclip", short_side=SHORT)
    cfg = SegmenterConfig(backend="onnxruntime", onnx_providers=["TensorrtExecutionProvider"], dense=dense)
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider.*not available"):
        load_encoder(folder / "dense.onnx", "onnxruntime", [None], np.float32, "", cfg)
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "openvino", None)  # what an install without OpenVINO sees: ImportError
        with pytest.raises(BackendUnavailableError, match="pip install openvino"):
            attach_backend(clip, dense, SegmenterConfig(backend="openvino", backend_dir=str(folder), dense=dense))


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino not importable")
def test_openvino_runs_fp32_on_torch_threads_and_refuses_missing_devices(square_export):
    openvino = import_runtime("openvino")

    folder, _ = square_export
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # not OpenVINO's default (all cores) on any machine with more than one
    try:
        model = openvino_model(folder / "dense.onnx", "CPU")
    finally:
        torch.set_num_threads(threads)
    assert model.get_property("INFERENCE_NUM_THREADS") == 1
    assert model.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32  # bf16 by default with AMX
    core = openvino.Core()
    assert openvino_devices("AUTO:GPU,CPU") == ["GPU", "CPU"] and openvino_devices("GPU.1") == ["GPU.1"]
    assert openvino_devices("AUTO") == []
    absent = next(d for d in ("GPU", "NPU", "GPU.9") if d not in core.available_devices)
    for device in (absent, f"AUTO:{absent},CPU"):
        with pytest.raises(BackendUnavailableError, match=f"OpenVINO devices \\['{absent}'\\] are not available"):
            load_encoder(folder / "dense.onnx", "openvino", [None], np.float32, "",
                         SegmenterConfig(backend="openvino", openvino_device=device))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_int8_export_runs_close_to_fp32(clip, frame, square_export, runtime):
    folder, _ = square_export
    dense = DenseConfig(mode="maskclip", short_side=SHORT)
    rgb = np.ascontiguousarray(frame.rgb[120:360, 200:440])
    ref = clip.dense_features(rgb, dense)
    try:
        attach_backend(clip, dense, SegmenterConfig(backend=runtime, backend_dir=str(folder), backend_int8=True,
                                                    dense=dense))
        got = clip.dense_features(rgb, dense)
    finally:
        clip.dense_backend = clip.text_cache.encoder = None
    cos = (got * ref).sum(0)
    assert (got - ref).abs().max().item() > FEATURE_TOL  # it is another computation...
    assert cos.mean().item() > 0.95, cos.mean().item()   # ...close to fp32 (random weights: 0.998 onnxruntime,
    # 0.9999 OpenVINO: it runs the same dynamically quantized file with its own int8 kernels)


def test_bf16_autocast_on_cpu(frame):
    dense = DenseConfig(mode="clearclip", short_side=SHORT)
    ref = random_clip(seed=0).dense_features(frame.rgb, dense)
    bf = random_clip(seed=0, precision="bf16")
    assert bf.autocast_dtype == torch.bfloat16
    got = bf.dense_features(frame.rgb, dense)
    assert got.dtype == torch.float32 and (got - ref).abs().max().item() > FEATURE_TOL
    assert (got * ref).sum(0).min().item() > 0.95


def test_cli_export_onnx(tmp_path, capsys):
    from movseg_ros.cli import EXIT_BAD_INPUT, EXIT_OK, main

    model = ["--set", "segmenter.clip.model_name=movseg-tiny-vit", "--set", "segmenter.clip.pretrained=random",
             "--set", "segmenter.clip.device=cpu", "--set", f"segmenter.dense.short_side={SHORT}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        args = ["export-onnx", "--out", str(tmp_path), "--image-size", "240", "320", *model]
        assert main([*args, "--set", "segmenter.dense.mode=maskclip"]) == EXIT_OK
        info = ExportInfo.load(tmp_path)
        assert (info.image_size, info.dense["mode"], info.model_name) == ([240, 320], "maskclip", "movseg-tiny-vit")
        assert {"dense.onnx", "text.onnx", "export.json"} <= {p.name for p in tmp_path.iterdir()}
        bad = main(["export-onnx", "--out", str(tmp_path / "x"), *model, "--set", "segmenter.dense.scope=proposals"])
    assert bad == EXIT_BAD_INPUT
    assert "dense.scope 'proposals' cannot be exported" in capsys.readouterr().err


@pytest.mark.skipif(not HAS_OPENVINO, reason="openvino not importable")
def test_openvino_shares_the_newer_onetbb_that_the_numba_kernels_are_built_for():
    """One libtbb.so.12 in a process that loads OpenVINO and then runs the compiled kernels: the ``tbb``
    package's (2023.2, what numba's TBB layer is built for), not the older one OpenVINO bundles
    (``load_numba_tbb``)."""
    import subprocess

    script = """
import ctypes, numpy as np
from movseg_core.backends import import_runtime
import_runtime("openvino").Core().available_devices
from movseg_core.geometry import normals_from_depth
normals_from_depth(np.full((48, 64), 2.0, np.float32), np.array([[50, 0, 32], [0, 50, 24], [0, 0, 1.0]]))
paths = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libtbb.so" in line})
version = ctypes.CDLL(paths[0]).TBB_runtime_interface_version
print(len(paths), paths[0], version())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    n, path, interface = out.stdout.split()
    assert n == "1" and "openvino" not in path, out.stdout
    assert int(interface) >= 12200, out.stdout  # oneTBB 2023.2 or newer
