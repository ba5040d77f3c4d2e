"""What every bench script shares: the repo on ``sys.path``, a local offline environment, the JSON last line.

Importing this module (``from _common import ...``: a script's own folder is first on ``sys.path``)
puts the repository first on ``sys.path`` and calls :func:`movseg_ros.env.local_ros_env` (DDS on
loopback, no model hub); importing :mod:`movseg_ros` also sets ``OMP_WAIT_POLICY=PASSIVE`` as in the
node, which torch reads when it loads. So it is imported first (ruff's ``bench-env`` section), before
torch, open_clip, rclpy or the project.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from movseg_ros.env import local_ros_env  # noqa: E402

local_ros_env()


def print_summary(summary: dict) -> int:
    """Print ``summary`` as the script's last line (one JSON object, what callers parse); returns exit code 0."""
    print(json.dumps(summary))
    return 0


def baseline_module(rev: str, name: str = "movseg_core.proposals", warm: str = "_kernels") -> types.ModuleType:
    """Module ``name`` of git revision ``rev`` with that revision's own compiled kernels (for
    interleaved timing). The revision's ``movseg_core`` is extracted once to a cache folder (so numba's
    on-disk cache compiles its kernels only once) and imported while it stands in for the current
    package; the current modules are put back afterwards. ``warm``: the module's function that loads
    its kernels, called while the revision's package stands in (numba resolves a kernel's callees,
    and loads its on-disk cache, at the first call). Seen once (2026-12-03, after many kernel edits in one
    checkout): the revision's kernels failed with "NRT_adapt_ndarray_to_python: 'descr' is NULL" until the
    checkout's own numba cache (movseg_core/__pycache__/*.nbi, *.nbc) was removed; a fresh clone or a git
    worktree of the same commit did not show it."""
    root = REPO
    sha = subprocess.run(["git", "-C", str(root), "rev-parse", f"{rev}^{{commit}}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = Path(tempfile.gettempdir()) / "movseg_bench_baseline" / sha
    if not (tree / "movseg_core" / "__init__.py").exists():
        part = tree.with_name(f"{sha}.part{os.getpid()}")
        part.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(root), "archive", sha, "movseg_core"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(part)], input=archive, check=True)
        os.replace(part, tree)
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "movseg_core" or k.startswith("movseg_core.")}
    sys.path.insert(0, str(tree))
    try:
        mod = importlib.import_module(name)
        if hasattr(mod, warm):
            getattr(mod, warm)()  # the revision's kernels, bound now while its package stands in
    finally:
        sys.path.remove(str(tree))
        for k in [k for k in sys.modules if k == "movseg_core" or k.startswith("movseg_core.")]:
            del sys.modules[k]
        sys.modules.update(ours)
    return mod
