"""``speech-gru evaluate-stream``: hit rate, false alarms per hour and a DET curve on a long
recording, built from clips or given with its truth (``speech_gru.analysis.streaming``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from speech_gru.cli.options import (
    CliError,
    add_detector_arguments,
    add_model_argument,
    check_held_out,
    check_output,
    load_runtime,
    non_negative_float,
    positive_float,
    positive_int,
    reason,
)
from speech_gru.core.audio import AudioError, printable
from speech_gru.runtime.factory import FILE_BATCH_WINDOWS

if TYPE_CHECKING:
    from speech_gru.train.corpus import SplitRule


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from speech_gru.analysis.streaming.recordings import SPLIT_CHOICES

    p = sub.add_parser(
        "evaluate-stream",
        help="hit rate, false alarms per hour by cause, latency and a DET curve on a long "
        "recording (built from clips, or your own with its truth)",
    )
    add_model_argument(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--clips",
        metavar="DATA_DIR",
        nargs="+",
        help="build the recording from dataset-layout folders' clips: a folder named "
        "after a keyword of the model (files in nested folders included) gives keyword "
        "clips, every other folder other words; clips over a second (a recorded phrase) "
        "are cut to their speech with a little room",
    )
    src.add_argument(
        "--espeak", action="store_true", help="build it from words spoken by espeak-ng voices"
    )
    src.add_argument(
        "--recording", metavar="FILE.wav", help="your own recording instead (needs --truth)"
    )
    p.add_argument(
        "--truth",
        metavar="FILE.csv|json",
        help="what --recording says: rows label,start_s,end_s (seconds); a "
        "label that is not a keyword of the model (_unknown_, any word) marks "
        "another word",
    )
    p.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default="testing",
        help="speakers the clips come from, by the recipe's speaker hash (a file name "
        "without _nohash_ is its own speaker); all: every clip (default testing)",
    )
    p.add_argument(
        "--split-salt",
        default=None,
        help="the recipe's data.split_salt (default: the one the checkpoint was trained "
        "with, its cross-validation fold included; speech_gru for an export)",
    )
    p.add_argument(
        "--noise",
        metavar="DIR",
        help="background recordings (default: the first --clips folder's "
        "_background_noise_ that has any, else their _silence_ clips, else pink noise)",
    )
    p.add_argument(
        "--espeak-speakers", type=positive_int, default=8, help="espeak-ng voices (default 8)"
    )
    p.add_argument(
        "--minutes",
        type=positive_float,
        default=10.0,
        help="length of the built recording (default 10)",
    )
    p.add_argument(
        "--snr",
        type=float,
        nargs=2,
        default=(5.0, 20.0),
        metavar=("LOW", "HIGH"),
        help="each word's speech-to-noise ratio, uniform in this range, dB "
        "(default 5 20; equal values fix it)",
    )
    p.add_argument(
        "--gap",
        type=positive_float,
        nargs=2,
        default=(2.5, 6.0),
        metavar=("MIN", "MAX"),
        help="seconds between word starts (default 2.5 6); a clip over a second adds "
        "its length beyond one",
    )
    p.add_argument(
        "--distractors",
        type=float,
        default=0.4,
        help="share of inserted words that are other words (default 0.4)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the built recording (default 0)")
    add_detector_arguments(p)
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for the model")
    p.add_argument(
        "--tolerance",
        type=non_negative_float,
        default=1.0,
        help="seconds after a word's end that an event still hits it (default 1)",
    )
    p.add_argument(
        "--compare-decisions",
        action="store_true",
        help="also replay peak picking and N consecutive windows on the same "
        "posteriors and compare their DET curves with the detector's",
    )
    p.add_argument("--sweep", action="store_true", help="print every point of the DET curve")
    p.add_argument("--det", metavar="FILE.png", help="draw the DET curve(s) here")
    p.add_argument("--json", metavar="FILE.json", help="write every number and setting here")
    p.add_argument("--plot", metavar="FILE.png", help="draw the posteriors over time here")
    p.add_argument(
        "--plot-seconds",
        type=positive_float,
        default=60.0,
        help="seconds --plot shows (default 60)",
    )
    p.add_argument(
        "--save-wav",
        metavar="FILE.wav",
        help="keep the built recording, and its truth as FILE.json",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from speech_gru.analysis.streaming import report as stream_report
    from speech_gru.analysis.streaming.decisions import DECISIONS
    from speech_gru.analysis.streaming.recordings import (
        Recording,
        build_recording,
        espeak_pool,
        folder_pool,
        reuse_note,
    )
    from speech_gru.analysis.streaming.truth import TruthError, read_truth, split_truth, write_truth
    from speech_gru.core.audio import SAMPLE_RATE, load_audio, write_wav
    from speech_gru.core.labels import is_keyword

    if (args.recording is None) != (args.truth is None):
        raise CliError("--recording FILE.wav and --truth FILE.csv|json go together")
    low, high = args.snr
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise CliError(f"--snr {low:g} {high:g}: needs finite LOW <= HIGH (dB)")
    if not 0 <= args.distractors < 1:
        raise CliError(f"--distractors {args.distractors:g}: must be in [0, 1)")
    for folder in args.clips or []:
        if not Path(folder).is_dir():
            raise CliError(f"{folder}: dataset folder not found")
    inputs = [x for x in (args.checkpoint, *(args.clips or []), args.recording, args.truth) if x]
    options = [
        ("--det", args.det),
        ("--json", args.json),
        ("--plot", args.plot),
        ("--save-wav", args.save_wav),
    ]
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
            truth = read_truth(args.truth, wave.size / SAMPLE_RATE)
    except (AudioError, TruthError) as err:
        raise CliError(str(err)) from None
    runtime = load_runtime(args, FILE_BATCH_WINDOWS)
    classifier, config = runtime.classifier, runtime.config
    keywords = [label for label in classifier.labels if is_keyword(label)]
    try:
        if args.recording:
            found, others = split_truth(truth, keywords)
            source = f"{args.recording} (truth {args.truth})"
        else:
            if args.espeak:
                pool = espeak_pool(keywords, args.espeak_speakers, args.seed, None, args.noise)
            else:
                hparams = classifier.metadata.get("datamodule_hyper_parameters")
                check_held_out(printable(str(classifier.source)), hparams, args.split)
                rule = trained_split(classifier.metadata, args.split_salt)
                pool = folder_pool(args.clips, keywords, args.split, None, args.noise, rule=rule)
            others = []
            wave, found = build_recording(
                pool,
                args.minutes,
                args.seed,
                (low, high),
                gap_s=tuple(args.gap),
                distractor_share=args.distractors,
                distractors_out=others,
            )
            source = "; ".join(x for x in (pool.description, reuse_note(found)) if x)
    except (FileNotFoundError, ValueError, RuntimeError, AudioError) as err:
        raise CliError(str(err)) from None
    recording = Recording(wave, found, others, source)
    print(f"source: {printable(source)}", file=sys.stderr)
    if args.save_wav:
        try:
            write_wav(outputs["--save-wav"], wave)
            write_truth(sidecar, found, others, recording.duration_s, source)
        except AudioError as err:
            raise CliError(str(err)) from None
        except OSError as err:
            raise CliError(f"--save-wav {sidecar}: cannot write ({reason(err)})") from None
        print(f"wrote {printable(args.save_wav)} and its truth (.json)", file=sys.stderr)

    progress = Progress(
        TextColumn("streaming"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    decisions = list(DECISIONS) if args.compare_decisions else list(DECISIONS)[:1]
    with progress:
        task = progress.add_task("stream", total=recording.duration_s)
        report = stream_report.evaluate(
            recording,
            classifier.scorer(config),
            classifier.labels,
            config,
            args.tolerance,
            decisions,
            keep_trace=bool(args.plot),
            progress=lambda s: progress.advance(task, s),
        )
    print(
        f"streamed {recording.duration_s:.0f} s in {report.stream_seconds:.1f} s "
        f"({report.windows_scored} windows, {args.threads} thread(s))",
        file=sys.stderr,
    )
    print(stream_report.format_report(report, args.sweep))
    title = f"{Path(args.checkpoint).name}: {source}"
    settings = {
        k: list(v) if isinstance(v, tuple) else v for k, v in vars(args).items() if k != "func"
    }

    def plot_trace(path: Path) -> None:
        stream_report.plot_trace(
            path,
            wave,
            report.trace_times,
            report.trace,
            classifier.labels,
            found,
            report.events,
            report.metrics.outcomes,
            config.threshold,
            seconds=args.plot_seconds,
            distractors=others,
            title=title,
        )

    writers = {
        "--det": lambda path: stream_report.plot_det(
            path, report.det, recording.duration_s, title=title
        ),
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


def trained_split(metadata: dict, salt: str | None) -> SplitRule:
    """The speaker split a checkpoint was trained with (a fold's, for a cross-validation
    run), so ``--split testing`` gives voices the model never heard; an export records
    none and gets the recipe's default. ``salt`` (``--split-salt``) replaces the recorded one.
    """
    from speech_gru.train.corpus import SplitRule

    rule = SplitRule.from_hparams(metadata.get("datamodule_hyper_parameters"))
    return rule if salt is None else dataclasses.replace(rule, split_salt=salt)
