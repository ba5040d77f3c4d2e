"""movseg_node's life cycle across processes: a clean stop mid-frame, and test fixtures that never
leave a node running. A module of its own: no other node may answer on the test's topics (a
node of another module would be matched instead of the one under test)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from conftest import PYTHON
from node_client import params_file, serve_node

QUERIES = ["wall", "floor", "chair", "table"]
TINY = {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu"}}


def test_sigint_while_a_frame_is_labelled_stops_cleanly(tmp_path, ros_processes):
    """Ctrl-C (or launch's SIGINT) while the worker labels a frame: exit 0, no error, nothing published
    on a dead context."""
    from node_client import Client

    cfg = params_file(tmp_path / "slow.yaml", queries=QUERIES, log_period_s=1.0, publish={"pointcloud": True},
                       segmenter={**TINY, "dense": {"short_side": 896}})  # ~1 s frames: SIGINT lands mid-frame
    proc = ros_processes([PYTHON, "-m", "movseg_ros.cli", "run", "--config", str(cfg)], "node-sigint")
    c = Client()
    try:
        assert c.wait(lambda: not c.unmatched(), 120), (c.unmatched(), proc.output()[-2000:])
        try:
            k = c.first_labels(0, 120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{proc.output()[-2000:]}")
        inference_s = c.infos[k].inference_ms / 1000.0
        k = c.publish_and_wait(1, 60)
        last = c.publish(2)
        # the worker is inside this frame now; the node's main loop sees a signal within 0.2 s (its
        # spin_once timeout), so the frame must outlast sleep + 0.2 s: 896-px frames take ~1 s here
        time.sleep(min(0.3 * c.infos[k].inference_ms / 1000.0, 1.0))
        rc = proc.stop(signal.SIGINT, timeout=60)
        published = c.wait(lambda: last in c.labels and last in c.infos, 5)  # through the publisher stage
    finally:
        c.close()
    out = proc.output()
    assert rc == 0, out[-3000:]
    assert "ERROR" not in out and "Failed to publish" not in out, out[-3000:]
    assert "finishing the frame being labelled" in out, f"SIGINT did not land mid-frame ({inference_s:.2f} s/frame)"
    assert published, "the frame being labelled at SIGINT was not published before the node exited"


def test_a_setup_that_fails_leaves_no_node_running(tmp_path, monkeypatch):
    """Bug 13: the sample frames missing made Client() raise after the node had started; the node
    kept running after pytest exited. serve_node must stop it whatever fails."""
    monkeypatch.setenv("MOVSEG_NYUV2_DIR", str(tmp_path / "no-such-folder"))
    cfg = params_file(tmp_path / "leak-check.yaml", queries=QUERIES, segmenter={**TINY, "dense": {"short_side": 112}})

    def ours() -> list[int]:
        pids = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
            except OSError:
                continue
            if str(cfg) in cmd and int(pid) != os.getpid():
                pids.append(int(pid))
        return pids

    with pytest.raises(ValueError, match="no rgb/ folder"), serve_node(cfg, "node-leak"):
        pass
    left = ours()
    try:
        assert not left, f"node processes left running after a failed set-up: {left}"
    finally:
        for pid in left:
            os.kill(pid, signal.SIGKILL)
