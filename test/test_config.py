"""Dotted overrides shared by the segmenter, training and evaluation config loaders."""
import pytest

from movseg_core.config import apply_overrides, set_dotted


def test_dotted_keys_create_sections_and_replace_values():
    tree = {"clip": {"model_name": "ViT-B-16"}}
    apply_overrides(tree, {"clip.pretrained": "random", "dense.short_side": 224, "steps": 5})
    assert tree == {"clip": {"model_name": "ViT-B-16", "pretrained": "random"}, "dense": {"short_side": 224}, "steps": 5}


def test_a_value_cannot_be_used_as_a_section():
    with pytest.raises(ValueError, match="'steps' is a value"):
        set_dotted({"steps": 5}, "steps.max", 1)


def test_set_items_parse_as_yaml_values():
    from movseg_core.config import parse_overrides

    assert parse_overrides(["steps=10", "data.root=/d", "queries=[a, b]", "x= 0.5"]) == \
        {"steps": 10, "data.root": "/d", "queries": ["a", "b"], "x": 0.5}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["nonsense"])
