"""Dotted overrides shared by the segmenter, training and evaluation config loaders."""
import re

import pytest

from movseg_core.config import apply_overrides, set_dotted


def test_dotted_keys_create_sections_and_replace_values():
    tree = {"clip": {"model_name": "ViT-B-16"}}
    apply_overrides(tree, {"clip.pretrained": "random", "dense.short_side": 224, "steps": 5})
    assert tree == {"clip": {"model_name": "ViT-B-16", "pretrained": "random"}, "dense": {"short_side": 224},
                    "steps": 5}


def test_a_value_cannot_be_used_as_a_section():
    with pytest.raises(ValueError, match="'steps' is a value"):
        set_dotted({"steps": 5}, "steps.max", 1)


def test_set_items_parse_as_yaml_values():
    from movseg_core.config import parse_overrides

    assert parse_overrides(["steps=10", "data.root=/d", "queries=[a, b]", "x= 0.5"]) == \
        {"steps": 10, "data.root": "/d", "queries": ["a", "b"], "x": 0.5}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["nonsense"])


# --------------------------------------------------------------------------- build_config: one builder for every config
def test_build_config_builds_nested_dataclasses_with_overrides():
    from movseg_core.config import build_config
    from movseg_core.segmenter import SegmenterConfig
    from movseg_core.training.config import TrainConfig

    cfg = build_config(TrainConfig, {"data": {"n_train": 8}, "lr": "1e-4"}, {"data.seed": 3, "steps": 5})
    assert (cfg.data.n_train, cfg.data.seed, cfg.steps, cfg.lr) == (8, 3, 5, 1e-4)  # YAML 1.1's '1e-4' is a float
    assert build_config(TrainConfig, cfg) is cfg
    seg = build_config(SegmenterConfig, SegmenterConfig(), {"dense.short_side": 224})
    assert seg.dense.short_side == 224 and seg.clip == SegmenterConfig().clip
    # int -> float
    assert type(build_config(SegmenterConfig, {"classify": {"threshold": 0}}).classify.threshold) is float


@pytest.mark.parametrize("tree, overrides, words", [
    ({"data": {"n_trian": 8}}, None, "unknown key 'data.n_trian' in training config; valid in data: cache, height, "),
    ({}, {"stpes": 5},
     "unknown key 'stpes' in training config; valid in the top level: amp, backbone_lr_mult, batch_size, "),
    ({"data": 5}, None, "training config: data must be a section (mapping) of DataConfig keys, got int 5"),
    ({"steps": "many"}, None, "training config: steps must be int, got str 'many'"),
    ({"lr": "fast"}, None, "training config: lr must be float, got str 'fast'"),
    ({"data": {"kind": "imagenet"}}, None, "training config: data: data.kind 'imagenet' not in"),
])
def test_build_config_errors_name_the_key_and_the_valid_ones(tree, overrides, words):
    from movseg_core.config import build_config
    from movseg_core.training.config import TrainConfig

    with pytest.raises(ValueError) as e:
        build_config(TrainConfig, tree, overrides, where="training")
    assert words in str(e.value)


def test_every_config_loader_uses_the_builder(tmp_path):
    """Segmenter, training, stage-2 and model configs: the same unknown-key error."""
    from movseg_core.models.maskformer import MaskFormerConfig, create_model
    from movseg_core.segmenter import config_from_dict
    from movseg_core.training.config import load_config
    from movseg_core.training.stage2 import load_stage2_config

    (tmp_path / "t.yaml").write_text("steps: 5\ndata: {n_trian: 8}\n")
    for load, words in ((lambda: config_from_dict({"clip": {"nope": 1}}),
                         "unknown key 'clip.nope' in segmenter config"),
                        (lambda: load_config(tmp_path / "t.yaml"), "unknown key 'data.n_trian' in training config"),
                        (lambda: load_stage2_config(tmp_path / "t.yaml"),
                         "unknown key 'data.n_trian' in stage-2 config"),
                        (lambda: MaskFormerConfig.from_dict({"hiden_dim": 3}),
                         "unknown key 'hiden_dim' in model config"),
                        (lambda: create_model({"preset": "movseg-tiny", "hiden_dim": 3}), "unknown key 'hiden_dim'")):
        with pytest.raises(ValueError, match=re.escape(words)):
            load()


def test_resolve_device():
    import torch

    from movseg_core.config import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
