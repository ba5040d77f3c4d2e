"""movseg_node's two-stage pipeline (publish frame t while frame t+1 is inferred) over real DDS, with the
GPU stand-in of benchmarks as the model. A module of its own: no other node may answer on the test's topics."""
from __future__ import annotations

import re
import threading
import time

from node_client import params_file, serve_node

SMALL, LARGE = ["wall", "floor"], ["wall", "floor", "chair", "table", "door", "window", "bed", "sofa"]
STANDIN = {"clip": {"model_name": "movseg-tiny-vit", "device": "cpu", "simulated_ms": 40.0},
           "dense": {"short_side": 224}}


def last_stats(output: str) -> dict[str, int]:
    """The counters of the node's last statistics line."""
    lines = [ln for ln in output.splitlines() if "stats:" in ln and "frames_in=" in ln]
    assert lines, "no statistics line logged"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", lines[-1].split("median ms:")[0])}


def test_pipelined_node_keeps_order_and_vocabularies_and_counts_every_frame(tmp_path):
    """A 30 Hz camera for 4 s, the vocabulary switched twice meanwhile: labels arrive in stamp order, each
    with the label-info of its own stamp and of the vocabulary it was made with, versions never go back,
    and every synchronised frame is either published or counted as a drop."""
    cfg = params_file(tmp_path / "pipeline.yaml", queries=SMALL, log_period_s=0.5, pipeline=True,
                      segmenter=STANDIN)
    with serve_node(cfg, "pipeline-node") as (proc, c):
        names_by_version = {c.infos[c.order[0]].vocabulary_version: SMALL}
        stop = threading.Event()
        sent = []

        def stream():
            i = 0
            while not stop.is_set():
                sent.append(c.publish(i))
                i += 1
                time.sleep(1 / 30)

        t = threading.Thread(target=stream)
        t.start()
        try:
            for new in (LARGE, SMALL):
                time.sleep(1.3)
                resp = c.call(new)
                assert resp.success, resp.message
                names_by_version[resp.vocabulary_version] = new
            time.sleep(1.3)
        finally:
            stop.set()
            t.join()
        assert c.wait(lambda: sent[-1] in c.labels or last_stats(proc.output()).get("drop_busy", 0) > 0, 10)
        time.sleep(1.5)  # the last frame in flight, and a statistics line after it
        with c.lock:
            order = list(c.order)
            infos = dict(c.infos)
        stats = last_stats(proc.output())
    streamed = [k for k in order if k in set(sent)]
    assert len(streamed) >= 10, f"only {len(streamed)} of {len(sent)} frames labelled"
    assert order == sorted(order) and len(set(order)) == len(order), "labels published out of stamp order"
    missing = [k for k in order if k not in infos]
    assert not missing, f"label images without the label-info of their stamp: {missing}"
    versions = [infos[k].vocabulary_version for k in order]
    assert versions == sorted(versions), f"an older vocabulary came back: {versions}"
    assert len(set(versions)) == 3, f"not every vocabulary labelled frames: {versions}"
    for k in order:
        info = infos[k]
        assert list(info.names) == names_by_version[info.vocabulary_version], (k, info)
        assert int(c.labels[k].max()) <= len(info.names), "a label beyond its own vocabulary"
    drops = sum(v for k, v in stats.items() if k.startswith("drop_"))
    assert stats["frames_out"] == len(order), (stats, len(order))
    assert stats["frames_in"] == stats["frames_out"] + drops, f"frames neither published nor counted: {stats}"
    # lazy outputs: this client subscribes to labels and label-info only; nothing else is built or sent
    for key in ("overlay", "confidence", "instances", "objects"):
        assert stats.get(f"no_subscriber_{key}") == stats["frames_out"], (key, stats)
    assert not any(stats.get(f"no_subscriber_{k}") for k in ("labels", "label_info")), stats
    last_line = [ln for ln in proc.output().splitlines() if "stats:" in ln and "median ms:" in ln][-1]
    assert "segment.objects" not in last_line, "instances extracted although nobody subscribes to them"
    assert "segment.paint" in last_line, last_line
