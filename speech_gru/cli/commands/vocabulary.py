"""``speech-gru vocabulary``: a new vocabulary cut from a test archive's ``_unknown_`` words
(``speech_gru.train.vocabulary``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speech_gru.cli.options import CliError
from speech_gru.core.audio import printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from speech_gru.train.vocabulary import DIGITS

    p = sub.add_parser(
        "vocabulary",
        help="a dataset of new keywords cut from a test archive's _unknown_ words",
        description="Copy the clips of --words from SOURCE/_unknown_ (named "
        "WORD_SPEAKER_nohash_N.wav, as in the Speech Commands test archive) into one "
        "folder per word in OUT, the other words into OUT/_unknown_ and SOURCE/_silence_ "
        "as it is, keeping every file name (and so every speaker id). OUT trains "
        "(--data.labels zero,one,...,_unknown_,_silence_) and scores (speech-gru "
        "evaluate) like any folder in the layout.",
    )
    p.add_argument(
        "source", type=Path, metavar="SOURCE", help="a folder with _unknown_ (and _silence_)"
    )
    p.add_argument("out", type=Path, metavar="OUT", help="the new folder (must not exist)")
    p.add_argument(
        "--words",
        nargs="+",
        metavar="WORD",
        default=list(DIGITS),
        help=f"the new keywords (default: the digits, {' '.join(DIGITS)})",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speech_gru.train.vocabulary import build

    if args.out.exists():
        raise CliError(f"{args.out}: already exists; choose a new folder")
    try:
        counts = build(args.source, args.out, args.words)
    except OSError as err:  # FileNotFoundError: no _unknown_ folder
        raise CliError(str(err)) from None
    missing = [w for w in args.words if not counts[w]]
    if missing:
        print(
            f"warning: no clips of {', '.join(missing)} in {printable(args.source)}",
            file=sys.stderr,
        )
    print(", ".join(f"{printable(label)} {n}" for label, n in sorted(counts.items())))
    return 0
