"""``speech-gru synth``: write a dataset of synthetic voices saying your words, and other
words (``speech_gru.train.synth``)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from speech_gru.cli.options import CliError, non_negative_float, non_negative_int, positive_int
from speech_gru.core.audio import printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from speech_gru.train import synth

    p = sub.add_parser(
        "synth",
        help="synthesize a dataset of many synthetic speakers saying your words",
        description="Speak each WORD with many synthetic speakers (espeak-ng, flite and "
        "festival voices, each speaker with its own pitch, speed, vocal-tract length and "
        "room) into a folder in the Speech Commands layout, which "
        "recipes/speech_commands/conf/folder.yaml trains on: DIR/WORD/SPEAKER_nohash_N.wav, "
        "other words in DIR/_unknown_, noise in DIR/_background_noise_. A WORD may be a "
        'phrase, words separated by spaces ("hey computer"): its folder joins them with _ '
        "(DIR/hey_computer) and its clips are as long as the phrase needs (1-2.5 s); "
        "DIR/synth.json records every clip's spoken duration. DIR must be new, "
        "empty or an earlier synth output, to which missing clips are added.",
    )
    p.add_argument(
        "words",
        nargs="+",
        metavar="WORD",
        help="words to record (letters a-z), or phrases of up to 5 words (quoted)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    p.add_argument(
        "--speakers", type=positive_int, default=20, metavar="N", help="synthetic speakers"
    )
    p.add_argument(
        "--takes", type=positive_int, default=1, metavar="N", help="takes of a word per speaker"
    )
    others = p.add_mutually_exclusive_group()
    others.add_argument(
        "--unknown",
        nargs="+",
        metavar="WORD",
        help=f"words or phrases for _unknown_ (default: {len(synth.UNKNOWN_WORDS)} "
        "common words; those too close to a WORD are left out)",
    )
    others.add_argument("--no-unknown", action="store_true", help="no _unknown_ clips")
    p.add_argument(
        "--unknown-per-speaker",
        type=non_negative_int,
        metavar="N",
        default=synth.UNKNOWN_PER_SPEAKER,
        help="other words each speaker says, --takes times each",
    )
    p.add_argument(
        "--noise",
        metavar="DIR",
        help="recordings to mix under the words and copy into "
        "_background_noise_, e.g. a dataset's _background_noise_ or _silence_ "
        "(default: generated white, pink and brown noise)",
    )
    snr_low, snr_high = synth.SNR_RANGE
    p.add_argument(
        "--snr",
        type=float,
        nargs=2,
        default=(snr_low, snr_high),
        metavar=("LOW", "HIGH"),
        help="speech-to-noise ratio of each clip, uniform "
        f"in this range, dB (default {snr_low:g} {snr_high:g})",
    )
    p.add_argument(
        "--reverb",
        type=non_negative_float,
        default=synth.REVERB_SHARE,
        metavar="SHARE",
        help="share of speakers in a reverberant room",
    )
    p.add_argument(
        "--engines",
        nargs="+",
        choices=list(synth.ENGINES),
        help="engines to use (default: every one installed but kokoro, the neural voices "
        "of the [voices] extra, used only when named)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed: the same seed and voices give the same files",
    )
    p.add_argument(
        "--jobs", type=positive_int, default=2, metavar="N", help="clips synthesized at once"
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from speech_gru.train.synth import ENGINES, SynthError, synthesize_dataset

    progress = Progress(
        TextColumn("synthesizing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task("synth", total=None)
        try:
            summary = synthesize_dataset(
                args.out,
                args.words,
                unknown=() if args.no_unknown else args.unknown,
                unknown_per_speaker=args.unknown_per_speaker,
                speakers=args.speakers,
                takes=args.takes,
                seed=args.seed,
                jobs=args.jobs,
                engines=args.engines,
                noise_dir=args.noise,
                snr=tuple(args.snr),
                reverb=args.reverb,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except SynthError as err:
            raise CliError(str(err)) from None
    engines = ", ".join(f"{name} ({len(v)} voices)" for name, v in summary.voices.items())
    print(
        f"{printable(summary.out)}: {len(summary.words)} words x {len(summary.speakers)} "
        f"speakers x {args.takes} takes, and {summary.unknown_clips} _unknown_ clips of "
        f"{len(summary.unknown_words)} other words"
    )
    print(
        f"clips: {summary.created} written, {summary.skipped} already there, "
        f"{summary.failed} failed ({summary.seconds:.1f} s)"
    )
    print(f"engines: {engines}; noise: {printable(summary.noise_source)}")
    if args.engines is None:
        kokoro = ENGINES["kokoro"]
        extra = "" if kokoro.path() else f"; {kokoro.install_command()}"
        print(f"neural voices too: --engines {' '.join(summary.voices)} kokoro{extra}")
    return 1 if summary.failed else 0
