"""Training-free RGB-D proposals: geometry splits what colour cannot, count control, bad input."""
import dataclasses

import numpy as np
import pytest

from movseg_core.geometry import normals_from_depth
from movseg_core.proposals import ProposalConfig, _kernels, propose, shadow_bands, working_images, working_normals

K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
# Depth always has its say (registration gate off): for scenes whose only depth step has no colour
# edge, which the registration score cannot tell from depth not registered to colour
TRUSTED = dict(registration_min=-np.inf, registration_full=-np.inf)


def step_scene(seed=0):
    """Uniform grey texture-noise image; depth 1.0 m on the left half, 1.6 m on the right half."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(128 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8)
    depth = np.full((240, 320), 1.0, np.float32)
    depth[:, 160:] = 1.6
    depth *= 1 + rng.normal(0, 0.002, depth.shape).astype(np.float32)  # Kinect-like relative noise
    return rgb, depth


def purity(segments, side):
    """Share of each segment's pixels on its majority side; min over segments."""
    worst = 1.0
    for s in np.unique(segments):
        m = segments == s
        frac = side[m].mean()
        worst = min(worst, max(frac, 1 - frac))
    return worst


def test_rgbd_proposals_respect_a_depth_step_colour_does_not_show():
    rgb, depth = step_scene()
    normals, valid = normals_from_depth(depth, K)
    side = np.zeros(depth.shape, bool)
    side[:, 160:] = True
    cfg = ProposalConfig(max_segments=6, **TRUSTED)
    rgbd = propose(rgb, depth, normals, valid, cfg)
    rgb_only = propose(rgb, None, None, None, cfg)
    assert purity(rgbd, side) >= 0.97
    assert purity(rgb_only, side) < 0.9  # colour alone has no reason to cut at the step


def test_a_depth_step_hidden_in_a_shadow_band_still_splits():
    """The step of ``step_scene`` with a 16-px run of missing depth over it (the shadow a
    structured-light sensor casts beside a near edge): bridged, it splits the frame as the measured
    step does (every segment on one side, outside the band); with ``shadow_bridge`` 0 it is lost."""
    rgb, depth = step_scene()
    depth[:, 150:166] = 0.0
    side = np.zeros(depth.shape, bool)
    side[:, 160:] = True
    outside = np.ones(depth.shape, bool)
    outside[:, 150:166] = False
    cfg = ProposalConfig(max_segments=6)
    info: dict = {}
    bridged = propose(rgb, depth, None, None, cfg, info=info)
    assert info["shadow_bands"] == 240 and info["depth_trust"] == 1.0  # one band per row
    assert purity(bridged[outside], side[outside]) >= 0.99
    lost = propose(rgb, depth, None, None, dataclasses.replace(cfg, shadow_bridge=0))
    assert purity(lost[outside], side[outside]) < 0.9
    # a band longer than shadow_bridge (16 px in a 320-px image at work width 320) is no evidence
    longer = propose(rgb, depth, None, None, dataclasses.replace(cfg, shadow_bridge=15))
    np.testing.assert_array_equal(longer, lost)


def test_a_shadow_band_step_goes_where_colour_puts_it():
    """Two colours meeting at x = 160 inside a 30-px shadow band between two depths: the bridged step
    lies on the colour edge, not at either end of the band."""
    rgb, depth = two_colour_scene(2)
    depth[:, :160] = 1.0
    depth[:, 140:170] = 0.0
    lab, zw = working_images(rgb, depth, None, ProposalConfig())
    bands = shadow_bands(zw, 32, ProposalConfig())
    assert len(bands) == 240
    z = _kernels().bridge_shadows(lab, zw, bands)
    np.testing.assert_array_equal(z[:, 140:160], 1.0)
    np.testing.assert_array_equal(z[:, 160:170], 2.0)


def test_segment_count_follows_the_granularity_knob():
    rgb, depth = step_scene(1)
    counts = []
    for n in (4, 16, 48):
        seg = propose(rgb, depth, None, None, ProposalConfig(max_segments=n))
        assert seg.dtype == np.int32 and seg.shape == depth.shape
        ids = np.unique(seg)
        assert ids.tolist() == list(range(len(ids)))  # dense ids 0..S-1
        assert len(ids) <= n
        counts.append(len(ids))
    assert counts[0] < counts[-1]


def test_real_frame_rgb_and_rgbd_modes_run():
    from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir

    f = NYUv2Folder(default_nyuv2_dir(), require_depth=True)[0]
    normals, valid = normals_from_depth(f.depth, f.K)
    for seg in (propose(f.rgb), propose(f.rgb, f.depth, normals, valid)):
        assert seg.shape == f.rgb.shape[:2] and 10 <= seg.max() + 1 <= ProposalConfig().max_segments


def test_working_normals_match_the_full_resolution_ones():
    """Normals fitted on the 320-px working grid (what the segmenter's proposals use) are exact on a tilted
    plane and agree with the full-resolution normals block-averaged to it on a real frame."""
    from movseg_core import _proposals_numba
    from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir

    n_true = np.array([0.3, -0.4, -1.0]) / np.linalg.norm([0.3, -0.4, -1.0])
    Kf = np.array([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])
    u, v = np.meshgrid((np.arange(640) - 319.5) / 525.0, (np.arange(480) - 239.5) / 525.0)
    plane = (-1.5 / (n_true[0] * u + n_true[1] * v + n_true[2])).astype(np.float32)  # n . X = 1.5 m
    _, z = working_images(np.zeros((480, 640, 3), np.uint8), plane, None, ProposalConfig())
    n, ok = working_normals(z, Kf, plane.shape)
    assert n.shape == (240, 320, 3) and ok[8:-8, 8:-8].all()
    assert np.degrees(np.arccos(np.clip(n[ok] @ n_true, -1, 1))).max() < 0.1

    f = NYUv2Folder(default_nyuv2_dir(), require_depth=True)[0]
    _, z = working_images(f.rgb, f.depth, f.depth > 0, ProposalConfig())
    n, ok = working_normals(z, f.K, f.depth.shape)
    full, full_ok = normals_from_depth(f.depth, f.K, f.depth > 0)
    down, down_ok = _proposals_numba.downsample_normals(full, z, 2)
    both = ok & down_ok
    angle = np.degrees(np.arccos(np.clip((n * down).sum(-1)[both], -1, 1)))
    assert np.median(angle) < 3.0 and np.percentile(angle, 90) < 8.0  # measured 1.91 / 5.05 deg
    assert 0.7 < ok[z > 0].mean() < 0.95  # pixels whose window holds a depth jump go without (measured 0.84)
    assert not ok[z == 0].any()


def test_working_normals_odd_inputs():
    """K for another image size is refused; a working grid of one row has no normals (RGB-D still runs)."""
    rgb, depth = step_scene()
    with pytest.raises(ValueError):
        propose(rgb, depth, None, None, ProposalConfig(), K=np.array([[300.0, 0, 639.5], [0, 300.0, 479.5], [0, 0, 1]]))
    K_thin = np.array([[300.0, 0, 160], [0, 300.0, 0.5], [0, 0, 1]])  # the two rows of a 320 x 2 crop
    thin = propose(rgb[:2], depth[:2], None, None, ProposalConfig(work_width=160, **TRUSTED), K=K_thin)
    assert thin.shape == (2, 320)


def test_bad_input_is_refused_clearly():
    rgb, depth = step_scene()
    with pytest.raises(ValueError, match="rgb"):
        propose(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="depth: shape"):
        propose(rgb, depth[:100])
    with pytest.raises(ValueError, match="depth: expected float"):
        propose(rgb, (depth * 1000).astype(np.uint16))
    with pytest.raises(ValueError, match="max_segments"):
        dataclasses.replace(ProposalConfig(), max_segments=0)


def two_colour_scene(seed=0):
    """Left half dark, right half light (texture noise); flat wall 2 m away."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(80 + rng.normal(0, 3, (240, 320, 3)), 0, 255)
    rgb[:, 160:] += 90
    return rgb.astype(np.uint8), np.full((240, 320), 2.0, np.float32)


def test_unmeasured_depth_has_no_say():
    """Depth values where the sensor measured nothing (valid False: holes, inpainted fill) do not
    change the segments at all, even when they hold a fake step across the colour edge."""
    rgb, depth = two_colour_scene()
    valid = np.ones(depth.shape, bool)
    valid[60:180, 100:220] = False                       # a hole across the colour edge
    fake = depth.copy()
    fake[60:180, 100:140] = 1.2                          # "filled" depth with a step where colour has none
    cfg = ProposalConfig(max_segments=8)
    ref = propose(rgb, depth, None, valid, cfg)
    np.testing.assert_array_equal(propose(rgb, fake, None, valid, cfg), ref)
    # and the colour boundary stays where colour puts it
    side = np.zeros(depth.shape, bool); side[:, 160:] = True
    assert purity(ref, side) >= 0.97
    # the same fake step as *measured* depth does split (geometry counts where it was measured) when
    # depth is trusted; as the frame's only depth step, off every colour edge, it reads as depth not
    # registered to colour, so by default it has no say either
    assert not np.array_equal(propose(rgb, fake, None, None, dataclasses.replace(cfg, **TRUSTED)), ref)
    np.testing.assert_array_equal(propose(rgb, fake, None, None, cfg), propose(rgb, None, None, None, cfg))


def test_unmeasured_depth_in_a_shadow_band_has_no_say():
    """A 20-px stripe marked invalid between two measured depths is a shadow band that gets bridged; what
    the depth image holds under it (two different fake fills) changes nothing: only the measured ends
    and colour place the step."""
    rgb, depth = step_scene(3)
    valid = np.ones(depth.shape, bool)
    valid[:, 150:170] = False
    fills = []
    for fake in (0.3, 5.0):
        d = depth.copy()
        d[:, 150:170] = fake
        info: dict = {}
        fills.append(propose(rgb, d, None, valid, ProposalConfig(max_segments=6), info=info, K=K))
        assert info["shadow_bands"] >= 240
    np.testing.assert_array_equal(fills[0], fills[1])


def test_sensor_noise_alone_does_not_split():
    """Kinect-like noise (sigma_z = 1.425e-3 z^2, 1/8 px disparity steps) on a frontal wall at
    3.5 m gives exactly the RGB-only segments: noise is not evidence."""
    from movseg_core.data.synthetic import kinect_depth

    rgb, _ = two_colour_scene(1)
    flat = np.full(rgb.shape[:2], 3.5, np.float32)
    normals = np.zeros(rgb.shape, np.float32); normals[..., 2] = -1
    depth = kinect_depth(flat, normals, K, seed=3, far_m=(9.0, 9.0))
    assert 0.0 < np.std(depth[depth > 0]) and (depth == 0).mean() < 0.02
    cfg = ProposalConfig(max_segments=8)
    np.testing.assert_array_equal(propose(rgb, depth, None, depth > 0, cfg), propose(rgb, None, None, None, cfg))


def test_kinect_depth_model():
    """Noise grows with z^2, holes beyond the range, in occlusion shadows and at grazing angles."""
    from movseg_core.data.synthetic import kinect_depth

    z = np.tile(np.linspace(1.0, 5.0, 320, dtype=np.float32), (240, 1))
    normals = np.zeros((240, 320, 3), np.float32); normals[..., 2] = -1
    d = kinect_depth(z, normals, K, seed=0)
    near, far = slice(0, 40), slice(120, 160)              # ~1.1 m and ~2.7 m
    err_near = np.std((d - z)[:, near][d[:, near] > 0])
    err_far = np.std((d - z)[:, far][d[:, far] > 0])
    assert err_far > 3 * err_near
    assert (d[:, -20:] == 0).all()                          # beyond 4.5 m: no depth
    step = np.full((240, 320), 3.0, np.float32); step[:, :160] = 1.0   # nearer surface on the left
    d = kinect_depth(step, normals, K, seed=1)
    assert (d[:, 160] == 0).all() and (d[:, 158] > 0).mean() > 0.9      # shadow right of the edge


def test_stereo_depth_model():
    """Active-stereo depth: noise grows with z^2 and is spatially correlated; the background just left of a
    nearer surface is missing over the disparity difference f b (1/z_near - 1/z_far); the nearer side of a
    step fattens into the farther one; speckle blobs take a wrong depth."""
    from movseg_core.data.synthetic import stereo_depth

    normals = np.zeros((240, 320, 3), np.float32); normals[..., 2] = -1
    z = np.tile(np.linspace(1.0, 5.0, 320, dtype=np.float32), (240, 1))
    d = stereo_depth(z, normals, K, seed=0, speckles=0, dropout=0.0)
    err = d - z
    near, far = (slice(None), slice(0, 40)), (slice(None), slice(120, 160))  # ~1.1 m and ~2.7 m
    assert err[far].std() > 3 * err[near].std()
    assert np.abs(np.diff(err[far], axis=1)).std() < 0.5 * err[far].std()  # neighbours share their noise
    step = np.full((240, 320), 3.0, np.float32); step[:, 160:] = 1.0  # nearer surface on the right
    d = stereo_depth(step, normals, K, seed=1, speckles=0, dropout=0.0, fatten_px=0)
    band = int(round(K[0, 0] * 0.05 * (1 / 1.0 - 1 / 3.0)))  # 10 px
    assert (d[:, 160 - band + 1:160] == 0).all() and (d[:, 150 - band] > 0).all() and (d[:, 160] > 0).all()
    step = np.full((240, 320), 3.0, np.float32); step[:, :160] = 1.0  # nearer on the left: no occlusion, fattening
    d = stereo_depth(step, normals, K, seed=2, speckles=0, dropout=0.0, fatten_px=3)
    fat = np.abs(d[:, 160:163] - 1.0) < 0.1
    assert 0.2 < fat.mean() < 0.8 and not (np.abs(d[:, 163:] - 1.0) < 0.5).any()
    d = stereo_depth(step, normals, K, seed=2, speckles=0, dropout=0.0, fatten_px=0)
    assert not (np.abs(d[:, 160:] - 1.0) < 0.5).any()  # fatten_px 0: none
    flat = np.full((240, 320), 2.0, np.float32)
    d = stereo_depth(flat, normals, K, seed=3, speckles=30)
    assert 0.002 < (np.abs(d / 2.0 - 1) > 0.15)[d > 0].mean() < 0.05


def test_speckle_is_not_taken_for_misregistration():
    """A registered scene with active-stereo depth (speckle, fattening, correlated noise): judged without its
    speckle it scores as registered (depth keeps its full say); judged with it (``despeckle`` 0) the speckle's
    steps, off every colour edge, drag it towards 'unregistered'. The segmentation keeps the speckle either
    way: with the gate open the segments are the same with and without despeckling."""
    from movseg_core.data.synthetic import SceneConfig, generate, misregistered_depth, stereo_depth

    smp = generate(2, SceneConfig(height=480, width=640))
    depth = stereo_depth(smp.depth, smp.normals, smp.K, seed=2)
    cfg = ProposalConfig(max_segments=24)
    info: dict = {}
    seg = propose(smp.rgb, depth, None, depth > 0, cfg, info=info, K=smp.K)
    assert info["registration"] >= cfg.registration_full and info["speckle_px"] > 100
    off: dict = {}
    propose(smp.rgb, depth, None, depth > 0, dataclasses.replace(cfg, despeckle=0), info=off, K=smp.K)
    assert off["registration"] < cfg.registration_min and off["speckle_px"] == 0
    np.testing.assert_array_equal(
        seg, propose(smp.rgb, depth, None, depth > 0, dataclasses.replace(cfg, despeckle=0, **TRUSTED), K=smp.K))
    warped = misregistered_depth(depth, 0.87, (0.08, 0.04))  # still falls back when not registered
    info = {}
    propose(smp.rgb, warped, None, warped > 0, cfg, info=info, K=smp.K)
    assert info["depth_trust"] == 0.0


def test_prepare_proposals_loads_the_kernels():
    """In a fresh process, the warm-up leaves no public kernel of ``propose`` uncompiled (else the first
    frame that needs it, e.g. the first with a shadow band, pays the compilation or cache load)."""
    import subprocess
    import sys

    code = ("from movseg_core.proposals import prepare_proposals, _kernels\n"
            "assert prepare_proposals() >= 0.0\n"
            "K = _kernels()\n"
            "print(sorted(n for n in dir(K) if not n.startswith('_') and hasattr(getattr(K, n), 'signatures')"
            " and getattr(K, n).py_func.__module__ == K.__name__ and not getattr(K, n).signatures))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def nyuv2_frame(name="0001"):
    """A bundled NYUv2 frame with its raw depth, normals and their validity (as the Segmenter passes them)."""
    from movseg_core.data.nyuv2 import NYUv2Folder, default_nyuv2_dir

    f = next(f for f in NYUv2Folder(default_nyuv2_dir(), require_depth=True, raw_depth=True) if f.name == name)
    return f.rgb, f.depth, f.K


def with_geometry(depth, K_):
    normals, valid = normals_from_depth(depth, K_, depth > 0)
    return depth, np.asarray(normals), np.asarray(valid)


@pytest.mark.parametrize("source", ["nyuv2", "synthetic"])
def test_unregistered_depth_falls_back_to_the_rgb_only_proposals(source):
    """Depth warped against colour (another field of view: scaled 0.87, shifted 8 % / 4 %) scores as
    unregistered and has no say: exactly the RGB-only segments; the registered depth of the same
    frame scores as registered and keeps its full say (the same segments as with the gate off)."""
    from movseg_core.data.synthetic import SceneConfig, generate, kinect_depth, misregistered_depth

    if source == "nyuv2":
        rgb, depth, K_ = nyuv2_frame()
    else:
        smp = generate(3, SceneConfig(height=240, width=320))
        rgb, K_ = smp.rgb, smp.K
        depth = kinect_depth(smp.depth, smp.normals, smp.K, seed=3)
    cfg = ProposalConfig(max_segments=24)
    info: dict = {}
    seg = propose(rgb, *with_geometry(depth, K_), cfg, info=info)
    assert info["registration"] >= cfg.registration_full and info["depth_trust"] == 1.0
    np.testing.assert_array_equal(seg, propose(rgb, *with_geometry(depth, K_), dataclasses.replace(cfg, **TRUSTED)))
    assert not np.array_equal(seg, propose(rgb, None, None, None, cfg))  # depth did move boundaries

    warped = misregistered_depth(depth, 0.87, (0.08, 0.04))
    assert (warped > 0).mean() > 0.5
    info = {}
    seg = propose(rgb, *with_geometry(warped, K_), cfg, info=info)
    assert info["registration"] <= cfg.registration_min and info["depth_trust"] == 0.0
    assert info["depth_steps"] > 50
    np.testing.assert_array_equal(seg, propose(rgb, None, None, None, cfg))
    # with the gate off the warped depth would have moved boundaries
    assert not np.array_equal(seg, propose(rgb, *with_geometry(warped, K_), dataclasses.replace(cfg, **TRUSTED)))


def test_partial_registration_scales_the_depth_terms():
    """A score inside the ramp gives the depth terms (graph depth weight, merge depth and normal
    weights) that share of their weight: the same segments as those weights scaled by hand."""
    rgb, depth, K_ = nyuv2_frame()
    geo = with_geometry(depth, K_)
    info: dict = {}
    propose(rgb, *geo, ProposalConfig(), info=info)
    score = info["registration"]
    cfg = ProposalConfig(max_segments=48, registration_min=score - 0.2, registration_full=score + 0.2)
    info = {}
    seg = propose(rgb, *geo, cfg, info=info)
    assert info["depth_trust"] == pytest.approx(0.5)
    t = info["depth_trust"]
    by_hand = dataclasses.replace(cfg, depth_weight=cfg.depth_weight * t, merge_depth=cfg.merge_depth * t,
                                  merge_normal=cfg.merge_normal * t, **TRUSTED)
    np.testing.assert_array_equal(seg, propose(rgb, *geo, by_hand))
    full = propose(rgb, *geo, dataclasses.replace(cfg, **TRUSTED))
    assert not np.array_equal(seg, full) and not np.array_equal(seg, propose(rgb, None, None, None, cfg))


def test_depth_trust_ramp_and_its_config():
    from movseg_core.proposals import depth_trust, registration_score

    cfg = ProposalConfig(registration_min=0.2, registration_full=0.6)
    assert [depth_trust(s, cfg) for s in (-0.5, 0.2, 0.4, 0.6, 0.9)] == pytest.approx([0, 0, 0.5, 1, 1])
    assert depth_trust(float("nan"), cfg) == 1.0  # too few depth steps to judge: depth keeps its say
    with pytest.raises(ValueError, match="registration_min"):
        ProposalConfig(registration_min=0.6, registration_full=0.2)
    lab = np.zeros((60, 80, 3), np.float32)
    z = np.full((60, 80), 2.0, np.float32)
    z[:, 40:] = 3.0  # 60 steps, on no colour edge
    no_bands = np.zeros((0, 4), np.int32)
    assert registration_score(lab, z, cfg, no_bands) == (pytest.approx(0.0), 60)
    assert np.isnan(registration_score(lab, z[:40], cfg, no_bands)[0])  # 40 steps: under REGISTRATION_MIN_STEPS


def test_steps_are_opened_only_on_a_coarser_working_grid():
    """``step_band`` acts where the working grid averages blocks of the image (a step's working pixels mix
    both surfaces): at full resolution the proposals are those of ``step_band`` 0, on a 2x coarser grid not."""
    from movseg_core.data.synthetic import SceneConfig, generate, kinect_depth

    smp = generate(2, SceneConfig(height=240, width=320))
    depth = kinect_depth(smp.depth, smp.normals, smp.K, seed=2)
    for work_width, bridge, same in ((320, 32, True), (160, 32, False), (160, 2, True)):
        cfg = ProposalConfig(max_segments=24, work_width=work_width, shadow_bridge=bridge, **TRUSTED)
        on = propose(smp.rgb, depth, None, depth > 0, cfg, K=smp.K)
        off = propose(smp.rgb, depth, None, depth > 0, dataclasses.replace(cfg, step_band=0.0), K=smp.K)
        assert np.array_equal(on, off) == same
    # shadow_bridge 2 input px = 1 working px here: no 2-px run can be bridged, so nothing is opened
    # (opening would only erase the clear steps)


def test_depth_helpers_take_nan_and_inf_as_missing():
    """despeckle, open_steps and shadow_bands treat NaN / +-inf as not measured (as the working grid does),
    and a despeckle setting under one working pixel still despeckles (1 px) instead of turning itself off."""
    from movseg_core.proposals import despeckle, open_steps, shadow_bands

    z = np.full((6, 8), 2.0, np.float32)
    z[2, 3] = 3.0  # a 1-px speckle
    bad = z.copy()
    bad[0, 0], bad[5, 7], bad[0, 7] = np.nan, np.inf, -np.inf
    clean = np.where(np.isfinite(bad), bad, 0).astype(np.float32)
    cfg = ProposalConfig()
    for fn in (lambda a: despeckle(a, cfg, 8), lambda a: open_steps(a, cfg), lambda a: (shadow_bands(a, 4, cfg), 0)):
        got, ref = fn(bad), fn(clean)
        np.testing.assert_array_equal(got[0], ref[0])
        assert got[1] == ref[1]
    out, dropped = despeckle(z, dataclasses.replace(cfg, despeckle=3), 640)  # 3 * (8 / 640)^2 < 1 px
    assert dropped == 1 and out[2, 3] == 0


def test_refined_boundaries_fall_on_the_image_pixel_where_colour_or_depth_changes():
    """``refine_boundaries`` places a boundary that lies inside a working pixel on the image pixel where it
    is: by colour; by measured depth where colour does not change (``refine_depth``); without it (or with
    ``refine_depth`` 0 there) the boundary stays on the working grid's block edge."""
    rng = np.random.default_rng(0)
    h, w, edge = 48, 64, 33  # work_width 32: blocks of 2 px, the edge inside block 16
    cols = np.arange(w)[None, :].repeat(h, 0)
    cfg = ProposalConfig(max_segments=2, work_width=32, fh_min_size=4, **TRUSTED)
    on = dataclasses.replace(cfg, refine_boundaries=True)
    colour = np.where((cols < edge)[..., None], [40, 90, 160], [200, 150, 60]).astype(np.uint8)
    expected = (cols >= edge)

    def split_at_edge(seg: np.ndarray) -> bool:
        return bool(np.array_equal(seg == seg[0, -1], expected))

    assert split_at_edge(propose(colour, cfg=on))
    assert not split_at_edge(propose(colour, cfg=cfg))
    grey = np.clip(128 + rng.normal(0, 2, (h, w, 3)), 0, 255).astype(np.uint8)
    depth = np.where(cols < edge, 1.0, 1.6).astype(np.float32)
    # no step opening: on grey noise colour would scatter the working grid's boundary (what is refined here)
    on = dataclasses.replace(on, step_band=0.0)
    cfg = dataclasses.replace(cfg, step_band=0.0)
    assert split_at_edge(propose(grey, depth, None, None, on))
    assert not split_at_edge(propose(grey, depth, None, None, dataclasses.replace(on, refine_depth=0.0)))
    assert not split_at_edge(propose(grey, depth, None, None, cfg))
    # a working grid that is no whole fraction of the image (848 px at 320 is such a camera) is refined too
    odd = np.ascontiguousarray(colour[:, :63])
    odd_on = propose(odd, cfg=dataclasses.replace(on, step_band=2.0))
    assert np.array_equal(odd_on == odd_on[0, -1], expected[:, :63])
    odd_off = propose(odd, cfg=dataclasses.replace(cfg, step_band=2.0))
    assert not np.array_equal(odd_off == odd_off[0, -1], expected[:, :63])


def test_refinement_takes_the_depth_trust_and_the_measured_working_depth(monkeypatch):
    """``propose`` gives the refinement ``refine_depth`` x the frame's depth trust, and the working grid's
    depth as measured (not the one with opened and bridged steps)."""
    import movseg_core.proposals as P
    from movseg_core.data.synthetic import SceneConfig, generate, kinect_depth

    smp = generate(3, SceneConfig(height=240, width=320))
    depth = kinect_depth(smp.depth, smp.normals, smp.K, seed=3)
    info: dict = {}
    cfg = ProposalConfig(max_segments=24, work_width=160, refine_boundaries=True, refine_depth=10.0)
    propose(smp.rgb, depth, None, depth > 0, cfg, info=info, K=smp.K)
    score = info["registration"]
    assert np.isfinite(score)
    seen = []
    real = P.refine_boundaries

    def spy(labels, rgb, depth_, valid, z_small, depth_weight, cfg_):  # noqa: ANN001, ANN202
        seen.append((depth_weight, z_small.copy()))
        return real(labels, rgb, depth_, valid, z_small, depth_weight, cfg_)

    monkeypatch.setattr(P, "refine_boundaries", spy)
    half = dataclasses.replace(cfg, registration_min=score - 0.5, registration_full=score + 0.5)
    info = {}
    propose(smp.rgb, depth, None, depth > 0, half, info=info, K=smp.K)
    assert info["depth_trust"] == pytest.approx(0.5, abs=1e-6) and info["shadow_bands"] > 0
    assert seen[-1][0] == pytest.approx(5.0)
    np.testing.assert_array_equal(seen[-1][1], working_images(smp.rgb, depth, depth > 0, half)[1])
    gated = dataclasses.replace(cfg, registration_min=score + 1.0, registration_full=score + 2.0)
    propose(smp.rgb, depth, None, depth > 0, gated, K=smp.K)
    assert seen[-1][0] == 0.0 and not seen[-1][1].any()  # no say: colour alone, as RGB-only


def test_refined_ids_stay_dense_when_a_sliver_goes_to_its_neighbours():
    """A segment one working pixel wide has no interior pixel; where its image pixels all fit a neighbour
    better, it vanishes, and the ids close up (0..S'-1, in the same order): no empty segment downstream."""
    from movseg_core.proposals import refine_boundaries

    labels = np.zeros((6, 8), np.int32)
    labels[:, 3] = 1  # the sliver: the colour of segment 0's side
    labels[:, 4:] = 2
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[:, :8] = (200, 40, 40)
    rgb[:, 8:] = (40, 40, 200)
    out = refine_boundaries(labels, rgb, None, None, np.zeros((6, 8), np.float32), 0.0, ProposalConfig())
    assert np.array_equal(np.unique(out), [0, 1])
    assert np.array_equal(out, np.where(np.arange(16) < 8, 0, 1)[None].repeat(12, 0))


def test_an_848x480_camera_frame_keeps_its_depth_registered_and_its_gain():
    """848 x 480 (a RealSense D4xx's usual size) is no whole multiple of the 320-px working grid: colour and
    depth go through the area-averaging kernels. The depth must land where the colour does (registration
    score and trust as for a 640 x 480 frame) and pay as it does there."""
    from movseg_core.data.synthetic import SceneConfig, generate, kinect_depth
    from movseg_core.eval.metrics import confusion_matrix, miou_from_confusion
    from movseg_core.eval.oracle import oracle_labels

    smp = generate(1001, SceneConfig(height=480, width=848))
    depth = kinect_depth(smp.depth, smp.normals, smp.K, seed=1001)
    n = int(smp.label.max())

    def miou(seg):  # noqa: ANN001, ANN202
        return 100 * miou_from_confusion(confusion_matrix(oracle_labels(seg, smp.label, n), smp.label, n + 1))

    info: dict = {}
    rgbd = propose(smp.rgb, depth, None, depth > 0, ProposalConfig(max_segments=48), info=info, K=smp.K)
    rgb = propose(smp.rgb, cfg=ProposalConfig(max_segments=48))
    assert rgbd.shape == (480, 848) and rgbd.max() + 1 <= 48
    assert info["registration"] > 0.9 and info["depth_trust"] == 1.0, info
    assert miou(rgbd) > miou(rgb) + 2.0, (miou(rgbd), miou(rgb))
