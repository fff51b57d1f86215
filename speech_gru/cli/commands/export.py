"""``speech-gru export``: write a self-contained TorchScript or ONNX model."""

from __future__ import annotations

import argparse

from speech_gru.cli.options import CliError, add_model_argument
from speech_gru.core.audio import printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="write a self-contained TorchScript or ONNX model")
    add_model_argument(p, exports=False)
    p.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("--out", required=True, help="file to write (.pt or .onnx)")
    p.add_argument(
        "--quantize",
        choices=("none", "int8"),
        default="none",
        help="int8 dynamic quantization of the GRU and linear layers",
    )
    p.add_argument(
        "--streaming",
        action="store_true",
        help="forward models: one 20 ms frame per call, the state as explicit inputs and outputs",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speech_gru.runtime.checkpoint import ModelLoadError
    from speech_gru.runtime.export import ExportError, export

    try:
        path = export(
            args.checkpoint, args.out, args.format, args.quantize == "int8", args.streaming
        )
    except (ModelLoadError, ExportError) as err:
        raise CliError(str(err)) from None
    kind = [args.format] + ["int8"] * (args.quantize == "int8") + ["streaming"] * args.streaming
    print(f"wrote {printable(path)} ({', '.join(kind)})")
    return 0
