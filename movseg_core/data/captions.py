"""Image-text corpus from the synthetic RGB-D scenes: captions, object crops, held-out pairs.

Built on :mod:`movseg_core.data.synthetic` (unchanged): scenes are sampled with an
``object_filter`` that removes the held-out colour-shape pairs (:data:`HELD_OUT_PAIRS`, e.g. no
"green cone" is ever rendered in training, so none is ever captioned), then

- :func:`scene_caption`: a caption naming what is there
  ("a red cube and a blue striped sphere on a wooden floor");
- :func:`object_crops`: square crops (S x S x 3 uint8) centred on each visible object with the
  object's phrase ("a red striped cube") and its class;
- :func:`patch_targets`: per-patch phrase indices of a scene crop (which object / floor / wall
  covers most of each patch), for the optional dense term of the tiny CLIP training;
- :func:`single_object_image`: one object of a given shape and colour on a floor, cropped around
  it: the zero-shot test images.

Everything is deterministic from its seed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import cv2
import numpy as np

from movseg_core.data.synthetic import (
    COLOURS,
    SHAPES,
    ObjectSpec,
    SceneConfig,
    SyntheticSample,
    render_scene,
    sample_scene,
)

#: Colour-shape pairs never rendered (nor captioned) in training: one colour per shape.
HELD_OUT_PAIRS: tuple[tuple[str, str], ...] = (
    ("green", "cone"),
    ("red", "sphere"),
    ("blue", "torus"),
    ("yellow", "cube"),
    ("purple", "cylinder"),
)

#: Caption templates for one object phrase (``{}`` = "red striped cube").
OBJECT_TEMPLATES: tuple[str, ...] = (
    "a {}",
    "a photo of a {}.",
    "a photo of the {}.",
    "a {} on the floor",
    "there is a {} in the scene.",
    "a close-up photo of the {}.",
    "a cropped photo of the {}.",
)


def allowed(shape: str, colour: str, held_out: Sequence[tuple[str, str]] = HELD_OUT_PAIRS) -> bool:
    """True when the (colour, shape) pair may appear in training."""
    return (colour, shape) not in set(held_out)


def train_filter(held_out: Sequence[tuple[str, str]] = HELD_OUT_PAIRS):
    """``object_filter`` for :func:`sample_scene` that rejects the held-out pairs."""
    banned = set(held_out)
    return lambda shape, colour, material: (colour, shape) not in banned


def object_phrase(o: ObjectSpec, rng: np.random.Generator | None = None) -> str:
    """"red striped cube"; with ``rng`` the material / colour are sometimes left out (caption variety)."""
    parts = []
    r = rng.random(2) if rng is not None else np.zeros(2)
    if r[0] < 0.85:
        parts.append(o.colour)
    if o.material != "plain" and r[1] < 0.5:
        parts.append(o.material)
    parts.append(o.shape)
    return " ".join(parts)


def floor_phrase(spec) -> str:
    """Phrase for the scene's floor, e.g. "wooden floor"."""
    return f"{spec.floor_material} floor"


def wall_phrase(spec) -> str:
    """Phrase for the scene's wall, e.g. "white wall"."""
    return f"{spec.wall_material} wall"


def scene_caption(objects: Sequence[ObjectSpec], spec, rng: np.random.Generator) -> str:
    """A caption naming ``objects`` (in random order) and usually the floor, e.g.
    "a red cube and a blue sphere on a wooden floor". Empty ``objects`` -> a room caption."""
    if not objects:
        return rng.choice([f"a {floor_phrase(spec)}", f"a {wall_phrase(spec)}",
                           f"an empty room with a {floor_phrase(spec)}"])
    order = rng.permutation(len(objects))
    phrases = [f"a {object_phrase(objects[i], rng)}" for i in order]
    if len(phrases) == 1:
        body = phrases[0]
    else:
        body = ", ".join(phrases[:-1]) + " and " + phrases[-1]
    r = rng.random()
    if r < 0.5:
        return f"{body} on a {floor_phrase(spec)}"
    if r < 0.7:
        return f"a photo of {body}."
    return body


@dataclass
class ObjectCrop:
    """A square crop around one object. image SxSx3 uint8; obj: its spec; visible: pixel count."""

    image: np.ndarray
    obj: ObjectSpec
    visible: int


def _square_box(ys: np.ndarray, xs: np.ndarray, h: int, w: int, margin: float,
                rng: np.random.Generator | None) -> tuple[int, int, int]:
    """(y0, x0, side) of a square box around pixel coordinates, enlarged by ``margin``, jittered."""
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    side = max(y1 - y0, x1 - x0) * (1.0 + 2.0 * margin)
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    if rng is not None:
        side *= float(rng.uniform(0.9, 1.25))
        cy += float(rng.uniform(-0.1, 0.1)) * side
        cx += float(rng.uniform(-0.1, 0.1)) * side
    side = int(np.clip(round(side), 8, min(h, w)))
    y = int(np.clip(round(cy - side / 2.0), 0, h - side))
    x = int(np.clip(round(cx - side / 2.0), 0, w - side))
    return y, x, side


def object_crops(sample: SyntheticSample, size: int = 64, margin: float = 0.15, min_pixels: int = 40,
                 rng: np.random.Generator | None = None) -> list[ObjectCrop]:
    """Square crops (``size`` px, area-resized) centred on every object with >= ``min_pixels`` visible."""
    h, w = sample.instance.shape
    out = []
    for k, o in enumerate(sample.spec.objects):
        m = sample.instance == sample.first_object_id + k
        n = int(m.sum())
        if n < min_pixels:
            continue
        ys, xs = np.nonzero(m)
        y, x, s = _square_box(ys, xs, h, w, margin, rng)
        crop = sample.rgb[y:y + s, x:x + s]
        out.append(ObjectCrop(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA), o, n))
    return out


def patch_targets(instance: np.ndarray, grid: int, min_share: float = 0.5) -> np.ndarray:
    """Majority instance id per patch of a square ``instance`` map: ``grid x grid`` int32.

    A patch whose majority covers less than ``min_share`` of its pixels gets -1 (ignored).
    """
    s = instance.shape[0]
    if instance.shape != (s, s) or s % grid:
        raise ValueError(f"instance map {instance.shape} must be square and divisible by grid {grid}")
    p = s // grid
    cells = instance.reshape(grid, p, grid, p).transpose(0, 2, 1, 3).reshape(grid * grid, p * p)
    out = np.full(grid * grid, -1, dtype=np.int32)
    for i, c in enumerate(cells):
        ids, counts = np.unique(c, return_counts=True)
        j = counts.argmax()
        if counts[j] >= min_share * p * p:
            out[i] = ids[j]
    return out.reshape(grid, grid)


def single_object_image(seed: int, shape: str, colour: str, size: int = 64, material: str | None = None,
                        cfg: SceneConfig | None = None) -> tuple[np.ndarray, ObjectSpec]:
    """One ``colour`` ``shape`` (random or given material) in a random room, cropped square around it.

    Returns (image size x size x 3 uint8, its ObjectSpec). Raises ValueError for unknown names.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; known: {tuple(COLOURS)}")
    base = cfg or SceneConfig(height=96, width=128)
    one = replace(base, n_objects=(1, 1), shapes=(shape,), colours=(colour,),
                  materials=(material,) if material else base.materials)
    for attempt in range(20):
        spec = sample_scene(seed * 32 + attempt, one)  # synthetic.py hashes need seeds < 3.4e9
        if not spec.objects:
            continue
        sample = render_scene(spec, one)
        crops = object_crops(sample, size=size)
        if crops:
            return crops[0].image, crops[0].obj
    raise ValueError(f"could not place a {colour} {shape} (seed {seed})")
