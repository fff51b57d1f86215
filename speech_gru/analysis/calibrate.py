"""Choose the detector's operating point for a target false-alarm rate.

Keyword-free ("negative") audio is streamed once through ``StreamingDetector`` with a
``RecordingScorer``, which keeps the model's (B, C) output for every window. Everything
after that replays those outputs, never the model: for each averaging span the smoothed
scores give, for any threshold, the events the detector would report, and every event on
negative audio is a false alarm. The chosen threshold is the lowest (in steps of
``GRID``, not below a floor) whose false alarms per hour are at most the target; it is
then checked by replaying the recorded outputs through the detector itself. Across spans
the lowest threshold wins.

Per-keyword thresholds share the false-alarm budget: a keyword that stays within its
share at the floor keeps the floor and gives the rest back, and the others get equal
shares of what is left. A keyword's events in the combined detector are never more than
its events alone, so the total stays within the target (and the replay checks it).

Negative audio is either recordings the user gives (each streamed on its own) or one
long stream built from a dataset folder's split: the clips of every sub-folder that is
not one of the model's keywords (other words, ``_unknown_``, ``_silence_``) and pieces
of its ``_background_noise_`` recordings at random gains, in a seeded order with short
gaps of silence between them.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from speech_gru.core.audio import SAMPLE_RATE, AudioError, fit_length, load_audio
from speech_gru.core.labels import BACKGROUND_NOISE, is_keyword
from speech_gru.runtime.checkpoint import OperatingPoint, save_operating_point
from speech_gru.runtime.detector import (
    DetectorConfig,
    RecordingScorer,
    Scorer,
    StreamingDetector,
    after_refractory,
    moving_mean,
)
from speech_gru.runtime.source import open_source
from speech_gru.train.corpus import audio_files, load_noise, split_rule

GRID = 1e-4
"""Threshold resolution: thresholds are multiples of it."""
GAP_S = (0.2, 1.0)
"""Range of the silent gaps before each item of a built negative stream (seconds)."""
NOISE_PIECE_S = (1.0, 4.0)
"""Range of the lengths of the background-noise pieces in a built stream (seconds)."""
NOISE_GAIN = (0.1, 1.0)
"""Range of the gains applied to those pieces."""
RECORD_BATCH = 64
"""Windows per model call while recording."""


class CalibrationError(Exception):
    """Calibration cannot run as asked; ``str()`` is one line."""


@dataclass
class Stream:
    """Audio to stream on its own, from time zero.

    Attributes:
        name: what it is (a file, a dataset split).
        chunks: gives the audio as float32 chunks at 16 kHz (called once per pass).
        label: the keyword it holds (one-clip keyword streams), else None.
    """

    name: str
    chunks: Callable[[], Iterator[np.ndarray]]
    label: str | None = None


@dataclass
class Recording:
    """A scorer's outputs over one stream.

    Attributes:
        name: what was streamed.
        posteriors: (N, C) output of the windows ending at ``window + i * hop``.
        duration_s: seconds of audio streamed.
        label: the keyword the stream holds (keyword clips), else None.
    """

    name: str
    posteriors: np.ndarray
    duration_s: float
    label: str | None = None


def record(
    scorer: Scorer,
    labels: Sequence[str],
    streams: Sequence[Stream],
    config: DetectorConfig,
    on_audio: Callable[[float], None] | None = None,
) -> list[Recording]:
    """Stream each source once through the detector and keep the scorer's outputs.

    Args:
        scorer: (B, window) waveforms -> (B, C) probabilities.
        labels: class names in the scorer's output order.
        streams: the audio; each is streamed on its own, from time zero.
        config: its window and hop are used (the rest only matters on replay).
        on_audio: called with the seconds of audio of every chunk streamed.

    Raises:
        AudioError: a source cannot be read.
    """
    recordings = []
    for stream in streams:
        recorder = RecordingScorer(scorer)
        detector = StreamingDetector(recorder, labels, replace(config, batch_windows=RECORD_BATCH))
        for _ in detector.events(stream.chunks(), on_audio):
            pass  # the recorder keeps the scores; events come from replaying them
        recordings.append(
            Recording(stream.name, recorder.posteriors, detector.time_s, stream.label)
        )
    return recordings


# -- negative audio ------------------------------------------------------------------------


@dataclass
class DatasetSplit:
    """The clips of one split of a dataset-layout folder, sorted by the model's labels.

    Attributes:
        root: the folder (one sub-folder per word).
        split: ``training``, ``validation``, ``testing`` or ``all``.
        negatives: clips of sub-folders that are not keywords of the model.
        keywords: (clip, keyword) pairs of the model's keywords.
        noise: the folder's background-noise recordings (every split), mono 16 kHz.
    """

    root: Path
    split: str
    negatives: list[Path]
    keywords: list[tuple[Path, str]]
    noise: list[np.ndarray]


def dataset_split(
    root: str | Path, labels: Sequence[str], split: str, datamodule: dict | None = None
) -> DatasetSplit:
    """Find the clips of one split of a dataset folder.

    The split is the one the model was trained with (``datamodule``: the checkpoint's
    ``datamodule_hyper_parameters``; the data module's defaults when not recorded): for
    ``version: folder`` each speaker's hash with its percentages and salt, else the
    folder's ``validation_list.txt``/``testing_list.txt`` (the hash when it has none).
    ``all`` takes every clip.

    Raises:
        CalibrationError: not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise CalibrationError(f"{root}: dataset folder not found")
    split_of = split_rule(root, datamodule)
    keywords = {label for label in labels if is_keyword(label)}
    negatives: list[Path] = []
    clips: list[tuple[Path, str]] = []
    noise: list[np.ndarray] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name == BACKGROUND_NOISE:
            noise = load_noise(folder)
            continue
        for path in audio_files(folder):
            if split == "all" or split_of(path) == split:
                if folder.name in keywords:
                    clips.append((path, folder.name))
                else:
                    negatives.append(path)
    return DatasetSplit(root, split, negatives, clips, noise)


@dataclass
class ClipStream:
    """Keyword-free clips and noise pieces as one long stream, in a seeded order.

    Each item follows a gap of silence (``GAP_S``); noise recordings are cut into pieces
    (``NOISE_PIECE_S``), each at a random gain (``NOISE_GAIN``). The same clips, noise
    and seed give the same stream.

    Attributes:
        clips: clip files.
        noise: (N,) noise recordings, mono 16 kHz.
        seed: order, gaps, cuts and gains.
        skipped: clips that could not be read (``AudioError`` text), filled while
            streaming.
    """

    clips: Sequence[Path]
    noise: Sequence[np.ndarray] = ()
    seed: int = 0
    skipped: list[str] = field(default_factory=list)

    def chunks(self) -> Iterator[np.ndarray]:
        """The stream, one float32 item (gap included) at a time."""
        rng = np.random.default_rng(self.seed)
        items: list[tuple] = [("clip", path) for path in self.clips]
        for index, recording in enumerate(self.noise):
            start = 0
            while start < recording.size:
                stop = start + round(rng.uniform(*NOISE_PIECE_S) * SAMPLE_RATE)
                items.append(("noise", index, start, stop, rng.uniform(*NOISE_GAIN)))
                start = stop
        self.skipped = []
        for i in rng.permutation(len(items)):
            item = items[i]
            gap = np.zeros(round(rng.uniform(*GAP_S) * SAMPLE_RATE), dtype=np.float32)
            if item[0] == "clip":
                try:
                    audio = load_audio(item[1])
                except AudioError as err:
                    self.skipped.append(str(err))
                    continue
            else:
                _, index, start, stop, gain = item
                audio = gain * self.noise[index][start:stop]
            yield np.concatenate([gap, audio.astype(np.float32)])


def file_streams(inputs: Sequence[str | Path]) -> list[Stream]:
    """Negative recordings given by the user: files, and the audio files under folders.

    Raises:
        CalibrationError: a missing input, or a folder without audio files.
    """
    from speech_gru.core.audio import AUDIO_EXTENSIONS

    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
            if not found:
                raise CalibrationError(f"{path}: no audio files in this folder")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise CalibrationError(f"{path}: file not found")
    return [Stream(str(p), lambda p=p: iter(open_source(p, block_s=10.0))) for p in files]


def clip_streams(clips: Sequence[tuple[Path, str]], count: int, seed: int) -> list[Stream]:
    """Up to ``count`` keyword clips (a seeded choice), each alone in its own stream: one
    window of silence, the clip fitted to one second, one window of silence."""
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(clips), min(count, len(clips)), replace=False))
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)

    def chunks(path: Path) -> Iterator[np.ndarray]:
        yield np.concatenate([silence, fit_length(load_audio(path)), silence])

    return [Stream(str(clips[i][0]), lambda p=clips[i][0]: chunks(p), clips[i][1]) for i in chosen]


@dataclass
class NegativeAudio:
    """What calibration streams.

    Attributes:
        negatives: keyword-free streams.
        keywords: one-clip keyword streams, for the hit rate (may be empty).
        source: the negative audio in words (stored with the operating point).
        clip_stream: the built stream, when built from clips (its ``skipped`` clips are
            known once it has been streamed).
    """

    negatives: list[Stream]
    keywords: list[Stream]
    source: str
    clip_stream: ClipStream | None = None


def from_dataset(
    root: str | Path,
    labels: Sequence[str],
    split: str,
    datamodule: dict | None = None,
    seed: int = 0,
    hit_clips: int = 0,
) -> NegativeAudio:
    """One long negative stream from a dataset folder's split (see ``dataset_split`` and
    ``ClipStream``), and up to ``hit_clips`` of its keyword clips.

    Raises:
        CalibrationError: no such folder, or no clip without keywords and no noise in it.
    """
    data = dataset_split(root, labels, split, datamodule)
    where = "every split" if split == "all" else f"the {split} split"
    if not data.negatives and not data.noise:
        raise CalibrationError(
            f"{root}: no clips without keywords and no _background_noise_ in {where}; "
            "give recordings with --negatives"
        )
    stream = ClipStream(data.negatives, data.noise, seed)
    source = (
        f"{root}, {where}: {len(data.negatives)} clips without keywords and "
        f"{len(data.noise)} noise recordings with gaps, seed {seed}"
    )
    keywords = clip_streams(data.keywords, hit_clips, seed)
    return NegativeAudio([Stream(f"{root} ({split})", stream.chunks)], keywords, source, stream)


def from_files(inputs: Sequence[str | Path]) -> NegativeAudio:
    """The user's keyword-free recordings (see ``file_streams``).

    Raises:
        CalibrationError: a missing input, or a folder without audio files.
    """
    streams = file_streams(inputs)
    names = ", ".join(s.name for s in streams[:3])
    more = f" and {len(streams) - 3} more" if len(streams) > 3 else ""
    return NegativeAudio(streams, [], f"{len(streams)} recording{'s' * (len(streams) != 1)}: "
                         f"{names}{more}")  # fmt: skip


# -- threshold search ----------------------------------------------------------------------


def count_events(
    scores: Sequence[np.ndarray], ends: Sequence[np.ndarray], threshold: float, refractory: int
) -> int:
    """Events over streams: windows whose score reaches ``threshold``, each at least
    ``refractory`` samples after the previous event of its stream (the detector's rule).

    Args:
        scores: per stream, (N,) the score each window is held to the threshold with
            (-inf where no keyword can fire).
        ends: per stream, (N,) end sample of each window.
        threshold: the threshold.
        refractory: samples.
    """
    return sum(
        len(after_refractory(end[score >= threshold], refractory))
        for score, end in zip(scores, ends, strict=True)
    )


def grid_above(value: float) -> float:
    """The smallest multiple of ``GRID`` greater than ``value``."""
    k = math.floor(value / GRID) + 1
    while k * GRID <= value:
        k += 1
    while (k - 1) * GRID > value:
        k -= 1
    return round(k * GRID, 10)


def lowest_threshold(
    scores: Sequence[np.ndarray],
    ends: Sequence[np.ndarray],
    refractory: int,
    allowed: int,
    floor: float,
) -> float | None:
    """The lowest threshold, ``floor`` or a multiple of ``GRID`` above it, that gives at
    most ``allowed`` events (see ``count_events``); None when even 1.0 gives more.

    Events only get fewer as the threshold rises (the detector keeps the earliest event
    and skips those within the refractory time: the most that fit), so the search halves
    the scores seen on the way.
    """
    if count_events(scores, ends, floor, refractory) <= allowed:
        return floor
    values = np.unique(np.concatenate([s[s >= floor] for s in scores]))  # ascending
    lo, hi = 1, len(values)  # the first value to keep: lo; len(values) keeps none
    while lo < hi:
        mid = (lo + hi) // 2
        if count_events(scores, ends, float(values[mid]), refractory) <= allowed:
            hi = mid
        else:
            lo = mid + 1
    threshold = grid_above(float(values[lo - 1]))
    return threshold if threshold <= 1.0 else None


@dataclass
class Candidate:
    """The lowest threshold meeting the target at one averaging span.

    Attributes:
        average_s: the span.
        threshold: the threshold; None when no threshold up to 1 meets the target.
        thresholds: per-keyword thresholds (empty for one threshold).
        false_alarms: events on the negative audio at this point, counted by replaying
            the recorded outputs through the detector (at threshold 1 when None).
        hit_rate: share of the keyword clips detected at this point (None: not measured).
    """

    average_s: float
    threshold: float | None
    thresholds: dict[str, float]
    false_alarms: int
    hit_rate: float | None = None

    @property
    def level(self) -> float:
        """What ranks candidates: the threshold, or the mean per-keyword threshold."""
        if self.thresholds:
            return float(np.mean(list(self.thresholds.values())))
        return math.inf if self.threshold is None else self.threshold


@dataclass
class Calibration:
    """The outcome of ``calibrate``.

    Attributes:
        candidates: one per averaging span, in the order given.
        chosen: the candidate with the lowest threshold meeting the target (None: none).
        target: false alarms per hour.
        negative_s: seconds of negative audio.
        allowed: false alarms the target allows on that audio.
        config: the detector settings other than the point (hop, refractory time).
    """

    candidates: list[Candidate]
    chosen: Candidate | None
    target: float
    negative_s: float
    allowed: int
    config: DetectorConfig

    @property
    def measurable(self) -> bool:
        """False when a single false alarm on this much audio already exceeds the target."""
        return self.allowed >= 1

    def point(self, source: str = "") -> OperatingPoint:
        """The chosen operating point, with its provenance.

        Raises:
            CalibrationError: no candidate met the target.
        """
        if self.chosen is None or self.chosen.threshold is None:
            raise CalibrationError("no averaging span meets the target at any threshold")
        c = self.chosen
        return OperatingPoint(
            threshold=c.threshold,
            average_s=c.average_s,
            refractory_s=self.config.refractory_s,
            hop_s=self.config.hop_s,
            thresholds=dict(c.thresholds),
            target_fa_per_hour=self.target,
            negative_s=self.negative_s,
            false_alarms=c.false_alarms,
            source=source,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            hit_rate=c.hit_rate,
        )


def _unused_scorer(windows: np.ndarray) -> np.ndarray:
    raise RuntimeError("a replaying detector scores no audio")


def replay_count(
    recordings: Sequence[Recording], labels: Sequence[str], config: DetectorConfig
) -> int:
    """Events of the detector over the recorded outputs of every stream."""
    detector = StreamingDetector(_unused_scorer, labels, config)
    return sum(len(detector.replay(r.posteriors)) for r in recordings)


def hit_rate(
    recordings: Sequence[Recording], labels: Sequence[str], config: DetectorConfig
) -> float | None:
    """Share of one-clip streams in which the detector reports the clip's keyword."""
    if not recordings:
        return None
    detector = StreamingDetector(_unused_scorer, labels, config)
    hits = sum(any(e.label == r.label for e in detector.replay(r.posteriors)) for r in recordings)
    return hits / len(recordings)


def calibrate(
    negatives: Sequence[Recording],
    labels: Sequence[str],
    target: float,
    averages: Sequence[float],
    config: DetectorConfig | None = None,
    per_keyword: bool = False,
    floor: float = 0.5,
    positives: Sequence[Recording] = (),
) -> Calibration:
    """Choose the most sensitive operating point within a false-alarm target.

    Args:
        negatives: recorded outputs over keyword-free audio (see ``record``).
        labels: class names in output order.
        target: false alarms per hour of negative audio.
        averages: averaging spans to try (seconds).
        config: hop, window and refractory time (the ones the outputs were recorded at);
            default ``DetectorConfig()``.
        per_keyword: one threshold per keyword instead of one for all.
        floor: the lowest threshold considered.
        positives: recorded outputs over one-clip keyword streams (``Recording.label``
            set), for each candidate's hit rate.

    Returns:
        Every span's candidate and the chosen one.
    """
    config = config or DetectorConfig()
    if target <= 0:
        raise ValueError("target must be positive")
    negative_s = sum(r.duration_s for r in negatives)
    allowed = math.floor(target * negative_s / 3600 + 1e-9)
    mask = np.array([is_keyword(label) for label in labels])
    candidates = []
    for average_s in averages:
        span = replace(config, average_s=average_s, thresholds={})
        ends, tops, smooth = [], [], []
        for r in negatives:
            s = moving_mean(r.posteriors, span.average_count)  # (N, C)
            smooth.append(s)
            tops.append(np.argmax(s, axis=1) if len(s) else np.zeros(0, dtype=int))
            ends.append(span.window + span.hop * np.arange(len(s)))
        refractory = round(span.refractory_s * span.sample_rate)
        if per_keyword:
            thresholds = _per_keyword(
                labels, mask, smooth, tops, ends, refractory, target * negative_s / 3600, floor
            )
            threshold = None if thresholds is None else max(thresholds.values())
        else:
            scores = [
                np.where(mask[t], s[np.arange(len(s)), t], -np.inf)
                for s, t in zip(smooth, tops, strict=True)
            ]
            threshold = lowest_threshold(scores, ends, refractory, allowed, floor)
            thresholds = {}
        candidates.append(
            _checked(negatives, labels, span, threshold, thresholds or {}, allowed, positives)
        )
    meeting = [c for c in candidates if c.threshold is not None]
    chosen = min(meeting, key=lambda c: c.level) if meeting else None  # first of equals
    return Calibration(candidates, chosen, target, negative_s, allowed, config)


def _per_keyword(
    labels: Sequence[str],
    mask: np.ndarray,
    smooth: list[np.ndarray],
    tops: list[np.ndarray],
    ends: list[np.ndarray],
    refractory: int,
    budget: float,
    floor: float,
) -> dict[str, float] | None:
    """Per-keyword lowest thresholds within shares of ``budget`` false alarms (see the
    module docstring); None when a keyword cannot keep its share at any threshold."""
    scores = {
        labels[k]: [np.where(t == k, s[:, k], -np.inf) for s, t in zip(smooth, tops, strict=True)]
        for k in np.flatnonzero(mask)
    }
    at_floor = {k: count_events(v, ends, floor, refractory) for k, v in scores.items()}
    thresholds: dict[str, float] = {}
    active = sorted(scores)
    while active:
        share = budget / len(active)
        settled = [k for k in active if at_floor[k] <= share + 1e-9]
        if not settled:
            break
        for k in settled:
            thresholds[k] = floor
            budget -= at_floor[k]
            active.remove(k)
    for k in active:
        allowed = math.floor(budget / len(active) + 1e-9)
        threshold = lowest_threshold(scores[k], ends, refractory, allowed, floor)
        if threshold is None:
            return None
        thresholds[k] = threshold
    return {label: thresholds[label] for label in labels if label in thresholds}


def _checked(
    negatives: Sequence[Recording],
    labels: Sequence[str],
    span: DetectorConfig,
    threshold: float | None,
    thresholds: dict[str, float],
    allowed: int,
    positives: Sequence[Recording],
) -> Candidate:
    """The candidate with its false alarms counted by the detector itself; a threshold
    that the replay finds over the target (rounding at a step's edge) is raised a step."""
    while threshold is not None:
        config = replace(span, threshold=threshold, thresholds=thresholds)
        alarms = replay_count(negatives, labels, config)
        if alarms <= allowed:
            hits = hit_rate(positives, labels, config)
            return Candidate(span.average_s, threshold, thresholds, alarms, hits)
        thresholds = {k: min(1.0, round(t + GRID, 10)) for k, t in thresholds.items()}
        threshold = None if threshold >= 1.0 else min(1.0, round(threshold + GRID, 10))
    alarms = replay_count(negatives, labels, replace(span, threshold=1.0))
    return Candidate(span.average_s, None, {}, alarms)


def save_point(checkpoint: dict, point: OperatingPoint, out: str | Path) -> None:
    """Write ``checkpoint`` with ``point`` as its ``operating_point`` to ``out``, atomically
    (a failed write leaves the file as it was); weights and training state are untouched.
    The checkpoint format is ``speech_gru.runtime.checkpoint``'s.

    Raises:
        OSError: ``out`` cannot be written.
    """
    save_operating_point(checkpoint, point, out)
