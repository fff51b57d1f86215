"""Tests for speech_gru.runtime.mic: a fake sounddevice module stands in for PortAudio, and a real
one is used only to check the error when no input device exists."""

from __future__ import annotations

import importlib.abc
import sys

import numpy as np
import pytest

from speech_gru.core.audio import SAMPLE_RATE
from speech_gru.runtime import mic as micmod
from speech_gru.runtime.mic import MicrophoneError
from tests.helpers import fake_sounddevice, peak_hz, tone

# ------------------------------------------------------------------------------- microphone


def _real_sounddevice_or_skip():
    try:
        return micmod._import_sounddevice()
    except MicrophoneError as exc:
        pytest.skip(f"sounddevice unusable here: {exc}")


def test_microphone_without_input_device_is_a_clean_error() -> None:
    """On this machine either sounddevice is unusable or PortAudio sees no input device."""
    try:
        sd = micmod._import_sounddevice()
    except MicrophoneError as exc:
        assert "install" in str(exc) and "\n" not in str(exc)
        return
    try:
        has_input = any(d["max_input_channels"] > 0 for d in sd.query_devices())
    except Exception:
        has_input = False
    if has_input:
        pytest.skip("an audio input device exists")
    with pytest.raises(MicrophoneError) as err:
        micmod.Microphone()
    assert str(err.value).startswith("microphone: no audio input device")
    assert "\n" not in str(err.value)
    assert isinstance(micmod.list_devices(), str)


def test_microphone_sounddevice_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    with pytest.raises(MicrophoneError) as err:
        micmod.Microphone()
    assert "pip install sounddevice" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MicrophoneError):
        micmod.list_devices()


def test_microphone_portaudio_missing(monkeypatch) -> None:
    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(MicrophoneError) as err:
        micmod.Microphone()
    assert "apt-get install libportaudio2" in str(err.value) and "\n" not in str(err.value)


def test_microphone_resamples_mixes_and_counts_overflows(monkeypatch) -> None:
    t = tone(440, 48000, 1.0)
    stereo = np.stack([t, t], axis=1)
    blocks = [stereo[i : i + 4800] for i in range(0, 48000, 4800)]
    sd = fake_sounddevice(blocks, overflow_at={2, 5})
    monkeypatch.setitem(sys.modules, "sounddevice", sd)

    mic = micmod.Microphone(device="usb", channels=2, timeout=0.05)
    assert (mic.device, mic.device_rate, mic.sample_rate, mic.block_size) == (1, 48000, 16000, 1600)
    chunks = []
    with mic, pytest.raises(MicrophoneError, match="audio device stopped delivering"):
        for chunk in mic:
            chunks.append(chunk)
    assert sd.opened[0].kwargs == dict(device=1, channels=2, samplerate=48000)
    assert mic.overflows == 2
    assert len(chunks) >= 8 and all(c.shape == (1600,) and c.dtype == np.float32 for c in chunks)
    joined = np.concatenate(chunks)
    assert abs(peak_hz(joined[2000:], SAMPLE_RATE) - 440) <= 2.0
    assert list(mic) == []  # closed: iteration ends
    # Closed at once (abort), not drained (stop): a drain can wait without end (Ctrl-C).
    assert sd.calls == ["abort", "close"]
    mic.close()  # a second close does nothing
    assert sd.calls == ["abort", "close"]


def test_microphone_native_16k_passthrough_and_device_errors(monkeypatch) -> None:
    wave = tone(300, SAMPLE_RATE, 0.5)
    blocks = [wave[i : i + 800, None] for i in range(0, wave.size, 800)]
    sd = fake_sounddevice(blocks, rates=(16000, 48000), max_channels=1)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)

    with micmod.Microphone(block_seconds=0.05, timeout=0.05, channels=2) as mic:
        assert (mic.device_rate, mic.channels) == (16000, 1)
        got = [next(mic) for _ in range(len(blocks))]
    np.testing.assert_array_equal(np.concatenate(got), wave)

    for chosen in (1, "1", " 1", "usb"):  # an index typed on the command line is an index
        with micmod.Microphone(device=chosen, block_seconds=0.05, timeout=0.05) as mic:
            assert mic.device == 1
    for bad in ("webcam", 0, 7, "0", "7"):
        with pytest.raises(MicrophoneError) as err:
            micmod.Microphone(device=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(MicrophoneError, match="not started"):
        next(micmod.Microphone())
    assert "USB Mic" in micmod.list_devices()


def test_microphone_that_never_delivers_fails_after_the_startup_grace(monkeypatch) -> None:
    sd = fake_sounddevice([], rates=(16000,), max_channels=1)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    mic = micmod.Microphone(timeout=0.05, startup_timeout=0.2)
    with mic, pytest.raises(MicrophoneError, match="delivered no audio within 0.2 s") as err:
        next(mic)
    assert "\n" not in str(err.value)
