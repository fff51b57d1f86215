"""Pocketsphinx keyphrase search on a recording with known truth: a baseline for a wake phrase.

``speech-gru evaluate-stream --save-wav FILE.wav`` keeps the recording it scores a model on,
and its truth as FILE.json. This tool runs pocketsphinx's keyphrase search (kws) for the
phrase over that whole recording, as one continuous utterance, at a sweep of kws
thresholds (``--thresholds``; by default 12 log-spaced from 1e-50 to 1e-1), and matches
its detections with the truth by the project's rule (``match_events``: a detection hits
the earliest unmatched phrase whose span ``[start_s, end_s + tolerance]`` holds its end;
everything else is a false alarm). It prints and writes (``--json``) per threshold: hits,
hit rate, false alarms and false alarms per hour, the rows ``speech-gru evaluate-stream``
gives for its DET curve, so the two compare at equal false-alarm rates.

The phrase is the truth's keyword label with ``_`` read as a space (``hey_computer``:
"hey computer"), or ``--keyphrase``. Each word must be in pocketsphinx's English dictionary
(its first pronunciation is the one kws uses), or be given with ``--pronounce
WORD="PH ONES"``. All thresholds run in one pass: each gets its own copy of the phrase
(words renamed ``WORD.tN``, same phones) with its own threshold in one keyphrase list;
kws scores each phrase apart from the others, so the detections equal those of one run per
threshold, for the cost of about one (a 60-minute recording takes about two minutes on
one core).

Pocketsphinx is a benchmark dependency only (``pip install pocketsphinx``); the package
never imports it.

Example:
    speech-gru evaluate-stream --checkpoint hey_computer.ckpt \\
        --clips wakewords_dev speech_commands_v2_dev --split all --snr 10 10 \\
        --minutes 60 --noise speech_commands_v2_dev/_silence_ --save-wav rec.wav
    python -m tools.bench_pocketsphinx rec.wav --json pocketsphinx.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from speech_gru.analysis.streaming.matching import match_events
from speech_gru.analysis.streaming.truth import TruthError, read_truth, split_truth
from speech_gru.core.audio import SAMPLE_RATE, AudioError, load_audio
from speech_gru.core.labels import is_keyword
from speech_gru.runtime.detector import Event

DEFAULT_THRESHOLDS = tuple(float(t) for t in np.logspace(-50, -1, 12))
"""kws thresholds swept by default: 1e-50 .. 1e-1, log-spaced (lower finds more)."""
INSTALL = "pip install pocketsphinx"
CHUNK_SAMPLES = 10 * SAMPLE_RATE  # audio handed to the decoder per call


class BenchError(Exception):
    """A failure the user can fix; ``str()`` is one line."""


def keyphrase_of(label: str) -> str:
    """The phrase pocketsphinx searches for a label: ``hey_computer`` -> ``hey computer``."""
    return " ".join(label.replace("_", " ").lower().split())


def _pocketsphinx():  # noqa: ANN202 - the pocketsphinx module
    try:
        import pocketsphinx
    except ImportError:
        raise BenchError(f"pocketsphinx is not installed: {INSTALL}") from None
    return pocketsphinx


def parse_pronunciations(text: Sequence[str]) -> dict[str, str]:
    """``WORD=PHONES`` arguments as {word: phones}."""
    out = {}
    for item in text:
        word, sep, phones = item.partition("=")
        if not sep or not word.strip() or not phones.split():
            raise BenchError(f'--pronounce {item!r}: expected WORD="PH ONES"')
        out[word.strip().lower()] = " ".join(phones.upper().split())
    return out


def decode_sweep(
    wave: np.ndarray,
    keyphrase: str,
    thresholds: Sequence[float],
    label: str,
    pronounce: dict[str, str] | None = None,
) -> tuple[list[list[Event]], dict[str, str], float]:
    """Pocketsphinx kws for ``keyphrase`` over a whole recording, at each threshold.

    Args:
        wave: (N,) float32 samples at 16 kHz.
        keyphrase: the words to find, separated by spaces.
        thresholds: kws thresholds (probabilities; lower finds more).
        label: the label the events carry.
        pronounce: phones of words missing from the dictionary (or to replace its own).

    Returns:
        The events at each threshold (in the given order; ``time_s`` is the end of the
        detected phrase), the phones used per word, and the decoding wall time in seconds.

    Raises:
        BenchError: pocketsphinx missing, an empty phrase, a word without phones, or
            phones pocketsphinx refuses.
    """
    ps = _pocketsphinx()
    words = keyphrase.split()
    if not words:
        raise BenchError("the keyphrase is empty")
    if not thresholds:
        raise BenchError("no threshold to sweep")
    decoder = ps.Decoder(lm=None, loglevel="FATAL")
    pronounce = pronounce or {}
    phones = {w: pronounce.get(w) or decoder.lookup_word(w) for w in words}
    missing = [w for w, p in phones.items() if not p]
    if missing:
        raise BenchError(
            f"{keyphrase!r}: {', '.join(repr(w) for w in missing)} not in pocketsphinx's "
            f'dictionary (give the phones: --pronounce {missing[0]}="PH ONES")'
        )
    lines = []
    try:
        for i, threshold in enumerate(thresholds):
            for j, word in enumerate(words):
                last = i == len(thresholds) - 1 and j == len(words) - 1
                decoder.add_word(f"{word}.t{i}", phones[word], last)
            lines.append(" ".join(f"{w}.t{i}" for w in words) + f" /{float(threshold):.6e}/")
    except (RuntimeError, ValueError) as err:
        raise BenchError(f"pocketsphinx refused the phones {phones} ({err})") from None
    with tempfile.TemporaryDirectory() as folder:
        keyfile = Path(folder) / "sweep.kws"
        keyfile.write_text("\n".join(lines) + "\n")
        decoder.add_kws("sweep", str(keyfile))
        decoder.activate_search("sweep")
    frame_rate = float(decoder.config["frate"])
    started = time.perf_counter()
    decoder.start_utt()
    for i in range(0, wave.size, CHUNK_SAMPLES):
        chunk = np.round(np.asarray(wave[i : i + CHUNK_SAMPLES], dtype=np.float64) * 32768)
        decoder.process_raw(np.clip(chunk, -32768, 32767).astype("<i2").tobytes(), False, False)
    decoder.end_utt()
    elapsed = time.perf_counter() - started
    events: list[list[Event]] = [[] for _ in thresholds]
    for seg in decoder.seg() or []:
        first = seg.word.split()[0]
        index = int(first.rpartition(".t")[2])
        start, end = seg.start_frame / frame_rate, (seg.end_frame + 1) / frame_rate
        events[index].append(Event(label, start, end, float(seg.prob), end))
    for found in events:
        found.sort(key=lambda e: e.time_s)
    return events, phones, elapsed


def score_sweep(
    events: Sequence[Sequence[Event]],
    thresholds: Sequence[float],
    keywords: Sequence,
    others: Sequence,
    tolerance: float,
    duration_s: float,
) -> list[dict]:
    """One row per threshold, as ``det_curve`` gives them: ``threshold``, ``events`` and
    the ``Metrics.summary()`` numbers (``hits``, ``hit_rate``, ``false_alarms_per_hour``, ...),
    plus each event's ``outcome`` under ``outcomes``."""
    rows = []
    for threshold, found in zip(thresholds, events, strict=True):
        metrics = match_events(found, keywords, tolerance, duration_s, others)
        rows.append(
            {
                "threshold": float(threshold),
                "events": len(found),
                **metrics.summary(),
                "detections": [
                    {**e.to_dict(), "outcome": o}
                    for e, o in zip(found, metrics.outcomes, strict=True)
                ],
            }
        )
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def format_table(rows: Sequence[dict]) -> str:
    """The sweep as text: threshold, hits, hit rate, false alarms, false alarms per hour."""
    lines = [f"{'threshold':>9} {'hits':>9} {'hit rate':>9} {'FA':>5} {'FA/h':>8}"]
    for r in rows:
        hits = f"{r['hits']}/{r['keywords']}"
        lines.append(
            f"{r['threshold']:>9.2g} {hits:>9} {_pct(r['hit_rate']):>9} "
            f"{r['false_alarms']:>5} {r['false_alarms_per_hour']:>8.1f}"
        )
    return "\n".join(lines)


def bench(
    recording: str | Path,
    truth: str | Path | None = None,
    label: str | None = None,
    keyphrase: str | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    tolerance: float = 1.0,
    pronounce: dict[str, str] | None = None,
) -> dict:
    """Run the sweep on a recording and its truth; everything ``--json`` writes.

    Args:
        recording: the WAV file.
        truth: its truth (default: the recording's name with ``.json``, as
            ``evaluate-stream --save-wav`` writes it).
        label: the phrase's label in the truth; default its only keyword label.
        keyphrase: the words to search; default ``keyphrase_of(label)``.
        thresholds: kws thresholds.
        tolerance: seconds after a phrase's end that a detection still hits it.
        pronounce: phones of words missing from the dictionary.

    Raises:
        BenchError: an unreadable recording or truth, no such label, pocketsphinx missing,
            or a word it cannot say.
    """
    recording = Path(recording)
    truth = Path(truth) if truth else recording.with_suffix(".json")
    try:
        wave = load_audio(recording)
        duration = wave.size / SAMPLE_RATE
        truths = read_truth(truth, duration)
    except (AudioError, TruthError) as err:
        raise BenchError(str(err)) from None
    labels = sorted({t.label for t in truths if is_keyword(t.label)})
    if label is None:
        if len(labels) != 1:
            raise BenchError(f"{truth}: keywords {labels or 'none'}; name the phrase with --label")
        label = labels[0]
    elif label not in labels:
        raise BenchError(f"{truth}: no keyword labelled {label!r} (it has {labels or 'none'})")
    keywords, others = split_truth(truths, [label])
    phrase = keyphrase_of(keyphrase or label)
    thresholds = sorted(float(t) for t in thresholds)
    events, phones, elapsed = decode_sweep(wave, phrase, thresholds, label, pronounce)
    rows = score_sweep(events, thresholds, keywords, others, tolerance, duration)
    return {
        "tool": "pocketsphinx kws",
        "pocketsphinx": _version(),
        "recording": str(recording),
        "truth": str(truth),
        "label": label,
        "keyphrase": phrase,
        "phones": phones,
        "duration_s": duration,
        "keywords": len(keywords),
        "other_words": len(others),
        "tolerance_s": tolerance,
        "decode_seconds": elapsed,
        "real_time_factor": elapsed / duration if duration else None,
        "rows": rows,
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pocketsphinx")
    except PackageNotFoundError:
        return "unknown"


def json_safe(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | Path, result: dict) -> None:
    Path(path).write_text(json.dumps(json_safe(result), indent=1) + "\n")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench_pocketsphinx",
        description="pocketsphinx keyphrase search on a recording with truth, at a sweep of "
        "thresholds: hits, hit rate, false alarms per hour",
    )
    p.add_argument("recording", help="WAV written by evaluate-stream --save-wav")
    p.add_argument("--truth", help="its truth (default: the recording's name with .json)")
    p.add_argument("--label", help="the phrase's label in the truth (default: its only one)")
    p.add_argument("--keyphrase", help="words to search (default: the label, _ read as a space)")
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=list(DEFAULT_THRESHOLDS),
        metavar="T",
        help="kws thresholds (default: 12 log-spaced from 1e-50 to 1e-1)",
    )
    p.add_argument(
        "--pronounce",
        action="append",
        default=[],
        metavar='WORD="PH ONES"',
        help="phones (CMU set) of a word missing from pocketsphinx's dictionary; repeatable",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="seconds after a phrase's end that a detection still hits it (default 1, "
        "as evaluate-stream)",
    )
    p.add_argument("--json", metavar="FILE.json", help="write every number here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not all(0.0 < t <= 1.0 for t in args.thresholds):
            raise BenchError("--thresholds: each must be in (0, 1]")
        if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
            raise BenchError("--tolerance: must be a number >= 0")
        result = bench(
            args.recording,
            args.truth,
            args.label,
            args.keyphrase,
            args.thresholds,
            args.tolerance,
            parse_pronunciations(args.pronounce),
        )
        if args.json:
            write_json(args.json, result)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: --json {args.json}: cannot write ({err.strerror or err})", file=sys.stderr)
        return 2
    print(
        f"pocketsphinx kws {result['keyphrase']!r} on {result['recording']}: "
        f"{result['duration_s'] / 60:.1f} min, {result['keywords']} phrases, "
        f"{result['other_words']} other words; decoded in {result['decode_seconds']:.1f} s "
        f"({result['real_time_factor']:.3f} x real time, one core)",
        file=sys.stderr,
    )
    print(format_table(result["rows"]))
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
