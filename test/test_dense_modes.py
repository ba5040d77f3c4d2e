"""SC-CLIP, ResCLIP, PAMR and the proposal scope pinned against their formulas written out by hand in
float64 (loops over tokens, heads and pixels; independent of movseg_core.clip's vectorised code), on
a fixed tiny block; random-weight results deterministic."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from movseg_core.clip import (
    DENSE_MODES,
    DENSE_REFINES,
    DENSE_SCOPES,
    TEMPLATE_SETS,
    DenseConfig,
    cross_attention,
    dense_last_block,
    lof_outliers,
    lof_scores,
    neighbour_fill,
    pamr,
    patch_majority,
    resclip_last_block,
    scclip_last_block,
    scope_allow,
    sfr_attention,
)

from conftest import layer_norm64, random_clip

C, HEADS, GRID = 8, 2, (2, 3)
N = GRID[0] * GRID[1]


def _block(seed: int = 0):
    from open_clip.transformer import ResidualAttentionBlock

    torch.manual_seed(seed)
    block = ResidualAttentionBlock(C, HEADS, mlp_ratio=2.0, ls_init_value=0.7).eval()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape) * 0.5 + (1.0 if p.ndim == 1 and p.shape[0] == C else 0.0))
    return block


def _qkv64(block, d):
    """q, k, v (tokens x C, float64) of one image's tokens d, from explicit weight slices."""
    W, b = block.attn.in_proj_weight.double(), block.attn.in_proj_bias.double()
    h = layer_norm64(d, block.ln_1)
    return h @ W[:C].T + b[:C], h @ W[C:2 * C].T + b[C:2 * C], h @ W[2 * C:].T + b[2 * C:]


def _softmax_rows(m, allow=None):
    """Row softmax over the allowed entries only (explicit loops)."""
    out = torch.zeros_like(m)
    for i in range(m.shape[0]):
        js = [j for j in range(m.shape[1]) if (allow is None or allow[i][j]) and m[i, j] != -math.inf]
        mx = max(m[i, j] for j in js)
        z = sum(math.exp(m[i, j] - mx) for j in js)
        for j in js:
            out[i, j] = math.exp(m[i, j] - mx) / z
    return out


def _heads_out(block, mats, v):
    """out_proj of per-head attention matrices (list over heads) applied to v."""
    hd = C // HEADS
    o = torch.cat([mats[h] @ v[:, h * hd:(h + 1) * hd] for h in range(HEADS)], -1)
    return o @ block.attn.out_proj.weight.double().T + block.attn.out_proj.bias.double()


def _gauss(sigma, cls=True):
    coords = [divmod(i, GRID[1]) for i in range(N)]
    g = torch.zeros(N + cls, N + cls, dtype=torch.float64)
    for i in range(N):
        for j in range(N):
            d2 = (coords[i][0] - coords[j][0]) ** 2 + (coords[i][1] - coords[j][1]) ** 2
            g[i + cls, j + cls] = math.exp(-d2 / (2 * sigma ** 2))
    return g


LABELS = [0, 0, 1, 2, 1, 1]  # proposal per patch on the 2x3 grid


def _allow_ref(labels, cls=True):
    n = len(labels) + cls
    a = [[True] * n for _ in range(n)]
    for i in range(len(labels)):
        if cls:
            a[i + 1][0] = False
        for j in range(len(labels)):
            a[i + cls][j + cls] = labels[i] == labels[j]
    return a


# ---- proposal scope on the single-block modes ----------------------------------------------------
@pytest.mark.parametrize("mode", ["sclip", "clearclip", "naclip", "vanilla"])
def test_scoped_last_block_equals_attention_restricted_to_each_proposal(mode):
    block = _block()
    x = torch.randn(1, 1 + N, C)
    allow = scope_allow(torch.tensor([LABELS]))
    with torch.no_grad():
        ours = dense_last_block(block, x, mode, GRID, 1.5, allow)[0].double()
    d = x.double()[0]
    q, k, v = _qkv64(block, d)
    s, hd, ar = (C // HEADS) ** -0.5, C // HEADS, _allow_ref(LABELS)
    mats = []
    for h in range(HEADS):
        sl = slice(h * hd, (h + 1) * hd)
        qq, kk = s * q[:, sl] @ q[:, sl].T, s * k[:, sl] @ k[:, sl].T
        if mode == "sclip":
            mats.append(_softmax_rows(qq, ar) + _softmax_rows(kk, ar))
        elif mode == "clearclip":
            mats.append(_softmax_rows(qq, ar))
        elif mode == "naclip":
            mats.append(_softmax_rows(kk + _gauss(1.5), ar))
        else:
            mats.append(_softmax_rows(s * q[:, sl] @ k[:, sl].T, ar))
    o = _heads_out(block, mats, v)
    if mode in ("sclip", "vanilla"):
        g1, g2 = block.ls_1.gamma.double(), block.ls_2.gamma.double()
        y = d + g1 * o
        h1 = layer_norm64(y, block.ln_2) @ block.mlp.c_fc.weight.double().T + block.mlp.c_fc.bias.double()
        h1 = 0.5 * h1 * (1 + torch.erf(h1 / 2 ** 0.5))
        o = y + g2 * (h1 @ block.mlp.c_proj.weight.double().T + block.mlp.c_proj.bias.double())
    assert torch.allclose(ours, o, atol=1e-5), (ours - o).abs().max()
    with torch.no_grad():  # the scope really changes the result
        free = dense_last_block(block, x, mode, GRID, 1.5)[0].double()
    assert not torch.allclose(free, o, atol=1e-3)


def test_scope_allow_and_patch_majority():
    allow = scope_allow(torch.tensor([LABELS]))[0]
    assert allow.tolist() == _allow_ref(LABELS)
    seg = torch.zeros(6, 9, dtype=torch.long)
    seg[:, 4:] = 1  # cells are 3x3 px: cell column 1 holds px 3..5, two of them in segment 1
    seg[0:3, 0:3] = 2
    assert patch_majority(seg, (2, 3)).tolist() == [[2, 1, 1], [0, 1, 1]]


# ---- PAMR ------------------------------------------------------------------------------------------
def _pamr_ref(img, m, iters, dils):
    img, m = img.double()[0], m.double()[0]
    _, H, W = img.shape
    ring = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    clampy = lambda y: min(max(y, 0), H - 1)  # noqa: E731 (replicated border)
    clampx = lambda x: min(max(x, 0), W - 1)  # noqa: E731
    nbrs = [[[(clampy(y + dy * d), clampx(x + dx * d)) for d in dils for dy, dx in ring] for x in range(W)]
            for y in range(H)]
    aff = torch.zeros(H, W, len(dils) * 8, dtype=torch.float64)
    for y in range(H):
        for x in range(W):
            kap = torch.zeros(len(dils) * 8, dtype=torch.float64)
            for c in range(3):
                vals = [img[c, y, x].item()] * len(dils) + [img[c, yy, xx].item() for yy, xx in nbrs[y][x]]
                sd = float(np.std(vals, ddof=1))
                for p, (yy, xx) in enumerate(nbrs[y][x]):
                    kap[p] += -abs(img[c, y, x] - img[c, yy, xx]) / (1e-8 + 0.1 * sd) / 3
            aff[y, x] = torch.softmax(kap, 0)
    for _ in range(iters):
        new = torch.zeros_like(m)
        for y in range(H):
            for x in range(W):
                for p, (yy, xx) in enumerate(nbrs[y][x]):
                    new[:, y, x] += aff[y, x, p] * m[:, yy, xx]
        m = new
    return m


def test_pamr_equals_araslanov_roth_formulas():
    torch.manual_seed(1)
    img = torch.rand(1, 3, 5, 7)
    m = torch.randn(1, 2, 5, 7)
    ours = pamr(img, m, iters=3, dilations=(1, 2))[0].double()
    ref = _pamr_ref(img, m, 3, (1, 2))
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()
    # linear in the masks: refining features then scoring == refining the scores
    t = torch.randn(2, 4)
    lhs = torch.einsum("bkhw,kq->bqhw", pamr(img, m, 3, (1, 2)), t)
    assert torch.allclose(lhs, pamr(img, torch.einsum("bkhw,kq->bqhw", m, t), 3, (1, 2)), atol=1e-5)


# ---- SC-CLIP ---------------------------------------------------------------------------------------
def test_lof_equals_breunig_definition():
    torch.manual_seed(2)
    x = torch.randn(12, 3)
    x[5] += 6.0  # one far point
    k = 3
    xd = x.double()
    dist = [[float(torch.dist(xd[i], xd[j])) for j in range(12)] for i in range(12)]
    knn = [sorted((j for j in range(12) if j != i), key=lambda j: dist[i][j])[:k] for i in range(12)]
    kd = [dist[i][knn[i][-1]] for i in range(12)]
    lrd = [1.0 / (sum(max(kd[o], dist[p][o]) for o in knn[p]) / k) for p in range(12)]
    lof = [sum(lrd[o] for o in knn[p]) / k / lrd[p] for p in range(12)]
    assert np.allclose(lof_scores(x, k).numpy(), lof, atol=1e-5)
    assert lof_outliers(x, k, 0.05).nonzero().flatten().tolist() == [5]


def test_neighbour_fill_is_the_mean_of_normal_neighbours():
    f = torch.randn(1, N, 4)
    out = torch.zeros(1, N, dtype=torch.bool)
    out[0, 1] = out[0, 4] = True  # (0,1) and (1,1)
    got = neighbour_fill(f, out, GRID)[0]
    ref = f[0].clone()
    for i in (1, 4):
        r, c = divmod(i, GRID[1])
        nb = [rr * GRID[1] + cc for rr in range(r - 1, r + 2) for cc in range(c - 1, c + 2)
              if (rr, cc) != (r, c) and 0 <= rr < GRID[0] and 0 <= cc < GRID[1] and not out[0, rr * GRID[1] + cc]]
        ref[i] = f[0, nb].mean(0)
    assert torch.allclose(got, ref, atol=1e-6)


def _scclip_ref(block, x, f_pre, f_post, multi, outl, beta, res_cls, labels=None):
    """SC-CLIP written out: anomaly fill, similarity-guided aggregation, attention, fusion (float64)."""
    x, f_pre, f_post = x.double()[0], f_pre.double()[0], f_post.double()[0]
    ar = None if labels is None else [row[1:] for row in _allow_ref(labels)[1:]]

    def fill(t):
        t = t.clone()
        for i in range(N):
            if outl[i]:
                r, c = divmod(i, GRID[1])
                nb = [rr * GRID[1] + cc for rr in range(r - 1, r + 2) for cc in range(c - 1, c + 2)
                      if (rr, cc) != (r, c) and 0 <= rr < GRID[0] and 0 <= cc < GRID[1] and not outl[rr * GRID[1] + cc]]
                if nb:
                    t[i] = t[nb].mean(0)
        return t

    def cos(t):
        t = t / t.norm(dim=-1, keepdim=True)
        return t @ t.T

    def agg(sim, t):
        w = torch.where(sim >= beta, sim, torch.zeros_like(sim))
        if ar is not None:
            w = w * torch.tensor(ar, dtype=torch.float64)
        return (w / (w.sum(-1, keepdim=True) + 1e-6)) @ t

    p = fill(x[1:])
    mid = cos(fill(f_pre[1:]))
    after = cos(f_post[1:])
    p = agg(mid, p)
    mm = 3.0 * (mid - mid.mean())
    mm[mm < 0] = -math.inf

    def att(t, cls):
        q, k, v = _qkv64(block, t)
        s, hd = (C // HEADS) ** -0.5, C // HEADS
        kh = [k[:, h * hd:(h + 1) * hd] for h in range(HEADS)]
        mats = [(_softmax_rows(mm, ar) + _softmax_rows(s * kh[h] @ kh[h].T, ar)) / 2
                for h in range(HEADS)]
        return _heads_out(block, mats, v) + res_cls * cls

    out = agg(after, att(p, x[0]))
    if multi is not None:
        mu = multi.double()[0]
        out = out + agg(after, att(mu[1:], mu[0]))
    return out


@pytest.mark.parametrize("scoped", [False, True])
@pytest.mark.parametrize("multilevel", [False, True])
def test_scclip_equals_the_papers_steps_on_a_fixed_block(scoped, multilevel):
    block = _block(3)
    torch.manual_seed(4)
    x, f_pre, f_post, multi = (torch.randn(1, 1 + N, C) for _ in range(4))
    outl = [False, False, False, False, True, False]
    allow = scope_allow(torch.tensor([LABELS])) if scoped else None
    with torch.no_grad():
        ours = scclip_last_block(block, x, f_pre, f_post, multi if multilevel else None, GRID, beta=0.1, res_cls=0.3,
                                 allow=allow, outliers=torch.tensor([outl]))[0, 1:].double()
    ref = _scclip_ref(block, x, f_pre, f_post, multi if multilevel else None, outl, 0.1, 0.3,
                      LABELS if scoped else None)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


# ---- ResCLIP ---------------------------------------------------------------------------------------
def test_cross_attention_is_the_mean_of_intermediate_query_key_attention():
    blocks = [_block(5), _block(6)]
    xs = [torch.randn(1, 1 + N, C), torch.randn(1, 1 + N, C)]
    with torch.no_grad():
        ours = cross_attention(blocks, xs)[0].double()
    s, hd = (C // HEADS) ** -0.5, C // HEADS
    ref = []
    for h in range(HEADS):
        acc = 0
        for blk, t in zip(blocks, xs):
            q, k, _ = _qkv64(blk, t.double()[0])
            acc = acc + _softmax_rows(s * q[:, h * hd:(h + 1) * hd] @ k[:, h * hd:(h + 1) * hd].T)
        ref.append(acc / 2)
    assert torch.allclose(ours, torch.stack(ref), atol=1e-5)


def _sfr_ref(lab, sigma):
    gh, gw = lab.shape
    n = gh * gw
    pts = [divmod(i, gw) for i in range(n)]
    steps = [[max(abs(pts[i][0] - pts[j][0]), abs(pts[i][1] - pts[j][1])) for j in range(n)] for i in range(n)]
    smax = max(max(r) for r in steps)
    m = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            same = lab[pts[i]] == lab[pts[j]] or i == j
            if not same:
                continue
            ok = True
            for st in range(steps[i][j] + 1):  # walk the straight line i -> j
                t = st / steps[i][j] if steps[i][j] else 0.0
                y = math.floor(pts[i][0] + (pts[j][0] - pts[i][0]) * t + 0.5)
                x = math.floor(pts[i][1] + (pts[j][1] - pts[i][1]) * t + 0.5)
                ok &= bool(lab[y, x] == lab[pts[i]])
            m[i, j] = 1.0 if ok else math.exp(-steps[i][j] / smax)
    ks = min(n, int(6 * sigma + 1))
    ks += 1 - ks % 2
    g = [math.exp(-((t - ks // 2) ** 2) / (2 * sigma ** 2)) for t in range(ks)]
    g = [v / sum(g) for v in g]
    b = torch.zeros_like(m)
    for i in range(n):
        for j in range(n):
            b[i, j] = max(0.0, sum(g[t] * m[i, j + t - ks // 2] for t in range(ks) if 0 <= j + t - ks // 2 < n))
        b[i] /= b[i].sum() + 1e-8
    out = torch.zeros(n + 1, n + 1, dtype=torch.float64)
    out[1:, 1:] = b
    return out / out.max()


def test_sfr_attention_equals_same_class_connected_decay_blur():
    lab = torch.tensor([[0, 0, 1, 0], [2, 0, 1, 0], [2, 2, -1, 0]])  # class 0 split in two by class 1
    ours = sfr_attention(lab[None], sigma=0.8)[0].double()
    ref = _sfr_ref(lab, 0.8)
    assert torch.allclose(ours, ref, atol=1e-6), (ours - ref).abs().max()
    assert ours[1 + 0, 1 + 3] < ours[1 + 0, 1 + 1]  # same class, disconnected: decayed


@pytest.mark.parametrize("base", ["naclip", "clearclip"])
@pytest.mark.parametrize("scoped", [False, True])
def test_resclip_equals_rcs_and_sfr_formulas_on_a_fixed_block(base, scoped):
    block = _block(7)
    torch.manual_seed(8)
    x = torch.randn(1, 1 + N, C)
    cross = torch.softmax(torch.randn(1, HEADS, 1 + N, 1 + N), -1)
    sfr = sfr_attention(torch.tensor([[[0, 0, 1], [1, 1, 1]]]), 1.0)
    allow = scope_allow(torch.tensor([LABELS])) if scoped else None
    ar = _allow_ref(LABELS) if scoped else None
    with torch.no_grad():
        ours = resclip_last_block(block, x, cross, GRID, base, 1.5, (2.0, 0.3), sfr, (2.1, 0.7), allow)[0].double()
    q, k, v = _qkv64(block, x.double()[0])
    s, hd = (C // HEADS) ** -0.5, C // HEADS
    mats = []
    for h in range(HEADS):
        sl = slice(h * hd, (h + 1) * hd)
        raw = s * (k[:, sl] @ k[:, sl].T if base == "naclip" else q[:, sl] @ q[:, sl].T)
        lg = 2.1 * (0.3 * raw + 0.7 * sfr[0].double())
        if base == "naclip":
            lg = lg + _gauss(1.5)
        ac = cross[0, h].double()
        if ar is not None:
            ac = ac * torch.tensor(ar, dtype=torch.float64)
            ac = ac / ac.sum(-1, keepdim=True)
        mats.append(2.0 * (0.7 * _softmax_rows(lg, ar) + 0.3 * ac))
    ref = _heads_out(block, mats, v)
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


# ---- end to end: every mode, scope and refinement; determinism -------------------------------------
def _tiny(seed=0):
    return random_clip("movseg-tiny-vit-p8", seed=seed)


def test_every_mode_scope_and_refine_is_deterministic_with_random_weights():
    a, b = _tiny(), _tiny()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (48, 64, 3)).astype(np.uint8)
    seg = np.zeros((48, 64), np.int32)
    seg[:, 40:] = 1
    seg[30:, :20] = 2
    text = a.text_embeddings(["red", "green", "blue"])
    for mode in DENSE_MODES:
        for scope in DENSE_SCOPES:
            for refine in DENSE_REFINES:
                cfg = DenseConfig(mode=mode, short_side=48, scope=scope, refine=refine, pamr_short_side=24,
                                  resclip_threshold=0.0)
                f1 = a.dense_features(img, cfg, segments=seg, text=text)
                f2 = a.dense_features(img, cfg, segments=seg, text=text)
                f3 = b.dense_features(img, cfg, segments=seg, text=text)
                assert torch.isfinite(f1).all() and torch.equal(f1, f2) and torch.equal(f1, f3), (mode, scope, refine)
                assert torch.allclose(f1.norm(dim=0), torch.ones(()), atol=1e-4)
                win = dataclass_replace(cfg, window=32, stride=16)
                assert a.dense_features(img, win, segments=seg, text=text).shape == f1.shape
    with pytest.raises(ValueError, match="needs the frame's proposals"):
        a.dense_features(img, DenseConfig(scope="proposals"))
    for bad in ({"scope": "masks"}, {"refine": "crf"}, {"mode": "corrclip"}):
        with pytest.raises(ValueError):
            DenseConfig(**bad)


def dataclass_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_imagenet80_templates():
    t = TEMPLATE_SETS["imagenet80"]
    assert len(t) == 80 == len(set(t)) and all(s.count("{}") == 1 for s in t)
    assert t[0] == "a bad photo of a {}." and t[-1] == "a tattoo of the {}."
