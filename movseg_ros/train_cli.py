"""``movseg train CONFIG.yaml``, ``movseg export RUN OUTPUT.pt``, ``movseg train-clip-x STAGE2.yaml`` and
``movseg tune-prompts STAGE2.yaml``: thin CLI over movseg_core.training.

Wire into movseg_ros.cli with ``train_cli.register(subparsers)``. Multi-GPU / multi-node:
``torchrun --nproc_per_node N -m movseg_core.training train CONFIG.yaml`` (same arguments).
"""
from __future__ import annotations

import argparse

from movseg_core.training.__main__ import (
    add_export_arguments,
    add_stage2_arguments,
    add_train_arguments,
    run_clip_x,
    run_export,
    run_prompt_tuning,
    run_train,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``export`` sub-commands; each sets ``func(args) -> exit code``."""
    p = subparsers.add_parser("train", help="train the RGB+X MaskFormer proposal generator from a YAML config")
    add_train_arguments(p)
    p.set_defaults(func=run_train)
    p = subparsers.add_parser("export", help="export a training run to a checkpoint the segmenter/node load")
    add_export_arguments(p)
    p.set_defaults(func=run_export)
    p = subparsers.add_parser("train-clip-x", help="stage 2: adapt a copy of CLIP's visual tower to the X modality")
    add_stage2_arguments(p)
    p.set_defaults(func=run_clip_x)
    p = subparsers.add_parser("tune-prompts", help="OVSeg mask prompt tuning on mask-category pairs (CLIP frozen)")
    add_stage2_arguments(p)
    p.set_defaults(func=run_prompt_tuning)
