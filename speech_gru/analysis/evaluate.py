"""Score a model on a labelled folder: accuracy, per-class precision and recall, confusion.

The folder follows the canonical test-archive layout: one sub-folder per label, with
``_silence_`` and ``_unknown_`` folders (any word inside ``_unknown_``). A folder of other
words maps to ``_unknown_`` when the model has that label, as in training. A training
folder can be scored on one split of its speakers, split as the model was trained
(``speech_gru.train.corpus.split_rule``). This module does not import Lightning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torchmetrics.functional.classification import (
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from speech_gru.core.audio import AudioError, info, load_audio, loudest_window, printable
from speech_gru.core.labels import is_keyword
from speech_gru.core.plots import pyplot, save_figure
from speech_gru.runtime.classifier import Classifier
from speech_gru.train.corpus import MAX_CLIP_S, scan_folder, split_rule

SPLITS = ("training", "validation", "testing", "all")

# Labelled files up to ``MAX_CLIP_S`` long are scored on their loudest window of the
# model's length (one second for Speech Commands models); longer ones are recordings,
# refused from their header without being decoded.


@dataclass
class Report:
    """Evaluation results.

    Attributes:
        labels: class names.
        confusion: (C, C) counts, rows true label, columns prediction.
        errors: one-line messages for files that could not be read.
        split: the split of the folder's speakers scored (``all``: every clip).
    """

    labels: list[str]
    confusion: np.ndarray
    errors: list[str] = field(default_factory=list)
    split: str = "all"

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(1, self.total))

    @property
    def keyword_accuracy(self) -> float:
        """Accuracy over the clips of keywords only (``_silence_``/``_unknown_`` aside): how
        often a spoken keyword is named right, whatever the share of the other classes."""
        rows = [i for i, label in enumerate(self.labels) if is_keyword(label)]
        spoken = self.confusion[rows].sum()
        return float(self.confusion[rows, rows].sum() / spoken) if spoken else float("nan")

    def per_class(self) -> list[dict]:
        """Precision, recall, F1 and support of each label (torchmetrics, ``average=None``;
        0 where a label was never predicted or never present)."""
        n = len(self.labels)
        support = self.confusion.sum(1)
        scores = np.zeros((3, n))
        if self.total:
            predicted, target = _pairs(self.confusion)
            metrics = (multiclass_precision, multiclass_recall, multiclass_f1_score)
            for row, metric in zip(scores, metrics, strict=True):
                row[:] = metric(predicted, target, num_classes=n, average=None).numpy()
        return [
            {
                "label": label,
                "precision": float(precision),
                "recall": float(recall),
                "f1": float(f1),
                "support": int(count),
            }
            for label, precision, recall, f1, count in zip(
                self.labels, *scores, support, strict=True
            )
        ]

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "accuracy": self.accuracy,
            "keyword_accuracy": self.keyword_accuracy,
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


def _pairs(confusion: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) predicted and (N,) true class indices with these (C, C) counts."""
    n = confusion.shape[0]
    counts = torch.as_tensor(np.asarray(confusion, dtype=np.int64)).flatten()  # (C * C,)
    cells = torch.repeat_interleave(torch.arange(n * n), counts)  # (N,) row * C + column
    return cells % n, cells // n


def evaluate_folder(
    classifier: Classifier,
    root: Path,
    batch_size: int = 64,
    progress: bool = True,
    split: str = "all",
    datamodule: dict | None = None,
) -> Report:
    """Classify every clip of a labelled folder and tally the confusion matrix.

    Each clip is scored on its loudest window of the model's length
    (``classifier.window_s``, as it was trained; zero-padded if shorter), as
    ``transcribe`` labels a short clip and ``explain`` explains any file. Unreadable
    files, and files longer than ``MAX_CLIP_S`` (recordings, not clips: they are never
    decoded whole), are reported in ``Report.errors`` and left out of the scores.

    Args:
        classifier: the model.
        root: the labelled folder.
        batch_size: clips per forward pass.
        progress: show a progress bar.
        split: ``all``, or only the clips of the ``training``, ``validation`` or ``testing``
            speakers, split by ``speech_gru.train.corpus.split_rule(root, datamodule)``.
        datamodule: the checkpoint's ``datamodule_hyper_parameters`` (None: the data
            module's defaults).

    Raises:
        FileNotFoundError: ``root`` is not a folder or holds no labelled audio (of the split).
        ValueError: an unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    labels = classifier.labels
    items = scan_folder(Path(root), labels)
    if not items:
        raise FileNotFoundError(f"{root}: no audio in sub-folders named after the labels")
    if split != "all":
        split_of = split_rule(root, datamodule)
        items = [(path, label) for path, label in items if split_of(path) == split]
        if not items:
            raise FileNotFoundError(f"{root}: no labelled audio of {split} speakers")
    index = {label: i for i, label in enumerate(labels)}
    n = len(labels)
    confusion = torch.zeros(n, n, dtype=torch.int64)
    errors: list[str] = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("evaluating", total=len(items))
        for start in range(0, len(items), batch_size):
            waves, targets = [], []
            for path, label in items[start : start + batch_size]:
                try:
                    waves.append(_read_clip(path, classifier.window))
                    targets.append(index[label])
                except AudioError as err:
                    errors.append(str(err))
            if waves:
                predicted = classifier.predict(np.stack(waves)).argmax(-1)
                confusion += multiclass_confusion_matrix(
                    predicted, torch.tensor(targets), num_classes=n
                )
            bar.advance(task, len(items[start : start + batch_size]))
    return Report(list(labels), confusion.numpy(), errors, split)


def _read_clip(path: Path, window: int) -> np.ndarray:
    """(window,) samples of a labelled clip: its loudest ``window`` samples. The header is
    read first, so a long recording is refused without being decoded."""
    duration = info(path).duration_s
    if duration > MAX_CLIP_S:
        problem = f"too long for a clip ({duration:.1f} s; at most {MAX_CLIP_S:g} s)"
        raise AudioError(path, problem)
    return loudest_window(load_audio(path), window)


def plot_confusion(report: Report, path: Path, title: str = "") -> Path:
    """Draw the row-normalised confusion matrix with counts to a PNG."""
    plt = pyplot()

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
    return save_figure(fig, path, dpi=110)


def write_report(report: Report, out_dir: Path, source: str) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``confusion_matrix.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "evaluation.json"
    json_path.write_text(json.dumps({"data": source, **report.to_dict()}, indent=2) + "\n")
    return json_path, plot_confusion(report, out_dir / "confusion_matrix.png")
