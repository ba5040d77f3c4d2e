"""movseg_core.clip: loading through open_clip, text cache, dense features (tiny random models)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from movseg_core.clip import (
    BLOCK_MODES,
    DENSE_MODES,
    TINY_MODEL_CONFIGS,
    ClipConfig,
    ClipModel,
    DenseConfig,
    WeightsUnavailableError,
    create_clip,
    encode_text_trimmed,
    interpolate_pos_embed,
    load_visual_weights,
    register_tiny_configs,
    resolve_templates,
    window_origins,
)

from conftest import layer_norm64, random_clip

TINY = "movseg-tiny-vit"


@pytest.fixture(scope="module")
def clip() -> ClipModel:
    return random_clip(TINY, seed=0)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.zeros((96, 128, 3), np.uint8)
    img[:, :64] = (200, 30, 30)
    img[:, 64:] = (20, 180, 60)
    return np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)


def test_tiny_configs_registered_with_open_clip():
    names = register_tiny_configs()
    assert set(names) == set(TINY_MODEL_CONFIGS)
    assert set(names) <= set(open_clip.list_models())
    cfg = open_clip.get_model_config(TINY)
    assert cfg["vision_cfg"]["patch_size"] == TINY_MODEL_CONFIGS[TINY]["vision_cfg"]["patch_size"]


def test_registered_configs_leave_nothing_behind_when_the_process_exits(tmp_path):
    # every node start and test process registers configs; their folder must go with the process
    code = ("import open_clip; from movseg_core.clip import register_tiny_configs, register_model_config;"
            "register_tiny_configs(); register_model_config('movseg-extra', {'embed_dim': 8, 'vision_cfg': {},"
            " 'text_cfg': {}}); assert 'movseg-tiny-vit' in open_clip.list_models()")
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert list(tmp_path.iterdir()) == []
    # a process killed with SIGKILL runs no atexit: the next process removes its folder
    suicide = "; import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    killed = subprocess.Popen([sys.executable, "-c", code + suicide], env=env)
    killed.wait(timeout=120)
    prefix = "movseg_open_clip_configs_"  # then "<pid>_<mkdtemp suffix, which may hold '_'>"
    assert [p.name[len(prefix):].split("_")[0] for p in tmp_path.iterdir()] == [str(killed.pid)]
    (tmp_path / "movseg_open_clip_configs_1").mkdir()  # pid 1 is alive: not an orphan
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert [p.name for p in tmp_path.iterdir()] == ["movseg_open_clip_configs_1"]


def test_random_init_warns_loudly():
    with pytest.warns(RuntimeWarning, match="RANDOMLY INITIALISED"):
        create_clip(ClipConfig(model_name=TINY, pretrained="random", device="cpu"))


def test_checkpoint_from_tiny_model_loads_through_real_loader(tmp_path, clip):
    path = tmp_path / "tiny.bin"
    torch.save(clip.model.state_dict(), path)
    loaded = create_clip(ClipConfig(model_name=TINY, pretrained=str(path), device="cpu"))
    for (k, a), (_, b) in zip(clip.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), k
    q = ["a red mug", "a green plant"]
    assert torch.allclose(clip.text_embeddings(q), loaded.text_embeddings(q), atol=1e-6)


def test_local_dir_schema_loads(tmp_path, clip):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_MODEL_CONFIGS[TINY]}))
    torch.save(clip.model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    loaded = create_clip(ClipConfig(model_name=f"local-dir:{tmp_path}", pretrained="", device="cpu"))
    assert torch.equal(loaded.model.visual.proj, clip.model.visual.proj)


def test_offline_tag_fails_at_once_with_instructions():
    # HF_HUB_OFFLINE=1 (conftest) and no cached weights: no retries, a message saying what to do.
    with pytest.raises(WeightsUnavailableError, match="checkpoint file"):
        create_clip(ClipConfig(model_name="ViT-B-16", pretrained="openai", device="cpu",
                               cache_dir="/nonexistent-movseg-cache"))


def test_missing_file_unknown_tag_unknown_model(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        create_clip(ClipConfig(model_name=TINY, pretrained=str(tmp_path / "missing.bin"), device="cpu"))
    with pytest.raises(ValueError, match="unknown pretrained tag"):
        create_clip(ClipConfig(model_name="ViT-B-16", pretrained="no-such-tag", device="cpu"))
    with pytest.raises(ValueError, match="unknown open_clip model"):
        create_clip(ClipConfig(model_name="ViT-Nope-99", pretrained="random", device="cpu"))


def test_text_cache_hits_and_prompt_ensemble(clip):
    cache = clip.text_cache
    h0, m0 = cache.hits, cache.misses
    e1 = clip.text_embeddings(["chair", "sofa"])
    assert (cache.hits - h0, cache.misses - m0) == (0, 2)
    e2 = clip.text_embeddings(["sofa", "lamp", "chair"])
    assert (cache.hits - h0, cache.misses - m0) == (2, 3)
    assert torch.equal(e2[0], e1[1]) and torch.equal(e2[2], e1[0])
    assert torch.allclose(e2.norm(dim=-1), torch.ones(3), atol=1e-5)
    # The ensemble is the normalised mean of normalised per-template embeddings.
    with torch.no_grad():
        tok = clip.tokenizer([t.format("lamp") for t in clip.templates])
        per = F.normalize(clip.model.encode_text(tok).float(), dim=-1)
    assert torch.allclose(e2[1], F.normalize(per.mean(0), dim=0), atol=1e-5)


def test_trimmed_text_encoder_equals_open_clip(clip):
    tok = clip.tokenizer(["a photo of a chair.", "a very long description of a small wooden kitchen table"])
    with torch.no_grad():
        ref = clip.model.encode_text(tok)
        ours = encode_text_trimmed(clip.model, tok)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_templates_validation():
    assert len(resolve_templates("indoor")) > 1
    assert resolve_templates(["a {} here"]) == ("a {} here",)
    for bad in ("nope", [], ["no placeholder"], ["{} and {}"]):
        with pytest.raises(ValueError):
            resolve_templates(bad)


def test_interpolate_pos_embed_keeps_cls_and_linear_ramps():
    gh, gw, c = 4, 4, 2
    ys, xs = torch.meshgrid(torch.arange(gh).float(), torch.arange(gw).float(), indexing="ij")
    grid = torch.stack([ys, xs], -1).reshape(-1, c)
    pos = torch.cat([torch.tensor([[7.0, -7.0]]), grid])
    assert interpolate_pos_embed(pos, (gh, gw), (gh, gw)) is pos
    out = interpolate_pos_embed(pos, (gh, gw), (8, 6))
    assert out.shape == (1 + 8 * 6, c)
    assert torch.equal(out[0], pos[0])
    g = out[1:].reshape(8, 6, c)
    # a ramp stays monotonic along its axis and constant across the other
    assert torch.all(g[1:, :, 0] >= g[:-1, :, 0] - 1e-5) and torch.allclose(g[:, 0, 0], g[:, -1, 0], atol=1e-5)
    assert torch.all(g[:, 1:, 1] >= g[:, :-1, 1] - 1e-5)


def test_vanilla_dense_matches_open_clip_tokens(clip):
    # At the native size the dense path with the unchanged block reproduces open_clip's own tokens.
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    ours = clip.dense_features(img, DenseConfig(mode="vanilla", short_side=64))
    v = clip.model.visual
    v.output_tokens = True
    try:
        with torch.no_grad():
            _, tokens = v(clip.to_tensor(img))
    finally:
        v.output_tokens = False
    ref = F.normalize(tokens @ v.proj, dim=-1)[0].T.reshape(ours.shape)
    assert torch.allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("mode", DENSE_MODES)
def test_dense_modes_shape_and_norm(clip, image, mode):
    feats = clip.dense_features(image, DenseConfig(mode=mode, short_side=96))
    h, w = clip.dense_input_size(96, 128, 96)
    assert feats.shape == (clip.embed_dim, h // clip.patch, w // clip.patch)
    assert torch.allclose(feats.norm(dim=0), torch.ones(feats.shape[1:]), atol=1e-4)


def test_dense_modes_differ(clip, image):
    f = {m: clip.dense_features(image, DenseConfig(mode=m, short_side=96)) for m in DENSE_MODES}
    for a in DENSE_MODES:
        for b in DENSE_MODES:
            if a < b:
                assert not torch.allclose(f[a], f[b], atol=1e-3), (a, b)


def test_sliding_windows(clip, image):
    whole = clip.dense_features(image, DenseConfig(short_side=96))
    big = clip.dense_features(image, DenseConfig(short_side=96, window=512))
    assert torch.allclose(whole, big, atol=1e-5)  # one window covering everything = whole image
    slid = clip.dense_features(image, DenseConfig(short_side=96, window=64, stride=32))
    assert slid.shape == whole.shape and torch.isfinite(slid).all()
    one_by_one = clip.dense_features(image, DenseConfig(short_side=96, window=64, stride=32, batch_windows=False))
    assert torch.allclose(slid, one_by_one, atol=1e-5)


def test_window_origins_cover_and_end_flush():
    assert window_origins(100, 200, 50) == [0]
    o = window_origins(100, 40, 30)
    assert o[0] == 0 and o[-1] == 60 and all(b - a <= 30 for a, b in zip(o, o[1:]))


def test_dense_config_validation():
    with pytest.raises(ValueError, match="dense mode"):
        DenseConfig(mode="magic")
    with pytest.raises(ValueError):
        DenseConfig(short_side=0)


def test_load_visual_weights(tmp_path, clip):
    torch.manual_seed(3)
    other = random_clip()
    path = tmp_path / "x_visual.pt"
    torch.save({f"visual.{k}": v for k, v in other.model.visual.state_dict().items()}, path)
    visual = load_visual_weights(clip, path)
    assert torch.equal(visual.proj, other.model.visual.proj)
    assert not torch.equal(visual.proj, clip.model.visual.proj)
    with pytest.raises(WeightsUnavailableError):
        load_visual_weights(clip, tmp_path / "missing.pt")
    wrong = random_clip("movseg-tiny-vit-p8")
    torch.save(wrong.model.visual.state_dict(), tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="not a visual-tower state dict"):
        load_visual_weights(clip, tmp_path / "wrong.pt")


class _OwnAttention(torch.nn.Module):
    """Attention with separate q/k/v projections: a block type the adapter does not know (as in open_clip main)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.num_heads = heads
        self.q, self.k, self.v, self.out = (torch.nn.Linear(width, width) for _ in range(4))

    def forward(self, x, *args, **kwargs):
        return self.out(torch.nn.functional.scaled_dot_product_attention(self.q(x), self.k(x), self.v(x)))


def test_open_clip_adapter_refuses_other_block_types_with_a_clear_message():
    import copy

    from movseg_core.clip import OpenClipVision, UnsupportedOpenClipError, dense_last_block
    from movseg_core.training.prompt_tuning import MaskPromptCLIP
    from movseg_core.training.tiny_clip import image_forward

    good = random_clip()
    model = copy.deepcopy(good.model)
    blk = model.visual.transformer.resblocks[-1]
    blk.attn = _OwnAttention(64, 2)
    expected = r"ResidualAttentionBlock built on torch\.nn\.MultiheadAttention.*_OwnAttention|_OwnAttention.*" \
               r"ResidualAttentionBlock built on torch\.nn\.MultiheadAttention"
    for build in (lambda: ClipModel(ClipConfig(model_name=TINY, pretrained="random", device="cpu"), model=model),
                  lambda: OpenClipVision(model.visual),
                  lambda: MaskPromptCLIP(model),
                  lambda: image_forward(model, torch.zeros(1, 3, 64, 64), "clearclip"),
                  lambda: dense_last_block(blk, torch.zeros(1, 17, 64), "maskclip", (4, 4))):
        with pytest.raises(UnsupportedOpenClipError, match=expected):
            build()
    assert issubclass(UnsupportedOpenClipError, ValueError)
    OpenClipVision(good.model.visual)  # the installed open_clip's own blocks are accepted


def test_open_clip_adapter_encode_equals_open_clip_at_the_native_size(clip):
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(clip.vision.encode(x), clip.model.encode_image(x), atol=1e-5)
        assert clip.vision.encode(torch.randn(1, 3, 96, 80)).shape == (1, clip.embed_dim)  # pos interpolated


def _paper_last_block(block, x: torch.Tensor, mode: str, grid: tuple[int, int], sigma: float) -> torch.Tensor:
    """The papers' last-block formulas written out token by token, head by head, in float64.

    Independent of movseg_core.clip: q/k/v from explicit weight slices, LayerNorm by hand, Gaussian
    from explicit patch coordinates.
    """
    d = x.double()[0]  # (1+N) x C
    n, c = d.shape
    heads = block.attn.num_heads
    hd = c // heads
    W, b = block.attn.in_proj_weight.double(), block.attn.in_proj_bias.double()
    Wo, bo = block.attn.out_proj.weight.double(), block.attn.out_proj.bias.double()

    def ffn(t):
        h = t @ block.mlp.c_fc.weight.double().T + block.mlp.c_fc.bias.double()
        h = 0.5 * h * (1.0 + torch.erf(h / 2 ** 0.5))  # exact GELU
        return h @ block.mlp.c_proj.weight.double().T + block.mlp.c_proj.bias.double()

    g1 = block.ls_1.gamma.double() if hasattr(block.ls_1, "gamma") else 1.0
    g2 = block.ls_2.gamma.double() if hasattr(block.ls_2, "gamma") else 1.0
    h = layer_norm64(d, block.ln_1)
    q, k, v = h @ W[:c].T + b[:c], h @ W[c:2 * c].T + b[c:2 * c], h @ W[2 * c:].T + b[2 * c:]
    coords = [(None, None)] + [divmod(i, grid[1]) for i in range(grid[0] * grid[1])]
    omega = torch.zeros(n, n, dtype=torch.float64)
    for i in range(1, n):
        for j in range(1, n):
            dist2 = (coords[i][0] - coords[j][0]) ** 2 + (coords[i][1] - coords[j][1]) ** 2
            omega[i, j] = np.exp(-dist2 / (2 * sigma ** 2))
    outs = []
    for hh in range(heads):
        sl = slice(hh * hd, (hh + 1) * hd)
        qh, kh, vh = q[:, sl], k[:, sl], v[:, sl]
        s = hd ** -0.5
        if mode == "maskclip":        # MaskCLIP: each token takes its own value
            a = torch.eye(n, dtype=torch.float64)
        elif mode == "sclip":         # SCLIP: correlative self-attention
            a = torch.softmax(s * qh @ qh.T, -1) + torch.softmax(s * kh @ kh.T, -1)
        elif mode == "clearclip":     # ClearCLIP: query-query attention
            a = torch.softmax(s * qh @ qh.T, -1)
        else:                         # NACLIP: key-key attention + Gaussian neighbourhood kernel
            a = torch.softmax(s * kh @ kh.T + omega, -1)
        outs.append(a @ vh)
    o = torch.cat(outs, -1) @ Wo.T + bo
    if mode in ("maskclip", "sclip"):  # residual and FFN kept
        y = d + g1 * o
        return (y + g2 * ffn(layer_norm64(y, block.ln_2)))[None]
    return o[None]                     # ClearCLIP / NACLIP: no residual, no FFN


@pytest.mark.parametrize("mode", ["maskclip", "sclip", "clearclip", "naclip"])
def test_dense_modes_equal_the_papers_formulas_on_a_fixed_block(mode):
    from open_clip.transformer import ResidualAttentionBlock

    from movseg_core.clip import dense_last_block

    torch.manual_seed(0)
    block = ResidualAttentionBlock(8, 2, mlp_ratio=2.0, ls_init_value=0.7).eval()
    with torch.no_grad():
        for p in block.parameters():  # fixed, non-trivial weights (LayerNorm gains and biases included)
            p.copy_(torch.randn(p.shape) * 0.5 + (1.0 if p.ndim == 1 and p.shape[0] == 8 else 0.0))
    grid = (2, 3)
    x = torch.randn(1, 1 + 6, 8)
    with torch.no_grad():
        ours = dense_last_block(block, x, mode, grid, naclip_sigma=1.5)
    ref = _paper_last_block(block, x, mode, grid, 1.5)
    assert torch.allclose(ours.double(), ref, atol=1e-5), (ours - ref).abs().max()
    # the variants are really different on this block (no test passes by accident)
    others = {m: dense_last_block(block, x, m, grid, naclip_sigma=1.5) for m in BLOCK_MODES if m != mode}
    assert all(not torch.allclose(ours, o, atol=1e-3) for o in others.values())
