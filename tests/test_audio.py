"""Tests for speech_gru.audio: every input is generated in tmp_path; no hardware needed."""

from __future__ import annotations

import importlib.abc
import pickle
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_gru import audio
from speech_gru.audio import SAMPLE_RATE, AudioError, MicrophoneError


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    """Sine wave, float32, shape (round(seconds * rate),)."""
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the largest FFT bin of ``wave``."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.fft.rfftfreq(wave.size, 1 / rate)[np.argmax(spectrum)])


def assert_one_line_error(err: pytest.ExceptionInfo[AudioError], path: Path, problem: str) -> None:
    msg = str(err.value)
    assert "\n" not in msg and "\r" not in msg
    assert path.name in msg
    assert msg == f"{path}: {err.value.problem}"
    assert problem in err.value.problem


# ------------------------------------------------------------------------------ good inputs


def test_mono_16k_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    wave = (rng.standard_normal(12345) * 0.2).astype(np.float32)
    path = tmp_path / "clip.wav"
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")
    out = audio.load_audio(path)
    assert out.dtype == np.float32 and out.shape == (12345,)
    np.testing.assert_array_equal(out, wave)
    assert audio.info(path) == audio.AudioInfo(SAMPLE_RATE, 1, 12345, 12345 / SAMPLE_RATE)


def test_write_wav_pcm16_round_trip_and_clipping(tmp_path: Path) -> None:
    wave = tone(440, SAMPLE_RATE, 0.5)
    wave[:10] = 3.0  # out of range: clipped on write
    path = tmp_path / "written.wav"
    audio.write_wav(path, wave)
    assert sf.info(path).subtype == "PCM_16"
    out = audio.load_audio(path)
    assert out.shape == wave.shape
    np.testing.assert_allclose(out[10:], wave[10:], atol=1.5 / 32768)
    np.testing.assert_allclose(out[:10], 1.0, atol=1.5 / 32768)
    with pytest.raises(ValueError):
        audio.write_wav(tmp_path / "nan.wav", np.array([0.0, np.nan]))
    with pytest.raises(AudioError):
        audio.write_wav(tmp_path / "no_such_dir" / "x.wav", wave)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_to_16k_keeps_length_and_pitch(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, tone(440, rate), rate, subtype="PCM_16")
    out = audio.load_audio(path)
    assert out.dtype == np.float32 and out.shape == (SAMPLE_RATE,)
    assert abs(peak_hz(out) - 440) <= 1.0
    # amplitude survives (no gain change, no clipping)
    assert 0.45 < np.abs(out[1000:-1000]).max() < 0.55
    # another target rate
    assert audio.load_audio(path, sample_rate=8000).shape == (8000,)


def test_stereo_opposite_channels_average_to_silence(tmp_path: Path) -> None:
    t = tone(440, SAMPLE_RATE)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([t, -t], axis=1), SAMPLE_RATE, subtype="FLOAT")
    out = audio.load_audio(path)
    assert out.shape == (SAMPLE_RATE,)
    assert np.abs(out).max() < 1e-6


def test_six_channels_are_averaged(tmp_path: Path) -> None:
    n = 4000
    levels = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], dtype=np.float32)
    data = np.tile(levels, (n, 1))
    data[:, 5] += tone(440, SAMPLE_RATE, n / SAMPLE_RATE, amp=0.1)
    path = tmp_path / "six.wav"
    sf.write(path, data, 48000, subtype="FLOAT")
    assert audio.info(path).channels == 6
    native = audio.load_audio(path, sample_rate=48000)
    np.testing.assert_allclose(native, data.mean(axis=1), atol=1e-7)
    resampled = audio.load_audio(path)
    assert resampled.shape == (round(n * SAMPLE_RATE / 48000),)
    assert abs(float(np.median(resampled)) - 0.25) < 0.01


@pytest.mark.parametrize(
    ("name", "fmt", "subtype"), [("c.flac", "FLAC", "PCM_16"), ("c.ogg", "OGG", "VORBIS")]
)
def test_flac_and_ogg(tmp_path: Path, name: str, fmt: str, subtype: str) -> None:
    path = tmp_path / name
    sf.write(path, tone(440, 22050), 22050, format=fmt, subtype=subtype)
    out = audio.load_audio(path)
    assert abs(out.size - SAMPLE_RATE) <= 16
    assert abs(peak_hz(out) - 440) <= 1.0
    assert audio.info(path).sample_rate == 22050


def _make_mp3(wav: Path, mp3: Path) -> bool:
    """Encode ``wav`` to ``mp3`` with ffmpeg, sox or libsndfile; False if none can."""
    for cmd in (
        ["ffmpeg", "-v", "error", "-y", "-i", str(wav), str(mp3)],
        ["sox", str(wav), str(mp3)],
    ):
        if (
            shutil.which(cmd[0])
            and subprocess.run(cmd, capture_output=True).returncode == 0
            and mp3.exists()
            and mp3.stat().st_size > 0
        ):
            return True
    try:
        data, rate = sf.read(wav, dtype="float32")
        sf.write(mp3, data, rate, format="MP3", subtype="MPEG_LAYER_III")
        return True
    except Exception:
        return False


def test_mp3(tmp_path: Path) -> None:
    wav, mp3 = tmp_path / "src.wav", tmp_path / "clip.mp3"
    sf.write(wav, tone(440, 44100), 44100, subtype="PCM_16")
    if not _make_mp3(wav, mp3):
        pytest.skip("no MP3 encoder (ffmpeg, sox with mp3, libsndfile >= 1.1) available")
    out = audio.load_audio(mp3)
    assert abs(out.size - SAMPLE_RATE) < 0.1 * SAMPLE_RATE  # encoder delay/padding
    assert abs(peak_hz(out[:8192], SAMPLE_RATE) - 440) <= 4.0
    assert audio.info(mp3).sample_rate == 44100


def test_truncated_data_chunk_is_an_error(tmp_path: Path) -> None:
    """A WAV cut short (a broken download) is refused, as the README promises.

    libsndfile quietly returns the frames present; those were once accepted, which labelled
    a cut-off word as if whole. More cases: tests/test_hostile_cli.py.
    """
    full = tmp_path / "full.wav"
    sf.write(full, tone(440, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    data = full.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 2 * 4000 + 1])  # 4000 frames and half a sample
    with pytest.raises(AudioError, match="truncated file .header says 16000 frames, 4000 present"):
        audio.load_audio(cut)


# ------------------------------------------------------------------------------- bad inputs


def _wav_header_only(path: Path) -> None:
    tmp = path.with_name("full.wav")
    sf.write(tmp, tone(440, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    path.write_bytes(tmp.read_bytes()[:44])  # header declares 32000 data bytes; none present


def _nan_wav(path: Path) -> None:
    wave = tone(440, SAMPLE_RATE, 0.1)
    wave[100] = np.nan
    sf.write(path, wave, SAMPLE_RATE, subtype="FLOAT")


def _inf_wav(path: Path) -> None:
    wave = np.stack([tone(440, 8000, 0.1)] * 2, axis=1)
    wave[5, 1] = np.inf
    sf.write(path, wave, 8000, subtype="FLOAT")


BAD_INPUTS = {
    "missing": ("clip.wav", lambda p: None, "file not found"),
    "directory": ("x", lambda p: p.mkdir(), "is a directory"),
    "zero_bytes": ("clip.wav", lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "random_wav": (
        "clip.wav",
        lambda p: p.write_bytes(np.random.default_rng(1).bytes(3000)),
        "not an audio file or corrupt (",
    ),
    "random_m4a": (
        "clip.m4a",
        lambda p: p.write_bytes(np.random.default_rng(2).bytes(3000)),
        "not an audio file or corrupt (",
    ),
    "truncated_header": (
        "clip.wav",
        lambda p: p.write_bytes(b"RIFF\x24\x7d\x00\x00WAVEfmt "),
        "not an audio file or corrupt (",
    ),
    "header_only": ("clip.wav", _wav_header_only, "truncated file (header says 16000 frames, 0"),
    "zero_frames": (
        "clip.wav",
        lambda p: sf.write(p, np.zeros((0, 1), np.float32), SAMPLE_RATE),
        "no samples",
    ),
    "nan": ("clip.wav", _nan_wav, "contains NaN or infinite samples"),
    "inf_stereo_8k": ("clip.wav", _inf_wav, "contains NaN or infinite samples"),
    "text_mp3": (
        "clip.mp3",
        lambda p: p.write_text("this is not audio\n" * 20),
        "not an audio file or corrupt (",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_raises_one_line_audio_error(tmp_path: Path, case: str) -> None:
    name, make, problem = BAD_INPUTS[case]
    path = tmp_path / name
    make(path)
    with pytest.raises(AudioError) as err:
        audio.load_audio(path)
    assert_one_line_error(err, path, problem)
    with pytest.raises(AudioError) as err:
        list(audio.iter_blocks(path, block_seconds=0.05))
    assert_one_line_error(err, path, problem)
    if problem in ("no samples", "contains NaN or infinite samples"):
        assert audio.info(path).channels >= 1  # the header itself is fine
    else:
        with pytest.raises(AudioError) as err:
            audio.info(path)
        assert_one_line_error(err, path, problem)


def test_audio_error_message_and_pickle() -> None:
    err = AudioError("clip.wav", "not an audio file or corrupt (bad\nthing)")
    assert str(err) == "clip.wav: not an audio file or corrupt (bad thing)"
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is AudioError and str(again) == str(err) and again.path == "clip.wav"
    mic = pickle.loads(pickle.dumps(MicrophoneError("boom")))
    assert isinstance(mic, AudioError) and str(mic) == "microphone: boom"


# ------------------------------------------------------------------------------ iter_blocks


def test_iter_blocks_16k_exact_and_block_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    wave = (rng.standard_normal(SAMPLE_RATE * 3 + 777, dtype=np.float32) * 0.2).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([wave, -0.5 * wave], axis=1), SAMPLE_RATE, subtype="FLOAT")
    blocks = list(audio.iter_blocks(path, block_seconds=0.5))
    assert [b.size for b in blocks] == [8000] * 6 + [777]
    assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), audio.load_audio(path))


@pytest.mark.parametrize("rate", [44100, 8000])
def test_iter_blocks_resampled_matches_load_audio(tmp_path: Path, rate: int) -> None:
    rng = np.random.default_rng(4)
    n = rate * 2 + 311
    data = np.stack([tone(440, rate, n / rate), rng.standard_normal(n) * 0.1], axis=1)
    path = tmp_path / f"long_{rate}.flac"
    sf.write(path, data, rate, subtype="PCM_24")
    whole = audio.load_audio(path)
    blocks = list(audio.iter_blocks(path, block_seconds=0.3))
    assert len(blocks) > 1 and all(b.size == 4800 for b in blocks[:-1])
    joined = np.concatenate(blocks)
    assert joined.shape == whole.shape
    np.testing.assert_allclose(joined, whole, atol=1e-4)


def test_fallback_decoder_when_soundfile_cannot_open(tmp_path: Path, monkeypatch) -> None:
    """Formats soundfile refuses go through librosa/audioread; iter_blocks slices the result."""
    path = tmp_path / "clip.m4a"
    wave = tone(440, 8000, 1.0)
    sf.write(path, wave, 8000, format="WAV", subtype="PCM_16")  # audioread's raw backend reads it

    def refuse(*args, **kwargs):
        raise sf.LibsndfileError(1, "Error opening: ")

    class RefusingSoundFile(sf.SoundFile):
        def __init__(self, *args, **kwargs):
            refuse()

    # librosa shares this soundfile module object, so it falls through to audioread too.
    monkeypatch.setattr(audio.sf, "SoundFile", RefusingSoundFile)
    monkeypatch.setattr(audio.sf, "read", refuse)
    monkeypatch.setattr(audio.sf, "info", refuse)
    monkeypatch.setattr(audio, "_is_native", lambda path, head: False)
    out = audio.load_audio(path, sample_rate=8000)
    np.testing.assert_allclose(out, wave, atol=2 / 32768)
    assert audio.info(path) == audio.AudioInfo(8000, 1, 8000, 1.0)
    blocks = list(audio.iter_blocks(path, block_seconds=0.4))
    assert [b.size for b in blocks] == [6400, 6400, 3200]
    np.testing.assert_array_equal(np.concatenate(blocks), audio.load_audio(path))


def test_iter_blocks_rejects_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    audio.write_wav(path, tone(440, SAMPLE_RATE, 0.1))
    with pytest.raises(ValueError):
        audio.iter_blocks(path, block_seconds=0)
    with pytest.raises(ValueError):
        audio.load_audio(path, sample_rate=0)


# ------------------------------------------------------------------------------- fit_length


def test_fit_length_pads_and_trims() -> None:
    wave = np.arange(1, 6, dtype=np.float32)
    padded = audio.fit_length(wave, 8)
    np.testing.assert_array_equal(padded, [1, 2, 3, 4, 5, 0, 0, 0])
    assert padded.dtype == np.float32
    np.testing.assert_array_equal(audio.fit_length(wave, 3), [1, 2, 3])  # keeps the start
    same = audio.fit_length(wave, 5)
    np.testing.assert_array_equal(same, wave)
    assert same is not wave
    assert audio.fit_length(np.zeros(100, np.float32)).shape == (SAMPLE_RATE,)
    with pytest.raises(ValueError):
        audio.fit_length(np.zeros((2, 2)), 4)


# ------------------------------------------------------------------------------- microphone


def _real_sounddevice_or_skip():
    try:
        return audio._import_sounddevice()
    except MicrophoneError as exc:
        pytest.skip(f"sounddevice unusable here: {exc}")


def test_microphone_without_input_device_is_a_clean_error() -> None:
    """On this machine either sounddevice is unusable or PortAudio sees no input device."""
    try:
        sd = audio._import_sounddevice()
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
        audio.Microphone()
    assert str(err.value).startswith("microphone: no audio input device")
    assert "\n" not in str(err.value)
    assert isinstance(audio.list_devices(), str)


def test_microphone_sounddevice_missing(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    with pytest.raises(MicrophoneError) as err:
        audio.Microphone()
    assert "pip install sounddevice" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MicrophoneError):
        audio.list_devices()


def test_microphone_portaudio_missing(monkeypatch) -> None:
    class NoPortAudio(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    with pytest.raises(MicrophoneError) as err:
        audio.Microphone()
    assert "apt-get install libportaudio2" in str(err.value) and "\n" not in str(err.value)


def _fake_sounddevice(blocks, overflow_at=(), rates=(48000,), max_channels=2):
    """A stand-in for the sounddevice module whose stream replays ``blocks`` on start()."""
    sd = types.ModuleType("sounddevice")
    devices = [
        {"name": "Speakers", "max_input_channels": 0, "default_samplerate": 48000.0},
        {"name": "USB Mic", "max_input_channels": max_channels, "default_samplerate": 48000.0},
    ]

    def query_devices(device=None, kind=None):
        if kind == "input":
            return {**devices[1], "index": 1}
        return devices

    sd.query_devices = query_devices
    sd.opened = []

    def check_input_settings(device, channels, dtype, samplerate):
        if samplerate not in rates or channels > max_channels:
            raise ValueError("Invalid sample rate")

    class InputStream:
        def __init__(self, device, channels, samplerate, blocksize, dtype, callback):
            self.kwargs = dict(device=device, channels=channels, samplerate=samplerate)
            self.blocksize, self.callback = blocksize, callback
            sd.opened.append(self)

        def start(self):
            for i, block in enumerate(blocks):
                assert block.shape == (self.blocksize, self.kwargs["channels"])
                status = types.SimpleNamespace(input_overflow=i in overflow_at)
                self.callback(block, len(block), None, status if i in overflow_at else None)

        def stop(self):
            pass

        def close(self):
            pass

    sd.check_input_settings = check_input_settings
    sd.InputStream = InputStream
    return sd


def test_microphone_resamples_mixes_and_counts_overflows(monkeypatch) -> None:
    t = tone(440, 48000, 1.0)
    stereo = np.stack([t, t], axis=1)
    blocks = [stereo[i : i + 4800] for i in range(0, 48000, 4800)]
    sd = _fake_sounddevice(blocks, overflow_at={2, 5})
    monkeypatch.setitem(sys.modules, "sounddevice", sd)

    mic = audio.Microphone(device="usb", channels=2, timeout=0.05)
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


def test_microphone_native_16k_passthrough_and_device_errors(monkeypatch) -> None:
    wave = tone(300, SAMPLE_RATE, 0.5)
    blocks = [wave[i : i + 800, None] for i in range(0, wave.size, 800)]
    sd = _fake_sounddevice(blocks, rates=(16000, 48000), max_channels=1)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)

    with audio.Microphone(block_seconds=0.05, timeout=0.05, channels=2) as mic:
        assert (mic.device_rate, mic.channels) == (16000, 1)
        got = [next(mic) for _ in range(len(blocks))]
    np.testing.assert_array_equal(np.concatenate(got), wave)

    for bad in ("webcam", 0, 7):
        with pytest.raises(MicrophoneError) as err:
            audio.Microphone(device=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(MicrophoneError, match="not started"):
        next(audio.Microphone())
    assert "USB Mic" in audio.list_devices()


def test_microphone_that_never_delivers_fails_after_the_startup_grace(monkeypatch) -> None:
    sd = _fake_sounddevice([], rates=(16000,), max_channels=1)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    mic = audio.Microphone(timeout=0.05, startup_timeout=0.2)
    with mic, pytest.raises(MicrophoneError, match="delivered no audio within 0.2 s") as err:
        next(mic)
    assert "\n" not in str(err.value)
