"""movseg_core.segmenter end to end with a tiny random CLIP on a real NYUv2 RGB-D frame."""
from __future__ import annotations

import dataclasses
import threading
import warnings

import cv2
import numpy as np
import pytest
import torch

import movseg_core.segmenter as segmenter_mod
from movseg_core.clip import ClipConfig, create_clip
from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir
from movseg_core.geometry import normals_from_depth, scale_intrinsics
from movseg_core.proposals import propose
from movseg_core.segmenter import (
    SegmentationResult,
    Segmenter,
    SegmenterConfig,
    config_from_dict,
    validate_queries,
)

QUERIES = ["wall", "floor", "chair", "table", "picture"]


def tiny_cfg(**sections) -> dict:
    cfg = {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu",
                    "templates": "single"},
           "dense": {"short_side": 96}}
    for key, value in sections.items():
        cfg.setdefault(key, {}).update(value) if isinstance(value, dict) else cfg.__setitem__(key, value)
    return cfg


def make(**sections) -> Segmenter:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Segmenter.from_config(tiny_cfg(**sections))


@pytest.fixture(scope="module")
def frame():
    f = NYUv2Folder(default_nyuv2_dir(), require_depth=True)[0]
    size = (160, 120)
    rgb = cv2.resize(f.rgb, size, interpolation=cv2.INTER_AREA)
    depth = cv2.resize(f.depth, size, interpolation=cv2.INTER_NEAREST)
    K = scale_intrinsics(f.K, f.rgb.shape[:2], (size[1], size[0]))
    return rgb, depth.astype(np.float32), K


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    s = make()
    s.set_queries(QUERIES)
    return s


def check_result(res: SegmentationResult, shape, n: int) -> None:
    assert res.labels.shape == shape and res.labels.dtype == np.uint16
    assert res.confidence.shape == shape and res.confidence.dtype == np.float32
    assert res.labels.max() <= n
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))
    assert len(res.names) == n and res.ids == tuple(range(1, n + 1))
    assert res.timings_ms["total"] >= max(v for k, v in res.timings_ms.items() if k != "total")


def test_config_from_dict_round_trip_and_unknown_keys():
    cfg = config_from_dict(tiny_cfg(classify={"threshold": 0.3}))
    assert isinstance(cfg, SegmenterConfig) and cfg.classify.threshold == 0.3
    assert config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="clip.nope"):
        config_from_dict({"clip": {"nope": 1}})
    with pytest.raises(ValueError, match="bogus"):
        config_from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="dense mode"):
        config_from_dict({"dense": {"mode": "magic"}})


def test_rgbd_and_rgb_only_paths_run(seg, frame):
    rgb, depth, K = frame
    rgbd = seg.segment(rgb, depth, K)
    check_result(rgbd, rgb.shape[:2], len(QUERIES))
    for stage in ("normals", "proposals", "dense", "pool", "classify", "paint"):
        assert stage in rgbd.timings_ms
    only_rgb = seg.segment(rgb)
    check_result(only_rgb, rgb.shape[:2], len(QUERIES))
    assert "normals" not in only_rgb.timings_ms
    assert rgbd.vocabulary_version == only_rgb.vocabulary_version == seg.vocabulary.version
    # every segment carries one label
    for s in np.unique(rgbd.segments):
        assert len(np.unique(rgbd.labels[rgbd.segments == s])) == 1


def test_precomputed_normals_go_to_the_proposals(seg, frame):
    rgb, depth, K = frame
    normals, nvalid = normals_from_depth(depth, K, None, seg.cfg.normals)
    b = seg.segment(rgb, depth, K, normals=normals)
    assert "normals" not in b.timings_ms
    expected = propose(rgb, depth, normals, (depth > 0) & nvalid, seg.cfg.proposals)
    np.testing.assert_array_equal(b.segments, expected)


def test_full_resolution_normals_only_where_a_stage_needs_them(seg, frame, monkeypatch):
    """The graph proposals fit normals on their working grid; full-resolution ones are computed for the
    objects' convexity test only, on frames that extract objects, with the objects' window radii."""
    rgb, depth, K = frame
    given = []
    real_extract = segmenter_mod.extract_objects
    monkeypatch.setattr(segmenter_mod, "extract_objects", lambda *a, **k: given.append(a[6]) or real_extract(*a, **k))
    on_grid = propose(rgb, depth, None, depth > 0, seg.cfg.proposals, K=K)
    assert not np.array_equal(on_grid, propose(rgb, depth, None, depth > 0, seg.cfg.proposals))  # normals count
    labels_only = seg.finish(seg.start(rgb, depth, K, want_objects=False), want_objects=False)
    assert "normals" not in labels_only.timings_ms and labels_only.objects is None
    np.testing.assert_array_equal(labels_only.segments, on_grid)
    normals, _ = normals_from_depth(depth, K, depth > 0,
                                    dataclasses.replace(seg.cfg.normals, radii=seg.cfg.objects.normal_radii))
    assert seg.cfg.objects.normal_radii != seg.cfg.normals.radii
    assert not np.array_equal(normals, normals_from_depth(depth, K, depth > 0, seg.cfg.normals)[0])
    work = seg.start(rgb, depth, K)  # objects wanted (the default): their normals beside the CLIP pass
    assert "normals" in work.times
    np.testing.assert_array_equal(work.normals, normals)
    late = seg.start(rgb, depth, K, want_objects=False)  # objects wanted only after start: finish makes them
    for res in (seg.finish(work), seg.finish(late)):
        assert "normals" in res.timings_ms and res.objects is not None
        np.testing.assert_array_equal(res.segments, on_grid)
    assert len(given) == 2  # only the frames that extracted objects
    for g in given:
        np.testing.assert_array_equal(g, normals)  # the convexity test's normals: full resolution


def test_depth_without_valid_pixels_degrades_to_rgb(seg, frame):
    rgb, depth, K = frame
    res = seg.segment(rgb, np.full_like(depth, np.nan), K)
    assert np.array_equal(res.labels, seg.segment(rgb).labels)


def test_depth_registration_evidence_is_reported(seg, frame):
    """The proposals' depth-to-colour registration evidence comes with the result (``diagnostics``):
    the frame's depth is trusted; the same depth warped against colour (another field of view) is
    not, and that frame is segmented exactly as without depth; without depth there is none."""
    from movseg_core.data.synthetic import misregistered_depth

    rgb, depth, K = frame
    diag = seg.segment(rgb, depth, K).diagnostics
    assert diag["depth_trust"] == 1.0 and diag["registration"] >= seg.cfg.proposals.registration_full
    warped = seg.segment(rgb, misregistered_depth(depth, 0.87, (0.08, 0.04)), K)
    assert warped.diagnostics["depth_trust"] == 0.0 and warped.diagnostics["depth_steps"] > 0
    rgb_only = seg.segment(rgb)
    assert rgb_only.diagnostics == {}
    assert np.array_equal(warped.segments, rgb_only.segments)


def test_label_ids_follow_query_order(frame):
    rgb, depth, K = frame
    s = make()
    s.set_queries(QUERIES)
    a = s.segment(rgb, depth, K)
    order = [3, 0, 4, 1, 2]
    s.set_queries([QUERIES[i] for i in order])
    b = s.segment(rgb, depth, K)
    assert b.vocabulary_version == a.vocabulary_version + 1
    names_a = np.array(("unknown",) + a.names)[a.labels]
    names_b = np.array(("unknown",) + b.names)[b.labels]
    assert np.array_equal(names_a, names_b)  # same decision per pixel, ids permuted with the list
    assert not np.array_equal(a.labels, b.labels)


def test_text_cache_hits(frame):
    s = make()
    cache = s.clip.text_cache
    s.set_queries(["chair", "table"])
    misses = cache.misses
    s.set_queries(["table", "lamp", "chair"])
    assert cache.misses == misses + 1
    s.set_queries(["lamp"])
    assert cache.misses == misses + 1


def test_unknown_rejection(frame):
    rgb, depth, K = frame
    s = make(classify={"threshold": 0.0})
    s.set_queries(QUERIES)
    base = s.segment(rgb, depth, K)
    assert base.labels.min() >= 1  # nothing rejected without a threshold or background prompts
    thr = float(np.median(base.confidence))
    t = make(classify={"threshold": thr})
    t.set_queries(QUERIES)
    res = t.segment(rgb, depth, K)
    assert np.array_equal(res.labels == 0, base.confidence < thr)
    assert np.array_equal(res.labels[res.labels > 0], base.labels[res.labels > 0])
    # background prompts can only turn labels into 0 and lower confidence
    b = make(classify={"background_prompts": ["background", "stuff", "clutter", "wood", "metal"]})
    b.set_queries(QUERIES)
    res_b = b.segment(rgb, depth, K)
    kept = res_b.labels > 0
    assert np.array_equal(res_b.labels[kept], base.labels[kept])
    assert np.all(res_b.confidence <= base.confidence + 1e-6)


def test_checkpoint_loads_through_real_loader(tmp_path, seg, frame):
    rgb, depth, K = frame
    path = tmp_path / "tiny_clip.pt"
    torch.save(seg.clip.model.state_dict(), path)
    cfg = tiny_cfg()
    cfg["clip"]["pretrained"] = str(path)
    loaded = Segmenter.from_config(cfg)
    loaded.set_queries(QUERIES)
    assert np.array_equal(loaded.segment(rgb, depth, K).labels, seg.segment(rgb, depth, K).labels)


@pytest.mark.parametrize("modality", ["normals", "depth", "hha"])
def test_clip_x_branch(frame, modality):
    rgb, depth, K = frame
    s = make(classify={"x_fusion_weight": 0.5, "x_modality": modality})
    s.set_queries(QUERIES)
    res = s.segment(rgb, depth, K)
    check_result(res, rgb.shape[:2], len(QUERIES))
    assert "clip_x" in res.timings_ms
    assert "clip_x" not in s.segment(rgb).timings_ms  # no depth -> RGB only
    # the full-resolution normals a CLIP-X image needs do not change the proposals
    np.testing.assert_array_equal(res.segments, propose(rgb, depth, None, depth > 0, s.cfg.proposals, K=K))
    # nor do the objects' normals change what the CLIP-X image sees: no output depends on who listens
    quiet = s.finish(s.start(rgb, depth, K, want_objects=False), want_objects=False)
    heard = s.finish(s.start(rgb, depth, K, want_objects=True), want_objects=False)
    np.testing.assert_array_equal(quiet.confidence, heard.confidence)


def test_clip_x_adapted_weights_and_crop_member(tmp_path, frame):
    rgb, depth, K = frame
    torch.manual_seed(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        other = create_clip(ClipConfig(model_name="movseg-tiny-vit", pretrained="random", device="cpu"))
    path = tmp_path / "clip_x_visual.pt"
    torch.save(other.model.visual.state_dict(), path)
    s = make(classify={"x_fusion_weight": 0.5, "x_checkpoint": str(path), "crop_weight": 0.5, "crop_size": 64})
    assert s.x_visual is not None and torch.equal(s.x_visual.proj, other.model.visual.proj)
    s.set_queries(QUERIES)
    res = s.segment(rgb, depth, K)
    check_result(res, rgb.shape[:2], len(QUERIES))
    assert "crops" in res.timings_ms and "clip_x" in res.timings_ms


def test_bad_queries_keep_old_vocabulary(seg):
    before = seg.vocabulary
    long_tokens = " ".join("abcdefghijklmnopqrstuvwxyz"[i % 26] for i in range(99))  # 197 chars, ~100 tokens
    bad_lists = [[], ["chair", "Chair"], ["  "], ["x" * 201], [b"\xff\xfe"], ["\udcff"], "chair", [3],
                 ["a\x00b"], [long_tokens], ["q"] * 0 + [f"q{i}" for i in range(513)]]
    for bad in bad_lists:
        with pytest.raises(ValueError):
            seg.set_queries(bad)
        assert seg.vocabulary is before
    assert validate_queries([" chair ", b"table"], 10, 20) == ["chair", "table"]


def test_bad_images(seg, frame):
    rgb, depth, K = frame
    bad = [
        dict(rgb=rgb.astype(np.float32)),
        dict(rgb=rgb[..., 0]),
        dict(rgb=rgb[..., :2]),
        dict(rgb=rgb.tolist()),
        dict(rgb=rgb, depth=depth[:-1]),
        dict(rgb=rgb, depth=(depth * 1000).astype(np.uint16)),
        dict(rgb=rgb, depth=depth, K=np.eye(2)),
        dict(rgb=rgb, depth=depth, K=np.full((3, 3), np.nan)),
        dict(rgb=rgb, depth=depth, K=K, normals=np.zeros((5, 5, 3), np.float32)),
    ]
    for kwargs in bad:
        with pytest.raises(ValueError):
            seg.segment(**kwargs)
    with pytest.raises(RuntimeError, match="set_queries"):
        make().segment(rgb)


def test_segment_uses_vocabulary_snapshot_under_concurrent_set_queries(frame):
    rgb, _, _ = frame
    s = make()
    lists = [QUERIES, ["cup", "door"], ["bed", "sofa", "lamp", "sink"]]
    names_by_version = {s.set_queries(lists[0]).version: tuple(lists[0])}
    results: list[SegmentationResult] = []
    errors: list[BaseException] = []

    def worker():
        try:
            for _ in range(6):
                results.append(s.segment(rgb))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    th = threading.Thread(target=worker)
    th.start()
    i = 1
    while th.is_alive():
        v = s.set_queries(lists[i % 3])
        names_by_version[v.version] = v.names
        i += 1
    th.join()
    assert not errors and len(results) == 6
    for r in results:
        assert r.names == names_by_version[r.vocabulary_version]
        assert r.labels.max() <= len(r.names)


def test_public_api_is_exported_lazily():
    import subprocess
    import sys

    code = ("import sys, movseg_core; assert 'torch' not in sys.modules, 'import movseg_core pulled in torch'; "
            "from movseg_core import Segmenter, SegmenterConfig, SegmentationResult; "
            "import movseg_core.segmenter as m; "
            "assert (Segmenter, SegmenterConfig, SegmentationResult) == "
            "(m.Segmenter, m.SegmenterConfig, m.SegmentationResult); "
            "assert set(movseg_core.__all__) >= {'Segmenter', 'SegmenterConfig', 'SegmentationResult'}; "
            "assert 'rclpy' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    import movseg_core
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        movseg_core.Nope  # noqa: B018


def test_config_keys_named_in_the_docs_exist():
    import dataclasses
    import re

    from conftest import REPO

    cfg = SegmenterConfig()
    named = set(re.findall(r"`(?:segmenter\.)?(clip|dense|proposals|classify|normals)\.([a-z_]+)`",
                           (REPO / "docs" / "segmenter.md").read_text() + (REPO / "README.md").read_text()))
    assert len(named) > 20
    import importlib.util

    def module_name(s: str, k: str) -> bool:  # `clip.py`, `dense.onnx` (files), `clip.create_clip` (an attribute)
        spec = importlib.util.find_spec(f"movseg_core.{s}")
        return k in ("py", "onnx") or (spec is not None and hasattr(importlib.import_module(f"movseg_core.{s}"), k))

    missing = [f"{s}.{k}" for s, k in sorted(named)
               if k not in {f.name for f in dataclasses.fields(getattr(cfg, s))} and not module_name(s, k)]
    assert not missing, missing


@pytest.mark.parametrize("mode", ["clearclip", "scclip", "resclip_naclip"])
def test_proposal_scope_uses_the_frames_own_proposals_once(frame, mode, monkeypatch):
    """dense.scope=proposals: the dense pass gets the proposals the frame is classified with (computed
    once), and its features equal dense_features called with those proposals directly."""

    rgb, depth, K = frame
    s = make(dense={"mode": mode, "scope": "proposals", "refine": "pamr", "pamr_short_side": 60})
    s.set_queries(QUERIES)
    calls, seen = [], {}
    real_propose, real_dense = segmenter_mod.propose, s.clip.dense_features
    monkeypatch.setattr(segmenter_mod, "propose", lambda *a, **k: calls.append(1) or real_propose(*a, **k))

    def spy(img, cfg=None, visual=None, segments=None, text=None):
        seen["segments"], seen["text"] = segments, text
        return real_dense(img, cfg, visual, segments, text)

    monkeypatch.setattr(s.clip, "dense_features", spy)
    res = s.segment(rgb, depth, K)
    check_result(res, rgb.shape[:2], len(QUERIES))
    assert len(calls) == 1 and seen["segments"] is res.segments
    assert torch.equal(seen["text"], s.vocabulary.embeddings)
    unscoped = real_dense(rgb, dataclasses.replace(s.cfg.dense, scope="none"), text=s.vocabulary.embeddings)
    assert not torch.equal(real_dense(rgb, s.cfg.dense, segments=res.segments, text=s.vocabulary.embeddings), unscoped)


def test_refined_proposal_boundaries_run_through_the_segmenter(frame):
    """``proposals.refine_boundaries`` on a working grid coarser than the frame: the segmenter labels on the
    refined segments (dense ids, one label each, boundaries off the grid's 2-px blocks) with and without
    depth."""
    rgb, depth, K = frame
    plain = make(proposals={"work_width": 80})
    refined = make(proposals={"work_width": 80, "refine_boundaries": True})
    for s in (plain, refined):
        s.set_queries(QUERIES)
    for d in (depth, None):
        res = refined.segment(rgb, d, K if d is not None else None)
        check_result(res, rgb.shape[:2], len(QUERIES))
        ids = np.unique(res.segments)
        assert np.array_equal(ids, np.arange(len(ids)))
        for s in ids:
            assert len(np.unique(res.labels[res.segments == s])) == 1
        blocky = plain.segment(rgb, d, K if d is not None else None).segments
        assert np.array_equal(blocky, blocky[::2, ::2].repeat(2, 0).repeat(2, 1))  # 2x2 blocks
        assert not np.array_equal(res.segments, res.segments[::2, ::2].repeat(2, 0).repeat(2, 1))
