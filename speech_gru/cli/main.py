"""``speech-gru``: the command line. Argument parsing and printing only.

Sub-commands:
    transcribe   label audio files or folders; find keywords in long recordings
    stream       detect keywords live from a microphone, a file or stdin
    serve        a local web page that listens to the browser's microphone (and takes uploads)
    evaluate     score a labelled folder (canonical test-archive layout)
    evaluate-stream  hit rate, false alarms per hour and DET curve on a long recording
    export       write a self-contained TorchScript or ONNX model
    calibrate    choose the detector's operating point for a target false-alarm rate
    explain      plot what a GRU checkpoint attends to and how its gates move, on one file
    info         print a model card: labels, features, architecture, parameters, test accuracy
    record       record takes of your own word from the microphone, checked and named
    synth        write a dataset of synthetic voices saying your words, and other words
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
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from speech_gru import __version__
from speech_gru.core.audio import (
    AUDIO_EXTENSIONS,
    MAX_FILE_RATE,
    MIN_FILE_RATE,
    AudioError,
    printable,
)
from speech_gru.runtime.checkpoint import duration_text, settings_text
from speech_gru.runtime.detector import DetectorConfig
from speech_gru.runtime.stateful import StatefulScorer


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
    from speech_gru.runtime.classifier import ModelLoadError, load_classifier

    try:
        return load_classifier(args.checkpoint)
    except ModelLoadError as err:
        raise CliError(str(err)) from None


def detector_config(
    args: argparse.Namespace,
    batch_windows: int,
    classifier=None,  # noqa: ANN001 - a Classifier
) -> DetectorConfig:
    """Detector settings: each flag the user gave, else the classifier's calibrated
    operating point (when it has one), else ``DetectorConfig``'s defaults. A given
    ``--threshold`` holds for every keyword (the point's per-keyword ones are dropped)."""
    point = getattr(classifier, "operating_point", None)
    return checked_hop(DetectorConfig.resolve(point, given_flags(args), batch_windows), classifier)


def checked_hop(config: DetectorConfig, classifier) -> DetectorConfig:  # noqa: ANN001
    """``config``, unless the model carries its state and the hop would skip audio
    (``StatefulScorer.check``)."""
    if getattr(classifier, "stepper", None) is not None:
        try:
            StatefulScorer.check(config)
        except ValueError as err:
            raise CliError(f"--hop {config.hop_s:g}: {err}") from None
    return config


def given_flags(args: argparse.Namespace) -> dict[str, float]:
    """The ``DetectorConfig`` settings set on the command line."""
    flags = DetectorConfig.flags()
    return {f.name: getattr(args, f.name) for f in flags if getattr(args, f.name, None) is not None}


def operating_point_line(
    args: argparse.Namespace,
    config: DetectorConfig,
    classifier=None,  # noqa: ANN001
) -> str:
    """``operating point: calibrated for 1 false alarms/h (threshold 0.83, ...)``: where
    the settings of ``detector_config`` come from, for stderr."""
    point = getattr(classifier, "operating_point", None)
    if point is None:
        origin = "defaults, the model is not calibrated"
    else:
        origin = f"calibrated for {point.target_fa_per_hour:g} false alarms/h"
    set_here = given_flags(args)
    given = [
        f.metadata["flag"]
        for f in DetectorConfig.flags()
        if f.metadata["calibrated"] and f.name in set_here
    ]
    if given:
        origin += f", overridden by {' '.join(given)}"
    text = settings_text(config.threshold, config.thresholds, config.average_s, config.refractory_s)
    line = f"operating point: {origin} ({text})"
    if point is not None and not math.isclose(point.hop_s, config.hop_s):
        line += f"; calibrated at hop {point.hop_s:g} s, running at {config.hop_s:g} s"
    return line


def cmd_transcribe(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from speech_gru.runtime.transcribe import Failure, Transcriber, csv_header, format_record

    inputs = [*args.inputs, args.checkpoint]
    output = check_output(args.output, "--output", inputs) if args.output else None
    torch.set_num_threads(args.threads)  # before loading: an ONNX session takes it at load
    classifier = load_model(args)
    fmt = "json" if args.json else args.format
    config = detector_config(args, 32, classifier)
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
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} files"),
        TextColumn("{task.fields[audio]:.0f} s of audio"), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty(),
    )  # fmt: skip
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


def cmd_export(args: argparse.Namespace) -> int:
    from speech_gru.runtime.classifier import ModelLoadError
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
    import threading

    import torch

    from speech_gru.runtime.detector import StreamingDetector
    from speech_gru.runtime.mic import list_devices
    from speech_gru.runtime.source import open_source

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
    config = detector_config(args, 1 if live else 32, classifier)
    detector = StreamingDetector(classifier.scorer(config), classifier.labels, config)
    try:
        source = open_source(
            args.input, config.hop_s, device=args.device, rate=args.rate,
            channels=args.channels, realtime=args.realtime,
        )  # fmt: skip
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
            print(f"listening to {printable(source.name)}; Ctrl-C to stop", file=sys.stderr,
                  flush=True)  # fmt: skip
            print(operating_point_line(args, config, classifier), file=sys.stderr, flush=True)
            on_chunk = view.on_chunk if view is not None else None
            with view if view is not None else contextlib.nullcontext():
                for event in detector.events(source, on_chunk=on_chunk):
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


def cmd_serve(args: argparse.Namespace) -> int:
    import torch

    from speech_gru.cli.serve import ServeError, Settings, serve

    torch.set_num_threads(args.threads)  # one window at a time, as in stream
    classifier = load_model(args)
    config = detector_config(args, 1, classifier)
    origin = operating_point_line(args, config, classifier)
    print(origin, file=sys.stderr, flush=True)
    settings = Settings(classifier, config, args.workers, max_clients=args.max_clients,
                        origin=origin)  # fmt: skip

    def announce(url: str) -> None:
        print(f"serving on {url} (open it in a browser; Ctrl-C to stop)", file=sys.stderr,
              flush=True)  # fmt: skip

    try:
        serve(settings, args.host, args.port, announce)
    except ServeError as err:
        raise CliError(str(err)) from None
    except KeyboardInterrupt:  # uvicorn stops cleanly, then raises the Ctrl-C it caught
        pass
    print("stopped", file=sys.stderr)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from speech_gru.analysis.calibrate import (
        CalibrationError,
        calibrate,
        from_dataset,
        from_files,
        record,
        save_point,
    )
    from speech_gru.runtime.classifier import (
        ModelLoadError,
        checkpoint_classifier,
        load_checkpoint_model,
        model_kind,
    )
    from speech_gru.runtime.export import is_training_checkpoint

    source_path = Path(args.checkpoint)
    inputs = [*(args.negatives or []), *([args.clips] if args.clips else [])]
    out = check_output(args.out, "--out", inputs) if args.out else source_path
    try:
        kind = model_kind(source_path)
        if kind != "checkpoint":
            raise CliError(
                f"{args.checkpoint}: an exported ({kind}) model cannot be calibrated; "
                "calibrate the training checkpoint, then export it"
            )
        model, labels, checkpoint = load_checkpoint_model(source_path)
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    if out.exists() and not os.path.samefile(out, source_path) and not is_training_checkpoint(out):
        raise CliError(f"--out {args.out}: exists and is not a training checkpoint")
    torch.set_num_threads(args.threads)
    classifier = checkpoint_classifier(model, labels, source_path)

    config = checked_hop(DetectorConfig(**given_flags(args)), classifier)
    try:
        if args.clips:
            audio = from_dataset(
                args.clips, labels, args.split, checkpoint.get("datamodule_hyper_parameters"),
                args.seed, args.hit_clips,
            )  # fmt: skip
        else:
            audio = from_files(args.negatives)
        progress = Progress(
            TextColumn("{task.description}"), TextColumn("{task.fields[audio]:.0f} s of audio"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=True,
            disable=not sys.stderr.isatty(),
        )  # fmt: skip
        with progress:
            task = progress.add_task("scoring negatives", total=None, audio=0.0)
            seen = [0.0]

            def on_audio(seconds: float) -> None:
                seen[0] += seconds
                progress.update(task, audio=seen[0])

            scorer = classifier.scorer(config)
            negatives = record(scorer, labels, audio.negatives, config, on_audio)
            progress.update(task, description="scoring keyword clips", audio=0.0)
            seen[0] = 0.0
            positives = record(scorer, labels, audio.keywords, config, on_audio)
    except (CalibrationError, AudioError) as err:
        raise CliError(str(err)) from None
    if audio.clip_stream is not None and audio.clip_stream.skipped:
        skipped = audio.clip_stream.skipped
        first = printable(skipped[0])
        print(f"warning: {len(skipped)} clips could not be read and were left out (first: "
              f"{first})", file=sys.stderr)  # fmt: skip
    result = calibrate(
        negatives, labels, args.target_fa, args.averages, config, args.per_keyword,
        args.min_threshold, positives,
    )  # fmt: skip
    hours = result.negative_s / 3600
    print(f"negatives: {duration_text(result.negative_s)} of audio ({printable(audio.source)})")
    if positives:
        print(f"hit rate: {len(positives)} keyword clips of the split, each streamed alone")
    print(f"{'average':>8}  {'threshold':>11}  {'false alarms':>12}  {'per hour':>8}  hit rate")
    for c in result.candidates:
        if c.thresholds:
            low, high = min(c.thresholds.values()), max(c.thresholds.values())
            threshold = f"{low:.4f}-{high:.4f}" if low != high else f"{low:.4f}"
        else:
            threshold = "none <= 1" if c.threshold is None else f"{c.threshold:.4f}"
        rate = c.false_alarms / hours if hours else 0.0
        hit = "-" if c.hit_rate is None else f"{c.hit_rate:.1%}"
        mark = "  <- chosen" if c is result.chosen else ""
        print(f"{c.average_s:>6g} s  {threshold:>11}  {c.false_alarms:>12}  {rate:>8.3g}  "
              f"{hit:>8}{mark}")  # fmt: skip
    if not result.measurable:
        print(
            f"note: {duration_text(result.negative_s)} of negative audio cannot measure "
            f"{args.target_fa:g} false alarms/h: one false alarm would already be "
            f"{3600 / max(result.negative_s, 1e-9):.3g}/h; chose the lowest threshold with no "
            f"false alarm (measuring it needs {duration_text(3600 / args.target_fa)} or more)"
        )
    if result.chosen is None:
        raise CliError(
            f"no averaging span keeps to {args.target_fa:g} false alarms/h at any threshold "
            "up to 1 (more negative audio, a longer --averages span or --refractory may); "
            "nothing written"
        )
    point = result.point(audio.source)
    print(f"chosen: {point.settings_text()}")
    print(f"measured: {point.measured_text()}")
    if min(point.thresholds.values(), default=point.threshold) <= args.min_threshold:
        print(f"note: a threshold is at the floor, --min-threshold {args.min_threshold:g}")
    if point.thresholds:
        print(
            "thresholds: "
            + " ".join(f"{printable(k)} {v:.4f}" for k, v in point.thresholds.items())
        )
    try:
        save_point(checkpoint, point, out)
    except OSError as err:
        raise CliError(f"{out}: cannot write ({reason(err)})") from None
    if args.out and not os.path.samefile(out, source_path):
        print(f"wrote {printable(out)}: {printable(args.checkpoint)} with its operating point")
    else:
        print(f"wrote the operating point into {printable(out)} (only the key operating_point "
              "was added; weights and training state are unchanged)")  # fmt: skip
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from speech_gru.analysis.evaluate import evaluate_folder, write_report

    if args.out:  # the report's two files go in this folder, created if missing
        try:
            check_folder(Path(args.out), f"--out {args.out}", create=True)
        except OSError as err:
            raise CliError(f"--out {args.out}: cannot use ({reason(err)})") from None
    classifier = load_model(args)
    root = Path(args.folder)
    if not root.is_dir():
        raise CliError(f"{root}: not a folder")
    datamodule = None
    if args.split != "all":  # split as in training: the checkpoint records how
        if classifier.kind != "checkpoint":
            raise CliError(
                f"{args.checkpoint}: an exported ({classifier.kind}) model does not record "
                f"its data split; --split {args.split} needs the training checkpoint (.ckpt)"
            )
        datamodule = classifier.metadata["datamodule_hyper_parameters"] or None
    try:
        report = evaluate_folder(
            classifier, root, args.batch_size, sys.stderr.isatty(), args.split, datamodule
        )
    except FileNotFoundError as err:
        raise CliError(str(err)) from None
    for message in report.errors:
        fail(message)
    out_dir = Path(args.out) if args.out else classifier.source.parent
    if args.split != "all":
        print(f"split: {args.split} speakers of {printable(root)}, as in training")
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
    if not math.isnan(report.keyword_accuracy):
        print(f"keyword accuracy: {report.keyword_accuracy:.4f} (clips of keywords only)")
    return status


def cmd_evaluate_stream(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from speech_gru.analysis import stream_eval as se
    from speech_gru.core.audio import SAMPLE_RATE, load_audio, write_wav
    from speech_gru.core.labels import is_keyword

    if (args.recording is None) != (args.truth is None):
        raise CliError("--recording FILE.wav and --truth FILE.csv|json go together")
    low, high = args.snr
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise CliError(f"--snr {low:g} {high:g}: needs finite LOW <= HIGH (dB)")
    if not 0 <= args.distractors < 1:
        raise CliError(f"--distractors {args.distractors:g}: must be in [0, 1)")
    if args.clips and not Path(args.clips).is_dir():
        raise CliError(f"{args.clips}: dataset folder not found")
    inputs = [x for x in (args.checkpoint, args.clips, args.recording, args.truth) if x]
    options = [("--det", args.det), ("--json", args.json), ("--plot", args.plot),
               ("--save-wav", args.save_wav)]  # fmt: skip
    outputs = {option: check_output(path, option, inputs) for option, path in options if path}
    written = [p.resolve() for p in outputs.values()]
    if args.save_wav:  # and its truth next to it
        sidecar = outputs["--save-wav"].with_suffix(".json")
        check_output(str(sidecar), "--save-wav", inputs)
        written.append(sidecar.resolve())
    if len(set(written)) < len(written):
        raise CliError("--det, --json, --plot and --save-wav must name different files")
    torch.set_num_threads(args.threads)
    try:
        if args.recording:  # read before the model loads: a bad file fails at once
            wave = load_audio(args.recording)
            truth = se.read_truth(args.truth, wave.size / SAMPLE_RATE)
    except (AudioError, se.TruthError) as err:
        raise CliError(str(err)) from None
    classifier = load_model(args)
    config = detector_config(args, 32, classifier)
    keywords = [label for label in classifier.labels if is_keyword(label)]
    try:
        if args.recording:
            found, others = se.split_truth(truth, keywords)
            source = f"{args.recording} (truth {args.truth})"
        else:
            if args.espeak:
                pool = se.espeak_pool(keywords, args.espeak_speakers, args.seed, None, args.noise)
            else:
                pool = se.folder_pool(args.clips, keywords, args.split, args.split_salt, args.noise)
            others = []
            wave, found = se.build_recording(
                pool, args.minutes, args.seed, (low, high), gap_s=tuple(args.gap),
                distractor_share=args.distractors, distractors_out=others,
            )  # fmt: skip
            source = pool.description
    except (FileNotFoundError, ValueError, RuntimeError, AudioError) as err:
        raise CliError(str(err)) from None
    recording = se.Recording(wave, found, others, source)
    print(f"source: {printable(source)}", file=sys.stderr)
    if args.save_wav:
        truth_file = {"sample_rate": SAMPLE_RATE, "duration_s": recording.duration_s,
                      "source": source, "keywords": [t.to_dict() for t in found],
                      "distractors": [t.to_dict() for t in others]}  # fmt: skip
        try:
            write_wav(outputs["--save-wav"], wave)
            sidecar.write_text(json.dumps(truth_file, indent=1) + "\n")
        except AudioError as err:
            raise CliError(str(err)) from None
        except OSError as err:
            raise CliError(f"--save-wav {sidecar}: cannot write ({reason(err)})") from None
        print(f"wrote {printable(args.save_wav)} and its truth (.json)", file=sys.stderr)

    progress = Progress(
        TextColumn("streaming"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(), console=Console(stderr=True), transient=True,
        disable=not sys.stderr.isatty(),
    )  # fmt: skip
    decisions = list(se.DECISIONS) if args.compare_decisions else list(se.DECISIONS)[:1]
    with progress:
        task = progress.add_task("stream", total=recording.duration_s)
        report = se.evaluate(
            recording, classifier.scorer(config), classifier.labels, config, args.tolerance,
            decisions,
            keep_trace=bool(args.plot), progress=lambda s: progress.advance(task, s),
        )  # fmt: skip
    print(
        f"streamed {recording.duration_s:.0f} s in {report.stream_seconds:.1f} s "
        f"({report.windows_scored} windows, {args.threads} thread(s))",
        file=sys.stderr,
    )
    print(se.format_report(report, args.sweep))
    title = f"{Path(args.checkpoint).name}: {source}"
    settings = {k: list(v) if isinstance(v, tuple) else v
                for k, v in vars(args).items() if k != "func"}  # fmt: skip

    def plot_trace(path: Path) -> None:
        se.plot_trace(
            path, wave, report.trace_times, report.trace, classifier.labels, found,
            report.events, report.metrics.outcomes, config.threshold,
            seconds=args.plot_seconds, distractors=others, title=title,
        )  # fmt: skip

    writers = {
        "--det": lambda path: se.plot_det(path, report.det, recording.duration_s, title=title),
        "--plot": plot_trace,
        "--json": lambda path: path.write_text(
            json.dumps({"settings": settings, **report.to_dict()}, indent=1) + "\n"
        ),
    }
    for option, write in writers.items():
        if option not in outputs:
            continue
        if option == "--det" and not found:
            print("note: no keyword in the truth, so no DET curve (--det)", file=sys.stderr)
            continue
        try:
            write(outputs[option])
        except OSError as err:
            raise CliError(f"{option} {outputs[option]}: cannot write ({reason(err)})") from None
        print(f"wrote {printable(outputs[option])}", file=sys.stderr)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from speech_gru.analysis.explain import ExplainError, explain_file, plot_explanation, write_json
    from speech_gru.runtime.classifier import ModelLoadError

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
    from speech_gru.runtime.classifier import ModelLoadError

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


def cmd_info(args: argparse.Namespace) -> int:
    from speech_gru.analysis.card import format_card, model_card
    from speech_gru.runtime.classifier import ModelLoadError

    try:
        card = model_card(args.checkpoint)
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    print(json.dumps(card, indent=2) if args.json else format_card(card))
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from speech_gru.cli.record import MIN_SECONDS, RecordError, record

    if args.seconds < MIN_SECONDS:
        raise CliError(f"--seconds {args.seconds:g}: a take must be at least {MIN_SECONDS:g} s")
    written: list[Path] = []

    def saved(path: Path) -> None:
        written.append(path)
        print(printable(path), flush=True)

    try:
        record(args.word, args.out, args.count, seconds=args.seconds, countdown=args.countdown,
               speaker=args.speaker, device=args.device, saved=saved)  # fmt: skip
    except (AudioError, RecordError) as err:
        if written:
            print(f"{len(written)} of {args.count} takes written", file=sys.stderr)
        raise CliError(str(err)) from None
    except KeyboardInterrupt:
        print(f"stopped: {len(written)} of {args.count} takes written", file=sys.stderr)
        return 130
    folder = Path(args.out) / args.word
    print(f"done: {len(written)} takes in {printable(folder)}", file=sys.stderr)
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from speech_gru.train.synth import SynthError, synthesize_dataset

    progress = Progress(
        TextColumn("synthesizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(stderr=True), transient=True,
        disable=not sys.stderr.isatty(),
    )  # fmt: skip
    with progress:
        task = progress.add_task("synth", total=None)
        try:
            summary = synthesize_dataset(
                args.out, args.words, unknown=() if args.no_unknown else args.unknown,
                unknown_per_speaker=args.unknown_per_speaker, speakers=args.speakers,
                takes=args.takes, seed=args.seed, jobs=args.jobs, engines=args.engines,
                noise_dir=args.noise, snr=tuple(args.snr), reverb=args.reverb,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )  # fmt: skip
        except SynthError as err:
            raise CliError(str(err)) from None
    engines = ", ".join(f"{name} ({len(v)} voices)" for name, v in summary.voices.items())
    print(f"{printable(summary.out)}: {len(summary.words)} words x {len(summary.speakers)} "
          f"speakers x {args.takes} takes, and {summary.unknown_clips} _unknown_ clips of "
          f"{len(summary.unknown_words)} other words")  # fmt: skip
    print(f"clips: {summary.created} written, {summary.skipped} already there, "
          f"{summary.failed} failed ({summary.seconds:.1f} s)")  # fmt: skip
    print(f"engines: {engines}; noise: {printable(summary.noise_source)}")
    return 1 if summary.failed else 0


def add_detector_arguments(
    p: argparse.ArgumentParser, names: Sequence[str] | None = None, calibrated: bool = True
) -> None:
    """Detector flags, generated from ``DetectorConfig``'s fields (its defaults are the
    only copy). ``names`` limits them to those fields; with ``calibrated`` the help says
    that a calibrated model's operating point comes before the default."""
    types = {"positive": positive_float, "non_negative": non_negative_float,
             "probability": probability}  # fmt: skip
    for f in DetectorConfig.flags():
        if names is not None and f.name not in names:
            continue
        meta = f.metadata
        default = f"{f.default:g}"
        if calibrated and meta["calibrated"]:
            default = f"the model's calibrated point, else {default}"
        metavar = "P" if meta["kind"] == "probability" else "SECONDS"
        p.add_argument(meta["flag"], dest=f.name, type=types[meta["kind"]], default=None,
                       metavar=metavar, help=f"{meta['help']} (default: {default})")  # fmt: skip


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


def non_negative_int(text: str) -> int:
    if (value := _number(text, int)) < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return int(value)


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


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows every option's default (unless its text already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        shown = "default" in text or action.default in (None, False, argparse.SUPPRESS)
        if shown or not action.option_strings:
            return action.help
        return f"{text} (default: %(default)s)"


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
                   help="labels printed per clip (default 1; CSV: label_2,score_2,... "
                   "columns after end_s)")  # fmt: skip
    p.add_argument("--format", choices=("text", "json", "csv"), default="text",
                   help="text (tab-separated), JSON lines, or CSV with a header "
                   "path,label,score,start_s,end_s[,label_2,score_2,...]")  # fmt: skip
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
    p.add_argument("--streaming", action="store_true",
                   help="forward models: one 20 ms frame per call, the state as explicit "
                   "inputs and outputs")  # fmt: skip
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("stream", help="detect keywords live (microphone, file or stdin)")
    p.add_argument("--checkpoint", help="checkpoint (.ckpt) or exported model (.pt, .onnx)")
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
    p.add_argument("--no-view", dest="view", action="store_false",
                   help="on a terminal too, print events only: no live level meter and "
                   "scores (piped or redirected output never has them)")  # fmt: skip
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser(
        "serve",
        help="a local web page that listens to the browser's microphone",
        description="Serve a page that streams the browser's microphone to the detector "
        "(the same settings and operating point as stream) and shows each keyword's score, "
        "the threshold and the detected keywords live; it also transcribes uploaded files.",
    )
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint (.ckpt) or exported model (.pt, .onnx)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (browsers give the microphone only to https "
                   "pages and to localhost)")  # fmt: skip
    p.add_argument("--port", type=non_negative_int, default=8000, help="port (0: any free one)")
    add_detector_arguments(p)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads per model run")
    p.add_argument("--workers", type=positive_int, default=min(4, os.cpu_count() or 1),
                   help="model runs at once (one per client at a time)")  # fmt: skip
    p.add_argument("--max-clients", type=positive_int, default=64,
                   help="streams served at once; more are refused with a message")  # fmt: skip
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "calibrate",
        help="choose the detection threshold for a target false-alarm rate and store it",
        description="Stream keyword-free audio through the detector, choose the lowest "
        "threshold (for each averaging span; then the lowest of those) whose false alarms "
        "per hour stay within --target-fa, and store it in the checkpoint as "
        "'operating_point'. stream, transcribe and exports then use it; their flags "
        "override it.",
    )
    p.add_argument("--checkpoint", required=True,
                   help="training checkpoint (.ckpt); calibrate it before exporting")  # fmt: skip
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--clips", metavar="DATA_DIR",
                        help="dataset folder (one sub-folder per word): its clips of words "
                        "that are not keywords (and _unknown_, _silence_) and its "
                        "_background_noise_, joined with gaps into one stream")  # fmt: skip
    source.add_argument("--negatives", nargs="+", metavar="FILE_OR_DIR",
                        help="recordings without any keyword, each one streamed on "
                        "its own")  # fmt: skip
    p.add_argument("--split", choices=("training", "validation", "testing", "all"),
                   default="validation", help="split of --clips (default validation)")  # fmt: skip
    p.add_argument("--target-fa", type=positive_float, required=True, metavar="PER_HOUR",
                   help="false alarms per hour allowed on the negative audio")  # fmt: skip
    p.add_argument("--averages", type=non_negative_float, nargs="+", default=[0.3, 0.5, 0.8],
                   metavar="S", help="averaging spans to try, in seconds (default 0.3 0.5 "
                   "0.8); give one to fix it")  # fmt: skip
    p.add_argument("--per-keyword", action="store_true",
                   help="one threshold per keyword, sharing the false-alarm budget")  # fmt: skip
    p.add_argument("--min-threshold", type=probability, default=0.5,
                   help="lowest threshold considered (default 0.5)")  # fmt: skip
    add_detector_arguments(p, ("hop_s", "refractory_s"), calibrated=False)
    p.add_argument("--hit-clips", type=non_negative_int, default=200,
                   help="keyword clips of the --clips split streamed alone to report the hit "
                   "rate (default 200; 0: none)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="order, gaps and noise of --clips")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for the model")
    p.add_argument("--out", help="write the calibrated checkpoint here (default: add the "
                   "point to --checkpoint itself)")  # fmt: skip
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="score a labelled folder (one sub-folder per label)")
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (.ckpt)")
    p.add_argument("folder", help="folder in the canonical test-archive layout")
    p.add_argument("--out", help="folder for the report (default: next to the checkpoint)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="clips per forward pass")
    p.add_argument("--split", choices=("training", "validation", "testing", "all"),
                   default="all", help="score only the clips of this split's speakers, split "
                   "as the checkpoint was trained (speaker hash for version folder, else the "
                   "folder's list files); default all")  # fmt: skip
    p.set_defaults(func=cmd_evaluate)

    from speech_gru.analysis.stream_eval import SPLIT_CHOICES

    p = sub.add_parser(
        "evaluate-stream",
        help="hit rate, false alarms per hour by cause, latency and a DET curve on a long "
        "recording (built from clips, or your own with its truth)",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint (.ckpt) or exported model")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--clips", metavar="DATA_DIR",
                     help="build the recording from a dataset-layout folder's clips")  # fmt: skip
    src.add_argument("--espeak", action="store_true",
                     help="build it from words spoken by espeak-ng voices")  # fmt: skip
    src.add_argument("--recording", metavar="FILE.wav",
                     help="your own recording instead (needs --truth)")  # fmt: skip
    p.add_argument("--truth", metavar="FILE.csv|json",
                   help="what --recording says: rows label,start_s,end_s (seconds); a "
                   "label that is not a keyword of the model (_unknown_, any word) marks "
                   "another word")  # fmt: skip
    p.add_argument("--split", choices=SPLIT_CHOICES, default="testing",
                   help="speakers the clips come from (default testing)")  # fmt: skip
    p.add_argument("--split-salt", default="speech_gru",
                   help="the recipe's data.split_salt (default speech_gru)")  # fmt: skip
    p.add_argument("--noise", metavar="DIR",
                   help="background recordings (default: the folder's _background_noise_, "
                   "else pink noise)")  # fmt: skip
    p.add_argument("--espeak-speakers", type=positive_int, default=8,
                   help="espeak-ng voices (default 8)")  # fmt: skip
    p.add_argument("--minutes", type=positive_float, default=10.0,
                   help="length of the built recording (default 10)")  # fmt: skip
    p.add_argument("--snr", type=float, nargs=2, default=(5.0, 20.0), metavar=("LOW", "HIGH"),
                   help="each word's speech-to-noise ratio, uniform in this range, dB "
                   "(default 5 20; equal values fix it)")  # fmt: skip
    p.add_argument("--gap", type=positive_float, nargs=2, default=(2.5, 6.0),
                   metavar=("MIN", "MAX"),
                   help="seconds between word starts (default 2.5 6)")  # fmt: skip
    p.add_argument("--distractors", type=float, default=0.4,
                   help="share of inserted words that are other words (default 0.4)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the built recording (default 0)")
    add_detector_arguments(p)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for the model")
    p.add_argument("--tolerance", type=non_negative_float, default=1.0,
                   help="seconds after a word's end that an event still hits it "
                   "(default 1)")  # fmt: skip
    p.add_argument("--compare-decisions", action="store_true",
                   help="also replay peak picking and N consecutive windows on the same "
                   "posteriors and compare their DET curves with the detector's")  # fmt: skip
    p.add_argument("--sweep", action="store_true", help="print every point of the DET curve")
    p.add_argument("--det", metavar="FILE.png", help="draw the DET curve(s) here")
    p.add_argument("--json", metavar="FILE.json", help="write every number and setting here")
    p.add_argument("--plot", metavar="FILE.png", help="draw the posteriors over time here")
    p.add_argument("--plot-seconds", type=positive_float, default=60.0,
                   help="seconds --plot shows (default 60)")  # fmt: skip
    p.add_argument("--save-wav", metavar="FILE.wav",
                   help="keep the built recording, and its truth as FILE.json")  # fmt: skip
    p.set_defaults(func=cmd_evaluate_stream)

    p = sub.add_parser("explain", help="plot attention and GRU gate activity over one file")
    p.add_argument("--checkpoint", required=True, help="trained GRU checkpoint (.ckpt)")
    p.add_argument("file", help="audio file (longer than 1 s: its loudest second; a forward "
                   "model: the whole recording)")  # fmt: skip
    p.add_argument("--out", default="explain.png",
                   help="PNG to write, under exactly this name (default explain.png)")  # fmt: skip
    p.add_argument("--json", metavar="FILE.json", help="also write the plotted numbers here")
    p.add_argument("--gradients", action="store_true",
                   help="plot how much of the loss's gradient reaches each frame instead "
                   "(any cell: GRU, LSTM or plain RNN)")  # fmt: skip
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("info", help="print the model card of a checkpoint or an export")
    p.add_argument("--checkpoint", required=True, help="checkpoint (.ckpt) or exported model")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "record",
        help="record takes of a word from the microphone into a dataset folder",
        description="Record --count takes of WORD: each take is checked (refused and taken "
        "again when clipped, too quiet, or cut off), cut to the second around the word and "
        "written as OUT/WORD/SPEAKER_nohash_N.wav, numbered after the speaker's takes "
        "already there. SPEAKER is 8 hex digits of a hash of --speaker (default: your user "
        "name), so a person keeps one id across sessions and one split in training. WORD "
        "_silence_ records one-second clips of the quiet room, _background_noise_ whole "
        "takes of room noise.",
    )
    p.add_argument("word", metavar="WORD",
                   help="the word (folder name), or _silence_ / _background_noise_")  # fmt: skip
    p.add_argument("--out", required=True, help="dataset folder (one sub-folder per word)")
    p.add_argument("--count", type=positive_int, default=10, help="takes to keep")
    p.add_argument("--seconds", type=positive_float, default=2.0,
                   help="length of a take, at least 1 s")  # fmt: skip
    p.add_argument("--countdown", type=non_negative_float, default=1.0,
                   help="seconds between 'get ready' and the prompt (0: none)")  # fmt: skip
    p.add_argument("--speaker", metavar="NAME",
                   help="who speaks; hashed to the 8-hex-digit speaker id (default: your user "
                   "name)")  # fmt: skip
    p.add_argument("--device", help="microphone: device index or part of its name")
    p.set_defaults(func=cmd_record)

    from speech_gru.train import synth

    p = sub.add_parser(
        "synth",
        help="synthesize a dataset of many synthetic speakers saying your words",
        description="Speak each WORD with many synthetic speakers (espeak-ng, flite and "
        "festival voices, each speaker with its own pitch, speed, vocal-tract length and "
        "room) into a folder in the Speech Commands layout, which "
        "recipes/speech_commands/conf/folder.yaml trains on: DIR/WORD/SPEAKER_nohash_N.wav, "
        "other words in DIR/_unknown_, noise in DIR/_background_noise_. DIR must be new, "
        "empty or an earlier synth output, to which missing clips are added.",
    )
    p.add_argument("words", nargs="+", metavar="WORD", help="words to record (letters a-z)")
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    p.add_argument("--speakers", type=positive_int, default=20, metavar="N",
                   help="synthetic speakers")  # fmt: skip
    p.add_argument("--takes", type=positive_int, default=1, metavar="N",
                   help="takes of a word per speaker")  # fmt: skip
    others = p.add_mutually_exclusive_group()
    others.add_argument("--unknown", nargs="+", metavar="WORD",
                        help=f"words for _unknown_ (default: {len(synth.UNKNOWN_WORDS)} "
                        "common words; those too close to a WORD are left out)")  # fmt: skip
    others.add_argument("--no-unknown", action="store_true", help="no _unknown_ clips")
    p.add_argument("--unknown-per-speaker", type=non_negative_int, metavar="N",
                   default=synth.UNKNOWN_PER_SPEAKER,
                   help="other words each speaker says, --takes times each")  # fmt: skip
    p.add_argument("--noise", metavar="DIR",
                   help="recordings to mix under the words and copy into "
                   "_background_noise_, e.g. a dataset's _background_noise_ or _silence_ "
                   "(default: generated white, pink and brown noise)")  # fmt: skip
    snr_low, snr_high = synth.SNR_RANGE
    p.add_argument("--snr", type=float, nargs=2, default=(snr_low, snr_high),
                   metavar=("LOW", "HIGH"), help="speech-to-noise ratio of each clip, uniform "
                   f"in this range, dB (default {snr_low:g} {snr_high:g})")  # fmt: skip
    p.add_argument("--reverb", type=non_negative_float, default=synth.REVERB_SHARE,
                   metavar="SHARE", help="share of speakers in a reverberant room")  # fmt: skip
    p.add_argument("--engines", nargs="+", choices=list(synth.ENGINES),
                   help="engines to use (default: every one installed)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="random seed: the same seed and voices give the same files")  # fmt: skip
    p.add_argument("--jobs", type=positive_int, default=2, metavar="N",
                   help="clips synthesized at once")  # fmt: skip
    p.set_defaults(func=cmd_synth)
    for command in sub.choices.values():
        command.formatter_class = DefaultsFormatter
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
