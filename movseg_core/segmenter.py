"""Zero-shot open-vocabulary RGB-D segmenter: training-free proposals + dense CLIP classification.

    seg = Segmenter.from_config({"clip": {"model_name": "ViT-B-16", "pretrained": "openai"}})
    seg.set_queries(["chair", "table", "floor"])       # labels 1, 2, 3 in this order; 0 = unknown
    res = seg.segment(rgb, depth, K)                    # rgb HxWx3 uint8, depth HxW metres, K 3x3
    res.labels, res.confidence, res.names, res.vocabulary_version, res.timings_ms

Stages (``timings_ms`` keys): ``normals`` (full resolution, from depth + K, only where a stage needs
them: trained proposals, a CLIP-X image made from normals, the objects' convexity test), ``proposals``
(class-agnostic segments from colour + depth + normals, computed first and shared with the dense
pass when ``dense.scope`` is ``proposals``; the graph proposals fit normals on their own working grid
unless full-resolution ones are given), ``dense`` (one CLIP pass per window with a
training-free last stage), ``pool`` (area-weighted features per segment), ``crops`` (optional
OVSeg masked-crop member), ``clip_x`` (optional CLIP-X branch on the depth/normal image),
``classify`` (scores vs text, unknown rejection), ``paint``, ``objects`` (instances and 3D boxes,
:mod:`movseg_core.objects`); ``total`` covers everything.

Overlap (``SegmenterConfig.overlap``, default on): normals and proposals run on one persistent
helper thread while the dense CLIP pass runs on the calling thread (numba kernels and torch ops
release the GIL; on a GPU the dense pass is a wait for the device); ``dense.scope: proposals``
keeps proposals before the dense pass. Per-stage ``timings_ms`` are each stage's own wall time,
so with overlap they add up to more than ``total``.

Thread safety: :meth:`Segmenter.set_queries` may be called from another thread while
:meth:`Segmenter.segment` runs; each ``segment`` uses the vocabulary snapshot it took at its start
and reports its version.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import unicodedata
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from movseg_core.backends import attach_backend, check_backend
from movseg_core.classify import (
    ClassifyConfig,
    crop_embeddings,
    ensemble_decisions,
    fuse_embeddings,
    paint,
    pool_segments,
    prepare_classify,
    score_segments,
)
from movseg_core.clip import ClipConfig, ClipModel, DenseConfig, create_clip, load_visual_weights
from movseg_core.config import build_config
from movseg_core.geometry import (
    NormalsConfig,
    depth_to_rgb,
    hha,
    normals_from_depth,
    normals_to_rgb,
    prepare_cpu_normals,
)
from movseg_core.objects import Objects, ObjectsConfig, extract_objects, prepare_objects
from movseg_core.proposals import ProposalConfig, prepare_proposals, propose

log = logging.getLogger(__name__)


@dataclass
class SegmenterConfig:
    """Everything the segmenter needs; nested sections are dataclasses (or dicts in from_config).

    clip: which CLIP and where (see :class:`movseg_core.clip.ClipConfig`).
    dense: dense-feature mode, resolution and windows (:class:`movseg_core.clip.DenseConfig`).
    proposals: class-agnostic segments (:class:`movseg_core.proposals.ProposalConfig`).
    classify: scoring, unknown rejection, crop / CLIP-X members (:class:`ClassifyConfig`).
    normals: normal estimation from depth (:class:`movseg_core.geometry.NormalsConfig`).
    objects: instances, 2D and 3D boxes (:class:`movseg_core.objects.ObjectsConfig`).
    max_queries: most queries per vocabulary; max_query_chars: longest query in characters.
    overlap: compute normals and proposals on a helper thread while the CLIP dense pass runs on the
        calling one (they do not depend on it; not with ``dense.scope: proposals``, whose dense pass
        needs the proposals first); false = one stage after another, as before.
    sync_stage_timings: on a GPU, synchronise with the device after each device stage so that
        ``timings_ms`` are each stage's own time (profiling: ``bench/gpu.py`` sets it); false (default): no
        host-device synchronisation in the middle of a frame, device stages report their host time.
    normals_on_device: on a CUDA device, compute normals there (the torch implementation, on a CUDA
        stream of the geometry thread's own, so they run beside the CLIP pass); false, or any other
        device: the compiled CPU kernels (same normals within 1e-4, tests/test_geometry.py).
    backend (torch | onnxruntime | openvino), backend_dir, backend_int8, onnx_providers, openvino_device: where
    the CLIP encoders run (:mod:`movseg_core.backends`; ``movseg export-onnx`` writes ``backend_dir``).
    """

    clip: ClipConfig = field(default_factory=ClipConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    normals: NormalsConfig = field(default_factory=NormalsConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    max_queries: int = 512
    max_query_chars: int = 200
    overlap: bool = True
    normals_on_device: bool = True
    sync_stage_timings: bool = False
    backend: str = "torch"
    backend_dir: str = ""
    backend_int8: bool = False
    onnx_providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    openvino_device: str = "CPU"

    def __post_init__(self) -> None:
        check_backend(self.backend, self.dense)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (round-trips through :func:`config_from_dict`)."""
        return dataclasses.asdict(self)


def config_from_dict(data: SegmenterConfig | dict[str, Any]) -> SegmenterConfig:
    """Nested dict (e.g. from YAML or ROS parameters) -> :class:`SegmenterConfig`; unknown keys -> ValueError
    (:func:`movseg_core.config.build_config`)."""
    return build_config(SegmenterConfig, data, where="segmenter")


@dataclass(frozen=True)
class Vocabulary:
    """An immutable query set: ``names[i]`` has label ``ids[i] == i + 1``; 0 is unknown.

    embeddings: N x D text embeddings (float32, L2-normalised) in query order.
    """

    names: tuple[str, ...]
    ids: tuple[int, ...]
    version: int
    embeddings: torch.Tensor = field(repr=False)


@dataclass
class SegmentationResult:
    """One frame's output.

    labels: HxW uint16, 0 = unknown, i = ``names[i-1]``; confidence: HxW float32 in [0, 1]
    (probability of the best query at that pixel's segment); names/ids: the vocabulary used;
    vocabulary_version: its version; timings_ms: per-stage wall time (ms) plus ``total``;
    segments: HxW int32 class-agnostic segment ids (0..S-1) the labels were painted from.
    objects: instance map + records (:class:`movseg_core.objects.Objects`), None when disabled.
    diagnostics: evidence about the inputs, for the caller to log or count: with depth and the graph
    proposals, ``registration`` (depth-to-colour registration score, ~1 registered, ~0 not; NaN = not
    judged), ``depth_steps``, ``speckle_px`` (working pixels left out of that judgement as speckle),
    ``depth_trust`` (0 = depth had no say: the frame was segmented as RGB-only) and, where depth had a
    say, ``shadow_bands`` (depth steps found hidden in missing depth, opened steps' included) from
    :func:`movseg_core.proposals.propose`; empty otherwise.
    """

    labels: np.ndarray
    confidence: np.ndarray
    names: tuple[str, ...]
    ids: tuple[int, ...]
    vocabulary_version: int
    timings_ms: dict[str, float]
    segments: np.ndarray | None = None
    objects: Objects | None = None
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass
class FrameInProgress:
    """A frame between :meth:`Segmenter.start` and :meth:`Segmenter.finish`: its inputs as checked, the
    vocabulary snapshot, normals, proposals (HxW int32), the dense features (``D x h x w`` or None),
    the query embeddings on the device, the stage times so far and when it started and ended (perf_counter s)."""

    vocab: Vocabulary
    rgb: np.ndarray
    depth: np.ndarray | None
    K: np.ndarray | None
    normals: np.ndarray | None
    valid: np.ndarray | None
    segments: np.ndarray
    trained: Any
    feats: torch.Tensor | None
    text: torch.Tensor
    times: dict[str, float]
    t_start: float
    t_started: float
    diagnostics: dict[str, float] = field(default_factory=dict)


def validate_queries(queries: Any, max_queries: int, max_chars: int) -> list[str]:
    """Check a query list; returns the stripped strings or raises ValueError naming the problem.

    Rules: a list/tuple of 1..max_queries entries; each ``str`` (or UTF-8 ``bytes``), valid UTF-8,
    no control characters, non-empty after stripping, at most ``max_chars`` characters; no
    duplicates (case-insensitive).
    """
    if isinstance(queries, (str, bytes)) or not isinstance(queries, Sequence):
        raise ValueError(f"queries must be a list of strings, got {type(queries).__name__}")
    if not 1 <= len(queries) <= max_queries:
        raise ValueError(f"need 1 to {max_queries} queries, got {len(queries)}")
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, q in enumerate(queries):
        if isinstance(q, (bytes, bytearray)):
            try:
                q = bytes(q).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"query {i} is not valid UTF-8: {exc}") from exc
        if not isinstance(q, str):
            raise ValueError(f"query {i} must be a string, got {type(q).__name__}")
        try:
            q.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"query {i} is not valid UTF-8 text: {exc}") from exc
        q = q.strip()
        if not q:
            raise ValueError(f"query {i} is empty")
        if len(q) > max_chars:
            raise ValueError(f"query {i} is too long ({len(q)} characters > {max_chars})")
        if any(unicodedata.category(c) == "Cc" for c in q):
            raise ValueError(f"query {i} ({q[:40]!r}) contains control characters")
        key = q.casefold()
        if key in seen:
            raise ValueError(f"duplicate query {q!r} (entries {seen[key]} and {i})")
        seen[key] = i
        out.append(q)
    return out


class Segmenter:
    """Open-vocabulary RGB-D segmenter (see module docstring). Build with :meth:`from_config`."""

    def __init__(self, cfg: SegmenterConfig, clip: ClipModel | None = None):
        self.cfg = cfg
        self.clip = clip if clip is not None else create_clip(cfg.clip)
        self.device = self.clip.device
        self.export = attach_backend(self.clip, cfg.dense, cfg)  # before any text is encoded
        c = cfg.classify
        uses_x = c.x_fusion_weight > 0 and c.x_checkpoint
        self.x_visual = load_visual_weights(self.clip, c.x_checkpoint) if uses_x else None
        bg = validate_queries(c.background_prompts, 1000, cfg.max_query_chars) if c.background_prompts else []
        self._check_token_lengths(bg)
        self.background = self.clip.text_embeddings(bg) if bg else None
        self.trained, self.trained_classes = None, frozenset()
        if cfg.proposals.method == "trained":
            from movseg_core.models.proposer import TrainedProposer

            self.trained = TrainedProposer(cfg.proposals.checkpoint, device=str(self.device),
                                           input_short_side=cfg.proposals.trained_short_side)
            dim = self.trained.model.cfg.embed_dim
            if dim != self.clip.embed_dim:
                raise ValueError(f"proposal checkpoint {cfg.proposals.checkpoint} embeds in {dim} dimensions but "
                                 f"CLIP {cfg.clip.model_name} in {self.clip.embed_dim}: export it for this CLIP")
            self.trained_classes = frozenset(self.trained.meta.get("class_names") or ())
        self._lock = threading.Lock()
        # one persistent helper thread for normals + proposals (started on the first overlapped frame)
        self._geometry_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="movseg-geometry")
        self._thread_streams: dict[int, torch.cuda.Stream] = {}  # CUDA normals: one stream per calling thread
        self._vocab: Vocabulary | None = None
        self._version = 0
        secs = prepare_cpu_normals(cfg.normals)  # so the first frame is not the one that compiles
        log.info("normals kernels ready in %.1f s%s", secs, " (compiled: first run after install)" if secs > 5 else "")
        if cfg.proposals.method != "trained":  # the training-free proposals' kernels, likewise
            log.info("proposal kernels ready in %.1f s", prepare_proposals())
            if cfg.proposals.normal_cell != cfg.normals.cell:  # their working-grid normals' cell size
                prepare_cpu_normals(NormalsConfig(cell=cfg.proposals.normal_cell, shifted=False))
        if cfg.objects.enabled:
            log.info("objects kernels ready in %.1f s", prepare_objects())
        log.info("pooling kernel ready in %.1f s", prepare_classify())
        log.info("Segmenter ready: %s/%s on %s (fp16=%s), dense=%s@%d",
                 cfg.clip.model_name, cfg.clip.pretrained, self.device, self.clip.use_fp16,
                 cfg.dense.mode, cfg.dense.short_side)

    @classmethod
    def from_config(cls, cfg: SegmenterConfig | dict[str, Any] | None = None) -> "Segmenter":
        """Build from a :class:`SegmenterConfig` or a nested dict of its fields."""
        return cls(config_from_dict(cfg if cfg is not None else {}))

    # ---- vocabulary ---------------------------------------------------------------------------
    @property
    def vocabulary(self) -> Vocabulary | None:
        """The vocabulary in force (None before the first :meth:`set_queries`)."""
        with self._lock:
            return self._vocab

    def _check_token_lengths(self, queries: Sequence[str]) -> None:
        limit = self.clip.context_length
        for i, q in enumerate(queries):
            n = self.clip.text_cache.token_count(q)
            if n > limit:
                raise ValueError(f"query {i} ({q[:40]!r}...) is too long: {n} tokens with its prompt > {limit}")

    def check_queries(self, queries: Sequence[str]) -> list[str]:
        """What :meth:`set_queries` would accept, without encoding or applying anything: the stripped
        queries, or ValueError naming the problem (the same checks, so a check that passes here
        cannot fail there)."""
        names = validate_queries(queries, self.cfg.max_queries, self.cfg.max_query_chars)
        self._check_token_lengths(names)
        return names

    def close(self) -> None:
        """Stop the geometry thread (after the frame it holds); :meth:`segment` raises RuntimeError afterwards.
        Idempotent. Without it the thread ends when the Segmenter is garbage-collected."""
        self._geometry_pool.shutdown(wait=True)

    def set_queries(self, queries: Sequence[str]) -> Vocabulary:
        """Replace the vocabulary; label ids are 1..N in the given order.

        Raises ValueError (and keeps the previous vocabulary) for an empty list, empty, duplicate,
        over-long or non-UTF-8 queries (:meth:`check_queries`). Text embeddings are cached per
        query: only new ones are encoded.
        """
        names = self.check_queries(queries)
        emb = self.clip.text_embeddings(names)
        with self._lock:
            self._version += 1
            self._vocab = Vocabulary(tuple(names), tuple(range(1, len(names) + 1)), self._version, emb)
            return self._vocab

    def seen_by_head(self, names: Sequence[str]) -> torch.Tensor:
        """N bool: which queries are classes the trained proposal head was trained on (exact names)."""
        return torch.tensor([n in self.trained_classes for n in names], dtype=torch.bool)

    # ---- inference ----------------------------------------------------------------------------
    @staticmethod
    def _check_inputs(rgb, depth, K, normals) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None,
                                                        np.ndarray | None, np.ndarray | None]:
        if not isinstance(rgb, np.ndarray):
            raise ValueError(f"rgb must be a numpy array, got {type(rgb).__name__}")
        if rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be uint8, got {rgb.dtype}")
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be HxWx3, got shape {rgb.shape}")
        h, w = rgb.shape[:2]
        if h < 8 or w < 8:
            raise ValueError(f"rgb is too small ({h}x{w})")
        valid = None
        if depth is not None:
            if not isinstance(depth, np.ndarray):
                raise ValueError(f"depth must be a numpy array, got {type(depth).__name__}")
            if depth.dtype not in (np.float32, np.float64):
                raise ValueError(f"depth must be float32/float64 metres, got {depth.dtype} "
                                 "(decode 16UC1 millimetres with movseg_core.geometry.decode_depth)")
            if depth.shape != (h, w):
                raise ValueError(f"depth shape {depth.shape} does not match rgb {(h, w)}")
            depth = depth.astype(np.float32, copy=False)
            valid = (depth > 0) & (depth < np.inf)  # NaN compares false: finite and positive
            depth = np.where(valid, depth, np.float32(0.0))  # a float32 copy (the caller's array is not changed)
        if K is not None:
            K = np.asarray(K, dtype=np.float64)
            if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
                raise ValueError(f"K must be a finite 3x3 pinhole matrix with fx, fy > 0, got {K.tolist()}")
        if normals is not None:
            if not isinstance(normals, np.ndarray) or normals.shape != (h, w, 3):
                raise ValueError(f"normals must be an HxWx3 array matching rgb {(h, w)}, "
                                 f"got {getattr(normals, 'shape', type(normals).__name__)}")
            if not np.issubdtype(normals.dtype, np.floating):
                raise ValueError(f"normals must be float (unit vectors), got {normals.dtype}")
            normals = np.nan_to_num(normals.astype(np.float32, copy=False))
            nvalid = np.linalg.norm(normals, axis=-1) > 0.5
            valid = nvalid if valid is None else (valid & nvalid)
        return rgb, depth, K, normals, valid

    def _overlaps(self) -> bool:
        """Whether :meth:`segment` runs normals + proposals beside the dense pass (``cfg.overlap``)."""
        return self.cfg.overlap and self.cfg.dense.scope != "proposals" and self.cfg.classify.dense_weight > 0

    def _lap(self, times: dict[str, float], name: str, t0: float, sync: bool = True) -> float:
        """Record stage ``name`` as the ms since ``t0`` in ``times``; returns now. ``sync``: a device stage; with
        ``sync_stage_timings`` wait for the device first, so the time is the stage's own (a host-device
        synchronisation in the middle of the frame: profiling only); otherwise the stage's host time, its
        device work showing up in the stage that next waits for it (painting copies the labels to the host).
        CPU stages on the geometry thread never wait, or they would wait for the CLIP pass."""
        if sync and self.cfg.sync_stage_timings:
            self._sync()
        t1 = time.perf_counter()
        times[name] = (t1 - t0) * 1e3
        return t1

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def normals_device(self) -> torch.device:
        """Where :meth:`segment` computes normals: this segmenter's CUDA device (``normals_on_device``), else
        the CPU (compiled kernels)."""
        if self.cfg.normals_on_device and self.device.type == "cuda":
            return self.device
        return torch.device("cpu")

    def _full_normals_cfg(self) -> NormalsConfig:
        """The full-resolution normals' settings: ``normals``, or with the objects' ``normal_radii`` when only the
        objects' convexity test needs them (fewer windows: ~60 % of the cost, docs/segmenter.md)."""
        if self._needs_full_normals(False):
            return self.cfg.normals
        return dataclasses.replace(self.cfg.normals, radii=self.cfg.objects.normal_radii)

    def _normals(self, depth: np.ndarray, K: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(HxWx3 float32 unit normals, HxW bool valid) on the host for HxW float32 metres ``depth``
        (:meth:`_full_normals_cfg`), computed on :meth:`normals_device`; on CUDA in a stream of the calling
        thread's own (the CLIP pass may be running on the default stream), and the copy back waits for that
        stream only."""
        dev = self.normals_device()
        ncfg = self._full_normals_cfg()
        if dev.type != "cuda":
            n, nvalid = normals_from_depth(depth, K, valid, ncfg)
            return np.asarray(n), np.asarray(nvalid)
        tid = threading.get_ident()
        stream = self._thread_streams.get(tid) or self._thread_streams.setdefault(tid, torch.cuda.Stream(dev))
        with torch.cuda.stream(stream):
            d = torch.from_numpy(depth).to(dev, non_blocking=True)
            v = torch.from_numpy(valid).to(dev, non_blocking=True)
            n, nvalid = normals_from_depth(d, K, v, ncfg)
            return n.cpu().numpy(), nvalid.cpu().numpy()  # synchronous copies: wait for this stream's work

    def _needs_full_normals(self, want_objects: bool) -> bool:
        """Whether :meth:`start` computes full-resolution normals: for the trained proposals, a CLIP-X image
        made from normals and, on frames that extract objects (``want_objects``), the objects' convexity test.
        The graph proposals fit their own on their working grid."""
        c, o = self.cfg.classify, self.cfg.objects
        return (self.trained is not None or (c.x_fusion_weight > 0 and c.x_modality != "depth")
                or (want_objects and o.enabled and o.convexity))

    def _x_image(self, depth: np.ndarray, valid: np.ndarray | None, normals: np.ndarray | None,
                 K: np.ndarray | None) -> np.ndarray | None:
        """The CLIP-X input image (HxWx3 uint8) for the configured modality, or None if unavailable."""
        mod = self.cfg.classify.x_modality
        if mod == "normals":
            return None if normals is None else np.asarray(normals_to_rgb(normals, valid))
        if mod == "depth":
            return np.asarray(depth_to_rgb(depth, valid, colormap=None))
        if K is None:
            return None
        return np.asarray(hha(depth, K, valid, normals=normals, normals_cfg=self.cfg.normals))

    def segment(self, rgb: np.ndarray, depth: np.ndarray | None = None, K: np.ndarray | None = None, *,
                normals: np.ndarray | None = None) -> SegmentationResult:
        """Label every pixel with a query id (1..N) or 0 = unknown.

        rgb: HxWx3 uint8 RGB. depth: HxW float metres (0/NaN/inf = invalid) or None (RGB-only).
        K: 3x3 intrinsics of this image (needed to compute normals from depth). normals: optional
        precomputed HxWx3 float unit normals (0 where invalid); skips the normals stage.
        Raises ValueError for bad input, RuntimeError when no vocabulary is set.
        Equal to ``finish(start(...))``; a pipeline may run :meth:`finish` of one frame on another
        thread while :meth:`start` of the next one runs.
        """
        return self.finish(self.start(rgb, depth, K, normals=normals))

    @torch.inference_mode()
    def start(self, rgb: np.ndarray, depth: np.ndarray | None = None, K: np.ndarray | None = None, *,
              normals: np.ndarray | None = None, want_objects: bool = True) -> FrameInProgress:
        """The first part of :meth:`segment` (same arguments): the vocabulary snapshot, normals, proposals and
        the dense CLIP pass; :meth:`finish` does the rest (pooling, crops, CLIP-X, classification, painting,
        objects). ``want_objects``: whether :meth:`finish` will extract objects, so that their full-resolution
        normals are computed here, beside the CLIP pass (:meth:`finish` computes them itself otherwise)."""
        t_start = time.perf_counter()
        vocab = self.vocabulary
        if vocab is None:
            raise RuntimeError("no vocabulary: call set_queries() first")
        rgb, depth, K, normals, valid = self._check_inputs(rgb, depth, K, normals)
        cfg = self.cfg
        times: dict[str, float] = {}
        diagnostics: dict[str, float] = {}  # filled by propose (on the geometry thread)

        lap = functools.partial(self._lap, times)

        if depth is not None and not valid.any():
            log.warning("depth has no valid pixel: segmenting this frame from RGB only")
            depth = valid = None
        c = cfg.classify
        text = vocab.embeddings.to(self.device)

        def geometry() -> tuple:  # normals and proposals: independent of CLIP unless dense.scope needs them
            t = time.perf_counter()
            n_out, v_out = normals, valid
            if depth is not None and normals is None and K is not None and self._needs_full_normals(want_objects):
                n_out, nvalid = self._normals(depth, K, valid)
                if self._needs_full_normals(False):  # what the trained proposals and the CLIP-X image see;
                    v_out = valid & nvalid  # not for objects alone, so that no output depends on who listens
                t = lap("normals", t, sync=False)  # numpy out: already on the host
            trained = self.trained.predict(rgb, depth, n_out, v_out) if self.trained is not None else None
            # the graph proposals fit their own normals on their working grid (from K) unless the caller gave
            # some: the same segments whichever other stage wants full-resolution normals
            segs = trained.segments if trained is not None else propose(rgb, depth, normals, valid, cfg.proposals,
                                                                          info=diagnostics, K=K)
            segs = np.ascontiguousarray(segs, dtype=np.int32)
            if segs.shape != rgb.shape[:2] or segs.min() < 0:
                raise RuntimeError(f"proposals returned bad segments {segs.shape} (expected {rgb.shape[:2]})")
            lap("proposals", t, sync=trained is not None)  # the trained proposals run on the device
            return n_out, v_out, segs, trained

        feats = None
        if self._overlaps():  # the dense pass on this thread while the geometry runs on the helper thread
            pending = self._geometry_pool.submit(geometry)
            t = time.perf_counter()
            try:
                feats = self.clip.dense_features(rgb, cfg.dense, text=text)
                lap("dense", t)
            finally:
                futures.wait([pending])  # never leave it running behind us; a dense error is raised first
            normals, valid, segments, trained = pending.result()
        else:
            normals, valid, segments, trained = geometry()
        scope = segments if cfg.dense.scope == "proposals" else None  # the frame's proposals, shared
        if c.dense_weight > 0 and feats is None:
            t = time.perf_counter()
            feats = self.clip.dense_features(rgb, cfg.dense, segments=scope, text=text)
            lap("dense", t)
        return FrameInProgress(vocab, rgb, depth, K, normals, valid, segments, trained, feats, text, times, t_start,
                               time.perf_counter(), diagnostics)

    @torch.inference_mode()
    def finish(self, f: FrameInProgress, want_objects: bool = True) -> SegmentationResult:
        """The rest of :meth:`segment` for a frame from :meth:`start`; ``timings_ms['total']`` is the time of
        both parts (not the wait between them). ``want_objects``: extract instances (with ``objects.enabled``);
        false skips them for this frame (``result.objects`` None), e.g. when nobody consumes them."""
        cfg, c, times, vocab = self.cfg, self.cfg.classify, f.times, f.vocab
        rgb, depth, K, normals, valid, segments, trained, text = (f.rgb, f.depth, f.K, f.normals, f.valid, f.segments,
                                                                  f.trained, f.text)

        lap = functools.partial(self._lap, times)

        t = t_begin = time.perf_counter()
        n_seg = int(segments.max()) + 1
        seg_t = torch.from_numpy(segments).to(self.device)
        parts = []
        scope = segments if cfg.dense.scope == "proposals" else None
        if c.dense_weight > 0:
            parts.append((pool_segments(f.feats, seg_t, n_seg), c.dense_weight))
            t = lap("pool", t)
        if c.crop_weight > 0:
            parts.append((crop_embeddings(self.clip, rgb, segments, n_seg, c.crop_size, c.crop_margin, c.crop_batch),
                          c.crop_weight))
            t = lap("crops", t)
        emb = fuse_embeddings(parts)
        if c.x_fusion_weight > 0 and depth is not None:
            x_img = self._x_image(depth, valid, normals, K)
            if x_img is not None:
                x_feats = self.clip.dense_features(x_img, cfg.dense, visual=self.x_visual, segments=scope, text=text)
                x_emb = pool_segments(x_feats, seg_t, n_seg)
                emb = fuse_embeddings([(emb, 1.0 - c.x_fusion_weight), (x_emb, c.x_fusion_weight)])
                t = lap("clip_x", t)
        text = text.to(emb.device)
        if trained is None:
            seg_labels, seg_conf, _ = score_segments(emb, text, self.background, self.clip.logit_scale, c.threshold)
        else:  # FrozenSeg class ensemble of the trained head and CLIP; the threshold applies to the ensemble
            clip_labels, _, p_clip = score_segments(emb, text, self.background, self.clip.logit_scale, 0.0)
            head = trained.embeddings.to(emb.device, emb.dtype)
            p_head = torch.softmax(self.clip.logit_scale * head @ text.T, dim=-1)
            seg_labels, seg_conf = ensemble_decisions(p_head, p_clip, clip_labels == 0, self.seen_by_head(vocab.names),
                                                      c.clip_exponent_seen, c.clip_exponent_unseen, c.threshold)
        t = lap("classify", t)
        labels, conf = paint(seg_t, seg_labels, seg_conf)
        t = lap("paint", t)
        objects = None
        if cfg.objects.enabled and want_objects:
            if normals is None and depth is not None and K is not None and cfg.objects.convexity:
                normals, nvalid = self._normals(depth, K, valid)  # the convexity test's, at full resolution
                t = lap("normals", t, sync=False)
            objects = extract_objects(segments, seg_labels.cpu().numpy(), seg_conf.float().cpu().numpy(), vocab.names,
                                      depth, K, normals, cfg.objects, per_segment=trained is not None)
            t = lap("objects", t)
        times["total"] = (f.t_started - f.t_start + t - t_begin) * 1e3
        return SegmentationResult(labels, conf, vocab.names, vocab.ids, vocab.version, times, segments, objects,
                                  f.diagnostics)
