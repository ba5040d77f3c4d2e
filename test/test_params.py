"""The node's parameters file, read by the one loader the node, `movseg run` and `movseg eval` share."""
import pytest
import yaml

from movseg_ros.params import NODE_PARAMETERS, declared_defaults, load_node_params, node_params

from conftest import REPO


def write(tmp_path, doc) -> str:
    p = tmp_path / "node.yaml"
    p.write_text(yaml.safe_dump(doc))
    return str(p)


def test_shipped_yaml_gives_the_declared_defaults():
    p = load_node_params(REPO / "config" / "segment.yaml", node_fqn="/robot1/movseg")
    assert dict(p.values) == {k: d for k, (d, _) in NODE_PARAMETERS.items()}
    assert p.segmenter == node_params(declared_defaults()).segmenter  # the node's '' -> None included
    assert p.depth_range is None


def test_file_entries_apply_in_order_nested_or_dotted_then_overrides(tmp_path):
    path = write(tmp_path, {
        "/**": {"ros__parameters": {"depth": {"max_m": 4.0}, "segmenter": {"clip": {"model_name": "ViT-B-32"}},
                                    "segmenter.dense.short_side": 336, "log_period_s": 2.0}},
        "/robot1/movseg": {"ros__parameters": {"depth.min_m": 0.3, "log_period_s": 3.0}},
        "/other": {"ros__parameters": {"log_period_s": 99.0}},
    })
    p = load_node_params(path, {"segmenter.clip.cache_dir": "", "queries": ["mug"]}, node_fqn="/robot1/movseg")
    assert p.depth_range == (0.3, 4.0) and p.values["log_period_s"] == 3.0 and p.values["queries"] == ["mug"]
    assert (p.segmenter.clip.model_name, p.segmenter.dense.short_side, p.segmenter.clip.cache_dir) == \
        ("ViT-B-32", 336, None)  # '' is None, as in the node
    q = load_node_params(path, node_fqn="/movseg")  # the /robot1/movseg entry does not apply here
    assert q.depth_range == (0.0, 4.0) and q.values["log_period_s"] == 2.0
    assert load_node_params(None, {"depth.min_m": 0.5}).depth_range == (0.5, float("inf"))


@pytest.mark.parametrize("doc, overrides, words", [
    ({"movseg": {"ros__parameters": {"log_period_s": 2.0}}}, {}, "sets nothing for the node /robot1/movseg"),
    ({"/**": {"ros__parameters": {"depth": {"max_mm": 4.0}}}}, {},
     "unknown node parameter 'depth.max_mm'; valid under depth: max_m, min_m"),
    ({"/**": {"ros__parameters": {"depth": {"max_m": 4}}}}, {}, "depth.max_m: 4 is a int, the node declares a float"),
    ({"/**": {"ros__parameters": {}}}, {"segmenter.clip.colour": "x"},
     "unknown node parameter 'segmenter.clip.colour'; valid under segmenter.clip: cache_dir, device, model_name"),
    ({"depth": {"max_m": 4.0}}, {}, "expected '<node name>: ros__parameters: ...' entries"),
])
def test_what_the_node_would_ignore_or_refuse_is_an_error(tmp_path, doc, overrides, words):
    with pytest.raises(ValueError) as e:
        load_node_params(write(tmp_path, doc), overrides, node_fqn="/robot1/movseg")
    assert words in str(e.value)


def test_parameters_rclpy_declares_itself_are_allowed(tmp_path):
    path = write(tmp_path, {"/**": {"ros__parameters": {
        "use_sim_time": True, "qos_overrides": {"/camera/color/image_raw": {"subscription": {"depth": 5}}}}}})
    assert load_node_params(path).values == node_params({}).values
