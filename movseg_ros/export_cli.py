"""`movseg export-onnx`: the CLIP encoders of the node's configuration as ONNX (movseg_core/export.py).

    movseg export-onnx --out models/clip_onnx [--config config/segment.yaml] [--set KEY=VALUE ...]
                       [--image-size 480 640] [--opset 17] [--int8]

Reads the segmenter's settings exactly as the node does (its parameters YAML plus ``--set`` overrides,
``movseg_ros.params.load_node_params``), loads the CLIP on the CPU and writes ``dense.onnx``, ``text.onnx``
(``*_int8.onnx`` with ``--int8``) and ``export.json``. Run the node with ``segmenter.backend: onnxruntime``
(or ``openvino``) and ``segmenter.backend_dir`` set to the folder. The frame size is part of the graph:
give your camera's (``--image-size H W``).
"""
from __future__ import annotations

import argparse
import dataclasses

from movseg_ros.cli import add_command, add_node_params_arguments


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``export-onnx``; ``func(args)`` returns the exit code."""
    p = add_command(subparsers, "export-onnx", "export the CLIP encoders to ONNX for segmenter.backend", __doc__)
    p.add_argument("--out", required=True, help="folder to write (created)")
    add_node_params_arguments(p, "segmenter.dense.mode=clearclip")
    p.add_argument("--node", default="/movseg", help="the node's full name (its entries in --config)")
    p.add_argument("--image-size", nargs=2, type=int, default=(480, 640), metavar=("H", "W"),
                   help="camera frame size in pixels (default 480 640)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default movseg_core.export.DEFAULT_OPSET)")
    p.add_argument("--int8", action="store_true", help="also write int8 dynamically quantized files")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from movseg_core.clip import ClipModel  # torch: not at `movseg --help` time
    from movseg_core.config import parse_overrides
    from movseg_core.export import DEFAULT_OPSET, check_exportable, export_onnx
    from movseg_ros.eval_cli import default_node_config
    from movseg_ros.params import load_node_params

    if min(args.image_size) < 8:
        raise ValueError(f"--image-size {args.image_size}: need H, W >= 8")
    params = load_node_params(args.config or default_node_config(), parse_overrides(args.set), node_fqn=args.node)
    cfg = params.segmenter
    check_exportable(cfg.dense)  # before loading any weights
    clip = ClipModel(dataclasses.replace(cfg.clip, device="cpu", precision="fp32", torch_compile=False))
    info = export_onnx(clip, cfg.dense, args.out, tuple(args.image_size), args.opset or DEFAULT_OPSET, args.int8)
    print(f"exported {info.model_name} ({info.pretrained}), dense.mode {info.dense['mode']}, "
          f"{info.image_size[0]}x{info.image_size[1]} frames -> dense input {info.dense_input} in {info.seconds} s")
    print(f"run with: --set segmenter.backend=onnxruntime --set segmenter.backend_dir={args.out}")
    return 0
