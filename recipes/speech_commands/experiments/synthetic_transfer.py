"""How well synthetic voices carry over to real speech: three figures on real speakers.

Given a folder in the layout of the Speech Commands v0.02 test archive (keyword folders,
``_unknown_`` with ``WORD_SPEAKER_nohash_N.wav`` files, the ten digits among them, and
``_silence_``), this runs, each step skipped when its output is already there:

(c) the 12-class recipe trained on ``speech-gru synth`` voices only, scored on every real
    clip of the folder;
(a) a ten-digit vocabulary (plus ``_unknown_``, ``_silence_``) trained on synthetic voices
    only, scored on every real digit clip (``speech-gru vocabulary``);
(b) the same vocabulary trained on synthetic voices plus the real clips of other speakers,
    starting from a 12-class recipe model (``--model.init_from``), by speaker-disjoint
    3-fold cross-validation: fold i's digit model and its 12-class starting point never
    heard fold i's speakers, and every real clip is scored once::

    python recipes/speech_commands/experiments/synthetic_transfer.py data/test_v0.02 \\
        --out runs/transfer

``--init`` names a finished ``crossval.py --folds 3`` run of the 12-class recipe on the
same folder (``RUN/fold_I/checkpoints/best.ckpt``); without it, that run is made too.
The figures are printed and written to ``OUT/transfer.json``. Real noise is not used for
the synthetic sets: the folder's ``_silence_`` clips are test clips here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

RECIPE = Path(__file__).resolve().parents[1]
ROOT = RECIPE.parents[1]
CONF = RECIPE / "conf" / "folder.yaml"
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_LABELS = ",".join([*DIGITS, "_unknown_", "_silence_"])
FOLDS = 3


def run(*command: str | Path) -> None:
    print("+", " ".join(map(str, command)), flush=True)
    subprocess.run([str(c) for c in command], check=True)


def speech_gru(*args: str | Path) -> None:
    run(sys.executable, "-m", "speech_gru.cli", *args)


def train(data: Path, run_dir: Path, epochs: int, *extra: str | Path) -> Path:
    best = run_dir / "checkpoints" / "best.ckpt"
    if not best.is_file():
        run(
            sys.executable, RECIPE / "train.py", "fit",
            "--config", CONF, "--data.root", data, "--run_dir", run_dir,
            "--trainer.max_epochs", str(epochs), *extra,
        )  # fmt: skip
    return best


def evaluate(checkpoint: Path, folder: Path, out: Path, *extra: str) -> dict:
    report = out / "evaluation.json"
    if not report.is_file():
        speech_gru("evaluate", "--checkpoint", checkpoint, folder, "--out", out, *extra)
    return json.loads(report.read_text())


def synth(words: Sequence[str], out: Path, speakers: int, seed: int) -> Path:
    if not (out / "synth.json").is_file() or not (out / words[-1]).is_dir():
        speech_gru("synth", *words, "--out", out, "--speakers", str(speakers),
                   "--seed", str(seed))  # fmt: skip
    return out


def figures(reports: Sequence[dict]) -> dict:
    """Accuracy over all clips and over keyword clips, from pooled confusion matrices."""
    confusion = sum(np.array(r["confusion"]) for r in reports)
    labels = reports[0]["labels"]
    rows = [i for i, label in enumerate(labels) if not label.startswith("_")]
    return {
        "accuracy": float(np.trace(confusion) / confusion.sum()),
        "keyword_accuracy": float(confusion[rows, rows].sum() / confusion[rows].sum()),
        "clips": int(confusion.sum()),
        "keyword_clips": int(confusion[rows].sum()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("dev", type=Path, help="real clips in the test archive's layout")
    p.add_argument("--out", type=Path, default=Path("runs/transfer"))
    p.add_argument("--init", type=Path, help="a 3-fold crossval.py run of the 12-class recipe")
    p.add_argument("--speakers", type=int, default=300, help="synthetic speakers per set")
    p.add_argument("--epochs", type=int, default=20, help="epochs of (a), (c), the 12-class runs")
    p.add_argument("--finetune-epochs", type=int, default=10, help="epochs of (b)")
    p.add_argument("--only", choices=("a", "b", "c"), nargs="+", default=["c", "a", "b"])
    args = p.parse_args(argv)
    out, epochs, results = args.out, args.epochs, {}

    if "c" in args.only:
        data = synth(COMMANDS, out / "synth_commands", args.speakers, seed=0)
        best = train(data, out / "c", epochs)
        results["c"] = figures([evaluate(best, args.dev, out / "c" / "real")])

    real_digits, synth_digits = out / "real_digits", out / "synth_digits"
    if {"a", "b"} & set(args.only):
        if not real_digits.is_dir():
            speech_gru("vocabulary", args.dev, real_digits)
        synth(DIGITS, synth_digits, args.speakers, seed=1)
    if "a" in args.only:
        best = train(synth_digits, out / "a", epochs, "--data.labels", DIGIT_LABELS)
        results["a"] = figures([evaluate(best, real_digits, out / "a" / "real")])

    if "b" in args.only:
        mixed = out / "digits_mixed"
        if not mixed.is_dir():
            for source in (synth_digits, real_digits):
                shutil.copytree(source, mixed, dirs_exist_ok=True)
        init = args.init
        if init is None:
            init = out / "cv12"
            run(sys.executable, RECIPE / "crossval.py",
                "--folds", str(FOLDS), "--run_dir", init, "--", "--config", CONF,
                "--data.root", args.dev, "--trainer.max_epochs", str(epochs))  # fmt: skip
        reports = []
        for fold in range(FOLDS):
            best = train(
                mixed, out / "b" / f"fold_{fold}", args.finetune_epochs,
                "--data.labels", DIGIT_LABELS,
                "--data.folds", str(FOLDS), "--data.fold", str(fold),
                "--model.init_from", init / f"fold_{fold}" / "checkpoints" / "best.ckpt",
                "--model.freeze_encoder_epochs", "2",
            )  # fmt: skip
            reports.append(
                evaluate(
                    best, real_digits, out / "b" / f"fold_{fold}" / "real", "--split", "testing"
                )  # fmt: skip
            )
        results["b"] = figures(reports)

    for name, figure in results.items():
        print(
            f"({name}) accuracy {figure['accuracy']:.4f} on {figure['clips']} real clips; "
            f"keywords {figure['keyword_accuracy']:.4f} on {figure['keyword_clips']}"
        )
    path = out / "transfer.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps(known | results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
