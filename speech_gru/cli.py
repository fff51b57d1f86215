"""``speech-gru``: the command line. Argument parsing and printing only.

Sub-commands:
    transcribe   label audio files or folders; find keywords in long recordings
    stream       detect keywords live from a microphone, a file or stdin
    evaluate     score a labelled folder (canonical test-archive layout)
    export       write a self-contained TorchScript or ONNX model
    explain      plot what a GRU checkpoint attends to and how its gates move, on one file
    info         print a model card: labels, features, architecture, parameters, test accuracy
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from rich.console import Console

from speech_gru import __version__
from speech_gru.audio import AUDIO_EXTENSIONS, MAX_FILE_RATE, MIN_FILE_RATE, AudioError, printable
from speech_gru.stream import DetectorConfig


class CliError(Exception):
    """A failure that ends the command with a one-line message and exit code 2."""


def fail(message: str) -> None:
    """Print ``error: message`` on one line, control characters from file names escaped."""
    print(f"error: {printable(message)}", file=sys.stderr)


def reason(err: OSError) -> str:
    """What went wrong, without the path (``No space left on device``)."""
    return err.strerror or type(err).__name__


def check_output(path: str, option: str, inputs: Sequence[str], create: bool = False) -> Path:
    """Check a file to be written before any work starts.

    Refused: a folder; a path under a missing folder (created later when ``create``) or
    under something that is not a folder; an input (it would be overwritten, and
    ``transcribe`` would truncate it before reading it); an audio file name inside an input
    folder (it would be read as input while it is written). A report such as
    ``clips/results.csv`` inside an input folder is fine: walking skips it.

    Raises:
        CliError: naming the option, the path and the problem.
    """
    out = Path(path)
    where = f"{option} {path}"
    try:
        if out.is_dir():
            raise CliError(f"{where}: is a folder")
        check_folder(out.parent, where, create)
        target = out.resolve()
        for name in inputs:
            source = Path(name)
            if source.is_dir():
                audio = out.suffix.lower() in AUDIO_EXTENSIONS
                if audio and target.is_relative_to(source.resolve()):
                    raise CliError(f"{where}: inside the input folder {name} (it would be read)")
            elif out.exists() and source.exists() and os.path.samefile(out, source):
                raise CliError(f"{where}: is the input {name} (it would be overwritten)")
    except OSError as err:  # e.g. a folder on the way that may not be searched
        raise CliError(f"{where}: cannot use ({reason(err)})") from None
    return out


def check_folder(folder: Path, where: str, create: bool) -> None:
    """Refuse a folder to write in that is not one, or is missing (unless ``create``).

    Raises:
        CliError: naming ``where`` (the option and its value) and the problem.
        OSError: a folder on the way cannot be searched.
    """
    existing = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    if not existing.is_dir():
        raise CliError(f"{where}: {existing} is not a folder")
    if existing != folder and not create:
        raise CliError(f"{where}: folder {folder} does not exist")


def load_model(args: argparse.Namespace):  # noqa: ANN201 - a Classifier
    from speech_gru.infer import ModelLoadError, load_classifier

    try:
        return load_classifier(args.checkpoint)
    except ModelLoadError as err:
        raise CliError(str(err)) from None


def detector_config(args: argparse.Namespace, batch_windows: int) -> DetectorConfig:
    return DetectorConfig(
        hop_s=args.hop,
        average_s=args.average,
        threshold=args.threshold,
        refractory_s=args.refractory,
        batch_windows=batch_windows,
    )


def cmd_transcribe(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from speech_gru.transcribe import CSV_HEADER, Failure, Transcriber, format_record

    inputs = [*args.inputs, args.checkpoint]
    output = check_output(args.output, "--output", inputs) if args.output else None
    torch.set_num_threads(args.threads)  # before loading: an ONNX session takes it at load
    classifier = load_model(args)
    fmt = "json" if args.json else args.format
    transcriber = Transcriber(
        classifier, args.top_k, args.batch_size, args.jobs, detector_config(args, 32)
    )
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
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} files"),
        TextColumn("{task.fields[audio]:.0f} s of audio"), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty(),
    )  # fmt: skip
    try:
        with progress:
            task = progress.add_task("transcribing", total=None, audio=0.0)
            if fmt == "csv":
                emit(CSV_HEADER)
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
                    emit(format_record(record, fmt))
    finally:
        if out is not sys.stdout:
            with contextlib.suppress(OSError):  # every line was flushed, and checked, above
                out.close()
    print(f"summary: {transcriber.summary.line()}", file=sys.stderr)
    return 1 if transcriber.summary.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from speech_gru.export import ExportError, export
    from speech_gru.infer import ModelLoadError

    try:
        path = export(args.checkpoint, args.out, args.format, args.quantize == "int8")
    except (ModelLoadError, ExportError) as err:
        raise CliError(str(err)) from None
    print(f"wrote {printable(path)} ({args.format}{', int8' if args.quantize == 'int8' else ''})")
    return 0


def paced(chunks: Iterator, sample_rate: int) -> Iterator:
    """Yield chunks no faster than real time (as a live source would deliver them)."""
    start = time.monotonic()
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        delay = start + sent / sample_rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        yield chunk


def format_event(event, as_json: bool) -> str:  # noqa: ANN001 - a stream.Event
    if as_json:
        return json.dumps(event.to_dict())
    minutes, seconds = divmod(event.time_s, 60)
    return (
        f"{int(minutes // 60):02d}:{int(minutes % 60):02d}:{seconds:05.2f}  "
        f"{printable(event.label):<10} "
        f"{event.score:.2f}  [{event.start_s:.2f}-{event.end_s:.2f} s]"
    )


def cmd_stream(args: argparse.Namespace) -> int:
    import torch

    from speech_gru.audio import SAMPLE_RATE, Microphone, iter_blocks, iter_pcm, list_devices
    from speech_gru.stream import StreamingDetector

    if args.list_devices:
        try:
            print(list_devices())
        except AudioError as err:
            raise CliError(str(err)) from None
        return 0
    if not args.checkpoint:
        raise CliError("--checkpoint is required")
    torch.set_num_threads(args.threads)  # one window at a time: more threads only add overhead
    classifier = load_model(args)
    live = args.input is None or args.realtime
    config = detector_config(args, batch_windows=1 if live else 32)
    detector = StreamingDetector(
        lambda w: classifier.predict(torch.from_numpy(w), batch_size=len(w)).numpy(),
        classifier.labels,
        config,
    )
    mic = None
    try:
        if args.input is None:
            mic = Microphone(device=args.device, block_seconds=args.hop)
            chunks: Iterator = iter(mic)
            source = f"microphone '{mic.device_name}'"
        elif args.input == "-":
            chunks = iter_pcm(sys.stdin.buffer, args.rate, args.channels, args.hop)
            source = "stdin"
        else:
            chunks = iter_blocks(args.input, block_seconds=args.hop)
            source = args.input
    except AudioError as err:
        raise CliError(str(err)) from None
    if args.input is not None and args.realtime:
        chunks = paced(chunks, SAMPLE_RATE)
    counts: Counter[str] = Counter()
    failure: AudioError | None = None
    interrupted = False
    try:
        if mic is not None:
            mic.start()
        print(f"listening to {printable(source)}; Ctrl-C to stop", file=sys.stderr, flush=True)
        for chunk in chunks:
            for event in detector.push(chunk):
                counts[event.label] += 1
                print(format_event(event, args.json), flush=True)
        for event in detector.flush():
            counts[event.label] += 1
            print(format_event(event, args.json), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
    except AudioError as err:
        failure = err
    finally:
        if mic is not None:
            mic.close()
    found = ", ".join(f"{printable(label)} {n}" for label, n in counts.most_common()) or "none"
    summary = f"{detector.time_s:.1f} s of audio, {sum(counts.values())} events ({found})"
    if mic is not None:
        summary += f", {mic.overflows} input overflows, {mic.dropped} dropped blocks"
    print(f"{'stopped' if interrupted else 'summary'}: {summary}", file=sys.stderr, flush=True)
    if failure is not None:
        fail(str(failure))
        return 2
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from speech_gru.evaluate import evaluate_folder, write_report

    if args.out:  # the report's two files go in this folder, created if missing
        try:
            check_folder(Path(args.out), f"--out {args.out}", create=True)
        except OSError as err:
            raise CliError(f"--out {args.out}: cannot use ({reason(err)})") from None
    classifier = load_model(args)
    root = Path(args.folder)
    if not root.is_dir():
        raise CliError(f"{root}: not a folder")
    try:
        report = evaluate_folder(classifier, root, args.batch_size, progress=sys.stderr.isatty())
    except FileNotFoundError as err:
        raise CliError(str(err)) from None
    for message in report.errors:
        fail(message)
    out_dir = Path(args.out) if args.out else classifier.source.parent
    print(report.table())
    status = 1 if report.errors else 0
    try:
        json_path, png_path = write_report(report, out_dir, str(root))
    except OSError as err:  # the scores are printed all the same
        fail(f"{'--out ' if args.out else ''}{out_dir}: cannot write the report ({reason(err)})")
        status = 2
    else:
        print(f"report: {printable(json_path)}")
        print(f"confusion matrix: {printable(png_path)}")
    print(f"accuracy: {report.accuracy:.4f}")
    return status


def cmd_explain(args: argparse.Namespace) -> int:
    from speech_gru.explain import ExplainError, explain_file, plot_explanation, write_json
    from speech_gru.infer import ModelLoadError

    inputs = [args.file, args.checkpoint]
    png = check_output(args.out, "--out", inputs, create=True)
    data = check_output(args.json, "--json", inputs, create=True) if args.json else None
    if data is not None and data.resolve() == png.resolve():
        raise CliError(f"--json {args.json}: the same file as --out")
    try:
        explanation = explain_file(args.checkpoint, args.file)
    except (ModelLoadError, ExplainError, AudioError) as err:
        raise CliError(str(err)) from None
    print(f"{printable(args.file)}: {printable(explanation.predicted)} {explanation.score:.2f}")
    if explanation.window_note():
        print(f"note: {explanation.window_note()}")
    for option, path, write in (("--out", png, plot_explanation), ("--json", data, write_json)):
        if path is not None:
            try:
                print(f"wrote {printable(write(explanation, path))}")
            except OSError as err:
                raise CliError(f"{option} {path}: cannot write ({reason(err)})") from None
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from speech_gru.explain import format_card, model_card
    from speech_gru.infer import ModelLoadError

    try:
        card = model_card(args.checkpoint)
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    print(json.dumps(card, indent=2) if args.json else format_card(card))
    return 0


def add_detector_arguments(p: argparse.ArgumentParser) -> None:
    """Keyword detection settings (defaults: the reference recognizer's, see stream.py)."""
    p.add_argument("--hop", type=positive_float, default=0.1, help="seconds between windows")
    p.add_argument("--average", type=non_negative_float, default=0.5,
                   help="posterior averaging (s)")  # fmt: skip
    p.add_argument("--threshold", type=probability, default=0.7,
                   help="detection threshold, in (0, 1]")  # fmt: skip
    p.add_argument("--refractory", type=non_negative_float, default=1.5,
                   help="silence after an event (s)")  # fmt: skip


# Argument types: a value out of range is argparse's usage error (exit 2), not a traceback
# (or, worse, a silent wrong answer: a negative batch size classified nothing).


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {'an integer' if kind is int else 'a number'}: "
                                         f"{text!r}") from None  # fmt: skip
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_int(text: str) -> int:
    if (value := _number(text, int)) < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return int(value)


def positive_float(text: str) -> float:
    if (value := _number(text, float)) <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    if (value := _number(text, float)) < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def probability(text: str) -> float:
    if not 0 < (value := _number(text, float)) <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text!r}")
    return value


def sample_rate(text: str) -> int:
    if not MIN_FILE_RATE <= (value := _number(text, int)) <= MAX_FILE_RATE:
        raise argparse.ArgumentTypeError(
            f"must be from {MIN_FILE_RATE} to {MAX_FILE_RATE} Hz, got {text!r}"
        )
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-gru", description="Keyword spotting with a bidirectional GRU."
    )
    parser.add_argument("--version", action="version", version=f"speech-gru {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="label audio files or folders")
    p.add_argument("--checkpoint", required=True, help="checkpoint (.ckpt) or exported model")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="audio files or folders")
    p.add_argument("--top-k", type=positive_int, default=1,
                   help="labels printed per clip (default 1)")  # fmt: skip
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--output", help="write the results to this file instead of stdout "
                   "(not an input, nor an audio file in an input folder)")  # fmt: skip
    p.add_argument("--batch-size", type=positive_int, default=64, help="clips per forward pass")
    p.add_argument("--jobs", type=positive_int, default=4, help="threads decoding audio")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="CPU threads for the model (default 1)")  # fmt: skip
    add_detector_arguments(p)
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("export", help="write a self-contained TorchScript or ONNX model")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (.ckpt)")
    p.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    p.add_argument("--out", required=True, help="file to write (.pt or .onnx)")
    p.add_argument("--quantize", choices=("none", "int8"), default="none",
                   help="int8 dynamic quantization of the GRU and linear layers")  # fmt: skip
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("stream", help="detect keywords live (microphone, file or stdin)")
    p.add_argument("--checkpoint", help="trained checkpoint (.ckpt)")
    p.add_argument("--input", help="audio file, or - for raw 16-bit PCM on stdin (default: mic)")
    p.add_argument("--device", help="microphone: device index or part of its name")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="pace --input at its real speed (default: as fast as possible)",
    )
    p.add_argument("--rate", type=sample_rate, default=16000, help="sample rate of stdin PCM")
    p.add_argument("--channels", type=positive_int, default=1, help="channels of stdin PCM")
    add_detector_arguments(p)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for the model")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("evaluate", help="score a labelled folder (one sub-folder per label)")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (.ckpt)")
    p.add_argument("folder", help="folder in the canonical test-archive layout")
    p.add_argument("--out", help="folder for the report (default: next to the checkpoint)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="clips per forward pass")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("explain", help="plot attention and GRU gate activity over one file")
    p.add_argument("--checkpoint", required=True, help="trained GRU checkpoint (.ckpt)")
    p.add_argument("file", help="audio file (longer than 1 s: its loudest second)")
    p.add_argument("--out", default="explain.png",
                   help="PNG to write, under exactly this name (default explain.png)")  # fmt: skip
    p.add_argument("--json", metavar="FILE.json", help="also write the plotted numbers here")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("info", help="print the model card of a checkpoint or an export")
    p.add_argument("--checkpoint", required=True, help="checkpoint (.ckpt) or exported model")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
