"""Clip accuracy of a model as background noise rises: the ceiling of live detection.

Each held-out clip (the split's speakers, as the recipe's folder mode splits them) is
mixed with a random piece of the folder's own background noise so that its speech (the
span ``stream_eval.speech_span`` finds) stands ``SNR`` dB above the noise, the rule
``speech-gru evaluate-stream`` inserts words by, and is classified on its own. A keyword
the model gets wrong here, alone and centred, a stream at that SNR will miss at any
threshold::

    python tools/noise_robustness.py --checkpoint runs/folder/checkpoints/best.ckpt \\
        --data data/test_v0.02 --snr 20 10 5
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def mix(clip: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator):  # noqa: ANN201
    """``clip`` over a random piece of ``noise`` at ``snr_db`` (speech span RMS to noise RMS)."""
    from speech_gru.analysis.stream_eval import speech_span

    start, end = speech_span(clip)
    speech = float(np.sqrt(np.mean(clip[start:end].astype(np.float64) ** 2)))
    offset = int(rng.integers(max(1, noise.size - clip.size + 1)))
    piece = np.resize(noise[offset : offset + clip.size], clip.size).astype(np.float64)
    level = float(np.sqrt(np.mean(piece**2)))
    if speech == 0 or level == 0:
        return clip
    gain = speech / (level * 10 ** (snr_db / 20))
    return (clip + gain * piece).astype(np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint (.ckpt) or exported model")
    p.add_argument("--data", required=True, help="dataset-layout folder")
    p.add_argument("--split", default="testing", help="speakers scored (default testing)")
    p.add_argument("--snr", type=float, nargs="+", default=[20.0, 10.0, 5.0],
                   help="SNRs in dB (default 20 10 5); clean clips are always scored")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="noise pieces (default 0)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)

    import torch

    from speech_gru.core.audio import fit_length, load_audio
    from speech_gru.runtime.classifier import load_classifier
    from speech_gru.train.corpus import (
        CLIP_SAMPLES,
        audio_files,
        background_noise,
        scan_folder,
        split_rule,
    )

    torch.set_num_threads(1)
    classifier = load_classifier(args.checkpoint)
    labels = classifier.labels
    hparams = classifier.metadata.get("datamodule_hyper_parameters")  # checkpoints only
    root = Path(args.data)
    split_of = split_rule(root, hparams)
    items = [(path, label) for path, label in scan_folder(root, labels)
             if label != "_silence_" and split_of(path) == args.split]  # fmt: skip
    silence = [p for p in audio_files(root / "_silence_") if split_of(p) == args.split]
    noise, source = background_noise(root, silence=silence, synthetic=False)
    if not items or not noise:
        sys.exit(f"error: {root}: no {args.split} clips or no background noise")
    noise = np.concatenate(noise)
    clips = [fit_length(load_audio(path), CLIP_SAMPLES) for path, _ in items]
    truth = np.array([labels.index(label) for _, label in items])
    keyword = np.array([not label.startswith("_") for _, label in items])
    rows = []
    for snr in [None, *args.snr]:
        rng = np.random.default_rng(args.seed)
        waves = clips if snr is None else [mix(c, noise, snr, rng) for c in clips]
        guess = classifier.predict(waves).numpy().argmax(1)
        right = guess == truth
        rows.append({
            "snr_db": snr,
            "accuracy": float(right.mean()),
            "keyword_accuracy": float(right[keyword].mean()),
        })  # fmt: skip
    print(f"{len(items)} {args.split} clips ({int(keyword.sum())} keywords) of {root}; "
          f"noise: {source}")  # fmt: skip
    print(f"{'SNR':>7}  {'accuracy':>8}  {'keywords right':>14}")
    for row in rows:
        name = "clean" if row["snr_db"] is None else f"{row['snr_db']:g} dB"
        print(f"{name:>7}  {row['accuracy']:>8.1%}  {row['keyword_accuracy']:>14.1%}")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
