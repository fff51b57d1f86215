"""``speech-gru calibrate``: choose the detector's operating point for a target false-alarm
rate and store it in the checkpoint."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console

from speech_gru.cli.options import (
    SPLITS,
    CliError,
    add_detector_arguments,
    add_model_argument,
    check_held_out,
    check_output,
    detector_config,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    probability,
    reason,
)
from speech_gru.core.audio import AudioError, printable
from speech_gru.runtime.checkpoint import duration_text
from speech_gru.runtime.factory import LIVE_BATCH_WINDOWS


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "calibrate",
        help="choose the detection threshold for a target false-alarm rate and store it",
        description="Stream keyword-free audio through the detector, choose the lowest "
        "threshold (for each averaging span; then the lowest of those) whose false alarms "
        "per hour stay within --target-fa, and store it in the checkpoint as "
        "'operating_point'. stream, transcribe and exports then use it; their flags "
        "override it.",
    )
    add_model_argument(
        p, exports=False, help="training checkpoint (.ckpt); calibrate it before exporting"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--clips",
        metavar="DATA_DIR",
        help="dataset folder (one sub-folder per word): its clips of words "
        "that are not keywords (and _unknown_, _silence_) and its "
        "_background_noise_, joined with gaps into one stream",
    )
    source.add_argument(
        "--negatives",
        nargs="+",
        metavar="FILE_OR_DIR",
        help="recordings without any keyword, each one streamed on its own (at least one "
        "as long as the detector's window, 1 s)",
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="validation",
        help="split of --clips (default validation)",
    )
    p.add_argument(
        "--target-fa",
        type=positive_float,
        required=True,
        metavar="PER_HOUR",
        help="false alarms per hour allowed on the negative audio",
    )
    p.add_argument(
        "--averages",
        type=non_negative_float,
        nargs="+",
        default=[0.3, 0.5, 0.8],
        metavar="S",
        help="averaging spans to try, in seconds (default 0.3 0.5 0.8); give one to fix it",
    )
    p.add_argument(
        "--per-keyword",
        action="store_true",
        help="one threshold per keyword, sharing the false-alarm budget",
    )
    p.add_argument(
        "--min-threshold",
        type=probability,
        default=0.5,
        help="lowest threshold considered (default 0.5)",
    )
    add_detector_arguments(p, ("hop_s", "refractory_s"), calibrated=False)
    p.add_argument(
        "--hit-clips",
        type=non_negative_int,
        default=200,
        help="keyword clips of the --clips split streamed alone to report the hit "
        "rate (default 200; 0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="order, gaps and noise of --clips")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for the model")
    p.add_argument(
        "--out",
        help="write the calibrated checkpoint here (default: add the point to --checkpoint "
        "itself). The file replaced is kept as FILE.bak (best.ckpt -> best.ckpt.bak, "
        "replacing an earlier .bak); nothing is written if --checkpoint changed on disk "
        "while calibrating",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import Progress, TextColumn, TimeElapsedColumn

    from speech_gru.analysis.calibrate import CalibrationError, calibrate, save_point
    from speech_gru.analysis.negatives import from_dataset, from_files
    from speech_gru.analysis.streaming.scores import record
    from speech_gru.runtime.bundled import is_bundled
    from speech_gru.runtime.checkpoint import (
        ChangedError,
        ModelLoadError,
        checkpoint_model,
        is_training_checkpoint,
        model_kind,
        read_checkpoint_stamped,
    )
    from speech_gru.runtime.classifier import checkpoint_classifier

    source_path = Path(args.checkpoint)
    if is_bundled(source_path) and not args.out:
        raise CliError(
            f"{args.checkpoint}: a bundled model is part of the installed package and is "
            "not changed in place; give --out FILE for the calibrated copy"
        )
    inputs = [*(args.negatives or []), *([args.clips] if args.clips else [])]
    out = check_output(args.out, "--out", inputs) if args.out else source_path
    try:
        kind = model_kind(source_path)
        if kind != "checkpoint":
            raise CliError(
                f"{args.checkpoint}: an exported ({kind}) model cannot be calibrated; "
                "calibrate the training checkpoint, then export it"
            )
        # The stamp of the bytes read: the file is written back only if it still holds them.
        checkpoint, stamp = read_checkpoint_stamped(source_path)
        model, labels = checkpoint_model(source_path, checkpoint)
    except ModelLoadError as err:
        raise CliError(str(err)) from None
    if out.exists() and not os.path.samefile(out, source_path) and not is_training_checkpoint(out):
        raise CliError(f"--out {args.out}: exists and is not a training checkpoint")
    torch.set_num_threads(args.threads)
    classifier = checkpoint_classifier(model, labels, source_path)

    # Not from the model's operating point: calibration chooses a new one (and ``record``
    # scores in batches of its own).
    config = detector_config(args, LIVE_BATCH_WINDOWS, classifier, calibrated=False)
    if args.clips:
        hparams = checkpoint.get("datamodule_hyper_parameters")
        check_held_out(printable(str(source_path)), hparams, args.split)
    try:
        if args.clips:
            audio = from_dataset(
                args.clips,
                labels,
                args.split,
                checkpoint.get("datamodule_hyper_parameters"),
                args.seed,
                args.hit_clips,
                classifier.window,
            )
        else:
            audio = from_files(args.negatives)
        progress = Progress(
            TextColumn("{task.description}"),
            TextColumn("{task.fields[audio]:.0f} s of audio"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not sys.stderr.isatty(),
        )
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
        print(
            f"warning: {len(skipped)} clips could not be read and were left out (first: {first})",
            file=sys.stderr,
        )
    try:
        result = calibrate(
            negatives,
            labels,
            args.target_fa,
            args.averages,
            config,
            args.per_keyword,
            args.min_threshold,
            positives,
        )
    except CalibrationError as err:
        where = "--negatives" if args.negatives else "--clips"
        raise CliError(f"{where}: {err}") from None
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
        print(
            f"{c.average_s:>6g} s  {threshold:>11}  {c.false_alarms:>12}  {rate:>8.3g}  "
            f"{hit:>8}{mark}"
        )
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
        backup = save_point(checkpoint, point, out, source_path, stamp)
    except ChangedError as err:
        raise CliError(str(err)) from None
    except OSError as err:
        raise CliError(f"{out}: cannot write ({reason(err)})") from None
    if args.out and not os.path.samefile(out, source_path):
        print(f"wrote {printable(out)}: {printable(args.checkpoint)} with its operating point")
    else:
        print(
            f"wrote the operating point into {printable(out)} (only the key operating_point "
            "was added; weights and training state are unchanged)"
        )
    if backup is not None:
        print(f"the previous file is kept as {printable(backup)}")
    return 0
