"""``speech-gru``: the command line. Argument parsing and printing only.

Sub-commands:
    transcribe   label audio files or folders
    evaluate     score a labelled folder (canonical test-archive layout)
"""

from __future__ import annotations

import argparse
import json
import sys
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
