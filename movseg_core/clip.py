"""open_clip wrapper: model factory, text-embedding cache and dense (per-patch) image features.

Weights are resolved the way open_clip resolves them for real users:

- ``pretrained="<tag>"`` (e.g. ``ViT-B-16`` + ``openai``): downloaded once and cached by
  open_clip / huggingface_hub (``cache_dir`` or the hub's default cache);
- ``pretrained="/path/to/checkpoint.{pt,bin,safetensors}"``: a local open_clip state dict;
- ``model_name="local-dir:/folder"`` / ``"hf-hub:org/repo"``: open_clip's schemas;
- ``pretrained="random"``: random initialisation, ONLY for tests and speed benchmarks (loud warning).

When weights cannot be obtained (offline, ``HF_HUB_OFFLINE=1``, missing file) :func:`create_clip`
fails at once with :class:`WeightsUnavailableError` saying how to provide them.

Dense features: one ViT pass per window in which the last transformer block is replaced by a
training-free variant (MaskCLIP, SCLIP, ClearCLIP, NACLIP, SC-CLIP or ResCLIP, see
:data:`DENSE_MODES`); the positional embedding is interpolated to the window's patch grid; windows
slide over the image resized to a configurable short side and overlapping patch features are
averaged. Options composable with every mode: ``scope="proposals"`` restricts the last block's
attention (and every correlation the mode computes) to patches of the same RGB-D proposal
(CorrCLIP-style, with the segmenter's own proposals), ``refine="pamr"`` applies pixel-adaptive
mask refinement (Araslanov & Roth, CVPR 2020) to the features on the image.
"""
from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from movseg_core.config import resolve_device

log = logging.getLogger(__name__)

#: Training-free changes of the last ViT block for dense features (as in each paper's code):
#: maskclip: attention replaced by the value path: y = x + out_proj(v), then the FFN (Zhou et al., ECCV 2022).
#: sclip: correlative attention softmax(qq^T)+softmax(kk^T), residual and FFN kept (Wang et al., ECCV 2024).
#: clearclip: query-query attention, no residual, no FFN (Lan et al., ECCV 2024).
#: naclip: key-key attention plus a Gaussian neighbourhood kernel, no residual, no FFN (Hajimiri et al., WACV 2025).
#: scclip: SC-CLIP (Bai et al., arXiv 2411.15869, 2024): anomaly tokens resolved, mid-layer similarity
#:     guided attention and aggregation, multi-level fusion (see :func:`scclip_last_block`).
#: resclip_naclip / resclip_clearclip: ResCLIP (Yang et al., CVPR 2025) on NACLIP / ClearCLIP: residual
#:     cross-correlation attention from intermediate layers + semantic feedback refinement (see
#:     :func:`resclip_last_block`; needs the query text embeddings for the feedback, else RCS only).
#: vanilla: the unchanged block (CLIP's own patch tokens; a poor dense baseline, for measurement).
DENSE_MODES = ("maskclip", "sclip", "clearclip", "naclip", "scclip", "resclip_naclip", "resclip_clearclip", "vanilla")
#: Modes that change only the last block (usable through :meth:`OpenClipVision.last_block`); the
#: others also read intermediate layers.
BLOCK_MODES = ("maskclip", "sclip", "clearclip", "naclip", "vanilla")
#: ``dense.scope``: none, or proposals (last-block attention only between patches of one proposal).
DENSE_SCOPES = ("none", "proposals")
#: ``dense.refine``: none, or pamr (pixel-adaptive refinement of the features on the image).
DENSE_REFINES = ("none", "pamr")

#: The 80 ImageNet prompt templates of the CLIP paper (Radford et al. 2021, the notebook
#: "Prompt_Engineering_for_ImageNet.ipynb" of github.com/openai/CLIP), the set MaskCLIP, SCLIP,
#: ClearCLIP, NACLIP, SC-CLIP and ResCLIP evaluate with (their ``openai_imagenet_template``).
IMAGENET_TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
)

#: Prompt-template sets by name; a custom list of strings with ``{}`` may be given instead.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "single": ("a photo of a {}.",),
    "indoor": (
        "a photo of a {}.",
        "a photo of the {}.",
        "a photo of a {} in the scene.",
        "there is a {} in the scene.",
        "a cropped photo of the {}.",
        "a close-up photo of the {}.",
        "a photo of the large {}.",
        "a photo of the small {}.",
    ),
    "imagenet_simple": (
        "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
        "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
    ),
    "imagenet80": IMAGENET_TEMPLATES,
}

#: Tiny open_clip architectures for tests (fast on CPU). ``movseg-synth-clip`` is the architecture
#: of the trained synthetic-scene stand-in ``test/fixtures/synth_clip.pt``
#: (see :mod:`movseg_core.training.tiny_clip`); the others are used with random weights only.
TINY_MODEL_CONFIGS: dict[str, dict] = {
    "movseg-synth-clip": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 48, "layers": 4, "width": 64, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 3},
    },
    "movseg-tiny-vit": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "movseg-tiny-vit-p8": {
        "embed_dim": 48,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 48, "head_width": 24, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 2, "layers": 1},
    },
}

_REGISTER_LOCK = threading.Lock()
_REGISTERED: set[str] = set()
_CONFIG_FOLDER: Path | None = None
_CONFIG_PREFIX = "movseg_open_clip_configs_"


def _config_folder() -> Path:
    """This process's folder of registered configs (``<prefix><pid>_<unique>``), removed when the process exits.

    open_clip re-reads every registered path whenever another config is added, so the files must
    outlive registration; one folder per process, so nothing is left in the temp dir after a node or
    test run ends (the pid in the name lets a later process remove the folder of one killed outright).
    """
    global _CONFIG_FOLDER
    if _CONFIG_FOLDER is None or not _CONFIG_FOLDER.is_dir():
        _remove_orphaned_config_folders()
        _CONFIG_FOLDER = Path(tempfile.mkdtemp(prefix=f"{_CONFIG_PREFIX}{os.getpid()}_"))
        atexit.register(shutil.rmtree, _CONFIG_FOLDER, True)
    return _CONFIG_FOLDER


def _remove_orphaned_config_folders() -> None:
    """Config folders of processes that are gone (killed with SIGKILL, so no atexit ran): removed."""
    if not Path("/proc/self").exists():
        return  # no /proc to tell the living from the gone: leave them all
    for folder in Path(tempfile.gettempdir()).glob(f"{_CONFIG_PREFIX}*"):
        pid = folder.name[len(_CONFIG_PREFIX):].split("_")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(folder, ignore_errors=True)


class WeightsUnavailableError(RuntimeError):
    """CLIP weights could not be found or downloaded; the message says how to provide them."""


def register_model_config(name: str, cfg: dict) -> None:
    """Add an open_clip architecture config under ``name`` (open_clip's own registry).

    The config is written as ``<name>.json`` into a per-process temporary folder (removed at exit) handed to
    ``open_clip.add_model_config``, so ``open_clip.create_model(name)`` works afterwards.
    """
    if not all(k in cfg for k in ("embed_dim", "vision_cfg", "text_cfg")):
        raise ValueError(f"model config {name!r} needs embed_dim, vision_cfg and text_cfg")
    with _REGISTER_LOCK:
        if name in _REGISTERED and name in open_clip.list_models():
            return
        path = _config_folder() / f"{name}.json"
        path.write_text(json.dumps(cfg))
        open_clip.add_model_config(path)
        _REGISTERED.add(name)


def register_tiny_configs() -> list[str]:
    """Register :data:`TINY_MODEL_CONFIGS` with open_clip; returns their names."""
    for name, cfg in TINY_MODEL_CONFIGS.items():
        register_model_config(name, cfg)
    return list(TINY_MODEL_CONFIGS)


@dataclass
class ClipConfig:
    """Which CLIP to load and how to run it.

    model_name: open_clip architecture (``ViT-B-16``), or ``local-dir:``/``hf-hub:`` schema.
    pretrained: open_clip tag (``openai``, ``laion2b_s34b_b88k``...), a checkpoint file path, or
        ``random`` (tests/benchmarks only).
    cache_dir: download cache (None or "" = open_clip/huggingface default).
    device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
    precision: ``auto`` (fp16 autocast on CUDA, fp32 on CPU), ``fp32``, ``fp16`` (CUDA only) or ``bf16``
        (bfloat16 autocast of the image side on CPU or CUDA: worth it on CPUs with AVX512-BF16 or AMX;
        softmaxes stay fp32). The text side always runs in fp32 (encoded once per query).
    templates: a :data:`TEMPLATE_SETS` name or a list of templates containing ``{}``.
    simulated_ms: > 0 replaces every forward pass by a wait of this many ms that uses no CPU (a GPU
        stand-in for benchmarks, :mod:`movseg_core.gpu_standin`; labels are meaningless); 0 = the model.
    torch_compile: ``torch.compile`` the dense pass (compiled once per input size on first use; see
        docs/segmenter.md "Backends" for when it pays).
    """

    model_name: str = "ViT-B-16"
    pretrained: str = "openai"
    cache_dir: str | None = None
    device: str = "auto"
    precision: str = "auto"
    templates: str | list[str] = "indoor"
    simulated_ms: float = 0.0
    torch_compile: bool = False


#: ``clip.precision`` values.
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass
class DenseConfig:
    """Dense feature extraction.

    mode: one of :data:`DENSE_MODES`; default ``scclip``, the best published CLIP-only method
        implemented here (docs/segmenter.md "Dense modes").
    short_side: the image is resized so its short side is this many pixels (then snapped to the
        patch grid); 448 for ViT-B/16 gives a 28-patch short side.
    window: sliding-window side in pixels (multiple of the patch size); 0 = whole image in one pass.
    stride: window stride in pixels (multiple of the patch size); 0 = window * 2/3.
    naclip_sigma: NACLIP Gaussian neighbourhood standard deviation, in patches (also ResCLIP's, whose
        code uses one ``gaussian_std`` for the neighbourhood term and the feedback smoothing).
    batch_windows: run all windows of an image as one batch.
    scope: ``none`` or ``proposals``: the last block's attention, and every correlation the mode
        computes, only between patches of the same RGB-D proposal (a patch belongs to the proposal
        holding most of its pixels); the segmenter computes proposals first and shares them.
    refine: ``none`` or ``pamr``: pixel-adaptive mask refinement of the features on the image
        (:func:`pamr`), at ``pamr_short_side`` pixels with ``pamr_iters`` iterations and
        ``pamr_dilations`` (pixels at that size); the features come back on that pixel grid.
    scclip_beta / scclip_res_cls / scclip_multilevel: SC-CLIP's similarity threshold (0.4), class-token
        residual weight (0.3) and multi-level fusion switch (see :func:`scclip_last_block`).
    resclip_rcs_tau / resclip_rcs_lambda, resclip_sfr_tau / resclip_sfr_lambda: ResCLIP's (tau, lambda) of
        RCS and SFR (ADE20K config: (2.0, 0.3), (2.1, 0.7)); resclip_threshold: confidence below which
        a pixel of the feedback map has no class (0.25); resclip_logit_scale: its softmax scale (40);
        resclip_pamr: PAMR (10 iterations, dilations 8 and 16) on the feedback map, as ResCLIP's code does.
    """

    mode: str = "scclip"
    short_side: int = 448
    window: int = 0
    stride: int = 0
    naclip_sigma: float = 5.0
    batch_windows: bool = True
    scope: str = "none"
    refine: str = "none"
    pamr_iters: int = 10
    pamr_short_side: int = 224
    pamr_dilations: list[int] = field(default_factory=lambda: [4, 8])
    scclip_beta: float = 0.4
    scclip_res_cls: float = 0.3
    scclip_multilevel: bool = True
    resclip_rcs_tau: float = 2.0
    resclip_rcs_lambda: float = 0.3
    resclip_sfr_tau: float = 2.1
    resclip_sfr_lambda: float = 0.7
    resclip_threshold: float = 0.25
    resclip_logit_scale: float = 40.0
    resclip_pamr: bool = True

    def __post_init__(self) -> None:
        if self.mode not in DENSE_MODES:
            raise ValueError(f"dense mode {self.mode!r} not in {DENSE_MODES}")
        if self.short_side <= 0 or self.window < 0 or self.stride < 0:
            raise ValueError("dense short_side must be > 0, window and stride >= 0")
        if self.scope not in DENSE_SCOPES:
            raise ValueError(f"dense scope {self.scope!r} not in {DENSE_SCOPES}")
        if self.refine not in DENSE_REFINES:
            raise ValueError(f"dense refine {self.refine!r} not in {DENSE_REFINES}")
        self.pamr_dilations = [int(d) for d in self.pamr_dilations]
        if self.pamr_iters < 1 or self.pamr_short_side < 8 or not self.pamr_dilations or min(self.pamr_dilations) < 1:
            raise ValueError("dense pamr_iters >= 1, pamr_short_side >= 8 and pamr_dilations >= 1 required")
        lambdas = (self.resclip_rcs_lambda, self.resclip_sfr_lambda)
        if not (all(0 <= v <= 1 for v in lambdas) and 0 <= self.resclip_threshold < 1):
            raise ValueError("dense resclip lambdas must be in [0, 1] and resclip_threshold in [0, 1)")


def resolve_templates(templates: str | Sequence[str]) -> tuple[str, ...]:
    """Template-set name or list -> tuple of templates, each with exactly one ``{}``."""
    if isinstance(templates, str):
        if templates not in TEMPLATE_SETS:
            raise ValueError(f"unknown template set {templates!r}; known: {sorted(TEMPLATE_SETS)}")
        return TEMPLATE_SETS[templates]
    out = tuple(templates)
    if not out or any(not isinstance(t, str) or t.count("{}") != 1 for t in out):
        raise ValueError("templates must be a non-empty list of strings each containing one '{}'")
    return out


def _looks_like_path(pretrained: str) -> bool:
    return (
        os.sep in pretrained
        or pretrained.startswith(".")
        or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors", ".npz"))
    )


def _how_to_provide(model_name: str, pretrained: str) -> str:
    return (
        f"To provide CLIP weights for {model_name!r}: (a) run once with network access and "
        f"HF_HUB_OFFLINE unset so open_clip downloads tag {pretrained!r} into its cache "
        f"(python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{pretrained}')\"), "
        "or (b) download an open_clip checkpoint file (.bin/.pt/.safetensors) yourself and set "
        "clip.pretrained to its path, or (c) set clip.model_name to 'local-dir:/folder' holding "
        "open_clip_config.json and the weights. Tags known to open_clip for this model: "
        f"{open_clip.list_pretrained_tags_by_model(model_name) or 'none'}."
    )


def create_open_clip(cfg: ClipConfig, device: torch.device | None = None) -> torch.nn.Module:
    """Build the open_clip model for ``cfg`` (fp32 weights, eval mode, on ``device``).

    Raises :class:`WeightsUnavailableError` at once when weights cannot be obtained and
    ``ValueError`` for unknown architectures or tags.
    """
    device = device or resolve_device(cfg.device)
    register_tiny_configs()
    name, pretrained = cfg.model_name, (cfg.pretrained or "").strip()
    schema = name.split(":", 1)[0] if ":" in name else None
    if schema is None and name.replace("/", "-") not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}; see open_clip.list_models()")
    kwargs: dict = {"device": device, "precision": "fp32", "cache_dir": cfg.cache_dir or None}
    if schema is not None:
        if schema == "local-dir" and not Path(name.split(":", 1)[1]).is_dir():
            raise WeightsUnavailableError(f"{name}: folder not found. " + _how_to_provide(name, pretrained))
        target = None
    elif pretrained.lower() in ("", "random", "none"):
        msg = (
            f"CLIP {name!r} is RANDOMLY INITIALISED (pretrained={pretrained!r}): outputs are meaningless; "
            "use this only for tests and speed benchmarks"
        )
        log.warning("!!! %s !!!", msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        target = None
    elif _looks_like_path(pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"checkpoint file {path} not found. " + _how_to_provide(name, "openai"))
        target = str(path)
    else:
        if not open_clip.get_pretrained_cfg(name, pretrained):
            raise ValueError(
                f"unknown pretrained tag {pretrained!r} for {name!r}; known: "
                f"{open_clip.list_pretrained_tags_by_model(name)} (or give a checkpoint path)"
            )
        target = pretrained
    try:
        model = open_clip.create_model(name, pretrained=target, **kwargs)
    except (FileNotFoundError, OSError, RuntimeError) as exc:
        if target is None and schema is None:
            raise
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise WeightsUnavailableError(
            f"could not load weights for {name!r} (pretrained={pretrained!r})"
            + (" while HF_HUB_OFFLINE is set" if offline else "")
            + f": {str(exc).splitlines()[0][:300]}. "
            + _how_to_provide(name, pretrained)
        ) from exc
    model.eval().requires_grad_(False)
    return model


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)`` computed only over the non-padding prefix of the batch.

    With CLIP's causal text mask and end-token pooling, the padding after the longest prompt
    never influences the result, so dropping it gives the same embeddings several times faster
    (prompts are ~10 of 77 tokens). Models without that structure (custom text towers, other
    pooling) use ``encode_text`` as is.
    """
    m = model
    causal = isinstance(m, open_clip.CLIP) and getattr(m, "attn_mask", None) is not None
    if not causal or getattr(m, "text_pool_type", "") != "argmax":
        return m.encode_text(tokens)
    n = int((tokens != 0).sum(1).max().item())
    tok = tokens[:, :max(n, 1)]
    cast = m.transformer.get_cast_dtype()
    x = m.token_embedding(tok).to(cast) + m.positional_embedding[: tok.shape[1]].to(cast)
    x = m.transformer(x, attn_mask=m.attn_mask[: tok.shape[1], : tok.shape[1]])
    x = m.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tok.argmax(dim=-1)]  # end token has the largest id
    if m.text_projection is not None:
        x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
    return x


class TextEmbeddingCache:
    """Prompt-ensemble text embeddings, computed once per (query, template set).

    Embeddings are the L2-normalised mean of the L2-normalised embeddings of every template
    filled with the query (CLIP's prompt ensembling). Thread-safe.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, templates: Sequence[str], device: torch.device,
                 batch_size: int = 256):
        self.model, self.tokenizer, self.templates = model, tokenizer, tuple(templates)
        self.device, self.batch_size = device, batch_size
        self._cache: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()
        #: another runtime for the text tower (:mod:`movseg_core.backends`): ``f(tokens B x L int64) -> B x D``
        #: (``encode_text``, not normalised); None = torch
        self.encoder = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def token_count(self, query: str) -> int:
        """Number of BPE tokens of the longest template filled with ``query`` (incl. start/end)."""
        inner = getattr(self.tokenizer, "encode", None)
        longest = max(self.templates, key=len)
        if inner is None:
            return 0
        return len(inner(longest.format(query))) + 2

    @torch.no_grad()
    def _encode(self, queries: list[str]) -> torch.Tensor:
        texts = [t.format(q) for q in queries for t in self.templates]
        out = []
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(texts[i:i + self.batch_size]).to(self.device)
            emb = self.encoder(tok) if self.encoder is not None else encode_text_trimmed(self.model, tok)
            out.append(F.normalize(emb.float(), dim=-1))
        emb = torch.cat(out).view(len(queries), len(self.templates), -1).mean(1)
        return F.normalize(emb, dim=-1)

    def get(self, queries: Sequence[str]) -> torch.Tensor:
        """Embeddings ``N x D`` float32 (on the model's device) in query order."""
        with self._lock:
            missing = [q for q in dict.fromkeys(queries) if q not in self._cache]
            self.hits += len(queries) - len(missing)
            self.misses += len(missing)
            if missing:
                for q, e in zip(missing, self._encode(missing)):
                    self._cache[q] = e
            return torch.stack([self._cache[q] for q in queries]) if queries else torch.empty(0)


def interpolate_pos_embed(pos: torch.Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int]) -> torch.Tensor:
    """Resize a ViT positional embedding ``(1 + gh*gw) x C`` (class token first) to another grid.

    Bicubic interpolation of the patch part; the class-token row is kept.
    """
    if tuple(src_grid) == tuple(dst_grid):
        return pos
    cls_pos, grid = pos[:1], pos[1:]
    c = grid.shape[-1]
    grid = grid.reshape(1, src_grid[0], src_grid[1], c).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(dst_grid), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(dst_grid[0] * dst_grid[1], c).to(pos.dtype)
    return torch.cat([cls_pos, grid], 0)


def _gaussian_bias(grid: tuple[int, int], sigma: float, device, dtype) -> torch.Tensor:
    """NACLIP's ``(1+N) x (1+N)`` additive attention term: the Gaussian kernel
    ``exp(-d^2 / (2 sigma^2))`` of the distance d (in patches) between patch positions; 0 on the
    class token's row and column."""
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh, device=device), torch.arange(gw, device=device), indexing="ij")
    pts = torch.stack([ys.flatten(), xs.flatten()], -1).to(dtype)
    d2 = torch.cdist(pts, pts).pow(2)
    bias = torch.zeros(gh * gw + 1, gh * gw + 1, device=device, dtype=dtype)
    bias[1:, 1:] = torch.exp(-d2 / (2.0 * sigma * sigma))
    return bias


#: What :class:`OpenClipVision` supports, in words (also the start of its error message).
SUPPORTED_VISION = (
    "an open_clip VisionTransformer (conv1 patch embedding, class token, no attention pooling) whose "
    "blocks are open_clip.transformer.ResidualAttentionBlock built on torch.nn.MultiheadAttention with a "
    "packed in_proj, batch first (open_clip_torch 3.x, pinned 3.3.0 in constraints.txt)"
)


class UnsupportedOpenClipError(ValueError):
    """The open_clip model is not of a structure :class:`OpenClipVision` knows (see :data:`SUPPORTED_VISION`)."""


def check_block(block: torch.nn.Module, where: str = "block") -> torch.nn.MultiheadAttention:
    """The block's ``nn.MultiheadAttention``, or :class:`UnsupportedOpenClipError` saying what is supported.

    Supported: ``open_clip.transformer.ResidualAttentionBlock`` (``ln_1``, ``attn``, ``ls_1``, ``ln_2``,
    ``mlp``, ``ls_2``) whose ``attn`` is a batch-first ``torch.nn.MultiheadAttention`` with one packed
    ``in_proj`` (q, k and v of the same width). open_clip's main branch builds its blocks on its own
    attention module instead: such blocks are refused here rather than silently mis-read.
    """
    from open_clip.transformer import ResidualAttentionBlock

    attn = getattr(block, "attn", None)
    ok = (isinstance(block, ResidualAttentionBlock) and isinstance(attn, torch.nn.MultiheadAttention)
          and attn._qkv_same_embed_dim and attn.batch_first
          and all(hasattr(block, a) for a in ("ln_1", "ls_1", "ln_2", "mlp", "ls_2")))
    if not ok:
        raise UnsupportedOpenClipError(
            f"unsupported open_clip {where}: {type(block).__module__}.{type(block).__qualname__} with attention "
            f"{type(attn).__module__}.{type(attn).__qualname__}"
            + (f" (batch_first={attn.batch_first})" if isinstance(attn, torch.nn.MultiheadAttention) else "")
            + f". movseg_core.clip.OpenClipVision supports {SUPPORTED_VISION}; install that version or "
            "extend OpenClipVision for this block type"
        )
    return attn


def _qkv(block: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """q, k, v ``B x heads x N x d`` of ``in_proj(ln_1(x))`` and the attention scale 1/sqrt(d)."""
    attn = check_block(block)
    b, n, c = x.shape
    heads = attn.num_heads
    hd = c // heads
    qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = qkv.view(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)
    return q, k, v, hd ** -0.5


def _attend(block: torch.nn.Module, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``out_proj`` of attention-weighted values: a ``B x heads x N x N``, v ``B x heads x N x d`` -> ``B x N x C``."""
    b, h, n, hd = v.shape
    return block.attn.out_proj((a.to(v.dtype) @ v).transpose(1, 2).reshape(b, n, h * hd))


def _restrict(logits: torch.Tensor, allow: torch.Tensor | None) -> torch.Tensor:
    """Attention logits ``B x heads x N x N`` with -inf where ``allow`` (``B x N x N`` bool) is False."""
    return logits if allow is None else logits.masked_fill(~allow[:, None], float("-inf"))


def _renorm_rows(a: torch.Tensor, allow: torch.Tensor | None) -> torch.Tensor:
    """A row-stochastic matrix (``B x heads x N x N``) restricted to ``allow`` and renormalised per row."""
    if allow is None:
        return a
    a = a * allow[:, None].to(a.dtype)
    return a / a.sum(-1, keepdim=True).clamp(min=1e-12)


def scope_allow(labels: torch.Tensor, with_cls: bool = True) -> torch.Tensor:
    """Proposal scope: ``B x N`` proposal id per patch -> allowed attention pairs, bool.

    with_cls: ``B x (1+N) x (1+N)`` for tokens with the class token first: patch i may attend to
    patch j iff both lie in the same proposal (so always to itself), never to the class token; the
    class token's row is unrestricted. Without: ``B x N x N`` (patches only).
    """
    same = labels[:, :, None] == labels[:, None, :]
    if not with_cls:
        return same
    b, n = labels.shape
    allow = torch.ones(b, n + 1, n + 1, dtype=torch.bool, device=labels.device)
    allow[:, 1:, 1:] = same
    allow[:, 1:, 0] = False
    return allow


def dense_last_block(block: torch.nn.Module, x: torch.Tensor, mode: str, grid: tuple[int, int],
                     naclip_sigma: float = 5.0, allow: torch.Tensor | None = None) -> torch.Tensor:
    """Apply the training-free variant ``mode`` of an open_clip ``ResidualAttentionBlock`` to ``x``.

    x: ``B x (1+N) x C`` tokens (class token first, batch first). Returns ``B x (1+N) x C``.
    With q, k, v = in_proj(ln_1(x)) split into heads, d = head width, s = 1/sqrt(d):

    - maskclip: y = x + ls_1(out_proj(v)); y + ls_2(mlp(ln_2(y))) (attention replaced by the value path);
    - sclip: y = x + ls_1(out_proj((softmax(s q q^T) + softmax(s k k^T)) v)); y + ls_2(mlp(ln_2(y)));
    - clearclip: out_proj(softmax(s q q^T) v) (no residual, no FFN);
    - naclip: out_proj(softmax(s k k^T + G) v), G_ij = exp(-|p_i - p_j|^2 / (2 sigma^2)) between patch
      positions p (in patches; 0 for the class token) (no residual, no FFN);
    - vanilla: the block unchanged.
    allow: optional ``B x (1+N) x (1+N)`` bool (:func:`scope_allow`): logits of pairs not allowed are
    -inf in every softmax (vanilla: the block's own attention mask); maskclip has no token mixing.
    Raises :class:`UnsupportedOpenClipError` for blocks of another structure.
    """
    attn = check_block(block)
    if mode == "vanilla":
        if allow is None:
            return block(x)
        mask = torch.zeros(allow.shape, dtype=x.dtype, device=x.device).masked_fill(~allow, float("-inf"))
        return block(x, attn_mask=mask.repeat_interleave(attn.num_heads, 0))
    b, n, c = x.shape
    q, k, v, scale = _qkv(block, x)
    if mode == "maskclip":
        out = attn.out_proj(v.transpose(1, 2).reshape(b, n, c))
    elif mode == "sclip":
        a = torch.softmax(_restrict((q @ q.transpose(-1, -2)).float() * scale, allow), -1)
        a = a + torch.softmax(_restrict((k @ k.transpose(-1, -2)).float() * scale, allow), -1)
        out = _attend(block, a, v)
    elif mode == "clearclip":
        out = _attend(block, torch.softmax(_restrict((q @ q.transpose(-1, -2)).float() * scale, allow), -1), v)
    elif mode == "naclip":
        logits = (k @ k.transpose(-1, -2)).float() * scale
        logits = logits + _gaussian_bias(grid, naclip_sigma, x.device, torch.float32)
        out = _attend(block, torch.softmax(_restrict(logits, allow), -1), v)
    else:
        raise ValueError(f"dense mode {mode!r} is not a last-block mode {BLOCK_MODES}")
    if mode in ("maskclip", "sclip"):
        y = x + block.ls_1(out)
        return y + block.ls_2(block.mlp(block.ln_2(y)))
    return out


# ---- SC-CLIP ------------------------------------------------------------------------------------
def lof_scores(x: torch.Tensor, n_neighbors: int = 30) -> torch.Tensor:
    """Local Outlier Factor (Breunig et al., SIGMOD 2000) of each row of ``x`` (``N x C``), Euclidean.

    k = min(n_neighbors, N-1); reach_k(p, o) = max(k-distance(o), d(p, o)); lrd(p) = 1 / mean over
    p's k nearest o of reach_k(p, o); LOF(p) = mean over those o of lrd(o) / lrd(p). SC-CLIP §3.2
    ("Resolving anomaly tokens") scores the penultimate layer's patch tokens with LOF.
    """
    n = x.shape[0]
    k = max(1, min(n_neighbors, n - 1))
    d = torch.cdist(x.float(), x.float())
    ar = torch.arange(n, device=d.device)
    d = d.masked_fill(ar[:, None] == ar[None, :], float("inf"))  # the diagonal (as fill_diagonal_, exportable to ONNX)
    knn_d, knn_i = torch.topk(d, k, largest=False)
    kdist = knn_d[:, -1]
    reach = torch.maximum(knn_d, kdist[knn_i])
    lrd = 1.0 / reach.mean(1).clamp(min=1e-12)
    return (lrd[knn_i] / lrd[:, None]).mean(1)


def quantile_linear(x: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(x, q)`` of a 1-D tensor (linear interpolation) by sorting, exportable to ONNX (which
    has no quantile operator); equal to torch's within 1 ulp (its vectorised lerp may round differently)."""
    n = int(x.shape[0])
    rank = float(torch.tensor(q, dtype=x.dtype) * (n - 1))  # in x's dtype, as torch.quantile computes it
    lo = int(rank)
    s = torch.sort(x).values
    return torch.lerp(s[lo], s[min(lo + 1, n - 1)], torch.tensor(rank - lo, dtype=x.dtype))


def lof_outliers(x: torch.Tensor, n_neighbors: int = 30, contamination: float = 0.05) -> torch.Tensor:
    """``N`` bool: rows whose LOF exceeds its (1 - contamination) quantile (SC-CLIP: k 30, 5 %)."""
    lof = lof_scores(x, n_neighbors)
    q = 1.0 - contamination
    return lof > (quantile_linear(lof, q) if torch.onnx.is_in_onnx_export() else torch.quantile(lof, q))


def neighbour_fill(feats: torch.Tensor, outliers: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Replace outlier patches (``B x N`` bool) of ``B x N x C`` patch tokens by the mean of their
    non-outlier 8-neighbours on the patch grid (unchanged where none is); SC-CLIP §3.2."""
    b, n, c = feats.shape
    gh, gw = grid
    f = feats.transpose(1, 2).reshape(b, c, gh, gw)
    keep = (~outliers).to(feats.dtype).view(b, 1, gh, gw)
    ring = torch.ones(1, 1, 3, 3, dtype=feats.dtype, device=feats.device)
    ring[0, 0, 1, 1] = 0
    total = F.conv2d((f * keep).reshape(b * c, 1, gh, gw), ring, padding=1).view(b, c, gh, gw)
    count = F.conv2d(keep, ring, padding=1)
    upd = (1.0 - keep) * (count > 0).to(feats.dtype)
    out = f * (1.0 - upd) + total / count.clamp(min=1.0) * upd
    return out.reshape(b, c, n).transpose(1, 2)


def _aggregate(sim: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Row-normalised similarity (``B x N x N``, >= 0) applied to ``B x N x C`` features (SC-CLIP's aggregation)."""
    return (sim / (sim.sum(-1, keepdim=True) + 1e-6)).to(feats.dtype) @ feats


def _scclip_attention(block: torch.nn.Module, x: torch.Tensor, mid: torch.Tensor,
                      allow: torch.Tensor | None) -> torch.Tensor:
    """SC-CLIP's last-block attention on patch tokens ``x`` (``B x N x C``), no residual, no FFN:
    A = (softmax(M) + softmax(s k k^T)) / 2 with M = 3 (S - mean(S)), -inf where negative, S the
    mid-layer cosine similarity ``B x N x N``."""
    q, k, v, scale = _qkv(block, x)
    m = (mid - mid.mean(dim=(-1, -2), keepdim=True)) * 3.0
    m = m.masked_fill(m < 0, float("-inf"))[:, None]
    a = torch.softmax(_restrict(m.expand(-1, q.shape[1], -1, -1), allow), -1)
    a = a + torch.softmax(_restrict((k @ k.transpose(-1, -2)).float() * scale, allow), -1)
    return _attend(block, a / 2.0, v)


def scclip_last_block(block: torch.nn.Module, x: torch.Tensor, f_pre: torch.Tensor, f_post: torch.Tensor,
                      multi: torch.Tensor | None, grid: tuple[int, int], beta: float = 0.4, res_cls: float = 0.3,
                      allow: torch.Tensor | None = None, outliers: torch.Tensor | None = None) -> torch.Tensor:
    """SC-CLIP (Bai et al., "Self-Calibrated CLIP for Training-Free Open-Vocabulary Segmentation",
    arXiv 2411.15869) last stage, on ``B x (1+N) x C`` tokens (class token first):

    x: the penultimate block's output; f_pre / f_post: outputs of a deep and a shallow intermediate
    block (ViT-B/16: blocks 9 and 4); multi: the sum of the outputs of blocks 4..10 (multi-level
    fusion; None = off). With P the patch tokens:

    1. §3.2 anomaly tokens: LOF outliers of x's patches (top 5 %, k 30; or ``outliers`` ``B x N``)
       are replaced by the mean of their normal 8-neighbours, in x and in f_pre;
    2. §3.3 self-adjusting: S = cos-similarity of the fixed f_pre patches; P <- rownorm(S [S >= beta]) P
       (feature aggregation); the last block's attention is (softmax(M) + softmax(s k k^T)) / 2,
       M = 3 (S - mean S) with negative entries -inf (intermediate-feature guided attention), no
       residual, no FFN, plus ``res_cls`` x the class token; then aggregated again with
       S' = cos-similarity of f_post thresholded at beta;
    3. §3.4 multi-level fusion: the summed mid-level tokens go through the same attention (+ res_cls
       x their class token), are aggregated with S' and added.
    As the authors' code (github.com/SuleBai/SC-CLIP) does. Differences: LOF is the textbook one
    (Euclidean distances, the neighbour's k-distance), the code uses squared distances and the
    point's own k-distance; the class-token row of the result is x's class token (unused: dense
    features are the patch rows). allow: the proposal scope ``B x (1+N) x (1+N)``; its patch part
    also restricts S and S' (pairs not allowed get no weight).
    """
    b, n1, c = x.shape
    pa = None if allow is None else allow[:, 1:, 1:]
    if outliers is None:
        outliers = torch.stack([lof_outliers(x[i, 1:]) for i in range(b)])
    cls = x[:, :1]
    p = neighbour_fill(x[:, 1:], outliers, grid)
    fp = F.normalize(neighbour_fill(f_pre[:, 1:], outliers, grid).float(), dim=-1)
    mid = fp @ fp.transpose(1, 2)
    before = mid * (mid >= beta)
    fq = F.normalize(f_post[:, 1:].float(), dim=-1)
    sim_q = fq @ fq.transpose(1, 2)
    after = sim_q * (sim_q >= beta)
    if pa is not None:
        before, after = before * pa, after * pa
    p = _aggregate(before, p)
    out = _aggregate(after, _scclip_attention(block, p, mid, pa) + res_cls * cls)
    if multi is not None:
        out = out + _aggregate(after, _scclip_attention(block, multi[:, 1:], mid, pa) + res_cls * multi[:, :1])
    return torch.cat([cls, out], 1)


# ---- ResCLIP ------------------------------------------------------------------------------------
def cross_attention(blocks: Sequence[torch.nn.Module], inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """ResCLIP's A_c: the mean over intermediate blocks of their own query-key attention
    softmax(s q k^T) (``B x heads x (1+N) x (1+N)``, float32); ``inputs[i]`` enters ``blocks[i]``."""
    acc = None
    for blk, t in zip(blocks, inputs):
        q, k, _, scale = _qkv(blk, t)
        a = torch.softmax((q @ k.transpose(-1, -2)).float() * scale, -1)
        acc = a if acc is None else acc + a
    return acc / len(blocks)


def _path_valid(labels: torch.Tensor, pairs: torch.Tensor | None = None, chunk: int = 65536) -> torch.Tensor:
    """``gh x gw`` labels -> ``N x N`` bool: every patch on the straight grid line from i to j (steps =
    Chebyshev distance, points rounded half up) has i's label; only ``pairs`` (``N x N`` bool, default
    all) are checked, the others are False."""
    gh, gw = labels.shape
    n = gh * gw
    dev = labels.device
    ys, xs = torch.meshgrid(torch.arange(gh, device=dev), torch.arange(gw, device=dev), indexing="ij")
    pts = torch.stack([ys.flatten(), xs.flatten()], -1).float()
    lab = labels.flatten()
    steps_all = torch.cdist(pts, pts, p=float("inf")).round()
    out = torch.zeros(n, n, dtype=torch.bool, device=dev)
    ii, jj = (pairs if pairs is not None else torch.ones(n, n, dtype=torch.bool, device=dev)).nonzero(as_tuple=True)
    if ii.numel() == 0:
        return out
    smax = int(steps_all[ii, jj].max().item())
    s = torch.arange(smax + 1, device=dev, dtype=torch.float32)
    for c0 in range(0, ii.numel(), chunk):
        i, j = ii[c0:c0 + chunk], jj[c0:c0 + chunk]
        t = (s[None] / steps_all[i, j].clamp(min=1)[:, None]).clamp(max=1.0)       # P x S
        a, e = pts[i][:, None], pts[j][:, None]
        pos = torch.floor(a + (e - a) * t[..., None] + 0.5).long()               # P x S x 2
        out[i, j] = (lab[pos[..., 0] * gw + pos[..., 1]] == lab[i][:, None]).all(-1)
    return out


def sfr_attention(labels: torch.Tensor, sigma: float = 5.0) -> torch.Tensor:
    """ResCLIP's semantic feedback attention from a patch label map ``B x gh x gw`` (-1 = no class):
    ``B x (1+N) x (1+N)``, 0 on the class token's row and column, max 1.

    M_ij = 1 when patches i and j have the same label (and on the diagonal); a same-label pair
    whose straight grid path leaves the label (another object of the class) is decayed by
    exp(-steps_ij / max steps), steps = Chebyshev distance; each row is smoothed with a 1-D Gaussian
    (std ``sigma``, odd kernel of min(N, int(6 sigma + 1)) taps, zero padding) over the flattened
    patch index, clipped at 0, normalised to sum 1, and the map divided by its maximum, as the
    authors' code (github.com/yvhangyang/ResCLIP, ``generate_attention_sfr``) does. Difference: the
    code checks only the first steps_ij of max-steps samples of the path (an indexing slip); here
    the whole path is checked, as the paper's connectivity condition says.
    """
    b, gh, gw = labels.shape
    n = gh * gw
    dev = labels.device
    ys, xs = torch.meshgrid(torch.arange(gh, device=dev), torch.arange(gw, device=dev), indexing="ij")
    pts = torch.stack([ys.flatten(), xs.flatten()], -1).float()
    steps = torch.cdist(pts, pts, p=float("inf")).round()
    decay = torch.exp(-steps / max(float(steps.max()), 1.0))
    ks = min(n, int(6 * sigma + 1))
    ks = ks if ks % 2 == 1 else ks + 1
    tap = torch.arange(ks, device=dev, dtype=torch.float32) - ks // 2
    g = torch.exp(-tap ** 2 / (2 * sigma ** 2))
    g = (g / g.sum()).view(1, 1, -1)
    out = torch.zeros(b, n + 1, n + 1, device=dev)
    for i in range(b):
        lab = labels[i].flatten()
        m = (lab[:, None] == lab[None, :]).float()
        m.fill_diagonal_(1.0)
        m = torch.where(_path_valid(labels[i], lab[:, None] == lab[None, :]), m, m * decay)
        m = F.relu(F.conv1d(m[:, None], g, padding=ks // 2)[:, 0, :n])
        m = m / (m.sum(-1, keepdim=True) + 1e-8)
        out[i, 1:, 1:] = m
        out[i] = out[i] / out[i].max()
    return out


def resclip_last_block(block: torch.nn.Module, x: torch.Tensor, cross: torch.Tensor, grid: tuple[int, int],
                       base: str = "naclip", naclip_sigma: float = 5.0, rcs: tuple[float, float] = (2.0, 0.3),
                       sfr: torch.Tensor | None = None, sfr_weights: tuple[float, float] = (2.1, 0.7),
                       allow: torch.Tensor | None = None) -> torch.Tensor:
    """ResCLIP (Yang et al., "ResCLIP: Residual Attention for Training-free Dense Vision-language
    Inference", CVPR 2025, arXiv 2411.15851) last block on ``B x (1+N) x C`` tokens, no residual, no FFN:

    - base self-correlation logits L = s k k^T + G (``naclip``, G the Gaussian of :func:`dense_last_block`)
      or s q q^T (``clearclip``);
    - SFR (semantic feedback refinement, ``sfr`` from :func:`sfr_attention`): the raw logits become
      tau_f ((1 - lambda_f) s k k^T + lambda_f A_sfr) before G is added (resp. for q q^T);
    - RCS (residual cross-correlation self-attention): A = tau_r ((1 - lambda_r) softmax(L) + lambda_r A_c),
      A_c = ``cross`` (:func:`cross_attention` of intermediate blocks, ViT-B/16: 6..9);
    - out = out_proj(A v).
    ``rcs`` = (tau_r, lambda_r), ``sfr_weights`` = (tau_f, lambda_f) (ADE20K: (2.0, 0.3), (2.1, 0.7)).
    allow: proposal scope ``B x (1+N) x (1+N)``: -inf logits, and A_c restricted and renormalised per row.
    """
    q, k, v, scale = _qkv(block, x)
    if base == "naclip":
        logits = (k @ k.transpose(-1, -2)).float() * scale
    elif base == "clearclip":
        logits = (q @ q.transpose(-1, -2)).float() * scale
    else:
        raise ValueError(f"ResCLIP base {base!r} not in ('naclip', 'clearclip')")
    if sfr is not None:
        tf, lf = sfr_weights
        logits = tf * ((1.0 - lf) * logits + lf * sfr[:, None].float())
    if base == "naclip":
        logits = logits + _gaussian_bias(grid, naclip_sigma, x.device, torch.float32)
    tr, lr = rcs
    a = tr * ((1.0 - lr) * torch.softmax(_restrict(logits, allow), -1) + lr * _renorm_rows(cross.float(), allow))
    return _attend(block, a, v)


# ---- PAMR ---------------------------------------------------------------------------------------
def _shift(t: torch.Tensor, d: int, dy: int, dx: int) -> torch.Tensor:
    """``t`` (``B x C x H x W``) read at offset (dy*d, dx*d), border pixels replicated."""
    h, w = t.shape[-2:]
    p = F.pad(t, [d, d, d, d], mode="replicate")
    return p[..., d + dy * d:d + dy * d + h, d + dx * d:d + dx * d + w]


_RING = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def pamr(image: torch.Tensor, masks: torch.Tensor, iters: int = 10, dilations: Sequence[int] = (8, 16)) -> torch.Tensor:
    """Pixel-adaptive mask refinement (Araslanov & Roth, "Single-Stage Semantic Segmentation from
    Image Labels", CVPR 2020, §3.2): ``masks`` ``B x K x H x W`` propagated ``iters`` times over the 8
    neighbours at each dilation with image affinities.

    image ``B x 3 x H x W``: for neighbours j of pixel i (8 per dilation, borders replicated),
    kappa_ij = -|I_i - I_j| / (0.1 sigma_i) per channel, sigma_i the (unbiased) standard deviation of
    the centre and neighbour values over all dilations, averaged over channels; a = softmax_j kappa;
    m_i <- sum_j a_ij m_j. Linear in ``masks``: refining features then scoring equals refining scores.
    """
    if masks.shape[-2:] != image.shape[-2:]:
        masks = F.interpolate(masks, size=image.shape[-2:], mode="bilinear", align_corners=True)
    img = image.float()
    vals, diffs = [], []
    for d in dilations:
        vals.append(img)
        for dy, dx in _RING:
            s = _shift(img, d, dy, dx)
            vals.append(s)
            diffs.append((img - s).abs())
    std = torch.stack(vals, 2).std(2)                       # B x 3 x H x W
    kappa = -torch.stack(diffs, 2) / (1e-8 + 0.1 * std[:, :, None])
    aff = torch.softmax(kappa.mean(1), 1)                   # B x P x H x W
    m = masks
    h, w = m.shape[-2:]
    for _ in range(iters):
        acc = torch.zeros_like(m)
        idx = 0
        for d in dilations:
            pad = F.pad(m, [d, d, d, d], mode="replicate")  # once per dilation: the 8 shifts are views
            for dy, dx in _RING:
                y0, x0 = d + dy * d, d + dx * d
                acc.addcmul_(aff[:, idx:idx + 1].to(m.dtype), pad[..., y0:y0 + h, x0:x0 + w])
                idx += 1
        m = acc
    return m


def paper_layer(index: int, depth: int) -> int:
    """Block number (1-based) in a ``depth``-block ViT matching block ``index`` of the papers'
    12-block ViT-B/16, kept inside the trunk (1..depth-1)."""
    return int(min(depth - 1, max(1, round(index * depth / 12))))


def patch_majority(segments: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """HxW segment ids -> ``gh x gw`` long: the segment holding most pixels of each patch cell
    (cells laid evenly over the image, as :func:`movseg_core.classify.segment_patch_weights`)."""
    h, w = segments.shape
    gh, gw = grid
    ys = (torch.arange(h, device=segments.device) * gh) // h
    xs = (torch.arange(w, device=segments.device) * gw) // w
    cell = (ys[:, None] * gw + xs[None, :]).flatten()
    n_seg = int(segments.max().item()) + 1
    counts = torch.bincount(cell * n_seg + segments.flatten().long(), minlength=gh * gw * n_seg)
    return counts.view(gh * gw, n_seg).argmax(1).view(gh, gw)


class OpenClipVision:
    """The one adapter over open_clip's VisionTransformer internals (patch embedding, positional
    embedding, blocks, pooling, projection); the segmenter, the crop member, mask prompt tuning and
    the tiny-CLIP training use only this. Supported models: :data:`SUPPORTED_VISION`; others raise
    :class:`UnsupportedOpenClipError` at construction, with a message saying so.

    Token tensors are batch first: ``B x (1+N) x C`` with the class token first, N = gh*gw patches.
    The adapter holds no weights of its own: training the tower through it trains open_clip's.
    """

    def __init__(self, visual: torch.nn.Module):
        missing = [a for a in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer",
                               "ln_post", "proj", "patch_size", "grid_size", "image_size", "_pool")
                   if not hasattr(visual, a)]
        if missing:
            raise UnsupportedOpenClipError(f"unsupported open_clip visual tower {type(visual).__qualname__} "
                                           f"(no {missing}); supported: {SUPPORTED_VISION}")
        if getattr(visual, "attn_pool", None) is not None:
            raise UnsupportedOpenClipError(f"attentional-pool ViTs are not supported; supported: {SUPPORTED_VISION}")
        blocks = getattr(visual.transformer, "resblocks", None)
        if blocks is None or len(blocks) == 0 or not getattr(visual.transformer, "batch_first", True):
            raise UnsupportedOpenClipError(f"unsupported open_clip transformer; supported: {SUPPORTED_VISION}")
        for i, blk in enumerate(blocks):
            check_block(blk, f"vision block {i}")
        self.visual = visual
        self.blocks = blocks
        self.patch = int(visual.patch_size[0])
        self.grid = tuple(int(g) for g in visual.grid_size)
        self.image_size = tuple(int(s) for s in visual.image_size)
        self.width = int(visual.conv1.out_channels)
        self._pos_cache: dict[tuple, torch.Tensor] = {}
        self._pos_lock = threading.Lock()

    @property
    def output_dim(self) -> int:
        """Width D of the joint embedding space."""
        return int(self.visual.output_dim)

    def pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """Positional embedding ``(1 + gh*gw) x C`` for a patch grid (bicubic-interpolated if not native).

        Interpolated copies are cached per grid and weight version (so a tower being trained is never
        served a stale copy); the native grid returns the parameter itself (gradients flow).
        """
        pos = self.visual.positional_embedding
        if tuple(grid) == self.grid:
            return pos
        if torch.is_grad_enabled() and pos.requires_grad:
            return interpolate_pos_embed(pos, self.grid, grid)
        key = (tuple(grid), pos.data_ptr(), pos._version)
        with self._pos_lock:
            if key not in self._pos_cache:
                self._pos_cache = {k: v for k, v in self._pos_cache.items() if k[1:] == key[1:]}
                self._pos_cache[key] = interpolate_pos_embed(pos.detach(), self.grid, grid)
            return self._pos_cache[key]

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``B x 3 x H x W`` (multiples of the patch) -> patch embeddings ``B x gh*gw x C``."""
        return self.visual.conv1(images).flatten(2).transpose(1, 2)

    def embed(self, images: torch.Tensor, patch_hook=None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Tokens entering the first block ``B x (1+N) x C`` and the patch grid (gh, gw).

        patch_hook: optional function of the patch embeddings ``B x N x C`` returning replacements
        (applied before the positional embedding; mask prompt tuning replaces masked-out patches).
        """
        v = self.visual
        grid = (images.shape[-2] // self.patch, images.shape[-1] // self.patch)
        t = self.patch_tokens(images)
        if patch_hook is not None:
            t = patch_hook(t)
        cls = v.class_embedding.view(1, 1, -1).expand(t.shape[0], 1, -1).to(t.dtype)
        t = torch.cat([cls, t], 1) + self.pos_embed(grid).to(t.dtype)
        return v.ln_pre(t), grid

    def trunk(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens through every block but the last."""
        for blk in self.blocks[:-1]:
            tokens = blk(tokens)
        return tokens

    def last_block(self, tokens: torch.Tensor, mode: str = "vanilla", grid: tuple[int, int] | None = None,
                   naclip_sigma: float = 5.0) -> torch.Tensor:
        """Tokens through the last block, unchanged (``vanilla``) or a :data:`BLOCK_MODES` variant
        (:func:`dense_last_block`); the other modes read intermediate layers: use :meth:`dense`."""
        if mode == "vanilla":
            return self.blocks[-1](tokens)
        return dense_last_block(self.blocks[-1], tokens, mode, grid or self.grid, naclip_sigma)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final tokens -> global image embeddings ``B x D`` (open_clip's pooling and projection; not normalised)."""
        pooled, _ = self.visual._pool(tokens)
        proj = self.visual.proj
        return pooled @ proj.to(pooled.dtype) if proj is not None else pooled

    def patches(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final tokens -> projected patch embeddings ``B x N x D`` (``ln_post`` then ``proj``; not normalised)."""
        t = self.visual.ln_post(tokens[:, 1:])
        proj = self.visual.proj
        return t @ proj.to(t.dtype) if proj is not None else t

    def encode(self, images: torch.Tensor, patch_hook=None) -> torch.Tensor:
        """Global embeddings ``B x D`` (not normalised) of normalised images of any size that is a multiple
        of the patch (the positional embedding is interpolated); equals open_clip's at the native size."""
        t, _ = self.embed(images, patch_hook)
        return self.pool(self.last_block(self.trunk(t)))

    def dense(self, images: torch.Tensor, mode: str, naclip_sigma: float = 5.0, *, cfg: DenseConfig | None = None,
              scope: torch.Tensor | None = None,
              text: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch embeddings ``B x N x D`` (not normalised) with the last stage in ``mode``, and the grid.

        cfg: the mode's parameters (default :class:`DenseConfig` with this mode and sigma).
        scope: optional ``B x gh x gw`` proposal id per patch: attention and correlations only
        within a proposal (:func:`scope_allow`). text: ``Q x D`` L2-normalised query embeddings
        for ResCLIP's semantic feedback (None: ResCLIP runs RCS only).
        """
        cfg = cfg or DenseConfig(mode=mode, naclip_sigma=naclip_sigma)
        t, grid = self.embed(images)
        allow = scope_allow(scope.flatten(1).to(t.device)) if scope is not None else None
        if mode in BLOCK_MODES:
            return self.patches(dense_last_block(self.blocks[-1], self.trunk(t), mode, grid, naclip_sigma, allow)), grid
        depth = len(self.blocks)
        outs = [t]  # outs[i]: tokens after block i (1-based); outs[0] enters block 1
        for blk in self.blocks[:-1]:
            outs.append(blk(outs[-1]))
        last = self.blocks[-1]
        if mode == "scclip":
            lo, hi = paper_layer(4, depth), paper_layer(10, depth)
            multi = torch.stack(outs[lo:hi + 1]).sum(0) if cfg.scclip_multilevel else None
            out = scclip_last_block(last, outs[-1], outs[paper_layer(9, depth)], outs[paper_layer(4, depth)], multi,
                                    grid, cfg.scclip_beta, cfg.scclip_res_cls, allow)
            return self.patches(out), grid
        if mode not in ("resclip_naclip", "resclip_clearclip"):
            raise ValueError(f"dense mode {mode!r} not in {DENSE_MODES}")
        base = mode.split("_", 1)[1]
        layers = sorted({paper_layer(i, depth) for i in range(6, 10)})
        cross = cross_attention([self.blocks[i - 1] for i in layers], [outs[i - 1] for i in layers])
        rcs = (cfg.resclip_rcs_tau, cfg.resclip_rcs_lambda)
        out = resclip_last_block(last, outs[-1], cross, grid, base, naclip_sigma, rcs, allow=allow)
        if text is None:
            return self.patches(out), grid
        feats = F.normalize(self.patches(out).float(), dim=-1)
        b = feats.shape[0]
        logits = (feats @ text.to(feats.device, feats.dtype).T).transpose(1, 2).reshape(b, -1, *grid)
        logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        if cfg.resclip_pamr:
            logits = pamr(images, logits, 10, (8, 16))
        prob = torch.softmax(logits * cfg.resclip_logit_scale, 1)
        conf, pred = prob.max(1)
        pred = torch.where(conf < cfg.resclip_threshold, torch.full_like(pred, -1), pred)
        p = self.patch
        cells = pred.unfold(1, p, p).unfold(2, p, p).reshape(b, grid[0], grid[1], p * p)
        labels = torch.mode(cells, -1).values
        sfr = sfr_attention(labels, naclip_sigma)
        out = resclip_last_block(last, outs[-1], cross, grid, base, naclip_sigma, rcs, sfr,
                                 (cfg.resclip_sfr_tau, cfg.resclip_sfr_lambda), allow)
        return self.patches(out), grid


def dense_grid(vision: OpenClipVision, x: torch.Tensor, cfg: DenseConfig, scope: torch.Tensor | None = None,
               text: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised images ``B x 3 x H x W`` (H, W multiples of the patch) -> L2-normalised patch embeddings
    ``B x D x h x w`` through ``vision`` with the last stage in ``cfg.mode`` (:meth:`OpenClipVision.dense`): the
    dense pass as the segmenter runs it, and what ``movseg export-onnx`` exports (:mod:`movseg_core.export`)."""
    t, (gh, gw) = vision.dense(x, cfg.mode, cfg.naclip_sigma, cfg=cfg, scope=scope, text=text)
    t = F.normalize(t.float(), dim=-1)
    return t.transpose(1, 2).reshape(t.shape[0], -1, gh, gw)


def window_origins(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows of size ``window`` covering ``[0, length)`` with the last flush at the end."""
    if window >= length:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts


class ClipModel:
    """A loaded CLIP with the operations the segmenter needs.

    - :meth:`text_embeddings`: cached prompt-ensemble embeddings of queries (``N x D``).
    - :meth:`dense_features`: per-patch image embeddings of an RGB image (``D x h x w``).
    - :meth:`encode_images`: global embeddings of a batch of crops (``B x D``).
    All embeddings are L2-normalised float32 in CLIP's joint space.
    """

    def __init__(self, cfg: ClipConfig | None = None, model: torch.nn.Module | None = None):
        self.cfg = cfg or ClipConfig()
        self.device = resolve_device(self.cfg.device)
        if self.cfg.precision not in PRECISIONS:
            raise ValueError(f"precision {self.cfg.precision!r} not in {PRECISIONS}")
        self.model = model if model is not None else create_open_clip(self.cfg, self.device)
        self.model.to(self.device)
        visual = self.model.visual
        try:
            self.vision = OpenClipVision(visual)
        except UnsupportedOpenClipError as exc:
            raise UnsupportedOpenClipError(f"{self.cfg.model_name}: {exc}") from exc
        self._visions: dict[int, OpenClipVision] = {id(visual): self.vision}
        self.patch = self.vision.patch
        self.grid = self.vision.grid
        self.image_size = self.vision.image_size
        pp = getattr(visual, "preprocess_cfg", {}) or {}
        self.mean = torch.tensor(pp.get("mean", open_clip.OPENAI_DATASET_MEAN), device=self.device).view(3, 1, 1)
        self.std = torch.tensor(pp.get("std", open_clip.OPENAI_DATASET_STD), device=self.device).view(3, 1, 1)
        self.tokenizer = open_clip.get_tokenizer(self.cfg.model_name)
        self.context_length = int(getattr(self.tokenizer, "context_length", 77))
        self.templates = resolve_templates(self.cfg.templates)
        self.text_cache = TextEmbeddingCache(self.model, self.tokenizer, self.templates, self.device)
        self.logit_scale = float(self.model.logit_scale.exp().clamp(max=100.0).item())
        #: another runtime for the dense pass of this model's own tower (:mod:`movseg_core.backends`):
        #: ``f(images B x 3 x H x W) -> B x D x h x w`` as :func:`dense_grid`; None = torch
        self.dense_backend = None
        self._compiled: dict[tuple, object] = {}

    @property
    def embed_dim(self) -> int:
        """Width D of the joint embedding space."""
        return int(self.model.visual.output_dim)

    @property
    def use_fp16(self) -> bool:
        """fp16 autocast for the image side (CUDA with precision auto or fp16)."""
        return self.device.type == "cuda" and self.cfg.precision in ("auto", "fp16")

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The image side's autocast dtype (fp16 on CUDA by default, bf16 when asked), None = fp32."""
        if self.use_fp16:
            return torch.float16
        return torch.bfloat16 if self.cfg.precision == "bf16" else None

    def _autocast(self):
        dtype = self.autocast_dtype
        return torch.autocast(device_type=self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    # ---- text ---------------------------------------------------------------------------------
    def text_embeddings(self, queries: Sequence[str]) -> torch.Tensor:
        """``N x D`` float32 prompt-ensemble embeddings (cached per query)."""
        return self.text_cache.get(list(queries))

    # ---- images -------------------------------------------------------------------------------
    def to_tensor(self, rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
        """HxWx3 uint8 RGB -> normalised ``1 x 3 x H x W`` float32 tensor on the model's device."""
        t = torch.as_tensor(rgb, device=self.device)
        t = t.permute(2, 0, 1).float().div_(255.0)
        return ((t - self.mean) / self.std).unsqueeze(0)

    def vision_of(self, visual: torch.nn.Module | None = None) -> OpenClipVision:
        """The :class:`OpenClipVision` adapter of this model's visual tower or of another one of the same
        architecture (CLIP-X weights), each with its own positional-embedding cache."""
        if visual is None:
            return self.vision
        if id(visual) not in self._visions:
            self._visions[id(visual)] = OpenClipVision(visual)
        return self._visions[id(visual)]

    @torch.inference_mode()
    def _forward_dense(self, x: torch.Tensor, cfg: DenseConfig, visual: torch.nn.Module | None = None,
                       scope: torch.Tensor | None = None, text: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised images ``B x 3 x H x W`` (H, W multiples of the patch) -> ``B x D x h x w``."""
        own = visual is None or visual is self.model.visual
        if self.dense_backend is not None and own:
            if scope is not None:
                raise ValueError("dense.scope 'proposals' runs on the torch backend only")
            return self.dense_backend(x)
        vision = self.vision_of(visual)
        if self.cfg.torch_compile and scope is None and not cfg.mode.startswith("resclip"):  # (only ResCLIP reads text)
            key = (id(vision), tuple(x.shape), repr(cfg))  # every field of the dense config
            if key not in self._compiled:
                self._compiled[key] = torch.compile(functools.partial(dense_grid, vision, cfg=cfg), dynamic=False)
            with self._autocast():
                return self._compiled[key](x).float()
        with self._autocast():
            return dense_grid(vision, x, cfg, scope, text).float()

    def dense_input_size(self, height: int, width: int, short_side: int) -> tuple[int, int]:
        """Network input size (H', W') for an image: short side -> ``short_side``, snapped to the patch."""
        s = short_side / min(height, width)
        p = self.patch
        return max(p, int(round(height * s / p)) * p), max(p, int(round(width * s / p)) * p)

    @torch.inference_mode()
    def dense_features(self, rgb: np.ndarray | torch.Tensor, cfg: DenseConfig | None = None,
                       visual: torch.nn.Module | None = None, segments: np.ndarray | torch.Tensor | None = None,
                       text: torch.Tensor | None = None) -> torch.Tensor:
        """Per-patch embeddings ``D x h x w`` (float32, L2-normalised) of an HxWx3 uint8 RGB image.

        The image is resized so its short side is ``cfg.short_side`` (snapped to the patch size);
        the patch grid (h, w) covers the whole resized image, so patch (i, j) covers image pixels
        ``[i*H/h, (i+1)*H/h) x [j*W/w, (j+1)*W/w)``. ``visual``: another visual tower of the
        same architecture (CLIP-X weights); default this model's. segments: HxW int proposal ids
        of this image, required by ``cfg.scope == "proposals"``. text: ``Q x D`` query embeddings
        (ResCLIP's semantic feedback). With ``cfg.refine == "pamr"`` the grid (h, w) is the image
        at ``cfg.pamr_short_side`` pixels instead of the patch grid.
        """
        cfg = cfg or DenseConfig()
        x = self.to_tensor(rgb) if not (torch.is_tensor(rgb) and rgb.ndim == 4) else rgb
        h_in, w_in = self.dense_input_size(x.shape[-2], x.shape[-1], cfg.short_side)
        img = F.interpolate(x, size=(h_in, w_in), mode="bilinear", align_corners=False, antialias=True)
        p = self.patch
        scope = None
        if cfg.scope == "proposals":
            if segments is None:
                raise ValueError("dense.scope 'proposals' needs the frame's proposals (segments=HxW ids)")
            seg = segments if torch.is_tensor(segments) else torch.from_numpy(np.asarray(segments))
            seg = seg.to(self.device)
            if tuple(seg.shape) != tuple(x.shape[-2:]):
                raise ValueError(f"segments {tuple(seg.shape)} do not match the image {tuple(x.shape[-2:])}")
            scope = patch_majority(seg.long(), (h_in // p, w_in // p))
        if cfg.window <= 0:
            feats = self._forward_dense(img, cfg, visual, None if scope is None else scope[None], text)[0]
        else:
            win = max(p, cfg.window // p * p)
            stride = cfg.stride if cfg.stride > 0 else max(p, (2 * win // 3))
            stride = max(p, stride // p * p)
            wh, ww = min(win, h_in), min(win, w_in)
            boxes = [(y, x0) for y in window_origins(h_in, wh, stride) for x0 in window_origins(w_in, ww, stride)]
            crops = [img[:, :, y:y + wh, x0:x0 + ww] for y, x0 in boxes]
            scopes = [None if scope is None else scope[y // p:(y + wh) // p, x0 // p:(x0 + ww) // p][None]
                      for y, x0 in boxes]
            if cfg.batch_windows:
                feats = list(self._forward_dense(torch.cat(crops), cfg, visual,
                                                 None if scope is None else torch.cat(scopes), text))
            else:
                feats = [self._forward_dense(c, cfg, visual, sc, text)[0] for c, sc in zip(crops, scopes)]
            d = feats[0].shape[0]
            acc = torch.zeros(d, h_in // p, w_in // p, device=self.device)
            cnt = torch.zeros(1, h_in // p, w_in // p, device=self.device)
            for (y, x0), f in zip(boxes, feats):
                acc[:, y // p:y // p + f.shape[1], x0 // p:x0 // p + f.shape[2]] += f
                cnt[:, y // p:y // p + f.shape[1], x0 // p:x0 // p + f.shape[2]] += 1
            feats = F.normalize(acc / cnt, dim=0)
        if cfg.refine == "pamr":
            feats = self.refine_pamr(x, feats, cfg)
        return feats

    def refine_pamr(self, image: torch.Tensor, feats: torch.Tensor, cfg: DenseConfig) -> torch.Tensor:
        """PAMR (:func:`pamr`) of features ``D x h x w`` on the normalised image ``1 x 3 x H x W``
        resized to ``cfg.pamr_short_side`` (at most its own size): ``D x H' x W'`` (L2-normalised) on that pixel grid.
        PAMR is linear, so scoring refined features equals refining the scores (as the papers do)."""
        s = min(cfg.pamr_short_side, min(image.shape[-2:])) / min(image.shape[-2:])  # never upsampled
        size = (max(1, round(image.shape[-2] * s)), max(1, round(image.shape[-1] * s)))
        im = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        up = F.interpolate(feats[None], size=size, mode="bilinear", align_corners=False)
        return F.normalize(pamr(im, up, cfg.pamr_iters, cfg.pamr_dilations)[0], dim=0)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images ``B x 3 x S x S`` at the model's input size -> ``B x D`` embeddings."""
        with self._autocast():
            emb = self.model.encode_image(images)
        return F.normalize(emb.float(), dim=-1)


def create_clip(cfg: ClipConfig | None = None) -> ClipModel:
    """Load a :class:`ClipModel` for ``cfg`` (see module docstring for how weights resolve); with
    ``cfg.simulated_ms > 0`` the GPU stand-in of benchmarks (:mod:`movseg_core.gpu_standin`)."""
    cfg = cfg or ClipConfig()
    if cfg.simulated_ms > 0:
        from movseg_core.gpu_standin import SimulatedGpuClip

        return SimulatedGpuClip(cfg)
    return ClipModel(cfg)


def load_visual_weights(clip: ClipModel, path: str | os.PathLike) -> torch.nn.Module:
    """A copy of ``clip``'s visual tower with weights from ``path`` (e.g. CLIP-X adapted weights).

    The file is an open_clip state dict of the visual tower (keys as in ``model.visual``, or
    prefixed ``visual.``). Missing file -> :class:`WeightsUnavailableError`; mismatched keys -> ValueError.
    """
    import copy

    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"CLIP-X weights file {path} not found")
    from open_clip.factory import load_state_dict

    sd = load_state_dict(str(path))
    if any(k.startswith("visual.") for k in sd):
        sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
    visual = copy.deepcopy(clip.model.visual)
    try:
        visual.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: not a visual-tower state dict for {clip.cfg.model_name}: {exc}") from exc
    return visual.eval().requires_grad_(False).to(clip.device)
