"""The launch file, the runner, the YAML and the node's declared parameters cannot drift apart."""
import ast
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from movseg_ros.launch_config import (
    LAUNCH_ARGUMENTS,
    PARAMETER_OVERRIDES,
    REMAPPED_INPUTS,
    node_arguments,
    node_settings,
)

from conftest import PYTHON, REPO

LAUNCH_FILE = REPO / "launch" / "segment.launch.py"


def yaml_parameters(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    assert list(doc) == ["/**"], f"{path.name}: parameters must sit under '/**' (the node in any namespace)"
    flat = {}

    def walk(prefix, node):
        for k, v in node.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(name, v)
            else:
                flat[name] = v
    walk("", doc["/**"]["ros__parameters"])
    return flat


def test_segment_yaml_sets_exactly_the_declared_parameters():
    from movseg_ros.params import declared_parameter_names

    in_yaml = set(yaml_parameters(REPO / "config" / "segment.yaml"))
    declared = set(declared_parameter_names())
    assert in_yaml - declared == set(), "config/segment.yaml sets parameters the node does not declare"
    assert declared - in_yaml == set(), "parameters missing from config/segment.yaml (document every default)"


def test_demo_yaml_only_sets_declared_parameters():
    from movseg_ros.params import declared_parameter_names

    assert set(yaml_parameters(REPO / "config" / "demo.yaml")) <= set(declared_parameter_names())


def test_launch_overrides_name_declared_parameters():
    from movseg_ros.params import declared_parameter_names

    assert set(PARAMETER_OVERRIDES.values()) <= set(declared_parameter_names())
    assert set(PARAMETER_OVERRIDES) | set(REMAPPED_INPUTS.values()) <= set(LAUNCH_ARGUMENTS)


def test_launch_file_starts_the_installed_node_from_the_shared_settings():
    tree = ast.parse(LAUNCH_FILE.read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {"LAUNCH_ARGUMENTS", "node_settings"} <= names
    node_call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "Node")
    kw = {k.arg: k.value for k in node_call.keywords}
    assert ast.literal_eval(kw["package"]) == "movseg_ros"
    assert ast.literal_eval(kw["executable"]) == "movseg_node"
    # name, namespace, parameters and remappings all come from node_settings (what `movseg run` uses)
    (splat,) = [k.value for k in node_call.keywords if k.arg is None]
    assert splat.func.id == "node_settings"
    assert set(node_settings({})) == {"name", "namespace", "parameters", "remappings"}
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert "scripts/movseg_node" in cmake and "DESTINATION lib/${PROJECT_NAME}" in cmake
    assert "install(DIRECTORY launch config" in cmake


def test_node_subscribes_to_the_remapped_inputs():
    from movseg_ros import topics

    src = (REPO / "movseg_ros" / "node.py").read_text()
    for topic, name in zip(REMAPPED_INPUTS, ("COLOR", "DEPTH", "CAMERA_INFO")):  # the node's inputs, in order
        assert topic == topics.node_side(getattr(topics, name)) and f"node_side(topics.{name})" in src, \
            f"node no longer subscribes to {topic}: launch remapping would miss"


def test_runner_builds_the_launch_configuration():
    args = node_arguments({"namespace": "robot1", "color_topic": "/cam/rgb", "device": "cpu"})
    assert args[0] == "--ros-args" and "__node:=movseg" in args
    assert args[args.index("--params-file") + 1] == str(REPO / "config" / "segment.yaml")
    assert "__ns:=/robot1" in args
    assert "camera/color/image_raw:=/cam/rgb" in args
    assert "segmenter.clip.device:=cpu" in args
    assert node_arguments({}, {"queries": ["a b", "c"], "depth.max_m": 2.0, "qos": "true"})[-6:] == [
        "-p", 'queries:=["a b", "c"]', "-p", "depth.max_m:=2.0", "-p", 'qos:="true"']  # as YAML, strings stay strings
    assert not any(a.startswith("segmenter.clip.device") for a in node_arguments({}))


# --------------------------------------------------------------------------- the YAML under a namespace, over DDS
#: tiny random CLIP so the node starts in seconds; depth.max_m and log_period_s are the non-default values read back
TINY = {"segmenter": {"clip": {"model_name": "movseg-tiny-vit", "pretrained": "random", "device": "cpu"},
                      "dense": {"short_side": 112}},
        "depth": {"max_m": 4.25}, "log_period_s": 7.5, "queries": ["mug", "desk"]}


def shipped_yaml_with(tmp_path: Path, values: dict) -> Path:
    """config/segment.yaml as shipped (same top-level key), with ``values`` merged into its parameters."""
    doc = yaml.safe_load((REPO / "config" / "segment.yaml").read_text())
    (key,) = doc

    def merge(dst, src):
        for k, v in src.items():
            if isinstance(v, dict):
                merge(dst.setdefault(k, {}), v)
            else:
                dst[k] = v
    merge(doc[key]["ros__parameters"], values)
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def read_parameters(node_fqn: str, names: list[str], proc, timeout: float = 120.0) -> dict:
    """Ask the running node ``node_fqn`` for ``names`` over DDS (its get_parameters service)."""
    import rclpy
    from rclpy.parameter import parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    from conftest import spin_until

    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f"movseg_param_reader_{os.getpid()}", context=ctx)
    try:
        client = AsyncParameterClient(node, node_fqn)
        deadline = time.monotonic() + timeout
        fut = None
        while fut is None or not fut.done():  # the node answers once its set-up is done and it spins
            assert proc.proc.poll() is None, f"node exited ({proc.proc.returncode}):\n{proc.output()}"
            assert time.monotonic() < deadline, f"{node_fqn} did not answer get_parameters:\n{proc.output()}"
            if fut is None and client.services_are_ready():
                fut = client.get_parameters(names)
            spin_until(node, lambda: fut is not None and fut.done(), 1.0)
        return {n: parameter_value_to_python(v) for n, v in zip(names, fut.result().values)}
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def test_movseg_run_applies_the_yaml_under_a_namespace(tmp_path, ros_processes):
    cfg = shipped_yaml_with(tmp_path, TINY)
    proc = ros_processes([PYTHON, "-m", "movseg_ros.cli", "run", "--config", str(cfg), "--namespace", "robot1"],
                         "run-ns")
    got = read_parameters("/robot1/movseg", ["depth.max_m", "log_period_s", "queries", "segmenter.clip.model_name"],
                          proc)
    assert got == {"depth.max_m": 4.25, "log_period_s": 7.5, "queries": ["mug", "desk"],
                   "segmenter.clip.model_name": "movseg-tiny-vit"}, proc.output()


def launch_ros_command(settings: dict, tmp_path: Path) -> list[str]:
    """The node command line launch_ros's ``Node(**settings)`` runs (launch_ros/actions/node.py at ros2/launch_ros
    f9ab937: ``-r __node:=NAME``, ``-r __ns:=/NS``, a path as ``--params-file PATH``, a dict written to a YAML
    keyed by the node's full name and passed as ``--params-file``, remappings as ``-r FROM:=TO``)."""
    ns = settings["namespace"]
    ns = ("" if not ns else ns if ns.startswith("/") else "/" + ns)
    fqn = f"{ns}/{settings['name']}"
    cmd = ["--ros-args", "-r", f"__node:={settings['name']}"] + (["-r", f"__ns:={ns}"] if ns else [])
    for i, p in enumerate(settings["parameters"]):
        if isinstance(p, dict):
            path = tmp_path / f"launch_params_{i}"
            path.write_text(yaml.dump({fqn: {"ros__parameters": p}}, default_flow_style=False))
            p = str(path)
        cmd += ["--params-file", str(p)]
    for src, dst in settings["remappings"]:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def test_launch_file_applies_the_yaml_under_a_namespace(tmp_path, ros_processes):
    cfg = shipped_yaml_with(tmp_path, {**TINY, "segmenter": {**TINY["segmenter"], "clip": {
        **TINY["segmenter"]["clip"], "device": "auto"}}})
    settings = node_settings({"config": str(cfg), "namespace": "robot2", "device": "cpu"})
    proc = ros_processes([PYTHON, "-m", "movseg_ros.node", *launch_ros_command(settings, tmp_path)], "launch-ns")
    got = read_parameters("/robot2/movseg", ["depth.max_m", "log_period_s", "segmenter.clip.device"], proc)
    assert got == {"depth.max_m": 4.25, "log_period_s": 7.5, "segmenter.clip.device": "cpu"}, proc.output()


def test_a_yaml_that_misses_the_node_is_an_error(tmp_path):
    """A file keyed 'movseg:' sets nothing on /robot1/movseg: `movseg run` (exit 2, before starting the node)
    and the node itself (exit 1, as the launch file starts it) say so instead of running with defaults."""
    cfg = tmp_path / "old.yaml"
    cfg.write_text(yaml.safe_dump({"movseg": {"ros__parameters": TINY}}))
    for cmd, code in (([PYTHON, "-m", "movseg_ros.cli", "run", "--config", str(cfg), "--namespace", "robot1"], 2),
                      ([PYTHON, "-m", "movseg_ros.node", "--ros-args", "-r", "__ns:=/robot1", "--params-file",
                        str(cfg)], 1)):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
        assert r.returncode == code, r.stdout + r.stderr
        assert "sets nothing for the node /robot1/movseg" in r.stderr and "'/**:'" in r.stderr


def test_movseg_run_set_is_checked_and_passed_as_parameters(tmp_path):
    base = [PYTHON, "-m", "movseg_ros.cli", "run", "--print"]
    r = subprocess.run(base + ["--set", "depth.max_m=4.0", "--set", "queries=[mug, desk]", "--set", "qos=reliable"],
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "-p depth.max_m:=4.0 -p queries:=[\"mug\", \"desk\"] -p qos:=reliable" in r.stdout
    for bad, words in (("depth.max_mm=4.0", "unknown node parameter 'depth.max_mm'; valid under depth: max_m, min_m"),
                       ("depth.max_m=4", "depth.max_m: 4 is a int"), ("nonsense", "KEY=VALUE")):
        r = subprocess.run(base + ["--set", bad], capture_output=True, text=True, timeout=120, cwd=REPO)
        assert r.returncode == 2 and words in r.stderr, r.stdout + r.stderr


@pytest.mark.parametrize("key", ["/**", "movseg", "/movseg", "/robot1/movseg", "/*/movseg", "/**/movseg",
                                 "robot1/movseg", "other", "/robot1/*"])
@pytest.mark.parametrize("namespace", ["", "/robot1", "/a/b"])
def test_node_key_matching_agrees_with_rclpy(tmp_path, key, namespace):
    """params.node_key_matches decides as rclpy does (rclpy applies the file or not)."""
    import rclpy
    from rclpy.node import Node

    from movseg_ros.params import node_key_matches

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({key: {"ros__parameters": {"probe": 7}}}))
    ctx = rclpy.context.Context()
    rclpy.init(args=["x", "--ros-args", "--params-file", str(path)]
               + (["-r", f"__ns:={namespace}"] if namespace else []),
               context=ctx)
    node = Node("movseg", context=ctx, automatically_declare_parameters_from_overrides=True)
    try:
        assert node_key_matches(key, node.get_fully_qualified_name()) == node.has_parameter("probe")
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
