"""``speech-gru``: the command line. Argument parsing and printing only.

Sub-commands:
    transcribe   label audio files or folders
    stream       detect keywords live from a microphone, a file or stdin
    evaluate     score a labelled folder (canonical test-archive layout)
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from speech_gru import __version__
from speech_gru.audio import AudioError, fit_length, load_audio
from speech_gru.data import CLIP_SAMPLES, is_audio


class CliError(Exception):
    """A failure that ends the command with a one-line message and exit code 2."""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def audio_files(paths: Sequence[str]) -> Iterator[tuple[Path, str | None]]:
    """Each input file, and each audio file under each input folder (recursively).

    Yields:
        ``(path, problem)``: problem is None for a file to read, else a one-line reason.
    """
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if is_audio(p))
            if not files:
                yield path, "no audio files in this folder"
            for file in files:
                yield file, None
        elif path.exists():
            yield path, None
        else:
            yield path, "file not found"


def load_model(args: argparse.Namespace):  # noqa: ANN201 - a Classifier
    from speech_gru.infer import ModelLoadError, load_classifier

    try:
        return load_classifier(args.checkpoint)
    except ModelLoadError as err:
        raise CliError(str(err)) from None


def cmd_transcribe(args: argparse.Namespace) -> int:
    classifier = load_model(args)
    labels = classifier.labels
    top_k = max(1, min(args.top_k, len(labels)))
    failed = 0
    batch: list[tuple[Path, object]] = []

    def flush() -> None:
        if not batch:
            return
        probs = classifier.predict([wave for _, wave in batch])
        for (path, _), p in zip(batch, probs, strict=True):
            scores, order = p.topk(top_k)
            top = [(labels[i], float(s)) for s, i in zip(scores, order, strict=True)]
            if args.json:
                record = {"path": str(path), "label": top[0][0], "score": top[0][1]}
                record["top"] = [{"label": lab, "score": s} for lab, s in top]
                print(json.dumps(record), flush=True)
            else:
                print("\t".join([str(path), *(f"{lab}\t{s:.4f}" for lab, s in top)]), flush=True)
        batch.clear()

    for path, problem in audio_files(args.inputs):
        if problem is None:
            try:
                batch.append((path, fit_length(load_audio(path), CLIP_SAMPLES)))
            except AudioError as err:
                problem = err.problem
        if problem is not None:
            failed += 1
            fail(f"{path}: {problem}")
        if len(batch) >= args.batch_size:
            flush()
    flush()
    return 1 if failed else 0


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
        f"{int(minutes // 60):02d}:{int(minutes % 60):02d}:{seconds:05.2f}  {event.label:<10} "
        f"{event.score:.2f}  [{event.start_s:.2f}-{event.end_s:.2f} s]"
    )


def cmd_stream(args: argparse.Namespace) -> int:
    import torch

    from speech_gru.audio import SAMPLE_RATE, Microphone, iter_blocks, iter_pcm, list_devices
    from speech_gru.stream import DetectorConfig, StreamingDetector

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
    config = DetectorConfig(
        hop_s=args.hop,
        average_s=args.average,
        threshold=args.threshold,
        refractory_s=args.refractory,
        batch_windows=1 if live else 32,
    )
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
        print(f"listening to {source}; Ctrl-C to stop", file=sys.stderr, flush=True)
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
    found = ", ".join(f"{label} {n}" for label, n in counts.most_common()) or "none"
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
    json_path, png_path = write_report(report, out_dir, str(root))
    print(report.table())
    print(f"report: {json_path}")
    print(f"confusion matrix: {png_path}")
    print(f"accuracy: {report.accuracy:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speech-gru", description="Keyword spotting with a bidirectional GRU."
    )
    parser.add_argument("--version", action="version", version=f"speech-gru {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("transcribe", help="label audio files or folders")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (.ckpt)")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR", help="audio files or folders")
    p.add_argument("--top-k", type=int, default=1, help="labels printed per file (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object per file")
    p.add_argument("--batch-size", type=int, default=64, help="clips per forward pass")
    p.set_defaults(func=cmd_transcribe)

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
    p.add_argument("--rate", type=int, default=16000, help="sample rate of stdin PCM")
    p.add_argument("--channels", type=int, default=1, help="channels of stdin PCM")
    p.add_argument("--hop", type=float, default=0.1, help="seconds between windows")
    p.add_argument("--average", type=float, default=0.5, help="posterior averaging (s)")
    p.add_argument("--threshold", type=float, default=0.7, help="detection threshold")
    p.add_argument("--refractory", type=float, default=1.5, help="silence after an event (s)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the model")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("evaluate", help="score a labelled folder (one sub-folder per label)")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (.ckpt)")
    p.add_argument("folder", help="folder in the canonical test-archive layout")
    p.add_argument("--out", help="folder for the report (default: next to the checkpoint)")
    p.add_argument("--batch-size", type=int, default=64, help="clips per forward pass")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as err:
        fail(str(err))
        return 2
    except KeyboardInterrupt:
        fail("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
