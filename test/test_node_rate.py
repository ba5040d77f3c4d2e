"""movseg_node's max_rate over real DDS, in a module of its own: no other node may be listening to
the camera while the labelled frames are counted."""
from __future__ import annotations

import time

import numpy as np
import yaml

from node_client import serve_node

QUERIES = ["wall", "floor", "chair", "table"]


def test_max_rate_limits_labelled_frames_under_a_30hz_stream(tmp_path):
    """max_rate 2: at most one labelled frame per 0.5 s however fast the camera and the model."""
    path = tmp_path / "rate.yaml"
    params = {"queries": QUERIES, "max_rate": 2.0, "log_period_s": 1.0,
              "segmenter": {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu"},
                            "dense": {"short_side": 112}}}
    path.write_text(yaml.safe_dump({"movseg": {"ros__parameters": params}}))
    with serve_node(path, "rate-node") as (proc, c):
        time.sleep(0.6)  # past the warm-up frame's rate window
        start = len(c.order)
        sent = []
        t_end = time.monotonic() + 3.0
        i = 0
        while time.monotonic() < t_end:
            sent.append(c.publish(i))
            i += 1
            time.sleep(1 / 30)
        time.sleep(1.0)
        got = sorted(k for k in c.order[start:] if k in sent)
        # when the model started on each frame (labels' arrival minus the segmenter's time), not the
        # frames' stamps: the stream's last frame may be stamped 33 ms after the one labelled before
        # it, and rightly be labelled 0.5 s later
        assert c.wait(lambda: all(k in c.infos for k in got), 5)
        started = sorted(c.received_at[k] - c.infos[k].inference_ms / 1000.0 for k in got)
        assert 3 <= len(got) <= 8, f"{len(got)} labelled frames for {len(sent)} sent in 3 s at max_rate 2"
        assert min(np.diff(started)) > 0.45, f"frames started closer than the rate allows: {np.diff(started)}"
