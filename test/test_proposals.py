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
