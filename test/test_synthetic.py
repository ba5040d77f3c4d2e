"""Synthetic RGB-D scenes: determinism, label/instance consistency, geometry consistent with K."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from movseg_core.data.synthetic import (
    CLASS_IDS,
    CLASS_NAMES,
    SHAPES,
    SceneConfig,
    SyntheticScenes,
    generate,
    render_scene,
    sample_scene,
)
from movseg_core.geometry import normals_from_depth

CFG = SceneConfig(height=96, width=128)


def _world_points(s):
    """Back-project depth with K and undo the camera pose -> HxWx3 world points (y up, floor y=0)."""
    h, w = s.depth.shape
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    K = s.K
    pc = np.stack([(u - K[0, 2]) / K[0, 0] * s.depth, (v - K[1, 2]) / K[1, 1] * s.depth, s.depth], -1)
    cp, sp = np.cos(s.spec.pitch), np.sin(s.spec.pitch)
    R = np.array([[1.0, 0.0, 0.0], [0.0, -cp, -sp], [0.0, -sp, cp]])
    return pc @ R.T + np.array([0.0, s.spec.camera_height, 0.0])


def test_deterministic_from_seed_and_seeds_differ():
    a, b, c = generate(3, CFG), generate(3, CFG), generate(4, CFG)
    for k in ("rgb", "depth", "label", "instance", "normals"):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.rgb, c.rgb)
    assert a.rgb.shape == (96, 128, 3) and a.rgb.dtype == np.uint8
    assert a.depth.dtype == np.float32 and a.label.dtype == np.uint16 and a.instance.dtype == np.int32
    assert a.K.shape == (3, 3)


def test_any_seed_renders_deterministically():
    """Seeds beyond 32 bits (e.g. hashed run ids) render too, and the same seed gives the same scene."""
    big = 2**40 + 12345
    a, b = generate(big, CFG), generate(big, CFG)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.label, b.label)
    assert not np.array_equal(a.rgb, generate(big + 1, CFG).rgb)


def test_labels_instances_and_depth_are_consistent():
    for seed in range(4):
        s = generate(seed, CFG)
        assert np.isfinite(s.depth).all() and (s.depth > 0).all()
        assert set(np.unique(s.label)) <= set(range(1, len(CLASS_NAMES) + 1))
        assert (s.label[s.instance == 1] == CLASS_IDS["floor"]).all()
        for i, o in enumerate(s.spec.objects):
            m = s.instance == s.first_object_id + i
            assert (s.label[m] == CLASS_IDS[o.shape]).all()
        assert any((s.instance == s.first_object_id + i).sum() > 20 for i in range(len(s.spec.objects)))


def test_geometry_matches_the_intrinsics_and_the_scene():
    s = generate(5, CFG)
    P = _world_points(s)
    floor = s.label == CLASS_IDS["floor"]
    assert np.abs(P[floor][:, 1]).max() < 1e-3  # floor pixels back-project onto y = 0
    for i, o in enumerate(s.spec.objects):
        m = s.instance == s.first_object_id + i
        if o.shape == "sphere" and m.sum() > 10:
            r = o.size * 0.85
            c = np.array([o.position[0], r, o.position[1]])
            assert np.abs(np.linalg.norm(P[m] - c, axis=1) - r).max() < 2e-3
        assert P[m][:, 1].min() > -1e-3  # objects stand on the floor
    # renderer normals face the camera and agree with normals estimated from depth on the floor
    h, w = s.depth.shape
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    rays = np.dstack([(u - s.K[0, 2]) / s.K[0, 0], (v - s.K[1, 2]) / s.K[1, 1], np.ones((h, w))])
    assert ((s.normals * rays).sum(-1) <= 1e-6).all()
    assert np.allclose(np.linalg.norm(s.normals, axis=-1), 1.0, atol=1e-4)
    n_est, valid = normals_from_depth(s.depth, s.K)
    ok = floor & valid
    cos = (n_est[ok] * s.normals[ok]).sum(-1)
    assert np.median(cos) > 0.99


def test_object_filter_holds_out_pairs_and_config_validation():
    no_green_cone = lambda shape, colour, material: not (shape == "cone" and colour == "green")  # noqa: E731
    cfg = SceneConfig(height=32, width=48, shapes=("cone",), colours=("green", "red"), n_objects=(3, 3))
    for seed in range(5):
        spec = sample_scene(seed, cfg, object_filter=no_green_cone)
        assert all(o.colour == "red" for o in spec.objects)
    spec = sample_scene(0, cfg)
    assert all(o.shape == "cone" for o in spec.objects)
    assert render_scene(spec, cfg).rgb.shape == (32, 48, 3)
    with pytest.raises(ValueError, match="unknown shape"):
        SceneConfig(shapes=("pyramid",))
    with pytest.raises(ValueError, match="unknown colour"):
        SceneConfig(colours=("mauve",))
    with pytest.raises(ValueError):
        sample_scene(0, cfg, object_filter=lambda *a: False)


def test_dataset_wrapper_indexes_seeds():
    ds = SyntheticScenes(3, base_seed=10, cfg=SceneConfig(height=32, width=48))
    assert len(ds) == 3 and np.array_equal(ds[1].rgb, generate(11, ds.cfg).rgb)
    assert ds.class_names[2:] == SHAPES
    with pytest.raises(IndexError):
        ds[3]


def test_clones_add_look_alikes_without_changing_other_scenes_and_object_boxes_hold_the_solid():
    from movseg_core.data.synthetic import object_boxes

    cfg = SceneConfig(height=96, width=128)
    for seed in (3, 11):
        a = sample_scene(seed, cfg)
        b = sample_scene(seed, replace(cfg, clones=3))
        assert b.objects[:len(a.objects)] == a.objects  # the same draws, copies appended
        for o in b.objects[len(a.objects):]:
            assert any((o.shape, o.colour, o.material, o.size) == (p.shape, p.colour, p.material, p.size)
                       for p in a.objects)
    s = render_scene(sample_scene(3, cfg), cfg)
    np.testing.assert_array_equal(s.rgb, render_scene(sample_scene(3, replace(cfg, clones=0)), cfg).rgb)
    # every visible pixel of an object back-projects inside its ground-truth box (grid tolerance)
    from movseg_core.geometry import backproject

    pts = backproject(s.depth, s.K)
    for box in object_boxes(s.spec):
        m = s.instance == box.instance_id
        if m.sum() < 20:
            continue
        p = pts[m]
        tol = 0.03
        assert (p >= box.box_min - tol).all() and (p <= box.box_max + tol).all()
        assert np.all(box.box_max - box.box_min > 0.1)
