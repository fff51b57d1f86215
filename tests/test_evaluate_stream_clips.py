"""Recordings built from recorded phrases (``speech-gru evaluate-stream --clips DIR ...``):
clips longer than a second placed whole around their speech, nested folders counted as the
folder they sit in, several clip folders at once, and the 1 s behaviour kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from speech_gru.analysis.streaming.recordings import (
    MAX_PLACED_S,
    ROOM_S,
    build_recording,
    folder_pool,
    phrase_span,
    placed_clip,
    reuse_note,
    speech_span,
)
from speech_gru.analysis.streaming.truth import Truth
from speech_gru.core.audio import SAMPLE_RATE, write_wav
from speech_gru.train.corpus import speaker_of, which_set
from tests.helpers import tiny_checkpoint, tone_burst

PHRASE = (0.5, 0.8)  # where the "phrase" sits in each 1.8 s recording: start, length (s)
PHRASE_HZ = 700.0


def put(path: Path, wave: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, wave)


def phrase_clip(seed: int, seconds: float = 1.8, start: float = PHRASE[0]) -> np.ndarray:
    return tone_burst(seconds, start, PHRASE[1], PHRASE_HZ, amp=0.3, noise=0.002, seed=seed)


def write_phrase_folders(root: Path, phrase: str) -> Path:
    """A wake-word layout: ``phrase/`` with six 1.8 s recordings and one in a nested
    folder, ``other_phrase/`` (2.5 s) and ``not_wake/near/HeyTone/`` (2.0 s) with other
    "words"; file names carry no speaker id."""
    for i in range(6):
        put(root / phrase / f"take-{i:02d}.wav", phrase_clip(i))
    put(root / phrase / "more" / "deeper.wav", phrase_clip(50))
    for i in range(3):
        other = tone_burst(2.5, 0.9, 1.0, 1500.0, amp=0.3, noise=0.002, seed=10 + i)
        put(root / "other_phrase" / f"other-{i}.wav", other)
    near = tone_burst(2.0, 0.7, 0.6, 1100.0, amp=0.3, noise=0.002, seed=20)
    put(root / "not_wake" / "near" / "HeyTone" / "near-0.wav", near)
    return root


def write_commands(root: Path) -> Path:
    """A Speech Commands layout of 1 s clips: ``yes/``, ``_unknown_/`` and ``_silence_/``."""
    rng = np.random.default_rng(0)
    for i in range(8):
        speaker = f"{i * 2654435761 % 2**32:08x}"
        yes = tone_burst(1.0, 0.3, 0.3, 440.0, amp=0.3, seed=100 + i)
        put(root / "yes" / f"{speaker}_nohash_0.wav", yes)
        cat = tone_burst(1.0, 0.3, 0.3, 2000.0, amp=0.3, seed=200 + i)
        put(root / "_unknown_" / f"cat_{speaker}_nohash_1.wav", cat)
        noise = (0.05 * rng.standard_normal(SAMPLE_RATE)).astype(np.float32)
        put(root / "_silence_" / f"{i}.wav", noise)
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    wake = write_phrase_folders(tmp_path_factory.mktemp("wake"), "hey_tone")
    commands = write_commands(tmp_path_factory.mktemp("commands"))
    return wake, commands


def test_several_folders_and_nested_ones_count_as_their_top_folder(
    folders: tuple[Path, Path],
) -> None:
    wake, commands = folders
    pool = folder_pool([wake, commands], ["hey_tone", "yes"], split="all")
    assert list(pool.keywords) == ["hey_tone", "yes"]
    phrases = pool.keywords["hey_tone"]
    assert len(phrases) == 7
    assert any(item.source.endswith("more/deeper.wav") for item in phrases)
    assert {item.label for item in phrases} == {"hey_tone"}
    assert len(pool.keywords["yes"]) == 8  # from the second folder
    words = [d.word for d in pool.distractors]
    assert words.count("other_phrase") == 3
    assert words.count("not_wake") == 1  # not_wake/near/HeyTone/near-0.wav
    assert words.count("cat") == 8  # _unknown_'s WORD_SPEAKER_nohash_N files
    assert {d.label for d in pool.distractors} == {"_unknown_"}
    assert len(pool.noise) == 8  # the second folder's _silence_ clips
    assert str(wake) in pool.description and str(commands) in pool.description

    # the same model with only the phrase: yes/ is then another word
    alone = folder_pool([wake, commands], ["hey_tone"], split="all")
    assert list(alone.keywords) == ["hey_tone"]
    assert [d.word for d in alone.distractors].count("yes") == 8


def test_a_file_without_a_speaker_id_is_its_own_speaker(folders: tuple[Path, Path]) -> None:
    wake, commands = folders
    held_out = folder_pool([wake, commands], ["hey_tone", "yes"], split="training")
    kept = [*held_out.keywords["hey_tone"], *held_out.distractors]
    assert 0 < len(kept) < 7 + 4 + 8  # the phrases, the wake folder's others, cat/
    for item in kept:
        assert which_set(speaker_of(item.source), 10, 10, "speech_gru") == "training"
    assert speaker_of("take-03.wav") == "take-03"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        folder_pool([wake, wake.parent / "nowhere"], ["hey_tone"], split="all")


def test_long_clips_are_placed_whole_with_the_truth_at_their_speech(
    folders: tuple[Path, Path],
) -> None:
    wake, commands = folders
    pool = folder_pool([wake, commands], ["hey_tone"], split="all")
    others: list[Truth] = []
    wave, truths = build_recording(
        pool, minutes=1.5, seed=2, snr_db=20.0, distractor_share=0.5, distractors_out=others
    )
    duration = wave.size / SAMPLE_RATE
    assert len(truths) >= 6 and len(others) >= 6
    for t in truths:  # 0.8 s of phrase, ROOM_S of its recording on each side
        assert t.label == "hey_tone"
        assert t.start_s - t.clip_start_s == pytest.approx(ROOM_S, abs=0.04)
        assert t.end_s - t.start_s == pytest.approx(PHRASE[1], abs=0.05)
        assert t.clip_end_s - t.end_s == pytest.approx(ROOM_S, abs=0.04)
        # the tone is where the truth says, and the noise bed around it
        inside = wave[round(t.start_s * SAMPLE_RATE) + 800 : round(t.end_s * SAMPLE_RATE) - 800]
        spectrum = np.abs(np.fft.rfft(inside))
        peak = np.fft.rfftfreq(inside.size, 1 / SAMPLE_RATE)[spectrum.argmax()]
        assert peak == pytest.approx(PHRASE_HZ, abs=5)
    for t in others:
        length = t.clip_end_s - t.clip_start_s
        if t.word in ("yes", "cat"):  # 1 s Speech Commands clips: whole, as ever
            assert length == pytest.approx(1.0)
            assert t.start_s - t.clip_start_s == pytest.approx(0.3, abs=0.03)
        elif t.word == "other_phrase":  # 1.0 s of speech in a 2.5 s recording
            assert length == pytest.approx(1.0 + 2 * ROOM_S, abs=0.06)
    placed = sorted(truths + others, key=lambda t: t.clip_start_s)
    for before, after in zip(placed, placed[1:], strict=False):
        # starts 2.5-6 s apart, plus a long clip's length over one second
        assert after.clip_start_s - before.clip_end_s >= 1.5 - 1e-3
    assert placed[-1].clip_end_s <= duration
    note = reuse_note(truths)
    assert note.startswith(f"hey_tone: 7 recordings placed {len(truths)} times")
    assert reuse_note(truths[:1]) == ""


def test_phrase_span_sees_speech_through_room_rumble() -> None:
    n = round(1.8 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rumble = 0.2 * np.sin(2 * np.pi * 50 * t) + 0.003 * np.random.default_rng(0).standard_normal(n)
    word = (t >= 0.6) & (t < 1.2)
    clip = (rumble + 0.05 * word * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    assert speech_span(clip) == (0, n)  # the loudest-frame rule takes the hum for speech
    start, end = phrase_span(clip)
    assert start / SAMPLE_RATE == pytest.approx(0.6, abs=0.03)
    assert end / SAMPLE_RATE == pytest.approx(1.2, abs=0.03)
    piece, s0, s1 = placed_clip(clip)
    assert piece.size / SAMPLE_RATE == pytest.approx(0.6 + 2 * ROOM_S, abs=0.06)
    assert s0 / SAMPLE_RATE == pytest.approx(ROOM_S, abs=0.03)
    assert abs(piece[0]) < 1e-3  # the cut edge is faded in


def test_placed_clip_keeps_short_clips_and_caps_long_speech() -> None:
    short = tone_burst(0.9, 0.2, 0.4, 440.0)
    piece, s0, s1 = placed_clip(short)
    assert piece is not None and np.array_equal(piece, short)
    assert (s0, s1) == speech_span(short)
    talk = tone_burst(8.0, 1.0, 6.5, 300.0, amp=0.3)
    piece, s0, s1 = placed_clip(talk)
    assert piece.size == round(MAX_PLACED_S * SAMPLE_RATE)
    assert s0 / SAMPLE_RATE == pytest.approx(ROOM_S, abs=0.03)
    assert s1 == piece.size  # the speech runs on past the cap


def test_evaluate_stream_with_several_clip_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from speech_gru.cli.main import main

    wake = write_phrase_folders(tmp_path / "wake", "yes")  # the tiny model's keyword
    commands = tmp_path / "commands"
    write_commands(commands)
    (commands / "yes").rename(commands / "up")  # another word here, not the keyword
    checkpoint = tiny_checkpoint(tmp_path / "tiny.ckpt")
    wav, report = tmp_path / "rec.wav", tmp_path / "stream.json"
    code = main([
        "evaluate-stream", "--checkpoint", str(checkpoint), "--clips", str(wake), str(commands),
        "--split", "all", "--minutes", "2", "--snr", "10", "10", "--distractors", "0.5",
        "--noise", str(commands / "_silence_"), "--save-wav", str(wav), "--json", str(report),
    ])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    source = next(line for line in captured.err.splitlines() if line.startswith("source: "))
    assert str(wake) in source and str(commands) in source
    assert "yes: 7 recordings placed" in source
    truth = json.loads(wav.with_suffix(".json").read_text())
    assert truth["keywords"] and {k["label"] for k in truth["keywords"]} == {"yes"}
    assert all(Path(k["source"]).is_relative_to(wake) for k in truth["keywords"])
    for k in truth["keywords"]:
        assert k["clip_end_s"] - k["clip_start_s"] == pytest.approx(PHRASE[1] + 2 * ROOM_S, 0.1)
        assert k["snr_db"] == pytest.approx(10.0, abs=0.01)
    words = {d["word"] for d in truth["distractors"]}
    assert words <= {"other_phrase", "not_wake", "up", "cat"}
    assert words & {"other_phrase", "not_wake"} and words & {"up", "cat"}  # both folders
    data = json.loads(report.read_text())
    assert data["metrics"]["keywords"] == len(truth["keywords"])
    assert data["source"] == source.removeprefix("source: ")
