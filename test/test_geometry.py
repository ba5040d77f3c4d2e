"""Geometry: REP 118 decoding, back-projection, K under resize/crop, normals, X-modality images."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from movseg_core.geometry import (
    NormalsConfig,
    backproject,
    crop_intrinsics,
    decode_depth,
    depth_m_to_mm,
    depth_mm_to_m,
    depth_to_rgb,
    estimate_up,
    hha,
    normals_from_depth,
    normals_to_rgb,
    save_geometry_pngs,
    scale_intrinsics,
)

H, W = 120, 160
K = np.array([[130.0, 0.0, 79.5], [0.0, 132.0, 59.5], [0.0, 0.0, 1.0]])


def rays(h: int = H, w: int = W, k: np.ndarray = K) -> np.ndarray:
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    return np.stack(((u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)), -1)


def ray_sphere(r: np.ndarray, c: np.ndarray, rad: float) -> tuple[np.ndarray, np.ndarray]:
    """Where rays ``r`` (HxWx3, z = 1) first meet the sphere (centre ``c``, radius ``rad``, metres).

    Returns ``(t, hit)``: HxW depth (z, metres; meaningless where the ray misses) and HxW bool hit.
    """
    a, b = (r * r).sum(-1), r @ c
    disc = b * b - a * (c @ c - rad * rad)
    return (b - np.sqrt(np.maximum(disc, 0))) / a, disc > 0


def sphere_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A sphere (centre (0.05, -0.02, 1.2) m, radius 0.35 m) in front of a wall at 3 m, seen through :func:`rays`.

    Returns ``(depth HxW float32 metres, hit HxW bool (on the sphere), exact normals HxWx3 (the wall's
    (0, 0, -1) off the sphere), incidence HxW degrees between the ray and the normal)``.
    """
    c, rad = np.array([0.05, -0.02, 1.2]), 0.35
    r = rays()
    t, hit = ray_sphere(r, c, rad)
    t = np.where(hit, t, 3.0)
    n_true = np.where(hit[..., None], (r * t[..., None] - c) / rad, [0, 0, -1.0])
    incidence = angle_deg(n_true, -r / np.linalg.norm(r, axis=-1, keepdims=True))
    return t.astype(np.float32), hit, n_true, incidence


def plane_depth(n: np.ndarray, dist: float) -> np.ndarray:
    """Depth of the plane {P : n.P = -dist} (n unit, facing the camera)."""
    return (-dist / (rays() @ n)).astype(np.float32)


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------ decoding
def test_decode_16uc1_millimetres_zero_invalid():
    raw = np.array([[0, 1000], [1500, 65535]], dtype=np.uint16)
    depth, valid = decode_depth(raw, "16UC1")
    assert depth.dtype == np.float32 and valid.dtype == bool
    np.testing.assert_allclose(depth, [[0.0, 1.0], [1.5, 65.535]], rtol=1e-6)
    np.testing.assert_array_equal(valid, [[False, True], [True, True]])


def test_decode_32fc1_nan_inf_zero_negative_invalid_and_range():
    raw = np.array([[np.nan, np.inf, -np.inf], [0.0, -1.0, 2.5], [0.3, 4.0, 9.0]], dtype=np.float32)
    depth, valid = decode_depth(raw, "32FC1")
    np.testing.assert_array_equal(valid, [[0, 0, 0], [0, 0, 1], [1, 1, 1]])
    assert np.isfinite(depth).all() and (depth[~valid] == 0).all()
    depth, valid = decode_depth(raw, "32FC1", valid_range=(0.5, 5.0))
    np.testing.assert_array_equal(valid, [[0, 0, 0], [0, 0, 1], [0, 1, 0]])
    assert depth[2, 2] == 0 and depth[1, 2] == pytest.approx(2.5)


def test_metres_to_mm_and_back():
    """One mm <-> m conversion: rounded to the millimetre, 0 = invalid (NaN, inf, <= 0, < 0.5 mm), clipped."""
    d = np.array([[0.0, np.nan, 1.2344, 70.0], [np.inf, -1.0, 0.0004, 2.0]], dtype=np.float32)
    mm = depth_m_to_mm(d)
    np.testing.assert_array_equal(mm, [[0, 0, 1234, 65535], [0, 0, 0, 2000]])
    back = depth_mm_to_m(mm)
    assert back.dtype == np.float32 and np.array_equal(back, decode_depth(mm, "16UC1")[0])
    np.testing.assert_allclose(back, mm / 1000.0, rtol=1e-7)
    every = np.arange(65536, dtype=np.uint16)
    assert np.array_equal(depth_m_to_mm(depth_mm_to_m(every)), every)  # lossless both ways
    f32, _ = decode_depth(d, "32FC1")
    assert f32[0, 1] == 0 and f32[1, 0] == 0 and f32[1, 1] == 0 and f32[0, 2] == d[0, 2]
    with pytest.raises(ValueError, match="uint16"):
        depth_mm_to_m(np.ones((2, 2), np.int32))


def test_decode_keeps_torch_and_rejects_bad_input():
    t = torch.tensor([[0, 2000]], dtype=torch.int32)
    depth, valid = decode_depth(t, "16UC1")
    assert isinstance(depth, torch.Tensor) and depth.dtype == torch.float32
    assert depth[0, 1].item() == pytest.approx(2.0) and not valid[0, 0]
    with pytest.raises(ValueError, match="encoding"):
        decode_depth(np.zeros((2, 2), np.uint16), "rgb8")
    with pytest.raises(ValueError, match="16UC1"):
        decode_depth(np.zeros((2, 2), np.float32), "16UC1")
    with pytest.raises(ValueError, match="32FC1"):
        decode_depth(np.zeros((2, 2), np.uint16), "32FC1")
    with pytest.raises(ValueError, match="shape"):
        decode_depth(np.zeros((2, 2, 3), np.uint16), "16UC1")
    with pytest.raises(ValueError, match="valid_range"):
        decode_depth(np.ones((2, 2), np.float32), "32FC1", valid_range=(2.0, 1.0))


# ------------------------------------------------------------------ camera
def test_backproject_matches_hand_computed_points():
    k = np.array([[100.0, 0, 2.0], [0, 200.0, 1.0], [0, 0, 1]])
    depth = np.zeros((3, 4), np.float32)
    depth[0, 0], depth[2, 3], depth[1, 2] = 2.0, 4.0, 1.0
    pts = backproject(depth, k)
    np.testing.assert_allclose(pts[0, 0], [2.0 * (0 - 2) / 100, 2.0 * (0 - 1) / 200, 2.0], rtol=1e-6)
    np.testing.assert_allclose(pts[2, 3], [4.0 * 1 / 100, 4.0 * 1 / 200, 4.0], rtol=1e-6)
    np.testing.assert_allclose(pts[1, 2], [0.0, 0.0, 1.0], atol=1e-7)
    assert (pts[depth == 0] == 0).all()
    depth[0, 1] = np.nan  # NaN in -> 0 out, never NaN
    assert np.isfinite(backproject(depth, k)).all()


def test_scale_and_crop_intrinsics_reproject_consistently():
    P = np.array([0.3, -0.2, 2.0])
    uv = (K @ P)[:2] / P[2]
    k2 = scale_intrinsics(K, (H, W), (H // 2, W // 2))
    uv2 = (k2 @ P)[:2] / P[2]
    np.testing.assert_allclose(uv2, (uv + 0.5) * 0.5 - 0.5, atol=1e-9)  # pixel-edge convention
    kc = crop_intrinsics(K, top=10, left=20)
    np.testing.assert_allclose((kc @ P)[:2] / P[2], uv - [20, 10], atol=1e-9)
    # a resized real image: a bright dot lands where the scaled K says
    img = np.zeros((H, W), np.float32)
    img[40:44, 60:64] = 1.0
    small = cv2.resize(img, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(small > 0.5)
    assert (xs.mean(), ys.mean()) == pytest.approx(((61.5 + 0.5) / 2 - 0.5, (41.5 + 0.5) / 2 - 0.5))


@pytest.mark.parametrize(
    "k, match",
    [
        (np.diag([0.0, 100.0, 1.0]), "focal"),
        (np.eye(2), "3x3"),
        (np.array([[100.0, 0, 640], [0, 100, 480], [0, 0, 1]]), "different image sizes"),
        (np.array([[100.0, 0, np.nan], [0, 100, 50], [0, 0, 1]]), "NaN"),
    ],
)
def test_bad_intrinsics_raise(k, match):
    with pytest.raises(ValueError, match=match):
        normals_from_depth(np.ones((H, W), np.float32), k)


# ------------------------------------------------------------------ normals
def test_exact_plane_normals_are_exact_and_face_camera():
    n_true = unit([0.4, -0.3, -1.0])
    depth = plane_depth(n_true, 1.5)
    n, valid = normals_from_depth(depth, K)
    assert n.dtype == np.float32 and n.shape == (H, W, 3)
    assert valid.mean() > 0.99
    assert angle_deg(n[valid], n_true).max() < 0.05
    # towards the camera: n . P < 0
    assert ((n * backproject(depth, K)).sum(-1)[valid] < 0).all()


def test_exact_sphere_normals_error_near_zero():
    depth, hit, n_true, incidence = sphere_scene()
    n, valid = normals_from_depth(depth, K, cfg=NormalsConfig(radii=(3, 1)))
    on_sphere = valid & hit
    assert on_sphere.sum() > 0.9 * hit.sum()
    # away from the silhouette (incidence < 50 deg) the local plane fit is near exact; towards the
    # rim the window's curvature bias grows (documented in docs/geometry.md)
    inner = on_sphere & (incidence < 50)
    err = angle_deg(n[inner], n_true[inner])
    assert np.median(err) < 0.3 and np.percentile(err, 90) < 0.5


def test_no_smearing_across_depth_discontinuity():
    # tilted plane in front (left half) of a fronto-parallel wall (right half)
    n_near = unit([0.5, 0.0, -1.0])
    depth = plane_depth(n_near, 1.0)
    wall = np.full((H, W), 3.0, np.float32)
    depth[:, W // 2 :] = wall[:, W // 2 :]
    n, valid = normals_from_depth(depth, K, cfg=NormalsConfig(radii=(5, 2)))
    band = slice(W // 2 - 6, W // 2 + 6)  # pixels right next to the step
    truth = np.broadcast_to(np.where((np.arange(W) < W // 2)[None, :, None], n_near, [0.0, 0.0, -1.0]), (H, W, 3))
    assert valid[:, band].mean() > 0.95  # edges keep their normals...
    assert angle_deg(n[:, band][valid[:, band]], truth[:, band][valid[:, band]]).max() < 0.5  # ...unsmeared


def test_noisy_holey_plane_is_robust_and_never_nan():
    rng = np.random.default_rng(0)
    n_true = unit([-0.2, -0.5, -1.0])
    depth = plane_depth(n_true, 2.0)
    depth = depth + rng.normal(size=depth.shape).astype(np.float32) * 1.425e-3 * depth**2
    depth[rng.random(depth.shape) < 0.05] = 0.0
    depth[30:40, 50:70] = np.nan
    n, valid = normals_from_depth(depth, K)
    assert np.isfinite(n).all() and (n[~valid] == 0).all()
    assert not valid[depth == 0].any() and not valid[35, 60]
    assert valid.sum() > 0.9 * (depth > 0).sum()
    err = angle_deg(n[valid], n_true)
    # a 17x17 window over ~2.4 mm noise at 2 m: a few degrees at most
    assert np.median(err) < 3.0
    np.testing.assert_allclose(np.linalg.norm(n[valid], axis=-1), 1.0, atol=1e-5)


def test_depth_jumps_everywhere_give_no_normals_not_nan():
    """Every neighbour pair a discontinuity: no clean window at any radius, on both paths."""
    from movseg_core.geometry.normals import _normals_torch

    rng = np.random.default_rng(1)
    depth = (1.0 + rng.integers(0, 2, size=(H, W)) * 0.5).astype(np.float32)
    depth[::2, ::2] = 1.0  # keep some flat spots so the structure is not trivially uniform
    n, valid = normals_from_depth(depth, K)
    t = torch.from_numpy(depth)
    n_t, v_t = _normals_torch(t, t > 0, K, NormalsConfig())
    assert valid.sum() < 0.01 * valid.size and np.array_equal(valid, v_t.numpy())
    assert np.isfinite(n).all() and (n[~valid] == 0).all()


def test_valid_mask_is_respected_and_torch_in_torch_out():
    depth = torch.from_numpy(plane_depth(unit([0, 0, -1.0]), 1.0))
    mask = torch.ones(H, W, dtype=torch.bool)
    mask[:, :10] = False
    n, valid = normals_from_depth(depth, K, valid=mask)
    assert isinstance(n, torch.Tensor) and n.shape == (H, W, 3) and valid.dtype == torch.bool
    assert not valid[:, :10].any() and valid[:, 20:].all()


@pytest.mark.parametrize(
    "depth, match",
    [
        (np.ones((H, W), np.uint16), "floating"),
        (np.ones((H, W, 3), np.float32), "shape"),
        (np.zeros((H, W), np.float32), "no valid pixel"),
        (np.full((H, W), np.nan, np.float32), "no valid pixel"),
        ([[1.0]], "numpy"),
    ],
)
def test_bad_depth_raises(depth, match):
    with pytest.raises(ValueError, match=match):
        normals_from_depth(depth, K)


def test_depth_and_K_of_different_sizes_raise():
    big_k = scale_intrinsics(K, (H, W), (4 * H, 4 * W))
    with pytest.raises(ValueError, match="different image sizes"):
        normals_from_depth(np.ones((H, W), np.float32), big_k)


def _noisy_scene(h: int, w: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Tilted noisy plane with a sphere and a box in front, holes: edges, curvature and gaps."""
    rng = np.random.default_rng(seed)
    k = np.array([[0.8 * w, 0, (w - 1) / 2], [0, 0.8 * w, (h - 1) / 2], [0, 0, 1.0]])
    r = rays(h, w, k)
    n_wall = unit([0.3, -0.2, -1.0])
    depth = -2.5 / (r @ n_wall)
    c, rad = np.array([-0.2, 0.05, 1.3]), 0.3
    t, hit = ray_sphere(r, c, rad)
    t = np.where(hit, t, np.inf)
    depth = np.minimum(depth, t)
    box = (r[..., 0] > 0.15) & (r[..., 0] < 0.35) & (r[..., 1] > -0.1) & (r[..., 1] < 0.2)
    depth = np.where(box, 1.1 + 0.3 * r[..., 0], depth)
    depth = depth + rng.normal(size=depth.shape) * 1.425e-3 * depth**2
    depth[rng.random(depth.shape) < 0.03] = 0.0
    return depth.astype(np.float32), k


@pytest.mark.parametrize(
    "cfg", [NormalsConfig(), NormalsConfig(radii=(5, 2), cell=1), NormalsConfig(radii=(6, 2), cell=3),
            NormalsConfig(radii=(8,))]  # the last: the objects' convexity normals (objects.normal_radii)
)
@pytest.mark.parametrize("hw", [(120, 160), (97, 131)])
def test_compiled_cpu_kernels_match_torch_path(cfg, hw):
    """CPU inputs run the numba kernels, other devices pure torch: same arithmetic, same result."""
    from movseg_core.geometry.normals import _normals_torch

    depth, k = _noisy_scene(*hw, seed=hw[0])
    n_np, v_np = normals_from_depth(depth, k, cfg=cfg)
    t = torch.from_numpy(depth)
    n_t, v_t = _normals_torch(t, t > 0, k, cfg)
    assert 0.8 * (depth > 0).sum() < v_np.sum()
    np.testing.assert_array_equal(v_np, v_t.numpy())
    close = np.abs(n_np - n_t.numpy()).max(-1) < 1e-4
    # float32 rounding may flip a near-tie between two shifted windows on a handful of pixels
    assert (~close).sum() <= max(2, 1e-3 * close.size)
    # and a CPU tensor goes through the same kernels but comes back as tensors
    n_c, v_c = normals_from_depth(t, k, cfg=cfg)
    assert isinstance(n_c, torch.Tensor) and np.array_equal(n_c.numpy(), n_np) and np.array_equal(v_c.numpy(), v_np)


def test_cpu_result_does_not_depend_on_thread_count():
    """The kernels parallelise over rows of cells, each writing only its own rows: bit-identical."""
    depth, k = _noisy_scene(240, 200, seed=3)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        n1, v1 = normals_from_depth(depth, k)
        torch.set_num_threads(2)
        n2, v2 = normals_from_depth(depth, k)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(v1, v2) and np.array_equal(n1, n2)


def _normals_of_item(i: int) -> torch.Tensor:
    depth, k = _noisy_scene(48, 64, seed=i)
    return torch.from_numpy(normals_from_depth(depth, k)[0])


class _NormalsDataset(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return _normals_of_item(i)


def test_forked_dataloader_workers_compute_normals_after_the_parent_did():
    """Training computes normals in forked DataLoader workers; the parent has used the kernels
    already (numba's GNU OpenMP layer would abort the children: the TBB layer is fork-safe).

    Runs in a fresh process, as training does: forking this test process after test_backends.py's
    OpenVINO tests had compiled their models killed it (SIGSEGV in the parent's waitpid, every run;
    fresh clones fc21 / fc22, 2026-12-03), a mix no product process makes: only training forks, and it
    never loads OpenVINO."""
    import subprocess

    script = ("import torch, test_geometry as g\n"
              "g._normals_of_item(0)\n"
              "loader = torch.utils.data.DataLoader(g._NormalsDataset(), batch_size=2, num_workers=2,\n"
              "                                     multiprocessing_context='fork')\n"
              "batches = list(loader)\n"
              "assert len(batches) == 2 and torch.equal(batches[0][1], g._normals_of_item(1))\n"
              "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_cpu_falls_back_to_torch_without_numba(monkeypatch):
    """Where numba does not import, CPU input runs the torch implementation, with a warning."""
    from movseg_core.geometry import normals as mod

    depth, k = _noisy_scene(120, 160, seed=5)
    expected = normals_from_depth(depth, k)
    monkeypatch.setattr(mod, "_KERNELS", None)
    monkeypatch.setattr(mod, "_NO_NUMBA", None)
    monkeypatch.setitem(sys.modules, "movseg_core.geometry._normals_numba", None)  # import fails
    monkeypatch.delattr(sys.modules["movseg_core.geometry"], "_normals_numba")
    with pytest.warns(RuntimeWarning, match="numba with TBB unavailable"):
        n, v = normals_from_depth(depth, k)
    np.testing.assert_array_equal(v, expected[1])
    assert (np.abs(n - expected[0]).max(-1) >= 1e-4).sum() <= 2


def test_cells_interpolate_smoothly_on_curved_surfaces():
    """2x2 cells share window sums but not normals: a sphere's normals stay near exact at cell=2."""
    t, hit, n_true, incidence = sphere_scene()
    errs = {}
    for cell in (1, 2):
        n, valid = normals_from_depth(t, K, cfg=NormalsConfig(radii=(2,), cell=cell))
        inner = valid & hit & (incidence < 50)
        errs[cell] = np.median(angle_deg(n[inner], n_true[inner]))
    assert errs[2] < 0.2 and errs[2] < 2 * errs[1] + 0.05


def test_bad_normals_config_raises():
    with pytest.raises(ValueError, match="cell"):
        NormalsConfig(cell=0)
    with pytest.raises(ValueError, match="radii"):
        NormalsConfig(radii=())
    assert NormalsConfig().cell_radii() == [4, 1] and NormalsConfig(cell=1).cell_radii() == [8, 3]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    depth = torch.from_numpy(plane_depth(unit([0.3, -0.4, -1.0]), 1.2))
    n_cpu, v_cpu = normals_from_depth(depth, K)
    n_gpu, v_gpu = normals_from_depth(depth.cuda(), K)
    assert n_gpu.is_cuda and torch.equal(v_gpu.cpu(), v_cpu)
    torch.testing.assert_close(n_gpu.cpu(), n_cpu, atol=1e-4, rtol=0)


# ------------------------------------------------------------------ X-modality images
def test_normals_to_rgb_encoding_and_invalid_black():
    n = np.zeros((1, 3, 3), np.float32)
    n[0, 0] = [0, 0, -1]
    n[0, 1] = [1, 0, 0]
    img = normals_to_rgb(n, valid=np.array([[True, True, True]]))
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img[0, 0], [128, 128, 0])
    np.testing.assert_array_equal(img[0, 1], [255, 128, 128])
    np.testing.assert_array_equal(img[0, 2], [0, 0, 0])  # zero vector = no normal


def test_depth_to_rgb_grey_and_colour():
    depth = np.tile(np.linspace(1.0, 3.0, W, dtype=np.float32), (H, 1))
    depth[0, 0] = 0
    grey = depth_to_rgb(depth, colormap=None, depth_range=(1.0, 3.0))
    assert grey.shape == (H, W, 3) and grey.dtype == np.uint8
    assert grey[5, 1, 0] > grey[5, W - 1, 0] and (grey[..., 0] == grey[..., 2]).all()  # near = bright
    assert (grey[0, 0] == 0).all()
    col = depth_to_rgb(torch.from_numpy(depth))
    assert isinstance(col, torch.Tensor) and col.shape == (H, W, 3) and not (col[5, 1] == col[5, W - 1]).all()


def _floor_and_wall(pitch_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera 1.2 m above a floor, pitched down, a wall 4 m ahead. Returns depth and world up (camera frame)."""
    p = np.deg2rad(pitch_deg)
    up = np.array([0.0, -np.cos(p), -np.sin(p)])  # camera y is down; pitching down tilts up towards -z
    fwd = np.array([0.0, -np.sin(p), np.cos(p)])
    floor = plane_depth(up, 1.2)  # floor: n = up, n.P = -1.2
    wall = plane_depth(-fwd, 4.0)
    depth = np.where((floor > 0) & (floor < wall), floor, wall).astype(np.float32)
    return depth, up


def test_estimate_up_recovers_camera_pitch():
    depth, up = _floor_and_wall(25.0)
    n, valid = normals_from_depth(torch.from_numpy(depth), K)
    est = estimate_up(n, valid).numpy()
    assert angle_deg(est, up) < 1.0


def test_hha_channels_follow_geometry():
    depth, up = _floor_and_wall(20.0)
    img = hha(depth, K)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    pts = backproject(depth, K)
    height = pts @ up + 1.2
    on_floor = height < 0.01
    on_wall = height > 0.3
    assert np.median(img[..., 2][on_floor]) < 5  # floor normal parallel to up: angle ~ 0
    assert abs(np.median(img[..., 2][on_wall]) - 127.5) < 5  # wall: 90 degrees
    assert np.median(img[..., 1][on_floor]) < 3 and img[..., 1][on_wall].max() > 30  # height in cm
    near, far = np.unravel_index(depth.argmin(), depth.shape), np.unravel_index(depth.argmax(), depth.shape)
    assert img[near][0] > img[far][0]  # disparity: near is brighter


def test_save_geometry_pngs_writes_readable_images(tmp_path):
    depth, _ = _floor_and_wall(15.0)
    rgb = np.full((H, W, 3), 90, np.uint8)
    paths = save_geometry_pngs(tmp_path, "frame", depth, K, rgb=rgb)
    assert {p.name for p in paths} == {f"frame_{k}.png" for k in ("depth", "normals", "hha", "panel")}
    for p in paths:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] == H
    assert cv2.imread(str(tmp_path / "frame_panel.png")).shape == (H, 4 * W, 3)


def test_real_nyuv2_frame_floor_normals_point_up():
    from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir

    root = default_nyuv2_dir()
    if not (root / "rgb").is_dir():
        pytest.skip(f"no NYUv2 frames at {root}")
    frames = NYUv2Folder(root, require_depth=True)
    checked = 0
    for f in frames:
        floor = f.label == 2  # NYU40 'floor'
        if floor.sum() < 20000:  # frames where the floor is a large, clearly visible surface
            continue
        depth, valid = decode_depth(f.depth, "32FC1")
        n, nvalid = normals_from_depth(depth, f.K)
        assert np.isfinite(n).all() and nvalid.sum() > 0.9 * valid.sum()
        up = estimate_up(torch.from_numpy(n), torch.from_numpy(nvalid)).numpy()
        sel = floor & nvalid
        assert np.median(angle_deg(n[sel], up)) < 10.0  # floor normals agree with gravity
        checked += 1
    assert checked >= 1


def test_decode_depth_numpy_fast_path_equals_the_tensor_path():
    rng = np.random.default_rng(3)
    mm = rng.integers(0, 6000, (48, 64)).astype(np.uint16)
    metres = np.where(rng.random((48, 64)) < 0.1, np.nan, rng.random((48, 64)) * 5).astype(np.float32)
    metres[0, :3] = (np.inf, -1.0, 0.0)
    for raw, enc, as_tensor in ((mm, "16UC1", torch.from_numpy(mm.astype(np.int32))),
                                (metres, "32FC1", torch.from_numpy(metres))):
        for rng_m in (None, (0.5, 3.0)):
            d_np, v_np = decode_depth(raw, enc, rng_m)
            d_t, v_t = decode_depth(as_tensor, enc, rng_m)
            assert isinstance(d_np, np.ndarray) and d_np.dtype == np.float32
            assert np.array_equal(v_np, v_t.numpy()) and np.allclose(d_np, d_t.numpy())
            assert np.isfinite(d_np).all() and (d_np[~v_np] == 0).all()
