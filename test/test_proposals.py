"""Training-free RGB-D proposals: geometry splits what colour cannot, count control, bad input."""
import dataclasses

import numpy as np
import pytest

from movseg_core.geometry import normals_from_depth
from movseg_core.proposals import ProposalConfig, propose

K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])


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
    cfg = ProposalConfig(max_segments=6)
    rgbd = propose(rgb, depth, normals, valid, cfg)
    rgb_only = propose(rgb, None, None, None, cfg)
    assert purity(rgbd, side) >= 0.97
    assert purity(rgb_only, side) < 0.9  # colour alone has no reason to cut at the step


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
    # the same fake step as *measured* depth does split (geometry counts where it was measured)
    assert not np.array_equal(propose(rgb, fake, None, None, cfg), ref)


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


def test_prepare_proposals_loads_the_kernels():
    from movseg_core.proposals import prepare_proposals

    assert prepare_proposals() >= 0.0
