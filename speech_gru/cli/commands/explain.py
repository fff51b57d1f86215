"""``speech-gru explain``: plot what a checkpoint attends to and how its gates move on one
file, or (``--gradients``) how much of the loss's gradient reaches each frame."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from speech_gru.cli.options import CliError, add_model_argument, check_output, reason
from speech_gru.core.audio import AudioError, printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("explain", help="plot attention and GRU gate activity over one file")
    add_model_argument(p, exports=False, help="trained GRU checkpoint (.ckpt)")
    p.add_argument(
        "file",
        help="audio file (longer than the model's window, 1 s for Speech Commands models: "
        "its loudest window; a forward model: the whole recording)",
    )
    p.add_argument(
        "--out",
        default="explain.png",
        help="PNG to write, under exactly this name (default explain.png)",
    )
    p.add_argument("--json", metavar="FILE.json", help="also write the plotted numbers here")
    p.add_argument(
        "--gradients",
        action="store_true",
        help="plot how much of the loss's gradient reaches each frame instead "
        "(any cell: GRU, LSTM or plain RNN)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speech_gru.analysis.explain import ExplainError, explain_file, plot_explanation, write_json
    from speech_gru.runtime.checkpoint import ModelLoadError

    inputs = [args.file, args.checkpoint]
    png = check_output(args.out, "--out", inputs, create=True)
    data = check_output(args.json, "--json", inputs, create=True) if args.json else None
    if data is not None and data.resolve() == png.resolve():
        raise CliError(f"--json {args.json}: the same file as --out")
    if args.gradients:
        return explain_gradients(args, png, data)
    try:
        explanation = explain_file(args.checkpoint, args.file)
    except (ModelLoadError, ExplainError, AudioError) as err:
        raise CliError(str(err)) from None
    print(f"{printable(args.file)}: {printable(explanation.summary())}")
    if explanation.window_note():
        print(f"note: {explanation.window_note()}")
    return write_outputs(
        ("--out", png, lambda path: plot_explanation(explanation, path)),
        ("--json", data, lambda path: write_json(explanation, path)),
    )


def write_outputs(*writers: tuple[str, Path | None, Callable[[Path], Path]]) -> int:
    """Run each (option, path, write) whose path was given and say what was written; a
    failed write is a one-line error naming the option. Returns 0."""
    for option, path, write in writers:
        if path is not None:
            try:
                print(f"wrote {printable(write(path))}")
            except OSError as err:
                raise CliError(f"{option} {path}: cannot write ({reason(err)})") from None
    return 0


def explain_gradients(args: argparse.Namespace, png: Path, data: Path | None) -> int:
    """``explain --gradients``: the loss gradient reaching each frame, for any cell."""
    from speech_gru.analysis.explain import write_json
    from speech_gru.analysis.gradients import gradients_file, plot_gradients
    from speech_gru.runtime.checkpoint import ModelLoadError

    try:
        gradients = gradients_file(args.checkpoint, args.file)
    except (ModelLoadError, AudioError) as err:
        raise CliError(str(err)) from None
    norms = gradients.norms
    print(
        f"{printable(args.file)}: {printable(gradients.label)} {gradients.score:.2f}; "
        f"gradient norm per frame {norms.min():.3g} to {norms.max():.3g} "
        f"(first / last frame {norms[0]:.3g} / {norms[-1]:.3g})"
    )
    return write_outputs(
        ("--out", png, lambda path: plot_gradients(gradients, path)),
        ("--json", data, lambda path: write_json(gradients, path)),
    )
