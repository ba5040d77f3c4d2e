"""``python -m movseg_core.training train CONFIG.yaml [--set key=value ...]`` and
``... export RUN_DIR_OR_CKPT OUTPUT.pt``, ``... train-clip-x STAGE2.yaml``, ``... tune-prompts STAGE2.yaml``
(also ``torchrun --nproc_per_node N -m movseg_core.training train ...``).

The same arguments back ``movseg train`` / ``movseg export`` (movseg_ros.train_cli)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from ..config import parse_overrides


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``train`` arguments (config YAML, ``--set``, ``--out-dir``, ...) to ``p``."""
    p.add_argument("config", help="training YAML (see config/train/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, dotted (e.g. --set steps=100 --set data.root=/data/ade)")
    p.add_argument("--out-dir", help="run folder (overrides out_dir)")
    p.add_argument("--no-resume", action="store_true", help="start fresh even if a checkpoint exists")


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``export`` arguments (run folder, output .pt, ``--clip-x``) to ``p``."""
    p.add_argument("run", help="run folder or training checkpoint (checkpoints/last.pt)")
    p.add_argument("output", help="exported checkpoint path (.pt) for the segmenter / node")
    p.add_argument("--clip-x", help="CLIP-X visual weights file to record in the checkpoint")


def add_stage2_arguments(p: argparse.ArgumentParser) -> None:
    """Add the stage-2 arguments (config YAML, ``--set``) to ``p``."""
    p.add_argument("config", help="stage-2 YAML (clip, data, x_modality, steps, batch_size, lr, output)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def run_clip_x(args: argparse.Namespace) -> int:
    """Run CLIP-X adaptation from ``args.config``; print its result as JSON; exit code 0."""
    from .stage2 import load_stage2_config
    from .stage2 import run_clip_x as run

    print(json.dumps(run(load_stage2_config(args.config, parse_overrides(args.overrides)))))
    return 0


def run_prompt_tuning(args: argparse.Namespace) -> int:
    """Run mask prompt tuning from ``args.config``; print its result as JSON; exit code 0."""
    from .stage2 import load_stage2_config
    from .stage2 import run_prompt_tuning as run

    print(json.dumps(run(load_stage2_config(args.config, parse_overrides(args.overrides)))))
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Train the RGB+X proposal generator from ``args``; rank 0 prints a JSON summary; exit code 0."""
    from . import distributed as du
    from .config import load_config
    from .engine import train

    ov = parse_overrides(args.overrides)
    if args.out_dir:
        ov["out_dir"] = args.out_dir
    if args.no_resume:
        ov["resume"] = False
    cfg = load_config(args.config, ov)
    res = train(cfg)
    if du.is_main():
        print(json.dumps({"out_dir": str(res.out_dir), "steps": res.steps[-1] if res.steps else 0,
                          "final_loss": res.losses[-1] if res.losses else None,
                          "eval": res.evals[-1] if res.evals else None,
                          "exported": str(res.exported) if res.exported else None}))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export the run ``args.run`` to a segmenter checkpoint; print its path; exit code 0."""
    from .engine import export_run

    print(export_run(args.run, args.output, args.clip_x))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train``, ``export``, ``train-clip-x`` and ``tune-prompts`` sub-commands (here and in the
    ``movseg`` CLI); each sets ``func(args) -> exit code``."""
    for name, help_text, add_arguments, run in (
        ("train", "train the RGB+X MaskFormer proposal generator from a YAML config", add_train_arguments, run_train),
        ("export", "export a training run to a checkpoint the segmenter/node load", add_export_arguments, run_export),
        ("train-clip-x", "stage 2: adapt a copy of CLIP's visual tower to the X modality", add_stage2_arguments,
         run_clip_x),
        ("tune-prompts", "OVSeg mask prompt tuning on mask-category pairs (CLIP frozen)", add_stage2_arguments,
         run_prompt_tuning),
    ):
        p = subparsers.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """``python -m movseg_core.training {train,export,train-clip-x,tune-prompts}``; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(prog="python -m movseg_core.training")
    add_commands(ap.add_subparsers(dest="cmd", required=True))
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
