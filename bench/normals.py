#!/usr/bin/env python
"""Surface normals from depth: ours vs OpenCV RgbdNormals and Open3D, on analytic scenes.

Scenes (planes, boxes, spheres, cylinders, a room corner) are ray-cast exactly at 640x480, so
every pixel has an analytic normal; Kinect-v1-like noise is then applied: depth-proportional
Gaussian noise (sigma = 1.425e-3 z^2, Khoshelham & Elberink 2012), disparity quantisation to
1/8 px (f b = 0.075 m * 580 px), missing depth beyond 3.5-4.5 m, at grazing incidence, in the
occlusion shadow beside depth edges, and sparse random drop-outs.

Per method: median/mean angular error (deg) over pixels that got a normal, share of those under
11.25/22.5/30 deg, coverage (share of pixels with valid input depth that got a normal) and ms per
frame (median over frames; CPU, torch threads as set; ``ours_1thread`` = ours with one thread;
min_ms = fastest frame, the figure least disturbed by other load on a shared machine; the JSON's
"machine" entry gives the load average and the time of one 640x480 multiply before and after). Peers get
the same depth; their normals are flipped to face the camera so sign conventions do not count.
Last line: one JSON object.

    .venv/bin/python bench/normals.py [--frames N] [--quick] [--cuda] [--ours-only]
"""
from __future__ import annotations

from _common import print_summary  # noqa: E402  (sets the environment up first)

import argparse
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from movseg_core.geometry import NormalsConfig, backproject, normals_from_depth, prepare_cpu_normals  # noqa: E402

H, W = 480, 640
K = np.array([[525.0, 0.0, 319.5], [0.0, 525.0, 239.5], [0.0, 0.0, 1.0]])
FB = 0.075 * 580.0  # Kinect v1 baseline x focal (m px)


# ----------------------------------------------------------------------------- analytic scenes
@dataclass
class Hit:
    t: np.ndarray  # N ray parameter (= z for rays with z = 1), inf = miss
    n: np.ndarray  # Nx3 normals


def _rays() -> np.ndarray:
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    return np.stack(((u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)), -1).reshape(-1, 3)


def _plane(r: np.ndarray, n: np.ndarray, p0: np.ndarray) -> Hit:
    n = n / np.linalg.norm(n)
    den = r @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (p0 @ n) / den
    t = np.where((t > 1e-6) & np.isfinite(t), t, np.inf)
    return Hit(t, np.broadcast_to(n, r.shape).copy())


def _sphere(r: np.ndarray, c: np.ndarray, rad: float) -> Hit:
    a = (r * r).sum(1)
    b = r @ c
    disc = b * b - a * (c @ c - rad * rad)
    with np.errstate(invalid="ignore"):
        t = (b - np.sqrt(disc)) / a
    t = np.where((disc > 0) & (t > 1e-6), t, np.inf)
    n = r * np.where(np.isfinite(t), t, 0)[:, None] - c
    return Hit(t, n / rad)


def _box(r: np.ndarray, c: np.ndarray, R: np.ndarray, half: np.ndarray) -> Hit:
    """Oriented box: centre c, columns of R its axes, half extents ``half``."""
    o = -c @ R  # ray origin (0) in box frame
    d = r @ R
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    tn = tmin.max(1)
    axis = tmin.argmax(1)
    tf = tmax.min(1)
    hit = (tn <= tf) & (tn > 1e-6)
    t = np.where(hit, tn, np.inf)
    nb = np.zeros_like(d)
    nb[np.arange(len(d)), axis] = -np.sign(d[np.arange(len(d)), axis])
    return Hit(t, nb @ R.T)


def _cylinder(r: np.ndarray, c: np.ndarray, a: np.ndarray, rad: float, half_h: float) -> Hit:
    """Capped cylinder: centre c, unit axis a, radius, half height."""
    a = a / np.linalg.norm(a)
    oc = -c
    d_perp = r - np.outer(r @ a, a)
    o_perp = oc - (oc @ a) * a
    A = (d_perp * d_perp).sum(1)
    B = 2 * d_perp @ o_perp
    C = o_perp @ o_perp - rad * rad
    disc = B * B - 4 * A * C
    with np.errstate(invalid="ignore", divide="ignore"):
        ts = (-B - np.sqrt(disc)) / (2 * A)
    h = (oc @ a) + ts * (r @ a)
    side_ok = (disc > 0) & (ts > 1e-6) & (np.abs(h) <= half_h)
    t_side = np.where(side_ok, ts, np.inf)
    p = r * np.where(np.isfinite(t_side), t_side, 0)[:, None] - c
    n_side = (p - np.outer(p @ a, a)) / rad
    best_t, best_n = t_side, n_side
    for s in (1.0, -1.0):
        cap = _plane(r, s * a, c + s * half_h * a)
        q = r * np.where(np.isfinite(cap.t), cap.t, 0)[:, None] - (c + s * half_h * a)
        ok = np.isfinite(cap.t) & ((q * q).sum(1) <= rad * rad) & (cap.t < best_t)
        best_t = np.where(ok, cap.t, best_t)
        best_n = np.where(ok[:, None], cap.n, best_n)
    return Hit(best_t, best_n)


def _rot(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Ry @ Rx @ Rz


def render_scene(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Exact depth HxW (inf = background) and normals HxWx3 (towards camera), camera frame.

    Camera frame: x right, y down, z forward; the camera sits ``cam_h`` above the floor, pitched down.
    """
    r = _rays()
    cam_h = rng.uniform(1.0, 1.5)
    pitch = np.deg2rad(rng.uniform(10, 30))
    Rw = _rot(0.0, -pitch)  # world (y down like camera) rotated by pitch
    up = Rw @ np.array([0.0, -1.0, 0.0])
    fwd = Rw @ np.array([0.0, 0.0, 1.0])
    right = np.cross(-up, fwd)
    right /= np.linalg.norm(right)

    def at(x: float, height: float, z: float) -> np.ndarray:  # world position -> camera frame
        return x * right + (height - cam_h) * up + z * fwd

    hits: list[Hit] = [_plane(r, up, at(0, 0, 0))]  # floor
    yaw = rng.uniform(-0.5, 0.5)
    back = rng.uniform(3.0, 4.5)
    wall_n = -(np.cos(yaw) * fwd + np.sin(yaw) * right)
    hits.append(_plane(r, wall_n, at(0, 0, back)))
    if kind == "corner":
        side_n = np.cos(yaw) * right - np.sin(yaw) * fwd
        hits.append(_plane(r, side_n, at(rng.uniform(-1.6, -0.8), 0, 0)))
        hits.append(_plane(r, -side_n, at(rng.uniform(0.8, 1.6), 0, 0)))
    for _ in range(int(rng.integers(2, 5))):
        x, z = rng.uniform(-1.0, 1.0), rng.uniform(1.3, back - 0.5)
        s = rng.uniform(0.15, 0.45)
        if kind in ("boxes", "corner"):
            R = Rw @ _rot(rng.uniform(0, np.pi), 0.0, 0.0)
            R = np.stack((right, -up, fwd), 1) @ _rot(rng.uniform(0, np.pi)) if rng.random() < 0.5 else R
            half = np.array([s, s * rng.uniform(0.6, 1.5), s * rng.uniform(0.6, 1.2)])
            hits.append(_box(r, at(x, half[1] + 0.001, z), R, half))
        elif kind == "spheres":
            hits.append(_sphere(r, at(x, s + rng.uniform(0, 0.6), z), s))
        elif kind == "cylinders":
            hh = s * rng.uniform(1.0, 2.5)
            if rng.random() < 0.5:
                hits.append(_cylinder(r, at(x, hh, z), up, s * 0.7, hh))
            else:  # lying on the floor
                axis = np.cos(yaw * 3) * right + np.sin(yaw * 3) * fwd
                hits.append(_cylinder(r, at(x, s * 0.7, z), axis, s * 0.7, hh))
        elif kind == "planes":
            n = Rw @ _rot(rng.uniform(-1.2, 1.2), rng.uniform(-1.0, 0.3)) @ np.array([0, 0, -1.0])
            hits.append(_box(r, at(x, s + 0.3, z), Rw @ _rot(np.arctan2(n[0], -n[2]), 0.4),
                             np.array([s * 1.5, s, 0.01])))
    t = np.stack([h.t for h in hits])
    idx = t.argmin(0)
    z = t[idx, np.arange(t.shape[1])]
    n = np.stack([h.n for h in hits])[idx, np.arange(t.shape[1])]
    n = np.where(((n * r).sum(1) > 0)[:, None], -n, n)  # towards the camera
    return z.reshape(H, W).astype(np.float64), n.reshape(H, W, 3).astype(np.float32)


def kinect_noise(z: np.ndarray, normals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact depth -> Kinect-v1-like depth HxW float32 metres, 0 = missing."""
    ok = np.isfinite(z) & (z > 0.4)
    zz = np.where(ok, z, 1.0)
    noisy = zz + rng.normal(size=z.shape) * 1.425e-3 * zz**2
    disp = np.round(FB / noisy * 8.0) / 8.0
    noisy = FB / np.maximum(disp, 1e-3)
    far = rng.uniform(3.5, 4.5, size=z.shape)
    ok &= zz < far
    r = _rays().reshape(H, W, 3)
    cosang = np.abs((normals * r).sum(-1)) / np.linalg.norm(r, axis=-1)
    graze = np.clip((np.rad2deg(np.arccos(np.clip(cosang, 0, 1))) - 75.0) / 10.0, 0, 1)
    ok &= rng.random(z.shape) >= graze
    # occlusion shadow: the projector sits beside the camera, so the far side of a depth edge
    # (to the right of a nearer surface) loses 1-4 px of depth.
    zc = np.where(np.isfinite(z), z, 100.0)
    jump = (zc[:, 1:] - zc[:, :-1]) > 0.03 * zc[:, :-1]
    shadow = np.zeros_like(ok)
    width = rng.integers(1, 5, size=z.shape[0])
    for dx in range(1, 5):
        shadow[:, dx:] |= np.pad(jump, ((0, 0), (1, 0)))[:, : W - dx + 1][:, : W - dx] & (dx <= width)[:, None]
    ok &= ~shadow
    ok &= rng.random(z.shape) >= 0.005
    return np.where(ok, noisy, 0.0).astype(np.float32)


# ----------------------------------------------------------------------------- methods
Method = Callable[[np.ndarray], tuple[np.ndarray, float]]  # depth -> (normals HxWx3 NaN/0 = none, ms)


CPU_MS: list[float] = []  # process CPU ms of the last _timed call (appended per call)
MIN_MS: list[float] = []  # fastest wall ms of the last _timed call (least disturbed by other load)


def _timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[np.ndarray, float]:
    """Median wall ms over ``repeats`` calls after one warm-up; also records process CPU ms.

    On a shared machine wall time includes waiting for other processes' work; CPU time (all
    threads of this process summed) does not, so both are reported.
    """
    out = fn()
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    CPU_MS.append(float(np.median(cpu)))
    MIN_MS.append(float(np.min(times)))
    return out, float(np.median(times))


def ours(cfg: NormalsConfig, device: str, repeats: int, threads: int | None = None) -> Method:
    """Ours on a torch tensor (CPU: the compiled numba kernels on ``torch.get_num_threads()``
    threads; ``threads`` overrides that for this method only). Kernels are loaded or compiled
    before timing (``prepare_cpu_normals``), as the node does at start-up."""

    def run(depth: np.ndarray) -> tuple[np.ndarray, float]:
        d = torch.from_numpy(depth).to(device)

        def f() -> np.ndarray:
            n, v = normals_from_depth(d, K, cfg=cfg)
            if device != "cpu":
                torch.cuda.synchronize()
            return n

        before = torch.get_num_threads()
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            n, ms = _timed(f, repeats)
        finally:
            torch.set_num_threads(before)
        return n.cpu().numpy(), ms

    return run


def opencv(method: str, window: int, repeats: int) -> Method:
    import cv2

    rn = cv2.RgbdNormals_create(H, W, cv2.CV_32F, K.astype(np.float32), window, 50.0,
                                getattr(cv2, f"RgbdNormals_RGBD_NORMALS_METHOD_{method}"))

    def run(depth: np.ndarray) -> tuple[np.ndarray, float]:
        pts = backproject(depth, K)
        pts[depth == 0] = np.nan
        pts4 = np.concatenate((pts, np.zeros((H, W, 1), np.float32)), -1)
        n, ms = _timed(lambda: rn.apply(pts4), repeats)
        return n[..., :3], ms

    return run


def open3d_tensor(bilateral: bool, repeats: int) -> Method:
    import open3d as o3d

    intr = o3d.core.Tensor(K, dtype=o3d.core.Dtype.Float64)

    def run(depth: np.ndarray) -> tuple[np.ndarray, float]:
        img = o3d.t.geometry.Image(o3d.core.Tensor(depth[..., None]))

        def f() -> np.ndarray:
            im = img.filter_bilateral(5, 0.05, 5.0) if bilateral else img
            return im.create_vertex_map(intr, 0.0).create_normal_map(0.0).as_tensor().numpy()

        return _timed(f, repeats)

    return run


def open3d_legacy(knn: int, repeats: int) -> Method:
    import open3d as o3d

    def run(depth: np.ndarray) -> tuple[np.ndarray, float]:
        pts = backproject(depth, K)
        ok = depth > 0

        def f() -> np.ndarray:
            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts[ok].astype(np.float64)))
            pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn))
            out = np.zeros((H, W, 3), np.float32)
            out[ok] = np.asarray(pc.normals)
            return out

        return _timed(f, repeats)

    return run


# ----------------------------------------------------------------------------- evaluation
def evaluate(n: np.ndarray, gt: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray | int]:
    n = np.nan_to_num(n.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    norm = np.linalg.norm(n, axis=-1)
    has = (norm > 0.5) & (depth > 0)
    r = _rays().reshape(H, W, 3)
    nn = n / np.maximum(norm, 1e-9)[..., None]
    nn = np.where(((nn * r).sum(-1) > 0)[..., None], -nn, nn)  # face the camera
    err = np.rad2deg(np.arccos(np.clip((nn * gt).sum(-1), -1, 1)))
    return {"err": err[has], "covered": int(has.sum()), "valid": int((depth > 0).sum())}


def machine_mul_ms() -> float:
    """Median ms of one 640x480 float32 multiply (numpy, preallocated output): how busy the machine
    is right now, so figures from different runs can be compared (0.035 ms to 0.28 ms seen on this
    2-core VM at 1-min load below 1, from one day to the next: the host's load counts too)."""
    a, b, c = (np.ones((H, W), np.float32) for _ in range(3))
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        np.multiply(a, b, out=c)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=10, help="synthetic frames (cycled over 5 scene kinds)")
    ap.add_argument("--quick", action="store_true", help="5 frames, 1 timing repeat, fewer peer variants")
    ap.add_argument("--cuda", action="store_true", help="also time ours on CUDA (if available)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ours-only", action="store_true", help="skip the peers (quick timing runs)")
    args = ap.parse_args()
    frames = 5 if args.quick else args.frames
    repeats = 1 if args.quick else 5
    kinds = ["planes", "boxes", "spheres", "cylinders", "corner"]
    import cv2

    print(f"torch {torch.__version__} threads={torch.get_num_threads()}  "
          f"cv2 {cv2.__version__} threads={cv2.getNumThreads()}"
          f"  cpus={os.cpu_count()}  frames={frames}  repeats={repeats}")

    secs = prepare_cpu_normals(NormalsConfig())
    print(f"CPU normals kernels ready in {secs:.1f} s (compiled on the first run after an install, then cached)")
    load_start = os.getloadavg()[0]
    mul_start = machine_mul_ms()
    methods: dict[str, Method] = {"ours": ours(NormalsConfig(), "cpu", repeats)}
    if torch.get_num_threads() > 1:
        methods["ours_1thread"] = ours(NormalsConfig(), "cpu", repeats, threads=1)
    if args.cuda and torch.cuda.is_available():
        methods["ours_cuda"] = ours(NormalsConfig(), "cuda", repeats)
    for m in () if args.ours_only else ("FALS", "LINEMOD", "SRI", "CROSS_PRODUCT"):
        for ws in ((5,) if args.quick else (5, 7)):
            methods[f"cv2_{m}_w{ws}"] = opencv(m, ws, repeats)
    try:
        if args.ours_only:
            raise ImportError("--ours-only")
        import open3d  # noqa: F401

        methods["o3d_tensor"] = open3d_tensor(False, repeats)
        methods["o3d_tensor_bilateral"] = open3d_tensor(True, repeats)
        methods["o3d_legacy_knn30"] = open3d_legacy(30, 1)
    except Exception as e:  # noqa: BLE001 - a missing optional peer is reported, not fatal
        print(f"open3d not available, skipped: {type(e).__name__}: {e}")

    errs: dict[str, list[np.ndarray]] = {k: [] for k in methods}
    cov: dict[str, list[int]] = {k: [] for k in methods}
    valid_px: list[int] = []
    ms: dict[str, list[float]] = {k: [] for k in methods}
    cpu_ms: dict[str, list[float]] = {k: [] for k in methods}
    min_ms: dict[str, list[float]] = {k: [] for k in methods}
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = lambda x, **_: x  # noqa: E731
    rng = np.random.default_rng(args.seed)
    for i in tqdm(range(frames), desc="frames", file=sys.stderr):
        z, gt = render_scene(kinds[i % len(kinds)], rng)
        depth = kinect_noise(z, gt, rng)
        valid_px.append(int((depth > 0).sum()))
        for name, fn in methods.items():
            n, t = fn(depth)
            e = evaluate(n, gt, depth)
            errs[name].append(e["err"])
            cov[name].append(e["covered"])
            ms[name].append(t)
            cpu_ms[name].append(CPU_MS[-1])
            min_ms[name].append(MIN_MS[-1])

    summary: dict[str, dict[str, float]] = {}
    load = os.getloadavg()[0]
    print(f"\n{'method':24s} {'median':>7s} {'mean':>7s} {'<11.25':>7s} {'<22.5':>7s} {'<30':>7s} {'cover':>7s} "
          f"{'ms':>8s} {'cpu_ms':>8s} {'min_ms':>8s}")
    for name in methods:
        e = np.concatenate(errs[name])
        s = {
            "median_deg": round(float(np.median(e)), 2),
            "mean_deg": round(float(e.mean()), 2),
            "lt11_25": round(float((e < 11.25).mean()), 4),
            "lt22_5": round(float((e < 22.5).mean()), 4),
            "lt30": round(float((e < 30).mean()), 4),
            "coverage": round(sum(cov[name]) / sum(valid_px), 4),
            "ms": round(float(np.median(ms[name])), 2),
            "cpu_ms": round(float(np.median(cpu_ms[name])), 2),
            "min_ms": round(float(np.min(min_ms[name])), 2),
        }
        summary[name] = s
        print(f"{name:24s} {s['median_deg']:7.2f} {s['mean_deg']:7.2f} {s['lt11_25']:7.3f} {s['lt22_5']:7.3f} "
              f"{s['lt30']:7.3f} {s['coverage']:7.3f} {s['ms']:8.2f} {s['cpu_ms']:8.2f} {s['min_ms']:8.2f}")
    print(f"(coverage = share of pixels with valid input depth that got a normal; "
          f"{sum(valid_px) / (frames * H * W):.3f} of all pixels had valid depth)")
    print(f"(ms = median wall ms per 640x480 frame; cpu_ms = process CPU ms, all threads; min_ms = fastest frame; "
          f"1-min load average {load_start:.2f} at start, {load:.2f} at end on {os.cpu_count()} cpus)")
    mul_end = machine_mul_ms()
    print(f"(one 640x480 float32 multiply: {mul_start:.3f} ms at start, {mul_end:.3f} ms at end)")
    summary["machine"] = {"load1_start": round(load_start, 2), "load1_end": round(load, 2),
                          "mul_640x480_ms_start": round(mul_start, 4), "mul_640x480_ms_end": round(mul_end, 4)}
    print_summary(summary)


if __name__ == "__main__":
    main()
