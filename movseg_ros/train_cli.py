"""``movseg train CONFIG.yaml``, ``movseg export RUN OUTPUT.pt``, ``movseg train-clip-x STAGE2.yaml`` and
``movseg tune-prompts STAGE2.yaml``: thin CLI over movseg_core.training.

Wire into movseg_ros.cli with ``train_cli.register(subparsers)``. Multi-GPU / multi-node:
``torchrun --nproc_per_node N -m movseg_core.training train CONFIG.yaml`` (same arguments).
"""
from __future__ import annotations

import argparse

from movseg_core.training.__main__ import add_commands


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``export``, ``train-clip-x`` and ``tune-prompts``; each sets ``func(args) -> exit code``."""
    add_commands(subparsers)
