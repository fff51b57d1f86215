"""The commands that were scripts: ``noise-robustness`` (clip accuracy as background noise
rises) and ``vocabulary`` (new keywords cut from a test archive's ``_unknown_`` words), on
small folders written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speech_gru.analysis.noise_robustness import mix
from speech_gru.analysis.streaming.recordings import speech_span
from speech_gru.cli.main import main
from speech_gru.core.audio import SAMPLE_RATE, write_wav
from tests.helpers import confident_checkpoint, tone_folder


def rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))


def test_mix_puts_the_speech_snr_db_above_the_noise() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clip = (0.3 * np.sin(2 * np.pi * 440 * t) * ((t > 0.3) & (t < 0.7))).astype(np.float32)
    noise = rng.standard_normal(3 * SAMPLE_RATE).astype(np.float32)
    mixed = mix(clip, noise, 10.0, np.random.default_rng(1))
    start, end = speech_span(clip)
    added = mixed.astype(np.float64) - clip
    assert mixed.dtype == np.float32 and mixed.shape == clip.shape
    assert 20 * np.log10(rms(clip[start:end]) / rms(added)) == pytest.approx(10.0, abs=0.01)
    silent = np.zeros(SAMPLE_RATE, dtype=np.float32)
    assert mix(silent, noise, 10.0, rng) is silent  # nothing to measure the SNR against


def test_noise_robustness_scores_the_split_clean_and_at_each_snr(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = confident_checkpoint(tmp_path / "yes.ckpt")  # says "yes" to everything
    data = tone_folder(tmp_path / "data", {"yes": 440.0, "no": 660.0, "cat": 300.0}, 40)
    out = tmp_path / "robust.json"
    args = ["--checkpoint", str(checkpoint), "--data", str(data), "--snr", "10", "0"]
    assert main(["noise-robustness", *args, "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    clips = int(lines[0].split()[0])
    noise = data / "_background_noise_"
    assert (
        lines[0] == f"{clips} testing clips ({2 * clips // 3} keywords) of {data}; noise: {noise}"
    )
    assert clips > 0 and clips % 3 == 0  # each testing speaker says all three words
    assert lines[1].split() == ["SNR", "accuracy", "keywords", "right"]
    assert [line.split()[0] for line in lines[2:]] == ["clean", "10", "0"]
    for line in lines[2:]:
        assert line.split()[-2:] == ["33.3%", "50.0%"]  # every yes right, no no, no cat
    rows = json.loads(out.read_text())
    assert rows["checkpoint"] == str(checkpoint)
    assert [row["snr_db"] for row in rows["rows"]] == [None, 10.0, 0.0]
    assert all(row["keyword_accuracy"] == 0.5 for row in rows["rows"])


def test_noise_robustness_needs_clips_and_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint = confident_checkpoint(tmp_path / "yes.ckpt")
    data = tone_folder(tmp_path / "data", {"yes": 440.0}, 40)
    for noise in (data / "_background_noise_").iterdir():
        noise.unlink()
    args = ["noise-robustness", "--checkpoint", str(checkpoint), "--data", str(data)]
    assert main(args) == 2
    assert capsys.readouterr().err == f"error: {data}: no testing clips or no background noise\n"
    assert main([*args, "--json", str(tmp_path / "missing" / "r.json")]) == 2  # before work
    assert "folder" in capsys.readouterr().err


def test_vocabulary_cuts_words_out_of_unknown(tmp_path: Path, capsys) -> None:
    source = tmp_path / "archive"
    wave = 0.1 * np.ones(SAMPLE_RATE // 4, dtype=np.float32)
    names = ["zero_0a0a0a0a_nohash_0.wav", "zero_0b0b0b0b_nohash_1.wav",
             "one_0a0a0a0a_nohash_0.wav", "cat_0c0c0c0c_nohash_0.wav"]  # fmt: skip
    for name in names:
        (source / "_unknown_").mkdir(parents=True, exist_ok=True)
        write_wav(source / "_unknown_" / name, wave)
    (source / "_silence_").mkdir()
    write_wav(source / "_silence_" / "quiet.wav", 0 * wave)
    out = tmp_path / "digits"
    assert main(["vocabulary", str(source), str(out), "--words", "zero", "one", "two"]) == 0
    said = capsys.readouterr()
    assert said.out == "_silence_ 1, _unknown_ 1, one 1, zero 2\n"
    assert said.err == f"warning: no clips of two in {source}\n"
    found = sorted(str(p.relative_to(out)) for p in out.rglob("*.wav"))
    assert found == [
        "_silence_/quiet.wav", "_unknown_/cat_0c0c0c0c_nohash_0.wav",
        "one/one_0a0a0a0a_nohash_0.wav", "zero/zero_0a0a0a0a_nohash_0.wav",
        "zero/zero_0b0b0b0b_nohash_1.wav",
    ]  # fmt: skip
    assert main(["vocabulary", str(source), str(out)]) == 2  # never into an existing folder
    assert capsys.readouterr().err == f"error: {out}: already exists; choose a new folder\n"
    assert main(["vocabulary", str(tmp_path / "nothing"), str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "_unknown_: not found" in err and err.count("\n") == 1
