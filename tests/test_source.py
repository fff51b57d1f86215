"""One source opener and one stream loop: microphone, file and stdin read alike, and every
caller's events come from ``StreamingDetector.events``."""

from __future__ import annotations

import io
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from speech_gru.cli.main import build_parser
from speech_gru.cli.options import detector_config
from speech_gru.core.audio import SAMPLE_RATE, AudioError, write_wav
from speech_gru.runtime.detector import DetectorConfig, StreamingDetector
from speech_gru.runtime.source import array_chunks, open_source, paced
from tests.helpers import fake_sounddevice, tone

LABELS = ["_silence_", "_unknown_", "yes", "no"]


def loud_is_yes(windows: np.ndarray) -> np.ndarray:
    """(B, window) -> (B, 4): "yes" where the window is loud, else silence."""
    loud = np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1)) > 0.05
    probs = np.zeros((len(windows), len(LABELS)))
    probs[loud, 2] = 1.0
    probs[~loud, 0] = 1.0
    return probs


def burst_wave(seconds: float = 6.0, at_s: float = 2.0) -> np.ndarray:
    wave = np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)
    burst = tone(440, SAMPLE_RATE, 0.8)
    start = round(at_s * SAMPLE_RATE)
    wave[start : start + burst.size] = burst
    return wave


def test_events_yields_each_event_while_the_stream_is_still_running() -> None:
    wave = burst_wave()
    detector = StreamingDetector(loud_is_yes, LABELS)
    pulled = []

    def chunks():
        for chunk in array_chunks(wave, 1600):
            pulled.append(chunk.size)
            yield chunk

    events = detector.events(chunks())
    first = next(events)
    assert first.label == "yes" and 1.5 < first.time_s < 4.0
    assert sum(pulled) < wave.size  # reported before the stream ended
    assert list(events) == []
    again = StreamingDetector(loud_is_yes, LABELS).run(array_chunks(wave, 999))
    assert [e.to_dict() for e in again] == [first.to_dict()]


def test_events_reports_audio_seconds_as_they_are_scored() -> None:
    seen: list[float] = []
    detector = StreamingDetector(loud_is_yes, LABELS)
    list(detector.events(array_chunks(burst_wave(3.0, 1.0), 8000), seen.append))
    assert seen == [0.5] * 6 and detector.time_s == pytest.approx(3.0)


def test_file_and_stdin_sources_give_the_same_events(tmp_path: Path) -> None:
    wave = burst_wave()
    path = tmp_path / "burst.wav"
    write_wav(path, wave)
    pcm = (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()
    from_file = open_source(path, 0.1)
    from_stdin = open_source("-", 0.1, stdin=io.BytesIO(pcm))
    assert (from_file.name, from_stdin.name) == (str(path), "stdin")
    runs = []
    for source in (from_file, from_stdin):
        with source:
            runs.append(StreamingDetector(loud_is_yes, LABELS).run(source))
    assert [e.label for e in runs[0]] == [e.label for e in runs[1]] == ["yes"]
    assert runs[0][0].time_s == pytest.approx(runs[1][0].time_s)
    assert from_file.health() == ""


def test_stdin_at_another_rate_in_stereo_is_resampled_and_mixed() -> None:
    stereo = np.stack([tone(440, 48000, 1.0)] * 2, axis=1)
    pcm = (stereo * 32767).astype("<i2").tobytes()
    source = open_source("-", 0.25, rate=48000, channels=2, stdin=io.BytesIO(pcm))
    total = sum(chunk.size for chunk in source)
    assert abs(total - SAMPLE_RATE) <= 2


def test_realtime_delivers_no_faster_than_real_time(tmp_path: Path) -> None:
    path = tmp_path / "half.wav"
    write_wav(path, np.zeros(SAMPLE_RATE // 2, dtype=np.float32))
    start = time.monotonic()
    chunks = list(open_source(path, 0.1, realtime=True))
    assert sum(c.size for c in chunks) == SAMPLE_RATE // 2
    assert time.monotonic() - start >= 0.45
    start = time.monotonic()
    assert len(list(paced([np.zeros(100)] * 3, 100))) == 3  # three 1 s chunks
    assert time.monotonic() - start >= 2.9


def test_a_missing_file_is_a_one_line_audio_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as err:
        list(open_source(tmp_path / "missing.wav", 0.1))
    assert "missing.wav" in str(err.value) and "\n" not in str(err.value)


def test_microphone_source_starts_streams_and_closes(monkeypatch) -> None:
    wave = burst_wave(4.0, 1.0)
    blocks = [wave[i : i + 1600, None] for i in range(0, wave.size, 1600)]
    fake = fake_sounddevice(blocks, rates=(16000,), max_channels=1)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    source = open_source(None, 0.1)
    assert source.live and source.name == "microphone 'USB Mic'"
    detector = StreamingDetector(loud_is_yes, LABELS)
    events = []
    with source:
        for event in detector.events(source):
            events.append(event)
            break  # a live stream is stopped by its user
    assert [e.label for e in events] == ["yes"]
    assert source.health() == ", 0 input overflows, 0 dropped blocks"
    assert list(source) == []  # closed


# -------------------------------------------------------------- flags from DetectorConfig


def test_detector_flags_come_from_the_config_with_its_defaults_in_the_help() -> None:
    flagged = {f.name: f for f in DetectorConfig.flags()}
    assert set(flagged) == {"hop_s", "average_s", "threshold", "refractory_s"}
    parser = build_parser()
    for command in ("stream", "transcribe", "evaluate-stream"):
        sub = parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001
        text = " ".join(sub.format_help().split())
        for f in flagged.values():
            assert f"{f.metadata['flag']} " in text
            assert f"else {f.default:g})" in text or f"(default: {f.default:g})" in text
    args = parser.parse_args(["stream", "--checkpoint", "m.ckpt"])
    config = detector_config(args, 1)
    defaults = DetectorConfig()
    for f in fields(DetectorConfig):
        if f.name != "batch_windows":
            assert getattr(config, f.name) == getattr(defaults, f.name)


def test_a_given_flag_overrides_the_calibrated_point() -> None:
    from speech_gru.runtime.checkpoint import OperatingPoint

    point = OperatingPoint(
        threshold=0.9,
        average_s=0.8,
        refractory_s=2.0,
        hop_s=0.1,
        target_fa_per_hour=1.0,
        false_alarms=0,
        negative_s=7200.0,
    )
    model = type("Model", (), {"operating_point": point})()
    args = build_parser().parse_args(["stream", "--checkpoint", "m", "--average", "0.3"])
    config = detector_config(args, 1, model)
    assert (config.threshold, config.average_s, config.refractory_s) == (0.9, 0.3, 2.0)
    args = build_parser().parse_args(["calibrate", "--checkpoint", "m", "--negatives", "x",
                                      "--target-fa", "1", "--hop", "0.05"])  # fmt: skip
    assert (args.hop_s, args.refractory_s) == (0.05, None)


def test_one_refractory_rule_for_the_detector_and_its_replays() -> None:
    from speech_gru.runtime.detector import after_refractory

    assert after_refractory([], 10) == []
    assert after_refractory([0, 5, 10, 12, 25], 10) == [0, 2, 4]  # 10 apart is enough
    wave = np.concatenate([burst_wave(3.0, 0.5), burst_wave(3.0, 0.2)])
    counts = []
    for refractory_s in (3.0, 5.0):  # the bursts' events are 4 s apart
        config = DetectorConfig(refractory_s=refractory_s)
        live = StreamingDetector(loud_is_yes, LABELS, config).run(array_chunks(wave, 1600))
        counts.append(len(live))
    assert counts == [2, 1]


def test_every_option_with_a_default_shows_it_in_the_help() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    for name, sub in commands.items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:  # noqa: SLF001
            if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                flag = action.option_strings[-1]
                shown = sub._get_formatter()._get_help_string(action)  # noqa: SLF001
                assert "default" in shown, (name, flag)
                assert flag in text
    text = " ".join(commands["transcribe"].format_help().split())
    assert "clips per forward pass (default: 64)" in text


def test_calibration_streams_the_users_recordings_through_the_same_opener(
    tmp_path: Path,
) -> None:
    from speech_gru.analysis.negatives import from_files
    from speech_gru.core.audio import load_audio

    wave = burst_wave(25.0, 3.0)
    path = tmp_path / "quiet room.wav"
    write_wav(path, wave)
    negatives = from_files([tmp_path])
    (stream,) = negatives.negatives
    blocks = list(stream.chunks())
    assert stream.name == str(path) and [b.size for b in blocks] == [160000, 160000, 80000]
    assert np.array_equal(np.concatenate(blocks), load_audio(path))
    assert sum(b.size for b in stream.chunks()) == wave.size  # every pass from the start
