"""``speech-gru transcribe``: label audio files or folders; find keywords in long recordings."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys

from rich.console import Console

from speech_gru.cli.options import (
    CliError,
    add_detector_arguments,
    add_model_argument,
    check_output,
    load_runtime,
    operating_point_line,
    positive_int,
    reason,
)
from speech_gru.core.audio import printable
from speech_gru.runtime.factory import FILE_BATCH_WINDOWS


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("transcribe", help="label audio files or folders")
    add_model_argument(p)
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="audio files or folders")
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=1,
        help="labels printed per clip (default 1; CSV: label_2,score_2,... columns after end_s)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help="text (tab-separated), JSON lines, or CSV with a header "
        "path,label,score,start_s,end_s[,label_2,score_2,...]",
    )
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument(
        "--output",
        help="write the results to this file instead of stdout "
        "(not an input, nor an audio file in an input folder)",
    )
    p.add_argument("--batch-size", type=positive_int, default=64, help="clips per forward pass")
    p.add_argument("--jobs", type=positive_int, default=4, help="threads decoding audio")
    p.add_argument(
        "--threads", type=positive_int, default=1, help="CPU threads for the model (default 1)"
    )
    add_detector_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from speech_gru.runtime.transcribe import Failure, Transcriber, csv_header, format_record

    inputs = [*args.inputs, args.checkpoint]
    output = check_output(args.output, "--output", inputs) if args.output else None
    torch.set_num_threads(args.threads)  # before loading: an ONNX session takes it at load
    runtime = load_runtime(args, FILE_BATCH_WINDOWS)
    classifier, config = runtime.classifier, runtime.config
    fmt = "json" if args.json else args.format
    transcriber = Transcriber(classifier, args.top_k, args.batch_size, args.jobs, config)
    try:  # opened (and so truncated) only now that the run is known to start
        out = open(output, "w", errors="surrogateescape") if output else sys.stdout  # noqa: SIM115
    except OSError as err:
        raise CliError(f"--output {args.output}: cannot write ({reason(err)})") from None
    if out is sys.stdout and fmt == "csv" and isinstance(out, io.TextIOWrapper):
        out.reconfigure(errors="surrogateescape")  # a name that is not UTF-8: its own bytes

    def emit(line: str | None) -> None:
        try:
            print(line, file=out, flush=True)
        except OSError as err:
            if out is sys.stdout:
                raise  # a closed pipe: main() ends quietly
            raise CliError(f"--output {args.output}: cannot write ({reason(err)})") from None

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed} files"),
        TextColumn("{task.fields[audio]:.0f} s of audio"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    try:
        with progress:
            task = progress.add_task("transcribing", total=None, audio=0.0)
            if fmt == "csv":
                emit(csv_header(transcriber.top_k))
            records = transcriber.run(
                args.inputs,
                on_file=lambda: progress.advance(task),
                on_audio=lambda s: progress.update(task, audio=transcriber.summary.audio_s),
            )
            for record in records:
                if isinstance(record, Failure):
                    message = printable(f"error: {record.path}: {record.problem}")
                    progress.console.print(message, markup=False, highlight=False, soft_wrap=True)
                else:
                    emit(format_record(record, fmt, transcriber.top_k))
    finally:
        if out is not sys.stdout:
            with contextlib.suppress(OSError):  # every line was flushed, and checked, above
                out.close()
    if transcriber.summary.long_files:  # only long recordings run the detector
        print(operating_point_line(args, config, classifier), file=sys.stderr)
    print(f"summary: {transcriber.summary.line()}", file=sys.stderr)
    return 1 if transcriber.summary.failed else 0
