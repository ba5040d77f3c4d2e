"""The GPU stand-in of benchmarks (clip.simulated_ms) and the segmenter's overlap of geometry with the CLIP pass,
on a real NYUv2 RGB-D frame."""
from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
import torch

from movseg_core.clip import ClipConfig, DenseConfig, create_clip
from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir
from movseg_core.gpu_standin import SimulatedGpuClip
from movseg_core.segmenter import Segmenter, config_from_dict

from conftest import random_clip

QUERIES = ["wall", "floor", "chair", "table", "picture"]
GEOMETRY = ("normals", "proposals")


@pytest.fixture(scope="module")
def frame():
    f = NYUv2Folder(default_nyuv2_dir(), require_depth=True)[0]
    return f.rgb, f.depth, f.K


def standin(ms: float, **kw) -> SimulatedGpuClip:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return create_clip(ClipConfig(model_name="movseg-tiny-vit", device="cpu", simulated_ms=ms, **kw))


def segmenter(clip=None, **cfg) -> Segmenter:
    torch.manual_seed(0)
    tree = {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu"},
            "dense": {"short_side": 224}, **cfg}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = Segmenter(config_from_dict(tree), clip=clip) if clip is not None else Segmenter.from_config(tree)
    s.set_queries(QUERIES)
    return s


def test_standin_waits_its_time_without_using_the_cpu(frame):
    """A forward pass is a GIL-free wait of simulated_ms, as a GPU kernel looks from the host."""
    clip = standin(150.0)
    rgb = frame[0]
    clip.dense_features(rgb)  # warm-up
    c0, t0 = time.process_time(), time.perf_counter()
    clip.dense_features(rgb)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert 0.15 <= wall < 0.6, wall
    assert cpu < 0.05, f"the stand-in used {cpu * 1e3:.0f} ms of CPU for a 150 ms pass"
    c0, t0 = time.process_time(), time.perf_counter()
    clip.text_embeddings(["a query never seen", "another one"])
    assert time.perf_counter() - t0 >= 0.15 and time.process_time() - c0 < 0.05


@pytest.mark.parametrize("dense", [{}, {"short_side": 160, "window": 96}, {"refine": "pamr", "pamr_short_side": 64}])
def test_standin_features_have_the_real_models_shapes_and_are_deterministic(frame, dense):
    rgb = frame[0]
    real, fake = random_clip("movseg-tiny-vit"), standin(1.0)
    cfg = DenseConfig(**{"short_side": 224, "mode": "maskclip", **dense})
    f_real, f_fake = real.dense_features(rgb, cfg), fake.dense_features(rgb, cfg)
    assert f_fake.shape == f_real.shape and f_fake.dtype == torch.float32
    assert torch.allclose(f_fake.norm(dim=0), torch.ones(()), atol=1e-5)
    assert torch.equal(f_fake, standin(1.0).dense_features(rgb, cfg)), "not deterministic"
    assert f_fake.flatten(1).std(dim=1).max() > 0.01, "features do not depend on the image"
    t_real, t_fake = real.text_embeddings(QUERIES), fake.text_embeddings(QUERIES)
    assert t_fake.shape == t_real.shape and torch.equal(t_fake, standin(1.0).text_embeddings(QUERIES))
    crops = torch.randn(3, 3, real.image_size[0], real.image_size[1])
    assert fake.encode_images(crops).shape == real.encode_images(crops).shape


def test_standin_runs_the_whole_segmenter(frame):
    res = segmenter(standin(5.0), classify={"crop_weight": 0.2}).segment(*frame)
    assert res.labels.shape == frame[0].shape[:2] and res.timings_ms["dense"] >= 5.0
    assert len(np.unique(res.labels)) >= 2, "every pixel got the same label"


def overlapped_ms(res) -> float:
    """How long stages ran at the same time: the sum of the stages' own times beyond the frame's total."""
    return sum(v for k, v in res.timings_ms.items() if k != "total") - res.timings_ms["total"]


def test_geometry_runs_beside_the_clip_pass_with_the_same_result(frame):
    """overlap: normals + proposals on the helper thread while the (stand-in) CLIP pass waits; the labels are
    those of the sequential schedule."""
    clip = standin(200.0)
    on, off = segmenter(clip, overlap=True), segmenter(clip, overlap=False)
    a, b = on.segment(*frame), off.segment(*frame)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.segments, b.segments)
    assert np.array_equal(a.confidence, b.confidence)
    geometry = sum(a.timings_ms[k] for k in GEOMETRY)
    assert overlapped_ms(a) >= 0.5 * min(200.0, geometry), a.timings_ms
    assert overlapped_ms(b) <= 2.0, b.timings_ms
    helpers = {t for t in threading.enumerate() if t.name.startswith("movseg-geometry")}
    on.segment(*frame)
    assert {t for t in threading.enumerate() if t.name.startswith("movseg-geometry")} == helpers, \
        "a new helper thread per frame"


def test_proposal_scope_keeps_proposals_before_the_dense_pass(frame):
    """dense.scope proposals needs the frame's proposals in the dense pass: no overlap there, and the
    real model's features equal the sequential schedule's."""
    res = segmenter(standin(50.0), overlap=True, dense={"short_side": 224, "scope": "proposals"}).segment(*frame)
    assert overlapped_ms(res) <= 2.0, res.timings_ms
    tree = {"dense": {"short_side": 224, "scope": "proposals", "mode": "sclip"}}
    a = segmenter(random_clip("movseg-tiny-vit", seed=0), overlap=True, **tree).segment(*frame)
    b = segmenter(random_clip("movseg-tiny-vit", seed=0), overlap=False, **tree).segment(*frame)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.confidence, b.confidence)


def test_a_failing_stage_fails_the_frame_and_the_next_frame_works(frame, monkeypatch):
    """An error on the geometry thread reaches the caller (the node counts the frame as dropped); the
    helper thread serves the next frame."""
    import movseg_core.segmenter as segmenter_module

    s = segmenter(standin(1.0), overlap=True)
    real = segmenter_module.propose
    monkeypatch.setattr(segmenter_module, "propose", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        s.segment(*frame)
    monkeypatch.setattr(segmenter_module, "propose", real)
    assert s.segment(*frame).labels.shape == frame[0].shape[:2]


def test_start_and_finish_split_a_frame_with_the_vocabulary_taken_at_start(frame):
    """The node's pipeline runs finish(frame t) on its publisher thread while start(frame t+1) runs: a
    vocabulary switch between the two parts does not reach the frame, and the split equals segment()."""
    s = segmenter(standin(1.0))
    whole = s.segment(*frame)
    begun = s.start(*frame)
    s.set_queries(["floor", "wall"])
    res = s.finish(begun)
    assert res.names == tuple(QUERIES) and res.vocabulary_version == whole.vocabulary_version
    assert np.array_equal(res.labels, whole.labels) and np.array_equal(res.confidence, whole.confidence)
    assert s.segment(*frame).names == ("floor", "wall")


def test_a_dense_error_is_raised_before_a_geometry_error_and_close_stops_the_geometry_thread(frame, monkeypatch):
    """Both stages fail on one overlapped frame: the caller sees the dense pass's error (the geometry thread
    is waited for, its error not raised over it). close() ends the geometry thread; segment refuses after."""
    import movseg_core.segmenter as segmenter_mod

    s = segmenter(clip=standin(5.0))
    rgb, depth, K = frame

    def bad_dense(*a, **k):
        raise ValueError("dense failed")

    def bad_propose(*a, **k):
        time.sleep(0.05)  # finishes after the dense pass failed
        raise RuntimeError("geometry failed")

    monkeypatch.setattr(s.clip, "dense_features", bad_dense)
    monkeypatch.setattr(segmenter_mod, "propose", bad_propose)
    with pytest.raises(ValueError, match="dense failed"):
        s.segment(rgb, depth, K)
    s.close()
    assert not any(t.name.startswith("movseg-geometry") and t.is_alive() for t in threading.enumerate()
                   if t in getattr(s._geometry_pool, "_threads", ()))
    with pytest.raises(RuntimeError):
        s.segment(rgb, depth, K)


def test_normals_run_on_the_cpu_kernels_unless_the_device_is_cuda(frame):
    s = segmenter()
    assert s.normals_device().type == "cpu"
    n, v = s._normals(frame[1], frame[2], frame[1] > 0)
    assert isinstance(n, np.ndarray) and n.shape == frame[1].shape + (3,) and v.dtype == bool and v.any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_normals_on_cuda_in_the_geometry_threads_stream_match_the_cpu_kernels(frame):
    """On CUDA (normals_on_device, the default) the geometry thread computes normals on the GPU in its own
    stream while the CLIP pass runs; labels, segments and normals equal the CPU kernels' (normals within 1e-4,
    tests/test_geometry.py), so the segments are the same."""
    tree = {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cuda"},
            "dense": {"short_side": 224}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gpu = Segmenter.from_config(tree)
        cpu_normals = Segmenter.from_config({**tree, "normals_on_device": False})
    assert gpu.normals_device().type == "cuda" and cpu_normals.normals_device().type == "cpu"
    valid = frame[1] > 0
    (n_gpu, v_gpu), (n_cpu, v_cpu) = gpu._normals(frame[1], frame[2], valid), cpu_normals._normals(*frame[1:], valid)
    agree = v_gpu == v_cpu
    assert agree.mean() > 0.999
    both = v_gpu & v_cpu
    assert np.percentile(np.abs(n_gpu[both] - n_cpu[both]).max(1), 99.9) < 1e-4
    for s in (gpu, cpu_normals):
        s.set_queries(QUERIES)
    a = gpu.segment(*frame)
    assert a.timings_ms["normals"] > 0 and a.labels.shape == frame[1].shape


def test_finish_without_objects_skips_their_extraction(frame):
    s = segmenter()
    with_objects = s.finish(s.start(*frame))
    without = s.finish(s.start(*frame), want_objects=False)
    assert with_objects.objects is not None and "objects" in with_objects.timings_ms
    assert without.objects is None and "objects" not in without.timings_ms
    assert np.array_equal(with_objects.labels, without.labels)
