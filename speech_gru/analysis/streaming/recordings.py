"""Streaming detection quality: keywords spoken into a long recording, with known truth.

``speech-gru evaluate`` scores one-second clips. Live use is different: the detector
slides a window over a continuous stream, and what matters is how many spoken keywords
it reports (hit rate), how many events it reports that nobody said (false alarms per
hour, split by cause) and how long after the word it reports them (latency). This module
measures that, with no Lightning and no audio device:

1. a recording with truth: either built here (``build_recording``: background noise with
   keyword clips and other words inserted at known, non-overlapping times, each word at
   its own SNR; clips from held-out speakers of a folder, or espeak-ng voices), or the
   user's own WAV file with a truth file (``read_truth``);
2. ``stream`` pushes it through ``speech_gru.runtime.detector.StreamingDetector``, and
   ``RecordingScorer`` keeps the model's per-hop posteriors;
3. ``match_events`` compares the events with the truth: hits, misses, false alarms by
   cause, latency;
4. ``det_curve`` replays the recorded posteriors through a decision rule at many
   thresholds (no extra model runs) and gives miss rate against false alarms per hour;
   the rule can be the detector's own (``mean_then_threshold``, equal to
   ``StreamingDetector``) or an alternative (``peak_picking``, ``consecutive_windows``),
   so decision logic is compared on the same posteriors rather than assumed.

Truth files (``read_truth``) are CSV with a header ``label,start_s,end_s`` or JSON (a list
of ``{"label", "start_s", "end_s"}`` objects, or an object whose ``keywords`` and
``distractors`` lists hold them, as ``--save-wav`` writes). A row whose label is one of
the model's keywords is a keyword; ``_unknown_`` or any other word marks another word.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import itertools
import json
import math
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import librosa
import numpy as np

from speech_gru.core.audio import SAMPLE_RATE, load_audio
from speech_gru.core.labels import BACKGROUND_NOISE, SILENCE, UNKNOWN, is_keyword
from speech_gru.runtime.detector import (
    DetectorConfig,
    Event,
    RecordingScorer,
    Scorer,
    StreamingDetector,
    after_refractory,
    moving_mean,
)
from speech_gru.runtime.source import array_chunks
from speech_gru.train.corpus import (
    CLIP_SAMPLES,
    SplitRule,
    audio_files,
    background_noise,
    pink_noise,
)

SPLIT_CHOICES = ("testing", "validation", "training", "all")
DET_THRESHOLDS = (
    *(round(0.05 + 0.025 * i, 3) for i in range(37)),  # 0.05 .. 0.95
    0.96, 0.97, 0.98, 0.99,
)  # fmt: skip
"""Thresholds of a DET curve: fine near 1, where a softmax keyword score usually sits."""
FA_TARGETS = (1.0, 5.0)
"""False alarms per hour at which operating points are reported."""
AREA_RANGE = (1.0, 100.0)
"""False alarms per hour over which ``mean_miss_rate`` averages (log-spaced)."""


# --------------------------------------------------------------------------------------------
# Sources of clips
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipItem:
    """One clip that can be inserted into the recording.

    Attributes:
        label: the keyword it is, or ``_unknown_`` for a distractor.
        word: the word spoken (differs from ``label`` for distractors).
        source: where it comes from (file path, or ``espeak:WORD:SPEAKER``).
        load: returns the clip as mono float32 at 16 kHz.
    """

    label: str
    word: str
    source: str
    load: Callable[[], np.ndarray] = field(repr=False, compare=False)


@dataclass
class ClipPool:
    """Everything a recording is built from.

    Attributes:
        keywords: keyword label -> its clips.
        distractors: clips of other words, which must not be detected.
        noise: background recordings (any lengths); empty means synthetic pink noise.
        description: one line naming the sources, for the report.
    """

    keywords: dict[str, list[ClipItem]]
    distractors: list[ClipItem]
    noise: list[np.ndarray]
    description: str


def _file_item(path: Path, label: str, word: str) -> ClipItem:
    return ClipItem(label, word, str(path), lambda: load_audio(path))


def folder_pool(
    root: str | Path,
    keywords: Sequence[str],
    split: str = "testing",
    salt: str = "speech_gru",
    noise_dir: str | Path | None = None,
    validation_percent: float = 10.0,
    testing_percent: float = 10.0,
) -> ClipPool:
    """Clips of a dataset-layout folder (one sub-folder per word).

    Sub-folders named after one of ``keywords`` give keyword clips; every other word
    (``_unknown_`` included) gives distractors. Only clips whose speaker falls in
    ``split`` are kept, with the recipe's folder-mode rule (``corpus.SplitRule``), so a
    model trained on that folder never heard these voices.

    Noise is ``noise_dir`` when given, else the folder's ``_background_noise_``
    recordings, else its ``_silence_`` clips of the same split (all of them if the split
    has none), else nothing (synthetic pink noise).

    Raises:
        FileNotFoundError: the folder does not exist, or holds no keyword clip of the split.
        ValueError: an unknown split.
    """
    root = Path(root)
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")

    rule = SplitRule(validation_percent, testing_percent, salt)

    def keep(path: Path) -> bool:
        return split == "all" or rule(path) == split

    wanted = set(keywords)
    found: dict[str, list[ClipItem]] = {}
    distractors: list[ClipItem] = []
    silence: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        if name == BACKGROUND_NOISE:
            continue
        if name == SILENCE:
            silence = audio_files(folder)
        elif name.startswith("."):
            continue
        elif name in wanted:
            items = [_file_item(p, name, name) for p in audio_files(folder) if keep(p)]
            if items:
                found[name] = items
        else:
            for p in audio_files(folder):
                if keep(p):
                    # _unknown_ holds WORD_SPEAKER_nohash_N files; other folders are words
                    word = p.name.split("_")[0] if name == UNKNOWN else name
                    distractors.append(_file_item(p, UNKNOWN, word))
    if not found:
        raise FileNotFoundError(
            f"{root}: no clips of the keywords {sorted(wanted)} for split {split!r}"
        )
    keywords_found = {k: found[k] for k in keywords if k in found}  # the model's label order

    chosen = [p for p in silence if keep(p)] or silence
    noise, noise_source = background_noise(root, noise_dir, chosen, synthetic=False)
    if not noise:
        noise_source = "synthetic pink noise"
    count = sum(len(v) for v in keywords_found.values())
    description = (
        f"{root} ({split} speakers, salt {salt!r}): {count} keyword clips, "
        f"{len(distractors)} distractor clips; noise: {noise_source}"
    )
    return ClipPool(keywords_found, distractors, noise, description)


def _synthetic_commands():  # noqa: ANN202 - the tools.make_synthetic_commands module
    """The repository's espeak-ng dataset maker (``tools/make_synthetic_commands.py``)."""
    try:
        from tools import make_synthetic_commands

        return make_synthetic_commands
    except ImportError:  # the console script, outside the repository root
        name = "make_synthetic_commands"
        path = Path(__file__).resolve().parents[2] / "tools" / f"{name}.py"
        if not path.is_file():
            raise RuntimeError(f"--espeak needs tools/{name}.py of the source tree") from None
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
        return module


def espeak_pool(
    keywords: Sequence[str],
    speakers: int = 8,
    seed: int = 0,
    distractor_words: Sequence[str] | None = None,
    noise_dir: str | Path | None = None,
) -> ClipPool:
    """Clips spoken by espeak-ng voices, synthesized when first used.

    The speakers are drawn with ``make_speakers(speakers, seed + 1000)``, a seed the
    synthetic training folders (``make_synthetic_commands.py --seed 0``) do not use.
    The background is ``noise_dir``'s recordings, or pink noise.

    Raises:
        EspeakNotFoundError: espeak-ng is not installed (a RuntimeError).
        FileNotFoundError: ``noise_dir`` holds no readable audio.
    """
    synth = _synthetic_commands()
    synth.espeak_path()
    noise = background_noise(None, noise_dir, synthetic=False)[0] if noise_dir else []
    voices = synth.make_speakers(speakers, seed + 1000)
    if distractor_words is None:
        distractor_words = [w for w in synth.UNKNOWN if w not in keywords]

    def item(word: str, label: str, index: int, speaker) -> ClipItem:  # noqa: ANN001
        def load() -> np.ndarray:
            rng = np.random.default_rng([seed, 0xE5, index])
            return synth.synthesize_clip(word, speaker, rng)

        return ClipItem(label, word, f"espeak:{word}:{speaker.id}", load)

    pool: dict[str, list[ClipItem]] = {}
    distractors: list[ClipItem] = []
    index = 0
    for word in [*keywords, *distractor_words]:
        for speaker in voices:
            label = word if word in keywords else UNKNOWN
            clip = item(word, label, index, speaker)
            index += 1
            if label == UNKNOWN:
                distractors.append(clip)
            else:
                pool.setdefault(word, []).append(clip)
    description = (
        f"espeak-ng: {len(voices)} voices x {len(keywords)} keywords, "
        f"{len(distractor_words)} distractor words; noise: {noise_dir or 'synthetic pink noise'}"
    )
    return ClipPool(pool, distractors, noise, description)


# --------------------------------------------------------------------------------------------
# The recording and its truth
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """A spoken word of the recording.

    Attributes:
        label: keyword label (``_unknown_`` for another word, a distractor).
        start_s: start of the speech, in recording seconds.
        end_s: end of that speech.
        clip_start_s: where the inserted clip starts (``start_s`` for a user's truth).
        clip_end_s: where it ends (``end_s`` for a user's truth).
        source: the clip's file (or espeak voice).
        word: the word spoken.
        snr_db: the word's speech-to-background ratio as inserted (None: not known).
    """

    label: str
    start_s: float
    end_s: float
    clip_start_s: float
    clip_end_s: float
    source: str = ""
    word: str = ""
    snr_db: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Recording:
    """A recording with its truth.

    Attributes:
        wave: (N,) float32 samples at 16 kHz.
        keywords: the keywords spoken, in time order.
        others: the other words spoken (distractors), in time order.
        description: one line naming where it comes from.
    """

    wave: np.ndarray
    keywords: list[Truth]
    others: list[Truth]
    description: str

    @property
    def duration_s(self) -> float:
        return self.wave.size / SAMPLE_RATE


def speech_span(
    clip: np.ndarray, top_db: float = 35.0, frame: int = 320, hop: int = 160
) -> tuple[int, int]:
    """Sample range ``[start, end)`` of the speech in a clip: ``librosa.effects.trim``'s
    span of frames (``frame`` long, ``hop`` apart) within ``top_db`` of the loudest."""
    if clip.size <= frame:
        return 0, int(clip.size)
    _, (start, end) = librosa.effects.trim(
        clip.astype(np.float32), top_db=top_db, frame_length=frame, hop_length=hop
    )
    return int(start), int(end)


def noise_bed(
    recordings: Sequence[np.ndarray],
    n: int,
    rng: np.random.Generator,
    segment_s: tuple[float, float] = (2.0, 8.0),
    fade_s: float = 0.05,
) -> np.ndarray:
    """(n,) continuous background of unit RMS: random pieces of ``recordings``, cross-faded.

    Each piece (``segment_s`` long, or a whole recording when shorter) is scaled to unit
    RMS and joined to the previous one with an equal-power cross-fade of ``fade_s``.
    Without usable recordings the background is pink noise.
    """
    fade = max(1, int(fade_s * SAMPLE_RATE))
    usable = [r for r in recordings if r.size > 2 * fade and float(np.abs(r).max()) > 0]
    if not usable:
        return pink_noise(n, rng)
    ramp = np.linspace(0.0, np.pi / 2, fade, dtype=np.float32)
    fade_in, fade_out = np.sin(ramp), np.cos(ramp)
    out = np.zeros(n + 2 * SAMPLE_RATE * int(math.ceil(segment_s[1])), dtype=np.float32)
    pos = 0
    while pos < n:
        rec = usable[int(rng.integers(len(usable)))]
        length = min(rec.size, max(2 * fade + 1, int(rng.uniform(*segment_s) * SAMPLE_RATE)))
        offset = int(rng.integers(rec.size - length + 1))
        piece = rec[offset : offset + length].astype(np.float32)
        piece = piece - piece.mean()
        rms = float(np.sqrt(np.mean(piece**2)))
        if rms > 0:  # a digitally silent piece stays silent
            piece = piece / rms
        if pos > 0:
            piece[:fade] *= fade_in
        piece[-fade:] *= fade_out
        out[pos : pos + length] += piece
        pos += length - fade
    return out[:n]


def build_recording(
    pool: ClipPool,
    minutes: float = 10.0,
    seed: int = 0,
    snr_db: float | tuple[float, float] = (5.0, 20.0),
    level: float = 0.05,
    gap_s: tuple[float, float] = (2.5, 6.0),
    distractor_share: float = 0.4,
    trim_db: float = 35.0,
    distractors_out: list[Truth] | None = None,
) -> tuple[np.ndarray, list[Truth]]:
    """A long recording of continuous background noise with words inserted at known times.

    Clip starts are ``gap_s`` apart (uniform), so clips never overlap. Each slot holds a
    distractor (another word) with probability ``distractor_share`` (when the pool has
    any), otherwise a clip of a keyword drawn uniformly; each keyword's clips are used in
    a shuffled cycle. The background has RMS ``level / 10**(high / 20)``; each word gets
    its own SNR, uniform in ``snr_db = (low, high)``, so the loudest words have speech RMS
    ``level`` (a clip's peak is kept below 0.95, which can lower its SNR; the SNR it got
    is in its ``Truth.snr_db``).

    Args:
        pool: clips and noise.
        minutes: recording length.
        seed: the recording is a function of ``pool``, the settings and this seed.
        snr_db: speech-to-background ratio of each word in dB, a range ``(low, high)`` or
            one value; ``inf``: no background (then every word has speech RMS ``level``).
        level: speech RMS of the loudest inserted words.
        gap_s: range of the time between consecutive clip starts, in seconds (>= 1).
        distractor_share: share of slots holding a distractor.
        trim_db: speech is the part of a clip within this many dB of its loudest frame.
        distractors_out: if given, the distractors' spans are appended to it.

    Returns:
        The (N,) float32 recording, N = round(minutes * 60 * 16000), and the inserted
        keywords' truths in time order (keywords only).

    Raises:
        ValueError: bad settings, or a pool without keyword clips.
    """
    if not pool.keywords or not any(pool.keywords.values()):
        raise ValueError("the pool has no keyword clips")
    if not 1.0 <= gap_s[0] <= gap_s[1]:
        raise ValueError(f"gap_s must satisfy 1 <= low <= high, got {gap_s}")
    if not 0.0 <= distractor_share < 1.0:
        raise ValueError(f"the distractor share must be in [0, 1), got {distractor_share}")
    low, high = (snr_db, snr_db) if np.isscalar(snr_db) else map(float, snr_db)
    if math.isnan(low) or math.isnan(high) or low > high or (math.isinf(high) and low != high):
        raise ValueError(f"the SNR range must be LOW <= HIGH dB, got {low:g} {high:g}")
    rng = np.random.default_rng(seed)
    n = round(minutes * 60 * SAMPLE_RATE)
    duration = n / SAMPLE_RATE

    # where each clip goes, and at what SNR
    labels = [label for label, items in pool.keywords.items() if items]
    cycles: dict[str, list[int]] = {}

    def next_item(key: str, items: list[ClipItem]) -> ClipItem:
        if not cycles.get(key):
            cycles[key] = list(rng.permutation(len(items)))
        return items[cycles[key].pop()]

    slots: list[tuple[int, ClipItem, float]] = []
    t = float(rng.uniform(0.5, gap_s[0]))
    while t + CLIP_SAMPLES / SAMPLE_RATE <= duration:
        if pool.distractors and rng.random() < distractor_share:
            item = next_item(UNKNOWN, pool.distractors)
        else:
            label = labels[int(rng.integers(len(labels)))]
            item = next_item(label, pool.keywords[label])
        slots.append((round(t * SAMPLE_RATE), item, float(rng.uniform(low, high))))
        t += float(rng.uniform(*gap_s))

    # background, then the clips on top
    noise_rms = 0.0 if math.isinf(high) else level / 10.0 ** (high / 20.0)
    wave = noise_bed(pool.noise, n, rng) * np.float32(noise_rms) if noise_rms else np.zeros(n)
    wave = wave.astype(np.float32)
    cache: dict[str, np.ndarray] = {}
    truths: list[Truth] = []
    for start, item, snr in slots:
        if item.source not in cache:
            cache[item.source] = np.asarray(item.load(), dtype=np.float32)[:CLIP_SAMPLES]
        clip = cache[item.source]
        s0, s1 = speech_span(clip, trim_db)
        speech_rms = float(np.sqrt(np.mean(np.square(clip[s0:s1], dtype=np.float64))))
        peak = float(np.abs(clip).max())
        if speech_rms <= 1e-6:
            continue  # a silent file: leave the slot empty
        target = noise_rms * 10.0 ** (snr / 20.0) if noise_rms else level
        gain = min(target / speech_rms, 0.95 / peak)
        wave[start : start + clip.size] += clip * np.float32(gain)
        truth = Truth(
            label=item.label,
            start_s=(start + s0) / SAMPLE_RATE,
            end_s=(start + s1) / SAMPLE_RATE,
            clip_start_s=start / SAMPLE_RATE,
            clip_end_s=(start + clip.size) / SAMPLE_RATE,
            source=item.source,
            word=item.word,
            snr_db=20.0 * math.log10(gain * speech_rms / noise_rms) if noise_rms else None,
        )
        if item.label == UNKNOWN:
            if distractors_out is not None:
                distractors_out.append(truth)
        else:
            truths.append(truth)
    np.clip(wave, -1.0, 1.0, out=wave)
    return wave, truths


class TruthError(ValueError):
    """A truth file that cannot be used; ``str()`` is one line naming the file."""


TRUTH_FIELDS = ("label", "start_s", "end_s")


def read_truth(path: str | Path, duration_s: float | None = None) -> list[Truth]:
    """Read the words spoken in a recording from a CSV or JSON file.

    CSV: a header naming at least ``label,start_s,end_s`` (other columns are ignored),
    then one row per word. JSON: a list of objects with those keys, or an object whose
    ``keywords`` and ``distractors`` lists hold them (the ``--save-wav`` sidecar). Times
    are seconds from the start of the recording; a word's label is kept as written (see
    ``split_truth``).

    Args:
        path: the file; ``.json`` is read as JSON, anything else as CSV.
        duration_s: the recording's length; a word ending after it is an error.

    Returns:
        The words in time order.

    Raises:
        TruthError: unreadable file, missing field, bad number, ``start_s >= end_s``,
            a time outside the recording, or a ``_silence_`` row.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "not text"
        raise TruthError(f"{path}: cannot read the truth file ({reason})") from None
    rows: list[tuple[str, dict]] = []  # (where, row)
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise TruthError(f"{path}: not JSON ({err.msg}, line {err.lineno})") from None
        if isinstance(data, dict):
            data = [*data.get("keywords", []), *data.get("distractors", [])]
        if not isinstance(data, list):
            raise TruthError(f"{path}: expected a list of {{label, start_s, end_s}} objects")
        rows = [(f"item {i + 1}", row) for i, row in enumerate(data)]
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = [f for f in TRUTH_FIELDS if f not in (reader.fieldnames or [])]
        if missing:
            raise TruthError(
                f"{path}: the CSV header must name {','.join(TRUTH_FIELDS)} "
                f"(missing {', '.join(missing)})"
            )
        rows = [(f"line {reader.line_num}", row) for row in reader]
    truths = []
    for where, row in rows:
        if not isinstance(row, dict) or any(row.get(f) in (None, "") for f in TRUTH_FIELDS):
            raise TruthError(f"{path}: {where}: needs {', '.join(TRUTH_FIELDS)}")
        label = str(row["label"]).strip()
        try:
            start, end = float(row["start_s"]), float(row["end_s"])
        except (TypeError, ValueError):
            raise TruthError(f"{path}: {where}: start_s and end_s must be numbers") from None
        if label == SILENCE:
            raise TruthError(f"{path}: {where}: {SILENCE} is not a word (leave silence out)")
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise TruthError(f"{path}: {where}: needs 0 <= start_s < end_s, got {start}, {end}")
        if duration_s is not None and end > duration_s + 1e-6:
            raise TruthError(
                f"{path}: {where}: ends at {end:g} s, after the recording ({duration_s:.2f} s)"
            )
        word = str(row.get("word") or label)
        truths.append(Truth(label, start, end, start, end, str(path), word))
    return sorted(truths, key=lambda t: t.start_s)


def split_truth(
    truths: Sequence[Truth], keywords: Sequence[str]
) -> tuple[list[Truth], list[Truth]]:
    """Keywords and other words of a truth list, for a model with these ``keywords``.

    Returns:
        ``(keywords, others)``: rows whose label is one of ``keywords``, and every other row
        relabelled ``_unknown_`` (its ``word`` kept).
    """
    wanted = set(keywords)
    found = [t for t in truths if t.label in wanted]
    others = [replace(t, label=UNKNOWN) for t in truths if t.label not in wanted]
    return found, others


# --------------------------------------------------------------------------------------------
# Matching events to the truth
# --------------------------------------------------------------------------------------------

OUTCOMES = ("hit", "wrong_label", "repeat", "distractor", "background")
"""Per-event outcome. Everything but ``hit`` is a false alarm: ``wrong_label`` overlaps a
keyword of another label (wrong keyword), ``repeat`` a keyword already hit,
``distractor`` another word, ``background`` nothing (noise)."""
CAUSES = {
    "wrong_label": "wrong keyword",
    "distractor": "another word",
    "background": "noise",
    "repeat": "repeat",
}
"""False-alarm outcomes and how reports name them."""


@dataclass
class Metrics:
    """Detection results of one run.

    Attributes:
        keywords: keywords in the recording.
        hits: keywords detected with their label in time.
        false_alarms: events that are not hits.
        wrong_label: false alarms overlapping a keyword of another label.
        repeats: false alarms on a keyword that was already hit.
        distractor_alarms: false alarms on another word.
        background_alarms: false alarms on background only.
        duration_s: recording length.
        tolerance_s: how long after the speech end an event still counts.
        latencies: event time minus speech end, for each hit (seconds).
        outcomes: per event (in the order given), one of ``OUTCOMES``.
        matched: per truth, the index of the event that hit it, or None.
        per_label: label -> {"keywords", "hits", "false_alarms"}.
    """

    keywords: int
    hits: int
    false_alarms: int
    wrong_label: int
    repeats: int
    distractor_alarms: int
    background_alarms: int
    duration_s: float
    tolerance_s: float
    latencies: list[float]
    outcomes: list[str]
    matched: list[int | None]
    per_label: dict[str, dict[str, int]]

    @property
    def misses(self) -> int:
        return self.keywords - self.hits

    @property
    def hit_rate(self) -> float:
        return self.hits / self.keywords if self.keywords else float("nan")

    @property
    def miss_rate(self) -> float:
        return 1.0 - self.hit_rate

    def per_hour(self, count: int) -> float:
        """``count`` events as a rate per hour of this recording."""
        return count * 3600.0 / self.duration_s if self.duration_s else float("nan")

    @property
    def fa_per_hour(self) -> float:
        return self.per_hour(self.false_alarms)

    @property
    def by_cause(self) -> dict[str, int]:
        """False alarms per cause (keys of ``CAUSES``)."""
        return {cause: self.outcomes.count(cause) for cause in CAUSES}

    @property
    def mean_latency(self) -> float:
        return float(np.mean(self.latencies)) if self.latencies else float("nan")

    @property
    def median_latency(self) -> float:
        return float(np.median(self.latencies)) if self.latencies else float("nan")

    def summary(self) -> dict:
        """The headline numbers (JSON-ready; NaN becomes None)."""
        out = {
            "keywords": self.keywords,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": self.hit_rate,
            "miss_rate": self.miss_rate,
            "false_alarms": self.false_alarms,
            "false_alarms_per_hour": self.fa_per_hour,
            "wrong_label": self.wrong_label,
            "repeats": self.repeats,
            "distractor_alarms": self.distractor_alarms,
            "background_alarms": self.background_alarms,
            "mean_latency_s": self.mean_latency,
            "median_latency_s": self.median_latency,
            "duration_s": self.duration_s,
            "tolerance_s": self.tolerance_s,
        }
        out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
        out["false_alarms_per_hour_by_cause"] = {
            cause: self.per_hour(count) for cause, count in self.by_cause.items()
        }
        return out

    def to_dict(self) -> dict:
        return {
            **self.summary(),
            "latencies_s": self.latencies,
            "outcomes": self.outcomes,
            "matched": self.matched,
            "per_label": self.per_label,
        }


def match_events(
    events: Sequence[Event],
    truths: Sequence[Truth],
    tolerance: float = 1.0,
    duration_s: float | None = None,
    distractors: Sequence[Truth] = (),
) -> Metrics:
    """Match detected events to the keywords spoken.

    In time order, an event hits the earliest unmatched truth of its label whose span
    ``[start_s, end_s + tolerance]`` contains the event's ``time_s``; each truth is hit at
    most once. Every other event is a false alarm, classified (in this order of
    precedence) as ``wrong_label``, ``repeat``, ``distractor`` or ``background``.

    Args:
        events: detector events.
        truths: the keywords (``label`` must be a keyword).
        tolerance: seconds after the speech end that still count (window + averaging).
        duration_s: recording length for the per-hour rate; default the last truth's or
            event's end.
        distractors: spans of other words, only to classify false alarms.
    """
    if duration_s is None:
        ends = [t.clip_end_s for t in truths] + [e.time_s for e in events]
        duration_s = max(ends, default=0.0)

    def covers(truth: Truth, t: float) -> bool:
        return truth.start_s <= t <= truth.end_s + tolerance

    matched: list[int | None] = [None] * len(truths)
    outcomes = [""] * len(events)
    latencies: list[float] = []
    labels = list(dict.fromkeys([t.label for t in truths] + [e.label for e in events]))
    per_label = {label: {"keywords": 0, "hits": 0, "false_alarms": 0} for label in labels}
    for truth in truths:
        per_label[truth.label]["keywords"] += 1
    order = sorted(range(len(events)), key=lambda i: events[i].time_s)
    for i in order:
        event = events[i]
        candidates = [
            j
            for j, truth in enumerate(truths)
            if matched[j] is None and truth.label == event.label and covers(truth, event.time_s)
        ]
        if candidates:
            j = min(candidates, key=lambda k: truths[k].start_s)
            matched[j] = i
            outcomes[i] = "hit"
            latencies.append(event.time_s - truths[j].end_s)
            per_label[event.label]["hits"] += 1
            continue
        per_label[event.label]["false_alarms"] += 1
        overlapping = [truth for truth in truths if covers(truth, event.time_s)]
        if any(truth.label != event.label for truth in overlapping):
            outcomes[i] = "wrong_label"
        elif overlapping:
            outcomes[i] = "repeat"
        elif any(covers(d, event.time_s) for d in distractors):
            outcomes[i] = "distractor"
        else:
            outcomes[i] = "background"
    hits = outcomes.count("hit")
    return Metrics(
        keywords=len(truths),
        hits=hits,
        false_alarms=len(events) - hits,
        wrong_label=outcomes.count("wrong_label"),
        repeats=outcomes.count("repeat"),
        distractor_alarms=outcomes.count("distractor"),
        background_alarms=outcomes.count("background"),
        duration_s=float(duration_s),
        tolerance_s=float(tolerance),
        latencies=latencies,
        outcomes=outcomes,
        matched=matched,
        per_label=per_label,
    )


# --------------------------------------------------------------------------------------------
# Streaming, and decision rules replayed on the recorded posteriors
# --------------------------------------------------------------------------------------------


def stream(
    wave: np.ndarray,
    scorer: Scorer,
    labels: Sequence[str],
    config: DetectorConfig,
    keep_trace: bool = False,
    chunk_s: float = 1.0,
    progress: Callable[[float], None] | None = None,
) -> tuple[list[Event], StreamingDetector]:
    """Push ``wave`` through a fresh detector in ``chunk_s`` pieces; flush at the end.

    ``progress`` is called with the seconds of each chunk once it is scored.
    """
    detector = StreamingDetector(scorer, labels, config, keep_trace=keep_trace)
    step = max(1, round(chunk_s * config.sample_rate))
    events = list(detector.events(array_chunks(wave, step), progress))
    return events, detector


@dataclass(frozen=True)
class Candidates:
    """What a decision rule would report, before the threshold and the refractory time.

    Window ``i`` is the one ending at sample ``config.window + i * config.hop``.

    Attributes:
        hop: (K,) increasing index of the window at which the event would be reported.
        label: (K,) class index.
        score: (K,) the value compared with the threshold (an event when ``>=``).
        best: (K,) index of the window reported as the event's span.
    """

    hop: np.ndarray
    label: np.ndarray
    score: np.ndarray
    best: np.ndarray


Decision = Callable[[np.ndarray, np.ndarray, DetectorConfig], Candidates]
"""(W, C) posteriors, (C,) keyword mask, settings -> candidates."""


def _no_candidates() -> Candidates:
    empty = np.zeros(0, dtype=np.int64)
    return Candidates(empty, empty, np.zeros(0), empty)


def _best(p: np.ndarray, first: np.ndarray, last: np.ndarray, label: np.ndarray) -> np.ndarray:
    """For each k, the index in ``first[k]..last[k]`` where ``p[:, label[k]]`` is highest."""
    return np.array(
        [f + int(np.argmax(p[f : e + 1, c])) for f, e, c in zip(first, last, label, strict=True)],
        dtype=np.int64,
    )


def mean_then_threshold(
    posteriors: np.ndarray, keyword_mask: np.ndarray, config: DetectorConfig
) -> Candidates:
    """The detector's rule: posteriors averaged over ``average_s``; the top class, if a
    keyword, is an event when its average reaches the threshold."""
    p = np.asarray(posteriors, dtype=np.float64)
    if not len(p):
        return _no_candidates()
    smoothed = moving_mean(p, config.average_count)
    top = smoothed.argmax(axis=1)
    hop = np.flatnonzero(keyword_mask[top])
    first = np.maximum(0, hop - config.average_count + 1)
    label = top[hop]
    return Candidates(hop, label, smoothed[hop, label], _best(p, first, hop, label))


def peak_picking(
    posteriors: np.ndarray, keyword_mask: np.ndarray, config: DetectorConfig
) -> Candidates:
    """Local maxima of the averaged posteriors: window ``i`` is a peak of its top class
    ``c`` when ``s[i, c] >= s[i - 1, c]`` and ``s[i, c] > s[i + 1, c]``. The peak's score
    is compared with the threshold; it is reported one hop later, when it is known."""
    p = np.asarray(posteriors, dtype=np.float64)
    if len(p) < 2:
        return _no_candidates()
    s = moving_mean(p, config.average_count)
    i = np.arange(len(p) - 1)
    c = s[i].argmax(axis=1)
    before = np.where(i > 0, s[np.maximum(i - 1, 0), c], -np.inf)
    peak = keyword_mask[c] & (s[i, c] >= before) & (s[i, c] > s[i + 1, c])
    i, c = i[peak], c[peak]
    first = np.maximum(0, i - config.average_count + 1)
    return Candidates(i + 1, c, s[i, c], _best(p, first, i, c))


def consecutive_windows(
    posteriors: np.ndarray, keyword_mask: np.ndarray, config: DetectorConfig
) -> Candidates:
    """No averaging: an event when the last N raw windows (N = ``average_count``) all have
    the same keyword on top, each at least the threshold (their minimum is the score)."""
    p = np.asarray(posteriors, dtype=np.float64)
    n = config.average_count
    if len(p) < n:
        return _no_candidates()
    top = p.argmax(axis=1)
    runs = np.lib.stride_tricks.sliding_window_view(top, n)  # (W - n + 1, n)
    hop = np.flatnonzero((runs == runs[:, -1:]).all(axis=1) & keyword_mask[runs[:, -1]]) + n - 1
    label = top[hop]
    scores = p[hop[:, None] - np.arange(n)[None, :], label[:, None]].min(axis=1)
    return Candidates(hop, label, scores, _best(p, hop - n + 1, hop, label))


DECISIONS: dict[str, Decision] = {
    "mean-then-threshold": mean_then_threshold,
    "peak": peak_picking,
    "consecutive": consecutive_windows,
}
"""Decision rules by name; the first is ``StreamingDetector``'s own."""


def decide(
    candidates: Candidates,
    labels: Sequence[str],
    config: DetectorConfig,
    threshold: float | None = None,
) -> list[Event]:
    """Events of ``candidates``, with the detector's refractory time.

    Args:
        candidates: what a decision rule gave.
        labels: the C class names.
        config: detector settings.
        threshold: one threshold for every keyword; None: the config's own (its
            per-keyword ``thresholds``, else ``threshold``).
    """
    if threshold is None:
        limits = np.array([config.thresholds.get(label, config.threshold) for label in labels])
    else:
        limits = np.full(len(labels), threshold)
    window, hop, rate = config.window, config.hop, config.sample_rate
    refractory = round(config.refractory_s * rate)
    above = np.flatnonzero(candidates.score >= limits[candidates.label])
    ends = window + hop * candidates.hop[above].astype(np.int64)
    events = []
    for i in after_refractory(ends.tolist(), refractory):
        k, end = above[i], int(ends[i])
        best_end = window + hop * int(candidates.best[k])
        events.append(
            Event(
                label=labels[int(candidates.label[k])],
                start_s=(best_end - window) / rate,
                end_s=best_end / rate,
                score=float(candidates.score[k]),
                time_s=end / rate,
            )
        )
    return events


def _keyword_mask(labels: Sequence[str]) -> np.ndarray:
    return np.array([is_keyword(label) for label in labels])


def replay(
    posteriors: np.ndarray,
    labels: Sequence[str],
    config: DetectorConfig,
    decision: Decision = mean_then_threshold,
) -> list[Event]:
    """Events a decision rule gives with ``config`` on recorded (W, C) posteriors.

    With ``mean_then_threshold`` these are ``StreamingDetector``'s events exactly.
    """
    return decide(decision(posteriors, _keyword_mask(labels), config), labels, config)


def det_curve(
    posteriors: np.ndarray,
    labels: Sequence[str],
    config: DetectorConfig,
    truths: Sequence[Truth],
    tolerance: float,
    duration_s: float,
    distractors: Sequence[Truth] = (),
    decision: Decision = mean_then_threshold,
    thresholds: Sequence[float] = DET_THRESHOLDS,
) -> list[dict]:
    """Miss rate and false alarms per hour at each threshold, from one pass's posteriors.

    Each threshold applies to every keyword (per-keyword ``thresholds`` are set aside).

    Returns:
        One row per threshold, in the given order: ``threshold``, ``events`` and the
        ``Metrics.summary()`` numbers (``miss_rate``, ``false_alarms_per_hour``, ...).
    """
    candidates = decision(posteriors, _keyword_mask(labels), config)
    rows = []
    for threshold in thresholds:
        events = decide(candidates, labels, config, float(threshold))
        metrics = match_events(events, truths, tolerance, duration_s, distractors)
        rows.append({"threshold": float(threshold), "events": len(events), **metrics.summary()})
    return rows


def operating_point(rows: Sequence[dict], target_fa_per_hour: float) -> dict | None:
    """The DET row with the lowest miss rate among those within ``target_fa_per_hour``
    (ties: fewer false alarms, then the higher threshold); None when none is."""
    within = [
        r
        for r in rows
        if r["miss_rate"] is not None and r["false_alarms_per_hour"] <= target_fa_per_hour
    ]
    if not within:
        return None
    return min(within, key=lambda r: (r["miss_rate"], r["false_alarms_per_hour"], -r["threshold"]))


def mean_miss_rate(rows: Sequence[dict], fa_range: tuple[float, float] = AREA_RANGE) -> float:
    """Area under the DET curve: the lowest miss rate reachable within x false alarms per
    hour, averaged over x log-spaced across ``fa_range`` (1.0 where nothing reaches x).
    Lower is better; NaN without keywords."""
    points = [(r["false_alarms_per_hour"], r["miss_rate"]) for r in rows]
    if not points or any(miss is None for _, miss in points):
        return float("nan")
    grid = np.geomspace(fa_range[0], fa_range[1], 41)
    return float(np.mean([min([m for fa, m in points if fa <= x], default=1.0) for x in grid]))


# --------------------------------------------------------------------------------------------
# One evaluation, its report
# --------------------------------------------------------------------------------------------


@dataclass
class StreamReport:
    """Everything one evaluation measured.

    Attributes:
        recording: the recording and its truth.
        labels: the model's C class names.
        config: detector settings.
        events: the detector's events.
        metrics: those events matched against the truth.
        det: decision rule name -> its DET rows (``det_curve``).
        windows_scored: windows the model scored.
        stream_seconds: wall time of the streaming pass.
        trace_times: (W,) end time of each window (when a trace was kept).
        trace: (W, C) averaged posteriors (when a trace was kept), else None.
    """

    recording: Recording
    labels: list[str]
    config: DetectorConfig
    events: list[Event]
    metrics: Metrics
    det: dict[str, list[dict]]
    windows_scored: int
    stream_seconds: float
    trace_times: list[float] = field(default_factory=list)
    trace: np.ndarray | None = None

    def comparison(self, targets: Sequence[float] = FA_TARGETS) -> dict[str, dict]:
        """Per decision rule: ``mean_miss_rate`` and the operating point at each target."""
        return {
            name: {
                "mean_miss_rate": _none_if_nan(mean_miss_rate(rows)),
                "operating_points": {f"{t:g}": operating_point(rows, t) for t in targets},
            }
            for name, rows in self.det.items()
        }

    def to_dict(self) -> dict:
        """All numbers, JSON-ready (NaN becomes None)."""
        r = self.recording
        return _json_safe(
            {
                "source": r.description,
                "duration_s": r.duration_s,
                "detector": asdict(self.config),
                "windows_scored": self.windows_scored,
                "stream_seconds": self.stream_seconds,
                "metrics": self.metrics.to_dict(),
                "det": self.det,
                "comparison": self.comparison(),
                "area_fa_per_hour": list(AREA_RANGE),
                "events": [
                    {**e.to_dict(), "outcome": o}
                    for e, o in zip(self.events, self.metrics.outcomes, strict=True)
                ],
                "truths": [t.to_dict() for t in r.keywords],
                "distractor_truths": [t.to_dict() for t in r.others],
            }
        )


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _json_safe(value: object) -> object:
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def evaluate(
    recording: Recording,
    scorer: Scorer,
    labels: Sequence[str],
    config: DetectorConfig,
    tolerance: float = 1.0,
    decisions: Sequence[str] = ("mean-then-threshold",),
    thresholds: Sequence[float] = DET_THRESHOLDS,
    keep_trace: bool = False,
    progress: Callable[[float], None] | None = None,
) -> StreamReport:
    """Stream a recording once through the detector, match, and draw the DET curves.

    Args:
        recording: audio and truth.
        scorer: (B, window) waveforms -> (B, C) probabilities (the model).
        labels: the C class names.
        config: detector settings.
        tolerance: seconds after a word's end an event may still hit it.
        decisions: names in ``DECISIONS`` whose DET curves to draw.
        thresholds: thresholds of the DET curves.
        keep_trace: keep the averaged posteriors (for ``plot_trace``).
        progress: called with the seconds of each chunk streamed.
    """
    import time

    recorder = RecordingScorer(scorer)
    started = time.perf_counter()
    events, detector = stream(
        recording.wave, recorder, labels, config, keep_trace=keep_trace, progress=progress
    )
    elapsed = time.perf_counter() - started
    args = (recording.keywords, tolerance, recording.duration_s, recording.others)
    metrics = match_events(events, *args)
    det = {
        name: det_curve(recorder.posteriors, labels, config, *args, DECISIONS[name], thresholds)
        for name in decisions
    }
    return StreamReport(
        recording, list(labels), config, events, metrics, det, detector.windows_scored,
        elapsed, detector.trace_times, np.stack(detector.trace) if detector.trace else None,
    )  # fmt: skip


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def _num(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def format_report(report: StreamReport, sweep: bool = False) -> str:
    """The report as text: headline numbers, false alarms by cause, per keyword, the
    operating points at ``FA_TARGETS`` and, with several decision rules, their comparison;
    ``sweep`` adds every DET row of the first rule."""
    m, c, rec = report.metrics, report.config, report.recording
    one = m.per_hour(1)
    threshold = f"threshold {c.threshold:g}"
    if c.thresholds:
        threshold = f"thresholds {min(c.thresholds.values()):g}-{max(c.thresholds.values()):g}"
    lines = [
        f"audio                  {rec.duration_s / 60:.1f} min, {m.keywords} keywords, "
        f"{len(rec.others)} other words",
        f"detector               hop {c.hop_s:g} s, average {c.average_s:g} s, {threshold}, "
        f"refractory {c.refractory_s:g} s",
        f"hit rate               {_pct(m.hit_rate)} ({m.hits} of {m.keywords}, {m.misses} missed)",
        f"false alarms / hour    {_num(m.fa_per_hour, '.1f')} ({m.false_alarms}; "
        f"one is {_num(one, '.1f')} / hour here)",
    ]
    for cause, count in m.by_cause.items():
        lines.append(f"  {CAUSES[cause]:<20} {_num(m.per_hour(count), '.1f')} ({count})")
    lines.append(
        f"latency mean / median  {_num(m.mean_latency)} / {_num(m.median_latency)} s "
        "after the word's end"
    )
    lines += ["", f"{'keyword':<12} {'spoken':>6} {'hits':>5} {'hit rate':>9} {'false alarms':>13}"]
    rank = {label: i for i, label in enumerate(report.labels)}
    for label, row in sorted(m.per_label.items(), key=lambda kv: rank.get(kv[0], 1e9)):
        rate = row["hits"] / row["keywords"] if row["keywords"] else float("nan")
        lines.append(
            f"{label:<12} {row['keywords']:>6} {row['hits']:>5} {_pct(rate):>9} "
            f"{row['false_alarms']:>13}"
        )
    comparison = report.comparison()
    for name, rows in report.det.items():
        lines += [
            "",
            f"DET ({name}, thresholds {rows[0]['threshold']:g}..{rows[-1]['threshold']:g}):",
        ]
        for target, point in comparison[name]["operating_points"].items():
            if point is None:
                lines.append(f"  at <= {target} FA/h: no threshold gets there on this recording")
            else:
                lines.append(
                    f"  at <= {target} FA/h: miss rate {_pct(point['miss_rate'])} "
                    f"(threshold {point['threshold']:g}, "
                    f"{_num(point['false_alarms_per_hour'], '.1f')} FA/h)"
                )
    if sweep and report.det:
        name, rows = next(iter(report.det.items()))
        lines += ["", f"{'threshold':>9} {'hits':>9} {'miss rate':>9} {'FA':>5} {'FA/h':>7} "
                  f"{'median latency s':>16}"]  # fmt: skip
        for r in rows:
            lines.append(
                f"{r['threshold']:>9.3g} {r['hits']:>4}/{r['keywords']:<4} "
                f"{_pct(r['miss_rate']):>9} {r['false_alarms']:>5} "
                f"{_num(r['false_alarms_per_hour'], '.1f'):>7} {_num(r['median_latency_s']):>16}"
            )
    if len(report.det) > 1:
        lo, hi = AREA_RANGE
        targets = [f"miss @{t:g} FA/h" for t in FA_TARGETS]
        lines += [
            "",
            "decision rules on the same posteriors (lower is better):",
            f"  {'rule':<20} {f'mean miss {lo:g}-{hi:g} FA/h':>22} "
            + " ".join(f"{t:>14}" for t in targets),
        ]
        for name, row in comparison.items():
            points = [row["operating_points"][f"{t:g}"] for t in FA_TARGETS]
            lines.append(
                f"  {name:<20} {_pct(row['mean_miss_rate']):>22} "
                + " ".join(f"{_pct(p['miss_rate'] if p else None):>14}" for p in points)
            )
        scored = {
            n: r["mean_miss_rate"] for n, r in comparison.items() if r["mean_miss_rate"] is not None
        }
        if scored:
            best = [n for n, v in scored.items() if v == min(scored.values())]
            lines.append(f"  lowest mean miss rate on this recording: {', '.join(best)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def plot_det(
    path: str | Path,
    det: dict[str, list[dict]],
    duration_s: float,
    targets: Sequence[float] = FA_TARGETS,
    title: str = "",
) -> None:
    """DET curves: miss rate against false alarms per hour (log scale), one per rule.

    A recording of D seconds resolves false alarms in steps of 3600 / D per hour; rows
    with none are drawn left of that step and of the targets, on a tick labelled 0. Each
    curve runs from the highest threshold to the lowest.

    Args:
        path: PNG file to write.
        det: decision rule name -> its DET rows (``det_curve``); rows without keywords
            (miss rate None) are left out.
        duration_s: recording length.
        targets: false-alarm rates marked with a dotted line.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = 3600.0 / duration_s
    zero = min([step, *targets]) / 2
    fig, ax = plt.subplots(figsize=(7, 5))
    top = max(targets, default=1.0)
    styles = zip(*(("-", "--", ":", "-."), ("o", "s", "^", "d")), strict=True)
    for (name, rows), (line, marker) in zip(det.items(), itertools.cycle(styles), strict=False):
        points = [  # from the highest threshold down
            (max(r["false_alarms_per_hour"], zero), 100 * r["miss_rate"])
            for r in sorted(rows, key=lambda r: -r["threshold"])
            if r["miss_rate"] is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            top = max(top, *xs)
            ax.plot(xs, ys, ls=line, marker=marker, ms=3.5, lw=1.3, label=name)
    for t in targets:
        ax.axvline(t, color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    decades = (0.1, 1, 10, 100, 1000, 10000, 100000)
    ticks = [zero, *[x for x in decades if 1.9 * zero <= x <= 3 * top]]
    ax.set_xticks(ticks, ["0", *[f"{x:g}" for x in ticks[1:]]])
    ax.set_xlabel(f"false alarms per hour (one false alarm = {step:.3g} / hour here)")
    ax.set_ylabel("miss rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    if title:
        ax.set_title(textwrap.fill(title, 90), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_trace(
    path: str | Path,
    wave: np.ndarray,
    trace_times: Sequence[float],
    trace: np.ndarray,
    labels: Sequence[str],
    truths: Sequence[Truth],
    events: Sequence[Event],
    outcomes: Sequence[str],
    threshold: float,
    seconds: float = 60.0,
    distractors: Sequence[Truth] = (),
    title: str = "",
) -> None:
    """Averaged keyword posteriors over the first ``seconds`` of the recording.

    Top: the waveform's envelope. Bottom: one line per keyword, the threshold dashed,
    true keyword spans shaded in the keyword's colour and named, distractors shaded grey,
    and the events marked (hits green, false alarms red).

    Args:
        path: PNG file to write.
        wave: (N,) recording.
        trace_times: (W,) end time of each scored window.
        trace: (W, C) averaged posteriors.
        labels: the C class names.
        truths, events, outcomes: ground truth, events and their outcomes.
        threshold: detection threshold.
        seconds: length shown from the start.
        distractors: distractor spans.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    end = min(seconds, wave.size / SAMPLE_RATE)
    times = np.asarray(trace_times, dtype=np.float64)
    trace = np.asarray(trace, dtype=np.float64).reshape(len(times), -1)
    shown = times <= end
    keywords = [i for i, label in enumerate(labels) if is_keyword(label)]
    # tab10 with its grey swapped for indigo: grey marks distractors
    palette = [*plt.get_cmap("tab10").colors[:7], "#393b79", *plt.get_cmap("tab10").colors[8:]]
    if len(keywords) > len(palette):
        palette = list(plt.get_cmap("tab20").colors)
    colour = {labels[i]: palette[k % len(palette)] for k, i in enumerate(keywords)}

    fig, (ax_wave, ax) = plt.subplots(
        2, 1, figsize=(14, 5.2), sharex=True, gridspec_kw={"height_ratios": [1, 3.2]}
    )
    # waveform envelope: min/max per 20 ms
    block = SAMPLE_RATE // 50
    head = wave[: int(end * SAMPLE_RATE) // block * block].reshape(-1, block)
    env_t = (np.arange(head.shape[0]) + 0.5) * block / SAMPLE_RATE
    ax_wave.fill_between(env_t, head.min(axis=1), head.max(axis=1), color="0.35", lw=0)
    ax_wave.set_yticks([])
    ax_wave.set_ylabel("audio")

    for truth in distractors:
        if truth.clip_start_s < end:
            for a in (ax, ax_wave):
                a.axvspan(truth.start_s, truth.end_s, color="0.6", alpha=0.25, lw=0)
            ax.text(
                (truth.start_s + truth.end_s) / 2, 1.02, f"({truth.word})", ha="center",
                va="bottom", fontsize=7, color="0.35", clip_on=False,
            )  # fmt: skip
    for truth in truths:
        if truth.clip_start_s < end:
            c = colour.get(truth.label, "0.5")
            for a in (ax, ax_wave):
                a.axvspan(truth.start_s, truth.end_s, color=c, alpha=0.22, lw=0)
            ax.text(
                (truth.start_s + truth.end_s) / 2, 1.02, truth.label, ha="center",
                va="bottom", fontsize=8, color=c, fontweight="bold", clip_on=False,
            )  # fmt: skip
    for i in keywords:
        ax.plot(times[shown], trace[shown, i], color=colour[labels[i]], lw=1.2, label=labels[i])
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    for event, outcome in zip(events, outcomes, strict=True):
        if event.time_s <= end:
            hit = outcome == "hit"
            ax.plot(
                event.time_s, event.score, marker="v" if hit else "X", ms=9,
                color="green" if hit else "red", mec="k", mew=0.6, zorder=5,
            )  # fmt: skip
            if not hit:
                ax.text(
                    event.time_s, event.score + 0.04, event.label, color="red", fontsize=7,
                    ha="center",
                )  # fmt: skip
    handles, names = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], marker="v", color="green", mec="k", ls="", ms=8),
        Line2D([], [], marker="X", color="red", mec="k", ls="", ms=8),
    ]
    names += ["hit", "false alarm"]
    ax.legend(handles, names, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8)
    ax.set_xlim(0, end)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("time (s); shaded: true speech spans (grey: distractor words)")
    ax.set_ylabel("averaged posterior")
    if title:
        ax_wave.set_title(title, fontsize=10, pad=4)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
