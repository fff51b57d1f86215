"""Tests for speech_gru.core.audio: every input is generated in tmp_path; no hardware needed."""

from __future__ import annotations

import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_gru.core import audio
from speech_gru.core.audio import SAMPLE_RATE, AudioError
from speech_gru.runtime.mic import MicrophoneError
from tests.helpers import assert_one_line_error, peak_hz, tone

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
