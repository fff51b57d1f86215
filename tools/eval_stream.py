"""Streaming detection quality: keywords spoken into a long, noisy recording.

``speech-gru evaluate`` scores one-second clips. Live use is different: the detector
slides a window over a continuous stream, and what matters is how many spoken keywords
it reports (hit rate), how many events it reports that nobody said (false alarms per
hour) and how long after the word it reports them (latency). This tool measures that:

1. build a long recording (default 10 minutes) of background noise with keyword clips
   inserted at known, non-overlapping times, plus distractor clips of other words
   (``_unknown_``) that must not be detected; clips come from held-out speakers only;
2. stream it through ``speech_gru.stream.StreamingDetector`` with a trained checkpoint;
3. match the events against the ground truth (the span of actual speech inside each
   inserted clip) and report hits, misses, false alarms and latency.

``--sweep`` replays the model's per-hop posteriors from that one pass through the
detector at thresholds 0.5 to 0.9, so choosing an operating point costs no extra model
runs. ``--plot`` draws the averaged posteriors over time with the true keyword spans and
the events; ``--save-wav`` keeps the recording (and its ground truth as JSON) for
listening or for ``speech-gru stream --input``.

Example:
    Ten minutes of held-out speakers from a dataset-layout folder::

        python tools/eval_stream.py --checkpoint runs/x/checkpoints/best.ckpt \\
            --clips data/speech_commands_v2_dev --split testing --minutes 10 \\
            --sweep --plot stream.png --json stream.json

    A folder-free demo with espeak-ng voices::

        python tools/eval_stream.py --checkpoint runs/demo/checkpoints/best.ckpt --espeak
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from speech_gru.audio import SAMPLE_RATE, AudioError, load_audio, write_wav
from speech_gru.data import is_audio, load_noise, speaker_of, which_set
from speech_gru.labels import BACKGROUND_NOISE, SILENCE, UNKNOWN, is_keyword
from speech_gru.stream import DetectorConfig, Event, StreamingDetector

CLIP_SAMPLES = SAMPLE_RATE  # inserted clips are cut to one second
SPLIT_CHOICES = ("testing", "validation", "training", "all")
SWEEP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(9))  # 0.5 .. 0.9

Scorer = Callable[[np.ndarray], np.ndarray]


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


def _in_split(path: Path, split: str, salt: str, val_pct: float, test_pct: float) -> bool:
    return split == "all" or which_set(speaker_of(path), val_pct, test_pct, salt) == split


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
    ``split`` are kept, with the recipe's folder-mode rule
    ``which_set(speaker_of(path), validation_percent, testing_percent, salt)``, so a
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

    def files(folder: Path) -> list[Path]:
        return [p for p in sorted(folder.rglob("*")) if is_audio(p)]

    def keep(path: Path) -> bool:
        return _in_split(path, split, salt, validation_percent, testing_percent)

    wanted = set(keywords)
    found: dict[str, list[ClipItem]] = {}
    distractors: list[ClipItem] = []
    silence: list[Path] = []
    background: Path | None = None
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        if name == BACKGROUND_NOISE:
            background = folder
        elif name == SILENCE:
            silence = files(folder)
        elif name.startswith("."):
            continue
        elif name in wanted:
            items = [_file_item(p, name, name) for p in files(folder) if keep(p)]
            if items:
                found[name] = items
        else:
            for p in files(folder):
                if keep(p):
                    # _unknown_ holds WORD_SPEAKER_nohash_N files; other folders are words
                    word = p.name.split("_")[0] if name == UNKNOWN else name
                    distractors.append(_file_item(p, UNKNOWN, word))
    if not found:
        raise FileNotFoundError(
            f"{root}: no clips of the keywords {sorted(wanted)} for split {split!r}"
        )
    keywords_found = {k: found[k] for k in keywords if k in found}  # the model's label order

    if noise_dir is not None:
        noise = load_noise(Path(noise_dir))
        if not noise:
            raise FileNotFoundError(f"{noise_dir}: no readable noise audio")
        noise_source = f"{noise_dir}"
    elif background is not None and (noise := load_noise(background)):
        noise_source = f"{background}"
    elif silence:
        chosen = [p for p in silence if keep(p)] or silence
        noise = []
        for p in chosen:
            try:
                noise.append(load_audio(p))
            except AudioError:
                continue
        noise_source = f"{len(noise)} {SILENCE} clips"
    else:
        noise, noise_source = [], "synthetic pink noise"
    count = sum(len(v) for v in keywords_found.values())
    description = (
        f"{root} ({split} speakers, salt {salt!r}): {count} keyword clips, "
        f"{len(distractors)} distractor clips; noise: {noise_source}"
    )
    return ClipPool(keywords_found, distractors, noise, description)


def _synthetic_commands():  # noqa: ANN202 - the tools.make_synthetic_commands module
    try:
        from tools import make_synthetic_commands
    except ImportError:  # run as a script: tools/ itself is on sys.path
        import make_synthetic_commands  # type: ignore[no-redef]
    return make_synthetic_commands


def espeak_pool(
    keywords: Sequence[str],
    speakers: int = 8,
    seed: int = 0,
    distractor_words: Sequence[str] | None = None,
) -> ClipPool:
    """Clips spoken by espeak-ng voices, synthesized when first used.

    The speakers are drawn with ``make_speakers(speakers, seed + 1000)``, a seed the
    synthetic training folders (``make_synthetic_commands.py --seed 0``) do not use.

    Raises:
        EspeakNotFoundError: espeak-ng is not installed.
    """
    synth = _synthetic_commands()
    synth.espeak_path()
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
        f"{len(distractor_words)} distractor words; noise: synthetic pink noise"
    )
    return ClipPool(pool, distractors, [], description)


# --------------------------------------------------------------------------------------------
# Building the recording
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    """An inserted clip.

    Attributes:
        label: keyword label (``_unknown_`` for a distractor).
        start_s: start of the speech inside the clip, in recording seconds.
        end_s: end of that speech.
        clip_start_s: where the clip was inserted.
        clip_end_s: where it ends.
        source: the clip's file (or espeak voice).
        word: the word spoken.
    """

    label: str
    start_s: float
    end_s: float
    clip_start_s: float
    clip_end_s: float
    source: str = ""
    word: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def speech_span(
    clip: np.ndarray, top_db: float = 35.0, frame: int = 320, hop: int = 160
) -> tuple[int, int]:
    """Sample range ``[start, end)`` of the speech in a clip.

    Frames (20 ms, 10 ms apart) whose energy is within ``top_db`` of the loudest frame are
    speech; the span runs from the first to the last of them.
    """
    if clip.size <= frame:
        return 0, int(clip.size)
    frames = np.lib.stride_tricks.sliding_window_view(clip.astype(np.float64), frame)[::hop]
    db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    active = np.flatnonzero(db >= db.max() - top_db)
    return int(active[0] * hop), int(min(clip.size, active[-1] * hop + frame))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) noise with a 1/f power spectrum and unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1))
    spectrum[0] = 0.0
    x = np.fft.irfft(spectrum, n)
    return (x / max(float(np.sqrt(np.mean(x**2))), 1e-12)).astype(np.float32)


def noise_bed(
    recordings: Sequence[np.ndarray],
    n: int,
    rng: np.random.Generator,
    segment_s: tuple[float, float] = (2.0, 8.0),
    fade_s: float = 0.05,
) -> np.ndarray:
    """(n,) background of unit RMS: random pieces of ``recordings``, cross-faded.

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
    snr_db: float = 20.0,
    level: float = 0.05,
    gap_s: tuple[float, float] = (2.5, 6.0),
    distractor_share: float = 0.2,
    trim_db: float = 35.0,
    distractors_out: list[Truth] | None = None,
) -> tuple[np.ndarray, list[Truth]]:
    """A long recording of background noise with clips inserted at known times.

    Clip starts are ``gap_s`` apart (uniform), so clips never overlap. Each slot holds a
    distractor with probability ``distractor_share`` (when the pool has any), otherwise a
    clip of a keyword drawn uniformly; each keyword's clips are used in a shuffled cycle.
    Every clip is scaled so its speech has RMS ``level`` (its peak kept below 0.95) and
    the background's RMS is ``level / 10**(snr_db / 20)``.

    Args:
        pool: clips and noise.
        minutes: recording length.
        seed: the recording is a function of ``pool``, the settings and this seed.
        snr_db: speech-to-background ratio in dB (``inf``: no background).
        level: speech RMS of every inserted clip.
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
        raise ValueError("distractor_share must be in [0, 1)")
    rng = np.random.default_rng(seed)
    n = round(minutes * 60 * SAMPLE_RATE)
    duration = n / SAMPLE_RATE

    # where each clip goes
    labels = [label for label, items in pool.keywords.items() if items]
    cycles: dict[str, list[int]] = {}

    def next_item(key: str, items: list[ClipItem]) -> ClipItem:
        if not cycles.get(key):
            cycles[key] = list(rng.permutation(len(items)))
        return items[cycles[key].pop()]

    slots: list[tuple[int, ClipItem]] = []
    t = float(rng.uniform(0.5, gap_s[0]))
    while t + CLIP_SAMPLES / SAMPLE_RATE <= duration:
        if pool.distractors and rng.random() < distractor_share:
            item = next_item(UNKNOWN, pool.distractors)
        else:
            label = labels[int(rng.integers(len(labels)))]
            item = next_item(label, pool.keywords[label])
        slots.append((round(t * SAMPLE_RATE), item))
        t += float(rng.uniform(*gap_s))

    # background, then the clips on top
    noise_rms = 0.0 if math.isinf(snr_db) else level / 10.0 ** (snr_db / 20.0)
    wave = noise_bed(pool.noise, n, rng) * np.float32(noise_rms) if noise_rms else np.zeros(n)
    wave = wave.astype(np.float32)
    cache: dict[str, np.ndarray] = {}
    truths: list[Truth] = []
    for start, item in slots:
        if item.source not in cache:
            cache[item.source] = np.asarray(item.load(), dtype=np.float32)[:CLIP_SAMPLES]
        clip = cache[item.source]
        s0, s1 = speech_span(clip, trim_db)
        speech_rms = float(np.sqrt(np.mean(np.square(clip[s0:s1], dtype=np.float64))))
        peak = float(np.abs(clip).max())
        if speech_rms <= 1e-6:
            continue  # a silent file: leave the slot empty
        gain = min(level / speech_rms, 0.95 / peak)
        wave[start : start + clip.size] += clip * np.float32(gain)
        truth = Truth(
            label=item.label,
            start_s=(start + s0) / SAMPLE_RATE,
            end_s=(start + s1) / SAMPLE_RATE,
            clip_start_s=start / SAMPLE_RATE,
            clip_end_s=(start + clip.size) / SAMPLE_RATE,
            source=item.source,
            word=item.word,
        )
        if item.label == UNKNOWN:
            if distractors_out is not None:
                distractors_out.append(truth)
        else:
            truths.append(truth)
    np.clip(wave, -1.0, 1.0, out=wave)
    return wave, truths


# --------------------------------------------------------------------------------------------
# Matching events to the truth
# --------------------------------------------------------------------------------------------

OUTCOMES = ("hit", "wrong_label", "repeat", "distractor", "background")
"""Per-event outcome. Everything but ``hit`` is a false alarm: ``wrong_label`` overlaps a
keyword of another label, ``repeat`` a keyword already hit, ``distractor`` a distractor
clip, ``background`` nothing."""


@dataclass
class Metrics:
    """Detection results of one run.

    Attributes:
        keywords: keywords in the recording.
        hits: keywords detected with their label in time.
        false_alarms: events that are not hits.
        wrong_label: false alarms overlapping a keyword of another label.
        repeats: false alarms on a keyword that was already hit.
        distractor_alarms: false alarms on a distractor clip.
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
    def fa_per_hour(self) -> float:
        return self.false_alarms * 3600.0 / self.duration_s if self.duration_s else float("nan")

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
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}

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
    """Match detected events to the inserted keywords.

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
        distractors: distractor spans, only to classify false alarms.
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
# Streaming, replay and sweep
# --------------------------------------------------------------------------------------------


class RecordingScorer:
    """Wraps a scorer and keeps every (B, C) result, in order, for replay."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer
        self.outputs: list[np.ndarray] = []

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        probs = np.asarray(self.scorer(windows))
        self.outputs.append(probs)
        return probs

    @property
    def posteriors(self) -> np.ndarray:
        """(W, C) raw posteriors of every window scored so far."""
        return np.concatenate(self.outputs) if self.outputs else np.zeros((0, 0))


class ReplayScorer:
    """Gives back recorded posteriors in order instead of running a model."""

    def __init__(self, posteriors: np.ndarray) -> None:
        self.posteriors = posteriors
        self.position = 0

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        count = len(windows)
        if self.position + count > len(self.posteriors):
            raise RuntimeError("replay ran past the recorded posteriors (different hop?)")
        out = self.posteriors[self.position : self.position + count]
        self.position += count
        return out


def stream(
    wave: np.ndarray,
    scorer: Scorer,
    labels: Sequence[str],
    config: DetectorConfig,
    keep_trace: bool = False,
    chunk_s: float = 1.0,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Event], StreamingDetector]:
    """Push ``wave`` through a fresh detector in ``chunk_s`` pieces; flush at the end.

    ``progress`` is called with the number of samples of each chunk pushed.
    """
    detector = StreamingDetector(scorer, labels, config, keep_trace=keep_trace)
    step = max(1, round(chunk_s * config.sample_rate))
    events: list[Event] = []
    for start in range(0, wave.size, step):
        chunk = wave[start : start + step]
        events += detector.push(chunk)
        if progress is not None:
            progress(chunk.size)
    events += detector.flush()
    return events, detector


def replay(
    posteriors: np.ndarray,
    wave: np.ndarray,
    labels: Sequence[str],
    config: DetectorConfig,
) -> list[Event]:
    """Events the detector gives with ``config`` on recorded posteriors (same hop)."""
    scorer = ReplayScorer(posteriors)
    big = DetectorConfig(**{**asdict(config), "batch_windows": 512})  # grouping: speed only
    events, _ = stream(wave, scorer, labels, big, chunk_s=wave.size / config.sample_rate + 1)
    if scorer.position != len(posteriors):
        raise RuntimeError("replay scored a different number of windows (different hop?)")
    return events


def sweep(
    posteriors: np.ndarray,
    wave: np.ndarray,
    labels: Sequence[str],
    config: DetectorConfig,
    truths: Sequence[Truth],
    tolerance: float,
    distractors: Sequence[Truth] = (),
    thresholds: Sequence[float] = SWEEP_THRESHOLDS,
) -> list[dict]:
    """Hit rate and false alarms at each threshold, from one pass's posteriors."""
    rows = []
    duration = wave.size / config.sample_rate
    for threshold in thresholds:
        settings = DetectorConfig(**{**asdict(config), "threshold": float(threshold)})
        events = replay(posteriors, wave, labels, settings)
        metrics = match_events(events, truths, tolerance, duration, distractors)
        rows.append({"threshold": float(threshold), "events": len(events), **metrics.summary()})
    return rows


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    d = DetectorConfig()
    p = argparse.ArgumentParser(
        description="Measure streaming keyword detection on a long recording with "
        "keywords inserted at known times.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="trained checkpoint (.ckpt)")
    src = p.add_argument_group("recording")
    src.add_argument("--clips", help="dataset-layout folder of clips (one sub-folder per word)")
    src.add_argument(
        "--espeak", action="store_true", help="speak the keywords with espeak-ng instead"
    )
    src.add_argument("--espeak-speakers", type=int, default=8, help="espeak-ng voices")
    src.add_argument(
        "--split", choices=SPLIT_CHOICES, default="testing", help="speakers the clips come from"
    )
    src.add_argument(
        "--split-salt", default="speech_gru", help="the recipe's data.split_salt (folder mode)"
    )
    src.add_argument(
        "--noise", help="folder of noise recordings (overrides the folder's own noise)"
    )
    src.add_argument("--minutes", type=float, default=10.0, help="recording length")
    src.add_argument("--snr", type=float, default=20.0, help="speech-to-noise ratio, dB")
    src.add_argument(
        "--gap", type=float, nargs=2, default=(2.5, 6.0), metavar=("MIN", "MAX"),
        help="seconds between clip starts",
    )  # fmt: skip
    src.add_argument(
        "--distractors", type=float, default=0.2, help="share of clips that are other words"
    )
    src.add_argument("--seed", type=int, default=0, help="random seed of the recording")
    det = p.add_argument_group("detector")
    det.add_argument("--hop", type=float, default=d.hop_s, help="seconds between windows")
    det.add_argument("--average", type=float, default=d.average_s, help="posterior averaging, s")
    det.add_argument("--threshold", type=float, default=d.threshold, help="detection threshold")
    det.add_argument("--refractory", type=float, default=d.refractory_s, help="seconds")
    det.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    out = p.add_argument_group("scoring and output")
    out.add_argument(
        "--tolerance", type=float, default=1.0, help="seconds after the speech end that count"
    )
    out.add_argument("--sweep", action="store_true", help="also report thresholds 0.5..0.9")
    out.add_argument("--plot", help="PNG of the posterior trace")
    out.add_argument("--plot-seconds", type=float, default=60.0, help="seconds plotted")
    out.add_argument("--save-wav", help="write the recording (and its ground truth .json)")
    out.add_argument("--json", help="write all numbers and settings to this file")
    return p


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def print_report(
    console,  # noqa: ANN001 - a rich Console
    metrics: Metrics,
    distractors: int,
    config: DetectorConfig,
    labels: Sequence[str] = (),
) -> None:
    """Headline table and per-keyword table (in ``labels`` order when given)."""
    from rich.table import Table

    s = metrics.summary()
    table = Table(title="Streaming detection", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("audio", f"{metrics.duration_s / 60:.1f} min")
    table.add_row("keywords (+ distractors)", f"{metrics.keywords} (+{distractors})")
    table.add_row("hits", f"{metrics.hits}")
    table.add_row("hit rate", f"{100 * metrics.hit_rate:.1f} %")
    table.add_row("misses", f"{metrics.misses}")
    table.add_row("false alarms", f"{metrics.false_alarms}")
    table.add_row("false alarms / hour", f"{metrics.fa_per_hour:.1f}")
    table.add_row("  wrong label", f"{metrics.wrong_label}")
    table.add_row("  on distractor words", f"{metrics.distractor_alarms}")
    table.add_row("  repeats", f"{metrics.repeats}")
    table.add_row("  on background", f"{metrics.background_alarms}")
    table.add_row(
        "latency mean / median",
        f"{_fmt(s['mean_latency_s'])} / {_fmt(s['median_latency_s'])} s",
    )
    table.add_row(
        "detector",
        f"hop {config.hop_s:g} s, average {config.average_s:g} s, threshold "
        f"{config.threshold:g}, refractory {config.refractory_s:g} s",
    )
    console.print(table)
    per = Table(title="Per keyword", title_justify="left")
    for name in ("label", "keywords", "hits", "hit rate", "false alarms"):
        per.add_column(name, justify="left" if name == "label" else "right")
    rank = {label: i for i, label in enumerate(labels)}
    for label, row in sorted(metrics.per_label.items(), key=lambda kv: rank.get(kv[0], 1e9)):
        rate = row["hits"] / row["keywords"] if row["keywords"] else float("nan")
        per.add_row(
            label, str(row["keywords"]), str(row["hits"]), _fmt(100 * rate, ".0f"),
            str(row["false_alarms"]),
        )  # fmt: skip
    console.print(per)


def print_sweep(console, rows: list[dict]) -> None:  # noqa: ANN001
    from rich.table import Table

    table = Table(title="Threshold sweep (same posteriors)", title_justify="left")
    columns = ("threshold", "hits", "hit rate %", "false alarms", "FA / hour", "median latency s")
    for name in columns:
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            f"{r['threshold']:.2f}", f"{r['hits']}/{r['keywords']}",
            _fmt(100 * r["hit_rate"], ".1f"), str(r["false_alarms"]),
            _fmt(r["false_alarms_per_hour"], ".1f"), _fmt(r["median_latency_s"]),
        )  # fmt: skip
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from speech_gru.infer import ModelLoadError, load_classifier

    console = Console()
    err = Console(stderr=True)
    if bool(args.clips) == bool(args.espeak):
        err.print("error: give exactly one of --clips DIR or --espeak")
        return 2
    torch.set_num_threads(max(1, args.threads))
    try:
        config = DetectorConfig(
            hop_s=args.hop,
            average_s=args.average,
            threshold=args.threshold,
            refractory_s=args.refractory,
            batch_windows=32,
        )
        classifier = load_classifier(args.checkpoint)
        keywords = [label for label in classifier.labels if is_keyword(label)]
        if args.espeak:
            pool = espeak_pool(keywords, args.espeak_speakers, args.seed)
        else:
            pool = folder_pool(args.clips, keywords, args.split, args.split_salt, args.noise)
        started = time.perf_counter()
        distractors: list[Truth] = []
        wave, truths = build_recording(
            pool,
            minutes=args.minutes,
            seed=args.seed,
            snr_db=args.snr,
            gap_s=tuple(args.gap),
            distractor_share=args.distractors if pool.distractors else 0.0,
            distractors_out=distractors,
        )
    except (ModelLoadError, FileNotFoundError, ValueError, AudioError, RuntimeError) as e:
        err.print(f"error: {e}")
        return 2
    err.print(f"source: {pool.description}")
    err.print(
        f"built {wave.size / SAMPLE_RATE / 60:.1f} min: {len(truths)} keywords, "
        f"{len(distractors)} distractors, SNR {args.snr:g} dB "
        f"({time.perf_counter() - started:.1f} s)"
    )
    if args.save_wav:
        wav_path = Path(args.save_wav)
        write_wav(wav_path, wave)
        sidecar = wav_path.with_suffix(".json")
        sidecar.write_text(
            json.dumps(
                {
                    "sample_rate": SAMPLE_RATE,
                    "duration_s": wave.size / SAMPLE_RATE,
                    "source": pool.description,
                    "settings": _settings(args),
                    "keywords": [t.to_dict() for t in truths],
                    "distractors": [t.to_dict() for t in distractors],
                },
                indent=1,
            )
        )
        err.print(f"wrote {wav_path} and {sidecar}")

    def score(windows: np.ndarray) -> np.ndarray:
        return classifier.predict(torch.from_numpy(windows), batch_size=len(windows)).numpy()

    recorder = RecordingScorer(score)
    started = time.perf_counter()
    with Progress(
        TextColumn("streaming"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s audio"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task("stream", total=wave.size / SAMPLE_RATE)
        events, detector = stream(
            wave,
            recorder,
            classifier.labels,
            config,
            keep_trace=bool(args.plot),
            progress=lambda n: bar.advance(task, n / SAMPLE_RATE),
        )
    elapsed = time.perf_counter() - started
    err.print(
        f"streamed in {elapsed:.1f} s ({detector.windows_scored} windows, "
        f"{elapsed / (wave.size / SAMPLE_RATE):.3f} x real time, {args.threads} thread(s))"
    )
    duration = wave.size / SAMPLE_RATE
    metrics = match_events(events, truths, args.tolerance, duration, distractors)
    print_report(console, metrics, len(distractors), config, classifier.labels)

    rows = []
    if args.sweep:
        rows = sweep(
            recorder.posteriors, wave, classifier.labels, config, truths, args.tolerance,
            distractors,
        )  # fmt: skip
        print_sweep(console, rows)
    if args.plot:
        plot_trace(
            args.plot,
            wave,
            detector.trace_times,
            np.stack(detector.trace),
            classifier.labels,
            truths,
            events,
            metrics.outcomes,
            config.threshold,
            seconds=args.plot_seconds,
            distractors=distractors,
            title=f"{Path(args.checkpoint).name}: {pool.description}",
        )
        err.print(f"wrote {args.plot}")
    if args.json:
        report = {
            "settings": _settings(args),
            "detector": asdict(config),
            "source": pool.description,
            "distractors": len(distractors),
            "stream_seconds": elapsed,
            "windows_scored": detector.windows_scored,
            "metrics": metrics.to_dict(),
            "sweep": rows,
            "events": [
                {**e.to_dict(), "outcome": o} for e, o in zip(events, metrics.outcomes, strict=True)
            ],
            "truths": [t.to_dict() for t in truths],
            "distractor_truths": [t.to_dict() for t in distractors],
        }
        Path(args.json).write_text(json.dumps(report, indent=1))
        err.print(f"wrote {args.json}")
    return 0


def _settings(args: argparse.Namespace) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(args).items()}


if __name__ == "__main__":
    sys.exit(main())
