"""speech_gru/analysis/streaming/ on hand-made data: false-alarm causes, truth files, per-word
SNR, decision rules (the detector's own replayed exactly) and DET curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from speech_gru.analysis.streaming.decisions import (
    DECISIONS,
    DET_THRESHOLDS,
    consecutive_windows,
    det_curve,
    lowest_miss_within,
    mean_miss_rate,
    mean_then_threshold,
    peak_picking,
    replay,
)
from speech_gru.analysis.streaming.matching import match_events
from speech_gru.analysis.streaming.recordings import ClipItem, ClipPool, build_recording
from speech_gru.analysis.streaming.truth import (
    Truth,
    TruthError,
    read_truth,
    split_truth,
    write_truth,
)
from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.runtime.detector import DetectorConfig, Event, StreamingDetector
from tests.helpers import tone_burst

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def truth(label: str, start: float, end: float, word: str = "") -> Truth:
    return Truth(label, start, end, start, end, word=word or label)


def event(label: str, time_s: float) -> Event:
    return Event(label, time_s - 1.0, time_s, 0.9, time_s)


def detector_events(posteriors: np.ndarray, config: DetectorConfig) -> list[Event]:
    """Events of a real StreamingDetector whose model gives ``posteriors``, window by window."""
    served = iter(posteriors)

    def scorer(windows: np.ndarray) -> np.ndarray:
        return np.stack([next(served) for _ in windows])

    detector = StreamingDetector(scorer, LABELS, config)
    samples = config.window + config.hop * (len(posteriors) - 1)
    events = detector.run(np.array_split(np.zeros(samples, dtype=np.float32), 7))
    assert detector.windows_scored == len(posteriors)
    return events


# -- matching: false alarms by cause, hits, latency -----------------------------------------


def test_false_alarm_causes_hit_inside_the_span_and_latency() -> None:
    truths = [truth("yes", 10.0, 10.5), truth("no", 20.0, 20.4)]
    others = [truth("_unknown_", 30.0, 30.4, word="cat")]
    events = [
        event("yes", 10.8),  # hit, 0.3 s after the word
        event("no", 10.9),  # on the 'yes': wrong keyword
        event("no", 20.2),  # hit while the word is still spoken
        event("yes", 30.5),  # on 'cat': another word
        event("no", 50.0),  # nothing said: noise
    ]
    m = match_events(events, truths, 1.0, duration_s=1800.0, distractors=others)
    assert m.outcomes == ["hit", "wrong_label", "hit", "distractor", "background"]
    assert (m.hits, m.misses, m.false_alarms) == (2, 0, 3)
    assert m.by_cause == {"wrong_label": 1, "distractor": 1, "background": 1, "repeat": 0}
    assert m.latencies == pytest.approx([0.3, -0.2])
    assert m.mean_latency == pytest.approx(0.05)
    by_hour = m.summary()["false_alarms_per_hour_by_cause"]
    assert by_hour == pytest.approx(
        {"wrong_label": 2.0, "distractor": 2.0, "background": 2.0, "repeat": 0.0}
    )
    assert m.summary()["miss_rate"] == 0.0


# -- truth files ------------------------------------------------------------------------------


def test_read_truth_csv_and_json(tmp_path: Path) -> None:
    csv_file = tmp_path / "truth.csv"
    csv_file.write_text(
        "\ufeffend_s,label,start_s,note\n"  # any column order, a BOM, an extra column
        "5.5,marvin,5.0,\n1.5,yes,1.0,loud\n3.4,_unknown_,3.0,\n"
    )
    rows = read_truth(csv_file, duration_s=6.0)
    assert [(t.label, t.start_s, t.end_s) for t in rows] == [
        ("yes", 1.0, 1.5), ("_unknown_", 3.0, 3.4), ("marvin", 5.0, 5.5),
    ]  # fmt: skip
    keywords, others = split_truth(rows, ["yes", "no"])
    assert [t.label for t in keywords] == ["yes"]
    assert [(t.label, t.word) for t in others] == [
        ("_unknown_", "_unknown_"),
        ("_unknown_", "marvin"),
    ]

    listed = tmp_path / "truth.json"
    listed.write_text(json.dumps([{"label": "no", "start_s": 2, "end_s": 2.5}]))
    assert [(t.label, t.end_s) for t in read_truth(listed)] == [("no", 2.5)]
    sidecar = tmp_path / "saved.json"  # what --save-wav writes next to the recording
    sidecar.write_text(json.dumps({
        "sample_rate": 16000,
        "keywords": [{"label": "yes", "start_s": 4.0, "end_s": 4.4, "word": "yes"}],
        "distractors": [{"label": "_unknown_", "start_s": 1.0, "end_s": 1.3, "word": "cat"}],
    }))  # fmt: skip
    rows = read_truth(sidecar)
    assert [(t.label, t.word) for t in rows] == [("_unknown_", "cat"), ("yes", "yes")]


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_TRUTHS = [  # huge fields and numbers, wrong types, deep nesting
    ("t.csv", "label,start_s,end_s\nyes," + "1" * 200_000 + ",2\n", "line "),
    ("t.json", '[{"label": "yes", "start_s": ' + "9" * 400 + ', "end_s": 2}]', "item 1: "),
    ("t.json", '[{"label": "yes", "start_s": 1, "end_s": ' + "9" * 5000 + "}]", "not JSON"),
    ("t.csv", "label,start_s,end_s\nyes,1," + "9" * 5000 + "\n", "line 2: "),
    ("t.json", '{"keywords": 5}', "keywords must be a list"),
    ("t.json", '{"distractors": null}', "distractors must be a list"),
    ("t.json", "null", "expected a list"),
    ("t.json", deep_json(100_000), "not JSON"),
    ("t.json", "[" + deep_json(100_000) + "]", "not JSON"),
    ("t.json", '[{"label": "yes", "start_s": true, "end_s": 2}]', "must be numbers"),
    ("t.json", '[{"label": "yes", "start_s": 0, "end_s": true}]', "must be numbers"),
    ("t.json", '[{"label": {"a": 1}, "start_s": 0, "end_s": 1}]', "label must be text"),
]


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("t.csv", "label,start\nyes,1\n", "missing start_s, end_s"),
        ("t.csv", "label,start_s,end_s\nyes,one,2\n", "line 2: start_s and end_s must be numbers"),
        ("t.csv", "label,start_s,end_s\nyes,1,2\nno,3,3\n", "line 3: needs 0 <= start_s < end_s"),
        ("t.csv", "label,start_s,end_s\nyes,-1,2\n", "needs 0 <= start_s < end_s"),
        ("t.csv", "label,start_s,end_s\nyes,1,2\nno,3\n", "line 3: needs label, start_s, end_s"),
        ("t.csv", "label,start_s,end_s\nyes,8,12\n", "after the recording (10.00 s)"),
        ("t.csv", "label,start_s,end_s\n_silence_,1,2\n", "_silence_ is not a word"),
        ("t.json", '[{"label": "yes",\n "start_s": 1,', "not JSON"),
        ("t.json", '"yes"', "expected a list"),
        ("t.json", '[{"label": "yes", "start_s": 1}]', "item 1: needs label, start_s"),
        *HOSTILE_TRUTHS,
    ],
)
def test_read_truth_rejects_malformed_files(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TruthError) as err:
        read_truth(path, duration_s=10.0)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "\n" not in message and len(message) < 300
    assert problem in message


def test_write_truth_reads_back(tmp_path: Path) -> None:
    """The ``--save-wav`` sidecar: every field of each word, and read back in time order."""
    keyword = Truth("yes", 4.0, 4.4, 3.8, 4.8, "a.wav", "yes", 12.5)
    other = Truth("_unknown_", 1.0, 1.3, 0.9, 1.9, "b.wav", "cat", 7.0)
    path = tmp_path / "saved.json"
    write_truth(path, [keyword], [other], 6.0, "clips")
    data = json.loads(path.read_text())
    assert data["sample_rate"] == 16000 and data["duration_s"] == 6.0
    assert data["keywords"] == [keyword.to_dict()] and data["distractors"] == [other.to_dict()]
    assert [(t.label, t.word, t.start_s) for t in read_truth(path, 6.0)] == [
        ("_unknown_", "cat", 1.0), ("yes", "yes", 4.0),
    ]  # fmt: skip


def test_read_truth_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TruthError, match=r"missing\.csv: cannot read the truth file"):
        read_truth(tmp_path / "missing.csv")


# -- per-word SNR -----------------------------------------------------------------------------

TONE_SPAN = (0.3, 0.6)


def tone_item(label: str, word: str, freq: float) -> ClipItem:
    def load() -> np.ndarray:
        start, end = TONE_SPAN
        return tone_burst(1.0, start, end - start, freq, amp=0.3, noise=0.0)

    return ClipItem(label, word, f"tone:{word}:{freq}", load)


@pytest.fixture(scope="module")
def tone_pool() -> ClipPool:
    noise = np.random.default_rng(5).standard_normal(5 * SAMPLE_RATE).astype(np.float32)
    keywords = {w: [tone_item(w, w, f + 7 * k) for k in range(3)]
                for w, f in (("yes", 440.0), ("no", 880.0))}  # fmt: skip
    return ClipPool(keywords, [tone_item("_unknown_", "cat", 1500.0)], [noise], "tones")


def measured_snr(wave: np.ndarray, word: Truth, noise_power: float) -> float:
    span = wave[round(word.start_s * SAMPLE_RATE) : round(word.end_s * SAMPLE_RATE)]
    power = float(np.mean(np.square(span, dtype=np.float64)))
    return 10 * math.log10((power - noise_power) / noise_power)


def test_each_word_gets_its_own_snr_in_the_range(tone_pool: ClipPool) -> None:
    others: list[Truth] = []
    wave, keywords = build_recording(
        tone_pool, minutes=1.5, seed=4, snr_db=(5.0, 20.0), distractor_share=0.3,
        distractors_out=others,
    )  # fmt: skip
    words = keywords + others
    assert len(words) >= 15 and others
    quiet = np.ones(wave.size, dtype=bool)
    for w in words:
        quiet[round(w.clip_start_s * SAMPLE_RATE) : round(w.clip_end_s * SAMPLE_RATE)] = False
    noise_power = float(np.mean(np.square(wave[quiet], dtype=np.float64)))
    assert math.sqrt(noise_power) == pytest.approx(0.05 / 10, rel=0.05)  # 20 dB under `level`
    measured = np.array([measured_snr(wave, w, noise_power) for w in words])
    stored = np.array([w.snr_db for w in words])
    assert np.all((stored >= 5.0) & (stored <= 20.0))
    assert measured == pytest.approx(stored, abs=0.5)
    assert stored.max() - stored.min() > 7.5  # drawn, not one value
    # equal ends fix it
    _, fixed = build_recording(tone_pool, minutes=0.5, seed=4, snr_db=(12.0, 12.0))
    assert [w.snr_db for w in fixed] == pytest.approx([12.0] * len(fixed))
    with pytest.raises(ValueError, match="SNR range"):
        build_recording(tone_pool, minutes=0.5, snr_db=(20.0, 5.0))


# -- decision rules ---------------------------------------------------------------------------


def test_mean_then_threshold_replay_equals_the_detector() -> None:
    rng = np.random.default_rng(0)
    for trial in range(12):
        runs = np.repeat(rng.integers(0, len(LABELS), 30), 8)  # a class leads for 8 windows
        logits = 2.0 * rng.standard_normal((240, len(LABELS))) + 4.0 * np.eye(len(LABELS))[runs]
        posteriors = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        config = DetectorConfig(
            average_s=[0.0, 0.3, 0.5, 1.0][trial % 4],
            threshold=float(rng.uniform(0.35, 0.9)),
            refractory_s=float(rng.uniform(0.0, 2.0)),
            batch_windows=int(rng.integers(1, 40)),
            thresholds={"no": 0.5} if trial % 3 == 0 else {},
        )
        expected = detector_events(posteriors.astype(np.float32), config)
        assert len(expected) > 3
        assert replay(posteriors.astype(np.float32), LABELS, config) == expected


def bump(heights: list[float], first: int, n: int = 40) -> np.ndarray:
    """(n, 4) posteriors: silence, except 'yes' at ``heights`` from window ``first``."""
    p = np.zeros((n, len(LABELS)))
    p[first : first + len(heights), 2] = heights
    p[:, 0] = 1.0 - p[:, 2]
    return p


def test_each_rule_on_one_hand_made_bump() -> None:
    posteriors = bump([0.2, 0.6, 0.9, 0.7, 0.3], first=10)
    config = DetectorConfig(average_s=0.3, threshold=0.5)  # 3 windows; window i ends 1 + 0.1 i
    mask = np.array([False, False, True, True])
    events = {name: replay(posteriors, LABELS, config, rule) for name, rule in DECISIONS.items()}
    # averages of 'yes' end at windows 12, 13, 14: 0.567, 0.733, 0.633
    (mean,) = events["mean-then-threshold"]
    assert (mean.label, mean.time_s, mean.end_s) == ("yes", pytest.approx(2.2), pytest.approx(2.2))
    assert mean.score == pytest.approx(1.7 / 3)
    (peak,) = events["peak"]  # the peak at window 13 is known at window 14
    assert (peak.time_s, peak.end_s, peak.score) == pytest.approx((2.4, 2.2, 2.2 / 3))
    (run,) = events["consecutive"]  # windows 11-13 have 'yes' on top; the lowest is 0.6
    assert (run.time_s, run.end_s, run.score) == pytest.approx((2.3, 2.2, 0.6))
    assert replay(posteriors, LABELS, DetectorConfig(average_s=0.3, threshold=0.65),
                  consecutive_windows) == []  # fmt: skip
    assert len(peak_picking(posteriors, mask, config).hop) == 1
    assert mean_then_threshold(posteriors, mask, config).hop.tolist() == [12, 13, 14]


# -- DET curves -------------------------------------------------------------------------------

KEYWORD_HEIGHTS = {20: ("yes", 0.965), 80: ("yes", 0.86), 140: ("yes", 0.76), 200: ("no", 0.66)}
NOISE_ALARM = (260, "no", 0.71)  # over nothing
WORD_ALARM = (320, "yes", 0.81)  # over the word 'cat'
DURATION_S = 41.0  # windows 0..399 end at 1.0 .. 40.9 s


def det_setup() -> tuple[np.ndarray, list[Truth], list[Truth]]:
    """Flat 8-window bumps; each word spoken in the 0.5 s before its bump's first window ends."""
    p = np.zeros((400, len(LABELS)))
    p[:, 0] = 1.0
    keywords, others = [], []
    bumps = [(first, label, h) for first, (label, h) in KEYWORD_HEIGHTS.items()]
    for first, label, height in [*bumps, NOISE_ALARM, WORD_ALARM]:
        c = LABELS.index(label)
        p[first : first + 8, c], p[first : first + 8, 0] = height, 1.0 - height
        end = 1.0 + 0.1 * first - 0.1
        if first in KEYWORD_HEIGHTS:
            keywords.append(truth(label, end - 0.5, end))
        elif first == WORD_ALARM[0]:
            others.append(truth("_unknown_", end - 0.5, end, word="cat"))
    return p, keywords, others


def test_det_curve_on_hand_made_posteriors() -> None:
    posteriors, keywords, others = det_setup()
    config = DetectorConfig()  # the product's defaults: average 0.5 s, refractory 1.5 s
    rows = det_curve(posteriors, LABELS, config, keywords, 1.0, DURATION_S, others)
    assert [r["threshold"] for r in rows] == list(DET_THRESHOLDS)
    per_alarm = 3600 / DURATION_S
    for r in rows:  # every point by hand
        t = r["threshold"]
        assert r["hits"] == sum(h >= t for _, h in KEYWORD_HEIGHTS.values())
        assert r["miss_rate"] == pytest.approx(1 - r["hits"] / 4)
        assert r["background_alarms"] == int(NOISE_ALARM[2] >= t)
        assert r["distractor_alarms"] == int(WORD_ALARM[2] >= t)
        assert r["false_alarms_per_hour"] == pytest.approx(r["false_alarms"] * per_alarm)
    misses = [r["miss_rate"] for r in rows]
    alarms = [r["false_alarms_per_hour"] for r in rows]
    assert misses == sorted(misses) and alarms == sorted(alarms, reverse=True)  # monotone
    assert (rows[0]["miss_rate"], rows[0]["false_alarms"]) == (0.0, 2)  # threshold 0.05
    assert (rows[-1]["miss_rate"], rows[-1]["false_alarms"]) == (1.0, 0)  # threshold 0.99
    # a point equals running the detector itself at that threshold
    for threshold in (0.7, 0.8):
        row = next(r for r in rows if r["threshold"] == threshold)
        setting = DetectorConfig(threshold=threshold)
        events = detector_events(posteriors, setting)
        expected = match_events(events, keywords, 1.0, DURATION_S, others).summary()
        assert row == {"threshold": threshold, "events": len(events), **expected}
    # operating points and the area: none within 1 FA/h costs half the words; one
    # false alarm (87.8 / h) buys another word
    assert lowest_miss_within(rows, 1.0)["threshold"] == 0.85
    assert lowest_miss_within(rows, 1.0)["miss_rate"] == 0.5
    assert lowest_miss_within(rows, 100.0)["miss_rate"] == 0.25
    assert lowest_miss_within(rows[-1:], 1.0)["miss_rate"] == 1.0
    assert mean_miss_rate(rows) == pytest.approx((39 * 0.5 + 2 * 0.25) / 41)
    for rule in DECISIONS.values():  # every rule finds every word at a low threshold
        low = det_curve(posteriors, LABELS, config, keywords, 1.0, DURATION_S, others, rule, [0.3])
        assert low[0]["hits"] == 4
