"""``speech-gru evaluate``: score a labelled folder (canonical test-archive layout)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from speech_gru.cli.options import (
    SPLITS,
    CliError,
    add_model_argument,
    check_folder,
    check_held_out,
    fail,
    load_model,
    positive_int,
    reason,
)
from speech_gru.core.audio import printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("evaluate", help="score a labelled folder (one sub-folder per label)")
    add_model_argument(p)
    p.add_argument("folder", help="folder in the canonical test-archive layout")
    p.add_argument("--out", help="folder for the report (default: next to the checkpoint)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="clips per forward pass")
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="all",
        help="score only the clips of this split's speakers, split "
        "as the checkpoint was trained (speaker hash for version folder, else the "
        "folder's list files); default all",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speech_gru.analysis.evaluate import evaluate_folder, write_report
    from speech_gru.runtime.bundled import is_bundled

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
        check_held_out(printable(str(classifier.source)), datamodule, args.split)
    try:
        report = evaluate_folder(
            classifier, root, args.batch_size, sys.stderr.isatty(), args.split, datamodule
        )
    except FileNotFoundError as err:
        raise CliError(str(err)) from None
    for message in report.errors:
        fail(message)
    # Next to the model, unless it is a bundled one (inside the installed package): here.
    here = Path() if is_bundled(classifier.source) else classifier.source.parent
    out_dir = Path(args.out) if args.out else here
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
