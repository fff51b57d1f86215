"""Score a model on a labelled folder: accuracy, per-class precision and recall, confusion.

The folder follows the canonical test-archive layout: one sub-folder per label, with
``_silence_`` and ``_unknown_`` folders (any word inside ``_unknown_``). A folder of other
words maps to ``_unknown_`` when the model has that label, as in training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import Progress

from speech_gru.audio import AudioError, info, load_audio, loudest_window, printable
from speech_gru.data import CLIP_SAMPLES, scan_folder
from speech_gru.infer import Classifier
from speech_gru.transcribe import LONG_AFTER_S


@dataclass
class Report:
    """Evaluation results.

    Attributes:
        labels: class names.
        confusion: (C, C) counts, rows true label, columns prediction.
        errors: one-line messages for files that could not be read.
    """

    labels: list[str]
    confusion: np.ndarray
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.total))

    def per_class(self) -> list[dict]:
        """Precision, recall, F1 and support of each label."""
        rows = []
        for i, label in enumerate(self.labels):
            tp = self.confusion[i, i]
            predicted, actual = self.confusion[:, i].sum(), self.confusion[i].sum()
            precision = tp / predicted if predicted else 0.0
            recall = tp / actual if actual else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            rows.append(
                {
                    "label": label,
                    "precision": float(precision),
                    "recall": float(recall),
                    "f1": float(f1),
                    "support": int(actual),
                }
            )
        return rows

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "total": self.total,
            "labels": self.labels,
            "per_class": self.per_class(),
            "confusion": self.confusion.tolist(),
            "errors": self.errors,
        }

    def table(self) -> str:
        """Per-class results as aligned text (labels' control characters escaped)."""
        width = max(len(printable(label)) for label in self.labels)
        lines = [f"{'label':<{width}}  precision  recall     f1  support"]
        for row in self.per_class():
            lines.append(
                f"{printable(row['label']):<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}"
                f"  {row['f1']:5.4f}  {row['support']:7d}"
            )
        return "\n".join(lines)


def evaluate_folder(
    classifier: Classifier, root: Path, batch_size: int = 64, progress: bool = True
) -> Report:
    """Classify every clip of a labelled folder and tally the confusion matrix.

    Clips are zero-padded to one second, and one up to ``LONG_AFTER_S`` long is cut to its
    loudest second, as ``transcribe`` labels it. Unreadable files, and files longer than
    that (recordings, not clips: they are never decoded whole), are reported in
    ``Report.errors`` and left out of the scores.

    Raises:
        FileNotFoundError: ``root`` is not a folder or holds no labelled audio.
    """
    labels = classifier.labels
    items = scan_folder(Path(root), labels)
    if not items:
        raise FileNotFoundError(f"{root}: no audio in sub-folders named after the labels")
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    errors: list[str] = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(items))
        for start in range(0, len(items), batch_size):
            waves, targets = [], []
            for path, label in items[start : start + batch_size]:
                try:
                    waves.append(_read_clip(path))
                    targets.append(index[label])
                except AudioError as err:
                    errors.append(str(err))
            if waves:
                predicted = classifier.predict(np.stack(waves)).argmax(-1).numpy()
                np.add.at(confusion, (np.array(targets), predicted), 1)
            bar.advance(task, len(items[start : start + batch_size]))
    return Report(list(labels), confusion, errors)


def _read_clip(path: Path) -> np.ndarray:
    """(CLIP_SAMPLES,) samples of a labelled clip; the header is read first, so a long
    recording is refused without being decoded."""
    duration = info(path).duration_s
    if duration > LONG_AFTER_S:
        problem = f"too long for a clip ({duration:.1f} s; at most {LONG_AFTER_S} s)"
        raise AudioError(path, problem)
    return loudest_window(load_audio(path), CLIP_SAMPLES)


def plot_confusion(report: Report, path: Path, title: str = "") -> Path:
    """Draw the row-normalised confusion matrix with counts to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = report.confusion
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    n = len(report.labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), report.labels, rotation=60, ha="right")
    ax.set_yticks(range(n), report.labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                color = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title or f"accuracy {report.accuracy:.4f} on {report.total} clips")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: Report, out_dir: Path, source: str) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``confusion_matrix.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "evaluation.json"
    json_path.write_text(json.dumps({"data": source, **report.to_dict()}, indent=2) + "\n")
    return json_path, plot_confusion(report, out_dir / "confusion_matrix.png")
