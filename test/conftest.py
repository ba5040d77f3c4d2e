"""Shared test set-up: keep DDS on loopback, never reach a model hub, isolate runs."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Set before any test imports rclpy or open_clip (conftest is imported first).
from movseg_ros.env import local_ros_env  # noqa: E402

local_ros_env(force_hub_offline=True)

import atexit
import signal
import subprocess
import sys
import time

import pytest

PYTHON = sys.executable

#: every RosProcess still running; killed at interpreter exit whatever happened to the fixtures
LIVE: dict[int, "RosProcess"] = {}


class RosProcess:
    """A real process of ours (node, player, ...) started for a test, torn down by PID.

    It leads its own process group (``start_new_session``): :meth:`stop` signals the group, so
    children die with it, and the process never sees a Ctrl-C meant for pytest. Whatever fails
    after it started, :meth:`stop` (fixtures' ``finally``) or the ``atexit`` safeguard
    (:func:`kill_live_processes`) ends it.
    """

    def __init__(self, args: list[str], name: str, env: dict | None = None):
        self.name = name
        # logs stay in the checkout (build/ is ignored), so runs and clones leave nothing in /tmp
        log_dir = Path(os.environ.get("MOVSEG_TEST_LOGS", REPO / "build" / "test-logs"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"movseg-test-{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=str(REPO), start_new_session=True)
        self.pid = self.proc.pid
        LIVE[self.pid] = self

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        """Signal the PID, wait for a clean exit, then kill its process group; returns the exit code."""
        try:
            if self.proc.poll() is None:
                os.kill(self.pid, sig)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            self.kill()  # whatever is left in its group (children it started)
            LIVE.pop(self.pid, None)
            self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group, now (no clean shutdown)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


@atexit.register
def kill_live_processes() -> None:
    """Safeguard: pytest is exiting (normally, or after an error): no process of ours outlives it."""
    for p in list(LIVE.values()):
        p.kill()
        LIVE.pop(p.pid, None)


if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:  # a SIGTERM'd pytest (CI timeout) runs atexit too
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


@pytest.fixture
def ros_processes():
    """Factory: ``start(args, name)`` -> RosProcess; every process is stopped after the test."""
    started: list[RosProcess] = []

    def start(args: list[str], name: str, env: dict | None = None) -> RosProcess:
        p = RosProcess(args, name, env)
        started.append(p)
        return p

    try:
        yield start
    finally:
        for p in reversed(started):
            p.stop()


@pytest.fixture
def rclpy_node():
    """An rclpy node in the test process (own context), shut down after the test."""
    rclpy = pytest.importorskip("rclpy")
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f"movseg_test_{os.getpid()}", context=ctx)
    yield node
    node.destroy_node()
    rclpy.shutdown(context=ctx)


def random_clip(model_name: str = "movseg-tiny-vit", seed: int | None = None, **kw):
    """An open_clip model with random weights on the CPU (``seed``: ``torch.manual_seed`` first); the
    RuntimeWarnings of random initialisation are silenced. ``kw``: more :class:`ClipConfig` fields."""
    import warnings

    import torch

    from movseg_core.clip import ClipConfig, create_clip

    if seed is not None:
        torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return create_clip(ClipConfig(model_name=model_name, pretrained="random", device="cpu", **kw))


def layer_norm64(t, ln):
    """Reference LayerNorm in float64: ``t`` (..., C) torch tensor, ``ln`` a torch ``nn.LayerNorm``."""
    import torch

    mu = t.mean(-1, keepdim=True)
    var = ((t - mu) ** 2).mean(-1, keepdim=True)
    return (t - mu) / torch.sqrt(var + ln.eps) * ln.weight.double() + ln.bias.double()


def spin_until(node, predicate, timeout: float, step: float = 0.05) -> bool:
    """Spin ``node`` until ``predicate()`` is true or ``timeout`` seconds pass."""
    from rclpy.executors import SingleThreadedExecutor

    ex = SingleThreadedExecutor(context=node.context)
    ex.add_node(node)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if predicate():
                return True
            ex.spin_once(timeout_sec=step)
        return predicate()
    finally:
        ex.remove_node(node)
