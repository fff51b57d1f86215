"""``speech-gru``: the command line. ``main`` and the parser; each command, its flags and
its handler live in ``speech_gru/cli/commands/`` (one module per command, with
``add_parser(subparsers)`` and ``run(args)``), what they share in ``speech_gru.cli.options``.

Sub-commands:
    transcribe   label audio files or folders; find keywords in long recordings
    stream       detect keywords live from a microphone, a file or stdin
    serve        a local web page that listens to the browser's microphone (and takes uploads)
    evaluate     score a labelled folder (canonical test-archive layout)
    evaluate-stream  hit rate, false alarms per hour and DET curve on a long recording
    noise-robustness  clip accuracy as background noise rises
    export       write a self-contained TorchScript or ONNX model
    calibrate    choose the detector's operating point for a target false-alarm rate
    explain      plot what a GRU checkpoint attends to and how its gates move, on one file
    info         print a model card: labels, features, architecture, parameters, test accuracy
    models       list the bundled models and their measured figures
    record       record takes of your own word from the microphone, checked and named
    synth        write a dataset of synthetic voices saying your words, and other words
    vocabulary   a dataset of new keywords cut from a test archive's _unknown_ words
    wakeword     a detector for your own wake phrase, from its spelling
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from speech_gru import __version__
from speech_gru.cli.commands import (
    calibrate,
    evaluate,
    evaluate_stream,
    explain,
    export,
    info,
    models,
    noise_robustness,
    record,
    serve,
    stream,
    synth,
    transcribe,
    vocabulary,
    wakeword,
)
from speech_gru.cli.options import CliError, DefaultsFormatter, fail, use_bundled_model

COMMANDS = (
    transcribe,
    export,
    stream,
    serve,
    calibrate,
    evaluate,
    evaluate_stream,
    noise_robustness,
    explain,
    info,
    models,
    record,
    synth,
    vocabulary,
    wakeword,
)
"""The command modules, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-gru", description="Keyword spotting with a bidirectional GRU."
    )
    parser.add_argument("--version", action="version", version=f"speech-gru {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub).formatter_class = DefaultsFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        use_bundled_model(args)
        status = args.func(args)
        sys.stdout.flush()  # a reader that went away (| head) shows here, not at exit
        return status
    except BrokenPipeError:
        # Python's advice: point stdout at devnull so the flush at exit cannot fail again.
        with contextlib.suppress(OSError, ValueError):  # no file descriptor when captured
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command the pipe ended
    except CliError as err:
        fail(str(err))
        return 2
    except KeyboardInterrupt:
        fail("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
