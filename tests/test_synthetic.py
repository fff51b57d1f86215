"""Tests for speech_gru/train/synth_espeak.py (the espeak-ng synthetic dataset)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speech_gru.core.labels import BACKGROUND_NOISE
from speech_gru.train import synth_espeak, synth_speakers, synth_voices

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install espeak-ng)",
)

WORDS = ("yes", "no", "stop")
UNKNOWN = ("marvin",)
SPEAKERS = 3
REPEATS = 2
NOISE_SECONDS = 1.5
SEED = 7
NAME_RE = re.compile(r"^[0-9a-f]{8}_nohash_\d+\.wav$")
RMS_FLOOR = 0.005


def _build(out: Path, seed: int = SEED) -> dict:
    return synth_espeak.make_dataset(
        out,
        words=WORDS,
        unknown_words=UNKNOWN,
        speakers=SPEAKERS,
        repeats=REPEATS,
        noise_seconds=NOISE_SECONDS,
        seed=seed,
        jobs=2,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synthetic")
    return out, _build(out)


def _wavs(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.wav"))}


@needs_espeak
def test_layout_and_names(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    expected_dirs = {*WORDS, *UNKNOWN, BACKGROUND_NOISE}
    assert {p.name for p in out.iterdir() if p.is_dir()} == expected_dirs
    ids = {s.id for s in synth_espeak.make_speakers(SPEAKERS, SEED)}
    assert len(ids) == SPEAKERS
    assert summary["speakers"] == SPEAKERS
    assert set(summary["speaker_ids"]) == ids
    assert summary["files_per_word"] == {w: SPEAKERS * REPEATS for w in (*WORDS, *UNKNOWN)}
    assert summary["created"] == len(expected_dirs - {BACKGROUND_NOISE}) * SPEAKERS * REPEATS
    for word in (*WORDS, *UNKNOWN):
        names = sorted(p.name for p in (out / word).iterdir())
        assert len(names) == SPEAKERS * REPEATS
        assert all(NAME_RE.match(n) for n in names), names
        assert {n.split("_")[0] for n in names} == ids
        assert {int(n.rsplit("_", 1)[1][:-4]) for n in names} == set(range(REPEATS))
    for split in ("validation", "testing"):
        for line in (out / f"{split}_list.txt").read_text().splitlines():
            assert (out / line).is_file()


@needs_espeak
def test_clip_format_and_not_silent(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    clips = [p for w in (*WORDS, *UNKNOWN) for p in (out / w).glob("*.wav")]
    assert clips
    for path in clips:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), path
        audio, _ = sf.read(path, dtype="int16")
        assert audio.dtype == np.int16 and audio.shape == (16000,), path
        rms = float(np.sqrt(np.mean((audio / 32768.0) ** 2)))
        assert rms > RMS_FLOOR, f"{path} is nearly silent (rms={rms:.4f})"


@needs_espeak
def test_speakers_differ(dataset: tuple[Path, dict]) -> None:
    out, _ = dataset
    speakers = synth_espeak.make_speakers(SPEAKERS, SEED)
    clips = [sf.read(out / "yes" / f"{s.id}_nohash_0.wav", dtype="int16")[0] for s in speakers]
    raw = [
        synth_speakers.trim_silence(synth_voices.espeak_speak("yes", s.voice, s.pitch, s.speed))
        for s in speakers
    ]
    for i in range(SPEAKERS):
        for j in range(i + 1, SPEAKERS):
            assert not np.array_equal(clips[i], clips[j])
            # The speech itself differs, not only the offset and the noise.
            assert len(raw[i]) != len(raw[j]) or not np.allclose(raw[i], raw[j], atol=1e-3)


@needs_espeak
def test_noise_folder(dataset: tuple[Path, dict]) -> None:
    out, summary = dataset
    noise_dir = out / BACKGROUND_NOISE
    names = sorted(p.name for p in noise_dir.glob("*.wav"))
    assert names == sorted(synth_speakers.NOISE_FILES.values()) == sorted(summary["noise_files"])
    for name in names:
        audio, sr = sf.read(noise_dir / name, dtype="int16")
        assert sr == 16000 and audio.ndim == 1
        assert len(audio) == round(NOISE_SECONDS * 16000)
        assert np.sqrt(np.mean((audio / 32768.0) ** 2)) > 0.01


@needs_espeak
def test_same_seed_reproduces_and_rerun_is_idempotent(
    dataset: tuple[Path, dict], tmp_path: Path
) -> None:
    out, _ = dataset
    first = _wavs(out)
    again = _build(out)
    assert again["created"] == 0 and again["skipped"] == len(first) - len(
        synth_speakers.NOISE_KINDS
    )
    assert _wavs(out) == first
    other = tmp_path / "copy"
    _build(other)
    assert _wavs(other) == first


def test_make_noise_kinds() -> None:
    for kind in synth_speakers.NOISE_KINDS:
        x = synth_speakers.make_noise(kind, 0.5, 16000, np.random.default_rng(0))
        y = synth_speakers.make_noise(kind, 0.5, 16000, np.random.default_rng(0))
        assert x.dtype == np.float32 and x.shape == (8000,)
        assert np.array_equal(x, y) and np.abs(x).max() < 1.0
    # Spectral tilt: brown noise has most of its energy at low frequencies, white does not.
    rng = np.random.default_rng(1)
    low = {}
    for kind in ("white", "pink", "brown"):
        power = np.abs(np.fft.rfft(synth_speakers.make_noise(kind, 1.0, 16000, rng))) ** 2
        low[kind] = power[:500].sum() / power.sum()  # below 500 Hz
    assert low["white"] < low["pink"] < low["brown"]
    with pytest.raises(ValueError):
        synth_speakers.make_noise("purple", 1.0, 16000, rng)


def test_cli_without_espeak(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(synth_voices, "ESPEAK_BIN", "espeak-ng-definitely-missing")
    with pytest.raises(SystemExit) as exc:
        synth_espeak.main([str(tmp_path / "out")])
    message = str(exc.value.code)
    assert "apt-get install espeak-ng" in message and "\n" not in message
    assert not (tmp_path / "out").exists()
