"""Package-level guarantees: core is ROS-free, interfaces are real rosidl types."""
import subprocess
import sys

from conftest import REPO


def test_movseg_core_never_imports_rclpy():
    # Import every module of the core in a fresh interpreter, then look at sys.modules.
    code = (
        "import importlib, pkgutil, sys, movseg_core\n"
        "mods = [m.name for m in pkgutil.walk_packages(movseg_core.__path__, 'movseg_core.')]\n"
        "[importlib.import_module(m) for m in mods]\n"
        "print(len(mods), sorted(k for k in sys.modules\n"
        "                        if k.split('.')[0] in ('rclpy', 'rosidl_runtime_py', 'sensor_msgs')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    n, leaked = out.stdout.strip().split(" ", 1)
    assert int(n) >= 1
    assert leaked == "[]", f"movseg_core pulled in ROS modules: {leaked}"


def test_interfaces_are_generated_by_rosidl():
    from movseg_ros.msg import LabelInfo
    from movseg_ros.srv import SetQueries

    info = LabelInfo(vocabulary_version=3, names=["chair", "table"], ids=[1, 2])
    assert info.get_fields_and_field_types() == {
        "header": "std_msgs/Header", "vocabulary_version": "uint32",
        "names": "sequence<string>", "ids": "sequence<uint16>", "inference_ms": "float",
    }
    req_fields = SetQueries.Request.get_fields_and_field_types()
    resp_fields = SetQueries.Response.get_fields_and_field_types()
    assert req_fields == {"queries": "sequence<string>"}
    assert {"success", "message", "ids", "names"} <= set(resp_fields)
    # real typesupport: serialise and read back through the C extension
    from rclpy.serialization import deserialize_message, serialize_message
    back = deserialize_message(serialize_message(info), LabelInfo)
    assert list(back.names) == ["chair", "table"] and list(back.ids) == [1, 2]
