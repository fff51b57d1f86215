"""``speech-gru stream``: detect keywords live from a microphone, a file or stdin."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections import Counter

from speech_gru.cli.options import (
    CliError,
    add_detector_arguments,
    add_model_argument,
    fail,
    load_runtime,
    operating_point_line,
    positive_int,
    sample_rate,
)
from speech_gru.core.audio import AudioError, printable
from speech_gru.runtime.factory import FILE_BATCH_WINDOWS, LIVE_BATCH_WINDOWS


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("stream", help="detect keywords live (microphone, file or stdin)")
    add_model_argument(p)
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
    p.add_argument(
        "--no-view",
        dest="view",
        action="store_false",
        help="on a terminal too, print events only: no live level meter and "
        "scores (piped or redirected output never has them)",
    )
    p.set_defaults(func=run)
    return p


def format_event(event, as_json: bool) -> str:  # noqa: ANN001 - a stream.Event
    if as_json:
        return json.dumps(event.to_dict())
    minutes, seconds = divmod(event.time_s, 60)
    return (
        f"{int(minutes // 60):02d}:{int(minutes % 60):02d}:{seconds:05.2f}  "
        f"{printable(event.label):<10} "
        f"{event.score:.2f}  [{event.start_s:.2f}-{event.end_s:.2f} s]"
    )


def run(args: argparse.Namespace) -> int:
    import threading

    import torch

    from speech_gru.runtime.mic import list_devices
    from speech_gru.runtime.source import open_source

    if args.list_devices:
        try:
            print(list_devices())
        except AudioError as err:
            raise CliError(str(err)) from None
        return 0
    torch.set_num_threads(args.threads)  # one window at a time: more threads only add overhead
    live = args.input is None or args.realtime
    runtime = load_runtime(args, LIVE_BATCH_WINDOWS if live else FILE_BATCH_WINDOWS)
    classifier, config = runtime.classifier, runtime.config
    detector = runtime.detector()
    try:
        source = open_source(
            args.input,
            config.hop_s,
            device=args.device,
            rate=args.rate,
            channels=args.channels,
            realtime=args.realtime,
        )
    except AudioError as err:
        raise CliError(str(err)) from None
    counts: Counter[str] = Counter()
    failure: AudioError | None = None
    interrupted = False
    view = None
    if args.view and sys.stdout.isatty():  # piped or redirected: the event lines only
        from speech_gru.cli.live import LiveView

        view = LiveView(detector.labels, detector.thresholds)

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut cleanup
        raise KeyboardInterrupt  # SIGTERM stops as Ctrl-C does: the summary, exit code 0

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, terminate) if main_thread else None
    try:
        with source:
            # Only a live source runs until stopped; a file ends by itself.
            what = "listening to" if live else "reading"
            stop = "; Ctrl-C to stop" if args.input is None or args.input == "-" else ""
            print(f"{what} {printable(source.name)}{stop}", file=sys.stderr, flush=True)
            print(operating_point_line(args, config, classifier), file=sys.stderr, flush=True)
            on_chunk = view.on_chunk if view is not None else None
            with view if view is not None else contextlib.nullcontext():
                for event in detector.events(source, on_chunk=on_chunk, ends=not source.live):
                    counts[event.label] += 1
                    if view is not None:  # above the meter and scores
                        view.print(format_event(event, args.json))
                    else:
                        print(format_event(event, args.json), flush=True)
    except KeyboardInterrupt:
        interrupted = True
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
    except AudioError as err:
        failure = err
    finally:  # a closed pipe (BrokenPipeError) ends in main(), quietly, with 141
        if main_thread:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
    found = ", ".join(f"{printable(label)} {n}" for label, n in counts.most_common()) or "none"
    summary = f"{detector.time_s:.1f} s of audio, {sum(counts.values())} events ({found})"
    summary += source.health()
    print(f"{'stopped' if interrupted else 'summary'}: {summary}", file=sys.stderr, flush=True)
    if failure is not None:
        fail(str(failure))
        return 2
    return 0
