"""``speech-gru noise-robustness``: clip accuracy of a model as background noise rises
(``speech_gru.analysis.noise_robustness``)."""

from __future__ import annotations

import argparse
import json

from speech_gru.cli.options import (
    CliError,
    add_model_argument,
    check_held_out,
    check_output,
    load_model,
    positive_int,
    reason,
)
from speech_gru.core.audio import AudioError, printable


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "noise-robustness",
        help="clip accuracy as background noise rises: the ceiling of live detection",
        description="Mix each held-out clip (the split's speakers, split as the checkpoint "
        "was trained) with a random piece of the folder's own background noise, its speech "
        "SNR dB above the noise (as evaluate-stream inserts words), and classify it alone. "
        "A keyword the model gets wrong here, a stream at that SNR misses at any threshold.",
    )
    add_model_argument(p)
    p.add_argument("--data", required=True, help="dataset-layout folder")
    p.add_argument(
        "--split",
        choices=("training", "validation", "testing", "all"),
        default="testing",
        help="speakers scored, split as the checkpoint was trained (default testing; all: "
        "every clip)",
    )
    p.add_argument(
        "--snr",
        type=float,
        nargs="+",
        default=[20.0, 10.0, 5.0],
        help="SNRs in dB (default 20 10 5); clean clips are always scored",
    )
    p.add_argument("--seed", type=int, default=0, help="noise pieces (default 0)")
    p.add_argument("--threads", type=positive_int, default=1, help="CPU threads for the model")
    p.add_argument("--json", metavar="FILE.json", help="write the figures here")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from speech_gru.analysis.noise_robustness import NoiseRobustnessError, noise_robustness

    inputs = [args.checkpoint, args.data]
    out = check_output(args.json, "--json", inputs) if args.json else None
    torch.set_num_threads(args.threads)
    classifier = load_model(args)
    hparams = classifier.metadata.get("datamodule_hyper_parameters")
    check_held_out(printable(str(classifier.source)), hparams, args.split)
    try:
        result = noise_robustness(classifier, args.data, args.split, args.snr, args.seed)
    except (NoiseRobustnessError, AudioError) as err:
        raise CliError(str(err)) from None
    for line in result.lines():
        print(printable(line))
    if out is not None:
        try:
            out.write_text(json.dumps({"checkpoint": args.checkpoint, "rows": result.rows}))
        except OSError as err:
            raise CliError(f"--json {args.json}: cannot write ({reason(err)})") from None
    return 0
