"""Label audio files: one label per short clip, timestamped keywords in long recordings.

Inputs are files or folders (walked recursively). Clips of about the model's window (one
second for Speech Commands models; at most ``LONG_AFTER_S`` windows) are decoded in
parallel threads and classified in batches; longer files are streamed block by block
through the same ``StreamingDetector`` as ``speech-gru stream``, as fast as possible, so
an hour-long file needs no more memory than a minute. Every failure is a one-line
``Failure`` record and the run carries on.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speech_gru.core.audio import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    AudioError,
    info,
    load_audio,
    loudest_window,
    printable,
)
from speech_gru.runtime.classifier import Classifier
from speech_gru.runtime.detector import DetectorConfig, Event
from speech_gru.runtime.factory import FILE_BATCH_WINDOWS, new_detector
from speech_gru.runtime.source import open_source

LONG_AFTER_S = 1.25
"""Files longer than this many model windows (seconds, for a 1 s model) are scanned for
keywords; shorter ones get one label."""


@dataclass(frozen=True)
class ClipResult:
    """The labels of a short clip, best first: ``top = [(label, probability), ...]``."""

    path: Path
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class EventResult:
    """A keyword found in a long recording."""

    path: Path
    event: Event


@dataclass(frozen=True)
class Failure:
    """A file or folder that could not be used, with a one-line reason."""

    path: Path
    problem: str


Record = ClipResult | EventResult | Failure


@dataclass
class Summary:
    """Counts for the closing line."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    events: int = 0
    long_files: int = 0
    audio_s: float = 0.0

    def line(self) -> str:
        total = self.done + self.failed + self.skipped
        text = (
            f"{total} files: {self.done} done, {self.failed} failed, {self.skipped} skipped"
            f" (not audio); {self.audio_s:.1f} s of audio"
        )
        if self.long_files:
            text += f"; {self.events} keywords in {self.long_files} long recordings"
        return text


def walk(inputs: Sequence[str | Path], summary: Summary) -> Iterator[Path | Failure]:
    """Files to read, in order: each input file, and the files under each input folder.

    Non-audio files inside folders are counted as skipped; a folder with no audio and a
    missing path are failures.
    """
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            audio = [p for p in files if p.suffix.lower() in AUDIO_EXTENSIONS]
            summary.skipped += len(files) - len(audio)
            if not audio:
                yield Failure(path, "no audio files in this folder")
            yield from audio
        elif path.exists():
            yield path
        else:
            yield Failure(path, "file not found")


def _read_clip(
    path: Path, window_s: float = 1.0
) -> tuple[np.ndarray | None, float, Failure | None]:
    """Decode a file if it is a short clip, its loudest ``window_s`` seconds; (None,
    duration) for a long one."""
    try:
        duration = info(path).duration_s
        if duration > LONG_AFTER_S * window_s:
            return None, duration, None
        wave = load_audio(path)
    except AudioError as err:
        return None, 0.0, Failure(path, err.problem)
    window = round(window_s * SAMPLE_RATE)
    return loudest_window(wave, window), wave.size / SAMPLE_RATE, None


class Transcriber:
    """Labels files with a classifier.

    Args:
        classifier: the model.
        top_k: labels reported per short clip.
        batch_size: clips per forward pass.
        jobs: decoding threads.
        detector: streaming settings for long recordings (default: ``DetectorConfig``'s
            at the model's window, ``FILE_BATCH_WINDOWS`` at a time).
    """

    def __init__(
        self,
        classifier: Classifier,
        top_k: int = 1,
        batch_size: int = 64,
        jobs: int = 4,
        detector: DetectorConfig | None = None,
    ) -> None:
        self.classifier = classifier
        self.top_k = max(1, min(top_k, len(classifier.labels)))
        self.batch_size = batch_size
        self.jobs = max(1, jobs)
        self.detector = detector or DetectorConfig(
            window_s=classifier.window_s, batch_windows=FILE_BATCH_WINDOWS
        )
        self.summary = Summary()

    def _classify(self, batch: list[tuple[Path, np.ndarray]]) -> Iterator[ClipResult]:
        probs = self.classifier.predict([w for _, w in batch], self.batch_size).numpy()
        labels = self.classifier.labels
        for (path, _), p in zip(batch, probs, strict=True):
            order = np.argsort(-p)[: self.top_k]
            yield ClipResult(path, [(labels[i], float(p[i])) for i in order])

    def scan(self, path: Path, on_audio=None) -> Iterator[EventResult | Failure]:  # noqa: ANN001
        """Keywords of a long recording, streamed block by block."""
        detector = new_detector(self.classifier, self.detector)

        def scanned(seconds: float) -> None:
            self.summary.audio_s += seconds
            if on_audio is not None:
                on_audio(seconds)

        try:
            for event in detector.events(open_source(path, block_s=10.0), scanned, ends=True):
                yield EventResult(path, event)
        except AudioError as err:
            yield Failure(path, err.problem)

    def run(self, inputs: Sequence[str | Path], on_file=None, on_audio=None) -> Iterator[Record]:  # noqa: ANN001
        """Records in input order.

        Args:
            inputs: files and folders.
            on_file: called once per file handled (for a progress bar).
            on_audio: called with seconds of long recordings scanned.
        """
        items = walk(inputs, self.summary)
        with ThreadPoolExecutor(self.jobs) as pool:
            while chunk := _take(items, 4 * self.batch_size):
                paths = [p for p in chunk if isinstance(p, Path)]
                read = functools.partial(_read_clip, window_s=self.classifier.window_s)
                decoded = dict(zip(paths, pool.map(read, paths), strict=True))
                batch: list[tuple[Path, np.ndarray]] = []
                for item in chunk:
                    wave, duration, failure = (
                        (None, 0.0, item) if isinstance(item, Failure) else decoded[item]
                    )
                    if failure is not None:
                        yield from self._count([failure])
                    elif wave is None:  # long: flush short clips first to keep the order
                        yield from self._count(self._classify(batch) if batch else [])
                        batch = []
                        self.summary.long_files += 1
                        yield from self._count(self.scan(item, on_audio), long=True)
                    else:
                        self.summary.audio_s += duration
                        batch.append((item, wave))
                    if on_file is not None:
                        on_file()
                if batch:
                    yield from self._count(self._classify(batch))

    def _count(self, records: Iterable[Record], long: bool = False) -> Iterator[Record]:
        failed = False
        for record in records:
            if isinstance(record, Failure):
                failed = True
            elif isinstance(record, EventResult):
                self.summary.events += 1
            elif not long:
                self.summary.done += 1
            yield record
        if long:
            if failed:
                self.summary.failed += 1
            else:
                self.summary.done += 1
        elif failed:
            self.summary.failed += 1


def _take(items: Iterator, n: int) -> list:
    out = []
    for item in items:
        out.append(item)
        if len(out) == n:
            break
    return out


FORMATS = ("text", "json", "csv")


def csv_header(top_k: int = 1) -> str:
    """The CSV header line for ``top_k`` labels per clip.

    The first five columns never change: ``path,label,score,start_s,end_s`` (a clip's best
    label with empty times; a keyword of a long recording with its span). With ``top_k > 1``
    the clip's next labels follow as ``label_2,score_2,...,label_K,score_K``; those columns
    are empty on a keyword's row (the detector reports one label per event).
    """
    extra = (f"label_{i},score_{i}" for i in range(2, top_k + 1))
    return ",".join(["path,label,score,start_s,end_s", *extra])


def format_record(record: Record, fmt: str, top_k: int = 1) -> str | None:
    """One output record for a result (None for failures, which go to stderr).

    Text is one line with control characters in paths and labels escaped
    (:func:`~speech_gru.core.audio.printable`); JSON escapes them itself; a CSV record is quoted
    as needed, so a path holding a comma, a quote or a newline reads back exactly. A CSV
    record has the columns of :func:`csv_header` for ``top_k`` (a clip's labels past
    ``top_k`` are left out; missing ones are empty fields).
    """
    if isinstance(record, Failure):
        return None
    if isinstance(record, ClipResult):
        label, score = record.top[0]
        if fmt == "json":
            top = [{"label": lab, "score": s} for lab, s in record.top]
            row = {"path": str(record.path), "label": label, "score": score, "top": top}
            return json.dumps(row)
        if fmt == "csv":
            more = [(lab, f"{s:.4f}") for lab, s in record.top[1:top_k]]
            more += [("", "")] * (max(top_k, 1) - 1 - len(more))
            extra = [value for pair in more for value in pair]
            return _csv_row([record.path, label, f"{score:.4f}", "", "", *extra])
        top = (f"{printable(lab)}\t{s:.4f}" for lab, s in record.top)
        return "\t".join([printable(record.path), *top])
    e = record.event
    if fmt == "json":
        return json.dumps({"path": str(record.path), **e.to_dict()})
    if fmt == "csv":
        span = [f"{e.start_s:.2f}", f"{e.end_s:.2f}"]
        extra = [""] * (2 * (max(top_k, 1) - 1))
        return _csv_row([record.path, e.label, f"{e.score:.4f}", *span, *extra])
    span = f"{e.score:.4f}\t{e.start_s:.2f}\t{e.end_s:.2f}"
    return f"{printable(record.path)}\t{printable(e.label)}\t{span}"


def _csv_row(values: list) -> str:
    """One CSV record without its line end. The writer quotes fields holding characters of
    its line terminator, so that is ``\\r\\n`` (both kinds of line break), cut off after."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()[:-2]
