"""Instances, 2D boxes and 3D boxes from a labelled segmentation (movseg_core.objects, issue 15)."""
from __future__ import annotations

import numpy as np
import pytest

from movseg_core.geometry import backproject
from movseg_core.objects import MAX_INSTANCES, ObjectsConfig, boxes_3d, extract_objects, quat_to_matrix

NAMES = ("mug", "wall", "table")  # class ids 1, 2, 3; "wall" is stuff by default
K = np.array([[100.0, 0.0, 31.5], [0.0, 100.0, 23.5], [0.0, 0.0, 1.0]])


def _frame(h: int = 48, w: int = 64):
    return np.zeros((h, w), np.int32), np.full((h, w), 3.0, np.float32)


def _mug_frame(x1: int, mug_depth: float):
    """:func:`_frame` with segment 1 (the mug) at rows 10:30, columns 10:x1, ``mug_depth`` metres away."""
    seg, depth = _frame()
    seg[10:30, 10:x1] = 1
    depth[10:30, 10:x1] = mug_depth
    return seg, depth


def _mug_and_wall(seg, depth, cfg: ObjectsConfig | None = None):
    """Objects of ``seg`` with segment 0 a wall and segment 1 a mug (confidence 1): (result, the mug)."""
    objs = extract_objects(seg, np.array([2, 1]), np.ones(2), NAMES, depth, K, cfg=cfg or ObjectsConfig())
    return objs, next(o for o in objs.instances if o.name == "mug")


def test_depth_jump_separates_same_class_neighbours_rgb_only_joins_them():
    seg, depth = _frame()
    seg[10:30, 10:30] = 1  # mug A at 1.0 m
    seg[10:30, 30:50] = 2  # mug B, touching A in the image, at 1.5 m
    depth[10:30, 10:30] = 1.0
    depth[10:30, 30:50] = 1.5
    labels, conf = np.array([2, 1, 1]), np.array([0.9, 0.8, 0.6])
    rgbd = extract_objects(seg, labels, conf, NAMES, depth, K)
    mugs = [o for o in rgbd.instances if o.name == "mug"]
    assert len(mugs) == 2
    assert sorted(o.box for o in mugs) == [(10, 10, 29, 29), (30, 10, 49, 29)]
    rgb = extract_objects(seg, labels, conf, NAMES)  # no depth: image contact alone joins
    mugs = [o for o in rgb.instances if o.name == "mug"]
    assert len(mugs) == 1 and mugs[0].pixels == 800 and mugs[0].box == (10, 10, 49, 29)
    # score: pixel-weighted mean of the segments' confidences (equal areas here)
    assert mugs[0].score == pytest.approx((0.8 + 0.6) / 2)
    assert not mugs[0].has_3d and mugs[0].centroid is None


def test_one_segment_spanning_a_depth_step_splits_and_touching_segments_at_one_depth_join():
    seg, depth = _frame()
    seg[5:25, 5:45] = 1  # one segment over two objects at different depths
    depth[5:25, 5:25] = 1.0
    depth[5:25, 25:45] = 2.0
    seg[30:45, 5:20] = 2  # two segments of one object at one depth: join
    seg[30:45, 20:40] = 3
    depth[30:45, 5:40] = 1.2
    objs = extract_objects(seg, np.array([2, 1, 1, 1]), np.ones(4), NAMES, depth, K)
    boxes = sorted(o.box for o in objs.instances if o.name == "mug")
    assert boxes == [(5, 5, 24, 24), (5, 30, 39, 44), (25, 5, 44, 24)]
    # a segment split by the step in its middle also splits without any depth elsewhere
    assert all(o.has_3d for o in objs.instances)


def test_stuff_is_one_region_per_class_and_ids_are_ordered_by_class_then_size():
    seg, depth = _frame()
    seg[:, :] = 0  # wall everywhere ...
    seg[0:5, 0:5] = 1  # ... and a second wall segment
    seg[20:30, 20:30] = 2  # small mug
    seg[35:47, 2:30] = 3  # big mug
    seg[35:47, 40:60] = 4  # table
    objs = extract_objects(seg, np.array([2, 2, 1, 1, 3]), np.full(5, 0.5), NAMES, depth, K)
    got = [(o.id, o.name, o.pixels) for o in objs.instances]
    assert got == [(1, "mug", 12 * 28), (2, "mug", 100), (3, "wall", 48 * 64 - 100 - 336 - 240), (4, "table", 240)]
    assert objs.instances[2].is_stuff and not objs.instances[0].is_stuff
    # the instance map agrees with every record
    for o in objs.instances:
        m = objs.instance_map == o.id
        ys, xs = np.nonzero(m)
        assert m.sum() == o.pixels and (xs.min(), ys.min(), xs.max(), ys.max()) == o.box
    assert objs.instance_map.dtype == np.uint16


def test_disconnected_stuff_is_still_one_instance_and_all_stuff_queries_give_only_stuff():
    seg, depth = _frame()
    seg[:, 32:] = 1
    seg[:, :10] = 2  # wall on both sides of the floor, not touching
    objs = extract_objects(seg, np.array([2, 1, 2]), np.ones(3), ("floor", "wall"), depth, K)
    assert [(o.name, o.is_stuff) for o in objs.instances] == [("floor", True), ("wall", True)]
    assert objs.instances[1].pixels == 48 * 10 + 48 * 22


def test_concave_valley_separates_two_touching_objects_convex_ridge_keeps_one():
    """Two faces meeting at a depth-consistent crease: a valley (V seen from the camera: two objects
    leaning together) splits with convexity on; a ridge (one object's two faces) stays one."""
    h, w = 48, 64
    u = np.arange(w, dtype=np.float64)
    x = (u - K[0, 2]) / K[0, 0]
    seg = np.zeros((h, w), np.int32)
    seg[:, 32:] = 1
    for shape, expect in (("valley", 2), ("ridge", 1)):
        # surface Z = 2 + s |X|: s > 0 nearest at the crease (ridge), s < 0 farthest (valley).
        s = 0.5 if shape == "ridge" else -0.5
        # on the ray X = x Z:  Z = 2 / (1 - s |x|)
        z = (2.0 / (1.0 - s * np.abs(x)))[None].repeat(h, 0).astype(np.float32)
        nx = np.sign(x) * s  # gradient of Z - s|X| is (-s sign(X), 0, 1); towards the camera: (s sign(X), 0, -1)
        n = np.stack(np.broadcast_arrays(nx[None], np.zeros((h, w)), -np.ones((h, w))), -1)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        objs = extract_objects(seg, np.array([1, 1]), np.ones(2), NAMES, z, K, n.astype(np.float32),
                               ObjectsConfig(depth_jump=0.2))
        assert len(objs.instances) == expect, shape
        off = extract_objects(seg, np.array([1, 1]), np.ones(2), NAMES, z, K, n.astype(np.float32),
                              ObjectsConfig(depth_jump=0.2, convexity=False))
        assert len(off.instances) == 1


def test_3d_boxes_match_backproject_and_percentiles_reject_flying_pixels():
    seg, depth = _mug_frame(40, 2.0)
    depth[10, 20] = 9.0  # one flying pixel at the mask edge
    objs, mug = _mug_and_wall(seg, depth, ObjectsConfig(complete_depth=False))
    pts = backproject(depth, K)[10:30, 10:40].reshape(-1, 3)
    ref = boxes_3d(pts, (2.0, 98.0))
    for k in ("box_min", "box_max", "centroid", "obb_center", "obb_size", "obb_quat"):
        np.testing.assert_allclose(getattr(mug, k), ref[k], atol=2e-3, err_msg=k)  # backproject: float32
    assert mug.box_max[2] == pytest.approx(2.0)  # the 9 m pixel does not stretch the box
    # the plane: X from (10-31.5)/100*2 = -0.43 to (39-31.5)/100*2 = 0.15 (2% trimmed), Z flat
    assert mug.centroid[2] == pytest.approx(2.0)
    assert mug.box_min[0] == pytest.approx(-0.43, abs=0.01) and mug.box_max[0] == pytest.approx(0.15, abs=0.01)
    np.testing.assert_allclose(np.abs(quat_to_matrix(mug.obb_quat)), np.eye(3), atol=1e-6)  # axes x, y, z
    # complete_depth (default): the far face moves back by the smaller of the x / y extents, for
    # things only; the wall (stuff) keeps the box of its visible points
    done, m2 = _mug_and_wall(seg, depth)
    ext = mug.box_max - mug.box_min
    assert m2.box_max[2] == pytest.approx(2.0 + min(ext[0], ext[1]))
    assert m2.centroid[2] == pytest.approx(2.0 + min(ext[0], ext[1]) / 2)
    np.testing.assert_allclose(m2.box_min, mug.box_min)
    wall = [next(o for o in r.instances if o.name == "wall") for r in (objs, done)]
    np.testing.assert_allclose(wall[0].box_max, wall[1].box_max)
    assert mug.obb_size[2] == pytest.approx(0.0, abs=1e-6)  # flat: the minor axis has no extent


def test_oriented_box_of_a_rotated_cuboid():
    rng = np.random.default_rng(0)
    local = rng.uniform(-0.5, 0.5, (40000, 3)) * np.array([0.8, 0.4, 0.1])
    q = np.array([0.2, -0.3, 0.1, 0.9])
    q /= np.linalg.norm(q)
    R = quat_to_matrix(q)
    pts = local @ R.T + np.array([0.3, -0.2, 2.5])
    b = boxes_3d(pts, (0.0, 100.0))
    np.testing.assert_allclose(b["obb_size"], [0.8, 0.4, 0.1], atol=0.015)
    np.testing.assert_allclose(b["obb_center"], [0.3, -0.2, 2.5], atol=0.01)
    Rb = quat_to_matrix(b["obb_quat"])
    np.testing.assert_allclose(Rb @ Rb.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(Rb) == pytest.approx(1.0)
    np.testing.assert_allclose(np.abs(Rb.T @ R), np.eye(3), atol=0.02)  # same axes up to sign


def test_no_valid_depth_means_no_3d_box_and_is_counted():
    seg, depth = _mug_frame(30, 0.0)
    depth[12, 12] = np.nan
    objs, mug = _mug_and_wall(seg, depth)
    assert not mug.has_3d and mug.centroid is None and mug.obb_quat is None and mug.valid_depth == 0
    assert objs.counts["no_3d"] == 1


def test_one_instance_covering_the_whole_image():
    seg, depth = _frame()
    objs = extract_objects(seg, np.array([1]), np.array([0.7]), NAMES, depth, K)
    assert len(objs.instances) == 1
    o = objs.instances[0]
    assert o.box == (0, 0, 63, 47) and o.pixels == 48 * 64 and o.has_3d and o.score == pytest.approx(0.7)
    assert (objs.instance_map == 1).all()


def test_unknown_segments_are_not_instances():
    seg, depth = _frame()
    seg[:, 32:] = 1
    objs = extract_objects(seg, np.array([0, 1]), np.ones(2), NAMES, depth, K)
    assert [o.name for o in objs.instances] == ["mug"]
    assert (objs.instance_map[:, :32] == 0).all()


def test_thousands_of_tiny_segments_are_dropped_and_counted():
    h, w = 240, 320
    seg = (np.arange(h)[:, None] // 2 * (w // 2) + np.arange(w)[None] // 2).astype(np.int32)  # 2x2 px segments
    n = int(seg.max()) + 1
    labels = np.where(np.arange(n) % 2 == 0, 1, 3)  # alternating mug / table: neighbours differ in class
    depth = (1.0 + (np.arange(h)[:, None] // 2 % 2) * 0.5 + np.zeros((1, w))).astype(np.float32)
    objs = extract_objects(seg, labels, np.ones(n), NAMES, depth, K)
    assert objs.counts["small"] > 1000 and objs.counts["small_pixels"] == objs.counts["small"] * 4
    assert (objs.instance_map == 0).sum() == objs.counts["small_pixels"]


def test_more_groups_than_an_instance_map_holds_keeps_the_largest():
    h, w = 260, 260
    seg = ((np.arange(h)[:, None] + np.arange(w)[None]) % 2).astype(np.int32)  # checkerboard of 2 segments
    objs = extract_objects(seg, np.array([1, 3]), np.ones(2), NAMES, None, None, cfg=ObjectsConfig(min_pixels=1))
    assert len(objs.instances) == MAX_INSTANCES
    assert objs.counts["over_limit"] == h * w - MAX_INSTANCES
    assert int(objs.instance_map.max()) == MAX_INSTANCES


def test_bad_input_is_refused_with_a_clear_error():
    seg, depth = _frame()
    seg[0, 0] = 2
    with pytest.raises(ValueError, match="one label and one confidence per segment"):
        extract_objects(seg, np.array([1, 1]), np.ones(2), NAMES)
    with pytest.raises(ValueError, match="outside 0..3"):
        extract_objects(seg, np.array([1, 1, 7]), np.ones(3), NAMES)
    with pytest.raises(ValueError, match="depth must be HxW"):
        extract_objects(seg, np.array([1, 1, 1]), np.ones(3), NAMES, depth[:10], K)
    with pytest.raises(ValueError, match="box_percentiles"):
        ObjectsConfig(box_percentiles=(50, 10))
    with pytest.raises(ValueError, match="stuff_queries"):
        ObjectsConfig(stuff_queries="wall")


# ---------------------------------------------------------------------- through the segmenter


def test_segmenter_returns_objects_that_agree_with_its_labels_and_find_the_cube_in_3d():
    """The trained synthetic CLIP labels a rendered scene; the cube object's centroid lies within a
    few cm of the renderer's truth, and the instance map agrees with the label image pixel for pixel."""
    from movseg_core.data.synthetic import CLASS_NAMES, object_boxes
    from movseg_core.eval.synthetic import scene_with, synth_segmenter_config
    from movseg_core.segmenter import Segmenter

    from conftest import REPO

    s = scene_with("cube", min_pixels=600)
    seg = Segmenter.from_config(synth_segmenter_config(str(REPO / "test" / "fixtures" / "synth_clip.pt")))
    seg.set_queries(list(CLASS_NAMES))
    res = seg.segment(s.rgb, s.depth, s.K)
    objs = res.objects
    assert objs is not None and "objects" in res.timings_ms
    for o in objs.instances:  # every instance pixel carries the instance's class in the label image
        assert (res.labels[objs.instance_map == o.id] == o.class_id).all()
        assert o.score == pytest.approx(float(res.confidence[objs.instance_map == o.id].mean()), abs=1e-5)
    assert {o.name for o in objs.instances if o.is_stuff} <= {"floor", "wall"}
    assert sum(o.name == "wall" for o in objs.instances) <= 1
    cubes = [o for o in objs.instances if o.name == "cube" and o.has_3d]
    truth = [b for b in object_boxes(s.spec) if CLASS_NAMES[b.class_id - 1] == "cube"]
    assert cubes and truth
    err = min(np.linalg.norm(c.centroid - t.centre) for c in cubes for t in truth)
    assert err < 0.08, err  # metres; the hidden back of the cube is not seen
    off = Segmenter(seg.cfg.__class__(**{**seg.cfg.__dict__, "objects": ObjectsConfig(enabled=False)}), clip=seg.clip)
    off.set_queries(list(CLASS_NAMES))
    assert off.segment(s.rgb, s.depth, s.K).objects is None


def test_trained_query_masks_stay_apart_per_segment_and_stuff_still_merges():
    seg, depth = _frame()
    seg[10:30, 10:30] = 1  # query mask A
    seg[10:30, 30:50] = 2  # query mask B, same class, same depth, touching: still two objects
    seg[35:40, 5:10] = 3  # query mask C in two pieces: one object (MaskFormer panoptic inference)
    seg[35:40, 50:55] = 3
    seg[40:48, :] = 4  # more wall (stuff) in its own segment: merged with segment 0
    labels, conf = np.array([2, 1, 1, 1, 2]), np.array([0.9, 0.8, 0.6, 0.5, 0.7])
    objs = extract_objects(seg, labels, conf, NAMES, depth, K, per_segment=True)
    got = sorted((o.name, o.box) for o in objs.instances)
    assert got == [("mug", (5, 35, 54, 39)), ("mug", (10, 10, 29, 29)), ("mug", (30, 10, 49, 29)),
                   ("wall", (0, 0, 63, 47))]
    assert next(o for o in objs.instances if o.box == (30, 10, 49, 29)).score == pytest.approx(0.6)
    # a score threshold drops (and counts) the unsure ones
    cut = extract_objects(seg, labels, conf, NAMES, depth, K, cfg=ObjectsConfig(min_score=0.65), per_segment=True)
    assert sorted(o.box for o in cut.instances if o.name == "mug") == [(10, 10, 29, 29)]
    assert cut.counts["low_score"] == 2
    # the geometric grouping would have joined A and B (touching in the image and in 3D)
    joined = extract_objects(seg, labels, conf, NAMES, depth, K)
    assert (10, 10, 49, 29) in [o.box for o in joined.instances]


@pytest.mark.parametrize("chunks", [1, 2, 3, 7])
def test_span_kernels_match_a_pixel_by_pixel_reference(chunks):
    """_group_stats and _paint_and_gather (row bands in parallel, one span of a group at a time)
    give, for any number of bands, what a plain per-pixel computation over the group map gives."""
    from movseg_core.objects import _group_stats, _paint_and_gather

    rng = np.random.default_rng(chunks)
    h, w, n_seg, n_runs = 37, 29, 9, 40
    seg = (rng.integers(0, n_seg, (h, w)) * (rng.random((h, w)) < 0.3)).astype(np.int32)
    runs = np.where(rng.random((h, w)) < 0.5, rng.integers(0, n_runs, (h, w)), -1).astype(np.int32)
    run_group = rng.integers(-1, 6, n_runs).astype(np.int64)
    seg_group = rng.integers(-1, 6, n_seg).astype(np.int64)
    conf = rng.random(n_seg)
    depth = np.where(rng.random((h, w)) < 0.7, rng.uniform(0.5, 3.0, (h, w)), 0).astype(np.float32)
    n = 7
    group = np.where(runs >= 0, run_group[np.maximum(runs, 0)], seg_group[seg])
    cnt, csum, nval, box, first, nval_band = _group_stats(runs, run_group, seg, seg_group, conf, depth, True, n, chunks)
    for g in range(n):
        ys, xs = np.nonzero(group == g)
        assert cnt[g] == ys.size and nval[g] == int((depth[ys, xs] > 0).sum())
        assert csum[g] == pytest.approx(conf[seg[ys, xs]].sum(), rel=1e-12, abs=0)
        if ys.size:
            assert tuple(box[g]) == (xs.min(), ys.min(), xs.max(), ys.max()) and first[g] == ys[0] * w + xs[0]
        else:
            assert first[g] == -1
    assert (nval_band.sum(0) == nval).all()
    # instances 1..4 = groups 0..3 (group 4 and 5 painted 0), strides 1, 2, 3, 0 (no points)
    lut = np.array([1, 2, 3, 4, 0, 0])
    stride = np.array([0, 1, 2, 3, 0])
    take = np.array([0] + [-(-nval[g] // stride[g + 1]) if stride[g + 1] else 0 for g in range(4)])
    offsets = np.cumsum(take)
    seen0 = np.zeros((chunks, 5), np.int64)
    seen0[1:, 1:] = np.cumsum(nval_band[:-1, :4], axis=0)
    fx, fy, cx, cy = 50.0, 60.0, 14.0, 18.0
    inst, pts = _paint_and_gather(runs, np.where(run_group >= 0, lut[run_group], 0), seg,
                                  np.where(seg_group >= 0, lut[seg_group], 0), depth, True, stride, offsets, seen0,
                                  fx, fy, cx, cy)
    assert (inst == np.where(group >= 0, lut[group], 0)).all()
    for i in range(1, 4):
        ys, xs = np.nonzero((group == i - 1) & (depth > 0))
        ys, xs = ys[::stride[i]], xs[::stride[i]]
        z = depth[ys, xs].astype(np.float64)
        want = np.stack([(xs - cx) / fx * z, (ys - cy) / fy * z, z], 1)
        assert np.array_equal(pts[offsets[i - 1]:offsets[i]], want)


def test_join_gives_the_components_of_scipy():
    """_join (union-find) partitions nodes as scipy's connected_components does."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from movseg_core.objects import _join

    rng = np.random.default_rng(3)
    for n, m in ((1, 0), (5, 3), (200, 150), (300, 40)):
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        comp = _join(n, a, b)
        _, ref = connected_components(coo_matrix((np.ones(m), (a, b)), shape=(n, n)), directed=False)
        assert comp.max() + 1 == ref.max() + 1
        assert (comp[:, None] == comp[None]).tolist() == (ref[:, None] == ref[None]).tolist()
        assert (np.diff(np.unique(comp, return_index=True)[1]) > 0).all()  # numbered in order of their smallest node


@pytest.mark.parametrize("mode", ["convex", "depth", "rgb"])
def test_units_boundary_pairs_match_a_scan_of_all_neighbour_pairs(mode):
    """The boundary pairs _units collects while it builds the units are the pairs a separate scan
    of every right / down neighbour pair finds (different units, same class), with the same kinds."""
    from movseg_core.objects import _units

    rng = np.random.default_rng(7)
    h, w = 40, 52
    seg = np.repeat(np.repeat(rng.integers(0, 12, (8, 13)), 5, 0), 4, 1).astype(np.int32)
    cls = np.array([0, 1, 1, 1, 2, 2, 2, 3, 3, 1, 2, 3])
    thing = cls != 3  # class 3 is stuff here
    depth = np.repeat(np.repeat(rng.uniform(1.0, 1.3, (8, 13)), 5, 0), 4, 1).astype(np.float32)
    depth[rng.random((h, w)) < 0.1] = 0
    nrm = rng.normal(size=(h, w, 3)).astype(np.float32)
    has_depth, convex = mode != "rgb", mode == "convex"
    sin_tol, jump, (fx, fy, cx, cy) = np.sin(np.deg2rad(10.0)), 0.05, (60.0, 60.0, 25.5, 19.5)
    runs, rid, n, a, b, kind = _units(seg, thing, depth, has_depth, jump, cls, nrm, convex, sin_tol, fx, fy, cx, cy)
    unit = np.where(runs >= 0, rid[np.maximum(runs, 0)], -1)
    want = []
    for (y, x) in np.ndindex(h, w):
        for yy, xx in ((y, x + 1), (y + 1, x)):
            if yy >= h or xx >= w or unit[y, x] < 0 or unit[yy, xx] < 0 or unit[y, x] == unit[yy, xx]:
                continue
            if cls[seg[y, x]] != cls[seg[yy, xx]]:
                continue
            za, zb = float(depth[y, x]), float(depth[yy, xx])
            k = 1
            if has_depth and not (za > 0 and zb > 0):
                k = 0
            elif has_depth and float(np.float32(abs(depth[y, x] - depth[yy, xx]))) > jump * min(za, zb):
                k = 2
            elif convex:
                d = np.array([(x - cx) / fx * za - (xx - cx) / fx * zb, (y - cy) / fy * za - (yy - cy) / fy * zb,
                              za - zb])
                dn = (nrm[y, x].astype(np.float64) - nrm[yy, xx]) @ d
                k = 3 if dn < -sin_tol * np.linalg.norm(d) else 1
            want.append((min(unit[y, x], unit[yy, xx]), max(unit[y, x], unit[yy, xx]), k))
    assert len(want) > 50 and {k for *_, k in want} >= ({0, 1, 2, 3} if convex else {1} if mode == "rgb" else {0, 1, 2})
    assert sorted(zip(a.tolist(), b.tolist(), kind.tolist())) == sorted(want)
