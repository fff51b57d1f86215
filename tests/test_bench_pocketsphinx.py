"""tools/bench_pocketsphinx.py: pocketsphinx's keyphrase search on a recording with truth,
scored by the project's matching rule at a sweep of thresholds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speech_gru.analysis.streaming.recordings import speech_span
from speech_gru.analysis.streaming.truth import Truth, write_truth
from speech_gru.core.audio import SAMPLE_RATE, load_audio, write_wav
from tools.bench_pocketsphinx import (
    BenchError,
    bench,
    format_table,
    keyphrase_of,
    main,
    parse_pronunciations,
)


def test_keyphrase_and_pronunciations() -> None:
    assert keyphrase_of("hey_computer") == "hey computer"
    assert keyphrase_of("Hey__Savant") == "hey savant"
    assert parse_pronunciations(["Chatterbox=ch ae t er  b aa k s"]) == {
        "chatterbox": "CH AE T ER B AA K S"
    }
    with pytest.raises(BenchError, match="WORD="):
        parse_pronunciations(["chatterbox"])


def quiet_recording(tmp_path: Path) -> Path:
    """Four seconds of quiet noise with one "computer" truth, and its truth file."""
    wav = tmp_path / "rec.wav"
    write_wav(wav, 0.001 * np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE))
    word = Truth("computer", 1.0, 1.6, 1.0, 1.6)
    write_truth(wav.with_suffix(".json"), [word], [], 4.0, "test")
    return wav


def test_without_pocketsphinx_one_line_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    wav = quiet_recording(tmp_path)
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # import fails
    assert main([str(wav)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install pocketsphinx" in err


def test_bad_inputs_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    wav = quiet_recording(tmp_path)
    cases = [
        ([str(tmp_path / "none.wav")], "none.wav"),
        ([str(wav), "--label", "amelia"], "amelia"),
        ([str(wav), "--thresholds", "0"], "--thresholds"),
    ]
    for argv, named in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and named in err, err


def test_a_word_missing_from_the_dictionary_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("pocketsphinx")
    wav = quiet_recording(tmp_path)
    assert main([str(wav), "--keyphrase", "hey chatterboxx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'chatterboxx' not in pocketsphinx's dictionary" in err
    # with its phones given, the search runs (and finds nothing in quiet noise)
    argv = [str(wav), "--keyphrase", "hey chatterboxx", "--pronounce",
            "chatterboxx=CH AE T ER B AA K S", "--thresholds", "1e-50"]  # fmt: skip
    assert main(argv) == 0
    assert " 0/1 " in capsys.readouterr().out


def espeak(text: str, path: Path) -> np.ndarray:
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return load_audio(path)


def test_finds_the_phrase_at_a_lenient_threshold(tmp_path: Path) -> None:
    pytest.importorskip("pocketsphinx")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make install sets it up)")
    rng = np.random.default_rng(0)
    gap = 0.003 * rng.standard_normal(round(0.8 * SAMPLE_RATE)).astype(np.float32)
    parts, keywords, others, t = [gap], [], [], gap.size / SAMPLE_RATE
    for i, text in enumerate(["the weather is nice today", "computer", "open the window",
                              "computer", "seven apples"]):  # fmt: skip
        clip = 0.5 * espeak(text, tmp_path / f"{i}.wav")
        s0, s1 = speech_span(clip) if clip.size > SAMPLE_RATE else (0, clip.size)
        label = "computer" if text == "computer" else "_unknown_"
        truth = Truth(label, t + s0 / SAMPLE_RATE, t + s1 / SAMPLE_RATE, t, t, word=text)
        (keywords if text == "computer" else others).append(truth)
        parts += [clip, gap]
        t += (clip.size + gap.size) / SAMPLE_RATE
    wav = tmp_path / "talk.wav"
    write_wav(wav, np.concatenate(parts))
    write_truth(wav.with_suffix(".json"), keywords, others, t, "espeak-ng")

    result = bench(wav, thresholds=(1e-50, 1e-1))
    assert result["keyphrase"] == "computer" and result["keywords"] == 2
    lenient, strict = result["rows"]
    assert [lenient["threshold"], strict["threshold"]] == [1e-50, 1e-1]
    assert lenient["hits"] >= 1
    assert strict["hits"] < lenient["hits"]  # each threshold has its own copy of the phrase
    hit = next(d for d in lenient["detections"] if d["outcome"] == "hit")
    assert any(k.start_s <= hit["time_s"] <= k.end_s + 1.0 for k in keywords)
    assert result["real_time_factor"] < 1.0
    table = format_table(result["rows"])
    assert "hit rate" in table and "FA/h" in table and len(table.splitlines()) == 3

    out = tmp_path / "ps.json"
    assert main([str(wav), "--thresholds", "1e-50", "1e-1", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert [r["hits"] for r in saved["rows"]] == [lenient["hits"], strict["hits"]]
