"""The launch file, the runner, the YAML and the node's declared parameters cannot drift apart."""
import ast
from pathlib import Path

import yaml

from conftest import REPO
from movseg_ros.launch_config import LAUNCH_ARGUMENTS, PARAMETER_OVERRIDES, REMAPPED_INPUTS, node_arguments

LAUNCH_FILE = REPO / "launch" / "segment.launch.py"


def yaml_parameters(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["movseg"], f"{path.name}: parameters must sit under the node name 'movseg'"
    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(name, v)
            else:
                flat[name] = v
    walk("", doc["movseg"]["ros__parameters"])
    return flat


def test_segment_yaml_sets_exactly_the_declared_parameters():
    from movseg_ros.node import declared_parameter_names

    in_yaml = set(yaml_parameters(REPO / "config" / "segment.yaml"))
    declared = set(declared_parameter_names())
    assert in_yaml - declared == set(), "config/segment.yaml sets parameters the node does not declare"
    assert declared - in_yaml == set(), "parameters missing from config/segment.yaml (document every default)"


def test_demo_yaml_only_sets_declared_parameters():
    from movseg_ros.node import declared_parameter_names

    assert set(yaml_parameters(REPO / "config" / "demo.yaml")) <= set(declared_parameter_names())


def test_launch_overrides_name_declared_parameters():
    from movseg_ros.node import declared_parameter_names

    assert set(PARAMETER_OVERRIDES.values()) <= set(declared_parameter_names())
    assert set(PARAMETER_OVERRIDES) | set(REMAPPED_INPUTS.values()) <= set(LAUNCH_ARGUMENTS)


def test_launch_file_starts_the_installed_node_from_the_shared_settings():
    tree = ast.parse(LAUNCH_FILE.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {"LAUNCH_ARGUMENTS", "PARAMETER_OVERRIDES", "REMAPPED_INPUTS", "default_config_path"} <= names
    node_call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node")
    kw = {k.arg: k.value for k in node_call.keywords}
    assert ast.literal_eval(kw["package"]) == "movseg_ros"
    assert ast.literal_eval(kw["executable"]) == "movseg_node"
    assert ast.literal_eval(kw["name"]) == "movseg"  # the YAML's top-level key
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "scripts/movseg_node" in cmake and "DESTINATION lib/${PROJECT_NAME}" in cmake
    assert "install(DIRECTORY launch config" in cmake


def test_node_subscribes_to_the_remapped_inputs():
    src = (REPO / "movseg_ros" / "node.py").read_text()
    for topic in REMAPPED_INPUTS:
        assert f'"{topic}"' in src, f"node no longer subscribes to {topic}: launch remapping would miss"


def test_runner_builds_the_launch_configuration():
    args = node_arguments({"namespace": "robot1", "color_topic": "/cam/rgb", "device": "cpu"})
    assert args[:3] == ["--ros-args", "--params-file", str(REPO / "config" / "segment.yaml")]
    assert "__ns:=/robot1" in args
    assert "camera/color/image_raw:=/cam/rgb" in args
    assert "segmenter.clip.device:=cpu" in args
    assert not any(a.startswith("segmenter.clip.device") for a in node_arguments({}))
