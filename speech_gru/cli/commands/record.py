"""``speech-gru record``: record takes of your own word from the microphone, checked and
named (``speech_gru.cli.record``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speech_gru.cli.options import CliError, non_negative_float, positive_float, positive_int
from speech_gru.core.audio import AudioError, printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "record",
        help="record takes of a word from the microphone into a dataset folder",
        description="Record --count takes of WORD: each take is checked (refused and taken "
        "again when clipped, too quiet, or cut off), cut to the second around the word and "
        "written as OUT/WORD/SPEAKER_nohash_N.wav, numbered after the speaker's takes "
        "already there. SPEAKER is 8 hex digits of a hash of --speaker (default: your user "
        "name), so a person keeps one id across sessions and one split in training. WORD "
        "_silence_ records one-second clips of the quiet room, _background_noise_ whole "
        'takes of room noise. WORD may be a phrase in quotes ("hey computer": letters a-z, '
        "up to 5 words): its folder is OUT/hey_computer and each clip keeps the whole phrase "
        "(1 to 2.5 s).",
    )
    p.add_argument(
        "word",
        metavar="WORD",
        help="the word (folder name), a phrase, or _silence_ / _background_noise_",
    )
    p.add_argument("--out", required=True, help="dataset folder (one sub-folder per word)")
    p.add_argument("--count", type=positive_int, default=10, help="takes to keep")
    p.add_argument(
        "--seconds",
        type=positive_float,
        help="length of a take, at least 1 s (default: 2 s for a word, 3 s for a phrase)",
    )
    p.add_argument(
        "--countdown",
        type=non_negative_float,
        default=1.0,
        help="seconds between 'get ready' and the prompt (0: none)",
    )
    p.add_argument(
        "--speaker",
        metavar="NAME",
        help="who speaks; hashed to the 8-hex-digit speaker id (default: your user name)",
    )
    p.add_argument("--device", help="microphone: device index or part of its name")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from speech_gru.cli.record import MIN_SECONDS, RecordError, check_word, record
    from speech_gru.train.phrases import is_phrase, phrase_label

    if args.seconds is not None and args.seconds < MIN_SECONDS:
        raise CliError(f"--seconds {args.seconds:g}: a take must be at least {MIN_SECONDS:g} s")
    written: list[Path] = []

    def saved(path: Path) -> None:
        written.append(path)
        print(printable(path), flush=True)

    try:
        record(
            args.word,
            args.out,
            args.count,
            seconds=args.seconds,
            countdown=args.countdown,
            speaker=args.speaker,
            device=args.device,
            saved=saved,
        )
    except (AudioError, RecordError) as err:
        if written:
            print(f"{len(written)} of {args.count} takes written", file=sys.stderr)
        raise CliError(str(err)) from None
    except KeyboardInterrupt:
        print(f"stopped: {len(written)} of {args.count} takes written", file=sys.stderr)
        return 130
    word = check_word(args.word)  # checked by record already: the folder it wrote
    folder = Path(args.out) / (phrase_label(word) if is_phrase(word) else word)
    print(f"done: {len(written)} takes in {printable(folder)}", file=sys.stderr)
    return 0
