"""Clip accuracy of a model as background noise rises: the ceiling of live detection.

Each held-out clip (the split's speakers, as the recipe's folder mode splits them) is
mixed with a random piece of the folder's own background noise so that its speech (the
span ``streaming.recordings.speech_span`` finds) stands ``SNR`` dB above the noise, the rule
``speech-gru evaluate-stream`` inserts words by, and is classified on its own. A keyword
the model gets wrong here, alone and centred, a stream at that SNR will miss at any
threshold. ``speech-gru noise-robustness`` runs it::

    speech-gru noise-robustness --checkpoint runs/folder/checkpoints/best.ckpt \\
        --data data/test_v0.02 --snr 20 10 5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speech_gru.runtime.classifier import Classifier


class NoiseRobustnessError(Exception):
    """The folder has no clips of the split or no background noise; ``str()`` is one line."""


@dataclass(frozen=True)
class NoiseRobustness:
    """Accuracy at each noise level.

    Attributes:
        root: the dataset folder.
        split: the speakers scored (``"all"``: every clip).
        clips: clips scored (``_silence_`` left out).
        keywords: how many of them are keywords.
        noise_source: where the background noise came from.
        rows: ``{"snr_db", "accuracy", "keyword_accuracy"}`` per level, the clean clips
            (``snr_db`` None) first.
    """

    root: Path
    split: str
    clips: int
    keywords: int
    noise_source: str
    rows: list[dict]

    def lines(self) -> list[str]:
        """The report: what was scored, then one line per level."""
        out = [
            f"{self.clips} {self.split} clips ({self.keywords} keywords) of {self.root}; "
            f"noise: {self.noise_source}",
            f"{'SNR':>7}  {'accuracy':>8}  {'keywords right':>14}",
        ]
        for row in self.rows:
            name = "clean" if row["snr_db"] is None else f"{row['snr_db']:g} dB"
            out.append(f"{name:>7}  {row['accuracy']:>8.1%}  {row['keyword_accuracy']:>14.1%}")
        return out


def mix(clip: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator):  # noqa: ANN201
    """``clip`` over a random piece of ``noise`` at ``snr_db`` (speech span RMS to noise RMS).

    Args:
        clip: (N,) float32 waveform.
        noise: (M,) background noise, any length (repeated when shorter than the clip).
        snr_db: speech-to-noise ratio.
        rng: chooses the piece.

    Returns:
        (N,) float32; ``clip`` itself when it or the piece is silent.
    """
    from speech_gru.analysis.streaming.recordings import speech_span

    start, end = speech_span(clip)
    speech = float(np.sqrt(np.mean(clip[start:end].astype(np.float64) ** 2)))
    offset = int(rng.integers(max(1, noise.size - clip.size + 1)))
    piece = np.resize(noise[offset : offset + clip.size], clip.size).astype(np.float64)
    level = float(np.sqrt(np.mean(piece**2)))
    if speech == 0 or level == 0:
        return clip
    gain = speech / (level * 10 ** (snr_db / 20))
    return (clip + gain * piece).astype(np.float32)


def noise_robustness(
    classifier: Classifier,
    root: str | Path,
    split: str = "testing",
    snrs: Sequence[float] = (20.0, 10.0, 5.0),
    seed: int = 0,
) -> NoiseRobustness:
    """Classify the split's clips of ``root`` clean and at each SNR.

    Every level draws the same noise pieces (one generator per level, from ``seed``).

    Args:
        classifier: the model; a checkpoint's data settings say how the speakers were
            split (``corpus.split_rule``).
        root: a dataset-layout folder with background noise (``_background_noise_``, else
            the split's ``_silence_`` clips).
        split: the speakers scored (``"all"``: every clip).
        snrs: speech-to-noise ratios, dB.
        seed: the noise pieces.

    Raises:
        NoiseRobustnessError: no clips of the split, or no background noise.
        AudioError: a clip that cannot be read.
    """
    from speech_gru.core.audio import fit_length, load_audio
    from speech_gru.train.corpus import (
        audio_files,
        background_noise,
        scan_folder,
        split_rule,
    )

    labels = classifier.labels
    hparams = classifier.metadata.get("datamodule_hyper_parameters")  # checkpoints only
    root = Path(root)
    split_of = split_rule(root, hparams)

    def kept(path: Path) -> bool:
        return split == "all" or split_of(path) == split

    words = scan_folder(root, labels)
    items = [(path, label) for path, label in words if label != "_silence_" and kept(path)]
    silence = [p for p in audio_files(root / "_silence_") if kept(p)]
    noise, source = background_noise(root, silence=silence, synthetic=False)
    if not items or not noise:
        raise NoiseRobustnessError(f"{root}: no {split} clips or no background noise")
    noise = np.concatenate(noise)
    # cut or padded to the model's window, as the clips it was trained on
    clips = [fit_length(load_audio(path), classifier.window) for path, _ in items]
    truth = np.array([labels.index(label) for _, label in items])
    keyword = np.array([not label.startswith("_") for _, label in items])
    rows = []
    for snr in [None, *snrs]:
        rng = np.random.default_rng(seed)
        waves = clips if snr is None else [mix(c, noise, snr, rng) for c in clips]
        guess = classifier.predict(waves).numpy().argmax(1)
        right = guess == truth
        rows.append(
            {
                "snr_db": snr,
                "accuracy": float(right.mean()),
                "keyword_accuracy": float(right[keyword].mean()),
            }
        )
    return NoiseRobustness(root, split, len(items), int(keyword.sum()), source, rows)
