"""Compiled CPU kernels (numba) for :func:`movseg_core.proposals.propose`.

All at the working resolution (h x w). The per-pixel passes run in parallel over row bands
(numba threads; every result is the same for any number of bands/threads); the segment graph and
the merging are sequential:

1. :func:`downsample_depth`, :func:`downsample_normals`: masked block means of the measured depth
   and the valid normals at the working size.
2. :func:`sorted_edges`: one weight per 4- (or 8-) neighbour pair: colour distance (Lab units) plus
   geometric *evidence*: a depth step counts only where both pixels hold measured depth and it
   exceeds Kinect-like noise (``m`` standard deviations of disparity noise ``sigma_z = k z^2``); a
   normal crease only where both normals are valid. Missing depth adds nothing: colour alone
   decides there. Sorted by weight quantised to 1/16 Lab unit (stable counting sort).
3. :func:`graph_segment`: Felzenszwalb-Huttenlocher graph merging (union-find over the sorted
   edges), then regions below ``min_size`` pixels joined to their cheapest neighbour; dense ids.
4. :func:`merge_regions`: greedy region-adjacency merging down to ``max_segments``: the cheapest
   adjacent pair merges first; cost = mean-colour distance + ``merge_contrast`` x mean edge colour
   contrast along the shared boundary + ``merge_depth`` x share of the shared boundary (among pairs
   with measured depth on both sides) that is a depth discontinuity (``jump_rel z + m k z^2``) +
   ``merge_normal`` x (1 - cos) between the regions' mean normals, times
   ``sqrt(min(area) / mean area)`` so small regions merge first.

test/test_proposals_kernels.py pins each kernel against a plain computation of the same thing.
Compiled on first use and cached on disk (``cache=True``).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from movseg_core._union_find import find, set_ids

_BINS_PER_UNIT = 16.0
_NBINS = 16384  # weights above 1024 Lab units share the last bin


@njit(cache=True, nogil=True, inline="always")
def _step_threshold(z, slant_steps, jump_rel, noise_m, noise_k):  # noqa: ANN001, ANN202
    """The merge step's discontinuity threshold (metres) at depth ``z`` metres: what a surface explains
    over ``slant_steps`` neighbour steps (``jump_rel z`` each) plus ``noise_m`` sigmas of its noise
    (``noise_k z^2``)."""
    return jump_rel * slant_steps * z + noise_m * noise_k * z * z


@njit(cache=True, nogil=True, inline="always")
def _jump(za, zb, jump_rel, noise_m, noise_k):  # noqa: ANN001, ANN202
    """Depth-discontinuity evidence in [0, 1] between two pixels (0 if either has no depth)."""
    if za <= 0.0 or zb <= 0.0:
        return 0.0, False
    zm = min(za, zb)
    thr = _step_threshold(zm, 1, jump_rel, noise_m, noise_k)
    e = (abs(za - zb) - thr) / thr
    if e <= 0.0:
        return 0.0, True
    return min(e, 1.0), True


@njit(cache=True, nogil=True, inline="always")
def _colour_in(lab, y0, y1, x0, x1, c2min):  # noqa: ANN001, ANN202
    """Whether a right or down neighbour pair with Lab distance^2 >= ``c2min`` starts in rows
    y0..y1, columns x0..x1 (inclusive, clipped to the image)."""
    h, w = lab.shape[0], lab.shape[1]
    for yy in range(max(0, y0), min(h, y1 + 1)):
        for xx in range(max(0, x0), min(w, x1 + 1)):
            if xx + 1 < w and _lab_dist2(lab, yy, xx, yy, xx + 1) >= c2min:
                return True
            if yy + 1 < h and _lab_dist2(lab, yy, xx, yy + 1, xx) >= c2min:
                return True
    return False


@njit(cache=True, nogil=True, inline="always")
def _near_colour(lab, y, x, radius, c2min):  # noqa: ANN001, ANN202
    """Whether a 4-neighbour pair (right or down) with Lab distance^2 >= ``c2min`` starts within
    ``radius`` px (Chebyshev) of (y, x)."""
    return _colour_in(lab, y - radius, y + radius, x - radius, x + radius, c2min)


@njit(cache=True, nogil=True, inline="always")
def _step_row(za, zb, out, a, b):  # noqa: ANN001, ANN202
    """out[i] = 1 where za[i] and zb[i] (float32 metres, 0 = not measured) are both measured and
    |za - zb| >= a z + b z^2 (z = the nearer one; a, b float32), else 0; returns how many.
    Branch-free, so it vectorises."""
    cnt = 0
    for i in range(za.shape[0]):
        zm = min(za[i], zb[i])
        o = (zm > np.float32(0.0)) & (abs(za[i] - zb[i]) >= zm * (a + b * zm))
        out[i] = o
        cnt += o
    return cnt


@njit(cache=True, nogil=True, inline="always")
def _band_step(za, zb, holes, jump_rel, noise_m, noise_k, grow):  # noqa: ANN001, ANN202
    """Whether measured depths ``za``, ``zb`` with ``holes`` unmeasured pixels between them differ by
    more than ``grow`` x what a surface plus noise explains over the run."""
    zm = min(za, zb)
    return abs(za - zb) > grow * _step_threshold(zm, holes + 1, jump_rel, noise_m, noise_k)


@njit(cache=True, nogil=True)
def _scan_bands(zz, axis, max_len, jump_rel, noise_m, noise_k, grow, out, n):  # noqa: ANN001, ANN202
    """Write the shadow bands along the rows of ``zz`` (C-contiguous) to ``out`` from row ``n``, as
    ``axis``; returns the new n. ``out`` has room: a line of L pixels holds at most L / 2 bands."""
    for li in range(zz.shape[0]):
        line = zz[li]
        length = line.shape[0]
        i = 1
        while i < length:
            if line[i] > 0.0:
                i += 1
                continue
            j = i + 1
            while j < length and line[j] <= 0.0:
                j += 1
            if j < length and line[i - 1] > 0.0 and j - i <= max_len and \
                    _band_step(line[i - 1], line[j], j - i, jump_rel, noise_m, noise_k, grow):
                out[n, 0] = axis
                out[n, 1] = li
                out[n, 2] = i - 1
                out[n, 3] = j
                n += 1
            i = j
    return n


@njit(cache=True, nogil=True)
def shadow_bands(z, max_len, jump_rel, noise_m, noise_k, grow):  # noqa: ANN001, ANN202
    """Depth steps hidden in short runs of missing depth (*shadow bands*: a structured-light or stereo
    sensor sees no depth beside a near object's edge, so the object boundary itself is a hole).

    z: h x w float32 metres (0 = not measured), C-contiguous. A band is a run of 1..``max_len``
    unmeasured pixels along a row or a column between two measured pixels a and b whose depths
    differ by more than ``grow`` x what a surface plus noise
    explains over the run: ``jump_rel (L + 1) z_min + noise_m noise_k z_min^2`` (L holes, so L + 1
    neighbour steps of slant). Returns an n x 4 int32 array of (axis (0 = along a row, 1 = along a
    column), line index, a, b), a < b positions on the line (the holes are a + 1 .. b - 1), rows
    first. Sequential, O(h w): ~0.2 ms at 320 x 240."""
    h, w = z.shape
    out = np.empty((h * (w // 2) + w * (h // 2) + 1, 4), np.int32)
    n = _scan_bands(z, 0, max_len, jump_rel, noise_m, noise_k, grow, out, 0)
    n = _scan_bands(np.ascontiguousarray(z.T), 1, max_len, jump_rel, noise_m, noise_k, grow, out, n)
    return out[:n].copy()


@njit(cache=True, nogil=True)
def open_steps(z, jump_rel, noise_m, noise_k, grow):  # noqa: ANN001, ANN202
    """Measured depth ``z`` (h x w float32 metres, 0 = not measured) with both pixels of every clear depth
    step made unmeasured: 4-neighbours, both measured, whose depths differ by more than ``grow`` x the
    merge step's discontinuity threshold (:func:`_band_step` with no holes). A step's exact place is
    uncertain by a pixel (mixed pixels at an edge, a stereo matcher's fattening, block averaging): where
    the 2-px run it leaves is a shadow band (:func:`shadow_bands`: the depths beside it differ beyond
    what slant and noise explain over 3 steps), colour places the step (:func:`bridge_shadows`); where
    not, the two pixels stay unmeasured and colour alone decides there, as in any hole. Returns (the
    new z, how many pixels were opened). Sequential, O(h w)."""
    h, w = z.shape
    out = z.copy()
    opened = 0
    for y in range(h):
        for x in range(w):
            za = z[y, x]
            if za <= 0.0:
                continue
            for yy, xx in ((y, x + 1), (y + 1, x)):
                if yy < h and xx < w:
                    zb = z[yy, xx]
                    if zb > 0.0 and _band_step(za, zb, 0, jump_rel, noise_m, noise_k, grow):
                        opened += (out[y, x] > 0.0) + (out[yy, xx] > 0.0)
                        out[y, x] = 0.0
                        out[yy, xx] = 0.0
    return out, opened


@njit(cache=True, nogil=True)
def despeckle(z, max_size, jump_rel, noise_m, noise_k):  # noqa: ANN001, ANN202
    """Measured depth ``z`` (h x w float32 metres, 0 = not measured) without its *speckles*: the
    4-connected pieces of measured depth, joined across no discontinuity (:func:`_band_step`), of at most
    ``max_size`` pixels (a stereo matcher's mismatched blobs, flying pixels, slivers between holes)
    become unmeasured. Returns (the new z, how many pixels were dropped). Sequential, O(h w)."""
    h, w = z.shape
    label = np.full(h * w, -1, np.int32)  # one pass over the rows: a piece's label is a root of ``parent``
    parent = np.empty(h * w, np.int32)
    size = np.zeros(h * w, np.int32)
    n = 0
    for y in range(h):
        for x in range(w):
            za = z[y, x]
            if za <= 0.0:
                continue
            i = y * w + x
            lab = -1
            # joined where the merge step sees no discontinuity (:func:`_band_step` over no hole)
            if x > 0:
                zb = z[y, x - 1]
                if zb > 0.0 and not _band_step(za, zb, 0, jump_rel, noise_m, noise_k, 1.0):
                    lab = find(parent, label[i - 1])
            if y > 0:
                zb = z[y - 1, x]
                if zb > 0.0 and not _band_step(za, zb, 0, jump_rel, noise_m, noise_k, 1.0):
                    up = find(parent, label[i - w])
                    if lab < 0:
                        lab = up
                    elif up != lab:
                        lab = _union(parent, size, lab, up)
            if lab < 0:
                lab = n
                parent[n] = n
                n += 1
            label[i] = lab
            size[lab] += 1
    out = z.copy()
    dropped = 0
    for y in range(h):
        for x in range(w):
            i = y * w + x
            if label[i] >= 0 and size[find(parent, label[i])] <= max_size:
                out[y, x] = 0.0
                dropped += 1
    return out, dropped


@njit(cache=True, nogil=True)
def bridge_shadows(lab, z, bands):  # noqa: ANN001, ANN202
    """``z`` with each shadow band (:func:`shadow_bands`) filled: the band's step placed at its strongest
    colour edge (the neighbour pair on the line from a to b with the largest Lab distance), the holes
    before it given a's depth and those after it b's, so the graph and the merge step see the step
    where colour puts the boundary. Row bands first; a hole a row band filled keeps its value.
    lab: h x w x 3 float32; z: h x w float32 metres (0 = not measured). Returns a new h x w array."""
    out = z.copy()
    for r in range(bands.shape[0]):
        axis, li, a, b = bands[r, 0], bands[r, 1], bands[r, 2], bands[r, 3]
        best, cut = -1.0, a
        for k in range(a, b):  # the pair (k, k + 1)
            d = _lab_dist2(lab, li, k, li, k + 1) if axis == 0 else _lab_dist2(lab, k, li, k + 1, li)
            if d > best:
                best, cut = d, k
        za = z[li, a] if axis == 0 else z[a, li]
        zb = z[li, b] if axis == 0 else z[b, li]
        for k in range(a + 1, b):
            v = za if k <= cut else zb
            if axis == 0:
                if out[li, k] <= 0.0:
                    out[li, k] = v
            elif out[k, li] <= 0.0:
                out[k, li] = v
    return out


@njit(cache=True, nogil=True)
def registration(lab, z, bands, jump_rel, noise_m, noise_k, min_evidence, colour_min, radius, shift):  # noqa: ANN001, ANN202
    """How well the measured depth discontinuities coincide with colour edges: (score, n_steps).

    lab: h x w x 3 float32 Lab image; z: h x w float32 metres (0 = no measurement), both at the
    working resolution. A *depth step* is a 4-neighbour pair, both measured, whose discontinuity
    evidence (as :func:`_jump` in the merge step: ``(|dz| - t) / t`` with ``t = jump_rel z_min +
    noise_m noise_k z_min^2``) is >= ``min_evidence`` (> 0, at most 1); n_steps counts them. A
    place is *near colour* when a right or down neighbour pair with Lab distance >= ``colour_min``
    (Lab units) starts within ``radius`` px of it (Chebyshev). ``hit`` = share of depth steps whose
    first pixel is near colour; ``chance`` = the same share ``shift`` px either way across the step
    (along the pair's axis: off its own boundary, onto whatever colour edges the scene has nearby).
    ``bands`` (:func:`shadow_bands`, any ``grow`` <= 1 + ``min_evidence``) are depth steps hidden in
    shadow bands: each whose step passes ``grow`` = 1 + ``min_evidence`` counts as one step, near
    colour when a colour edge starts anywhere in the band (a .. b - 1, widened by ``radius``), its
    chance the same window moved ``shift`` + (b - a) px either way along the line (off the band's own
    window however long the band). (Their filled-in steps,
    :func:`bridge_shadows`, sit on colour edges by construction, so they are never scored.)
    Score = ``(hit - chance) / (1 - chance)`` (chance-corrected, like Cohen's kappa): about 1 when
    the depth steps lie on colour edges and the places beside them do not, about 0 (or below) when
    depth steps fall on colour edges no more often than beside them: depth not registered to
    colour. NaN when there is no depth step or ``chance`` is 1. Edge alignment of this kind is the
    objective of targetless depth-camera calibration (e.g. Levinson & Thrun 2013, who also judge a
    calibration against shifted ones). Sequential; colour is looked at only around depth steps
    (O(h w + n_steps radius^2)).
    """
    h, w = z.shape
    c2min = colour_min * colour_min
    grow = 1.0 + min(min_evidence, 1.0)  # evidence >= min_evidence <=> |dz| >= (1 + min_evidence) t
    a32 = np.float32(grow * jump_rel)
    b32 = np.float32(grow * noise_m * noise_k)
    n = hit = nb = hb = 0
    step = np.zeros(w, np.uint8)
    for y in range(h):
        for d in range(2):  # right neighbours, then down neighbours
            if d == 0:
                cnt = _step_row(z[y, : w - 1], z[y, 1:], step, a32, b32)
            elif y + 1 < h:
                cnt = _step_row(z[y], z[y + 1], step, a32, b32)
            else:
                break
            for x in range(w - 1 + d if cnt else 0):  # rows without a step are skipped
                if not step[x]:
                    continue
                n += 1
                hit += _near_colour(lab, y, x, radius, c2min)
                for sgn in (-shift, shift):
                    ys, xs = (y, x + sgn) if d == 0 else (y + sgn, x)
                    if 0 <= ys < h and 0 <= xs < w:
                        nb += 1
                        hb += _near_colour(lab, ys, xs, radius, c2min)
    for r in range(bands.shape[0]):
        axis, li, a, b = bands[r, 0], bands[r, 1], bands[r, 2], bands[r, 3]
        za, zb = (z[li, a], z[li, b]) if axis == 0 else (z[a, li], z[b, li])
        if za <= 0.0 or zb <= 0.0 or not _band_step(za, zb, b - a - 1, jump_rel, noise_m, noise_k, grow):
            continue
        length = z.shape[1] if axis == 0 else z.shape[0]
        far = shift + b - a  # the chance windows lie beyond the band's own (a long band would overlap it)
        for sgn in (0, -far, far):
            if b - 1 + sgn < 0 or a + sgn > length - 2:  # the shifted window lies off the image
                continue
            if axis == 0:
                near = _colour_in(lab, li - radius, li + radius, a + sgn - radius, b - 1 + sgn + radius, c2min)
            else:
                near = _colour_in(lab, a + sgn - radius, b - 1 + sgn + radius, li - radius, li + radius, c2min)
            if sgn == 0:
                n += 1
                hit += near
            else:
                nb += 1
                hb += near
    if n == 0 or nb == 0 or hb == nb:
        return np.nan, n
    chance = hb / nb
    return (hit / n - chance) / (1.0 - chance), n


@njit(cache=True, nogil=True, inline="always")
def _lab_dist2(lab, y, x, yy, xx):  # noqa: ANN001, ANN202
    """Squared Lab colour distance (Lab units^2) between pixels (y, x) and (yy, xx) of an h x w x 3 image."""
    c0 = lab[y, x, 0] - lab[yy, xx, 0]
    c1 = lab[y, x, 1] - lab[yy, xx, 1]
    c2 = lab[y, x, 2] - lab[yy, xx, 2]
    return c0 * c0 + c1 * c1 + c2 * c2


@njit(cache=True, nogil=True, parallel=True)
def sorted_edges(lab, z, nrm, nok, depth_weight, normal_weight, noise_m, noise_k, crease, diagonals, chunks):  # noqa: ANN001, ANN202
    """The 8- (``diagonals``) or 4-neighbour edges of an h x w image sorted by weight: (codes int32,
    weights float32), each of length m (the number of edges).

    An edge's code is ``p * nd + d`` (nd = 4 or 2): pixel p = y * w + x and its neighbour in
    direction d (0 right, 1 down, 2 down-right, 3 down-left), so codes in increasing order are the
    edges in raster order. Weight: colour distance (Lab units) plus geometric *evidence* in
    quadrature: a depth step only where both pixels hold measured depth, beyond the noise of a step;
    a normal crease only where both normals are valid. lab: h x w x 3 float32; z: h x w float32
    metres (0 = no measurement); nrm: h x w x 3 float32 unit normals; nok: h x w bool (normal valid);
    ``crease``: |n_p - n_q| that counts as surface noise.

    Sorted by weight quantised to 1/16 Lab unit with a stable counting sort (so each weight bucket
    lists its edges in raster order, cache-friendly for the union-find). Rows are split into
    ``chunks`` bands computed in parallel, each with its own histogram; the bands' offsets are laid
    out bucket by bucket, band after band, so the result does not depend on ``chunks``.
    """
    h, w = z.shape
    nd = 4 if diagonals else 2
    wts = np.empty((nd, h, w), np.float32)  # one plane per direction; -1 where there is no neighbour
    hist = np.zeros((chunks, _NBINS), np.int32)
    band = (h + chunks - 1) // chunks
    for c in prange(chunks):
        y0, y1 = c * band, min(h, c * band + band)
        for y in range(y0, y1):
            for d in range(nd):
                for x in range(w):
                    if d == 0:
                        yy, xx = y, x + 1
                    elif d == 1:
                        yy, xx = y + 1, x
                    elif d == 2:
                        yy, xx = y + 1, x + 1
                    else:
                        yy, xx = y + 1, x - 1
                    if yy >= h or xx < 0 or xx >= w:
                        wts[d, y, x] = -1.0
                        continue
                    wt2 = _lab_dist2(lab, y, x, yy, xx)
                    za, zb = z[y, x], z[yy, xx]
                    if depth_weight > 0.0 and za > 0.0 and zb > 0.0:
                        # |log-depth step| beyond the noise of a step (sigma_z / z = k z, two pixels);
                        # |log r| < |r - 1| / min(r, 1), so below half the noise the log is not needed
                        r = za / zb
                        noise = noise_m * noise_k * max(za, zb) * 1.4142135
                        if abs(r - 1.0) >= 0.5 * noise * min(r, 1.0):
                            g = abs(np.log(r)) - noise
                            if g > 0.0:
                                wt2 += (depth_weight * g) ** 2
                    if normal_weight > 0.0 and nok[y, x] and nok[yy, xx]:
                        n0 = nrm[y, x, 0] - nrm[yy, xx, 0]
                        n1 = nrm[y, x, 1] - nrm[yy, xx, 1]
                        n2 = nrm[y, x, 2] - nrm[yy, xx, 2]
                        g = np.sqrt(n0 * n0 + n1 * n1 + n2 * n2) - crease
                        if g > 0.0:
                            wt2 += (normal_weight * g) ** 2
                    wts[d, y, x] = np.sqrt(wt2)
            for d in range(nd):
                for x in range(w):
                    wt = wts[d, y, x]
                    if wt >= 0.0:
                        hist[c, min(int(wt * _BINS_PER_UNIT), _NBINS - 1)] += 1
    m = 0
    for bn in range(_NBINS):
        for c in range(chunks):
            cnt = hist[c, bn]
            hist[c, bn] = m
            m += cnt
    edges = np.empty((m, 2), np.int32)  # code, weight bits: one cache line per scattered edge
    weights = edges.view(np.float32)
    for c in prange(chunks):
        for y in range(c * band, min(h, c * band + band)):
            for x in range(w):
                for d in range(nd):
                    wt = wts[d, y, x]
                    if wt < 0.0:
                        continue
                    bn = min(int(wt * _BINS_PER_UNIT), _NBINS - 1)
                    j = hist[c, bn]
                    edges[j, 0] = (y * w + x) * nd + d
                    weights[j, 1] = wt
                    hist[c, bn] = j + 1
    return edges


@njit(cache=True, nogil=True, inline="always")
def _union(parent, size, a, b):  # noqa: ANN001, ANN202
    """Join the sets of roots ``a`` != ``b`` (union by size); returns the joined set's root."""
    if size[a] < size[b]:
        a, b = b, a
    parent[b] = a
    size[a] += size[b]
    return a


@njit(cache=True, nogil=True)
def graph_segment(n_pixels, w, diagonals, edges, k, min_size):  # noqa: ANN001, ANN202
    """Felzenszwalb-Huttenlocher segmentation of the pixel graph of an image ``w`` pixels wide
    (``n_pixels`` in all) from its edges in increasing weight (:func:`sorted_edges`): n_pixels int32
    dense labels (in order of first pixel) and the region count."""
    shift = 2 if diagonals else 1
    mask = (1 << shift) - 1
    step = np.array([1, w, w + 1, w - 1], np.int32)  # neighbour offset per direction
    m = edges.shape[0]
    weights = edges.view(np.float32)
    parent = np.arange(n_pixels).astype(np.int32)
    size = np.ones(n_pixels, np.int32)
    thr = np.full(n_pixels, k, np.float32)
    rejected = np.empty(m, np.int32)  # codes of edges between regions, in weight order, for the size pass
    nr = 0
    for j in range(m):
        code = edges[j, 0]
        u = code >> shift
        a = find(parent, u)
        b = find(parent, u + step[code & mask])
        if a == b:
            continue
        wt = weights[j, 1]
        if wt <= thr[a] and wt <= thr[b]:
            a = _union(parent, size, a, b)
            thr[a] = wt + k / size[a]
        else:
            rejected[nr] = code
            nr += 1
    for t in range(nr):  # small regions join their cheapest neighbour
        code = rejected[t]
        u = code >> shift
        a = find(parent, u)
        b = find(parent, u + step[code & mask])
        if a != b and (size[a] < min_size or size[b] < min_size):
            _union(parent, size, a, b)
    return set_ids(parent, n_pixels)


@njit(cache=True, nogil=True)
def _sort_pairs(keys, R):  # noqa: ANN001, ANN202
    """Indices that sort ``keys = a * R + b`` (0 <= a, b < R): two stable counting-sort passes (by b,
    then by a), O(n + R) instead of a comparison sort."""
    n = keys.shape[0]
    counts = np.zeros(R + 1, np.int64)
    for i in range(n):
        counts[keys[i] % R + 1] += 1
    for r in range(R):
        counts[r + 1] += counts[r]
    tmp = np.empty(n, np.int64)
    for i in range(n):
        b = keys[i] % R
        tmp[counts[b]] = i
        counts[b] += 1
    counts[:] = 0
    for i in range(n):
        counts[keys[i] // R + 1] += 1
    for r in range(R):
        counts[r + 1] += counts[r]
    order = np.empty(n, np.int64)
    for j in range(n):
        i = tmp[j]
        a = keys[i] // R
        order[counts[a]] = i
        counts[a] += 1
    return order


@njit(cache=True, nogil=True, inline="always")
def _cheaper(cost, i, j):  # noqa: ANN001, ANN202
    """The cheaper of pairs ``i`` < ``j`` (-1: none); a tie goes to ``i``, the pair listed first."""
    if j < 0:
        return i
    if i < 0:
        return j
    return j if cost[j] < cost[i] else i


@njit(cache=True, nogil=True, inline="always")
def _update(tree, cost, leaves, e):  # noqa: ANN001, ANN202
    """Re-decide the tournament on the path from pair ``e``'s leaf to the root."""
    i = (leaves + e) >> 1
    while i >= 1:
        tree[i] = _cheaper(cost, tree[2 * i], tree[2 * i + 1])
        i >>= 1


@njit(cache=True, nogil=True, inline="always")
def _drop(tree, cost, alive, leaves, e):  # noqa: ANN001, ANN202
    """Take pair ``e`` out of the tournament (merged away)."""
    alive[e] = False
    cost[e] = np.inf
    _update(tree, cost, leaves, e)


@njit(cache=True, nogil=True)
def merge_regions(labels, n_regions, lab, z, nrm, nok, max_segments, jump_rel, noise_m, noise_k,  # noqa: ANN001, ANN202, C901
                  merge_depth, merge_normal, merge_contrast, use_depth, use_normals):
    """Greedy adjacency merging of an h x w int32 label map (ids 0..n_regions-1) down to at most
    ``max_segments`` regions; returns the relabelled map (dense ids) and the region count."""
    h, w = labels.shape
    R = n_regions
    area = np.zeros(R, np.float64)
    col = np.zeros((R, 3), np.float64)
    nsum = np.zeros((R, 3), np.float64)
    ncnt = np.zeros(R, np.float64)
    for y in range(h):
        for x in range(w):
            r = labels[y, x]
            area[r] += 1.0
            for c in range(3):
                col[r, c] += lab[y, x, c]
            if use_normals and nok[y, x]:
                ncnt[r] += 1.0
                for c in range(3):
                    nsum[r, c] += nrm[y, x, c]
    # boundary pairs (4-neighbours) -> per region pair: length, measured pairs, jumps, contrast sum
    nb = 0
    for y in range(h):
        for x in range(w):
            if x + 1 < w and labels[y, x] != labels[y, x + 1]:
                nb += 1
            if y + 1 < h and labels[y, x] != labels[y + 1, x]:
                nb += 1
    keys = np.empty(nb, np.int64)
    vals = np.empty((nb, 3), np.float64)  # measured, jump, contrast
    i = 0
    for y in range(h):
        for x in range(w):
            for d in range(2):
                yy, xx = (y, x + 1) if d == 0 else (y + 1, x)
                if yy >= h or xx >= w:
                    continue
                a, b = labels[y, x], labels[yy, xx]
                if a == b:
                    continue
                if a > b:
                    a, b = b, a
                keys[i] = np.int64(a) * R + b
                meas = 0.0
                jmp = 0.0
                if use_depth:
                    e, both = _jump(z[y, x], z[yy, xx], jump_rel, noise_m, noise_k)
                    if both:
                        meas = 1.0
                        jmp = e
                vals[i, 0] = meas
                vals[i, 1] = jmp
                vals[i, 2] = np.sqrt(_lab_dist2(lab, y, x, yy, xx))
                i += 1
    order = _sort_pairs(keys, R)
    E = 0
    for j in range(nb):
        if j == 0 or keys[order[j]] != keys[order[j - 1]]:
            E += 1
    ea = np.empty(E, np.int64)
    eb = np.empty(E, np.int64)
    est = np.zeros((E, 4), np.float64)  # length, measured, jump, contrast
    e = -1
    for j in range(nb):
        o = order[j]
        if j == 0 or keys[o] != keys[order[j - 1]]:
            e += 1
            ea[e] = keys[o] // R
            eb[e] = keys[o] % R
        est[e, 0] += 1.0
        est[e, 1] += vals[o, 0]
        est[e, 2] += vals[o, 1]
        est[e, 3] += vals[o, 2]
    cost = np.empty(E, np.float64)
    mean_area = area.sum() / max_segments
    parent = np.arange(R)
    n_alive = R
    for e in range(E):
        cost[e] = _cost(ea[e], eb[e], est[e], area, col, nsum, ncnt, mean_area, merge_depth, merge_normal,
                        merge_contrast)
    # The cheapest pair first, ties to the pair listed first (pairs keep their place in the sorted
    # list: entry id = rank): a tournament tree over the ids (a merged-away pair costs inf), and per
    # region the list of its pairs' ids (in a pool; rebuilt for the survivor of each merge).
    alive = np.ones(E, np.bool_)
    leaves = 1
    while leaves < E:
        leaves *= 2
    tree = np.full(2 * leaves, -1, np.int64)  # node -> id of its subtree's cheapest pair (-1: none)
    for e in range(E):
        tree[leaves + e] = e
    for i in range(leaves - 1, 0, -1):
        tree[i] = _cheaper(cost, tree[2 * i], tree[2 * i + 1])
    deg = np.zeros(R, np.int64)
    for e in range(E):
        deg[ea[e]] += 1
        deg[eb[e]] += 1
    start = np.zeros(R, np.int64)
    for r in range(1, R):
        start[r] = start[r - 1] + deg[r - 1]
    pool = np.empty(max(4 * E, 16), np.int64)
    top = 2 * E
    count = np.zeros(R, np.int64)
    for e in range(E):
        for r in (ea[e], eb[e]):
            pool[start[r] + count[r]] = e
            count[r] += 1
    slot = np.full(R, -1, np.int64)
    while n_alive > max_segments and E > 0 and alive[tree[1]]:
        best = tree[1]
        a, b = ea[best], eb[best]
        if area[a] < area[b]:
            a, b = b, a
        _drop(tree, cost, alive, leaves, best)
        parent[b] = a
        area[a] += area[b]
        ncnt[a] += ncnt[b]
        for c in range(3):
            col[a, c] += col[b, c]
            nsum[a, c] += nsum[b, c]
        n_alive -= 1
        if top + count[a] + count[b] > pool.shape[0]:
            grown = np.empty(2 * (top + count[a] + count[b]), np.int64)
            grown[:top] = pool[:top]
            pool = grown
        new_start = top
        for t in range(start[a], start[a] + count[a]):  # a's pairs: note their other regions
            e = pool[t]
            if alive[e]:
                slot[eb[e] if ea[e] == a else ea[e]] = e
                pool[top] = e
                top += 1
        for t in range(start[b], start[b] + count[b]):  # b's pairs move to a; a pair both had is folded
            e = pool[t]
            if not alive[e]:
                continue
            if ea[e] == b:
                ea[e] = a
            if eb[e] == b:
                eb[e] = a
            other = eb[e] if ea[e] == a else ea[e]
            f = slot[other]
            if f < 0:
                slot[other] = e
                pool[top] = e
                top += 1
                continue
            keep, drop = (f, e) if f < e else (e, f)  # the pair listed first survives
            for c in range(4):
                est[keep, c] += est[drop, c]
            _drop(tree, cost, alive, leaves, drop)
            if keep == e:
                slot[other] = e
                for t2 in range(new_start, top):
                    if pool[t2] == f:
                        pool[t2] = e
        start[a], count[a], count[b] = new_start, top - new_start, 0
        for t in range(new_start, top):  # costs of a's pairs changed
            e = pool[t]
            slot[eb[e] if ea[e] == a else ea[e]] = -1
            cost[e] = _cost(ea[e], eb[e], est[e], area, col, nsum, ncnt, mean_area, merge_depth, merge_normal,
                            merge_contrast)
            _update(tree, cost, leaves, e)
    remap, s = set_ids(parent, R)
    out = np.empty((h, w), np.int32)
    for y in range(h):
        for x in range(w):
            out[y, x] = remap[labels[y, x]]
    return out, s


@njit(cache=True, nogil=True, inline="always")
def _cost(a, b, st, area, col, nsum, ncnt, mean_area, merge_depth, merge_normal, merge_contrast):  # noqa: ANN001, ANN202
    aa, ab = area[a], area[b]
    d = 0.0
    for c in range(3):
        t = col[a, c] / aa - col[b, c] / ab
        d += t * t
    cst = np.sqrt(d) + merge_contrast * st[3] / st[0]
    if st[1] > 0.0:
        cst += merge_depth * st[2] / st[1]
    if ncnt[a] > 0.0 and ncnt[b] > 0.0:
        dot = nsum[a, 0] * nsum[b, 0] + nsum[a, 1] * nsum[b, 1] + nsum[a, 2] * nsum[b, 2]
        na = np.sqrt(nsum[a, 0] ** 2 + nsum[a, 1] ** 2 + nsum[a, 2] ** 2)
        nb = np.sqrt(nsum[b, 0] ** 2 + nsum[b, 1] ** 2 + nsum[b, 2] ** 2)
        cst += merge_normal * (1.0 - dot / max(na * nb, 1e-12))
    return cst * np.sqrt(min(aa, ab) / mean_area)


@njit(cache=True, nogil=True, inline="always")
def _is_measured(z, ok):  # noqa: ANN001, ANN202
    """Whether a depth sample is a measurement: > 0, finite (NaN compares False) and ``ok`` (its
    validity-mask entry). The one definition every kernel uses; bitwise, so a select, not a branch."""
    return (z > 0.0) & (z < np.inf) & ok


@njit(cache=True, nogil=True, inline="always")
def _depth_sample(z, ok, s, n):  # noqa: ANN001, ANN202
    """Add a source depth to a block's (sum, count) if measured (branch-free: s + 0.0 == s)."""
    use = _is_measured(z, ok)
    return s + (z if use else 0.0), n + use


@njit(cache=True, nogil=True, inline="always")
def _normal_sample(n, yy, xx, s0, s1, s2):  # noqa: ANN001, ANN202
    """Add a source normal to a block's sums if valid (norm > 0.5 and < 2; NaN compares False)."""
    a, b, c = n[yy, xx, 0], n[yy, xx, 1], n[yy, xx, 2]
    q = a * a + b * b + c * c
    use = q > 0.25 and q < 4.0
    return s0 + (a if use else 0.0), s1 + (b if use else 0.0), s2 + (c if use else 0.0)


@njit(cache=True, nogil=True, parallel=True)
def downsample_depth(d, valid, f, min_cover):  # noqa: ANN001, ANN202
    """Masked f x f block mean of measured depth: (H//f) x (W//f) float32 metres, 0 where fewer than
    ``min_cover`` of the block's pixels hold depth (> 0, finite, and ``valid`` unless None). Output
    rows in parallel; each block summed in raster order (f = 2 unrolled)."""
    h, w = d.shape[0] // f, d.shape[1] // f
    out = np.zeros((h, w), np.float32)
    need = min_cover * f * f
    for y in prange(h):
        for x in range(w):
            s = 0.0
            n = 0
            if f == 2:
                y0, x0 = 2 * y, 2 * x
                s, n = _depth_sample(d[y0, x0], valid is None or valid[y0, x0], s, n)
                s, n = _depth_sample(d[y0, x0 + 1], valid is None or valid[y0, x0 + 1], s, n)
                s, n = _depth_sample(d[y0 + 1, x0], valid is None or valid[y0 + 1, x0], s, n)
                s, n = _depth_sample(d[y0 + 1, x0 + 1], valid is None or valid[y0 + 1, x0 + 1], s, n)
            else:
                for yy in range(y * f, y * f + f):
                    for xx in range(x * f, x * f + f):
                        s, n = _depth_sample(d[yy, xx], valid is None or valid[yy, xx], s, n)
            if n >= need and n > 0:
                out[y, x] = s / n
    return out


@njit(cache=True, nogil=True, parallel=True)
def area_downsample_depth(d, valid, row0, row_w, col0, col_w, min_cover):  # noqa: ANN001, ANN202
    """Masked area mean of measured depth for any (non-whole) downscale factor: h x w float32 metres,
    0 where under ``min_cover`` of the area holds depth (> 0, finite, and ``valid`` unless None).
    Output pixel (y, x) covers source rows row0[y] + i with area weights row_w[y, i] and columns
    col0[x] + j with col_w[x, j] (float32, :func:`movseg_core.proposals.area_taps`: cv2.INTER_AREA's
    weights); masked mean sum(w z) / sum(w), cover sum(w). Separable: a pass along each source row,
    then down the columns (each in parallel), summed in the order cv2.INTER_AREA sums in float32."""
    H = d.shape[0]
    h, w = row_w.shape[0], col_w.shape[0]
    ty, tx = row_w.shape[1], col_w.shape[1]
    num = np.empty((H, w), np.float32)
    cover = np.empty((H, w), np.float32)
    for yy in prange(H):
        for x in range(w):
            s = np.float32(0.0)
            c = np.float32(0.0)
            x0 = col0[x]
            for j in range(tx):
                z = d[yy, x0 + j]
                use = _is_measured(z, valid is None or valid[yy, x0 + j])
                wx = col_w[x, j] if use else np.float32(0.0)
                s += wx * (z if use else np.float32(0.0))
                c += wx
            num[yy, x] = s
            cover[yy, x] = c
    out = np.zeros((h, w), np.float32)
    for y in prange(h):
        y0 = row0[y]
        for x in range(w):
            s = np.float32(0.0)
            c = np.float32(0.0)
            for i in range(ty):
                s += row_w[y, i] * num[y0 + i, x]
                c += row_w[y, i] * cover[y0 + i, x]
            if c >= min_cover and c > 0.0:
                out[y, x] = s / c
    return out


@njit(cache=True, nogil=True, parallel=True)
def area_downsample_rgb(rgb, row0, row_w, col0, col_w):  # noqa: ANN001, ANN202
    """Area mean of an H x W x 3 uint8 image for any (non-whole) downscale factor: h x w x 3 float32,
    0..255, unrounded (taps and passes as :func:`area_downsample_depth`)."""
    H = rgb.shape[0]
    h, w = row_w.shape[0], col_w.shape[0]
    ty, tx = row_w.shape[1], col_w.shape[1]
    rows = np.empty((H, w, 3), np.float32)
    for yy in prange(H):
        for x in range(w):
            s0 = s1 = s2 = np.float32(0.0)
            x0 = col0[x]
            for j in range(tx):
                wx = col_w[x, j]
                s0 += wx * np.float32(rgb[yy, x0 + j, 0])
                s1 += wx * np.float32(rgb[yy, x0 + j, 1])
                s2 += wx * np.float32(rgb[yy, x0 + j, 2])
            rows[yy, x, 0] = s0
            rows[yy, x, 1] = s1
            rows[yy, x, 2] = s2
    out = np.empty((h, w, 3), np.float32)
    for y in prange(h):
        y0 = row0[y]
        for x in range(w):
            s0 = s1 = s2 = np.float32(0.0)
            for i in range(ty):
                wy = row_w[y, i]
                s0 += wy * rows[y0 + i, x, 0]
                s1 += wy * rows[y0 + i, x, 1]
                s2 += wy * rows[y0 + i, x, 2]
            out[y, x, 0] = s0
            out[y, x, 1] = s1
            out[y, x, 2] = s2
    return out


@njit(cache=True, nogil=True, parallel=True)
def downsample_normals(n, z_small, f):  # noqa: ANN001, ANN202
    """f x f block mean of the valid unit normals (norm > 0.5; NaN/0 = none), renormalised, where the
    working pixel also has measured depth: ((H//f) x (W//f) x 3 float32, (H//f) x (W//f) bool).
    Output rows in parallel; each block summed in raster order (f = 2 unrolled)."""
    h, w = z_small.shape
    out = np.zeros((h, w, 3), np.float32)
    ok = np.zeros((h, w), np.bool_)
    for y in prange(h):
        for x in range(w):
            if z_small[y, x] <= 0.0:
                continue
            s0 = s1 = s2 = 0.0
            if f == 2:
                y0, x0 = 2 * y, 2 * x
                s0, s1, s2 = _normal_sample(n, y0, x0, s0, s1, s2)
                s0, s1, s2 = _normal_sample(n, y0, x0 + 1, s0, s1, s2)
                s0, s1, s2 = _normal_sample(n, y0 + 1, x0, s0, s1, s2)
                s0, s1, s2 = _normal_sample(n, y0 + 1, x0 + 1, s0, s1, s2)
            else:
                for yy in range(y * f, y * f + f):
                    for xx in range(x * f, x * f + f):
                        s0, s1, s2 = _normal_sample(n, yy, xx, s0, s1, s2)
            q = np.sqrt(s0 * s0 + s1 * s1 + s2 * s2)
            if q > 1e-6:
                out[y, x, 0], out[y, x, 1], out[y, x, 2] = s0 / q, s1 / q, s2 / q
                ok[y, x] = True
    return out, ok


@njit(cache=True, nogil=True, inline="always")
def _rgb_dist(rgb, y, x, ref, k):  # noqa: ANN001, ANN202
    """Euclidean RGB distance between image pixel (y, x) and reference colour ``ref[k]``."""
    d0 = np.float32(rgb[y, x, 0]) - ref[k, 0]
    d1 = np.float32(rgb[y, x, 1]) - ref[k, 1]
    d2 = np.float32(rgb[y, x, 2]) - ref[k, 2]
    return np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)


@njit(cache=True, nogil=True, inline="always")
def _add_sample(small, z_small, y, x, k, ref, cnt, zlo, zhi):  # noqa: ANN001, ANN202
    """Add working pixel (y, x) to candidate k's colour sum and count and its measured depth range."""
    for j in range(3):
        ref[k, j] += small[y, x, j]
    cnt[k] += 1
    zz = z_small[y, x]
    if zz > 0.0:
        zlo[k] = min(zlo[k], zz)
        zhi[k] = max(zhi[k], zz)


@njit(cache=True, nogil=True, parallel=True)
def refine_boundaries(labels, interior, small, rgb, z_full, valid, z_small, rows, cols, radius,  # noqa: ANN001, ANN202, C901
                      depth_weight, jump_rel, noise_m, noise_k, chunks):
    """The working grid's segments at the image's resolution, each boundary placed within the working
    pixel. Image rows rows[y] .. rows[y + 1] - 1 and columns cols[x] .. cols[x + 1] - 1 belong to working
    pixel (y, x) (rows, cols int64, h + 1 and w + 1 long, from 0 to H and W, non-decreasing) and take its
    segment, except that every image pixel of a working pixel that is
    not ``interior`` (h x w bool: all 8 neighbours in its segment) takes, among the segments of that
    working pixel's 3 x 3 block, the one whose *local* colour it is closest to, plus ``depth_weight`` x its
    depth evidence against it.

    A segment's local colour: the mean of ``small`` (h x w x 3 float32, the image area-resized to the
    working grid, RGB 0..255) over its interior working pixels within ``radius`` working px, or over all
    its working pixels there if none is interior. Its local depth: the range [min, max] of ``z_small``
    (h x w float32 metres, 0 = not measured) over the measured ones of those pixels (none measured: no
    depth term for it); an image pixel's measured depth ``z_full`` (H x W float32 metres; 0, NaN, inf or
    not ``valid`` (H x W bool, or 0 x 0: all valid) = not measured; a 0 x 0 array: no depth term) outside
    that range by more than slant and noise explain (the merge step's threshold ``jump_rel z + noise_m
    noise_k z^2``) counts min(excess / threshold, 3). labels: h x w int32, ids 0..S-1; rgb: H x W x 3
    uint8. Returns (H x W int32, ``chunks`` x S bool: which ids each band wrote). Rows in parallel bands
    (each writes only its own image pixels: the same result for any number of bands)."""
    h, w = labels.shape
    H, W = rgb.shape[0], rgb.shape[1]
    has_depth = z_full.shape[0] == H and z_full.shape[1] == W and depth_weight > 0.0
    has_valid = valid.shape[0] == H and valid.shape[1] == W
    n_seg = labels.max() + 1
    out = np.empty((H, W), np.int32)
    band = (h + chunks - 1) // chunks
    present = np.zeros((chunks, n_seg), np.bool_)
    for ch in prange(chunks):
        slot = np.full(n_seg, -1, np.int32)  # segment id -> its place among the candidates (-1: none)
        cand = np.empty(9, np.int32)
        ref = np.empty((9, 3), np.float32)  # colour sums, then the reference colours
        cnt = np.empty(9, np.int32)
        zlo = np.empty(9, np.float32)  # measured depth range
        zhi = np.empty(9, np.float32)
        use_all = np.empty(9, np.bool_)  # no interior pixel in the window: all the segment's pixels there
        for y in range(ch * band, min(h, ch * band + band)):
            for x in range(w):
                c0 = labels[y, x]
                if interior[y, x]:
                    present[ch, c0] = True
                    for yy in range(rows[y], rows[y + 1]):
                        for xx in range(cols[x], cols[x + 1]):
                            out[yy, xx] = c0
                    continue
                nc = 0
                for yy in range(max(0, y - 1), min(h, y + 2)):
                    for xx in range(max(0, x - 1), min(w, x + 2)):
                        c = labels[yy, xx]
                        if slot[c] < 0:
                            slot[c] = nc
                            cand[nc] = c
                            nc += 1
                for k in range(nc):
                    for j in range(3):
                        ref[k, j] = 0.0
                    cnt[k] = 0
                    zlo[k] = np.inf
                    zhi[k] = 0.0
                y0, y1, x0, x1 = max(0, y - radius), min(h, y + radius + 1), max(0, x - radius), min(w, x + radius + 1)
                for yy in range(y0, y1):  # the candidates' interior pixels in the window
                    for xx in range(x0, x1):
                        k = slot[labels[yy, xx]]
                        if k >= 0 and interior[yy, xx]:
                            _add_sample(small, z_small, yy, xx, k, ref, cnt, zlo, zhi)
                fallback = False
                for k in range(nc):
                    use_all[k] = cnt[k] == 0
                    fallback = fallback or use_all[k]
                if fallback:
                    for yy in range(y0, y1):
                        for xx in range(x0, x1):
                            k = slot[labels[yy, xx]]
                            if k >= 0 and use_all[k]:
                                _add_sample(small, z_small, yy, xx, k, ref, cnt, zlo, zhi)
                for k in range(nc):  # every candidate has a pixel in the 3 x 3 block, so cnt >= 1
                    slot[cand[k]] = -1
                    for j in range(3):
                        ref[k, j] /= cnt[k]
                for yy in range(rows[y], rows[y + 1]):
                    for xx in range(cols[x], cols[x + 1]):
                        zp = z_full[yy, xx] if has_depth else np.float32(0.0)
                        if not _is_measured(zp, not has_valid or valid[yy, xx]):
                            zp = np.float32(0.0)
                        best, best_cost = c0, np.inf
                        for k in range(nc):
                            cost = _rgb_dist(rgb, yy, xx, ref, k)
                            if zp > 0.0 and zhi[k] > 0.0:
                                dz = max(zlo[k] - zp, zp - zhi[k], np.float32(0.0))
                                cost += depth_weight * min(dz / _step_threshold(zp, 1, jump_rel, noise_m, noise_k), 3.0)
                            if cost < best_cost:
                                best, best_cost = cand[k], cost
                        out[yy, xx] = best
                        present[ch, best] = True
    return out, present


@njit(cache=True, nogil=True, parallel=True)
def remap_ids(ids, lut):  # noqa: ANN001, ANN202
    """``ids`` (H x W int32) replaced by ``lut[ids]`` in place, rows in parallel."""
    for y in prange(ids.shape[0]):
        for x in range(ids.shape[1]):
            ids[y, x] = lut[ids[y, x]]
    return ids
