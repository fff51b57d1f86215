"""Long recordings with known truth, built from clips: what stream evaluation listens to.

``build_recording`` lays continuous background noise (``noise_bed``: pieces of real
recordings cross-faded, or pink noise) and inserts keyword clips and other words at known,
non-overlapping times, each word at its own SNR measured on its speech span
(``speech_span``). The clips come from a ``ClipPool``: the held-out speakers of one or
more dataset-layout folders (``folder_pool``) or espeak-ng voices (``espeak_pool``). A
one-second clip (a Speech Commands word) is placed whole; a longer one (a recording of a
wake phrase with room around it) is cut to its phrase with a little room
(``placed_clip``, ``phrase_span``). A ``Recording`` is the audio with its truth, built
here or the user's own WAV file with a truth file (``speech_gru.analysis.streaming.truth``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import librosa
import numpy as np

from speech_gru.analysis.streaming.truth import Truth
from speech_gru.core.audio import SAMPLE_RATE, load_audio
from speech_gru.core.labels import BACKGROUND_NOISE, SILENCE, UNKNOWN
from speech_gru.train.corpus import (
    CLIP_SAMPLES,
    SplitRule,
    audio_files,
    background_noise,
    pink_noise,
)

SPLIT_CHOICES = ("testing", "validation", "training", "all")
ROOM_S = 0.3
"""Seconds kept on each side of the speech when a clip longer than one second is placed."""
MAX_PLACED_S = 5.0
"""The longest piece of a clip placed in a recording, in seconds (room included)."""
EDGE_FADE_S = 0.02
"""Fade at the cut edges of a trimmed clip, so its room joins the background without a click."""


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
    root: str | Path | Sequence[str | Path],
    keywords: Sequence[str],
    split: str = "testing",
    salt: str = "speech_gru",
    noise_dir: str | Path | None = None,
    validation_percent: float = 10.0,
    testing_percent: float = 10.0,
    rule: SplitRule | None = None,
) -> ClipPool:
    """Clips of one or more dataset-layout folders (one sub-folder per word or phrase).

    In each root, a sub-folder named after one of ``keywords`` gives keyword clips, every
    audio file under it included (nested folders belong to the sub-folder they sit in);
    every other sub-folder (``_unknown_`` and nested ones included) gives distractors,
    whose word is the sub-folder's name (for ``_unknown_``, the file name's first part).
    Only clips whose speaker falls in ``split`` are kept, with the recipe's folder-mode
    rule (``corpus.SplitRule``), so a model trained on that folder never heard these
    voices; a file without ``_nohash_`` in its name is its own speaker, and ``"all"``
    keeps every clip. ``rule``, when given, is the split a model was trained with (a
    cross-validation fold's included: its ``testing`` speakers are the fold's) and
    replaces ``salt`` and the two percentages.

    Noise is ``noise_dir`` when given, else the first root's ``_background_noise_``
    recordings that has any, else the roots' ``_silence_`` clips of the same split (all of
    them if the split has none), else nothing (synthetic pink noise).

    Raises:
        FileNotFoundError: a folder does not exist, or none holds a keyword clip of the split.
        ValueError: an unknown split, or no folder given.
    """
    roots = [Path(root)] if isinstance(root, str | Path) else [Path(r) for r in root]
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {SPLIT_CHOICES}, got {split!r}")
    if not roots:
        raise ValueError("no dataset folder given")
    for folder in roots:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: dataset folder not found")

    if rule is None:
        rule = SplitRule(validation_percent, testing_percent, salt)

    def keep(path: Path) -> bool:
        return split == "all" or rule(path) == split

    wanted = set(keywords)
    found: dict[str, list[ClipItem]] = {}
    distractors: list[ClipItem] = []
    silence: list[Path] = []
    for base in roots:
        for folder in sorted(p for p in base.iterdir() if p.is_dir()):
            name = folder.name
            if name == BACKGROUND_NOISE or name.startswith("."):
                continue
            if name == SILENCE:
                silence += audio_files(folder)
            elif name in wanted:
                items = [_file_item(p, name, name) for p in audio_files(folder) if keep(p)]
                found.setdefault(name, []).extend(items)
            else:
                for p in audio_files(folder):
                    if keep(p):
                        # _unknown_ holds WORD_SPEAKER_nohash_N files; other folders are words
                        word = p.name.split("_")[0] if name == UNKNOWN else name
                        distractors.append(_file_item(p, UNKNOWN, word))
    keywords_found = {k: found[k] for k in keywords if found.get(k)}  # the model's label order
    where = ", ".join(str(r) for r in roots)
    if not keywords_found:
        raise FileNotFoundError(
            f"{where}: no clips of the keywords {sorted(wanted)} for split {split!r}"
        )

    chosen = [p for p in silence if keep(p)] or silence
    noise, noise_source = [], "none"
    if noise_dir is not None:
        noise, noise_source = background_noise(None, noise_dir, synthetic=False)
    else:
        for base in roots:
            noise, noise_source = background_noise(base, None, synthetic=False)
            if noise:
                break
        else:
            noise, noise_source = background_noise(None, None, chosen, synthetic=False)
    if not noise:
        noise_source = "synthetic pink noise"
    count = sum(len(v) for v in keywords_found.values())
    fold = f", fold {rule.fold + 1} of {rule.folds}" if rule.folds else ""
    who = "all speakers" if split == "all" else f"{split} speakers, salt {rule.split_salt!r}{fold}"
    description = (
        f"{where} ({who}): {count} keyword clips, "
        f"{len(distractors)} distractor clips; noise: {noise_source}"
    )
    return ClipPool(keywords_found, distractors, noise, description)


def _synthetic_commands():  # noqa: ANN202 - the speech_gru.train.synth_espeak module
    """The espeak-ng dataset maker (``speech_gru.train.synth_espeak``), imported when used."""
    from speech_gru.train import synth_espeak

    return synth_espeak


def espeak_pool(
    keywords: Sequence[str],
    speakers: int = 8,
    seed: int = 0,
    distractor_words: Sequence[str] | None = None,
    noise_dir: str | Path | None = None,
) -> ClipPool:
    """Clips spoken by espeak-ng voices, synthesized when first used.

    The speakers are drawn with ``make_speakers(speakers, seed + 1000)``, a seed the
    synthetic training folders (``synth_espeak.make_dataset(seed=0)``) do not use.
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


def phrase_span(
    clip: np.ndarray, top_db: float = 35.0, band_hz: tuple[float, float] = (250.0, 4000.0)
) -> tuple[int, int]:
    """Sample range ``[start, end)`` of the speech in a recording with room noise around it.

    Real recordings of a phrase carry hum and rumble that ``speech_span`` (within
    ``top_db`` of the loudest frame) takes for speech. Here a frame (512 samples, 160
    apart) is speech when its energy in ``band_hz`` is above both ``top_db`` under the
    loudest frame and a third of the way from the noise floor (the quietest tenth of the
    frames that are not digital silence) to the loudest; the span runs from the first
    such frame's centre to the last one's (give or take half a hop).
    """
    clip = np.asarray(clip, dtype=np.float32)
    n_fft, hop = 512, 160
    if clip.size <= n_fft:
        return 0, int(clip.size)
    power = np.abs(librosa.stft(clip, n_fft=n_fft, hop_length=hop, center=True)) ** 2
    freqs = librosa.fft_frequencies(sr=SAMPLE_RATE, n_fft=n_fft)
    band = power[(freqs >= band_hz[0]) & (freqs <= band_hz[1])].sum(axis=0)  # (frames,)
    live = band > 1e-10
    if not live.any():
        return 0, int(clip.size)
    level = 10.0 * np.log10(np.maximum(band, 1e-12))
    peak, floor = float(level.max()), float(np.percentile(level[live], 10))
    frames = np.flatnonzero(level >= max(peak - top_db, floor + (peak - floor) / 3.0))
    start = max(0, int(frames[0]) * hop - hop // 2)  # frame i is centred on sample i * hop
    end = min(clip.size, int(frames[-1]) * hop + hop // 2)
    return start, max(end, start + 1)


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


def placed_clip(
    clip: np.ndarray,
    trim_db: float = 35.0,
    room_s: float = ROOM_S,
    max_s: float = MAX_PLACED_S,
) -> tuple[np.ndarray, int, int]:
    """The piece of a clip that goes into a recording, and its speech span in that piece.

    A clip of one second or less (a Speech Commands word) is placed whole, its speech found
    by ``speech_span``. A longer one (a recording with a phrase and room around it) is cut
    to its speech (``phrase_span``) with ``room_s`` on each side, at most ``max_s`` long (a
    longer speech span is cut at the end), its cut edges faded over ``EDGE_FADE_S``.

    Returns:
        ``(piece, start, end)``: the (M,) float32 piece and the sample range of its speech.
    """
    clip = np.asarray(clip, dtype=np.float32)
    if clip.size <= CLIP_SAMPLES:
        return (clip, *speech_span(clip, trim_db))
    s0, s1 = phrase_span(clip, trim_db)
    room = round(room_s * SAMPLE_RATE)
    a = max(0, s0 - room)
    b = min(clip.size, s1 + room, a + round(max_s * SAMPLE_RATE))
    piece = clip[a:b].copy()
    fade = min(round(EDGE_FADE_S * SAMPLE_RATE), piece.size // 2)
    ramp = np.linspace(0.0, 1.0, fade, endpoint=False, dtype=np.float32)
    if a > 0:
        piece[:fade] *= ramp
    if b < clip.size:
        piece[piece.size - fade :] *= ramp[::-1]
    return piece, s0 - a, max(s0 - a + 1, min(s1, b) - a)


def reuse_note(keywords: Sequence[Truth]) -> str:
    """One line saying which keyword clips a recording holds more than once, or ``""``.

    A label with few clips (a wake phrase with ten recordings) is placed many times in a
    long recording, each time at its own SNR, offset and background: its hit rate then
    rests on those few recordings, which a report should say.
    """
    parts = []
    for label in dict.fromkeys(t.label for t in keywords):
        placed = [t.source for t in keywords if t.label == label]
        clips = len(set(placed))
        if len(placed) > clips:
            parts.append(
                f"{label}: {clips} recordings placed {len(placed)} times "
                f"({len(placed) / clips:.1f} each on average)"
            )
    if not parts:
        return ""
    return "; ".join(parts) + ", each time at its own SNR, offset and background"


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

    Clip starts are ``gap_s`` apart (uniform), plus, after a clip longer than one second,
    its length beyond one second, so clips never overlap. A clip of one second or less is
    placed whole; a longer one (a recording of a phrase) is cut to its speech with a little
    room (``placed_clip``), and the truth spans its speech. Each slot holds a
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
        gap_s: range of the time between consecutive clip starts, in seconds (>= 1), for
            clips of one second or less.
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

    cache: dict[str, tuple[np.ndarray, int, int]] = {}

    def piece_of(item: ClipItem) -> tuple[np.ndarray, int, int]:
        if item.source not in cache:
            cache[item.source] = placed_clip(item.load(), trim_db)
        return cache[item.source]

    one_s = CLIP_SAMPLES / SAMPLE_RATE
    slots: list[tuple[int, ClipItem, float]] = []
    t = float(rng.uniform(0.5, gap_s[0]))
    while t + one_s <= duration:
        if pool.distractors and rng.random() < distractor_share:
            item = next_item(UNKNOWN, pool.distractors)
        else:
            label = labels[int(rng.integers(len(labels)))]
            item = next_item(label, pool.keywords[label])
        snr = float(rng.uniform(low, high))
        length_s = piece_of(item)[0].size / SAMPLE_RATE
        if t + length_s > duration:
            break  # a long clip that no longer fits ends the recording's words
        slots.append((round(t * SAMPLE_RATE), item, snr))
        t += float(rng.uniform(*gap_s)) + max(0.0, length_s - one_s)

    # background, then the clips on top
    noise_rms = 0.0 if math.isinf(high) else level / 10.0 ** (high / 20.0)
    wave = noise_bed(pool.noise, n, rng) * np.float32(noise_rms) if noise_rms else np.zeros(n)
    wave = wave.astype(np.float32)
    truths: list[Truth] = []
    for start, item, snr in slots:
        clip, s0, s1 = cache[item.source]
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
