"""StreamingDetector: chunking invariance, smoothing, thresholds (global and per keyword),
refractory time, replay of recorded scores; OperatingPoint storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speech_gru.core.model import KeywordModel, ModelConfig
from speech_gru.runtime.checkpoint import OperatingPoint
from speech_gru.runtime.detector import (
    DetectorConfig,
    Event,
    RecordingScorer,
    StreamingDetector,
)

SR = 16000
LABELS = ["_silence_", "_unknown_", "yes", "no"]


def level_scorer(windows: np.ndarray) -> np.ndarray:
    """A stand-in model: the label is coded by the window's mean level.

    Mean near 0.1 -> "yes", near 0.2 -> "no", near 0.3 -> "_unknown_", else "_silence_";
    the probability is the share of the window at that level.
    """
    probs = np.zeros((len(windows), len(LABELS)))
    for i, w in enumerate(windows):
        for label, level in (("yes", 0.1), ("no", 0.2), ("_unknown_", 0.3)):
            share = np.mean(np.isclose(w, level))
            probs[i, LABELS.index(label)] = share
        probs[i, 0] = 1.0 - probs[i, 1:].sum()
    return probs


def signal(*segments: tuple[float, float]) -> np.ndarray:
    """Concatenate (level, seconds) segments."""
    return np.concatenate([np.full(round(s * SR), v, dtype=np.float32) for v, s in segments])


def detect(wave: np.ndarray, chunk: int | None = None, **config) -> list[Event]:
    detector = StreamingDetector(level_scorer, LABELS, DetectorConfig(**config))
    chunks = [wave] if chunk is None else [wave[i : i + chunk] for i in range(0, len(wave), chunk)]
    return detector.run(chunks)


@pytest.fixture(scope="module")
def random_model_scorer():
    """A real (untrained) BiGRU as scorer: deterministic, arbitrary posteriors."""
    torch.manual_seed(0)
    model = KeywordModel(ModelConfig(num_classes=len(LABELS), hidden_size=32, num_layers=1))
    model.eval()
    with torch.no_grad():  # centre and sharpen its near-constant logits so labels vary
        centre = model(torch.randn(16, SR)).mean(0)

    def score(windows: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(windows)).sub(centre).mul(300).softmax(-1).numpy()

    return score


@pytest.mark.parametrize("batch_windows", [1, 8])
def test_events_do_not_depend_on_chunk_size(random_model_scorer, batch_windows: int) -> None:
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(SR * 6) * np.repeat(rng.uniform(0, 0.3, 60), SR // 10)).astype(
        np.float32
    )
    config = DetectorConfig(threshold=0.5, refractory_s=0.3, batch_windows=batch_windows)
    results = []
    for chunk in (160, 1000, 4096, len(wave)):
        detector = StreamingDetector(random_model_scorer, LABELS, config, keep_trace=True)
        events = detector.run(wave[i : i + chunk] for i in range(0, len(wave), chunk))
        results.append((events, np.stack(detector.trace)))
        assert detector.windows_scored == (len(wave) - SR) // 1600 + 1
    assert results[0][0], "the threshold should give some events to compare"
    for events, trace in results[1:]:
        assert events == results[0][0]
        np.testing.assert_array_equal(trace, results[0][1])


def test_one_utterance_gives_one_event_at_the_right_time() -> None:
    wave = signal((0, 2.0), (0.1, 1.0), (0, 2.0))  # "yes" from 2.0 s to 3.0 s
    events = detect(wave, chunk=1600)
    assert [e.label for e in events] == ["yes"]
    event = events[0]
    assert event.end_s - event.start_s == 1.0
    assert min(event.end_s, 3.0) - max(event.start_s, 2.0) >= 0.8  # the window covers it
    assert 2.5 <= event.time_s <= 3.0 and event.score >= 0.7


def test_refractory_time_suppresses_repeats_and_then_allows_them() -> None:
    wave = signal((0.1, 4.0))  # a keyword held for 4 s
    times = [e.time_s for e in detect(wave, refractory_s=1.5)]
    assert len(times) >= 2
    assert all(b - a >= 1.5 - 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert len(detect(wave, refractory_s=10.0)) == 1


def last_sample_scorer(windows: np.ndarray) -> np.ndarray:
    """A stand-in model that says "yes" (0.95) only for windows ending on a marker sample."""
    probs = np.tile([0.9, 0.05, 0.03, 0.02], (len(windows), 1))
    probs[windows[:, -1] == 1.0] = [0.02, 0.01, 0.95, 0.02]
    return probs


def test_averaging_ignores_a_single_spike() -> None:
    wave = np.zeros(3 * SR, dtype=np.float32)
    wave[2 * SR - 1] = 1.0  # only the window ending at 2.0 s sees it
    for average_s, expected in ((0.0, ["yes"]), (0.5, [])):
        config = DetectorConfig(average_s=average_s)
        events = StreamingDetector(last_sample_scorer, LABELS, config).run([wave])
        assert [e.label for e in events] == expected
        assert all(e.time_s == 2.0 for e in events)


def test_threshold_is_respected() -> None:
    wave = signal((0, 1.0), (0.1, 0.8), (0.3, 0.2), (0, 1.0))  # at most 80% "yes"
    assert detect(wave, threshold=0.75) != []
    assert detect(wave, threshold=0.85) == []


def test_silence_and_unknown_are_never_reported() -> None:
    wave = signal((0.3, 3.0), (0.0, 3.0))  # certain _unknown_, then certain _silence_
    assert detect(wave, threshold=0.1) == []


def test_different_keywords_in_sequence() -> None:
    wave = signal((0, 1.0), (0.1, 1.0), (0, 1.5), (0.2, 1.0), (0, 1.5), (0.1, 1.0), (0, 1.0))
    assert [e.label for e in detect(wave, chunk=777)] == ["yes", "no", "yes"]


def test_flush_scores_the_windows_still_waiting_for_a_batch() -> None:
    wave = signal((0, 2.0), (0.1, 1.0))
    detector = StreamingDetector(level_scorer, LABELS, DetectorConfig(batch_windows=64))
    assert detector.push(wave) == []  # fewer than 64 windows: nothing scored yet
    assert [e.label for e in detector.flush()] == ["yes"]
    assert detector.time_s == pytest.approx(3.0)


def test_reset_restarts_time() -> None:
    wave = signal((0, 1.0), (0.1, 1.0))
    detector = StreamingDetector(level_scorer, LABELS)
    first = detector.run([wave])
    detector.reset()
    assert detector.run([wave]) == first


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        DetectorConfig(hop_s=0)
    with pytest.raises(ValueError):
        DetectorConfig(threshold=1.5)
    with pytest.raises(ValueError):
        DetectorConfig(refractory_s=-1)
    with pytest.raises(ValueError):
        StreamingDetector(level_scorer, ["_silence_", "_unknown_"])


def test_per_keyword_thresholds_hold_each_keyword_to_its_own() -> None:
    # "yes" then "no", each at most 80% of a window (the rest _unknown_)
    word = ((0.1, 0.8), (0.3, 0.2))
    wave = signal((0, 1.0), *word, (0, 2.0), (0.2, 0.8), (0.3, 0.2), (0, 1.0))
    assert [e.label for e in detect(wave, threshold=0.75)] == ["yes", "no"]
    assert [e.label for e in detect(wave, threshold=0.85)] == []
    only_no = detect(wave, threshold=0.75, thresholds={"yes": 0.85})
    assert [e.label for e in only_no] == ["no"]
    only_yes = detect(wave, threshold=0.85, thresholds={"yes": 0.75})
    assert [e.label for e in only_yes] == ["yes"]
    assert detect(wave, threshold=0.75, thresholds={"yes": 0.75, "no": 0.75}) == detect(
        wave, threshold=0.75
    )
    with pytest.raises(ValueError, match="not a keyword"):
        StreamingDetector(level_scorer, LABELS, DetectorConfig(thresholds={"_unknown_": 0.5}))
    with pytest.raises(ValueError, match="not a keyword"):
        StreamingDetector(level_scorer, LABELS, DetectorConfig(thresholds={"maybe": 0.5}))
    with pytest.raises(ValueError):
        DetectorConfig(thresholds={"yes": 0.0})


def test_per_keyword_events_do_not_depend_on_chunk_size(random_model_scorer) -> None:
    batch_windows = 8  # thresholds act after scoring: live batches (1) are covered above
    rng = np.random.default_rng(1)
    wave = (rng.standard_normal(SR * 6) * np.repeat(rng.uniform(0, 0.3, 60), SR // 10)).astype(
        np.float32
    )
    thresholds = {"yes": 0.35, "no": 0.9}
    config = DetectorConfig(
        threshold=0.5, refractory_s=0.3, batch_windows=batch_windows, thresholds=thresholds
    )
    results = []
    for chunk in (160, 1000, 4096, len(wave)):
        detector = StreamingDetector(random_model_scorer, LABELS, config)
        results.append(detector.run(wave[i : i + chunk] for i in range(0, len(wave), chunk)))
    assert results[0], "the thresholds should give some events to compare"
    assert all(events == results[0] for events in results[1:])
    single = StreamingDetector(random_model_scorer, LABELS, DetectorConfig(threshold=0.5,
        refractory_s=0.3, batch_windows=batch_windows)).run([wave])  # fmt: skip
    assert single != results[0], "per-keyword thresholds should change these events"


def test_replaying_recorded_scores_gives_the_same_events(random_model_scorer) -> None:
    rng = np.random.default_rng(2)
    wave = (rng.standard_normal(SR * 5) * np.repeat(rng.uniform(0, 0.3, 50), SR // 10)).astype(
        np.float32
    )
    recording = RecordingScorer(random_model_scorer)
    assert recording.posteriors.shape == (0, 0)
    config = DetectorConfig(threshold=0.4, refractory_s=0.3, average_s=0.3, batch_windows=4)
    events = StreamingDetector(recording, LABELS, config).run([wave])
    assert events
    posteriors = recording.posteriors  # (N, C)
    assert posteriors.shape == ((len(wave) - SR) // 1600 + 1, len(LABELS))
    detector = StreamingDetector(level_scorer, LABELS, config)  # never called on replay
    assert detector.replay(posteriors) == events
    assert detector.time_s == 0 and detector.windows_scored == 0  # left reset
    for threshold in (0.3, 0.6):  # other settings: as if the audio were streamed again
        other = DetectorConfig(threshold=threshold, refractory_s=0.3, batch_windows=4)
        streamed = StreamingDetector(random_model_scorer, LABELS, other).run([wave])
        assert StreamingDetector(level_scorer, LABELS, other).replay(posteriors) == streamed


def test_operating_point_round_trips_and_rejects_malformed_entries() -> None:
    point = OperatingPoint(
        threshold=0.9, average_s=0.3, refractory_s=1.0, hop_s=0.1,
        thresholds={"yes": 0.8, "no": 0.9}, target_fa_per_hour=1.0, negative_s=7200.0,
        false_alarms=1, source="data, validation split", created="2024-01-01T00:00:00+00:00",
        hit_rate=0.5,
    )  # fmt: skip
    stored = point.to_dict()
    assert OperatingPoint.from_dict(stored, LABELS) == point
    assert point.fa_per_hour == 0.5
    assert DetectorConfig(**point.detector_settings()).thresholds == {"yes": 0.8, "no": 0.9}
    for change, problem in (
        ({"threshold": 1.5}, "threshold must be a number from 0 to 1"),
        ({"threshold": "0.9"}, "threshold must be a number"),
        ({"threshold": 0}, "greater than 0"),
        ({"average_s": float("nan")}, "average_s"),
        ({"hop_s": True}, "hop_s"),
        ({"thresholds": [0.5]}, "thresholds is not a mapping"),
        ({"thresholds": {"maybe": 0.5}}, "'maybe', which is not a label"),
        ({"thresholds": {"_unknown_": 0.5}}, "not a keyword"),
        ({"thresholds": {"yes": -1}}, "thresholds['yes']"),
        ({"false_alarms": 1.5}, "false_alarms"),
        ({"source": 3}, "source"),
        ({"hit_rate": 2}, "hit_rate"),
    ):
        with pytest.raises(ValueError, match=problem.replace("[", r"\[")):
            OperatingPoint.from_dict({**stored, **change}, LABELS)
    with pytest.raises(ValueError, match="no refractory_s"):
        OperatingPoint.from_dict({k: v for k, v in stored.items() if k != "refractory_s"})
    with pytest.raises(ValueError, match="not a mapping"):
        OperatingPoint.from_dict([1, 2])


def test_settings_given_win_over_the_operating_point_which_wins_over_defaults() -> None:
    point = OperatingPoint(threshold=0.8, average_s=0.3, refractory_s=1.0, hop_s=0.1,
                           thresholds={"yes": 0.9})  # fmt: skip
    assert DetectorConfig.resolve(None, {}, 4) == DetectorConfig(batch_windows=4)
    calibrated = DetectorConfig.resolve(point, {}, 1)
    assert (calibrated.threshold, calibrated.average_s, calibrated.thresholds) == (
        0.8, 0.3, {"yes": 0.9},
    )  # fmt: skip
    given = DetectorConfig.resolve(point, {"threshold": 0.6, "refractory_s": 2.0}, 1)
    assert (given.threshold, given.refractory_s, given.average_s) == (0.6, 2.0, 0.3)
    assert given.thresholds == {}  # a given threshold holds for every keyword


def test_a_running_detectors_threshold_changes_without_losing_its_audio() -> None:
    # "yes" at 60 % of a window's samples averages to about 0.6: under 0.9, over 0.5
    wave = signal((0.0, 1.0), (0.1, 0.6), (0.0, 2.0))
    config = DetectorConfig(threshold=0.9, thresholds={"yes": 0.95})
    detector = StreamingDetector(level_scorer, LABELS, config)
    assert detector.run([wave[: SR // 2]]) == []
    detector.set_threshold(0.5)
    assert detector.config.thresholds == {} and detector.config.threshold == 0.5
    assert [e.label for e in detector.run([wave[SR // 2 :]])] == ["yes"]


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"average_s": float("inf")}, "average_s"),
        ({"refractory_s": float("inf")}, "refractory_s"),
        ({"hop_s": float("inf")}, "hop_s"),
        ({"window_s": float("nan")}, "window_s"),
        ({"average_s": 1e300}, "average_s"),
        ({"refractory_s": 1e300}, "refractory_s"),
        ({"hop_s": 1e-5}, "hop_s must be at least 0.01"),
        ({"hop_s": 0.009}, "hop_s must be at least 0.01"),
        ({"hop_s": True}, "hop_s must be a number"),
        ({"hop_s": "0.1"}, "hop_s must be a number"),
        ({"threshold": float("nan")}, "threshold"),
        ({"threshold": True}, "threshold must be a number"),
        ({"thresholds": {"yes": float("inf")}}, "thresholds['yes']"),
        ({"thresholds": {"yes": None}}, "thresholds['yes']"),
        ({"batch_windows": 0}, "batch_windows"),
        ({"batch_windows": 2.5}, "batch_windows must be an integer"),
        ({"batch_windows": 10**9}, "batch_windows"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": float("inf")}, "sample_rate"),
    ],
)
def test_every_setting_is_finite_and_in_range(settings: dict, problem: str) -> None:
    """A ValueError in one line naming the field, never OverflowError or an endless stream."""
    with pytest.raises(ValueError) as err:
        DetectorConfig(**settings)
    assert type(err.value) is not OverflowError
    message = str(err.value)
    assert "\n" not in message and problem in message


def test_the_smallest_hop_and_largest_spans_still_run() -> None:
    """The limits are far from any setting in use: one frame of hop and day-long spans."""
    config = DetectorConfig(hop_s=0.01, average_s=86_400.0, refractory_s=86_400.0)
    assert config.hop == 160 and config.average_count == 8_640_000
    wave = signal((0, 1.0), (0.1, 0.8), (0, 1.0))
    detector = StreamingDetector(level_scorer, LABELS, DetectorConfig(hop_s=0.01))
    assert [e.label for e in detector.run([wave])] == ["yes"]


def test_a_word_that_ends_with_the_input_is_heard_when_the_input_ends() -> None:
    """A file's last word never reached the threshold: its averaged score needs the
    windows after it. ``ends=True`` (files, pipes, arrays) scores the windows that still
    hold some of the input, silence after it; a live stream (the microphone) is only
    flushed."""
    wave = signal((0.0, 2.0), (0.1, 0.7))  # "yes" in the last 0.7 s
    config = DetectorConfig(threshold=0.45, average_s=0.8, refractory_s=1.5)
    unfinished = StreamingDetector(level_scorer, LABELS, config)
    assert list(unfinished.events([wave])) == []
    finished = StreamingDetector(level_scorer, LABELS, config)
    events = list(finished.events([wave], ends=True))
    assert [e.label for e in events] == ["yes"]
    assert finished.time_s == pytest.approx(2.7)  # the silence added is not audio received
    assert finished.windows_scored == 18 + 9  # windows ending at 1.0 ... 2.7 s, then to 3.6 s
    quiet = StreamingDetector(level_scorer, LABELS, config)  # nothing received: nothing added
    assert list(quiet.events([], ends=True)) == [] and quiet.windows_scored == 0
