"""Calibration: the chosen threshold meets the false-alarm target and the next lower one
would not, on synthetic scores; the negative stream built from clips; the search helpers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_gru.analysis.calibrate import (
    GRID,
    CalibrationError,
    calibrate,
    count_events,
    grid_above,
    lowest_threshold,
)
from speech_gru.analysis.negatives import GAP_S, ClipStream, dataset_split
from speech_gru.analysis.streaming.scores import ScoredStream, Stream, record
from speech_gru.runtime.detector import DetectorConfig, StreamingDetector, moving_mean

SR = 16000
HOP = 1600
LABELS = ["_silence_", "_unknown_", "yes", "no"]


def bump_table(hops: int, seed: int, bumps: dict[str, tuple[float, float]]) -> np.ndarray:
    """(hops, C) posteriors: silence, with keyword bumps (triangles 5-13 hops wide) whose
    peaks are uniform in each keyword's (low, high) range; bumps never overlap."""
    rng = np.random.default_rng(seed)
    table = np.zeros((hops, len(LABELS)))
    starts = np.arange(5, hops - 15, 15)  # one bump slot every 1.5 s
    for start in starts:
        keyword = list(bumps)[rng.integers(len(bumps))]
        width = int(rng.integers(5, 14))
        peak = rng.uniform(*bumps[keyword])
        shape = peak * (1 - np.abs(np.linspace(-1, 1, width)))
        table[start : start + width, LABELS.index(keyword)] = shape
    table[:, 1] = 0.02  # a little _unknown_ everywhere
    table[:, 0] = 1 - table[:, 1:].sum(1)
    return table


def marker_audio(hops: int) -> np.ndarray:
    """Audio whose window ending at ``SR + i * HOP`` ends on the sample value ``i + 1``."""
    wave = np.zeros(SR + HOP * (hops - 1), dtype=np.float32)
    wave[SR - 1 + HOP * np.arange(hops)] = np.arange(1, hops + 1)
    return wave


def table_scorer(table: np.ndarray):  # noqa: ANN201 - a Scorer
    """A stand-in model: the scores of window i are row i of ``table``."""
    return lambda windows: table[np.rint(windows[:, -1]).astype(int) - 1]


def events(table: np.ndarray, config: DetectorConfig) -> int:
    """False alarms of the detector streaming the marker audio (the model is the table)."""
    return len(
        StreamingDetector(table_scorer(table), LABELS, config).run([marker_audio(len(table))])
    )


def recorded(table: np.ndarray, config: DetectorConfig) -> list[ScoredStream]:
    wave = marker_audio(len(table))
    stream = Stream("negatives", lambda: iter(np.array_split(wave, 7)))  # any chunking
    return record(table_scorer(table), LABELS, [stream], config)


CONFIG = DetectorConfig(refractory_s=0.5)


def test_recording_keeps_every_window_score() -> None:
    table = bump_table(300, 0, {"yes": (0.3, 1.0)})
    (negatives,) = recorded(table, CONFIG)
    np.testing.assert_array_equal(negatives.posteriors, table)
    assert negatives.duration_s == pytest.approx((SR + HOP * 299) / SR)


def test_chosen_threshold_meets_the_target_and_the_next_lower_one_would_not() -> None:
    table = bump_table(6000, 0, {"yes": (0.3, 0.99), "no": (0.3, 0.99)})  # 10 min
    negatives = recorded(table, CONFIG)
    result = calibrate(negatives, LABELS, 30.0, [0.0, 0.2, 0.4], CONFIG, floor=0.2)
    assert result.allowed == 5 and result.measurable  # 30/h over 10 min
    for c in result.candidates:
        config = replace(CONFIG, average_s=c.average_s, threshold=c.threshold)
        assert events(table, config) == c.false_alarms <= 5
        assert events(table, replace(config, threshold=c.threshold - GRID)) > 5
        assert abs(c.threshold / GRID - round(c.threshold / GRID)) < 1e-6  # on the grid
    assert result.chosen is min(result.candidates, key=lambda c: c.threshold)
    assert len({c.threshold for c in result.candidates}) == 3  # the spans do differ
    point = result.point("synthetic")
    assert point.threshold == result.chosen.threshold and point.false_alarms <= 5
    assert point.fa_per_hour <= 30.0 and point.negative_s == pytest.approx(600.9)


def test_per_keyword_thresholds_share_the_budget() -> None:
    table = bump_table(6000, 1, {"yes": (0.6, 0.99), "no": (0.3, 0.6)})
    negatives = recorded(table, CONFIG)
    single = calibrate(negatives, LABELS, 30.0, [0.0], CONFIG, floor=0.2).chosen
    each = calibrate(negatives, LABELS, 30.0, [0.0], CONFIG, per_keyword=True, floor=0.2).chosen
    assert set(each.thresholds) == {"yes", "no"}
    assert each.thresholds["no"] < single.threshold < each.thresholds["yes"]
    assert each.threshold == each.thresholds["yes"]  # the highest, for keywords not listed
    config = replace(CONFIG, average_s=0.0, threshold=0.5, thresholds=each.thresholds)
    assert events(table, config) == each.false_alarms <= 5
    for keyword in ("yes", "no"):  # each keyword alone is within its share (2 of 5)...
        alone = {k: (t if k == keyword else 1.0) for k, t in each.thresholds.items()}
        assert events(table, replace(config, thresholds=alone)) <= 2
        lower = {**alone, keyword: each.thresholds[keyword] - GRID}  # ...and just so
        assert events(table, replace(config, thresholds=lower)) > 2


def test_a_keyword_quiet_at_the_floor_leaves_its_share_to_the_others() -> None:
    table = bump_table(6000, 2, {"yes": (0.3, 0.99), "no": (0.3, 0.45)})
    negatives = recorded(table, CONFIG)
    each = calibrate(negatives, LABELS, 30.0, [0.0], CONFIG, per_keyword=True, floor=0.5).chosen
    assert each.thresholds["no"] == 0.5  # "no" never reaches the floor: no false alarm
    config = replace(CONFIG, average_s=0.0, thresholds=each.thresholds)
    assert events(table, config) == each.false_alarms == 5  # all 5 went to "yes"
    lower = {**each.thresholds, "yes": each.thresholds["yes"] - GRID}
    assert events(table, replace(config, thresholds=lower)) > 5


def test_too_little_audio_gives_the_lowest_threshold_without_false_alarms() -> None:
    table = bump_table(1200, 3, {"yes": (0.3, 0.99)})  # 2 min: 1/h is not measurable
    negatives = recorded(table, CONFIG)
    result = calibrate(negatives, LABELS, 1.0, [0.5], CONFIG, floor=0.2)
    assert not result.measurable and result.allowed == 0
    c = result.chosen
    config = replace(CONFIG, average_s=0.5, threshold=c.threshold)
    assert c.false_alarms == events(table, config) == 0
    assert events(table, replace(config, threshold=c.threshold - GRID)) == 1


def test_unreachable_target_chooses_nothing() -> None:
    table = bump_table(600, 4, {"yes": (0.3, 0.9)})
    table[100:110] = [0, 0, 1, 0]  # certain "yes" for 1 s
    negatives = recorded(table, CONFIG)
    result = calibrate(negatives, LABELS, 1.0, [0.0, 0.5], CONFIG)
    assert result.chosen is None
    assert all(c.threshold is None and c.false_alarms >= 1 for c in result.candidates)
    with pytest.raises(CalibrationError):
        result.point()


def test_floor_is_kept_when_nothing_reaches_it() -> None:
    table = bump_table(600, 5, {"yes": (0.3, 0.6)})
    result = calibrate(recorded(table, CONFIG), LABELS, 1.0, [0.0], CONFIG, floor=0.7)
    assert result.chosen.threshold == 0.7 and result.chosen.false_alarms == 0


def test_search_helpers() -> None:
    assert grid_above(0.5) == 0.5001 and grid_above(0.49999) == 0.5 and grid_above(0.0) == GRID
    for value in np.random.default_rng(0).uniform(0, 1, 1000):
        above = grid_above(float(value))
        assert above > value >= above - GRID - 1e-12
    p = np.random.default_rng(1).dirichlet(np.ones(4), 50)
    for count in (1, 3, 7):
        expected = [p[max(0, i - count + 1) : i + 1].mean(0) for i in range(len(p))]
        np.testing.assert_allclose(moving_mean(p, count), expected, rtol=1e-12)
    ends = [np.arange(10) * 100]
    scores = [np.array([0.9, 0.9, -np.inf, 0.8, 0.95, 0.6, 0.9, 0.9, 0.9, 0.9])]
    assert count_events(scores, ends, 0.85, 200) == 4  # 0, 400, 600, 800
    assert count_events(scores, ends, 0.85, 0) == 7
    assert count_events(scores * 2, ends * 2, 0.85, 200) == 8  # each stream on its own
    assert lowest_threshold(scores, ends, 200, 1, 0.5) == grid_above(0.9)
    assert lowest_threshold(scores, ends, 200, 0, 0.5) == grid_above(0.95)
    assert lowest_threshold(scores, ends, 200, 100, 0.5) == 0.5
    assert lowest_threshold([np.array([1.0])], [np.zeros(1)], 0, 0, 0.5) is None


def write_clip(path: Path, level: float, seconds: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(round(seconds * SR), level, dtype=np.float32), SR, subtype="FLOAT")
    return path


def test_clip_stream_is_seeded_and_holds_every_clip(tmp_path: Path) -> None:
    clips = [write_clip(tmp_path / f"c{i}.wav", 0.1 * (i + 1), 0.5 + 0.25 * i) for i in range(4)]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF")
    noise = [np.full(3 * SR, 0.5, dtype=np.float32)]
    stream = ClipStream([*clips, broken], noise, seed=0)
    first = list(stream.chunks())
    assert len(stream.skipped) == 1 and "broken.wav" in stream.skipped[0]
    again = list(ClipStream([*clips, broken], noise, seed=0).chunks())
    other = list(ClipStream([*clips, broken], noise, seed=1).chunks())
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=False))
    wave = np.concatenate(first)
    for i in range(4):  # each clip exactly once, whole
        assert np.count_nonzero(np.isclose(wave, np.float32(0.1 * (i + 1)))) == SR * (
            0.5 + 0.25 * i
        )
    assert len(first) >= 5  # the noise was cut into pieces
    assert np.count_nonzero(wave) == SR * 3.5 + SR * 3  # the clips and all the noise
    gaps = wave.size - np.count_nonzero(wave)  # silence only between items
    assert GAP_S[0] * SR * len(first) - len(first) <= gaps <= GAP_S[1] * SR * len(first)


def test_dataset_split_separates_keywords_negatives_and_noise(tmp_path: Path) -> None:
    for word in ("yes", "no", "cat", "_unknown_", "_silence_"):
        for speaker in ("aaaa0000", "bbbb1111", "cccc2222"):
            write_clip(tmp_path / word / f"{speaker}_nohash_0.wav", 0.1)
    write_clip(tmp_path / "_background_noise_" / "hum.wav", 0.1, 2.0)
    labels = ["_silence_", "_unknown_", "yes"]  # "no" is not a keyword of this model
    data = dataset_split(tmp_path, labels, "all")
    assert {p.parent.name for p, _ in data.keywords} == {"yes"} and len(data.keywords) == 3
    assert {p.parent.name for p in data.negatives} == {"no", "cat", "_unknown_", "_silence_"}
    assert len(data.negatives) == 12 and len(data.noise) == 1
    hashed = {"version": "folder", "validation_percent": 50.0, "testing_percent": 0.0}
    val = dataset_split(tmp_path, labels, "validation", hashed)
    train = dataset_split(tmp_path, labels, "training", hashed)
    assert sorted(val.negatives + train.negatives) == sorted(data.negatives)
    assert set(val.negatives).isdisjoint(train.negatives)
    (tmp_path / "validation_list.txt").write_text("cat/aaaa0000_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("yes/bbbb1111_nohash_0.wav\n")
    listed = dataset_split(tmp_path, labels, "validation", {"version": "v0.02"})
    assert listed.negatives == [tmp_path / "cat" / "aaaa0000_nohash_0.wav"]
    assert listed.keywords == []
    with pytest.raises(CalibrationError, match="not found"):
        dataset_split(tmp_path / "missing", labels, "all")
