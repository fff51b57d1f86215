"""How much of the error signal reaches each frame, for trained GRU, LSTM and plain RNN
checkpoints: the figure of the vanishing gradient (``speech_gru.analysis.gradients``).

For each checkpoint it averages, over the held-out speakers' clips of a dataset folder
(the checkpoint's own split), the norm of the loss gradient with respect to the encoder's
input at every frame, and draws one curve per checkpoint in two panels:

* the clips as the model classifies them (their loudest second);
* a controlled case: each keyword clip's loudest 0.4 s placed at the start of the second
  and the rest replaced by noise (the folder's ``_background_noise_``, else pink noise,
  15 dB below the word), so the frames that decide are the first ones.

It prints, per checkpoint and panel, the mean norm over the first and last 0.2 s and
their ratio::

    python recipes/speech_commands/experiments/gradient_flow.py --data $DEV \\
        --out docs/gradient_flow.png --checkpoints \\
        runs/compare/{gru192,lstm166,rnn333}-seed0/checkpoints/best.ckpt
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

WORD_SAMPLES = 6400  # 0.4 s


def held_out(root: Path, labels: list[str], datamodule: dict, limit: int, seed: int) -> list:
    """(path, label index) of the test speakers' clips, at most ``limit`` (a seeded choice)."""
    from speech_gru.train.corpus import scan_folder, split_rule

    split_of = split_rule(root, datamodule)
    items = [
        (p, labels.index(lab)) for p, lab in scan_folder(root, labels) if split_of(p) == "testing"
    ]
    rng = np.random.default_rng(seed)
    if len(items) > limit:
        items = [items[i] for i in sorted(rng.choice(len(items), limit, replace=False))]
    return items


def word_first(wave: np.ndarray, noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The clip's loudest 0.4 s at the start of a second of noise 15 dB below it."""
    from speech_gru.core.audio import loudest_window

    word = loudest_window(wave, WORD_SAMPLES)
    start = rng.integers(0, len(noise) - 16000)
    bed = noise[start : start + 16000].astype(np.float64)
    level = np.sqrt(np.mean(word**2)) / (np.sqrt(np.mean(bed**2)) + 1e-12) * 10 ** (-15 / 20)
    out = bed * level
    out[:WORD_SAMPLES] += word
    return out.astype(np.float32)


def curves(checkpoint: str, root: Path, limit: int, seed: int) -> tuple[str, dict, float]:
    """The model's name, {panel: (T,) mean gradient norm}, and its frame step in s."""
    from speech_gru.analysis.gradients import gradient_flow
    from speech_gru.core.audio import load_audio, loudest_window
    from speech_gru.core.labels import is_keyword
    from speech_gru.runtime.checkpoint import load_checkpoint_model
    from speech_gru.train.corpus import CLIP_SAMPLES, background_noise

    model, labels, stored = load_checkpoint_model(checkpoint)
    items = held_out(root, labels, stored.get("datamodule_hyper_parameters") or {}, limit, seed)
    waves = np.stack([loudest_window(load_audio(p), CLIP_SAMPLES) for p, _ in items])
    targets = [t for _, t in items]
    noise = np.concatenate(background_noise(root)[0])
    rng = np.random.default_rng(seed)
    keywords = [i for i, t in enumerate(targets) if is_keyword(labels[t])]
    moved = np.stack([word_first(waves[i], noise, rng) for i in keywords])
    c = model.config
    kind = "" if model.bidirectional else ", forward"
    name = f"{c.cell.upper()} {c.hidden_size}{kind} ({model.num_parameters():,} parameters)"
    found = {
        "held-out clips": gradient_flow(model, waves, targets),
        "word in the first 0.4 s, then noise": gradient_flow(
            model, moved, [targets[i] for i in keywords]
        ),
    }
    return name, found, c.features.hop_length / c.features.sample_rate


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoints", nargs="+", required=True)
    p.add_argument("--data", required=True, help="the dataset folder the models split")
    p.add_argument("--max-clips", type=int, default=400, help="held-out clips per model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="gradient_flow.png")
    p.add_argument("--json", help="write the curves here")
    args = p.parse_args(argv)
    from speech_gru.analysis.gradients import plot_flow

    panels: dict[str, dict[str, np.ndarray]] = {}
    frame_s = 0.02
    print("model  panel  mean norm, first 0.2 s  last 0.2 s  first / last")
    for checkpoint in args.checkpoints:
        name, found, frame_s = curves(checkpoint, Path(args.data), args.max_clips, args.seed)
        edge = max(1, round(0.2 / frame_s))
        for panel, curve in found.items():
            panels.setdefault(panel, {})[name] = curve
            first, last = curve[:edge].mean(), curve[-edge:].mean()
            print(f"{name}  {panel}  {first:.3g}  {last:.3g}  {first / last:.3g}")
    plot_flow(list(panels.items()), args.out, frame_s)
    print(f"wrote {args.out}")
    if args.json:
        data = {panel: {k: v.tolist() for k, v in c.items()} for panel, c in panels.items()}
        Path(args.json).write_text(json.dumps(data) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
