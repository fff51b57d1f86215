"""The corpus rules, read without Lightning: splits as training made them, and the one
background-noise fallback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speech_gru.core.audio import SAMPLE_RATE, write_wav
from speech_gru.train.corpus import (
    CLIP_SAMPLES,
    SplitRule,
    background_noise,
    fold_of,
    pink_noise,
    split_rule,
    synthetic_noise,
    which_set,
)
from tests.helpers import tone


def clip_files(root: Path, word: str, speakers: int) -> list[Path]:
    (root / word).mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(speakers):
        path = root / word / f"spk{i:03d}_nohash_0.wav"
        write_wav(path, tone(300 + i, SAMPLE_RATE, 1.0, 0.2))
        paths.append(path)
    return paths


def test_reading_the_corpus_imports_no_lightning() -> None:
    code = "import sys, speech_gru.train.corpus; sys.exit('lightning' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_split_rule_follows_the_recorded_settings(tmp_path: Path) -> None:
    paths = clip_files(tmp_path, "yes", 60)
    recorded = {"version": "folder", "validation_percent": 20.0, "testing_percent": 30.0,
                "split_salt": "x"}  # fmt: skip
    rule = split_rule(tmp_path, recorded)
    for path in paths:
        assert rule(path) == which_set(path.name.split("_")[0], 20.0, 30.0, "x")
    default = split_rule(tmp_path, None)  # nothing recorded: the data module's defaults
    assert [default(p) for p in paths] == [SplitRule()(p) for p in paths]
    folds = SplitRule.from_hparams({**recorded, "folds": 3, "fold": 1})
    for path in paths:
        speaker = path.name.split("_")[0]
        assert (folds(path) == "testing") == (fold_of(speaker, 3, "x") == 1)


def test_an_archive_folder_is_split_by_its_list_files(tmp_path: Path) -> None:
    paths = clip_files(tmp_path, "no", 4)
    (tmp_path / "validation_list.txt").write_text("no/spk001_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("no/spk002_nohash_0.wav\n")
    rule = split_rule(tmp_path, {"version": "v0.02"})
    assert [rule(p) for p in paths] == ["training", "validation", "testing", "training"]
    hashed = split_rule(tmp_path, {"version": "folder"})  # folder mode ignores the lists
    assert [hashed(p) for p in paths] == [SplitRule()(p) for p in paths]


def test_background_noise_falls_back_in_order(tmp_path: Path) -> None:
    silence = clip_files(tmp_path, "_silence_", 2)
    noise, source = background_noise(tmp_path, silence=silence)
    assert len(noise) == 2 and source == "2 _silence_ clips"
    folder = tmp_path / "_background_noise_"
    folder.mkdir()
    write_wav(folder / "hum.wav", tone(50, SAMPLE_RATE, 3.0, 0.1))
    noise, source = background_noise(tmp_path, silence=silence)
    assert len(noise) == 1 and noise[0].size == 3 * SAMPLE_RATE and source == str(folder)
    own = tmp_path / "mine"
    own.mkdir()
    write_wav(own / "a.wav", tone(80, SAMPLE_RATE, 2.0, 0.1))
    noise, source = background_noise(tmp_path, own)
    assert noise[0].size == 2 * SAMPLE_RATE and source == str(own)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no readable noise audio"):
        background_noise(tmp_path, empty)
    nothing = tmp_path / "bare"
    nothing.mkdir()
    noise, source = background_noise(nothing, seed=3)
    assert source == "synthetic white and pink noise" and len(noise) == 2
    assert background_noise(nothing, synthetic=False) == ([], "none")
    again, _ = background_noise(nothing, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(noise, again, strict=True))


def test_pink_noise_has_a_falling_spectrum_and_unit_level() -> None:
    x = pink_noise(8 * SAMPLE_RATE, np.random.default_rng(0))
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    low = power[(freqs > 50) & (freqs < 200)].mean()
    high = power[(freqs > 2000) & (freqs < 8000)].mean()
    assert low > 10 * high  # 1/f: 10-40x the frequency, about 1/10-1/40 the power
    white, pink = synthetic_noise(2.0, seed=1)
    assert white.size == pink.size == 2 * SAMPLE_RATE and CLIP_SAMPLES == SAMPLE_RATE
    assert np.abs(pink).max() == pytest.approx(0.1, rel=1e-5)
