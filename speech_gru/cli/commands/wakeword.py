"""``speech-gru wakeword``: a wake-phrase detector from its spelling
(``speech_gru.cli.wakeword``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from speech_gru.cli.options import CliError, positive_float, positive_int, probability
from speech_gru.cli.wakeword import Plan

MIN_SPEAKERS = 30


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from speech_gru.train.synth_voices import ENGINES

    p = sub.add_parser(
        "wakeword",
        help="make a detector for your own wake phrase from its spelling",
        description="Synthetic voices say PHRASE and words and phrases that sound like it; "
        "a model trained from the bundled model's encoder learns to tell them apart, is "
        "calibrated for a false-alarm rate and written to DIR as model.ckpt, model.onnx and "
        "its card (model.md). Several phrases make one model that hears each. A re-run with "
        "the same --out resumes.",
    )
    p.add_argument("phrases", nargs="+", metavar="PHRASE", help='e.g. "hey computer"')
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write")
    p.add_argument(
        "--minutes",
        type=positive_float,
        default=Plan.minutes,
        help="time budget of the whole run; training gets what synthesis leaves",
    )
    p.add_argument(
        "--speakers", type=positive_int, default=Plan.speakers, help="synthetic speakers"
    )
    p.add_argument(
        "--takes", type=positive_int, default=Plan.takes, help="takes of each phrase per speaker"
    )
    p.add_argument(
        "--negatives-per-speaker",
        type=positive_int,
        default=Plan.negatives_per_speaker,
        metavar="N",
        help="other words and phrases each synthetic speaker says",
    )
    p.add_argument(
        "--recordings",
        type=Path,
        nargs="*",
        default=[],
        metavar="DIR",
        help="your own takes: folders written by speech-gru record",
    )
    p.add_argument(
        "--negatives",
        type=Path,
        nargs="*",
        default=[],
        metavar="FILE_OR_DIR",
        help="real speech without the phrase (one window of each file, as _unknown_)",
    )
    p.add_argument(
        "--noise", type=Path, metavar="DIR", help="background recordings (default: generated noise)"
    )
    p.add_argument(
        "--target-fa",
        type=positive_float,
        default=Plan.target_fa,
        metavar="PER_HOUR",
        help="false alarms per hour allowed on the keyword-free audio "
        "(sensitivity: a lower rate is a less sensitive detector)",
    )
    p.add_argument(
        "--init-from",
        default=Plan.init_from,
        metavar="MODEL",
        help="checkpoint (or bundled model) whose encoder training starts from",
    )
    p.add_argument(
        "--scratch",
        action="store_true",
        help="random starting weights in --init-from's architecture and features, not its "
        "encoder (to measure what the encoder brings)",
    )
    p.add_argument(
        "--mid-sentence",
        type=probability,
        default=Plan.mid_sentence,
        metavar="SHARE",
        help="share of the phrase's training takes heard mid-sentence: the end of another "
        "word just before, the start of another just after",
    )
    p.add_argument(
        "--epochs", type=positive_int, help="training epochs (default: as the budget allows)"
    )
    p.add_argument("--seed", type=int, default=Plan.seed)
    p.add_argument(
        "--jobs", type=positive_int, help="clips synthesized at once (default: CPU cores)"
    )
    p.add_argument(
        "--engines",
        nargs="+",
        choices=list(ENGINES),
        help="speech synthesizers (default: synth's; add kokoro for neural voices)",
    )
    p.set_defaults(func=run)  # fmt: skip
    return p


def run(args: argparse.Namespace) -> int:
    from speech_gru.cli.wakeword import default_jobs, make
    from speech_gru.train.phrases import PhraseError, check_phrase, phrase_label

    try:
        phrases = [check_phrase(phrase, "phrase") for phrase in args.phrases]
    except PhraseError as err:
        raise CliError(str(err)) from None
    labels = [phrase_label(phrase) for phrase in phrases]
    if len(set(labels)) != len(labels):
        raise CliError(f"the same phrase twice: {' / '.join(args.phrases)}")
    if args.speakers < MIN_SPEAKERS:
        raise CliError(
            f"--speakers {args.speakers}: at least {MIN_SPEAKERS} (a tenth of them, by a hash "
            "of their names, validate and another tenth test)"
        )
    plan = Plan(
        phrases=phrases,
        labels=labels,
        out=args.out,
        speakers=args.speakers,
        takes=args.takes,
        negatives_per_speaker=args.negatives_per_speaker,
        minutes=args.minutes,
        target_fa=args.target_fa,
        recordings=list(args.recordings),
        negatives=list(args.negatives),
        noise=args.noise,
        init_from=args.init_from,
        scratch=args.scratch,
        mid_sentence=args.mid_sentence,
        epochs=args.epochs,
        seed=args.seed,
        jobs=args.jobs or default_jobs(),
        engines=args.engines,
        command=shlex.join(["speech-gru", *sys.argv[1:]]) if sys.argv[1:2] == ["wakeword"] else "",
    )
    make(plan)
    return 0
