"""``movseg nyu2folder``: the labeled .mat as a folder in the bundled layout, read back the way the folder
readers and bench/proposals.py read it (filled and raw depth, NYU40 labels, the split)."""
from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from movseg_core.data.nyuv2 import NYU40_CLASSES, NYU_K, NYUv2Folder
from movseg_core.geometry.depth import depth_m_to_mm
from movseg_ros.cli import main as cli_main

from conftest import REPO
from nyu_mat import write_labeled_set


def _args(d, out, *extra):  # noqa: ANN001, ANN202
    return ["nyu2folder", str(d / "labeled.mat"), str(out), "--class-mapping", str(d / "classMapping40.mat"), *extra]


def test_the_test_split_is_written_with_filled_and_raw_depth(tmp_path):
    rgb, depth, labels, mapping = write_labeled_set(tmp_path, 5, "labeled.mat", raw_depth=True, test=(2, 5))
    out = tmp_path / "folder"
    assert cli_main(_args(tmp_path, out, "--split", "test", "--splits", str(tmp_path / "splits.mat"))) == 0
    filled, raw = NYUv2Folder(out, require_depth=True), NYUv2Folder(out, require_depth=True, raw_depth=True)
    assert filled.ids == raw.ids == ["0002", "0005"]
    f, r = filled[1], raw[1]
    np.testing.assert_array_equal(f.rgb, rgb[4])
    np.testing.assert_array_equal(depth_m_to_mm(f.depth), depth_m_to_mm(depth[4]))
    np.testing.assert_array_equal(depth_m_to_mm(r.depth), depth_m_to_mm(np.where(depth[4] > 4, 0, depth[4])))
    expect = np.where(labels[4] == 0, 0, mapping[np.maximum(labels[4].astype(int) - 1, 0)])
    np.testing.assert_array_equal(f.label, expect)
    meta = json.loads((out / "meta.json").read_text())
    assert filled.class_names == NYU40_CLASSES and np.allclose(filled.K, NYU_K)
    assert meta["split"] == "test" and meta["n_frames"] == 2

    sys.path.insert(0, str(REPO / "bench"))  # bench/proposals.py imports its neighbour _common
    spec = importlib.util.spec_from_file_location("bench_proposals_n2f", REPO / "bench" / "proposals.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    assert [it.name for it in bench.nyuv2_set(out, False, None, set())] == ["0002", "0005"]
    assert [it.name for it in bench.nyuv2_set(out, True, None, set())] == ["0002", "0005"]
    assert bench.raw_only_ids(out) == set()  # real filled depth for every frame: no refilled set


def test_without_raw_depth_and_into_a_full_folder(tmp_path, capsys):
    write_labeled_set(tmp_path, 3, "labeled.mat")
    out = tmp_path / "folder"
    assert cli_main(_args(tmp_path, out, "--limit", "2")) == 0
    assert NYUv2Folder(out).ids == ["0001", "0002"] and not (out / "depth_raw").exists()
    assert cli_main(_args(tmp_path, out)) == 2  # never mixes two exports
    assert "already holds frames" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["--class-mapping"])
def test_the_class_mapping_is_required(tmp_path, missing, capsys):
    write_labeled_set(tmp_path, 2, "labeled.mat")
    with pytest.raises(SystemExit):
        cli_main(["nyu2folder", str(tmp_path / "labeled.mat"), str(tmp_path / "o")])
    assert missing in capsys.readouterr().err
