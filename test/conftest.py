"""Shared test set-up: keep DDS on loopback, never reach a model hub, isolate runs."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Set before any test imports rclpy or open_clip (conftest is imported first).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 200))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
os.environ["HF_HUB_OFFLINE"] = "1"

import signal
import subprocess
import sys
import time

import pytest

PYTHON = sys.executable


class RosProcess:
    """A real process of ours (node, player, ...) started for a test, torn down by PID."""

    def __init__(self, args: list[str], name: str, env: dict | None = None):
        self.name = name
        self.log_path = Path(os.environ.get("MOVSEG_TEST_LOGS", "/tmp")) / f"movseg-test-{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, cwd=str(REPO))
        self.pid = self.proc.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        """Signal the PID, wait for a clean exit, then kill; returns the exit code."""
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def ros_processes():
    """Factory: ``start(args, name)`` -> RosProcess; every process is stopped after the test."""
    started: list[RosProcess] = []

    def start(args: list[str], name: str, env: dict | None = None) -> RosProcess:
        p = RosProcess(args, name, env)
        started.append(p)
        return p

    yield start
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
