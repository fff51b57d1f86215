"""speech_gru/analysis/streaming/, ``speech-gru evaluate-stream`` and tools/bench_stream.py:
matching, recordings, truth files, decision rules, DET curves, smoke runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from speech_gru.analysis.streaming.decisions import det_curve, replay
from speech_gru.analysis.streaming.matching import match_events
from speech_gru.analysis.streaming.recordings import build_recording, folder_pool, speech_span
from speech_gru.analysis.streaming.report import plot_trace
from speech_gru.analysis.streaming.scores import stream
from speech_gru.analysis.streaming.truth import Truth
from speech_gru.cli.commands.evaluate_stream import trained_split
from speech_gru.core.audio import SAMPLE_RATE, write_wav
from speech_gru.runtime.detector import DetectorConfig, Event, RecordingScorer
from speech_gru.train.corpus import SplitRule, fold_of, speaker_of, which_set
from tests.helpers import tone_burst

KEYWORDS = ["yes", "no"]
LABELS = ["_silence_", "_unknown_", *KEYWORDS]
TONE = {"yes": 440.0, "no": 880.0, "cat": 1500.0}
SPEECH = (0.30, 0.60)  # where the tone sits inside each clip, seconds


def truth(label: str, start: float, end: float) -> Truth:
    return Truth(label, start, end, clip_start_s=start - 0.2, clip_end_s=start + 0.8)


def event(label: str, time_s: float, score: float = 0.9) -> Event:
    return Event(label, time_s - 1.0, time_s, score, time_s)


# -- match_events ---------------------------------------------------------------------------


def test_hit_inside_tolerance_and_latency() -> None:
    truths = [truth("yes", 10.0, 10.5), truth("no", 20.0, 20.4)]
    m = match_events([event("yes", 10.8), event("no", 21.3)], truths, 1.0, duration_s=3600)
    assert (m.hits, m.misses, m.false_alarms) == (2, 0, 0)
    assert m.hit_rate == 1.0
    assert m.latencies == pytest.approx([0.3, 0.9])
    assert m.mean_latency == pytest.approx(0.6)
    assert m.median_latency == pytest.approx(0.6)
    assert m.matched == [0, 1]
    assert m.outcomes == ["hit", "hit"]


def test_too_late_is_a_miss_and_a_false_alarm() -> None:
    m = match_events([event("yes", 11.6)], [truth("yes", 10.0, 10.5)], 1.0, duration_s=3600)
    assert (m.hits, m.misses, m.false_alarms) == (0, 1, 1)
    assert m.outcomes == ["background"]
    assert math.isnan(m.mean_latency)
    assert m.summary()["mean_latency_s"] is None


def test_before_the_speech_starts_is_not_a_hit() -> None:
    m = match_events([event("yes", 9.9)], [truth("yes", 10.0, 10.5)], 1.0, duration_s=60)
    assert (m.hits, m.false_alarms) == (0, 1)


def test_wrong_label() -> None:
    truths = [truth("yes", 10.0, 10.5)]
    m = match_events([event("no", 10.6)], truths, 1.0, duration_s=3600)
    assert (m.hits, m.misses, m.false_alarms, m.wrong_label) == (0, 1, 1, 1)
    assert m.outcomes == ["wrong_label"]
    assert m.per_label["no"]["false_alarms"] == 1
    assert m.per_label["yes"] == {"keywords": 1, "hits": 0, "false_alarms": 0}


def test_double_detection_is_one_hit_and_one_false_alarm() -> None:
    truths = [truth("yes", 10.0, 10.5)]
    events = [event("yes", 11.2), event("yes", 10.6)]  # out of order on purpose
    m = match_events(events, truths, 1.0, duration_s=3600)
    assert (m.hits, m.false_alarms, m.repeats) == (1, 1, 1)
    assert m.outcomes == ["repeat", "hit"]  # the earlier one hits
    assert m.matched == [1]
    assert m.latencies == pytest.approx([0.1])


def test_distractor_alarm_and_each_truth_matched_once() -> None:
    truths = [truth("yes", 10.0, 10.5), truth("yes", 12.0, 12.5)]
    distractors = [Truth("_unknown_", 20.0, 20.4, 19.8, 20.8, word="cat")]
    events = [event("yes", 11.2), event("yes", 12.6), event("yes", 20.5)]
    m = match_events(events, truths, 1.0, duration_s=3600, distractors=distractors)
    assert m.outcomes == ["hit", "hit", "distractor"]
    assert m.matched == [0, 1]
    assert (m.distractor_alarms, m.false_alarms) == (1, 1)


def test_false_alarms_per_hour() -> None:
    truths = [truth("yes", 10.0, 10.5)]
    events = [event("no", 100.0), event("yes", 200.0), event("no", 300.0)]
    m = match_events(events, truths, 1.0, duration_s=1800.0)  # half an hour
    assert m.false_alarms == 3
    assert m.fa_per_hour == pytest.approx(6.0)
    assert m.background_alarms == 3
    assert m.summary()["false_alarms_per_hour"] == pytest.approx(6.0)


def test_no_events() -> None:
    m = match_events([], [truth("yes", 1.0, 1.5)], 1.0, duration_s=60)
    assert (m.hits, m.misses, m.false_alarms, m.fa_per_hour) == (0, 1, 0, 0.0)


# -- building the recording -------------------------------------------------------------------


def tone_clip(freq: float, seed: int) -> np.ndarray:
    start, end = SPEECH
    return tone_burst(1.0, start, end - start, freq, amp=0.3, seed=seed)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """yes/, no/, cat/ and _unknown_/ with tone clips of 24 speakers, and some noise."""
    root = tmp_path_factory.mktemp("tiny")
    for word in ("yes", "no", "cat"):
        (root / word).mkdir()
    (root / "_unknown_").mkdir()
    (root / "_background_noise_").mkdir()
    for i in range(24):
        speaker = f"{i * 2654435761 % 2**32:08x}"
        for k, word in enumerate(("yes", "no", "cat")):
            write_wav(root / word / f"{speaker}_nohash_0.wav", tone_clip(TONE[word], i * 3 + k))
        write_wav(root / "_unknown_" / f"cat_{speaker}_nohash_1.wav", tone_clip(1500.0, 99 + i))
    noise = np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE) * 0.05
    write_wav(root / "_background_noise_" / "noise.wav", noise.astype(np.float32))
    return root


def test_speech_span_finds_the_tone() -> None:
    start, end = speech_span(tone_clip(440.0, 0))
    assert start / SAMPLE_RATE == pytest.approx(SPEECH[0], abs=0.025)
    assert end / SAMPLE_RATE == pytest.approx(SPEECH[1], abs=0.025)


def test_folder_pool_keeps_only_the_split(tiny_dataset: Path) -> None:
    everything = folder_pool(tiny_dataset, KEYWORDS, split="all")
    assert list(everything.keywords) == KEYWORDS  # in the given (model) order
    assert len(everything.keywords["yes"]) == 24
    assert len(everything.distractors) == 48  # cat/ and _unknown_/
    assert {d.word for d in everything.distractors} == {"cat"}
    assert len(everything.noise) == 1
    held_out = folder_pool(tiny_dataset, KEYWORDS, split="testing", salt="speech_gru")
    items = [i for clips in held_out.keywords.values() for i in clips] + held_out.distractors
    assert 0 < len(items) < 24 * 4
    for item in items:
        assert which_set(speaker_of(item.source), 10, 10, "speech_gru") == "testing"


def test_a_fold_models_recording_holds_only_its_folds_speakers(tiny_dataset: Path) -> None:
    """A cross-validation fold's checkpoint is scored on the fold it never heard: the
    split recorded in the checkpoint decides, not the plain 10/10 split."""
    recorded = {"version": "folder", "split_salt": "cv", "folds": 3, "fold": 1}
    rule = trained_split({"datamodule_hyper_parameters": recorded}, None)
    assert (rule.folds, rule.fold, rule.split_salt) == (3, 1, "cv")
    pool = folder_pool(tiny_dataset, KEYWORDS, split="testing", rule=rule)
    items = [i for clips in pool.keywords.values() for i in clips] + pool.distractors
    speakers = {speaker_of(item.source) for item in items}
    assert speakers and all(fold_of(s, 3, "cv") == 1 for s in speakers)
    everyone = {speaker_of(p) for p in tiny_dataset.rglob("*_nohash_*.wav")}
    assert speakers == {s for s in everyone if fold_of(s, 3, "cv") == 1}
    assert "fold 2 of 3" in pool.description
    # An export records no split: the recipe's default, its salt replaced by --split-salt.
    assert trained_split({}, None) == SplitRule()
    assert trained_split({}, "x").split_salt == "x"


def test_build_recording(tiny_dataset: Path) -> None:
    pool = folder_pool(tiny_dataset, KEYWORDS, split="all")
    distractors: list[Truth] = []
    wave, truths = build_recording(
        pool, minutes=0.5, seed=3, snr_db=20.0, distractors_out=distractors
    )
    duration = 30.0
    assert wave.shape == (round(duration * SAMPLE_RATE),)
    assert wave.dtype == np.float32
    assert len(truths) >= 4
    assert {t.label for t in truths} <= set(KEYWORDS)
    assert all(t.label == "_unknown_" and t.word == "cat" for t in distractors)
    starts = [t.clip_start_s for t in truths]
    assert starts == sorted(starts)
    placed = sorted(truths + distractors, key=lambda t: t.clip_start_s)
    for before, after in zip(placed, placed[1:], strict=False):
        assert before.clip_end_s <= after.clip_start_s  # no overlap
    for t in placed:
        assert 0.0 <= t.clip_start_s <= t.start_s < t.end_s <= t.clip_end_s <= duration
        assert t.start_s - t.clip_start_s == pytest.approx(SPEECH[0], abs=0.025)
        assert t.end_s - t.clip_start_s == pytest.approx(SPEECH[1], abs=0.025)
        assert t.clip_end_s - t.clip_start_s == pytest.approx(1.0)
    # the tone is there, the noise is at the asked SNR (20 dB under the 0.05 speech RMS)
    inside = wave[round(truths[0].start_s * SAMPLE_RATE) : round(truths[0].end_s * SAMPLE_RATE)]
    assert np.sqrt(np.mean(inside**2)) == pytest.approx(0.05, rel=0.1)
    gap = wave[: round(placed[0].clip_start_s * SAMPLE_RATE)]
    assert np.sqrt(np.mean(gap**2)) == pytest.approx(0.005, rel=0.3)


def test_build_recording_is_seeded(tiny_dataset: Path) -> None:
    pool = folder_pool(tiny_dataset, KEYWORDS, split="all")
    a_wave, a_truths = build_recording(pool, minutes=0.25, seed=1)
    b_wave, b_truths = build_recording(pool, minutes=0.25, seed=1)
    c_wave, c_truths = build_recording(pool, minutes=0.25, seed=2)
    assert np.array_equal(a_wave, b_wave)
    assert a_truths == b_truths
    assert not np.array_equal(a_wave, c_wave)
    assert [t.clip_start_s for t in a_truths] != [t.clip_start_s for t in c_truths]


def test_build_recording_rejects_overlapping_gaps(tiny_dataset: Path) -> None:
    pool = folder_pool(tiny_dataset, KEYWORDS, split="all")
    with pytest.raises(ValueError, match="gap"):
        build_recording(pool, minutes=0.1, gap_s=(0.5, 2.0))


# -- streaming, replay, sweep, plot -----------------------------------------------------------


def tone_scorer(windows: np.ndarray) -> np.ndarray:
    """A fake model: energy at 440 Hz means yes, at 880 Hz no, else silence."""
    spectrum = np.abs(np.fft.rfft(windows, axis=1))  # 1 Hz bins
    yes = spectrum[:, 430:450].max(axis=1)
    no = spectrum[:, 870:890].max(axis=1)
    loud = np.maximum(yes, no)
    p_kw = np.clip(loud / (loud + 100.0), 0.0, 0.98)
    probs = np.zeros((len(windows), len(LABELS)))
    probs[:, 2] = np.where(yes >= no, p_kw, 0.0)
    probs[:, 3] = np.where(yes < no, p_kw, 0.0)
    probs[:, 0] = 1.0 - probs.sum(axis=1)
    return probs


def test_stream_replay_and_det_rows(tiny_dataset: Path, tmp_path: Path) -> None:
    pool = folder_pool(tiny_dataset, KEYWORDS, split="all")
    distractors: list[Truth] = []
    wave, truths = build_recording(
        pool, minutes=0.5, seed=0, snr_db=20.0, distractors_out=distractors
    )
    config = DetectorConfig(threshold=0.6, batch_windows=8)
    recorder = RecordingScorer(tone_scorer)
    events, detector = stream(wave, recorder, LABELS, config, keep_trace=True)
    metrics = match_events(events, truths, 1.0, wave.size / SAMPLE_RATE, distractors)
    assert metrics.hits == len(truths) and metrics.false_alarms == 0
    assert recorder.posteriors.shape == (detector.windows_scored, len(LABELS))
    # replaying the posteriors gives exactly the events of the real pass
    assert replay(recorder.posteriors, LABELS, config) == events
    duration = wave.size / SAMPLE_RATE
    rows = det_curve(
        recorder.posteriors, LABELS, config, truths, 1.0, duration, distractors,
        thresholds=(0.6, 0.99),
    )  # fmt: skip
    assert [r["threshold"] for r in rows] == [0.6, 0.99]
    assert rows[0]["hits"] == metrics.hits
    assert rows[1]["hits"] == 0
    png = tmp_path / "trace.png"
    plot_trace(
        png, wave, detector.trace_times, np.stack(detector.trace), LABELS, truths, events,
        metrics.outcomes, config.threshold, seconds=20, distractors=distractors,
    )  # fmt: skip
    assert png.stat().st_size > 10_000


# -- speech-gru evaluate-stream ---------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_stream_cli(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import json

    from speech_gru.analysis.streaming.decisions import DECISIONS, DET_THRESHOLDS
    from speech_gru.cli.main import main

    det, report, wav = tmp_path / "det.png", tmp_path / "stream.json", tmp_path / "rec.wav"
    common = ["evaluate-stream", "--checkpoint", str(checkpoint), "--threshold", "0.7"]
    assert main([
        *common, "--clips", str(commands_dir), "--split", "testing", "--minutes", "0.5",
        "--seed", "1", "--compare-decisions", "--det", str(det), "--json", str(report),
        "--save-wav", str(wav),
    ]) == 0  # fmt: skip
    out = capsys.readouterr().out
    for text in ("hit rate", "false alarms / hour", "wrong keyword", "another word", "noise",
                 "latency mean / median", "at <= 1 FA/h", "at <= 5 FA/h",
                 "decision rules on the same posteriors"):  # fmt: skip
        assert text in out
    assert det.stat().st_size > 10_000
    data = json.loads(report.read_text())
    assert set(data["det"]) == set(DECISIONS)
    for rows in data["det"].values():
        assert [r["threshold"] for r in rows] == list(DET_THRESHOLDS)
    metrics = data["metrics"]
    assert metrics["keywords"] == len(data["truths"]) > 0
    assert data["distractor_truths"]
    causes = metrics["false_alarms_per_hour_by_cause"]
    assert set(causes) == {"wrong_label", "distractor", "background", "repeat"}
    assert all(5.0 <= t["snr_db"] <= 20.0 for t in data["truths"] + data["distractor_truths"])
    # the detector's own rule replayed at its threshold is the streamed result
    row = next(r for r in data["det"]["mean-then-threshold"] if r["threshold"] == 0.7)
    assert (row["hits"], row["false_alarms"]) == (metrics["hits"], metrics["false_alarms"])
    assert set(data["comparison"]) == set(DECISIONS)

    # the saved recording read back as a user's recording with its truth file
    again = tmp_path / "again.json"
    assert main([
        *common, "--recording", str(wav), "--truth", str(wav.with_suffix(".json")),
        "--json", str(again),
    ]) == 0  # fmt: skip
    data2 = json.loads(again.read_text())
    assert data2["metrics"]["keywords"] == metrics["keywords"]
    assert len(data2["distractor_truths"]) == len(data["distractor_truths"])
    assert list(data2["det"]) == ["mean-then-threshold"]


@pytest.mark.parametrize(
    "case", ["missing folder", "bad truth", "unreadable recording", "truth alone", "bad snr"]
)
def test_evaluate_stream_bad_input_is_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from speech_gru.cli.main import main

    wav, broken = tmp_path / "talk.wav", tmp_path / "broken.wav"
    write_wav(wav, np.zeros(2 * SAMPLE_RATE, dtype=np.float32))
    broken.write_text("not audio")
    truth, bad = tmp_path / "truth.csv", tmp_path / "bad.csv"
    truth.write_text("label,start_s,end_s\nyes,0.5,0.9\n")
    bad.write_text("label,start_s\nyes,0.5\n")
    args, named = {
        "missing folder": (["--clips", str(tmp_path / "nowhere")], "nowhere"),
        "bad truth": (["--recording", str(wav), "--truth", str(bad)], "bad.csv"),
        "unreadable recording": (["--recording", str(broken), "--truth", str(truth)], "broken"),
        "truth alone": (["--clips", str(tmp_path), "--truth", str(truth)], "--truth"),
        "bad snr": (["--clips", str(tmp_path), "--snr", "20", "5"], "--snr"),
    }[case]
    code = main(["evaluate-stream", "--checkpoint", str(tmp_path / "none.ckpt"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and named in err


def test_bench_stream_smoke(tmp_path: Path) -> None:
    import json

    from tools.bench_stream import main

    out = tmp_path / "bench.json"
    assert main(["--seconds", "2", "--warmup", "1.2", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert results["windows_scored"] == 11  # windows ending at 1.0, 1.1, ..., 2.0 s
    assert results["scoring_calls"] == 11
    assert results["real_time_factor"] > 0
