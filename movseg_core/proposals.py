"""Training-free class-agnostic proposals from colour, depth and surface normals.

Geometry is *evidence*, never a feature to be matched: a pixel pair counts as a depth
discontinuity only where the sensor measured both pixels and the step exceeds what a surface plus
Kinect-like noise explains (relative step ``jump_rel`` plus ``noise_sigmas`` standard deviations
of disparity noise, ``sigma_z = noise_k z^2``); a normal crease only where both normals are valid.
Missing depth adds nothing, so colour alone decides there (a hole or a filled-in region does not
move a boundary that colour supports), with one exception that colour itself places: a short run of
missing depth between two measured pixels whose depths differ beyond the noise (the shadow a
structured-light or stereo sensor casts beside a near object's edge) hides a depth step, which is put
at the run's strongest colour edge (``shadow_bridge``). Two compiled steps (numba, ``_proposals_numba.py``) at a
reduced working width, upsampled at the end:

1. Felzenszwalb-Huttenlocher graph segmentation over 8-neighbour edges whose weight is the Lab
   colour distance plus ``depth_weight`` x depth-discontinuity evidence plus ``normal_weight`` x
   crease evidence.
2. Greedy region-adjacency merging to ``max_segments``: mean-colour distance, boundary colour
   contrast, the share of the shared boundary (where both sides have depth) that is a
   discontinuity, and the angle between region mean normals; small regions merge first.

Depth that is not registered to the colour image (a raw depth topic instead of the aligned one,
wrong extrinsics) would move boundaries to the wrong places: :func:`registration_score` measures,
without labels, how well the measured depth steps lie on colour edges, and the depth terms are
scaled by a soft ramp of that score (``registration_min`` .. ``registration_full``), so an
unregistered frame falls back to the RGB-only proposals. The score is taken without the depth's speckle
(``despeckle``: small pieces a stereo matcher leaves off every edge, which would read as misregistration).

RGB-only mode (``depth is None``) runs the same steps with colour alone, for comparison.
Method choice and parameters: docs/segmenter.md ("Proposals").
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from movseg_core.geometry import NormalsConfig, check_intrinsics, normals_from_depth, scale_intrinsics

PROPOSAL_METHODS = ("graph", "trained")


@dataclass
class ProposalConfig:
    """Proposal settings.

    method: ``graph`` (training-free, below) or ``trained`` (an exported MOVSeg RGB+X MaskFormer,
        ``movseg export``, at ``checkpoint``; its proposal embeddings join the classification
        through the FrozenSeg class ensemble). trained_short_side: its input short side (pixels).
    max_segments: granularity knob: at most this many segments per frame.
    work_width: processing width in pixels (aspect kept); segments are upsampled to the input.
    fh_sigma: Gaussian smoothing of the Lab image (working pixels) before the graph.
    fh_k: Felzenszwalb scale (Lab units x pixels; larger = fewer, larger first regions).
    fh_min_size: smallest first region (working pixels).
    fh_diagonals: 8-neighbour graph (else 4-neighbour: half the edges, faster).
    depth_weight: graph edge weight (Lab units) per unit of |log-depth step| beyond the noise, added
        in quadrature to the colour distance; only between two pixels with measured depth.
    normal_weight: the same per unit of |normal difference| beyond ``crease`` (0: normals act in
        the merge step only, which measured better).
    crease: |n_p - n_q| between neighbour unit normals that counts as surface noise.
    normal_radius, normal_cell: the normals :func:`propose` fits on its working grid when it is given K
        and no normals (:func:`working_normals`): window half-size in pixels of the input image (so a
        window covers the same part of the scene at any working width; 4 working pixels at 320 for a
        640-px image) and cell side in working pixels (:class:`~movseg_core.geometry.NormalsConfig`; no
        shifted windows: the merge step needs region means, and a pixel whose window holds a depth
        jump does without).
    jump_rel: relative depth step between neighbours that a surface can make (slant) before a
        step counts as a discontinuity in the merge step.
    noise_k, noise_sigmas: depth noise model sigma_z = noise_k z^2 (metres; Kinect v1 1.425e-3,
        Khoshelham & Elberink 2012) and how many sigmas a step must exceed to count at all.
    merge_depth: merge-cost weight of the discontinuous share of a shared boundary.
    merge_normal: merge-cost weight of (1 - cos angle) between region mean normals.
    merge_contrast: merge-cost weight of the mean colour contrast along a shared boundary.
    min_depth_cover: share of a working pixel's source pixels that must hold depth for it to count
        as measured.
    shadow_bridge: longest run of missing depth (pixels of the input image) between two measured
        pixels in which a depth step may hide (:func:`shadow_bands`: the shadow a structured-light or
        stereo sensor casts beside a near object's edge, so the boundary itself has no depth); the
        step is placed at the run's strongest colour edge and counted by the registration score. 0: off.
    despeckle: largest piece of measured depth (pixels of the input image, an area) bounded all round by
        discontinuities or holes that counts as speckle (a stereo matcher's mismatched blob, flying
        pixels) when the registration score judges the frame (:func:`judge_registration`); the
        segmentation itself keeps it. 0: off.
    step_band: where the working grid is coarser than the image (its pixels average blocks, so a step's
        two pixels may each mix both surfaces), a measured depth step larger than this x the merge step's
        discontinuity threshold has its place put in doubt: both its pixels become unmeasured
        (:func:`open_steps`); where that leaves a shadow band, colour places the step (``shadow_bridge``,
        which must reach 2 working px, else nothing is opened), elsewhere colour alone decides. 0: off.
    registration_min, registration_full: the depth-to-colour registration score
        (:func:`registration_score`, about 1 = depth steps on colour edges, about 0 = no better than
        beside them) at or below which depth has no say (depth_weight, merge_depth and merge_normal
        x 0: the RGB-only proposals), and at or above which it has its full say; linear between.
        ``registration_min`` > ``registration_full`` is refused; both -inf: depth always has its full say.
    refine_boundaries: where the working grid is coarser than the image, place each segment boundary
        on the image pixel instead of the working pixel
        (:func:`refine_boundaries`: a boundary pixel takes the neighbouring segment whose local colour
        and measured depth it fits best). Better labels in both modes on the tuning data, but off by
        default for speed: 2.3-4 ms per 640x480 frame, which on 2 cores makes the node fall behind a
        30 Hz camera (docs/segmenter.md "Boundaries at full resolution").
    refine_depth: with ``refine_boundaries``, RGB units of colour distance per unit of depth evidence
        (beyond slant and noise, at most 3) against a segment; x the depth trust. 0: colour alone.
    """

    method: str = "graph"
    checkpoint: str = ""
    trained_short_side: int = 480
    max_segments: int = 48
    work_width: int = 320
    fh_sigma: float = 0.5
    fh_k: float = 30.0
    fh_min_size: int = 20
    fh_diagonals: bool = False
    depth_weight: float = 30.0
    normal_weight: float = 0.0
    crease: float = 0.02
    normal_radius: int = 8
    normal_cell: int = 2
    jump_rel: float = 0.02
    noise_k: float = 1.425e-3
    noise_sigmas: float = 3.0
    merge_depth: float = 40.0
    merge_normal: float = 40.0
    merge_contrast: float = 1.0
    min_depth_cover: float = 0.75
    shadow_bridge: int = 32
    despeckle: int = 50
    step_band: float = 2.0
    registration_min: float = 0.35
    registration_full: float = 0.55
    refine_boundaries: bool = False
    refine_depth: float = 10.0

    def __post_init__(self) -> None:
        if self.method not in PROPOSAL_METHODS:
            raise ValueError(f"proposals.method must be one of {PROPOSAL_METHODS}, got {self.method!r}")
        if self.method == "trained" and not self.checkpoint:
            raise ValueError("proposals.method 'trained' needs proposals.checkpoint (a `movseg export` file)")
        if self.max_segments < 1:
            raise ValueError(f"proposals.max_segments must be >= 1, got {self.max_segments}")
        if self.work_width < 16:
            raise ValueError(f"proposals.work_width must be >= 16 px, got {self.work_width}")
        if self.normal_radius < 1 or self.normal_cell < 1:
            raise ValueError(f"proposals.normal_radius and normal_cell must be >= 1, got {self.normal_radius}, "
                             f"{self.normal_cell}")
        if self.shadow_bridge < 0:
            raise ValueError(f"proposals.shadow_bridge must be >= 0 px, got {self.shadow_bridge}")
        if self.despeckle < 0:
            raise ValueError(f"proposals.despeckle must be >= 0 px, got {self.despeckle}")
        if self.step_band < 0:
            raise ValueError(f"proposals.step_band must be >= 0, got {self.step_band}")
        if self.refine_depth < 0:
            raise ValueError(f"proposals.refine_depth must be >= 0, got {self.refine_depth}")
        if self.registration_min > self.registration_full:
            raise ValueError(f"proposals.registration_min ({self.registration_min}) must be <= "
                             f"registration_full ({self.registration_full})")


def _check_inputs(rgb, depth, normals, valid) -> tuple[int, int]:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb: expected HxWx3 uint8, "
                         f"got {getattr(rgb, 'dtype', type(rgb))} {getattr(rgb, 'shape', '')}")
    h, w = rgb.shape[:2]
    for name, arr, shape in (("depth", depth, (h, w)), ("normals", normals, (h, w, 3)), ("valid", valid, (h, w))):
        if arr is None:
            continue
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"{name}: expected a numpy array, got {type(arr).__name__}")
        if arr.shape != shape:
            raise ValueError(f"{name}: shape {arr.shape} does not match rgb (expected {shape})")
    if depth is not None and not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"depth: expected float metres, got {depth.dtype}")
    return h, w


_KERNELS = None


def _kernels():  # noqa: ANN202
    """The compiled kernels (loaded from numba's on-disk cache or compiled on first use)."""
    global _KERNELS
    if _KERNELS is None:
        from movseg_core import _proposals_numba

        _KERNELS = _proposals_numba
    return _KERNELS


def _chunks() -> int:
    """Row bands for the parallel kernels: one per numba thread (the result does not depend on it)."""
    import numba

    return max(1, numba.get_num_threads())


def prepare_proposals() -> float:
    """Load (or, on the first run after an install, compile: ~1 min) the proposal kernels now, so
    that the first frame is not slow. Returns the seconds it took."""
    import time

    t0 = time.perf_counter()
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, 24:] = 200
    depth = np.full((32, 48), 2.0, np.float32)
    depth[:, 24:] = 3.0
    depth[:, 20:28] = 0.0  # a shadow band over the step: compiles the bridging too
    normals = np.zeros((32, 48, 3), np.float32)
    normals[..., 2] = -1
    propose(rgb, depth, normals, depth > 0, ProposalConfig(max_segments=2, work_width=24))
    K = np.array([[48.0, 0.0, 23.5], [0.0, 48.0, 15.5], [0.0, 0.0, 1.0]])
    propose(rgb, depth, None, depth > 0, ProposalConfig(max_segments=2, work_width=24, refine_boundaries=True),
            K=K)  # working_normals, boundaries at full resolution
    propose(rgb, depth, None, None, ProposalConfig(max_segments=2, work_width=24))  # valid=None variant
    propose(rgb, None, None, None, ProposalConfig(max_segments=2, work_width=24))
    for valid in (depth > 0, None):  # a working grid that is no whole fraction of the image (848 x 480 cameras)
        propose(rgb, depth, None, valid, ProposalConfig(max_segments=2, work_width=20))
    _kernels().remap_ids(np.zeros((2, 2), np.int32), np.zeros(1, np.int32))  # refine_boundaries' id closing-up
    return time.perf_counter() - t0


@lru_cache(maxsize=32)
def area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-resampling taps from ``n_in`` source pixels to ``n_out`` <= n_in (cv2.INTER_AREA's weights):
    output i covers source interval [i s, (i + 1) s), s = n_in / n_out, and takes source pixel
    first[i] + j with weight (its overlap with that interval) / s. Returns (first: n_out int64,
    weights: n_out x T float32, rows summing to 1), T = ceil(s) + 1 taps (at most n_in), every
    first[i] + j inside 0..n_in - 1 (unused taps weigh 0). Read-only (cached per size pair)."""
    if not 1 <= n_out <= n_in:
        raise ValueError(f"area_taps: {n_in} -> {n_out} is not a downscale")
    s = n_in / n_out
    taps = min(n_in, int(np.ceil(s)) + 1)
    lo = np.arange(n_out) * s
    hi = np.minimum(lo + s, n_in)
    first = np.minimum(np.floor(lo).astype(np.int64), n_in - taps)
    px = first[:, None] + np.arange(taps)
    weights = (np.clip(np.minimum(hi[:, None], px + 1) - np.maximum(lo[:, None], px), 0.0, None) / s).astype(np.float32)
    first.flags.writeable = False
    weights.flags.writeable = False
    return first, weights


def _whole_factor(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> int:
    """f when ``dst_hw`` is ``src_hw`` shrunk by the same whole factor f in both axes, else 0."""
    f = src_hw[1] // dst_hw[1]
    return f if f >= 1 and dst_hw[1] * f == src_hw[1] and dst_hw[0] * f == src_hw[0] else 0


def area_rgb(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``rgb`` (H x W x 3 uint8) area-averaged to ``size_hw`` (h, w), at most H x W: h x w x 3 float32,
    0..255. Whole factors (640 -> 320) go through cv2.INTER_AREA (rounded to uint8, as always); other
    factors (848 x 480 -> 320 x 181) through the compiled :func:`area_taps` kernel, unrounded: about
    twice as fast as OpenCV's fractional path (0.5-0.7 vs 1.0-1.3 ms, 848 x 480 on 2 cores)."""
    h, w = size_hw
    if (h, w) == rgb.shape[:2]:
        return rgb.astype(np.float32)
    if _whole_factor(rgb.shape[:2], size_hw):
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    rows, cols = area_taps(rgb.shape[0], h), area_taps(rgb.shape[1], w)
    return _kernels().area_downsample_rgb(np.ascontiguousarray(rgb, np.uint8), *rows, *cols)


def _downsample_depth(depth: np.ndarray, valid: np.ndarray | None, size: tuple[int, int],
                      min_cover: float) -> np.ndarray:
    """Masked area average of measured depth at ``size`` (w, h); 0 where under ``min_cover`` of the
    source area holds depth (holes stay holes: never filled, never averaged with zeros). Both
    branches are compiled: whole blocks, or area weights for any other factor (:func:`area_taps`)."""
    d = np.ascontiguousarray(depth, np.float32)
    ok = None if valid is None else np.ascontiguousarray(valid, bool)
    f = _whole_factor(depth.shape, (size[1], size[0]))
    if f:
        return _kernels().downsample_depth(d, ok, f, float(min_cover))
    rows, cols = area_taps(depth.shape[0], size[1]), area_taps(depth.shape[1], size[0])
    return _kernels().area_downsample_depth(d, ok, *rows, *cols, float(min_cover))


REGISTRATION_EVIDENCE = 0.5  # a depth step: |dz| >= (1 + this) x the merge step's discontinuity threshold
REGISTRATION_COLOUR = 4.0  # Lab distance between neighbours that makes a colour edge (registration score)
REGISTRATION_RADIUS = 1  # working px: a depth step this close to a colour edge lies on it
REGISTRATION_SHIFT = 10  # working px: where the chance rate is sampled, across each depth step
REGISTRATION_MIN_STEPS = 50  # fewer depth steps than this: no judgement (score NaN, depth trusted)


def _measured(z: np.ndarray) -> np.ndarray:
    """Depth as the kernels take it: C-contiguous float32 metres, NaN / inf as not measured (0)."""
    z = np.ascontiguousarray(z, np.float32)
    return z if np.isfinite(z).all() else np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


def shadow_bands(z: np.ndarray, max_len: int, cfg: ProposalConfig, grow: float = 1.0) -> np.ndarray:
    """Depth steps hidden in runs of 1..``max_len`` missing pixels between two measured ones (shadow
    bands, ``_proposals_numba.shadow_bands``): the two depths differ by more than ``grow`` x what a
    surface plus noise explains over the run (``jump_rel``, ``noise_sigmas``, ``noise_k``).

    z: h x w float32 metres (0 = not measured; NaN / inf count as not measured). Returns n x 4 int32
    (axis 0 = row / 1 = column, line, a, b): the measured ends, holes a + 1 .. b - 1; none when
    ``max_len`` < 1."""
    if max_len < 1:
        return np.zeros((0, 4), np.int32)
    return _kernels().shadow_bands(_measured(z), int(max_len), float(cfg.jump_rel), float(cfg.noise_sigmas),
                                   float(cfg.noise_k), float(grow))


def shadow_bridge_px(cfg: ProposalConfig, image_width: int, working_width: int) -> int:
    """``cfg.shadow_bridge`` (pixels of an ``image_width`` image) in pixels of the working grid."""
    return int(round(cfg.shadow_bridge * working_width / max(image_width, 1)))


def despeckle(z: np.ndarray, cfg: ProposalConfig, image_width: int) -> tuple[np.ndarray, int]:
    """Working-grid depth without its speckles (``_proposals_numba.despeckle``): the pieces of measured
    depth bounded all round by discontinuities or holes (``jump_rel`` and the noise model) of at most
    ``cfg.despeckle`` pixels of an ``image_width`` image (converted to working pixels by area) become
    unmeasured: a stereo matcher's mismatched blobs, flying pixels. z: h x w float32 metres (0 = not
    measured). Returns (the new z, how many working pixels were dropped); z itself when ``despeckle`` is 0.
    """
    if cfg.despeckle <= 0:
        return z, 0
    max_px = max(1, round(cfg.despeckle * (z.shape[1] / max(image_width, 1)) ** 2))
    out, dropped = _kernels().despeckle(_measured(z), max_px, float(cfg.jump_rel), float(cfg.noise_sigmas),
                                        float(cfg.noise_k))
    return out, int(dropped)


def registration_score(lab: np.ndarray, z: np.ndarray, cfg: ProposalConfig,
                       bands: np.ndarray) -> tuple[float, int]:
    """Label-free depth-to-colour registration score of a frame at the working resolution.

    lab: h x w x 3 float32 Lab image (as the graph sees it); z: h x w float32 metres (0 = not
    measured). Returns (score, n_steps): score ~1 when the measured depth steps ((1 +
    REGISTRATION_EVIDENCE) x the merge step's discontinuity threshold from ``jump_rel`` and the noise
    model) lie within REGISTRATION_RADIUS px of a
    colour edge (Lab distance >= REGISTRATION_COLOUR) and the places REGISTRATION_SHIFT px beside
    them do not; ~0 (or below) when they hit colour edges no more often than beside them (depth not
    registered to colour); NaN under REGISTRATION_MIN_STEPS depth steps (no evidence). ``bands``:
    the depth steps hidden in shadow bands (:func:`shadow_bands` of ``z``, at any ``grow`` <= 1 +
    REGISTRATION_EVIDENCE; ``propose`` finds them up to :func:`shadow_bridge_px` long; none: measured
    steps only) count too when they pass that evidence: near colour when a colour edge lies anywhere
    in the band. Definition: ``_proposals_numba.registration``; ~0.2 ms at 320 x 240.
    """
    score, n = _kernels().registration(lab, z, bands, float(cfg.jump_rel), float(cfg.noise_sigmas), float(cfg.noise_k),
                                       REGISTRATION_EVIDENCE, REGISTRATION_COLOUR, REGISTRATION_RADIUS,
                                       REGISTRATION_SHIFT)
    return (float(score) if n >= REGISTRATION_MIN_STEPS else float("nan")), int(n)


def judge_registration(lab: np.ndarray, z: np.ndarray, cfg: ProposalConfig,
                       image_width: int) -> tuple[float, int, int]:
    """How ``propose`` judges a frame's registration: :func:`registration_score` of the working-grid depth
    ``z`` (h x w float32 metres, 0 = not measured, from an ``image_width`` image) without its speckles
    (:func:`despeckle`: speckle is sensor noise, not evidence that depth and colour disagree), with the
    shadow bands of what is left. Returns (score, depth steps, working pixels dropped as speckle)."""
    judged, speckle = despeckle(z, cfg, image_width)
    bands = shadow_bands(judged, shadow_bridge_px(cfg, image_width, z.shape[1]), cfg)
    return (*registration_score(lab, judged, cfg, bands), speckle)


def open_steps(z: np.ndarray, cfg: ProposalConfig) -> tuple[np.ndarray, int]:
    """Working-grid depth with both pixels of every clear depth step (more than ``cfg.step_band`` x the merge
    step's discontinuity threshold) made unmeasured (``_proposals_numba.open_steps``), so that
    :func:`shadow_bands` finds the step (where the depths beside the 2-px run differ enough) and colour places
    it within a pixel. z: h x w float32 metres (0 = not measured; NaN / inf count as not measured). Returns
    (the new z, pixels opened); z itself when ``step_band`` is 0."""
    if cfg.step_band <= 0:
        return z, 0
    out, opened = _kernels().open_steps(_measured(z), float(cfg.jump_rel), float(cfg.noise_sigmas),
                                        float(cfg.noise_k), float(cfg.step_band))
    return out, int(opened)


REFINE_RADIUS = 2  # working px: where a boundary pixel's candidate segments take their local colour and depth


def refine_boundaries(labels: np.ndarray, rgb: np.ndarray, depth: np.ndarray | None, valid: np.ndarray | None,
                      z_small: np.ndarray, depth_weight: float, cfg: ProposalConfig) -> np.ndarray:
    """Working-grid segments at the image's resolution with each boundary placed within the working pixel
    (``_proposals_numba.refine_boundaries``): image pixels of working pixels next to another segment take
    the neighbouring segment whose local colour (within REFINE_RADIUS working px) is closest, plus
    ``depth_weight`` (RGB units per unit of evidence, up to 3) x how far their measured depth lies outside
    that segment's local depth range beyond slant and noise.

    labels: h x w int32 segments; rgb: H x W x 3 uint8, H >= h, W >= w (image pixel (Y, X) lies in working
    pixel (Y h // H, X w // W)); depth: H x W float metres (0 / NaN / inf = not measured) or None (colour
    alone); valid: H x W bool or None; z_small: h x w float32 metres, the working grid's measured depth
    (0 = not measured). Returns H x W int32 segment ids 0..S'-1, in the order of ``labels``' ids; S' < S
    where a segment without interior working pixels (a sliver along a boundary) lost all its pixels."""
    h, w = labels.shape
    H, W = rgb.shape[:2]
    if H < h or W < w:
        raise ValueError(f"refine_boundaries: image {H}x{W} smaller than the working grid {h}x{w}")
    small = area_rgb(rgb, (h, w))
    z_full, ok = np.zeros((0, 0), np.float32), np.zeros((0, 0), bool)
    if depth is not None and depth_weight > 0:  # the kernel reads NaN / inf / invalid as not measured
        z_full = np.ascontiguousarray(depth, np.float32)
        ok = ok if valid is None else np.ascontiguousarray(valid, bool)
    labels = np.ascontiguousarray(labels, np.int32)
    ys, xs = np.arange(H) * h // H, np.arange(W) * w // W  # the working pixel of each image row / column
    rows, cols = np.searchsorted(ys, np.arange(h + 1)), np.searchsorted(xs, np.arange(w + 1))
    as_float = labels.astype(np.float32)  # exact below 2^24 segments; morphology takes float32
    interior = cv2.erode(as_float, None) == cv2.dilate(as_float, None)  # 3 x 3: one segment all round
    kern = _kernels()
    out, present = kern.refine_boundaries(labels, interior, small, np.ascontiguousarray(rgb), z_full, ok,
                                          _measured(z_small), rows, cols, REFINE_RADIUS, float(depth_weight),
                                          float(cfg.jump_rel), float(cfg.noise_sigmas), float(cfg.noise_k), _chunks())
    kept = present.any(axis=0)  # a sliver (no interior pixel) may have gone to its neighbours
    if kept.all():
        return out
    return kern.remap_ids(out, np.cumsum(kept, dtype=np.int32) - 1)  # ids 0..S'-1 again, in the same order


def depth_trust(score: float, cfg: ProposalConfig) -> float:
    """The factor in [0, 1] on the depth terms for a registration ``score``: 0 at or below
    ``cfg.registration_min``, 1 at or above ``cfg.registration_full``, linear between; 1 for NaN
    (too few depth steps to judge)."""
    if not np.isfinite(score) or score >= cfg.registration_full:
        return 1.0
    if score <= cfg.registration_min:
        return 0.0
    return float((score - cfg.registration_min) / (cfg.registration_full - cfg.registration_min))


def working_size(height: int, width: int, cfg: ProposalConfig) -> tuple[int, int]:
    """(height, width) in pixels the proposals work at for a ``height`` x ``width`` image:
    ``cfg.work_width`` wide (never wider than the image), aspect kept."""
    ww = min(cfg.work_width, width)
    return max(1, int(round(height * ww / width))), ww


def working_images(rgb: np.ndarray, depth: np.ndarray | None, valid: np.ndarray | None,
                   cfg: ProposalConfig) -> tuple[np.ndarray, np.ndarray]:
    """The images the proposals work on, at ``cfg.work_width`` (aspect kept, never wider than rgb):
    lab h x w x 3 float32 (area-resized rgb in Lab, blurred by ``fh_sigma``) and z h x w float32
    metres (:func:`_downsample_depth` of ``depth`` over ``valid``; 0 = not measured; all 0 when
    ``depth`` is None). Also what :func:`registration_score` takes."""
    h, w = rgb.shape[:2]
    wh, ww = working_size(h, w, cfg)
    lab = cv2.cvtColor(area_rgb(rgb, (wh, ww)) * np.float32(1 / 255), cv2.COLOR_RGB2Lab)
    if cfg.fh_sigma > 0:
        lab = cv2.GaussianBlur(lab, (0, 0), cfg.fh_sigma)
    if depth is None:
        return lab, np.zeros((wh, ww), np.float32)
    return lab, _downsample_depth(depth, valid, (ww, wh), cfg.min_depth_cover)


def working_normals(z: np.ndarray, K: np.ndarray, image_hw: tuple[int, int],
                    cfg: ProposalConfig = ProposalConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals on the working grid, fitted to its own depth: what the merge step's region mean
    normals need, without full-resolution normals (2.1 / 2.4 ms min / median at 320 x 240 against 7.3 / 9.6
    for 640 x 480 normals and their downsampling, docs/segmenter.md; the same gains on the tuning data).

    z: h x w float32 metres at the working grid (0 = not measured, :func:`working_images`); K: 3x3
    intrinsics of the ``image_hw`` (H, W) image it was downscaled from; cfg: ``normal_radius`` (input
    pixels) and ``normal_cell``. Returns (h x w x 3 float32 unit normals, 0 where none; h x w bool: a
    normal and measured depth)."""
    wh, ww = z.shape
    if min(wh, ww) < 2 or not (z > 0).any():  # a single row or column has no plane to fit
        return np.zeros((wh, ww, 3), np.float32), np.zeros((wh, ww), bool)
    radius = max(1, int(round(cfg.normal_radius * ww / image_hw[1])))  # in working pixels
    ncfg = NormalsConfig(radii=(radius,), cell=int(cfg.normal_cell), shifted=False)
    n, ok = normals_from_depth(z, scale_intrinsics(K, image_hw, (wh, ww)), None, ncfg)
    return np.asarray(n), np.asarray(ok) & (z > 0)


def propose(rgb: np.ndarray, depth: np.ndarray | None = None, normals: np.ndarray | None = None,
            valid: np.ndarray | None = None, cfg: ProposalConfig = ProposalConfig(),
            info: dict | None = None, K: np.ndarray | None = None) -> np.ndarray:
    """Class-agnostic segments of an RGB(-D) frame.

    rgb: HxWx3 uint8. depth: HxW float metres (0/NaN invalid) or None for RGB-only. normals: HxWx3
    unit camera-frame normals (0 where invalid), downsampled to the working grid; or None: with ``K``
    (3x3 intrinsics of this image) the normals are fitted on the working grid instead
    (:func:`working_normals`; what :class:`~movseg_core.segmenter.Segmenter` has it do),
    without ``K`` the proposals use no normals. valid: HxW bool depth validity or None.
    info: a dict to receive diagnostics (with depth): ``registration`` (:func:`registration_score`,
    NaN = not judged), ``depth_steps`` (its evidence count), ``speckle_px`` (working pixels left out of that
    judgement as speckle, :func:`judge_registration`) and ``depth_trust`` (:func:`depth_trust`,
    the factor the depth terms got; 0 = the frame was segmented as RGB-only) and, where depth was
    used, ``shadow_bands`` (how many depth steps hidden in missing depth were found, row and column
    runs counted apart, those of the steps :func:`open_steps` opened included; each was bridged).
    Returns HxW int32 segment ids 0..S-1 with S <= cfg.max_segments.
    """
    h, w = _check_inputs(rgb, depth, normals, valid)
    if K is not None:
        K = check_intrinsics(K, (h, w))
    kern = _kernels()
    lab, z = working_images(rgb, depth, valid, cfg)
    wh, ww = z.shape
    nrm = np.zeros((wh, ww, 3), np.float32)
    nok = np.zeros((wh, ww), bool)
    use_depth = depth is not None
    use_normals = False
    trust = 1.0
    if use_depth:
        score, steps, speckle = judge_registration(lab, z, cfg, w)
        trust = depth_trust(score, cfg)
        if info is not None:
            info.update(registration=score, depth_steps=steps, depth_trust=trust, speckle_px=speckle)
        if trust == 0.0:  # depth not registered to colour: it has no say (exactly the RGB-only proposals)
            use_depth = False
            z = np.zeros((wh, ww), np.float32)
    z_measured = z  # the working grid's measured depth, before any step is opened or bridged
    if use_depth:
        bridge = shadow_bridge_px(cfg, w, ww)
        if ww < w and bridge >= 2:  # a block-averaged step pixel mixes both surfaces: open it, colour places the step
            z, _ = open_steps(z, cfg)
        bands = shadow_bands(z, bridge, cfg)
        if info is not None:
            info["shadow_bands"] = int(len(bands))
        if len(bands):
            z = kern.bridge_shadows(lab, z, bands)
        if normals is not None:
            f = w // ww
            if ww * f == w and wh * f == h:
                nrm, nok = kern.downsample_normals(np.ascontiguousarray(normals, np.float32), z, f)
            else:
                nrm = cv2.resize(np.nan_to_num(normals.astype(np.float32)), (ww, wh), interpolation=cv2.INTER_AREA)
                norm = np.linalg.norm(nrm, axis=-1)
                nok = (norm > 0.5) & (z > 0)
                nrm = np.ascontiguousarray(nrm / np.maximum(norm, 1e-6)[..., None], dtype=np.float32)
        elif K is not None:
            nrm, nok = working_normals(z, K, (h, w), cfg)
        use_normals = bool(nok.any())
    edges = kern.sorted_edges(lab, z, nrm, nok, float(cfg.depth_weight * trust if use_depth else 0.0),
                                  float(cfg.normal_weight * trust if use_normals else 0.0), float(cfg.noise_sigmas),
                                  float(cfg.noise_k), float(cfg.crease), bool(cfg.fh_diagonals), _chunks())
    flat, n_regions = kern.graph_segment(wh * ww, ww, bool(cfg.fh_diagonals), edges, float(cfg.fh_k),
                                         int(cfg.fh_min_size))
    labels, _ = kern.merge_regions(flat.reshape(wh, ww), n_regions, lab, z, nrm, nok, int(cfg.max_segments),
                                   float(cfg.jump_rel), float(cfg.noise_sigmas), float(cfg.noise_k),
                                   float(cfg.merge_depth * trust), float(cfg.merge_normal * trust),
                                   float(cfg.merge_contrast), use_depth, use_normals)
    if labels.shape == (h, w):
        return labels
    if cfg.refine_boundaries:
        return refine_boundaries(labels, rgb, depth if use_depth else None, valid, z_measured,
                                 cfg.refine_depth * trust, cfg)
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
