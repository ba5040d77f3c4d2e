"""`colcon build` of this package, as on a real ROS 2 install, gives a complete install space."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_colcon_build_installs_node_interfaces_launch_and_config(tmp_path):
    src = tmp_path / "src" / "movseg_ros"
    # the package sources only (what `git clone` into a workspace gives), not build outputs
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", "build", "install", "log", "out", ".git",
                                                              "__pycache__", "runs"))
    venv = Path(sys.prefix)
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "CMAKE_PREFIX_PATH": str(venv)}
    colcon = venv / "bin" / "colcon"
    out = subprocess.run([str(colcon), "build", "--cmake-args",
                          f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    inst = tmp_path / "install" / "movseg_ros"
    for rel in ("lib/movseg_ros/movseg_node", "lib/movseg_ros/movseg", "share/movseg_ros/launch/segment.launch.py",
                "share/movseg_ros/config/segment.yaml", "share/movseg_ros/package.xml",
                "share/movseg_ros/msg/LabelInfo.msg", "share/movseg_ros/srv/SetQueries.srv"):
        assert (inst / rel).exists(), rel
    assert os.access(inst / "lib/movseg_ros/movseg_node", os.X_OK)
    site = inst / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # the installed package alone (outside the source tree) provides node, core and generated messages
    probe = ("import movseg_ros.node, movseg_core.segmenter; from movseg_ros.msg import LabelInfo; "
             "from movseg_ros.srv import SetQueries; print(movseg_ros.node.__file__)")
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**env, "PYTHONPATH": str(site),
                              "LD_LIBRARY_PATH": os.pathsep.join([str(inst / "lib"), env.get("LD_LIBRARY_PATH", "")])})
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == str(site / "movseg_ros" / "node.py")
