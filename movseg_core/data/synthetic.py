"""Procedural synthetic RGB-D scenes: shape-defined objects on a floor in front of walls.

Each scene is a room corner (floor plane, back wall, optional side walls) holding a few objects
whose *class is their shape* (cube, sphere, cylinder, cone, torus); colour and surface texture
(material) are random, so only geometry tells the classes apart reliably. A scene is sampled
from a seed (:func:`sample_scene` -> :class:`SceneSpec`) and rendered by numpy sphere tracing
of signed distance functions through a pinhole camera (:func:`render_scene` ->
:class:`SyntheticSample`): RGB HxWx3 uint8, depth HxW float32 metres (camera z), per-pixel
class labels HxW uint16 (0 = unknown, ids = index in :data:`CLASS_NAMES` + 1), instance ids
HxW int32 (0 = none) and K 3x3 float64. Sampling and rendering are split so callers (captions,
held-out attribute-object pairs) can constrain scenes; everything is deterministic from the seed.

World frame: y up, floor at y = 0, camera looking along +z. Camera frame: x right, y down,
z forward (OpenCV). Typical cost on one CPU core: ~30 ms at 96x128, ~0.2 s at 240x320.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import numpy as np

#: Object shapes; the class of an object is its shape.
SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder", "cone", "torus")
#: Surfaces of the room.
SURFACES: tuple[str, ...] = ("floor", "wall")
#: Class names in id order (class id = index + 1; 0 = unknown).
CLASS_NAMES: tuple[str, ...] = SURFACES + SHAPES
CLASS_IDS: dict[str, int] = {n: i + 1 for i, n in enumerate(CLASS_NAMES)}

#: Named object colours (RGB 0..1); a sampled colour is jittered around its anchor.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "green": (0.15, 0.65, 0.20),
    "blue": (0.12, 0.25, 0.85),
    "yellow": (0.92, 0.85, 0.15),
    "orange": (0.95, 0.50, 0.08),
    "purple": (0.55, 0.18, 0.70),
    "white": (0.92, 0.92, 0.90),
    "black": (0.08, 0.08, 0.09),
    "pink": (0.95, 0.55, 0.70),
    "cyan": (0.15, 0.80, 0.85),
}
#: Object surface materials (procedural textures in object coordinates).
MATERIALS: tuple[str, ...] = ("plain", "glossy", "striped", "checkered", "dotted", "marbled")
#: Floor and wall finishes.
FLOOR_MATERIALS: tuple[str, ...] = ("wooden", "tiled", "carpet", "concrete")
WALL_MATERIALS: tuple[str, ...] = ("painted", "striped", "brick")


@dataclass
class SceneConfig:
    """How scenes are sampled and rendered.

    height/width: image size in pixels. hfov_deg: horizontal field of view range (degrees).
    camera_height_m / pitch_deg: camera height above the floor (m) and downward pitch ranges.
    n_objects: inclusive range of objects per scene. size_m: object size range (m, roughly
    the bounding radius). dist_m: object distance range from the camera along the floor (m).
    shapes/colours/materials: what may be sampled. side_walls: probability of each side wall.
    rgb_noise: std of additive Gaussian pixel noise (0..255 scale). depth_noise: relative std
    of multiplicative depth noise. light_jitter: random light direction spread.
    clones: extra objects, each a copy (shape, colour, material, size) of an earlier one placed
    beside it (touching or up to 3 cm apart) or behind it (occluded in part): several instances of
    one class side by side. Drawn from a separate random stream after the other objects, so
    ``clones=0`` gives exactly the scenes it always gave.
    """

    height: int = 120
    width: int = 160
    hfov_deg: tuple[float, float] = (55.0, 70.0)
    camera_height_m: tuple[float, float] = (0.9, 1.5)
    pitch_deg: tuple[float, float] = (18.0, 32.0)
    n_objects: tuple[int, int] = (2, 5)
    size_m: tuple[float, float] = (0.18, 0.35)
    dist_m: tuple[float, float] = (1.4, 3.4)
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    materials: tuple[str, ...] = MATERIALS
    side_walls: float = 0.5
    rgb_noise: float = 2.0
    depth_noise: float = 0.0
    light_jitter: float = 0.4
    max_steps: int = 96
    clones: int = 0

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"image size {self.height}x{self.width} too small (>= 8x8)")
        if self.n_objects[0] < 0 or self.n_objects[1] < self.n_objects[0]:
            raise ValueError(f"n_objects range {self.n_objects} invalid")
        for s in self.shapes:
            if s not in SHAPES:
                raise ValueError(f"unknown shape {s!r}; known: {SHAPES}")
        for c in self.colours:
            if c not in COLOURS:
                raise ValueError(f"unknown colour {c!r}; known: {tuple(COLOURS)}")
        for m in self.materials:
            if m not in MATERIALS:
                raise ValueError(f"unknown material {m!r}; known: {MATERIALS}")
        if not self.shapes or not self.colours or not self.materials:
            raise ValueError("shapes, colours and materials must be non-empty")


@dataclass
class ObjectSpec:
    """One object: shape (= class), colour name and RGB (0..1), material, pose and size.

    position: (x, z) of the footprint centre on the floor (m, world). size: bounding radius (m).
    yaw: rotation about the vertical axis (rad). texture_scale: pattern period (m).
    """

    shape: str
    colour: str
    rgb: tuple[float, float, float]
    material: str
    position: tuple[float, float]
    size: float
    yaw: float = 0.0
    texture_scale: float = 0.08

    @property
    def class_id(self) -> int:
        """The object's class id in the labels (its shape's id in ``CLASS_IDS``)."""
        return CLASS_IDS[self.shape]


@dataclass
class SceneSpec:
    """A sampled scene: camera, room and objects (everything needed to render it)."""

    height: int
    width: int
    fx: float
    camera_height: float
    pitch: float  # radians, positive = looking down
    floor_material: str
    floor_rgb: tuple[float, float, float]
    wall_material: str
    wall_rgb: tuple[float, float, float]
    back_wall_z: float
    side_walls: tuple[float | None, float | None]  # x of left / right wall, None = absent
    light_dir: tuple[float, float, float]
    objects: list[ObjectSpec] = field(default_factory=list)
    seed: int = 0

    @property
    def K(self) -> np.ndarray:
        """3x3 float64 pinhole intrinsics (square pixels, principal point at the centre)."""
        return np.array(
            [[self.fx, 0.0, (self.width - 1) / 2.0], [0.0, self.fx, (self.height - 1) / 2.0], [0.0, 0.0, 1.0]]
        )


@dataclass
class SyntheticSample:
    """A rendered scene.

    rgb HxWx3 uint8; depth HxW float32 metres (camera z, > 0 everywhere); label HxW uint16 class
    ids (index in CLASS_NAMES + 1); instance HxW int32 (1 = floor, 2.. = walls, then objects in
    ``spec.objects`` order: object i has id ``first_object_id + i``); normals HxWx3 float32 unit
    camera-frame surface normals from the renderer (exact, towards the camera); K 3x3 float64.
    """

    rgb: np.ndarray
    depth: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    normals: np.ndarray
    K: np.ndarray
    spec: SceneSpec
    first_object_id: int

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names of the synthetic labels (``CLASS_NAMES``)."""
        return CLASS_NAMES


# ----------------------------------------------------------------------------- sampling


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def _jitter_colour(rng: np.random.Generator, rgb: Sequence[float], amount: float = 0.06) -> tuple[float, float, float]:
    c = np.clip(np.asarray(rgb) + rng.normal(0.0, amount, 3), 0.0, 1.0)
    return (float(c[0]), float(c[1]), float(c[2]))


def sample_scene(
    seed: int,
    cfg: SceneConfig | None = None,
    object_filter: Callable[[str, str, str], bool] | None = None,
) -> SceneSpec:
    """Sample a scene deterministically from ``seed``.

    ``object_filter(shape, colour, material) -> bool`` rejects attribute combinations (e.g. to
    hold out "green cone" from training); rejected draws are resampled (at most 100 times).
    """
    cfg = cfg or SceneConfig()
    rng = np.random.default_rng(seed)
    hfov = np.deg2rad(_uniform(rng, cfg.hfov_deg))
    fx = (cfg.width / 2.0) / np.tan(hfov / 2.0)
    cam_h = _uniform(rng, cfg.camera_height_m)
    pitch = np.deg2rad(_uniform(rng, cfg.pitch_deg))
    floor_mat = FLOOR_MATERIALS[rng.integers(len(FLOOR_MATERIALS))]
    floor_base = {
        "wooden": (0.55, 0.38, 0.22),
        "tiled": (0.75, 0.74, 0.70),
        "carpet": (0.45, 0.42, 0.50),
        "concrete": (0.55, 0.55, 0.53),
    }[floor_mat]
    wall_mat = WALL_MATERIALS[rng.integers(len(WALL_MATERIALS))]
    wall_base = (0.80, 0.78, 0.72) if wall_mat != "brick" else (0.62, 0.30, 0.22)
    back_z = _uniform(rng, (cfg.dist_m[1] + 0.8, cfg.dist_m[1] + 2.5))
    sides = tuple(
        (sign * _uniform(rng, (1.6, 3.0))) if rng.random() < cfg.side_walls else None for sign in (-1.0, 1.0)
    )
    light = np.array([rng.normal(0, cfg.light_jitter), 1.0, -0.6 + rng.normal(0, cfg.light_jitter)])
    light /= np.linalg.norm(light)
    spec = SceneSpec(
        height=cfg.height,
        width=cfg.width,
        fx=float(fx),
        camera_height=cam_h,
        pitch=float(pitch),
        floor_material=floor_mat,
        floor_rgb=_jitter_colour(rng, floor_base, 0.05),
        wall_material=wall_mat,
        wall_rgb=_jitter_colour(rng, wall_base, 0.05),
        back_wall_z=back_z,
        side_walls=sides,  # type: ignore[arg-type]
        light_dir=(float(light[0]), float(light[1]), float(light[2])),
        seed=seed,
    )
    n = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    for _ in range(n * 30):
        if len(spec.objects) >= n:
            break
        shape = cfg.shapes[rng.integers(len(cfg.shapes))]
        colour = cfg.colours[rng.integers(len(cfg.colours))]
        material = cfg.materials[rng.integers(len(cfg.materials))]
        if object_filter is not None:
            for _retry in range(100):
                if object_filter(shape, colour, material):
                    break
                shape = cfg.shapes[rng.integers(len(cfg.shapes))]
                colour = cfg.colours[rng.integers(len(cfg.colours))]
                material = cfg.materials[rng.integers(len(cfg.materials))]
            else:
                raise ValueError("object_filter rejected 100 draws in a row; is it satisfiable?")
        size = _uniform(rng, cfg.size_m)
        z = _uniform(rng, cfg.dist_m)
        # keep the footprint inside the horizontal field of view (with a margin)
        half = np.tan(hfov / 2.0) * z * 0.8 - size
        if half <= 0:
            continue
        x = float(rng.uniform(-half, half))
        if any(np.hypot(x - o.position[0], z - o.position[1]) < size + o.size + 0.05 for o in spec.objects):
            continue
        if any(w is not None and abs(x - w) < size + 0.05 for w in sides):
            continue
        spec.objects.append(
            ObjectSpec(
                shape=shape,
                colour=colour,
                rgb=_jitter_colour(rng, COLOURS[colour]),
                material=material,
                position=(x, float(z)),
                size=size,
                yaw=float(rng.uniform(0, np.pi / 2)),
                texture_scale=_uniform(rng, (0.05, 0.12)),
            )
        )
    if cfg.clones > 0:
        _add_clones(spec, cfg, np.random.default_rng([seed, 0xC10E]), float(hfov))
    return spec


def _add_clones(spec: SceneSpec, cfg: SceneConfig, rng: np.random.Generator, hfov: float) -> None:
    """Append up to ``cfg.clones`` look-alike copies of existing objects, beside or behind them."""
    placed = 0
    for _ in range(cfg.clones * 30):
        if placed >= cfg.clones or not spec.objects:
            break
        src = spec.objects[int(rng.integers(len(spec.objects)))]
        gap = float(rng.uniform(0.0, 0.03))
        if rng.random() < 0.6:  # beside: along the line across the view direction
            ang = float(rng.uniform(-0.35, 0.35)) + (0.0 if rng.random() < 0.5 else np.pi)
        else:  # behind (farther from the camera), offset sideways so it shows in part
            ang = np.pi / 2 + float(rng.uniform(0.25, 0.6)) * (1 if rng.random() < 0.5 else -1)
        dist = 2 * src.size + gap
        x = src.position[0] + dist * np.cos(ang)
        z = src.position[1] + dist * np.sin(ang)
        if z < cfg.dist_m[0] * 0.8 or abs(x) > np.tan(hfov / 2.0) * z * 0.8 - src.size:
            continue
        if any(np.hypot(x - o.position[0], z - o.position[1]) < src.size + o.size + gap - 1e-9 for o in spec.objects):
            continue
        if (any(w is not None and abs(x - w) < src.size + 0.05 for w in spec.side_walls)
                or z > spec.back_wall_z - src.size):
            continue
        spec.objects.append(replace(src, position=(float(x), float(z)), yaw=float(rng.uniform(0, np.pi / 2))))
        placed += 1


# ----------------------------------------------------------------------------- 3D truth


@dataclass
class ObjectBox:
    """Ground-truth 3D extent of one object in the camera optical frame (x right, y down, z forward).

    box_min / box_max: (3,) corners of the solid's axis-aligned box (m); centre: their midpoint.
    instance_id: the object's id in :attr:`SyntheticSample.instance`; class_id as in the labels.
    """

    instance_id: int
    class_id: int
    box_min: np.ndarray
    box_max: np.ndarray

    @property
    def centre(self) -> np.ndarray:
        """Midpoint of the box, (3,) in metres (camera optical frame)."""
        return (self.box_min + self.box_max) / 2


def object_boxes(spec: SceneSpec, first_object_id: int = 5, grid: int = 48) -> list[ObjectBox]:
    """Camera-frame axis-aligned boxes of every object's solid, from a ``grid``^3 sampling of its
    signed distance function inside its bounding sphere (accuracy about 2.5 size / grid)."""
    cp, sp = np.cos(spec.pitch), np.sin(spec.pitch)
    R = np.array([[1.0, 0.0, 0.0], [0.0, -cp, -sp], [0.0, -sp, cp]])  # camera -> world (as in _camera_rays)
    origin = np.array([0.0, spec.camera_height, 0.0])
    out = []
    t = np.linspace(-1.0, 1.0, grid)
    unit = np.stack(np.meshgrid(t, t, t, indexing="ij"), -1).reshape(-1, 3)
    for k, o in enumerate(spec.objects):
        c, rad = _bounding_sphere(o)
        p = c + unit * rad
        solid = p[_sdf(p, o) <= 0]
        cam = (solid - origin) @ R  # world = R cam + origin
        out.append(ObjectBox(first_object_id + k, o.class_id, cam.min(0), cam.max(0)))
    return out


# ----------------------------------------------------------------------------- geometry


def _local(p: np.ndarray, o: ObjectSpec) -> np.ndarray:
    """World points Nx3 -> object frame (footprint centre at origin, yaw removed)."""
    q = p - np.array([o.position[0], 0.0, o.position[1]])
    c, s = np.cos(o.yaw), np.sin(o.yaw)
    x = c * q[:, 0] - s * q[:, 2]
    z = s * q[:, 0] + c * q[:, 2]
    return np.stack([x, q[:, 1], z], axis=1)


def _object_dims(o: ObjectSpec) -> dict[str, float]:
    r = o.size
    if o.shape == "cube":
        a = r / np.sqrt(3.0) * 1.2  # half edge
        return {"a": a, "cy": a}
    if o.shape == "sphere":
        return {"r": r * 0.85, "cy": r * 0.85}
    if o.shape == "cylinder":
        return {"r": r * 0.6, "h": r * 0.75, "cy": r * 0.75}
    if o.shape == "cone":
        return {"r": r * 0.75, "h": r * 0.9, "cy": r * 0.9}
    if o.shape == "torus":
        return {"R": r * 0.72, "r": r * 0.28, "cy": r * 0.28}
    raise ValueError(f"unknown shape {o.shape!r}")


def _sdf(p_world: np.ndarray, o: ObjectSpec) -> np.ndarray:
    """Signed distance (m) from world points Nx3 to the object surface (negative inside)."""
    d = _object_dims(o)
    p = _local(p_world, o)
    p[:, 1] -= d["cy"]
    if o.shape == "cube":
        q = np.abs(p) - d["a"]
        return np.linalg.norm(np.maximum(q, 0.0), axis=1) + np.minimum(q.max(axis=1), 0.0)
    if o.shape == "sphere":
        return np.linalg.norm(p, axis=1) - d["r"]
    rho = np.hypot(p[:, 0], p[:, 2])
    if o.shape == "cylinder":
        dx, dy = rho - d["r"], np.abs(p[:, 1]) - d["h"]
        return np.minimum(np.maximum(dx, dy), 0.0) + np.hypot(np.maximum(dx, 0.0), np.maximum(dy, 0.0))
    if o.shape == "cone":  # capped cone, base radius r at y=-h, apex at y=+h
        h, r1 = d["h"], d["r"]
        qx, qy = rho, p[:, 1]
        cax = qx - np.minimum(qx, np.where(qy < 0.0, r1, 0.0))
        cay = np.abs(qy) - h
        k2x, k2y = -r1, 2.0 * h
        t = np.clip(((0.0 - qx) * k2x + (h - qy) * k2y) / (k2x * k2x + k2y * k2y), 0.0, 1.0)
        cbx, cby = qx + k2x * t, qy - h + k2y * t
        sign = np.where((cbx < 0.0) & (cay < 0.0), -1.0, 1.0)
        return sign * np.sqrt(np.minimum(cax * cax + cay * cay, cbx * cbx + cby * cby))
    if o.shape == "torus":
        return np.hypot(rho - d["R"], p[:, 1]) - d["r"]
    raise ValueError(f"unknown shape {o.shape!r}")


def _bounding_sphere(o: ObjectSpec) -> tuple[np.ndarray, float]:
    d = _object_dims(o)
    c = np.array([o.position[0], d["cy"], o.position[1]])
    return c, o.size * 1.25 + 1e-3


def _camera_rays(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit ray directions in world (HW x 3) and camera frame (HW x 3); camera-to-world rotation 3x3."""
    H, W = spec.height, spec.width
    K = spec.K
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1).reshape(-1, 3)
    d_cam /= np.linalg.norm(d_cam, axis=1, keepdims=True)
    # camera (x right, y down, z fwd) -> world (x right, y up, z fwd), then pitch down about x
    cp, sp = np.cos(spec.pitch), np.sin(spec.pitch)
    # columns: camera x -> world x; camera y (down) -> world (0,-cos,-sin); camera z -> (0,-sin,cos)
    R = np.array([[1.0, 0.0, 0.0], [0.0, -cp, -sp], [0.0, -sp, cp]])
    return d_cam @ R.T, d_cam, R


def _plane_hits(spec: SceneSpec, origin: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest room-surface hit per ray: distance t, surface index (0 floor, 1 back, 2 left, 3 right), normal."""
    inf = np.full(len(d), np.inf)
    planes = [
        (np.array([0.0, 1.0, 0.0]), 0.0),  # floor y = 0
        (np.array([0.0, 0.0, -1.0]), -spec.back_wall_z),  # back wall z = zb, normal towards camera
    ]
    if spec.side_walls[0] is not None:
        planes.append((np.array([1.0, 0.0, 0.0]), spec.side_walls[0]))
    else:
        planes.append((None, 0.0))  # type: ignore[arg-type]
    if spec.side_walls[1] is not None:
        planes.append((np.array([-1.0, 0.0, 0.0]), -spec.side_walls[1]))
    else:
        planes.append((None, 0.0))  # type: ignore[arg-type]
    ts = []
    for n, off in planes:
        if n is None:
            ts.append(inf.copy())
            continue
        denom = d @ n
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (off - origin @ n) / denom
        t[(denom >= -1e-9) | (t <= 0)] = np.inf
        ts.append(t)
    T = np.stack(ts, axis=1)
    idx = T.argmin(axis=1)
    t = T[np.arange(len(d)), idx]
    normals = np.stack([p[0] if p[0] is not None else np.zeros(3) for p in planes])[idx]
    return t, idx, normals


def _trace_objects(
    spec: SceneSpec, origin: np.ndarray, d: np.ndarray, t_max: np.ndarray, max_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sphere-trace all objects. Returns hit distance (inf = miss) and object index (-1 = miss)."""
    n = len(d)
    t_hit = np.full(n, np.inf)
    obj = np.full(n, -1, dtype=np.int64)
    if not spec.objects:
        return t_hit, obj
    # start each ray at its first bounding-sphere entry; rays that hit no sphere are skipped
    t0 = np.full(n, np.inf)
    t1 = np.zeros(n)
    for o in spec.objects:
        c, rad = _bounding_sphere(o)
        oc = origin - c
        b = d @ oc
        disc = b * b - (oc @ oc - rad * rad)
        ok = disc > 0
        sq = np.sqrt(np.where(ok, disc, 0.0))
        near, far = -b - sq, -b + sq
        ok &= far > 0
        t0 = np.where(ok, np.minimum(t0, np.maximum(near, 0.0)), t0)
        t1 = np.where(ok, np.maximum(t1, far), t1)
    active = np.nonzero(np.isfinite(t0))[0]
    t = t0[active]
    t_end = np.minimum(t1[active], t_max[active])
    for _ in range(max_steps):
        if len(active) == 0:
            break
        p = origin + d[active] * t[:, None]
        dist = np.stack([_sdf(p, o) for o in spec.objects], axis=1)
        k = dist.argmin(axis=1)
        dmin = dist[np.arange(len(active)), k]
        hit = dmin < 2e-4 + 1e-4 * t
        t_hit[active[hit]] = t[hit]
        obj[active[hit]] = k[hit]
        t = t + np.maximum(dmin, 0.0)
        keep = ~hit & (t < t_end)
        active, t, t_end = active[keep], t[keep], t_end[keep]
    return t_hit, obj


def _object_normals(spec: SceneSpec, p: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Outward unit normals (world) at surface points Nx3 of objects ``obj`` (central differences)."""
    out = np.zeros_like(p)
    eps = 1e-4
    for k, o in enumerate(spec.objects):
        m = obj == k
        if not m.any():
            continue
        q = p[m]
        g = np.stack(
            [_sdf(q + e, o) - _sdf(q - e, o) for e in np.eye(3) * eps],
            axis=1,
        )
        out[m] = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    return out


# ----------------------------------------------------------------------------- texturing


def _hash_noise(p: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] at points Nx3 (trilinear interpolation of hashed lattice values)."""
    q = p / scale
    i = np.floor(q).astype(np.int64)
    f = q - i
    f = f * f * (3 - 2 * f)
    # the seed's hash term taken mod 2**63 so any seed fits int64 (unchanged below ~3.47e9)
    salt = (int(seed) * 2654435761) % (1 << 63)

    def h(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
        v = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ salt
        v = (v ^ (v >> 13)) * 1274126177
        return ((v ^ (v >> 16)) & 0xFFFF).astype(np.float64) / 65535.0

    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (
                    (f[:, 0] if dx else 1 - f[:, 0])
                    * (f[:, 1] if dy else 1 - f[:, 1])
                    * (f[:, 2] if dz else 1 - f[:, 2])
                )
                out += w * h(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz)
    return out


def _pattern(material: str, q: np.ndarray, base: np.ndarray, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Albedo Nx3 and specular weight N for a material at local points q Nx3."""
    n = len(q)
    alb = np.repeat(base[None], n, axis=0)
    spec = np.zeros(n)
    alt = np.clip(1.0 - base * 0.85 + 0.05, 0, 1)  # contrasting secondary colour
    if material == "glossy":
        spec[:] = 0.6
    elif material == "striped":
        s = (np.floor(q[:, 1] / scale) % 2).astype(bool)
        alb[s] = 0.55 * base + 0.45 * alt
    elif material == "checkered":
        s = ((np.floor(q[:, 0] / scale) + np.floor(q[:, 1] / scale) + np.floor(q[:, 2] / scale)) % 2).astype(bool)
        alb[s] = 0.5 * base + 0.5 * alt
    elif material == "dotted":
        g = q / scale
        r = np.linalg.norm(g - np.round(g), axis=1)
        alb[r < 0.3] = 0.4 * base + 0.6 * alt
    elif material == "marbled":
        v = _hash_noise(q, scale * 1.5, seed)
        vein = np.abs(np.sin((q[:, 0] + q[:, 1] * 0.7) / scale * 2.0 + v * 6.0))
        alb = alb * (0.75 + 0.25 * vein[:, None])
        spec[:] = 0.3
    elif material == "wooden":
        v = _hash_noise(q * np.array([1.0, 1.0, 0.15]), 0.05, seed)
        rings = 0.5 + 0.5 * np.sin(q[:, 0] * 60.0 + v * 8.0)
        alb = alb * (0.8 + 0.25 * rings[:, None])
        plank = (np.floor(q[:, 0] / 0.18) % 2).astype(bool)
        alb[plank] *= 0.9
    elif material == "tiled":
        s = ((np.floor(q[:, 0] / 0.4) + np.floor(q[:, 2] / 0.4)) % 2).astype(bool)
        alb[s] *= 0.82
        grout = (np.abs(q[:, 0] / 0.4 - np.round(q[:, 0] / 0.4)) < 0.03) | (
            np.abs(q[:, 2] / 0.4 - np.round(q[:, 2] / 0.4)) < 0.03
        )
        alb[grout] = 0.35
    elif material in ("carpet", "concrete"):
        v = _hash_noise(q, 0.03 if material == "carpet" else 0.2, seed)
        alb = alb * (0.8 + 0.4 * v[:, None])
    elif material == "brick":
        row = np.floor(q[:, 1] / 0.12)
        col = np.floor((q[:, 0] + q[:, 2] + (row % 2) * 0.12) / 0.24)
        mortar = (np.abs(q[:, 1] / 0.12 - np.round(q[:, 1] / 0.12)) < 0.08) | (
            np.abs((q[:, 0] + q[:, 2] + (row % 2) * 0.12) / 0.24
                   - np.round((q[:, 0] + q[:, 2] + (row % 2) * 0.12) / 0.24))
            < 0.04
        )
        shade = 0.85 + 0.3 * _hash_noise(np.stack([row, col, row * 0], 1), 1.0, seed)
        alb = alb * shade[:, None]
        alb[mortar] = 0.7
    elif material == "painted":
        pass
    elif material != "plain":
        raise ValueError(f"unknown material {material!r}")
    return np.clip(alb, 0, 1), spec


# ----------------------------------------------------------------------------- rendering


def render_scene(spec: SceneSpec, cfg: SceneConfig | None = None) -> SyntheticSample:
    """Render a :class:`SceneSpec` to RGB, depth (m), class labels, instance ids and normals."""
    cfg = cfg or SceneConfig(height=spec.height, width=spec.width)
    H, W = spec.height, spec.width
    d, d_cam, R = _camera_rays(spec)
    origin = np.array([0.0, spec.camera_height, 0.0])
    t_plane, surf, n_plane = _plane_hits(spec, origin, d)
    t_obj, obj = _trace_objects(spec, origin, d, t_plane, cfg.max_steps)
    is_obj = (obj >= 0) & (t_obj < t_plane)
    t = np.where(is_obj, t_obj, t_plane)
    p = origin + d * t[:, None]

    normals = n_plane.copy()
    normals[is_obj] = _object_normals(spec, p[is_obj], obj[is_obj])

    # labels and instances: floor = 1, walls = 2 + wall index, objects after the walls
    first_obj = 5
    label = np.where(surf == 0, CLASS_IDS["floor"], CLASS_IDS["wall"]).astype(np.uint16)
    inst = np.where(surf == 0, 1, 1 + surf).astype(np.int32)
    albedo = np.zeros((len(d), 3))
    specw = np.zeros(len(d))
    rng = np.random.default_rng(spec.seed + 7919)
    fl = ~is_obj & (surf == 0)
    albedo[fl], specw[fl] = _pattern(spec.floor_material, p[fl], np.asarray(spec.floor_rgb), 0.1, spec.seed)
    wl = ~is_obj & (surf > 0)
    albedo[wl], specw[wl] = _pattern(spec.wall_material, p[wl], np.asarray(spec.wall_rgb), 0.15, spec.seed + 1)
    if spec.wall_material == "striped":
        s = wl & ((np.floor((p[:, 0] + p[:, 2]) / 0.25) % 2) == 1)
        albedo[s] *= 0.88
    for k, o in enumerate(spec.objects):
        m = is_obj & (obj == k)
        label[m] = o.class_id
        inst[m] = first_obj + k
        if m.any():
            q = _local(p[m], o)
            albedo[m], specw[m] = _pattern(o.material, q, np.asarray(o.rgb), o.texture_scale, spec.seed + 11 * k)

    # shading: ambient + Lambert + Blinn-Phong specular + soft contact darkening near objects
    light = np.asarray(spec.light_dir)
    ndl = np.clip(normals @ light, 0.0, 1.0)
    half = light - d
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    spec_term = specw * np.clip((normals * half).sum(1), 0, 1) ** 40
    ao = np.ones(len(d))
    for o in spec.objects:
        c, rad = _bounding_sphere(o)
        dist = np.hypot(p[:, 0] - c[0], p[:, 2] - c[2])
        near_floor = ~is_obj & (surf == 0)
        ao[near_floor] *= np.clip(0.55 + 0.45 * (dist[near_floor] / (rad * 1.1)) ** 2, 0.55, 1.0)
    shade = (0.35 + 0.65 * ndl) * ao
    col = albedo * shade[:, None] + spec_term[:, None]
    rgb = col * 255.0 + rng.normal(0.0, cfg.rgb_noise, col.shape)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8).reshape(H, W, 3)

    depth = (t * d_cam[:, 2]).astype(np.float32)
    if cfg.depth_noise > 0:
        depth *= (1.0 + rng.normal(0.0, cfg.depth_noise, depth.shape)).astype(np.float32)
    # normals to camera frame (world = R cam, so cam = R^T world), facing the camera
    n_cam = normals @ R
    flip = (n_cam * d_cam).sum(1) > 0
    n_cam[flip] *= -1
    return SyntheticSample(
        rgb=rgb,
        depth=depth.reshape(H, W),
        label=label.reshape(H, W),
        instance=inst.reshape(H, W),
        normals=n_cam.reshape(H, W, 3).astype(np.float32),
        K=spec.K,
        spec=spec,
        first_object_id=first_obj,
    )


def generate(seed: int, cfg: SceneConfig | None = None) -> SyntheticSample:
    """Sample and render one scene from ``seed``."""
    cfg = cfg or SceneConfig()
    return render_scene(sample_scene(seed, cfg), cfg)


class SyntheticScenes:
    """An indexable, deterministic set of scenes: item i is ``generate(base_seed + i, cfg)``.

    Rendering is cheap but not free; ``cache=True`` keeps rendered samples in memory.
    """

    def __init__(self, n: int, base_seed: int = 0, cfg: SceneConfig | None = None, cache: bool = True):
        if n <= 0:
            raise ValueError(f"number of scenes must be positive, got {n}")
        self.n = n
        self.base_seed = base_seed
        self.cfg = cfg or SceneConfig()
        self.cache = cache
        self._store: dict[int, SyntheticSample] = {}
        self.class_names = CLASS_NAMES

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> SyntheticSample:
        if not 0 <= index < self.n:
            raise IndexError(index)
        if index in self._store:
            return self._store[index]
        s = generate(self.base_seed + index, self.cfg)
        if self.cache:
            self._store[index] = s
        return s

    def __iter__(self) -> Iterator[SyntheticSample]:
        for i in range(self.n):
            yield self[i]


# ----------------------------------------------------------------------------- depth sensor model


def _measured_at_incidence(normals: np.ndarray, K: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """HxW bool: the pixels a depth sensor still measures at their angle of incidence (all below 75 deg,
    dropping linearly to none at 85 deg). normals: HxWx3 unit camera-frame normals; K: 3x3."""
    h, w = normals.shape[:2]
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    cosang = np.abs((normals * ray).sum(-1)) / np.linalg.norm(ray, axis=-1)
    graze = np.clip((np.rad2deg(np.arccos(np.clip(cosang, 0, 1))) - 75.0) / 10.0, 0, 1)
    return rng.random((h, w)) >= graze


def kinect_depth(depth: np.ndarray, normals: np.ndarray, K: np.ndarray, seed: int,
                 baseline_m: float = 0.075, noise_k: float = 1.425e-3, far_m: tuple[float, float] = (3.5, 4.5),
                 dropout: float = 0.005) -> np.ndarray:
    """Exact depth -> Kinect-v1-like sensor depth, HxW float32 metres, 0 = missing.

    depth: HxW exact camera-z metres; normals: HxWx3 unit camera-frame normals; K: 3x3. Noise as in
    Khoshelham & Elberink (2012): Gaussian ``sigma_z = noise_k z^2`` then disparity quantised to
    1/8 px (focal x baseline ``K[0,0] * baseline_m``); missing: beyond a random 3.5-4.5 m range,
    under 0.4 m, at grazing incidence (dropping from 75 to 85 deg), in the occlusion shadow right of
    a nearer surface (the projector sits beside the camera; 1-4 px at 640 px width, scaled with the
    image width) and ``dropout`` random pixels. Deterministic from ``seed``. The same model as
    bench/normals.py's frames.
    """
    rng = np.random.default_rng(seed)
    h, w = depth.shape
    fb = float(K[0, 0]) * baseline_m
    ok = np.isfinite(depth) & (depth > 0.4)
    zz = np.where(ok, depth, 1.0).astype(np.float64)
    noisy = zz + rng.normal(size=zz.shape) * noise_k * zz**2
    disp = np.round(fb / noisy * 8.0) / 8.0
    noisy = fb / np.maximum(disp, 1e-3)
    ok &= zz < rng.uniform(far_m[0], far_m[1], size=zz.shape)
    ok &= _measured_at_incidence(normals, K, rng)
    jump = (zz[:, 1:] - zz[:, :-1]) > 0.03 * zz[:, :-1]  # nearer surface on the left
    scale = w / 640.0
    width = np.maximum(1, np.round(rng.integers(1, 5, size=h) * scale)).astype(int)
    shadow = np.zeros_like(ok)
    for dx in range(1, int(width.max()) + 1):
        shadow[:, dx:] |= jump[:, : w - dx] & (dx <= width)[:, None]
    ok &= ~shadow
    ok &= rng.random(zz.shape) >= dropout
    return np.where(ok, noisy, 0.0).astype(np.float32)


def stereo_depth(depth: np.ndarray, normals: np.ndarray, K: np.ndarray, seed: int,
                 baseline_m: float = 0.05, noise_k: float = 4e-3, noise_corr_px: float = 2.0,
                 fatten_px: int = 3, speckles: int = 30, min_m: float = 0.3, far_m: tuple[float, float] = (6.0, 8.0),
                 dropout: float = 0.005) -> np.ndarray:
    """Exact depth -> active-stereo (RealSense D4xx-like) depth aligned to colour, HxW float32 metres,
    0 = missing.

    depth: HxW exact camera-z metres; normals: HxWx3 unit camera-frame normals; K: 3x3 (the colour
    camera, taken as the left imager; the right imager sits ``baseline_m`` to its right). What a
    stereo matcher does that a structured-light Kinect does not: its noise is spatially correlated
    (block matching over windows: Gaussian ``sigma_z = noise_k z^2``, about 0.08 px of disparity at
    D435 focal and baseline, smoothed over ``noise_corr_px`` at 640 px width); a nearer surface
    *fattens* into the background beside it (the matching window straddles the edge: up to
    ``fatten_px`` px, a random width per row and per column); the background just *left* of a nearer
    surface is seen by one imager only (occlusion: the band's width is the disparity difference
    ``f b (1/z_near - 1/z_far)``, so it grows with the depth step); ``speckles`` mismatched blobs
    (2-6 px radius at 640 px) take a wrong depth (x 0.6-0.85 or x 1.2-1.8); missing under ``min_m``,
    beyond a random ``far_m`` range, at grazing incidence (75 to 85 deg) and at ``dropout`` random
    pixels. Sizes in pixels scale with the image width. Deterministic from ``seed``.
    """
    import cv2

    rng = np.random.default_rng(seed)
    h, w = depth.shape
    scale = w / 640.0
    f = float(K[0, 0])
    ok = np.isfinite(depth) & (depth > min_m)
    zz = np.where(ok, depth, 1e3).astype(np.float64)
    # occlusion: pixel x is hidden from the right imager when a nearer surface at x' > x lands at or left
    # of it there (x' - d(x') <= x - d(x), d = f b / z)
    xr = np.arange(w, dtype=np.float64)[None, :] - f * baseline_m / zz
    right_min = np.minimum.accumulate(xr[:, ::-1], axis=1)[:, ::-1]
    hidden = np.zeros_like(ok)
    hidden[:, :-1] = right_min[:, 1:] < xr[:, :-1] - 0.5
    # fattening: the nearer side of a step spreads over the farther one
    near = zz.copy()
    reach = int(round(fatten_px * scale))  # 0: no fattening
    row_w = rng.integers(0, reach + 1, size=(h, 1))
    col_w = rng.integers(0, reach + 1, size=(1, w))
    for k in range(1, reach + 1):
        for axis, wid in ((1, row_w), (0, col_w)):
            for sgn in (1, -1):
                shifted = np.full_like(zz, np.inf)  # a shift without wrapping around
                src = [slice(None)] * 2
                dst = [slice(None)] * 2
                src[axis], dst[axis] = (slice(0, -k), slice(k, None)) if sgn > 0 else (slice(k, None), slice(0, -k))
                shifted[tuple(dst)] = zz[tuple(src)]
                take = (shifted < 0.97 * zz) & (k <= wid)
                near = np.where(take, np.minimum(near, shifted), near)
    zz = near
    noise = cv2.GaussianBlur(rng.normal(size=(h, w)), (0, 0), max(noise_corr_px * scale, 0.5))
    noise /= max(float(noise.std()), 1e-9)
    noisy = zz + noise * noise_k * zz**2
    for _ in range(rng.poisson(speckles)):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.uniform(2, 6) * scale
        yy, xx = np.ogrid[:h, :w]
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r * rng.uniform(0.5, 1.0, size=(h, w))
        factor = rng.uniform(0.6, 0.85) if rng.random() < 0.5 else rng.uniform(1.2, 1.8)
        noisy = np.where(blob, noisy * factor, noisy)
    ok &= ~hidden
    ok &= zz < rng.uniform(far_m[0], far_m[1], size=zz.shape)
    ok &= _measured_at_incidence(normals, K, rng)
    ok &= rng.random(zz.shape) >= dropout
    return np.where(ok, noisy, 0.0).astype(np.float32)


def misregistered_depth(depth: np.ndarray, scale: float | tuple[float, float],
                        shift: tuple[float, float]) -> np.ndarray:
    """Depth as an unregistered depth camera would deliver it against the colour image: HxW float32
    metres (0 = missing), the content scaled by ``scale`` about the image centre (or by (sx, sy),
    horizontally and vertically) and shifted by ``shift`` = (dx, dy) as fractions of the width and
    height (a depth camera with another field of view and position, its image not aligned to
    colour): the content at pixel x moves to ``scale (x - c) + c + shift * (w, h)``. As fractions,
    the same warp at any resolution. Nearest-neighbour, so no depth is invented; pixels the warp
    brings in from outside are missing.
    """
    import cv2

    h, w = depth.shape
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    m = np.array([[sx, 0.0, (1 - sx) * cx + shift[0] * w],
                  [0.0, sy, (1 - sy) * cy + shift[1] * h]], np.float64)
    return cv2.warpAffine(np.asarray(depth, np.float32), m, (w, h), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
