"""Train the tiny synthetic-scene CLIP (``movseg-synth-clip``): a weights stand-in for tests.

No pretrained CLIP is reachable on the project's machines, so this trains a small open_clip model
(architecture :data:`movseg_core.clip.TINY_MODEL_CONFIGS` ``["movseg-synth-clip"]``: ViT 4x64,
patch 8, 48 px input; text transformer 3x48, 32 tokens) contrastively on the procedural RGB-D
scenes of :mod:`movseg_core.data.synthetic` with captions from :mod:`movseg_core.data.captions`.
The held-out colour-shape pairs (:data:`~movseg_core.data.captions.HELD_OUT_PAIRS`) are never
rendered in training.

Each step's batch (all drawn from an RNG seeded by ``(seed, step)``, so training is deterministic
and a resumed run continues exactly):

- ``batch_objects`` object-centred crops (jittered box, 48 px) with an object caption
  ("a photo of a red striped cube.");
- ``batch_scenes`` square scene crops (60..120 px of the 120x160 scene, resized to 48 px) with a
  scene caption naming the objects mostly inside the crop and the floor.

Loss: symmetric InfoNCE between image and caption embeddings (captions that are the same string
count as positives of each other), plus ``dense_weight`` x a patch-text InfoNCE on the scene crops:
each 6x6 patch token (through the last block in ``dense_mode``, the same function the segmenter's
dense features use) against the phrases of the batch ("red cube", "wooden floor", "brick wall"),
the target being the pixel shares of the instances in the patch (object patches weighted up). The dense term is what
lets a 4-layer ViT trained in minutes give usable per-patch features; a large CLIP gets them from scale.

Regenerate the committed fixture (about 15 minutes on 2 CPU cores)::

    python -m movseg_core.training.tiny_clip --out test/fixtures/synth_clip.pt --seed 0

``--minutes`` time-boxes a run: on reaching it the training state is saved to ``--work-dir`` and
the same command later resumes from there (the result is identical to an uninterrupted run).
The checkpoint is an open_clip state dict stored in fp16 (< 10 MB); load it with
``ClipConfig(model_name="movseg-synth-clip", pretrained="test/fixtures/synth_clip.pt")``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from movseg_core.clip import TINY_MODEL_CONFIGS, OpenClipVision, encode_text_trimmed, register_tiny_configs
from movseg_core.data.captions import (
    HELD_OUT_PAIRS,
    OBJECT_TEMPLATES,
    object_crops,
    scene_caption,
    train_filter,
)
from movseg_core.data.synthetic import SceneConfig, SyntheticSample, render_scene, sample_scene

log = logging.getLogger("movseg.tiny_clip")

MODEL_NAME = "movseg-synth-clip"
#: Mean / std used by ClipModel.to_tensor (open_clip's OpenAI defaults).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
REGEN_COMMAND = "python -m movseg_core.training.tiny_clip --out test/fixtures/synth_clip.pt --seed 0"


@dataclass
class TinyClipTrainConfig:
    """Training settings (defaults = the committed fixture).

    seed: everything derives from it. n_scenes: rendered training scenes (120x160); scene seeds
    are ``seed * 1_000_003 + i``. steps: optimiser steps. batch_objects / batch_scenes: crops per
    step. lr / weight_decay / warmup: AdamW with linear warm-up and cosine decay. dense_weight:
    weight of the patch-text term (0 = plain CLIP loss); object_patch_weight: extra weight of patches
    by their object pixel share (objects are small next to floor and walls). dense_mode: last-block variant for the
    patch tokens (see :data:`movseg_core.clip.DENSE_MODES`). threads: torch CPU threads.
    held_out: colour-shape pairs never rendered. scene: how the training scenes are sampled and rendered.
    """

    seed: int = 0
    n_scenes: int = 600
    steps: int = 800
    batch_objects: int = 96
    batch_scenes: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 50
    dense_weight: float = 0.5
    dense_mode: str = "vanilla"
    object_patch_weight: float = 4.0
    threads: int = 2
    image_size: int = 48
    held_out: list[tuple[str, str]] = field(default_factory=lambda: [tuple(p) for p in HELD_OUT_PAIRS])
    scene: SceneConfig = field(default_factory=SceneConfig)


# ----------------------------------------------------------------------------- corpus


def scene_seed(seed: int, i: int) -> int:
    """RNG seed of synthetic scene ``i`` of a corpus generated with ``seed``."""
    return seed * 1_000_003 + i


#: Bump when the cached corpus format or anything that renders it changes in a way the key misses.
CORPUS_FORMAT = 2


def corpus_key(cfg: TinyClipTrainConfig) -> str:
    """Hash of everything that shapes the rendered corpus: seed, scene count, held-out pairs, the
    scene config, the renderer's and the caption filter's source, and :data:`CORPUS_FORMAT`."""
    import hashlib

    from movseg_core.data import captions, synthetic

    h = hashlib.sha256()
    h.update(json.dumps({"format": CORPUS_FORMAT, "seed": cfg.seed, "n_scenes": cfg.n_scenes,
                         "held_out": sorted(list(p) for p in cfg.held_out), "scene": asdict(cfg.scene)},
                        sort_keys=True).encode())
    for mod in (synthetic, captions):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()[:20]


def corpus_cache_path(cfg: TinyClipTrainConfig, work_dir: Path) -> Path:
    """Where :func:`train` caches the corpus of ``cfg``: ``work_dir/corpus_<key>.npz``."""
    return Path(work_dir) / f"corpus_{corpus_key(cfg)}.npz"


def render_corpus(cfg: TinyClipTrainConfig, cache: Path | None = None, progress: bool = True) -> list[SyntheticSample]:
    """Render the training scenes (held-out pairs excluded); cached as an .npz when ``cache`` is given.

    The file stores :func:`corpus_key`; a file made for another key is not used (it is re-rendered
    and overwritten), so a changed config never reuses stale scenes.
    """
    from tqdm import tqdm

    scfg = cfg.scene
    key = corpus_key(cfg)
    flt = train_filter([tuple(p) for p in cfg.held_out])
    specs = [sample_scene(scene_seed(cfg.seed, i), scfg, flt) for i in range(cfg.n_scenes)]
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            stored = str(z["key"]) if "key" in z.files else ""
            rgb, inst, first = z["rgb"], z["instance"], z["first_object_id"] if stored else None
        if stored == key:
            log.info("corpus: %d scenes from cache %s (rgb and instances only)", cfg.n_scenes, cache)
            return [SyntheticSample(rgb[i], None, None, inst[i].astype(np.int32), None,  # type: ignore[arg-type]
                                    specs[i].K, specs[i], int(first[i])) for i in range(cfg.n_scenes)]
        log.warning("corpus cache %s was made for another config (key %s != %s): rendering again",
                    cache, stored or "none", key)
    out = [render_scene(s, scfg) for s in tqdm(specs, desc="render scenes", unit="scene", disable=not progress)]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, rgb=np.stack([s.rgb for s in out]),
                 instance=np.stack([s.instance.astype(np.uint8) for s in out]),
                 first_object_id=np.array([s.first_object_id for s in out]), key=np.array(key))
    return out


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _templated(phrase: str, rng: np.random.Generator) -> str:
    return OBJECT_TEMPLATES[rng.integers(len(OBJECT_TEMPLATES))].format(phrase)


#: What a phrase says (None = not said) / what an item is: (colour, material, noun).
Attrs = tuple[str | None, str | None, str]


def _describes(said: Attrs, item: Attrs) -> bool:
    """True when every attribute the phrase names matches the item (no false negatives in the loss).

    The noun "object" names any object (not the floor or a wall).
    """
    noun_ok = said[2] == item[2] or (said[2] == "object" and item[2] not in ("floor", "wall"))
    return noun_ok and all(a is None or a == b for a, b in zip(said[:2], item[:2]))


def _attrs(sample: SyntheticSample, inst: int) -> Attrs:
    """(colour, material, noun) of an instance: objects by shape, "floor" / "wall" surfaces."""
    if inst == 1:
        return (None, sample.spec.floor_material, "floor")
    k = inst - sample.first_object_id
    if k < 0:
        return (None, sample.spec.wall_material, "wall")
    o = sample.spec.objects[k]
    return (o.colour, o.material, o.shape)


def _say(item: Attrs, rng: np.random.Generator, p_colour: float = 0.7, p_material: float = 0.4,
         p_colour_only: float = 0.1) -> tuple[Attrs, str]:
    """A random phrase about ``item``: what it names and its text ("red striped cube", "floor",
    "green object"). Phrases naming only the shape or only the colour teach the two apart, which
    is what lets unseen colour-shape pairs be recognised."""
    if item[0] is not None and rng.random() < p_colour_only:
        return (item[0], None, "object"), f"{item[0]} object"
    c = item[0] if item[0] is not None and rng.random() < p_colour else None
    m = item[1] if item[1] not in (None, "plain") and rng.random() < p_material else None
    return (c, m, item[2]), " ".join(w for w in (c, m, item[2]) if w)


@dataclass
class Batch:
    """images B x 3 x S x S (normalised); captions B; match B x B float: caption j describes image i.

    The last ``n_scenes`` images are scene crops; ``patch_phrases`` (P) are the dense phrases and
    ``patch_match`` ``n_scenes*g*g x P`` is each patch's target distribution over the phrases (the
    pixel share of every instance in the patch, spread over the phrases describing it) and
    ``patch_weight`` ``n_scenes*g*g`` its loss weight (1 + ``object_patch_weight`` x object share).
    """

    images: torch.Tensor
    captions: list[str]
    match: torch.Tensor
    n_scenes: int
    patch_phrases: list[str] = field(default_factory=list)
    patch_match: torch.Tensor | None = None
    patch_weight: torch.Tensor | None = None


def make_batch(corpus: list[SyntheticSample], cfg: TinyClipTrainConfig, step: int, grid: int) -> Batch:
    """The batch of ``step`` (deterministic from ``(cfg.seed, step)``)."""
    rng = np.random.default_rng([cfg.seed, step])
    S = cfg.image_size
    images, captions = [], []
    items: list[Attrs | None] = []  # what each image is (None = a scene crop)
    said: list[Attrs | None] = []  # what each caption names (None = a scene caption)
    while len(images) < cfg.batch_objects:
        s = corpus[rng.integers(len(corpus))]
        crops = object_crops(s, size=S, rng=rng)
        if not crops:
            continue
        c = crops[rng.integers(len(crops))]
        img = c.image[:, ::-1] if rng.random() < 0.5 else c.image
        images.append(np.ascontiguousarray(img))
        item = (c.obj.colour, c.obj.material, c.obj.shape)
        a, text = _say(item, rng)
        items.append(item)
        said.append(a)
        captions.append(_templated(text, rng))
    phrases: dict[str, tuple[int, Attrs]] = {}
    patch_items: list[list[tuple[Attrs, np.ndarray, bool]]] = []  # per scene crop: (item, g*g shares, is object)
    for _ in range(cfg.batch_scenes):
        s = corpus[rng.integers(len(corpus))]
        h, w = s.instance.shape
        side = int(rng.integers(48, min(h, w) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        rgb = cv2.resize(s.rgb[y:y + side, x:x + side], (S, S), interpolation=cv2.INTER_AREA)
        inst_full = s.instance[y:y + side, x:x + side]
        inst = cv2.resize(inst_full.astype(np.uint8), (S, S), interpolation=cv2.INTER_NEAREST).astype(np.int32)
        if rng.random() < 0.5:
            rgb, inst = rgb[:, ::-1], inst[:, ::-1]
        images.append(np.ascontiguousarray(rgb))
        # caption: objects with at least half of their pixels inside the crop
        inside = []
        for k, o in enumerate(s.spec.objects):
            full = int((s.instance == s.first_object_id + k).sum())
            if full and (inst_full == s.first_object_id + k).sum() >= 0.5 * full:
                inside.append(o)
        captions.append(scene_caption(inside, s.spec, rng))
        items.append(None)
        said.append(None)
        p = S // grid
        per_crop = []
        for iid in np.unique(inst):
            item = _attrs(s, int(iid))
            share = (inst == iid).reshape(grid, p, grid, p).mean(axis=(1, 3)).reshape(-1)
            a, text = _say(item, rng, 0.7, 0.5)
            text = _templated(text, rng) if rng.random() < 0.5 else text
            phrases.setdefault(text, (len(phrases), a))
            per_crop.append((item, share, iid >= s.first_object_id))
        patch_items.append(per_crop)
    n = len(images)
    match = torch.zeros(n, n)
    for i in range(n):
        for j in range(n):
            if i == j or (items[i] is not None and said[j] is not None and _describes(said[j], items[i])):
                match[i, j] = 1.0
    names = list(phrases)
    g2 = grid * grid
    pm = np.zeros((len(patch_items) * g2, len(names)), np.float32)
    pw = np.ones(len(patch_items) * g2, np.float32)
    for ci, per_crop in enumerate(patch_items):
        rows = slice(ci * g2, (ci + 1) * g2)
        for item, share, is_obj in per_crop:
            cols = [k for k, name in enumerate(names) if _describes(phrases[name][1], item)]
            pm[rows, cols] += share[:, None] / len(cols)
            if is_obj:
                pw[rows] += cfg.object_patch_weight * share
    return Batch(_to_tensor(images), captions, match, cfg.batch_scenes, names,
                 torch.from_numpy(pm) if patch_items else None, torch.from_numpy(pw) if patch_items else None)


# ----------------------------------------------------------------------------- model


def init_tiny_clip(seed: int) -> torch.nn.Module:
    """A randomly initialised ``movseg-synth-clip`` (seeded), in train mode."""
    import open_clip

    register_tiny_configs()
    torch.manual_seed(seed)
    return open_clip.create_model(MODEL_NAME, pretrained=None, device="cpu", precision="fp32")


def image_forward(model: torch.nn.Module, x: torch.Tensor,
                  dense_mode: str | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pooled embeddings ``B x D`` and (when ``dense_mode``) patch embeddings ``B x N x D``.

    Both go through :class:`movseg_core.clip.OpenClipVision`, the adapter the segmenter's dense
    features use, sharing the blocks before the last: the patch path runs the last block in
    ``dense_mode``, the pooled path the unchanged block.
    """
    vision = OpenClipVision(model.visual)
    t, grid = vision.embed(x)
    t = vision.trunk(t)
    pooled = vision.pool(vision.last_block(t))
    patches = vision.patches(vision.last_block(t, dense_mode, grid)) if dense_mode is not None else None
    return pooled, patches


def _multi_positive_ce(logits: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the row-normalised ``match`` (rows without a positive are skipped)."""
    keep = match.sum(1) > 0
    tgt = match[keep] / match[keep].sum(1, keepdim=True)
    return torch.sum(-tgt * F.log_softmax(logits[keep], 1), 1).mean()


_TOKENIZER = None


def _tokenizer():
    global _TOKENIZER
    if _TOKENIZER is None:
        import open_clip

        register_tiny_configs()
        _TOKENIZER = open_clip.get_tokenizer(MODEL_NAME)
    return _TOKENIZER


def loss_fn(model: torch.nn.Module, batch: Batch, cfg: TinyClipTrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Image-caption InfoNCE (+ dense patch-phrase term); returns (loss, float stats)."""
    tok = _tokenizer()
    use_dense = cfg.dense_weight > 0 and batch.n_scenes > 0
    img, patches = image_forward(model, batch.images, cfg.dense_mode if use_dense else None)
    img = F.normalize(img, dim=-1)
    texts = batch.captions + (batch.patch_phrases if use_dense else [])
    txt = F.normalize(encode_text_trimmed(model, tok(texts)), dim=-1)
    cap, phr = txt[: len(batch.captions)], txt[len(batch.captions):]
    scale = model.logit_scale.exp().clamp(max=100.0)
    logits = scale * img @ cap.t()
    l_clip = 0.5 * (_multi_positive_ce(logits, batch.match) + _multi_positive_ce(logits.t(), batch.match.t()))
    stats = {"clip": float(l_clip.detach())}
    loss = l_clip
    if use_dense:
        p = F.normalize(patches[-batch.n_scenes:], dim=-1).reshape(-1, phr.shape[-1])
        ce = torch.sum(-batch.patch_match * F.log_softmax(scale * p @ phr.t(), 1), 1)
        l_dense = (ce * batch.patch_weight).sum() / batch.patch_weight.sum()
        loss = loss + cfg.dense_weight * l_dense
        stats["dense"] = float(l_dense.detach())
    return loss, stats


def _lr(cfg: TinyClipTrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def _optimizer(model: torch.nn.Module, cfg: TinyClipTrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in n or "logit_scale" in n else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def save_fixture(model: torch.nn.Module, out: Path, cfg: TinyClipTrainConfig, info: dict) -> None:
    """Write the fp16 open_clip state dict to ``out`` and its config/provenance to ``out``.json."""
    sd = {k: (v.half() if v.is_floating_point() and k != "logit_scale" else v).clone()
          for k, v in model.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, out)
    meta = {
        "model_name": MODEL_NAME,
        "model_cfg": TINY_MODEL_CONFIGS[MODEL_NAME],
        "regenerate": (REGEN_COMMAND if cfg.seed == 0
                       else f"python -m movseg_core.training.tiny_clip --out {out} --seed {cfg.seed}"),
        "train": {k: v for k, v in asdict(cfg).items() if k != "threads"},
        "held_out_pairs": [list(p) for p in cfg.held_out],
        "note": "synthetic-scene stand-in for tests only; not a real CLIP",
        **info,
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")


def train(cfg: TinyClipTrainConfig, out: Path, work_dir: Path, minutes: float = 0.0, progress: bool = True,
          fresh: bool = False, stop_after: int = 0) -> bool:
    """Train (or resume) and write the fixture; returns False when stopped early (state saved).

    minutes: time box of this invocation (0 = none); stop_after: at most this many steps in this
    invocation (0 = no limit). A later call with the same config resumes from the saved state.
    """
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    work_dir.mkdir(parents=True, exist_ok=True)
    state_path = work_dir / f"state_seed{cfg.seed}.pt"
    corpus = render_corpus(cfg, corpus_cache_path(cfg, work_dir), progress)
    model = init_tiny_clip(cfg.seed)
    model.train()
    opt = _optimizer(model, cfg)
    step, spent = 0, 0.0
    if state_path.is_file() and not fresh:
        st = torch.load(state_path, weights_only=False)
        if st["cfg"] == asdict(cfg):
            model.load_state_dict(st["model"])
            opt.load_state_dict(st["opt"])
            step, spent = st["step"], st["seconds"]
            log.info("resumed from %s at step %d (%.1f min spent)", state_path, step, spent / 60)
        else:
            log.warning("state %s was for another config: starting fresh", state_path)
    grid = OpenClipVision(model.visual).grid[0]
    t0 = time.monotonic()
    bar = tqdm(total=cfg.steps, initial=step, desc="tiny-clip", unit="step", disable=not progress)
    stats: dict[str, float] = {}

    def save_state() -> None:
        torch.save({"cfg": asdict(cfg), "model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                    "seconds": spent + time.monotonic() - t0}, state_path)

    last_save = time.monotonic()
    first = step
    while step < cfg.steps:
        if (minutes > 0 and time.monotonic() - t0 > minutes * 60) or (stop_after > 0 and step - first >= stop_after):
            save_state()
            bar.close()
            log.info("stopped at step %d/%d (time box %.1f min / %d steps): state saved to %s; rerun to resume",
                     step, cfg.steps, minutes, stop_after, state_path)
            return False
        batch = make_batch(corpus, cfg, step, grid)
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, step)
        loss, stats = loss_fn(model, batch, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.3f}", **{k: f"{v:.3f}" for k, v in stats.items()})
        if step % 100 == 0:
            log.info("step %d/%d loss %.4f %s", step, cfg.steps, float(loss), stats)
        if time.monotonic() - last_save > 120:
            save_state()
            last_save = time.monotonic()
    bar.close()
    total = spent + time.monotonic() - t0
    model.eval()
    save_fixture(model, out, cfg, {"train_minutes": round(total / 60.0, 2), "final_loss": stats})
    log.info("wrote %s (%.1f MB) after %.1f min", out, out.stat().st_size / 1e6, total / 60)
    state_path.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """Train the tiny synthetic CLIP from the command line; exit code 0 when done, 3 when the time box stopped it."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="test/fixtures/synth_clip.pt", help="checkpoint path (a .json beside it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=TinyClipTrainConfig.steps)
    p.add_argument("--scenes", type=int, default=TinyClipTrainConfig.n_scenes, help="training scenes to render")
    p.add_argument("--dense-weight", type=float, default=TinyClipTrainConfig.dense_weight)
    p.add_argument("--dense-mode", default=TinyClipTrainConfig.dense_mode)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--minutes", type=float, default=0.0,
                   help="time box: save state and stop after this long (0 = none)")
    p.add_argument("--work-dir", default="/tmp/movseg_tiny_clip", help="corpus cache and resumable state")
    p.add_argument("--fresh", action="store_true", help="ignore a saved state")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = TinyClipTrainConfig(seed=a.seed, steps=a.steps, n_scenes=a.scenes, dense_weight=a.dense_weight,
                              dense_mode=a.dense_mode, threads=a.threads)
    done = train(cfg, Path(a.out), Path(a.work_dir), a.minutes, not a.no_progress, a.fresh)
    return 0 if done else 3


if __name__ == "__main__":
    raise SystemExit(main())
