"""movseg_node on the EventsExecutor (parameter ``executor: events``), over real DDS: labels,
/set_queries (an async service callback, which early EventsExecutors could not run) and a clean
stop. test_node.py runs the default, the SingleThreadedExecutor."""
from __future__ import annotations

import pytest

from movseg_ros.executor import events_executor_available

from conftest import REPO
from node_client import params_file, serve_node

SYNTH_CLIP = REPO / "test" / "fixtures" / "synth_clip.pt"


def test_the_node_labels_and_changes_vocabulary_on_the_events_executor(tmp_path):
    if not events_executor_available():
        pytest.skip("this rclpy has no EventsExecutor")
    executor = "events"
    from movseg_core.eval.synthetic import synth_segmenter_config

    cfg = params_file(tmp_path / "params.yaml", queries=["wall", "floor"], executor=executor,
                      segmenter=synth_segmenter_config(str(SYNTH_CLIP)))
    with serve_node(cfg, f"node-{executor}") as (proc, c):
        assert "callbacks run on rclpy's EventsExecutor" in proc.output()
        k = c.publish_and_wait(0)
        assert list(c.infos[k].names) == ["wall", "floor"]
        resp = c.call(["cube", "sphere", "cone"])
        assert resp.success, resp.message
        k = c.publish_and_wait(1)
        assert list(c.infos[k].names) == ["cube", "sphere", "cone"]
        assert int(c.labels[k].max()) <= 3
