"""`speech-gru transcribe`: long recordings, many files, formats, and every kind of bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from speech_gru.cli.main import main
from speech_gru.core.audio import load_audio
from speech_gru.train.corpus import speaker_of, which_set
from tests.helpers import WORDS

pytestmark = pytest.mark.slow  # every test here uses the session's trained model


def clip_of(commands_dir: Path, word: str, index: int = 0) -> Path:
    """A training speaker's clip: the small test model knows these well."""
    files = sorted((commands_dir / word).glob("*.wav"))
    train = [p for p in files if which_set(speaker_of(p), 10, 20, "speech_gru") == "training"]
    return train[index]


def transcribe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "speech_gru.cli", "transcribe", *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def long_recording(commands_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s of quiet noise with "yes" at 3 s, "down" at 9 s and "no" at 15 s."""
    rng = np.random.default_rng(1)
    wave = 0.002 * rng.standard_normal(20 * 16000).astype(np.float32)
    for word, at in (("yes", 3), ("down", 9), ("no", 15)):
        wave[at * 16000 : (at + 1) * 16000] += load_audio(clip_of(commands_dir, word))
    path = tmp_path_factory.mktemp("long") / "session.wav"
    sf.write(path, wave, 16000, subtype="PCM_16")
    return path


def test_long_recording_gives_timestamped_keywords(
    checkpoint: Path, long_recording: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["transcribe", "--checkpoint", str(checkpoint), "--threshold", "0.5"]
    assert main([*args, "--format", "json", str(long_recording)]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["label"] for e in events] == ["yes", "down", "no"]
    for event, at in zip(events, (3, 9, 15), strict=True):
        assert event["path"] == str(long_recording)
        assert at <= event["time_s"] <= at + 2.0
        assert event["end_s"] - event["start_s"] == pytest.approx(1.0)

    assert main([*args, "--format", "csv", str(long_recording)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["label"] for r in rows] == ["yes", "down", "no"]
    assert all(float(r["start_s"]) < float(r["end_s"]) for r in rows)

    assert main([*args, str(long_recording)]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [fields[1] for fields in lines] == ["yes", "down", "no"] and len(lines[0]) == 5


def test_short_clips_keep_one_label_and_output_file(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    clips = [clip_of(commands_dir, w) for w in WORDS]
    out = tmp_path / "labels.csv"
    code = main(["transcribe", "--checkpoint", str(checkpoint), "--format", "csv",
                 "--output", str(out), *map(str, clips)])  # fmt: skip
    assert code == 0
    assert capsys.readouterr().out == ""  # results went to the file
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == [str(c) for c in clips]
    assert [r["label"] for r in rows] == list(WORDS)
    assert all(r["start_s"] == r["end_s"] == "" for r in rows)


def test_folders_are_walked_with_a_summary(
    checkpoint: Path, commands_dir: Path, tmp_path: Path
) -> None:
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    for i, word in enumerate(WORDS):
        (nested / f"{word}.wav").write_bytes(clip_of(commands_dir, word).read_bytes())
        (tmp_path / "a" / f"notes{i}.txt").write_text("not audio")
    result = transcribe("--checkpoint", str(checkpoint), "--jobs", "3", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(WORDS)
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"summary: {2 * len(WORDS)} files: {len(WORDS)} done, 0 failed, {len(WORDS)} skipped"
        )
    )


def write(path: Path, wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, wave, rate, subtype=subtype)
    return path


def test_bad_inputs_each_get_one_line_and_the_run_goes_on(
    checkpoint: Path, commands_dir: Path, tmp_path: Path
) -> None:
    good = clip_of(commands_dir, "yes")
    wave = load_audio(good)
    nan = wave.copy()
    nan[100] = np.nan
    inf = wave.copy()
    inf[200] = np.inf
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "random.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    (tmp_path / "truncated.wav").write_bytes(good.read_bytes()[:44])
    (tmp_path / "no_audio").mkdir()
    bad = {
        "missing.wav": "file not found",
        "empty.wav": "empty file",
        "random.wav": "not an audio file or corrupt",
        "truncated.wav": "truncated file",  # the header promises 1 s; none is there
        "nan.wav": "NaN or infinite",
        "inf.wav": "NaN or infinite",
        "no_audio": "no audio files in this folder",
    }
    write(tmp_path / "nan.wav", nan, 16000, "FLOAT")
    write(tmp_path / "inf.wav", inf, 16000, "FLOAT")
    inputs = [str(tmp_path / name) for name in bad]
    result = transcribe("--checkpoint", str(checkpoint), *inputs[:3], str(good), *inputs[3:])
    assert result.returncode == 1
    [line] = result.stdout.splitlines()  # the good file, labelled, between the bad ones
    assert line.split("\t")[:2] == [str(good), "yes"]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad) and "Traceback" not in result.stderr
    for line, (name, problem) in zip(errors, bad.items(), strict=True):
        assert line.startswith(f"error: {tmp_path / name}: ") and problem in line, line
    assert "8 files: 1 done, 7 failed, 0 skipped" in result.stderr


def test_rates_channels_and_loudness_do_not_change_the_label(
    checkpoint: Path, commands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    wave = load_audio(clip_of(commands_dir, "down"))
    variants = {
        "8k.wav": (soxr.resample(wave, 16000, 8000), 8000, "PCM_16"),
        "48k.wav": (soxr.resample(wave, 16000, 48000), 48000, "PCM_16"),
        "stereo.wav": (np.stack([wave, wave], 1), 16000, "PCM_16"),
        "six.wav": (np.stack([wave] * 6, 1), 16000, "PCM_16"),
        "loud.wav": (wave * 1000.0, 16000, "FLOAT"),  # far beyond full scale
        "quiet.wav": (wave * 0.1, 16000, "FLOAT"),
    }
    paths = [write(tmp_path / name, *spec) for name, spec in variants.items()]
    assert main(["transcribe", "--checkpoint", str(checkpoint), "--json", *map(str, paths)]) == 0
    labels = [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()]
    assert labels == ["down"] * len(variants)


def test_an_hour_long_file_is_streamed_in_bounded_memory(
    checkpoint: Path, commands_dir: Path, tmp_path: Path
) -> None:
    """An hour of audio costs no more memory than a minute: it is never loaded whole."""
    word = load_audio(clip_of(commands_dir, "yes"))

    def recording(path: Path, minutes: int) -> Path:
        with sf.SoundFile(path, "w", 16000, 1, "PCM_16", format="FLAC") as f:
            for minute in range(minutes):
                block = np.zeros(60 * 16000, dtype=np.float32)
                if minute % 20 == 0:
                    block[16000:32000] += word
                f.write(block)
        return path

    def peak_rss_mb(path: Path) -> tuple[float, list[str]]:
        code = (
            "import resource, sys; from speech_gru.cli.main import main; "
            f"rc = main(['transcribe', '--checkpoint', {str(checkpoint)!r}, '--hop', '1.0', "
            f"'--threshold', '0.5', {str(path)!r}]); "
            "print('RSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        rss = next(line for line in done.stderr.splitlines() if line.startswith("RSS"))
        return int(rss.split()[1]) / 1024, done.stdout.splitlines()

    short_rss, _ = peak_rss_mb(recording(tmp_path / "minute.flac", 1))
    hour_rss, events = peak_rss_mb(recording(tmp_path / "hour.flac", 60))
    # Loaded whole, an hour would add 230 MB of float32 samples (and more while resampling).
    assert hour_rss - short_rss < 60, (short_rss, hour_rss)
    assert len(events) == 3  # one per inserted word, none from the silence
