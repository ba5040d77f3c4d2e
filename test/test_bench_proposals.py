"""bench/proposals.py's label-free depth-to-colour registration search (the arc2017-registered set):
it undoes a known warp of a bundled NYUv2 frame's depth and leaves registered depth about as it is."""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from movseg_core.data.nyuv2 import NYUv2Folder
from movseg_core.data.synthetic import misregistered_depth

from conftest import REPO


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(REPO / "bench"))  # bench/proposals.py imports its neighbour _common
    spec = importlib.util.spec_from_file_location("bench_proposals", REPO / "bench" / "proposals.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def frame():
    ds = NYUv2Folder(REPO / "data" / "nyuv2", require_depth=True, raw_depth=True)
    return next(f for f in ds if f.name == "0551")


def small_search(bench):  # a small grid, so the test takes seconds (the bench's defaults are wider)
    return bench.RegistrationSearch(scales=(0.85, 1.18, 0.03), shifts=(0.08, 0.0125), top=2)


def test_search_undoes_a_known_warp(bench, frame):
    h, w = frame.depth.shape
    applied = (0.9, (0.05, -0.04))  # content scaled 0.9 about the centre, shifted +32 / -19 px
    r = bench.search_registration(frame.rgb, misregistered_depth(frame.depth, *applied), search=small_search(bench))
    mean_px, max_px = bench.warp_residual_px((0.9, 0.9, *applied[1]), r["warp"], w, h)
    assert bench.warp_residual_px((0.9, 0.9, *applied[1]), (1, 1, 0, 0), w, h)[0] > 30  # unsearched: far off
    inverse = (1 / 0.9, 1 / 0.9, -0.05 / 0.9, 0.04 / 0.9)
    assert bench.warp_residual_px((0.9, 0.9, *applied[1]), inverse, w, h)[1] < 1e-6
    assert mean_px < 6 and max_px < 12, r  # 1 % of the width (the score resolves ~1 working px = 2 px)
    assert r["identity"] < 0.35 < 0.55 < r["score"], r  # gated off as given, trusted once re-registered


def test_search_keeps_registered_depth(bench, frame):
    h, w = frame.depth.shape
    r = bench.search_registration(frame.rgb, frame.depth, search=small_search(bench))
    mean_px, max_px = bench.warp_residual_px((1, 1, 0, 0), r["warp"], w, h)
    # about the identity: 0551's raw depth itself scores best a few px off (1 % of the width), far
    # from the 40-px misregistration above
    assert mean_px < 6 and max_px < 12, r
    assert r["score"] >= r["identity"] > 0.55, r


def test_grid_ceiling_is_exact_at_full_width_and_loses_thin_parts_on_a_coarse_grid(bench):
    import numpy as np

    from movseg_core.proposals import ProposalConfig

    label = np.ones((48, 64), np.int64)
    label[:, 31:33] = 2  # a 2-px stripe: half the grid's cells at width 16 miss it, boundaries move
    item = bench.Item("stripe", np.zeros((48, 64, 3), np.uint8), None, label, 2)
    full = bench.grid_ceiling([item], ProposalConfig(work_width=64))
    assert full["miou"] == 100.0 and full["boundary_f1"] == 1.0
    coarse = bench.grid_ceiling([item], ProposalConfig(work_width=16))
    assert coarse["miou"] < 100.0 and coarse["work_width"] == 16


def test_region_depth_spread_is_lowest_for_registered_depth(bench, frame):
    """The ``--depth-edges`` diagnostic on NYUv2 0551's raw depth: moved 20 px off its labels, the depth
    spreads more inside the labelled regions than as given."""
    given = bench.region_depth_spread(frame.depth, frame.label)
    moved = bench.region_depth_spread(np.roll(frame.depth, 20, axis=1), frame.label)
    assert 0 < given < moved
    assert np.isnan(bench.region_depth_spread(np.zeros_like(frame.depth), frame.label))  # no depth: no figure


def test_nyu_crop_cuts_frames_and_moves_the_intrinsics(bench, frame):
    item = bench._with_geometry(frame.name, frame.rgb, frame.depth, frame.K, frame.label, 40)
    (cut,) = bench.cropped_set([item])
    y0, y1, x0, x1 = bench.NYU_EVAL_CROP
    assert cut.rgb.shape == (427, 561, 3) and cut.depth.shape == cut.label.shape == (427, 561)
    np.testing.assert_array_equal(cut.rgb, frame.rgb[y0:y1, x0:x1])
    np.testing.assert_array_equal(cut.label, frame.label[y0:y1, x0:x1])
    # the same ray through the same pixel: the principal point moves with the cut, the focal lengths stay
    np.testing.assert_allclose(np.linalg.solve(cut.K, [100.0, 50.0, 1.0]),
                               np.linalg.solve(frame.K, [100.0 + x0, 50.0 + y0, 1.0]))
    assert cut.K[0, 0] == frame.K[0, 0] and cut.K[1, 1] == frame.K[1, 1]
    with pytest.raises(ValueError, match="already cropped"):
        bench.cropped_set([cut])[0]


def test_sets_are_made_frame_by_frame_and_each_frame_once_per_evaluation(bench):
    """A folder of hundreds of NYUv2 frames must not sit in memory whole (the 654 test frames, filled, raw
    and misregistered: ~6 GB): sets are lazy, and one evaluation makes each frame once for every count,
    mode and the grid ceiling, with the figures of an evaluation of the frames held in a list."""
    from movseg_core.proposals import ProposalConfig

    raw = bench.nyuv2_set(REPO / "data" / "nyuv2", True, None, {"0001"})
    assert isinstance(raw, bench.LazySet) and len(raw) == 2 and raw.n_classes == 40
    made = []

    def counted(it, k):  # noqa: ANN001, ANN202
        made.append(it.name)
        return it
    lazy = bench.derived_set(raw, counted)
    cfg = ProposalConfig(work_width=80)
    at, ceiling = bench.evaluate_set(lazy, [8, 16], cfg)
    assert sorted(made) == ["0551", "1339"]
    held = list(raw)
    held_at, held_ceiling = bench.evaluate_set(held, [8, 16], cfg)
    assert _same_figures(at, held_at) and ceiling == held_ceiling and at["16"]["rgbd"]["frames"] == 2
    warped = bench.misregistered_set(raw, (0.9, (0.05, 0.0)), (0.87, (0.0, 0.04)))
    assert len(warped) == 4 and [it.name for it in warped] == ["0551", "1339", "0551", "1339"]
    assert not np.array_equal(warped[0].depth, warped[2].depth)  # warp by warp


def _same_figures(a, b):  # noqa: ANN001, ANN202
    def strip(x):  # noqa: ANN001, ANN202
        return {n: {m: {k: v for k, v in r.items() if not k.startswith("ms")} for m, r in at.items()}
                for n, at in x.items()}
    return strip(a) == strip(b)


def test_many_frames_registration_is_summarised(bench):
    text = bench.registration_text([0.9, None] + [0.1] * 12, [1.0, 1.0] + [0.0] * 12)
    assert text == "min 0.10 median 0.10 max 0.90 over 13 frames (1 not judged; 12 gated to RGB)"
    assert bench.registration_text([0.5, None], [1.0, 1.0]) == "0.50 nan"


def _folder(tmp_path, frames, size=None, label_fn=None):  # noqa: ANN001, ANN202
    """A --data folder of bundled frames (raw depth), optionally resized (nearest) or with edited labels."""
    import shutil

    import cv2

    for sub in ("rgb", "depth_raw", "label"):
        (tmp_path / sub).mkdir(parents=True, exist_ok=True)
        for f in frames:
            src = REPO / "data" / "nyuv2" / sub / f"{f}.png"
            if size is None and not (sub == "label" and label_fn):
                shutil.copy(src, tmp_path / sub / src.name)
                continue
            im = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
            im = im if size is None else cv2.resize(im, size, interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(str(tmp_path / sub / src.name), label_fn(im) if sub == "label" and label_fn else im)
    return tmp_path


def test_label_ids_beyond_the_classes_are_refused_naming_the_frame(bench, tmp_path):
    import numpy as np

    folder = _folder(tmp_path, ["0551"], label_fn=lambda im: np.where(im == 1, 257, im.astype(np.uint16)))
    with pytest.raises(ValueError, match=r"frame 0551: label ids 0\.\.257 outside 0\.\.40"):
        bench.nyuv2_set(folder, True, None, set())[0]


def test_nyu_crop_refuses_a_frame_of_another_size_before_scoring_anything(bench, tmp_path):
    folder = _folder(tmp_path, ["0551"], size=(848, 480))
    raw = bench.nyuv2_set(folder, True, None, set())
    assert bench.image_size(raw.rgb_files["0551"]) == (480, 848)
    with pytest.raises(ValueError, match="frame 0551 is 848x480, not a full 640x480"):
        bench.cropped_set(raw)  # at once, not when the set's turn comes


def test_a_folder_with_nothing_to_score_says_so(tmp_path):
    import subprocess
    import sys

    (tmp_path / "rgb").mkdir()
    import shutil
    shutil.copy(REPO / "data" / "nyuv2" / "rgb" / "0046.png", tmp_path / "rgb")  # colour only: no depth, no label
    out = subprocess.run([sys.executable, str(REPO / "bench" / "proposals.py"), "--data", str(tmp_path), "--no-arc2017",
                          "--synthetic", "0"], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "nothing to score" in out.stderr, out.stderr[-2000:]


def test_frames_with_only_raw_depth_get_a_refilled_set(bench, tmp_path):
    """The bundled held-out frames' depth/ is their raw depth: they are left out of nyuv2_filled and
    scored filled the NYUv2 way as nyuv2_refilled (no holes; measured depth kept)."""
    import shutil

    folder = _folder(tmp_path, ["0001", "0551"])
    (folder / "depth").mkdir()
    for f in ("0001", "0551"):  # as bundled: 0551's depth/ is its raw depth
        shutil.copy(REPO / "data" / "nyuv2" / "depth" / f"{f}.png", folder / "depth")
    assert bench.raw_only_ids(folder) == {"0551"}  # 0001 ships a real filled depth
    assert [it.name for it in bench.nyuv2_set(folder, False, None, set())] == ["0001"]
    raw = bench.nyuv2_set(folder, True, {"0551"}, set())
    refilled = bench.refilled_set(raw)
    (r,), (f,) = raw, refilled
    measured = r.depth > 0
    assert 0.1 < (~measured).mean() and (f.depth > 0).all()
    assert np.median(np.abs(f.depth - r.depth)[measured]) < 0.002


def test_several_data_folders_are_pooled_and_a_frame_in_two_is_refused(bench, tmp_path):
    """--data takes several folders (by default data/nyuv2 and data/nyuv2_eval): their frames are scored as
    one set, each once; the same frame in two folders would count twice, so it is refused."""
    a = _folder(tmp_path / "a", ["0551"])
    b = _folder(tmp_path / "b", ["1339", "0001"])
    pooled = bench.nyuv2_set([a, b], True, None, {"0001"})
    assert [it.name for it in pooled] == ["0551", "1339"] and pooled.n_classes == 40
    assert set(pooled.rgb_files) == {"0551", "1339"}
    assert bench.raw_only_ids([a, b]) == {"0551", "1339", "0001"}  # no depth/ in these folders
    c = _folder(tmp_path / "c", ["0551"])
    with pytest.raises(ValueError, match="frame 0551 is in two --data folders"):
        bench.nyuv2_set([a, c], True, None, set())


def test_the_bundled_eval_frames_are_scored_by_default(bench):
    """data/nyuv2_eval's frames join data/nyuv2's held-out ones: filled (real), refilled and raw sets."""
    roots = [REPO / "data" / "nyuv2", bench.EVAL_DIR]
    names = lambda s: sorted(it.name for it in s)  # noqa: E731
    assert [n for n in bench.nyuv2_set(roots, False, None, {"0001"}).rgb_files] == ["1001", "1002", "1003", "1407"]
    assert sorted(bench.raw_only_ids(roots) - {"0001"}) == ["0433", "0464", "0551", "1339"]
    raw = bench.nyuv2_set(roots, True, None, {"0001"})
    assert sorted(raw.rgb_files) == ["0433", "0464", "0551", "1339", "1407"]
    last = raw[len(raw) - 1]  # made from the second folder
    assert last.name == "1407" and last.rgb.shape == (480, 640, 3) and not last.label[:45].any()
    assert names(bench.nyuv2_set(roots, True, {"0433"}, set())) == ["0433"]


def test_data_defaults_to_both_bundled_folders_or_the_users_folder_alone(bench, monkeypatch, tmp_path):
    monkeypatch.delenv("MOVSEG_NYUV2_DIR", raising=False)
    assert bench.parser().parse_args([]).data == [str(REPO / "data" / "nyuv2"), str(bench.EVAL_DIR)]
    monkeypatch.setenv("MOVSEG_NYUV2_DIR", str(tmp_path))  # a user's export may hold 0433 too: no clash, no pooling
    assert bench.parser().parse_args([]).data == [str(tmp_path)]


def test_default_sets_hold_the_held_out_frames_and_never_the_tuning_frame(bench, monkeypatch):
    monkeypatch.delenv("MOVSEG_NYUV2_DIR", raising=False)
    args = bench.parser().parse_args(["--no-arc2017", "--synthetic", "0", "--no-misreg"])
    sets = bench.load_sets(args)
    assert list(sets) == ["nyuv2_filled", "nyuv2_raw", "nyuv2_refilled"]  # raw before refilled: the headline
    assert sorted(sets["nyuv2_raw"].rgb_files) == ["0433", "0464", "0551", "1339", "1407"]
    assert sorted(sets["nyuv2_filled"].rgb_files) == ["1001", "1002", "1003", "1407"]
    assert len(sets["nyuv2_refilled"]) == 4
    assert list(bench.load_sets(bench.parser().parse_args(
        ["--no-arc2017", "--synthetic", "0", "--no-misreg", "--no-refill"]))) == ["nyuv2_filled", "nyuv2_raw"]
    tune = bench.load_sets(bench.parser().parse_args(["--tune", "--synthetic", "0"]))
    assert [it.name for it in tune["nyuv2_tune_raw"]] == ["0001"]


def test_folders_with_other_class_lists_are_not_pooled_and_the_command_says_why(bench, tmp_path):
    import json
    import subprocess

    a = _folder(tmp_path / "a", ["0551"])
    b = _folder(tmp_path / "b", ["1339"])
    names = {str(i): f"class{i}" for i in range(1, 41)}
    (b / "meta.json").write_text(json.dumps({"class_names": names}))
    with pytest.raises(ValueError, match="different class lists"):
        bench.nyuv2_set([a, b], True, None, set())
    c = _folder(tmp_path / "c", ["0551"])
    out = subprocess.run([sys.executable, str(REPO / "bench" / "proposals.py"), "--data", str(a), str(c),
                          "--no-arc2017", "--synthetic", "0"], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "frame 0551 is in two --data folders" in out.stderr
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
