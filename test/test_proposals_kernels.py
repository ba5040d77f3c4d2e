"""The compiled proposal kernels (movseg_core._proposals_numba) against straightforward computations.

Each fast kernel replaced a simpler one (parallel bucketed edge sort, flat path-halving union-find,
branch-free 2x2 downsampling, a tournament tree for the cheapest region pair); these references are
the simple computations, in plain Python/numpy, and the kernels must give exactly the same result.
"""
from __future__ import annotations

import numpy as np
import pytest

from movseg_core import _proposals_numba as K

NO_BANDS = np.zeros((0, 4), np.int32)


def scene(h=36, w=52, seed=0, blocks=6):
    """Lab-like image with blocky colour regions plus noise, depth with steps, holes and normals."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 5, (h // blocks + 1, w // blocks + 1)).repeat(blocks, 0).repeat(blocks, 1)[:h, :w]
    palette = rng.uniform(0, 60, (5, 3))
    lab = (palette[ids] + rng.normal(0, 1.5, (h, w, 3))).astype(np.float32)
    z = (1.0 + 0.4 * (ids % 3) + rng.normal(0, 0.003, (h, w))).astype(np.float32)
    z[rng.random((h, w)) < 0.1] = 0.0
    nrm = rng.normal(0, 1, (h, w, 3)).astype(np.float32)
    nrm /= np.linalg.norm(nrm, axis=-1, keepdims=True)
    nok = z > 0
    return lab, z, nrm, nok


def reference_edges(lab, z, nrm, nok, depth_weight, normal_weight, noise_m, noise_k, crease, diagonals):
    """Edges in raster order, (code = pixel * nd + direction, weight as float32), computed directly."""
    h, w = z.shape
    nd = 4 if diagonals else 2
    out = []
    for y in range(h):
        for x in range(w):
            for d, (yy, xx) in enumerate(((y, x + 1), (y + 1, x), (y + 1, x + 1), (y + 1, x - 1))[:nd]):
                if yy >= h or xx < 0 or xx >= w:
                    continue
                c = lab[y, x] - lab[yy, xx]  # float32, summed left to right as the kernel does
                wt2 = float(c[0] * c[0] + c[1] * c[1] + c[2] * c[2])
                za, zb = z[y, x], z[yy, xx]
                if depth_weight > 0 and za > 0 and zb > 0:
                    g = abs(float(np.log(za / zb))) - noise_m * noise_k * float(max(za, zb)) * 1.4142135
                    if g > 0:
                        wt2 += (depth_weight * g) ** 2
                if normal_weight > 0 and nok[y, x] and nok[yy, xx]:
                    n = nrm[y, x] - nrm[yy, xx]
                    g = float(np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2])) - crease
                    if g > 0:
                        wt2 += (normal_weight * g) ** 2
                out.append(((y * w + x) * nd + d, np.float32(np.sqrt(wt2))))
    return out


@pytest.mark.parametrize("diagonals", [False, True])
@pytest.mark.parametrize("geometry", [False, True])
def test_sorted_edges_is_the_stable_bucket_sort_of_the_raster_edges_for_any_band_count(diagonals, geometry):
    lab, z, nrm, nok = scene()
    args = (lab, z, nrm, nok, 30.0 if geometry else 0.0, 20.0 if geometry else 0.0, 3.0, 1.425e-3, 0.02, diagonals)
    ref = reference_edges(*args)
    bucket = [min(int(float(wt) * 16.0), 16383) for _, wt in ref]
    order = np.argsort(np.asarray(bucket), kind="stable")  # ties keep raster order
    runs = [K.sorted_edges(*args, chunks) for chunks in (1, 2, 3, 7, 100)]
    for edges in runs:
        np.testing.assert_array_equal(edges, runs[0])  # bands change nothing
    codes, weights = runs[0][:, 0], runs[0].view(np.float32)[:, 1]
    np.testing.assert_array_equal(codes, np.asarray([ref[i][0] for i in order]))
    expected = np.asarray([ref[i][1] for i in order], np.float32)
    if geometry:  # numpy's float32 log may differ from the kernel's in the last bit
        np.testing.assert_allclose(weights, expected, rtol=1e-6)
    else:
        np.testing.assert_array_equal(weights, expected)


def test_depth_steps_just_above_the_noise_are_never_skipped():
    """The kernel skips the log where |r - 1| < noise / 2 (the step cannot exceed the noise there);
    steps on both sides of the noise level, 1 m to 8 m, must weigh what the log formula says."""
    z0 = np.geomspace(1.0, 8.0, 40, dtype=np.float32)
    noise = 3.0 * 1.425e-3 * 1.4142135 * z0  # log-depth noise of a step at z0 (the nearer side)
    ratio = np.exp(np.linspace(0.3, 2.0, 25)[None, :] * noise[:, None])  # 0.3x .. 2x the noise
    near = np.repeat(z0, 25)
    z = np.ascontiguousarray(np.stack([near, near * ratio.ravel().astype(np.float32)], 1))  # a row: one pair
    lab = np.zeros((*z.shape, 3), np.float32)
    nrm = np.zeros((*z.shape, 3), np.float32)
    args = (lab, z, nrm, z > 0, 30.0, 0.0, 3.0, 1.425e-3, 0.02, False)
    ref = dict(reference_edges(*args))
    edges = K.sorted_edges(*args, 2)
    got = dict(zip(edges[:, 0].tolist(), edges.view(np.float32)[:, 1].tolist()))
    assert got.keys() == ref.keys()
    np.testing.assert_allclose([got[c] for c in sorted(ref)], [ref[c] for c in sorted(ref)], rtol=1e-6, atol=1e-6)
    assert sum(v > 0 for v in ref.values()) > 300  # most pairs step beyond the noise


def reference_fh(n_pixels, w, nd, edges, k, min_size):
    """Felzenszwalb-Huttenlocher over edges in the given order, with explicit member lists: each pixel
    holds its component's id, a join relabels the smaller component's pixels."""
    weights = edges.view(np.float32)[:, 1]
    comp = list(range(n_pixels))
    members = {p: [p] for p in range(n_pixels)}
    thr = {p: np.float32(k) for p in range(n_pixels)}
    offset = (1, w, w + 1, w - 1)

    def join(big, small):
        if len(members[big]) < len(members[small]):
            big, small = small, big
        for p in members[small]:
            comp[p] = big
        members[big] += members.pop(small)
        return big

    later = []
    for code, wt in zip(edges[:, 0].tolist(), weights):
        p, q = code // nd, code // nd + offset[code % nd]
        if comp[p] == comp[q]:
            continue
        if wt <= min(thr[comp[p]], thr[comp[q]]):
            c = join(comp[p], comp[q])
            thr[c] = np.float32(float(wt) + k / len(members[c]))
        else:
            later.append((p, q))
    for p, q in later:  # then components under min_size join along the rejected edges, in order
        if comp[p] != comp[q] and min(len(members[comp[p]]), len(members[comp[q]])) < min_size:
            join(comp[p], comp[q])
    _, first, inverse = np.unique(comp, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # components numbered in order of their first pixel
    return rank[inverse].astype(np.int32), len(first)


@pytest.mark.parametrize("diagonals", [False, True])
@pytest.mark.parametrize("k", [5.0, 30.0])
def test_graph_segment_matches_plain_felzenszwalb(diagonals, k):
    lab, z, nrm, nok = scene(seed=1)
    h, w = z.shape
    edges = K.sorted_edges(lab, z, nrm, nok, 30.0, 0.0, 3.0, 1.425e-3, 0.02, diagonals, 2)
    labels, n = K.graph_segment(h * w, w, diagonals, edges, k, 8)
    ref, n_ref = reference_fh(h * w, w, 4 if diagonals else 2, edges, k, 8)
    assert n == n_ref and 5 < n < h * w // 8
    np.testing.assert_array_equal(labels, ref)


def reference_merge(labels, R, lab, z, nrm, nok, max_segments, jump_rel, noise_m, noise_k, merge_depth,  # noqa: C901
                    merge_normal, merge_contrast, use_depth, use_normals):
    """The greedy merge as a plain loop: boundary statistics per region pair (in raster order), then
    repeatedly the first cheapest pair in the (a, b)-sorted pair list merges, the list is compacted
    (the merged-away region's pairs redirected, a pair both regions had folded into the first)."""
    h, w = labels.shape
    area, col, nsum, ncnt = np.zeros(R), np.zeros((R, 3)), np.zeros((R, 3)), np.zeros(R)
    for y in range(h):
        for x in range(w):
            r = labels[y, x]
            area[r] += 1.0
            col[r] += lab[y, x].astype(np.float64)  # per channel, pixel by pixel: the kernel's order
            if use_normals and nok[y, x]:
                ncnt[r] += 1.0
                nsum[r] += nrm[y, x].astype(np.float64)
    stats: dict[tuple[int, int], list[float]] = {}
    for y in range(h):
        for x in range(w):
            for yy, xx in ((y, x + 1), (y + 1, x)):
                if yy >= h or xx >= w or labels[y, x] == labels[yy, xx]:
                    continue
                a, b = sorted((int(labels[y, x]), int(labels[yy, xx])))
                meas = jmp = 0.0
                if use_depth:
                    e, both = K._jump(z[y, x], z[yy, xx], jump_rel, noise_m, noise_k)
                    meas, jmp = (1.0, e) if both else (0.0, 0.0)
                c = lab[y, x] - lab[yy, xx]
                st = stats.setdefault((a, b), [0.0, 0.0, 0.0, 0.0])
                for i, v in enumerate((1.0, meas, jmp, float(np.sqrt(c[0] * c[0] + c[1] * c[1] + c[2] * c[2])))):
                    st[i] += v
    pairs = [[a, b, np.asarray(st)] for (a, b), st in sorted(stats.items())]
    mean_area = area.sum() / max_segments

    def cost(p):
        return K._cost(p[0], p[1], p[2], area, col, nsum, ncnt, mean_area, merge_depth, merge_normal, merge_contrast)

    costs = [cost(p) for p in pairs]
    parent = list(range(R))
    alive = R
    while alive > max_segments and pairs:
        best = min(range(len(pairs)), key=lambda i: (costs[i], i))
        a, b = pairs[best][:2]
        if area[a] < area[b]:
            a, b = b, a
        parent[b] = a
        area[a] += area[b]
        ncnt[a] += ncnt[b]
        col[a] += col[b]
        nsum[a] += nsum[b]
        alive -= 1
        kept, kept_costs, seen = [], [], {}
        for i, (u, v, st) in enumerate(pairs):
            if i == best:
                continue
            u, v = (a if u == b else u), (a if v == b else v)
            if a in (u, v):
                other = v if u == a else u
                if other in seen:
                    kept[seen[other]][2] = kept[seen[other]][2] + st
                    continue
                seen[other] = len(kept)
            kept.append([u, v, st])
            kept_costs.append(costs[i])
        pairs, costs = kept, [cost(p) if a in p[:2] else c for p, c in zip(kept, kept_costs)]
    roots = []
    for r in range(R):
        while parent[r] != parent[parent[r]]:
            parent[r] = parent[parent[r]]
        roots.append(parent[r] if parent[r] != r else r)
    ids = {}
    remap = np.asarray([ids.setdefault(roots[r], len(ids)) for r in range(R)], np.int32)
    return remap[labels], len(ids)


@pytest.mark.parametrize("geometry", [False, True])
@pytest.mark.parametrize("max_segments", [1, 4, 12])
def test_merge_regions_matches_the_plain_greedy_loop(geometry, max_segments):
    lab, z, nrm, nok = scene(h=40, w=56, seed=2, blocks=4)
    edges = K.sorted_edges(lab, z, nrm, nok, 30.0, 0.0, 3.0, 1.425e-3, 0.02, False, 2)
    flat, R = K.graph_segment(z.size, z.shape[1], False, edges, 10.0, 4)
    labels = flat.reshape(z.shape)
    args = (labels, R, lab, z, nrm, nok, max_segments, 0.02, 3.0, 1.425e-3, 40.0, 40.0, 1.0, geometry, geometry)
    got, n = K.merge_regions(*args)
    ref, n_ref = reference_merge(*args)
    assert R > 40 and n == n_ref and n <= max_segments
    np.testing.assert_array_equal(got, ref)


def test_merge_ties_go_to_the_pair_listed_first():
    """Identical flat tiles: every pair costs the same, so only the tie rule decides the merges."""
    tiles = np.arange(36, dtype=np.int32).reshape(6, 6).repeat(4, 0).repeat(4, 1)
    lab = np.zeros((*tiles.shape, 3), np.float32)
    lab[..., 0] = 50.0
    z = np.zeros(tiles.shape, np.float32)
    nrm = np.zeros((*tiles.shape, 3), np.float32)
    args = (tiles, 36, lab, z, nrm, z > 0, 7, 0.02, 3.0, 1.425e-3, 40.0, 40.0, 1.0, False, False)
    got, n = K.merge_regions(*args)
    ref, n_ref = reference_merge(*args)
    assert n == n_ref == 7
    np.testing.assert_array_equal(got, ref)


def reference_block_mean(d, valid, n, f, min_cover):
    """Masked f x f block means (depth, normals), each block summed pixel by pixel in raster order."""
    h, w = d.shape[0] // f, d.shape[1] // f
    z = np.zeros((h, w), np.float32)
    nout, nok = np.zeros((h, w, 3), np.float32), np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            s, cnt, sn = 0.0, 0, [0.0, 0.0, 0.0]
            for yy in range(y * f, y * f + f):
                for xx in range(x * f, x * f + f):
                    v = d[yy, xx]
                    if v > 0 and np.isfinite(v) and (valid is None or valid[yy, xx]):
                        s += float(v)
                        cnt += 1
                    a = n[yy, xx]
                    q = a[0] * a[0] + a[1] * a[1] + a[2] * a[2]
                    if 0.25 < q < 4.0:
                        sn = [sn[i] + float(a[i]) for i in range(3)]
            if cnt >= min_cover * f * f and cnt > 0:
                z[y, x] = s / cnt
            qn = float(np.sqrt(sn[0] * sn[0] + sn[1] * sn[1] + sn[2] * sn[2]))
            if z[y, x] > 0 and qn > 1e-6:
                nout[y, x] = [v / qn for v in sn]
                nok[y, x] = True
    return z, nout, nok


@pytest.mark.parametrize("f", [2, 3])
@pytest.mark.parametrize("with_valid", [False, True])
def test_downsampling_matches_the_plain_masked_block_mean(f, with_valid):
    rng = np.random.default_rng(3)
    h, w = 12 * f, 18 * f
    d = rng.uniform(0.5, 6.0, (h, w)).astype(np.float32)
    d[rng.random((h, w)) < 0.15] = 0.0
    d[0, :3] = (np.nan, np.inf, -1.0)
    valid = rng.random((h, w)) > 0.1 if with_valid else None
    n = rng.normal(0, 1, (h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n[rng.random((h, w)) < 0.2] = 0.0
    n[1, :2] = np.nan
    z_ref, n_ref, ok_ref = reference_block_mean(d, valid, n, f, 0.75)
    z = K.downsample_depth(d, valid, f, 0.75)
    np.testing.assert_array_equal(z, z_ref)
    got_n, got_ok = K.downsample_normals(n, z, f)
    np.testing.assert_array_equal(got_ok, ok_ref)
    np.testing.assert_array_equal(got_n, n_ref)
    assert 0.2 < (z > 0).mean() < 1.0 and ok_ref.any()


def reference_area_mean(img, valid, size_hw):
    """Area average by definition: output (y, x) covers source [y s_y, (y + 1) s_y) x [x s_x, (x + 1) s_x)
    and weighs each source pixel by its overlap; masked by ``valid``. Returns (weighted sum, cover)."""
    (H, W), (h, w) = img.shape[:2], size_hw
    sy, sx = H / h, W / w
    def overlap(lo, hi, n):  # noqa: ANN001, ANN202
        p = np.arange(n)
        return np.clip(np.minimum(hi, p + 1) - np.maximum(lo, p), 0, None)
    wy = np.stack([overlap(y * sy, (y + 1) * sy, H) / sy for y in range(h)])  # h x H
    wx = np.stack([overlap(x * sx, (x + 1) * sx, W) / sx for x in range(w)])  # w x W
    m = valid.astype(np.float64)
    v = np.where(valid[..., None] if img.ndim == 3 else valid, img, 0).astype(np.float64)
    total = np.stack([wy @ v[..., c] @ wx.T for c in range(3)], -1) if img.ndim == 3 else wy @ v @ wx.T
    cover = wy @ m @ wx.T
    return total, cover


@pytest.mark.parametrize("src, dst", [((480, 848), (181, 320)), ((427, 561), (244, 320)), ((23, 17), (9, 7)),
                                      ((20, 30), (20, 11)), ((8, 8), (1, 1))])
def test_area_taps_are_the_overlap_weights(src, dst):
    from movseg_core.proposals import area_taps

    for n_in, n_out in zip(src, dst):
        first, w = area_taps(n_in, n_out)
        assert first.min() >= 0 and first.max() + w.shape[1] <= n_in
        np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
        dense = np.zeros((n_out, n_in))
        for i in range(n_out):
            dense[i, first[i]:first[i] + w.shape[1]] = w[i]
        s = n_in / n_out
        p = np.arange(n_in)
        want = np.stack([np.clip(np.minimum((i + 1) * s, p + 1) - np.maximum(i * s, p), 0, None) / s
                         for i in range(n_out)])
        np.testing.assert_allclose(dense, want, atol=1e-6)
    with pytest.raises(ValueError, match="not a downscale"):
        area_taps(5, 6)


@pytest.mark.parametrize("src, dst", [((480, 848), (181, 320)), ((427, 561), (244, 320)), ((23, 17), (9, 7)),
                                      ((20, 30), (20, 11)), ((321, 1000), (103, 320)), ((9, 13), (1, 1)),
                                      ((30, 700), (3, 11)), ((240, 424), (181, 320))])
@pytest.mark.parametrize("with_valid", [False, True])
def test_area_downsampling_for_any_factor_matches_its_definition(src, dst, with_valid):
    from movseg_core.proposals import area_taps

    rng = np.random.default_rng(sum(src))
    H, W = src
    d = rng.uniform(0.5, 6.0, src).astype(np.float32)
    d[rng.random(src) < 0.2] = 0.0
    d[0, :3] = (np.nan, np.inf, -1.0)
    valid = rng.random(src) > 0.1 if with_valid else None
    rows, cols = area_taps(H, dst[0]), area_taps(W, dst[1])
    measured = (d > 0) & np.isfinite(d) & (True if valid is None else valid)
    total, cover = reference_area_mean(np.nan_to_num(d, posinf=0), measured, dst)
    for min_cover in (0.5, 0.75):
        got = K.area_downsample_depth(d, valid, *rows, *cols, min_cover)
        clear = np.abs(cover - min_cover) > 1e-4  # float32 sums may fall either side of a cover right at it
        want = np.where(cover >= min_cover, total / np.maximum(cover, 1e-9), 0)
        np.testing.assert_allclose(got[clear], want[clear], rtol=1e-5)
    if src == (480, 848):
        assert 0.05 < (got > 0).mean() < 1.0  # both sides of the cover threshold were exercised
    rgb = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    total, _ = reference_area_mean(rgb, np.ones(src, bool), dst)
    np.testing.assert_allclose(K.area_downsample_rgb(rgb, *rows, *cols), total, atol=2e-3)


def reference_shadow_bands(z, max_len, jump_rel, noise_m, noise_k, grow):
    """Shadow bands as :func:`shadow_bands` defines them, run by run: (axis, line, a, b) rows."""
    out = []
    for axis, zz in ((0, z), (1, z.T)):
        for li, line in enumerate(zz):
            x = 0
            while x < len(line):
                if line[x] > 0:
                    x += 1
                    continue
                end = x
                while end < len(line) and line[end] <= 0:
                    end += 1
                if x > 0 and end < len(line) and end - x <= max_len:
                    za, zb = float(line[x - 1]), float(line[end])
                    zm = min(za, zb)
                    if abs(za - zb) > grow * (jump_rel * (end - x + 1) * zm + noise_m * noise_k * zm * zm):
                        out.append((axis, li, x - 1, end))
                x = end
    return np.array(out, np.int32).reshape(-1, 4)


def reference_bridge(lab, z, bands):
    """:func:`bridge_shadows` as its docstring defines it."""
    out = z.copy()
    for axis, li, a, b in bands:
        zl, ll = (z[li], lab[li]) if axis == 0 else (z[:, li], lab[:, li])
        d = [float(((ll[k] - ll[k + 1]) ** 2).sum()) for k in range(a, b)]
        cut = a + int(np.argmax(d))
        for k in range(a + 1, b):
            idx = (li, k) if axis == 0 else (k, li)
            if out[idx] <= 0:
                out[idx] = zl[a] if k <= cut else zl[b]
    return out


def reference_registration(lab, z, jump_rel, noise_m, noise_k, min_evidence, colour_min, radius, shift,
                           bands=np.zeros((0, 4), np.int32)):
    """The registration score as its docstring defines it, pair by pair and band by band (float32 as
    the kernel)."""
    h, w = z.shape
    a = np.float32((1 + min(min_evidence, 1.0)) * jump_rel)
    b = np.float32((1 + min(min_evidence, 1.0)) * noise_m * noise_k)

    def colour_pair(y, x, yy, xx):
        c = lab[y, x] - lab[yy, xx]
        return float(c[0] * c[0] + c[1] * c[1] + c[2] * c[2]) >= colour_min * colour_min

    starts = np.zeros((h, w), bool)  # a right or down pair with a colour edge starts here
    for y in range(h):
        for x in range(w):
            starts[y, x] = (x + 1 < w and colour_pair(y, x, y, x + 1)) or (y + 1 < h and colour_pair(y, x, y + 1, x))

    def near(y, x):
        return bool(starts[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].any())

    hits, chance = [], []
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0)):
                yy, xx = y + dy, x + dx
                if yy >= h or xx >= w:
                    continue
                za, zb = z[y, x], z[yy, xx]
                zm = min(za, zb)
                if not (zm > 0 and abs(za - zb) >= zm * (a + b * zm)):
                    continue
                hits.append(near(y, x))
                for s in (-shift, shift):
                    ys, xs = y + s * dy, x + s * dx
                    if 0 <= ys < h and 0 <= xs < w:
                        chance.append(near(ys, xs))
    grow = 1 + min(min_evidence, 1.0)
    for axis, li, a, b in bands:
        za, zb = (float(z[li, a]), float(z[li, b])) if axis == 0 else (float(z[a, li]), float(z[b, li]))
        zm = min(za, zb)
        if zm <= 0 or not abs(za - zb) > grow * (jump_rel * (b - a) * zm + noise_m * noise_k * zm * zm):
            continue  # an unmeasured end, or a band too weak to count as evidence of registration
        length = w if axis == 0 else h
        far = shift + (b - a)  # beyond the band's own window
        for s in (0, -far, far):
            if b - 1 + s < 0 or a + s > length - 2:
                continue
            lo, hi = max(0, a + s - radius), b - 1 + s + radius + 1
            win = starts[max(0, li - radius):li + radius + 1, lo:hi] if axis == 0 else \
                starts[lo:hi, max(0, li - radius):li + radius + 1]
            (hits if s == 0 else chance).append(bool(win.any()))
    if not hits or not chance or all(chance):
        return np.nan, len(hits)
    c = np.mean(chance)
    return (np.mean(hits) - c) / (1 - c), len(hits)


@pytest.mark.parametrize("params", [(0.5, 6.0, 2, 8), (1.0, 10.0, 1, 3), (0.2, 3.0, 0, 5)])
@pytest.mark.parametrize("shifted", [False, True])
def test_registration_score_matches_its_definition(params, shifted):
    lab, z, _, _ = scene(48, 64, seed=5, blocks=8)
    if shifted:  # depth moved 5 px right: its steps leave the colour edges
        z = np.ascontiguousarray(np.roll(z, 5, axis=1))
    score, n = K.registration(lab, z, NO_BANDS, 0.02, 3.0, 1.425e-3, *params)
    ref, n_ref = reference_registration(lab, z, 0.02, 3.0, 1.425e-3, *params)
    assert n == n_ref and n > 50
    np.testing.assert_allclose(score, ref, rtol=0, atol=1e-12)
    if params[2] > 0:  # the blocks' depth steps are their colour edges, until moved off them
        assert (score < 0.3) if shifted else (score > 0.7)


def test_a_long_bands_chance_windows_lie_beyond_it():
    """One colour edge (x = 40) inside a 16-px shadow band in every row, a flat colour elsewhere: the
    band's chance windows must sample off its own window (beside it they would hold the same edge:
    chance 1, score NaN, and depth would keep its say unjudged). Registered: 1.0; the depth step
    20 px off the colour edge: <= 0."""
    lab = np.zeros((60, 96, 3), np.float32)
    lab[:, 40:] = 30.0
    for step_x, expect_hit in ((40, True), (60, False)):
        z = np.full((60, 96), 1.0, np.float32)
        z[:, step_x:] = 1.6
        z[:, step_x - 8:step_x + 8] = 0.0  # windows 8 px either side of the band's would both hold its edge
        bands = K.shadow_bands(z, 16, 0.02, 3.0, 1.425e-3, 1.0)
        assert len(bands) == 60
        score, n = K.registration(lab, z, bands, 0.02, 3.0, 1.425e-3, 0.5, 6.0, 1, 8)
        assert n == 60
        assert score == 1.0 if expect_hit else score <= 0.0


def test_registration_score_without_depth_steps_is_nan():
    lab, z, _, _ = scene(48, 64, seed=6)
    score, n = K.registration(lab, np.full_like(z, 2.0), NO_BANDS, 0.02, 3.0, 1.425e-3, 0.5, 6.0, 2, 8)
    assert n == 0 and np.isnan(score)


def shadowed(z, width, seed):
    """``z`` with a run of ``width`` missing pixels over each depth step along its rows (the shadow a
    structured-light sensor casts beside a near object's edge), so no measured neighbours straddle a
    row step."""
    rng = np.random.default_rng(seed)
    out = z.copy()
    for y in range(z.shape[0]):
        for x in np.nonzero(np.abs(np.diff(z[y])) > 0.2)[0]:
            a = max(0, x + 1 - int(rng.integers(0, width)))
            out[y, a:a + width] = 0.0
    return out


@pytest.mark.parametrize("max_len, grow", [(1, 1.0), (6, 1.0), (6, 1.5), (30, 1.0)])
def test_shadow_bands_match_their_definition(max_len, grow):
    lab, z, _, _ = scene(48, 64, seed=7, blocks=8)
    z = shadowed(z, 4, seed=1)
    got = K.shadow_bands(z, max_len, 0.02, 3.0, 1.425e-3, grow)
    ref = reference_shadow_bands(z, max_len, 0.02, 3.0, 1.425e-3, grow)
    np.testing.assert_array_equal(got, ref)
    assert len(ref) > (5 if max_len > 1 else 0)
    np.testing.assert_array_equal(K.bridge_shadows(lab, z, got), reference_bridge(lab, z, got))


def test_bridge_places_the_step_at_the_strongest_colour_edge():
    """One row: 1 m | 5 holes | 2 m; the colour edge inside the holes decides where the step goes;
    runs longer than max_len, open at the border or between depths that agree stay holes."""
    lab = np.zeros((1, 12, 3), np.float32)
    lab[0, 6:] = 20.0  # colour edge between pixels 5 and 6
    z = np.array([[1.0, 1.0, 0, 0, 0, 0, 0, 2.0, 2.0, 0, 0, 0]], np.float32)
    bands = K.shadow_bands(z, 5, 0.02, 3.0, 1.425e-3, 1.0)
    assert bands.tolist() == [[0, 0, 1, 7]]  # the open run at the right border is no band
    out = K.bridge_shadows(lab, z, bands)
    np.testing.assert_array_equal(out[0, :9], [1, 1, 1, 1, 1, 1, 2, 2, 2])
    assert (out[0, 9:] == 0).all()
    assert len(K.shadow_bands(z, 4, 0.02, 3.0, 1.425e-3, 1.0)) == 0  # longer than max_len
    z_same = np.where(z > 0, 1.0, 0.0).astype(np.float32)  # equal depths: a hole on one surface
    assert len(K.shadow_bands(z_same, 5, 0.02, 3.0, 1.425e-3, 1.0)) == 0
    # a hole in a row band and a column band keeps the row band's value
    z2 = np.array([[0, 3, 0], [1, 0, 2], [0, 4, 0]], np.float32)
    bands = K.shadow_bands(z2, 1, 0.02, 3.0, 1.425e-3, 1.0)
    assert bands.tolist() == [[0, 1, 0, 2], [1, 1, 0, 2]]
    assert K.bridge_shadows(np.zeros((3, 3, 3), np.float32), z2, bands)[1, 1] == 2.0


def stripes(h=48, w=160, seed=0):
    """Lab-like vertical stripes of random widths (14-29 px), colours and depths (1.0 / 1.5 / 2.2 m, 0.2 %
    noise): every depth step is a colour edge, none of them on a regular grid."""
    rng = np.random.default_rng(seed)
    edges = np.cumsum(rng.integers(14, 30, 40))
    edges = edges[edges < w]
    ids = np.searchsorted(edges, np.arange(w), side="right")
    colours = rng.uniform(0, 60, (len(edges) + 1, 3))
    depths = rng.choice([1.0, 1.5, 2.2], len(edges) + 1)
    lab = (colours[ids][None].repeat(h, 0) + rng.normal(0, 1.0, (h, w, 3))).astype(np.float32)
    z = (depths[ids][None].repeat(h, 0) * (1 + rng.normal(0, 0.002, (h, w)))).astype(np.float32)
    return lab, z


@pytest.mark.parametrize("width", [3, 12])
@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_registration_counts_steps_hidden_in_shadow_bands(shifted, width, seed):
    """Every depth step lies in a shadow band (3 px, or 12: longer than the chance shift, 8): the bands
    alone tell registered depth (score > 0.7) from depth moved 8 px off the colour edges (< 0.3), and
    the kernel matches its definition."""
    lab, z = stripes(seed=seed)
    if shifted:
        z = np.ascontiguousarray(np.roll(z, 8, axis=1))
    z = shadowed(z, width, seed=2)
    params = (0.5, 6.0, 1, 8)
    bands = K.shadow_bands(z, 16, 0.02, 3.0, 1.425e-3, 1.0)
    score, n = K.registration(lab, z, bands, 0.02, 3.0, 1.425e-3, *params)
    ref, n_ref = reference_registration(lab, z, 0.02, 3.0, 1.425e-3, *params, bands=bands)
    assert n == n_ref and len(bands) > 50
    np.testing.assert_allclose(score, ref, rtol=0, atol=1e-12)
    steps_only, _ = K.registration(lab, z, NO_BANDS, 0.02, 3.0, 1.425e-3, *params)
    assert (score < 0.3) if shifted else (score > 0.7)
    assert shifted or not steps_only > 0.7  # without the bands the registered depth is not recognised


def reference_despeckle(z, max_size, jump_rel, noise_m, noise_k):
    """:func:`despeckle` as its docstring defines it: flood each 4-connected piece of measured depth
    across steps no larger than ``jump_rel z + noise_m noise_k z^2`` (z the nearer), drop pieces of at
    most ``max_size`` pixels."""
    h, w = z.shape
    seen = np.zeros((h, w), bool)
    out = z.copy()
    for y0 in range(h):
        for x0 in range(w):
            if z[y0, x0] <= 0 or seen[y0, x0]:
                continue
            piece, todo = [], [(y0, x0)]
            seen[y0, x0] = True
            while todo:
                y, x = todo.pop()
                piece.append((y, x))
                for yy, xx in ((y, x + 1), (y + 1, x), (y, x - 1), (y - 1, x)):
                    if 0 <= yy < h and 0 <= xx < w and not seen[yy, xx] and z[yy, xx] > 0:
                        zm = min(float(z[y, x]), float(z[yy, xx]))
                        if abs(float(z[y, x]) - float(z[yy, xx])) <= jump_rel * zm + noise_m * noise_k * zm * zm:
                            seen[yy, xx] = True
                            todo.append((yy, xx))
            if len(piece) <= max_size:
                for p in piece:
                    out[p] = 0.0
    return out


@pytest.mark.parametrize("max_size", [0, 1, 2, 3, 4, 12])
def test_despeckle_matches_its_definition(max_size):
    """Blobs of wrong depth (a stereo matcher's speckle) of 1-12 px on the blocky scene, their steps from
    0.4 to 1.6 x the discontinuity threshold (so some join their surroundings and some do not): the kernel
    drops exactly the pieces the plain flood fill finds small enough, and nothing at max_size 0."""
    _, z, _, _ = scene(48, 64, seed=8, blocks=8)
    rng = np.random.default_rng(3)
    for _ in range(40):
        y, x = rng.integers(0, 45), rng.integers(0, 61)
        hh, ww = rng.integers(1, 4), rng.integers(1, 5)
        base = float(np.median(z[z > 0]))
        thr = 0.02 + 3.0 * 1.425e-3 * base
        z[y:y + hh, x:x + ww] = base * (1 + rng.choice([-1, 1]) * rng.uniform(0.4, 1.6) * thr)
        z[max(0, y - 1):y + hh + 1, max(0, x - 1):x + ww + 1][0, 0] = base  # some blobs touch the base depth
    ref = reference_despeckle(z, max_size, 0.02, 3.0, 1.425e-3)
    out, dropped = K.despeckle(z, max_size, 0.02, 3.0, 1.425e-3)
    np.testing.assert_array_equal(out, ref)
    assert dropped == int(((z > 0) & (ref == 0)).sum())
    assert (dropped > 0) == (max_size > 0)


@pytest.mark.parametrize("grow", [1.0, 2.0, 4.0])
def test_open_steps_matches_its_definition(grow):
    """Both pixels of every 4-neighbour pair, both measured, whose depths differ by more than ``grow`` x
    (jump_rel z + noise_m noise_k z^2) (z the nearer) become unmeasured; nothing else changes."""
    _, z, _, _ = scene(48, 64, seed=9, blocks=8)
    rng = np.random.default_rng(4)
    z = (z * (1 + rng.uniform(-0.06, 0.06, z.shape))).astype(np.float32)  # steps near every threshold
    ref = z.copy()
    for y in range(48):
        for x in range(64):
            for yy, xx in ((y, x + 1), (y + 1, x)):
                if yy < 48 and xx < 64 and z[y, x] > 0 and z[yy, xx] > 0:
                    zm = min(float(z[y, x]), float(z[yy, xx]))
                    if abs(float(z[y, x]) - float(z[yy, xx])) > grow * (0.02 * zm + 3.0 * 1.425e-3 * zm * zm):
                        ref[y, x] = ref[yy, xx] = 0.0
    out, opened = K.open_steps(z, 0.02, 3.0, 1.425e-3, grow)
    np.testing.assert_array_equal(out, ref)
    assert opened == int(((z > 0) & (ref == 0)).sum()) > 0


def test_an_opened_step_goes_to_the_colour_edge_beside_it():
    """A depth step measured 1 px right of the colour edge (the near side fattened) is opened into a 2-px band
    and bridged back onto the colour edge; a step on the colour edge stays there; steps within the noise
    stay measured."""
    lab = np.zeros((4, 12, 3), np.float32)
    lab[:, 6:] = 20.0  # colour edge between columns 5 and 6
    for measured_at in (6, 7):  # first column of the far surface: on the colour edge, or 1 px right of it
        z = np.where(np.arange(12) < measured_at, 1.0, 2.0).astype(np.float32)[None].repeat(4, 0)
        opened, n = K.open_steps(z, 0.02, 3.0, 1.425e-3, 2.0)
        assert n == 8 and (opened[:, measured_at - 1:measured_at + 1] == 0).all()
        bridged = K.bridge_shadows(lab, opened, K.shadow_bands(opened, 4, 0.02, 3.0, 1.425e-3, 1.0))
        np.testing.assert_array_equal(bridged[0], [1.0] * 6 + [2.0] * 6)
    flat = np.full((4, 12), 2.0, np.float32) * (1 + np.linspace(0, 0.03, 12, dtype=np.float32))  # slant
    assert K.open_steps(flat, 0.02, 3.0, 1.425e-3, 2.0)[1] == 0
    # a step past the opening threshold (2 x (0.02 z + 3 k z^2) = 0.0486 m at 1 m) but within what slant
    # and noise explain over the 3 steps of a 2-px run (0.0643 m) is opened and forms no band: its two
    # (mixed) pixels stay unmeasured, and colour alone decides there
    z = np.where(np.arange(12) < 6, 1.0, 1.055).astype(np.float32)[None].repeat(4, 0)
    opened, n = K.open_steps(z, 0.02, 3.0, 1.425e-3, 2.0)
    assert n == 8 and len(K.shadow_bands(opened, 4, 0.02, 3.0, 1.425e-3, 1.0)) == 0


def reference_refine(labels, small, rgb, z_full, z_small, radius, depth_weight, jump_rel, noise_m, noise_k):
    """Boundary pixels at full resolution, straight from the definition (float64; the kernel's float32
    sums may only flip exact ties, which random colours do not make). Image pixel (Y, X) lies in working
    pixel (Y h // H, X w // W)."""
    h, w = labels.shape
    H, W = rgb.shape[:2]
    ys, xs = np.arange(H) * h // H, np.arange(W) * w // W
    out = labels[ys][:, xs]
    pad = np.pad(labels, 1, mode="edge")
    interior = np.ones((h, w), bool)
    for dy in range(3):
        for dx in range(3):
            interior &= pad[dy:dy + h, dx:dx + w] == labels
    for y in range(h):
        for x in range(w):
            if interior[y, x]:
                continue
            cands = list(dict.fromkeys(labels[max(0, y - 1):y + 2, max(0, x - 1):x + 2].ravel().tolist()))
            win = (slice(max(0, y - radius), y + radius + 1), slice(max(0, x - radius), x + radius + 1))
            refs = []
            for c in cands:
                mine = labels[win] == c
                inner = mine & interior[win]
                use = inner if inner.any() else mine
                zs = z_small[win][use & (z_small[win] > 0)]
                refs.append((small[win][use].astype(np.float64).mean(0), (zs.min(), zs.max()) if zs.size else None))
            for yy in np.flatnonzero(ys == y):
                for xx in np.flatnonzero(xs == x):
                    zp = z_full[yy, xx] if z_full.size and depth_weight > 0 else 0.0
                    costs = []
                    for colour, zr in refs:
                        cost = float(np.linalg.norm(rgb[yy, xx].astype(np.float64) - colour))
                        if zp > 0 and zr is not None:
                            dz = max(zr[0] - zp, zp - zr[1], 0.0)
                            cost += depth_weight * min(dz / (jump_rel * zp + noise_m * noise_k * zp * zp), 3.0)
                        costs.append(cost)
                    out[yy, xx] = cands[int(np.argmin(costs))]
    return out


@pytest.mark.parametrize("depth_weight", [0.0, 10.0])
@pytest.mark.parametrize("size", [(28, 38), (42, 57), (31, 50)])  # 2x, 3x and no whole factor (14 x 19 grid)
def test_refine_boundaries_matches_its_definition_for_any_band_count(depth_weight, size):
    import cv2

    rng = np.random.default_rng(size[0])
    h, w = 14, 19
    H, W = size
    labels = rng.integers(0, 4, (h // 3 + 1, w // 3 + 1)).repeat(3, 0).repeat(3, 1)[:h, :w].astype(np.int32)
    labels[5:7, 5:12] = 4  # a thin segment: no interior pixel, its colour comes from all its pixels
    palette = rng.uniform(0, 255, (5, 3))
    ys, xs = np.arange(H) * h // H, np.arange(W) * w // W
    big = labels[ys][:, xs]
    shift = rng.integers(-1, 2, big.shape)  # the image's own boundaries lie up to a pixel off the grid's
    truth = np.take_along_axis(big, np.clip(np.arange(W)[None] + shift, 0, W - 1), axis=1)
    rgb = np.clip(palette[truth] + rng.normal(0, 12, (H, W, 3)), 0, 255).astype(np.uint8)
    small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    z_full = (1.0 + 0.5 * (truth % 3) + rng.normal(0, 0.002, truth.shape)).astype(np.float32)
    z_full[rng.random(truth.shape) < 0.1] = 0.0
    z_small = cv2.resize(z_full, (w, h), interpolation=cv2.INTER_AREA)
    z_small[rng.random((h, w)) < 0.1] = 0.0
    interior = np.ones((h, w), bool)
    pad = np.pad(labels, 1, mode="edge")
    for dy in range(3):
        for dx in range(3):
            interior &= pad[dy:dy + h, dx:dx + w] == labels
    rows, cols = np.searchsorted(ys, np.arange(h + 1)), np.searchsorted(xs, np.arange(w + 1))
    no_valid = np.zeros((0, 0), bool)
    expected = reference_refine(labels, small, rgb, z_full, z_small, 2, depth_weight, 0.02, 3.0, 1.425e-3)
    assert not np.array_equal(expected, big)  # the case moves boundaries
    for chunks in (1, 2, 5, 40):
        got, present = K.refine_boundaries(labels, interior, small, rgb, z_full, no_valid, z_small, rows, cols, 2,
                                           depth_weight, 0.02, 3.0, 1.425e-3, chunks)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(present.any(0), np.bincount(expected.ravel(), minlength=5) > 0)
    # NaN, inf and invalid pixels are not measured: as 0 in the definition
    odd = z_full.copy()
    spoil = rng.random(odd.shape)
    odd[spoil < 0.05], odd[(spoil >= 0.05) & (spoil < 0.1)] = np.nan, np.inf
    valid = rng.random(odd.shape) > 0.05
    zeroed = np.where(np.isfinite(odd) & valid, odd, 0.0).astype(np.float32)
    expected = reference_refine(labels, small, rgb, zeroed, z_small, 2, depth_weight, 0.02, 3.0, 1.425e-3)
    got, _ = K.refine_boundaries(labels, interior, small, rgb, odd, valid, z_small, rows, cols, 2, depth_weight,
                                 0.02, 3.0, 1.425e-3, 2)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seg0_evidence, colour_to_seg1, winner", [
    (2.5, 22.0, 1),  # 10 x 2.5 = 25 > 22: the depth evidence outweighs the colour (a cap at 2 would not)
    (1.5, 16.0, 0),  # 10 x 1.5 = 15 < 16: colour wins (the threshold without its noise term, 2.14, would not)
    (4.0, 35.0, 0),  # capped at 3: 30 < 35 (uncapped, 40 would not be)
    (4.0, 29.0, 1),
])
def test_refine_weighs_colour_against_graded_depth_evidence(seg0_evidence, colour_to_seg1, winner):
    """One boundary pixel whose colour is segment 0's and whose depth is segment 1's: it goes where colour
    distance + 10 x min(depth evidence, 3) is smaller; evidence = excess / (jump_rel z + noise_m noise_k z^2)."""
    h, w, f = 4, 6, 2
    labels = np.zeros((h, w), np.int32)
    labels[:, 3:] = 1
    interior = np.zeros((h, w), bool)
    interior[:, [0, 1, 4, 5]] = True
    a = np.array([100.0, 100.0, 100.0], np.float32)
    small = np.where((np.arange(w) < 3)[None, :, None], a, a + np.float32([colour_to_seg1, 0, 0])).astype(np.float32)
    small = np.ascontiguousarray(small.repeat(h, 0))
    rgb = np.full((h * f, w * f, 3), 100, np.uint8)
    z = 2.0
    thr = 0.02 * z + 3.0 * 1.425e-3 * z * z
    z_small = np.where(np.arange(w) < 3, z + seg0_evidence * thr, z)[None].repeat(h, 0).astype(np.float32)
    z_full = np.full((h * f, w * f), z, np.float32)
    rows, cols = np.arange(h + 1) * f, np.arange(w + 1) * f
    out, _ = K.refine_boundaries(labels, interior, small, rgb, z_full, np.zeros((0, 0), bool), z_small, rows, cols,
                                 2, 10.0, 0.02, 3.0, 1.425e-3, 1)
    assert (out[:, 4:6] == winner).all()  # the image pixels of working column 2, segment 0's boundary column


@pytest.mark.parametrize("src, dst", [((480, 848), (181, 320)), ((427, 561), (244, 320)), ((240, 424), (181, 320))])
def test_area_downsampling_is_what_opencv_area_resizing_gives(src, dst):
    """What docs/segmenter.md "Any camera size" claims: the masked depth is OpenCV's masked INTER_AREA (the
    code it replaced) value for value, the colour its float INTER_AREA (uint8 OpenCV rounds; we don't)."""
    import cv2

    from movseg_core.proposals import _downsample_depth, area_rgb

    rng = np.random.default_rng(7)
    d = rng.uniform(0.5, 6.0, src).astype(np.float32)
    d[rng.random(src) < 0.2] = 0.0
    valid = rng.random(src) > 0.05
    ok = (d > 0) & valid
    size = (dst[1], dst[0])
    num = cv2.resize(np.where(ok, d, 0).astype(np.float32), size, interpolation=cv2.INTER_AREA)
    den = cv2.resize(ok.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    want = np.where(den >= 0.75, num / np.maximum(den, 1e-6), 0).astype(np.float32)
    np.testing.assert_allclose(_downsample_depth(d, valid, size, 0.75), want, rtol=1e-6, atol=0)
    rgb = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    np.testing.assert_allclose(area_rgb(rgb, dst), cv2.resize(rgb.astype(np.float32), size,
                                                              interpolation=cv2.INTER_AREA), atol=1e-3)
